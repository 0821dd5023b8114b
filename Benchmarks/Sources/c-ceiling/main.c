// c-ceiling: a bare C epoll server, the benchmark's ceiling.
//
// The least CPU per request a server on this machine can spend: no framework, no allocation
// per request, one epoll_wait, one recv and one send per read batch. What it reaches under
// swoop-load or wrk is the load generator's limit on this machine (its CPU row in the report
// shows how near saturation it is), which is what the issue's base-mode target ("at the load
// generator's limit, level with nginx / a bare C epoll server") refers to.
//
// It speaks exactly what nio-baseline speaks, byte for byte:
//
//   --protocol line   `echo TEXT\n` → `TEXT\n`, `ping\n` → `pong\n`, any other line →
//                     `error unknown command\n` (a line may end in "\r\n": the reply still ends
//                     in "\n" alone); a connection that sends 64 KiB without a "\n" is closed.
//   --protocol http   HTTP/1.1 keep-alive, pipelined requests answered in order; `GET /` (and
//                     `HEAD /`, without the body) → the same 130 bytes as nio-baseline and
//                     swoop-demo (Content-Type, Content-Length, Server: swoop, Date), anything
//                     else → 404 `not found`; `Connection: close` (or HTTP/1.0 without
//                     keep-alive) → `Connection: close`, and the connection is closed once the
//                     response is out; a malformed request → the same 400 as NIOHTTP1's, and
//                     close. Bodies (Content-Length or chunked) are read and dropped.
//
// It prints `c-ceiling ready protocol=<line|http> port=<p>` (nio-baseline's ready line, with
// this program's name) once every listener is listening, and exits 0 on SIGTERM or SIGINT.
//
// Design:
// - N threads (`--threads`, 2 like nio-baseline), each with its own epoll instance and its
//   own listening socket bound to the same port with SO_REUSEPORT. The kernel spreads the
//   incoming connections over the listeners (by a hash of the 4-tuple), so each thread
//   accepts and serves its own connections with nothing shared between threads: no lock, no
//   wake-up of a thread that has nothing to do, no cross-thread hand-off. (One listener in
//   every epoll with EPOLLEXCLUSIVE would balance a handful of connections more evenly, but
//   it still shares one accept queue between the threads and may wake more than one of them
//   per connection; SO_REUSEPORT is what nginx's `reuseport` does.)
// - Connections are registered once, for EPOLLIN | EPOLLOUT | EPOLLRDHUP, edge-triggered:
//   no epoll_ctl per request to switch EPOLLOUT on and off. A read that returns less than
//   it asked for has emptied the socket (any later data raises a new edge), so a request
//   costs one recv, not a second one to see EAGAIN; after EPOLLRDHUP/HUP/ERR it reads on to
//   the end to see the EOF. All the replies to one read batch go out in one send, as
//   nio-baseline flushes once per read batch. A partial send keeps the rest for the next
//   EPOLLOUT edge; while more than OUTPUT_HIGH bytes wait, the connection stops reading
//   (back-pressure against a client that sends without reading).
// - The listeners are level-triggered: a wake-up accepts up to ACCEPT_BATCH connections, and
//   any left in the queue wake the loop again.
// - SIGTERM and SIGINT are blocked in every thread; the main thread waits for them with
//   sigwait, then wakes every loop through one eventfd (level-triggered, never read), joins
//   them, closes everything and returns 0.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    MAX_LINE = 64 * 1024,        // nio-baseline's LineSplitter: more without a "\n" is an error
    MAX_HEAD = 64 * 1024,        // longest request head (request line and headers) taken
    MAX_CHUNK_LINE = 4096,       // longest chunk-size or trailer line taken
    INPUT_INITIAL = 4096,        // a connection's input buffer at first...
    INPUT_MAX = 256 * 1024,      // ...grows when a read fills it, up to this
    OUTPUT_HIGH = 1024 * 1024,   // replies waiting to be sent above which reading stops
    ACCEPT_BATCH = 64,
    EVENT_BATCH = 256,
    BACKLOG = 1024,
};

// What an epoll event's data.ptr points to: every such struct starts with its kind.
enum kind { KIND_CONNECTION, KIND_LISTENER, KIND_WAKE };

enum protocol { PROTOCOL_LINE, PROTOCOL_HTTP };

// Where a connection's HTTP parser is.
enum http_state {
    HTTP_HEAD,         // waiting for a request's head, up to its empty line
    HTTP_BODY,         // dropping `body_left` bytes of a Content-Length body
    HTTP_CHUNK_SIZE,   // waiting for a chunk-size line
    HTTP_CHUNK_DATA,   // dropping `body_left` bytes of a chunk
    HTTP_CHUNK_CRLF,   // waiting for the CRLF after a chunk's data
    HTTP_TRAILERS,     // waiting for the empty line after the last chunk (trailers dropped)
};

typedef struct {
    char *data;
    size_t start;   // bytes before this are consumed (input) or sent (output)
    size_t end;     // bytes from start to end are pending
    size_t capacity;
} buffer;

struct worker;

typedef struct connection {
    enum kind kind;   // KIND_CONNECTION
    int fd;
    struct worker *worker;
    struct connection *previous, *next;   // the worker's list of open connections
    buffer input, output;
    size_t scanned;     // input bytes after `start` already searched (line: for "\n"; http: whole head lines)
    int paused;         // stopped reading: too many replies wait to be sent
    int peer_closed;    // EPOLLRDHUP/HUP/ERR seen: read on to the EOF
    int closing;        // no more requests: close once the output is out
    // HTTP: the request being read, answered once its body is in.
    enum http_state state;
    uint64_t body_left;
    int minor;          // HTTP/1.<minor>
    int found;          // GET or HEAD of "/"
    int head_only;      // HEAD: no body in the response
    int keep_alive;
} connection;

typedef struct {
    enum kind kind;   // KIND_LISTENER or KIND_WAKE
} marker;

typedef struct worker {
    int index;
    int epoll_fd;
    int listen_fd;
    marker listener_marker, wake_marker;
    pthread_t thread;
    connection *connections;   // open connections, for the clean-up at exit
    // HTTP: the date and the whole `GET /` response with it, remade when the second changes.
    time_t date_second;
    char date[40];   // "Sat, 28 Nov 2026 23:47:10 GMT" and a NUL (room for any year)
    char hello[256 + 16];   // the head (format_head) and the body
    size_t hello_length;
} worker;

static enum protocol server_protocol = PROTOCOL_LINE;
static int wake_fd = -1;
static atomic_int stopping;   // set before the eventfd wakes the loops

static void fail(const char *what) {
    fprintf(stderr, "c-ceiling: %s: %s\n", what, strerror(errno));
    exit(1);
}

// ---------------------------------------------------------------------------------------
// Buffers
// ---------------------------------------------------------------------------------------

// Makes room for `more` bytes after `end`: moves the pending bytes to the front first, then
// grows. Returns 0, or -1 when out of memory.
static int buffer_reserve(buffer *b, size_t more) {
    if (b->start == b->end) b->start = b->end = 0;
    if (b->capacity - b->end >= more) return 0;
    if (b->start > 0) {
        memmove(b->data, b->data + b->start, b->end - b->start);
        b->end -= b->start;
        b->start = 0;
        if (b->capacity - b->end >= more) return 0;
    }
    size_t capacity = b->capacity ? b->capacity : 256;
    while (capacity - b->end < more) capacity *= 2;
    char *data = realloc(b->data, capacity);
    if (!data) return -1;
    b->data = data;
    b->capacity = capacity;
    return 0;
}

static int buffer_append(buffer *b, const void *bytes, size_t length) {
    if (length == 0) return 0;
    if (b->capacity - b->end < length && buffer_reserve(b, length) < 0) return -1;
    memcpy(b->data + b->end, bytes, length);
    b->end += length;
    return 0;
}

#define APPEND_LITERAL(b, text) buffer_append((b), (text), sizeof(text) - 1)

// ---------------------------------------------------------------------------------------
// The line protocol
// ---------------------------------------------------------------------------------------

// Appends the reply to one line: `line` is its content up to, not including, its "\n".
// As nio-baseline's LineCommandHandler: a "\r" before the "\n" is not content; the command
// is the content up to its first space, the argument all after that space.
static int line_reply(connection *c, const char *line, size_t length) {
    if (length > 0 && line[length - 1] == '\r') length--;
    const char *space = memchr(line, ' ', length);
    size_t command = space ? (size_t)(space - line) : length;
    if (command == 4 && memcmp(line, "echo", 4) == 0) {
        size_t argument = space ? command + 1 : length;
        if (buffer_append(&c->output, line + argument, length - argument) < 0) return -1;
        return APPEND_LITERAL(&c->output, "\n");
    }
    if (command == 4 && memcmp(line, "ping", 4) == 0) return APPEND_LITERAL(&c->output, "pong\n");
    return APPEND_LITERAL(&c->output, "error unknown command\n");
}

// Answers every complete line in the input; keeps the incomplete one. Returns -1 to close
// the connection (a line longer than MAX_LINE, or out of memory).
static int line_process(connection *c) {
    buffer *in = &c->input;
    size_t start = in->start;
    size_t from = start + c->scanned;
    for (;;) {
        const char *newline = memchr(in->data + from, '\n', in->end - from);
        if (!newline) break;
        size_t at = (size_t)(newline - in->data);
        if (line_reply(c, in->data + start, at - start) < 0) return -1;
        start = from = at + 1;
    }
    in->start = start;
    c->scanned = in->end - start;
    if (c->scanned > MAX_LINE) return -1;
    return 0;
}

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

// `seconds` as an IMF-fixdate (RFC 9110): `Sat, 28 Nov 2026 23:47:10 GMT`, 29 characters,
// formatted by hand as nio-baseline does (no locale involved).
static void format_date(time_t seconds, char out[40]) {
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm parts;
    gmtime_r(&seconds, &parts);
    snprintf(out, 40, "%s, %02d %s %d %02d:%02d:%02d GMT", days[parts.tm_wday], parts.tm_mday,
             months[parts.tm_mon], parts.tm_year + 1900, parts.tm_hour, parts.tm_min, parts.tm_sec);
}

static const char HELLO_BODY[] = "Hello, World!";
static const char NOT_FOUND_BODY[] = "not found";

// The response head as nio-baseline writes it (header names and order of HTTPHandler.swift,
// as NIOHTTP1 encodes them), up to and including its empty line, into `head` (256 bytes are
// plenty). Returns its length.
static size_t format_head(char head[256], int minor, int found, size_t body_length, const char *date,
                          int keep_alive) {
    int length = snprintf(head, 256,
                          "HTTP/1.%d %s\r\n"
                          "Content-Type: text/plain\r\n"
                          "Content-Length: %zu\r\n"
                          "Server: swoop\r\n"
                          "Date: %s\r\n"
                          "%s"
                          "\r\n",
                          minor, found ? "200 OK" : "404 Not Found", body_length, date,
                          keep_alive ? "" : "Connection: close\r\n");
    return (size_t)length;
}

// Remakes the date and the `GET /` response when the second has changed.
static void refresh_date(worker *w) {
    time_t now = time(NULL);
    if (now == w->date_second) return;
    w->date_second = now;
    format_date(now, w->date);
    size_t length = format_head(w->hello, 1, 1, sizeof HELLO_BODY - 1, w->date, 1);
    memcpy(w->hello + length, HELLO_BODY, sizeof HELLO_BODY - 1);
    w->hello_length = length + sizeof HELLO_BODY - 1;
}

// Appends the response to the request just read; after one that is not keep-alive, no more.
static int http_respond(connection *c) {
    worker *w = c->worker;
    if (c->minor == 1 && c->found && !c->head_only && c->keep_alive) {
        // The benchmark's request: the ready-made bytes.
        return buffer_append(&c->output, w->hello, w->hello_length);
    }
    const char *body = c->found ? HELLO_BODY : NOT_FOUND_BODY;
    size_t body_length = c->found ? sizeof HELLO_BODY - 1 : sizeof NOT_FOUND_BODY - 1;
    char head[256];
    size_t length = format_head(head, c->minor, c->found, body_length, w->date, c->keep_alive);
    if (buffer_append(&c->output, head, length) < 0) return -1;
    if (!c->head_only && buffer_append(&c->output, body, body_length) < 0) return -1;
    if (!c->keep_alive) c->closing = 1;
    return 0;
}

// A request that cannot be parsed: NIOHTTP1's answer (HTTPServerProtocolErrorHandler), then
// close.
static int http_bad_request(connection *c) {
    c->closing = 1;
    return APPEND_LITERAL(&c->output, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
}

// The line that starts at `from` in the input: its length with its CRLF; 0 if its "\n" has
// not come yet; -1 if it ends in a bare "\n" (NIOHTTP1 rejects those too).
static long http_line(const buffer *in, size_t from) {
    const char *newline = memchr(in->data + from, '\n', in->end - from);
    if (!newline) return 0;
    size_t at = (size_t)(newline - in->data);
    if (at == from || in->data[at - 1] != '\r') return -1;
    return (long)(at + 1 - from);
}

static int is_token_char(unsigned char ch) {
    // RFC 9110 tchar.
    if (ch >= '0' && ch <= '9') return 1;
    if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') return 1;
    return ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static int equals_ignoring_case(const char *text, size_t length, const char *lowercase) {
    return strlen(lowercase) == length && strncasecmp(text, lowercase, length) == 0;
}

// Whether the comma-separated list `value` holds `token` (case-insensitively).
static int list_contains(const char *value, size_t length, const char *token) {
    size_t i = 0;
    while (i < length) {
        while (i < length && (value[i] == ' ' || value[i] == '\t' || value[i] == ',')) i++;
        size_t begin = i;
        while (i < length && value[i] != ',') i++;
        size_t end = i;
        while (end > begin && (value[end - 1] == ' ' || value[end - 1] == '\t')) end--;
        if (end > begin && equals_ignoring_case(value + begin, end - begin, token)) return 1;
    }
    return 0;
}

// Whether the last coding of the comma-separated list `value` is `chunked`.
static int last_is_chunked(const char *value, size_t length) {
    const char *comma = memrchr(value, ',', length);
    size_t begin = comma ? (size_t)(comma - value) + 1 : 0;
    while (begin < length && (value[begin] == ' ' || value[begin] == '\t')) begin++;
    return equals_ignoring_case(value + begin, length - begin, "chunked");
}

// Parses the head in input bytes [from, to) (request line, headers, empty line); sets the
// connection's request fields and what follows the head. Returns 0, or -1 if malformed.
static int http_parse_head(connection *c, size_t from, size_t to) {
    const char *p = c->input.data;
    // The request line: METHOD SP TARGET SP HTTP/1.x CRLF.
    size_t line_end = (size_t)((const char *)memchr(p + from, '\n', to - from) - p) - 1;   // its CR
    size_t i = from;
    while (i < line_end && is_token_char((unsigned char)p[i])) i++;
    size_t method_end = i;
    if (method_end == from || i == line_end || p[i] != ' ') return -1;
    size_t target = ++i;
    while (i < line_end && p[i] != ' ' && (unsigned char)p[i] > ' ' && p[i] != 0x7f) i++;
    size_t target_end = i;
    if (target_end == target || i == line_end || p[i] != ' ') return -1;
    i++;
    if (line_end - i != 8 || memcmp(p + i, "HTTP/1.", 7) != 0 || (p[i + 7] != '0' && p[i + 7] != '1')) return -1;
    c->minor = p[i + 7] - '0';
    size_t method_length = method_end - from;
    int get = method_length == 3 && memcmp(p + from, "GET", 3) == 0;
    c->head_only = method_length == 4 && memcmp(p + from, "HEAD", 4) == 0;
    c->found = (get || c->head_only) && target_end - target == 1 && p[target] == '/';

    // The headers: NAME ":" OWS VALUE OWS CRLF, up to the empty line.
    int has_length = 0, chunked = 0, has_encoding = 0, close = 0, keep_alive = 0;
    uint64_t length = 0;
    for (i = line_end + 2; i < to - 2;) {
        size_t end = (size_t)((const char *)memchr(p + i, '\n', to - i) - p) - 1;   // its CR
        size_t name = i;
        while (i < end && is_token_char((unsigned char)p[i])) i++;
        if (i == name || i == end || p[i] != ':') return -1;
        size_t name_length = i - name;
        i++;
        while (i < end && (p[i] == ' ' || p[i] == '\t')) i++;
        size_t value = i, value_end = end;
        while (value_end > value && (p[value_end - 1] == ' ' || p[value_end - 1] == '\t')) value_end--;
        size_t value_length = value_end - value;
        if (equals_ignoring_case(p + name, name_length, "content-length")) {
            if (has_length || value_length == 0 || value_length > 18) return -1;
            for (size_t k = value; k < value_end; k++) {
                if (p[k] < '0' || p[k] > '9') return -1;
                length = length * 10 + (uint64_t)(p[k] - '0');
            }
            has_length = 1;
        } else if (equals_ignoring_case(p + name, name_length, "transfer-encoding")) {
            has_encoding = 1;
            chunked = last_is_chunked(p + value, value_length);
        } else if (equals_ignoring_case(p + name, name_length, "connection")) {
            close |= list_contains(p + value, value_length, "close");
            keep_alive |= list_contains(p + value, value_length, "keep-alive");
        }
        i = end + 2;
    }
    // A request body's length must be certain: Content-Length or chunked, not both.
    if (has_encoding && (has_length || !chunked)) return -1;
    // As NIOHTTP1's isKeepAlive: HTTP/1.1 unless "close", HTTP/1.0 only with "keep-alive".
    c->keep_alive = c->minor == 1 ? !close : keep_alive;
    if (chunked) {
        c->state = HTTP_CHUNK_SIZE;
    } else if (length > 0) {
        c->state = HTTP_BODY;
        c->body_left = length;
    } else {
        c->state = HTTP_HEAD;
    }
    return 0;
}

// Parses a chunk-size line (hex digits, then nothing or chunk extensions after ";", then
// CRLF) of `length` bytes at `from`. Returns the size, or -1 if malformed.
static int64_t http_chunk_size(const char *p, size_t from, size_t length) {
    size_t end = from + length - 2;
    uint64_t size = 0;
    size_t i = from;
    for (; i < end; i++) {
        int digit;
        char ch = p[i];
        if (ch >= '0' && ch <= '9') digit = ch - '0';
        else if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f') digit = (ch | 0x20) - 'a' + 10;
        else break;
        if (size >> 59) return -1;
        size = size * 16 + (uint64_t)digit;
    }
    if (i == from) return -1;
    while (i < end && (p[i] == ' ' || p[i] == '\t')) i++;
    if (i < end && p[i] != ';') return -1;
    return (int64_t)size;
}

// Answers every complete request in the input, in order; keeps an incomplete one. Returns
// -1 to close the connection at once (out of memory).
static int http_process(connection *c) {
    buffer *in = &c->input;
    while (!c->closing && in->start < in->end) {
        size_t available = in->end - in->start;
        switch (c->state) {
        case HTTP_HEAD: {
            // Find the head's end line by line, resuming after the lines already seen.
            size_t at = in->start + c->scanned;
            for (;;) {
                long line = http_line(in, at);
                if (line < 0) return http_bad_request(c);
                if (line == 0) {
                    c->scanned = at - in->start;
                    if (available > MAX_HEAD) return http_bad_request(c);
                    return 0;
                }
                if (line == 2) {
                    if (at == in->start) {
                        // An empty line before a request line is ignored (RFC 9112, 2.2).
                        in->start += 2;
                        at = in->start;
                        continue;
                    }
                    at += 2;
                    break;
                }
                at += (size_t)line;
            }
            if (at - in->start > MAX_HEAD) return http_bad_request(c);
            c->scanned = 0;
            if (http_parse_head(c, in->start, at) < 0) return http_bad_request(c);
            in->start = at;
            if (c->state == HTTP_HEAD && http_respond(c) < 0) return -1;
            break;
        }
        case HTTP_BODY:
        case HTTP_CHUNK_DATA: {
            size_t skip = available < c->body_left ? available : (size_t)c->body_left;
            in->start += skip;
            c->body_left -= skip;
            if (c->body_left == 0) {
                if (c->state == HTTP_CHUNK_DATA) {
                    c->state = HTTP_CHUNK_CRLF;
                } else {
                    c->state = HTTP_HEAD;
                    if (http_respond(c) < 0) return -1;
                }
            }
            break;
        }
        case HTTP_CHUNK_CRLF:
            if (available < 2) return 0;
            if (in->data[in->start] != '\r' || in->data[in->start + 1] != '\n') return http_bad_request(c);
            in->start += 2;
            c->state = HTTP_CHUNK_SIZE;
            break;
        case HTTP_CHUNK_SIZE:
        case HTTP_TRAILERS: {
            long line = http_line(in, in->start);
            if (line < 0) return http_bad_request(c);
            if (line == 0) return available > MAX_CHUNK_LINE ? http_bad_request(c) : 0;
            if (line > MAX_CHUNK_LINE) return http_bad_request(c);
            size_t from = in->start;
            in->start += (size_t)line;
            if (c->state == HTTP_TRAILERS) {
                if (line == 2) {
                    c->state = HTTP_HEAD;
                    if (http_respond(c) < 0) return -1;
                }
                break;
            }
            int64_t size = http_chunk_size(in->data, from, (size_t)line);
            if (size < 0) return http_bad_request(c);
            if (size == 0) {
                c->state = HTTP_TRAILERS;
            } else {
                c->state = HTTP_CHUNK_DATA;
                c->body_left = (uint64_t)size;
            }
            break;
        }
        }
    }
    return 0;
}

// ---------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------

static void connection_close(connection *c) {
    worker *w = c->worker;
    if (c->previous) c->previous->next = c->next; else w->connections = c->next;
    if (c->next) c->next->previous = c->previous;
    close(c->fd);   // also takes it out of the epoll set
    free(c->input.data);
    free(c->output.data);
    free(c);
}

// Sends what waits in the output. Returns 1 when all of it is out, 0 when the socket is full
// (the rest goes on the next EPOLLOUT edge), -1 on an error.
static int connection_flush(connection *c) {
    buffer *out = &c->output;
    while (out->start < out->end) {
        ssize_t sent = send(c->fd, out->data + out->start, out->end - out->start, MSG_NOSIGNAL);
        if (sent > 0) {
            out->start += (size_t)sent;
        } else if (sent < 0 && errno == EINTR) {
            continue;
        } else if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0;
        } else {
            return -1;
        }
    }
    out->start = out->end = 0;
    return 1;
}

// Reads what the socket holds, answers every complete request in it, sends the replies.
// Returns -1 when the connection is to be closed now.
static int connection_read(connection *c) {
    buffer *in = &c->input;
    size_t want = INPUT_INITIAL / 2;   // room to read into, at least
    while (!c->closing && !c->paused) {
        if (in->capacity - in->end < want && buffer_reserve(in, want) < 0) return -1;
        size_t room = in->capacity - in->end;
        ssize_t got = recv(c->fd, in->data + in->end, room, 0);
        if (got > 0) {
            in->end += (size_t)got;
            // A read that filled the room: a big pipelined batch; read the rest in fewer,
            // bigger reads. (What stays pending is bounded by MAX_LINE, MAX_HEAD.)
            if ((size_t)got == room && in->capacity < INPUT_MAX) want = in->capacity;
            int status = server_protocol == PROTOCOL_LINE ? line_process(c) : http_process(c);
            if (status < 0) return -1;
            if (in->start == in->end) in->start = in->end = 0;
            if (c->output.end - c->output.start > OUTPUT_HIGH) {
                // Send what can go now; stop reading if too much is still left.
                if (connection_flush(c) < 0) return -1;
                if (c->output.end - c->output.start > OUTPUT_HIGH) c->paused = 1;
            }
            // A short read emptied the socket: the next data raises a new edge. After
            // EPOLLRDHUP, read on to see the EOF, which raises no further edge.
            if ((size_t)got < room && !c->peer_closed) break;
        } else if (got == 0) {
            // The peer is gone: send what was answered if it fits, and close (as NIO does).
            connection_flush(c);
            return -1;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else {
            return -1;
        }
    }
    // One send for all the replies to this read batch.
    int flushed = connection_flush(c);
    if (flushed < 0) return -1;
    if (flushed == 1 && c->closing) return -1;
    return 0;
}

// One epoll event for a connection.
static void connection_event(connection *c, uint32_t events) {
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->peer_closed = 1;
    if ((events & EPOLLOUT) && c->output.end > c->output.start) {
        int flushed = connection_flush(c);
        if (flushed < 0 || (flushed == 1 && c->closing)) {
            connection_close(c);
            return;
        }
        if (c->paused && c->output.end - c->output.start <= OUTPUT_HIGH) {
            // The edge that brought the unread input is spent: read now.
            c->paused = 0;
            if (connection_read(c) < 0) connection_close(c);
            return;
        }
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        if (connection_read(c) < 0) connection_close(c);
    }
}

static void accept_connections(worker *w) {
    for (int n = 0; n < ACCEPT_BATCH; n++) {
        int fd = accept4(w->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) perror("c-ceiling: accept4");
            return;
        }
        int one = 1;
        // Request/response traffic: Nagle would hold each small reply back.
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        connection *c = calloc(1, sizeof *c);
        if (!c || !(c->input.data = malloc(INPUT_INITIAL))) {
            free(c);
            close(fd);
            continue;
        }
        c->input.capacity = INPUT_INITIAL;
        c->kind = KIND_CONNECTION;
        c->fd = fd;
        c->worker = w;
        c->state = HTTP_HEAD;
        struct epoll_event event = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
        if (epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, fd, &event) < 0) {
            perror("c-ceiling: epoll_ctl");
            free(c->input.data);
            free(c);
            close(fd);
            continue;
        }
        c->next = w->connections;
        if (c->next) c->next->previous = c;
        w->connections = c;
    }
}

// ---------------------------------------------------------------------------------------
// Threads
// ---------------------------------------------------------------------------------------

static void *worker_run(void *argument) {
    worker *w = argument;
    struct epoll_event events[EVENT_BATCH];
    while (!atomic_load_explicit(&stopping, memory_order_relaxed)) {
        int count = epoll_wait(w->epoll_fd, events, EVENT_BATCH, -1);
        if (count < 0) {
            if (errno == EINTR) continue;
            fail("epoll_wait");
        }
        if (server_protocol == PROTOCOL_HTTP) refresh_date(w);
        for (int i = 0; i < count; i++) {
            enum kind *kind = events[i].data.ptr;
            switch (*kind) {
            case KIND_CONNECTION: connection_event((connection *)kind, events[i].events); break;
            case KIND_LISTENER: accept_connections(w); break;
            case KIND_WAKE: atomic_store(&stopping, 1); break;
            }
        }
    }
    while (w->connections) connection_close(w->connections);
    return NULL;
}

// A listening socket on host:port with SO_REUSEPORT; returns it and sets *bound to its port.
static int listen_on(struct in_addr host, int port, int *bound) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket");
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) fail("SO_REUSEADDR");
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) fail("SO_REUSEPORT");
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr = host};
    if (bind(fd, (struct sockaddr *)&address, sizeof address) < 0) fail("bind");
    if (listen(fd, BACKLOG) < 0) fail("listen");
    socklen_t length = sizeof address;
    if (getsockname(fd, (struct sockaddr *)&address, &length) < 0) fail("getsockname");
    *bound = ntohs(address.sin_port);
    return fd;
}

static void usage(FILE *to) {
    fprintf(to,
            "usage: c-ceiling [--host 127.0.0.1] [--port 0] [--threads 2] [--protocol line|http]\n"
            "A bare C epoll server (line: echo, ping; http: GET / -> Hello, World!): the benchmark's ceiling.\n"
            "  --host      the IPv4 address to listen on (default 127.0.0.1)\n"
            "  --port      the TCP port, 0 for any free one (default 0)\n"
            "  --threads   event loop threads, each with its own epoll and listener (default 2)\n"
            "  --protocol  line (echo, ping) or http (GET / -> Hello, World!) (default line)\n");
}

// Parses a whole decimal number in [low, high] or exits with usage.
static int parse_number(const char *option, const char *text, int low, int high) {
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || end == text || *end || value < low || value > high) {
        fprintf(stderr, "c-ceiling: %s must be %d...%d, not '%s'\n", option, low, high, text);
        exit(2);
    }
    return (int)value;
}

int main(int argc, char **argv) {
    const char *host_text = "127.0.0.1";
    int port = 0, threads = 2;
    for (int i = 1; i < argc; i++) {
        const char *option = argv[i], *value = NULL;
        if (strcmp(option, "--help") == 0 || strcmp(option, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        // "--name value" or "--name=value".
        const char *equals = strchr(option, '=');
        char name[32];
        if (equals && (size_t)(equals - option) < sizeof name) {
            memcpy(name, option, (size_t)(equals - option));
            name[equals - option] = 0;
            option = name;
            value = equals + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        }
        if (!value) {
            fprintf(stderr, "c-ceiling: %s needs a value\n", option);
            usage(stderr);
            return 2;
        }
        if (strcmp(option, "--host") == 0) host_text = value;
        else if (strcmp(option, "--port") == 0) port = parse_number("--port", value, 0, 65535);
        else if (strcmp(option, "--threads") == 0) threads = parse_number("--threads", value, 1, 256);
        else if (strcmp(option, "--protocol") == 0 && strcmp(value, "line") == 0) server_protocol = PROTOCOL_LINE;
        else if (strcmp(option, "--protocol") == 0 && strcmp(value, "http") == 0) server_protocol = PROTOCOL_HTTP;
        else {
            fprintf(stderr, "c-ceiling: unknown option or value: %s %s\n", option, value);
            usage(stderr);
            return 2;
        }
    }
    struct in_addr host;
    if (inet_pton(AF_INET, host_text, &host) != 1) {
        fprintf(stderr, "c-ceiling: --host must be an IPv4 address, not '%s'\n", host_text);
        return 2;
    }

    // SIGTERM and SIGINT go to sigwait below, in the main thread only: block them before
    // any thread starts (threads inherit the mask). SIGPIPE: send uses MSG_NOSIGNAL anyway.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd < 0) fail("eventfd");
    worker *workers = calloc((size_t)threads, sizeof *workers);
    if (!workers) fail("calloc");
    // Every listener before any thread runs and before the ready line: the first takes the
    // port (any free one for --port 0), the others join it through SO_REUSEPORT.
    for (int i = 0; i < threads; i++) {
        worker *w = &workers[i];
        w->index = i;
        w->date_second = -1;
        refresh_date(w);
        w->listen_fd = listen_on(host, port, &port);
        w->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (w->epoll_fd < 0) fail("epoll_create1");
        w->listener_marker.kind = KIND_LISTENER;
        w->wake_marker.kind = KIND_WAKE;
        struct epoll_event listener = {.events = EPOLLIN, .data.ptr = &w->listener_marker};
        struct epoll_event wake = {.events = EPOLLIN, .data.ptr = &w->wake_marker};
        if (epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->listen_fd, &listener) < 0) fail("epoll_ctl");
        if (epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, wake_fd, &wake) < 0) fail("epoll_ctl");
    }
    for (int i = 0; i < threads; i++) {
        int error = pthread_create(&workers[i].thread, NULL, worker_run, &workers[i]);
        if (error) {
            errno = error;
            fail("pthread_create");
        }
    }

    // The ready line, in one write(2): the harness reads it from a pipe, where stdio would
    // hold it in its buffer.
    char ready[96];
    int length = snprintf(ready, sizeof ready, "c-ceiling ready protocol=%s port=%d\n",
                          server_protocol == PROTOCOL_LINE ? "line" : "http", port);
    for (int offset = 0; offset < length;) {
        ssize_t written = write(STDOUT_FILENO, ready + offset, (size_t)(length - offset));
        if (written < 0 && errno == EINTR) continue;
        if (written <= 0) break;
        offset += (int)written;
    }

    int signal_number = 0;
    while (sigwait(&stop_signals, &signal_number) != 0) {}
    // Wake every loop: the eventfd stays readable (nobody reads it), so each epoll reports it.
    atomic_store(&stopping, 1);
    uint64_t one = 1;
    if (write(wake_fd, &one, sizeof one) < 0) fail("eventfd write");
    for (int i = 0; i < threads; i++) {
        pthread_join(workers[i].thread, NULL);
        close(workers[i].epoll_fd);
        close(workers[i].listen_fd);
    }
    close(wake_fd);
    free(workers);
    return 0;
}
