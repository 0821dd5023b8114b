#!/usr/bin/env python3
"""Chaos soak for swoop-demo (issue 7).

Runs load from many client connections against swoop-demo for a while, SIGKILLs random
workers and task workers and sends SIGUSR1/SIGUSR2 to the master at random, and checks:

  * every reply is the right one: `echo T` -> `T`, `taskwait T` -> `taskwait-done by=<id>
    pid=<pid> T.upper()` (the id a task worker's, the pair one the log saw start),
    `sleep MS` -> `slept MS`, HTTP `POST /echo` -> the body, `GET /task?text=T` -> the
    taskwait line; a wrong or garbled reply is a defect;
  * every failure is clean: a close (EOF/RST), an `error ...` line or an HTTP 5xx is counted;
    a request with no answer and no close within --timeout is a defect (hang);
  * the server's file descriptors and memory (the whole process tree) are flat: sampled after
    the warm-up and at the end, both after a quiet period with no client connected;
  * the tree settles back to master + manager + workers + task workers, with no zombie;
  * after SIGTERM every process of the tree ever seen is gone within --stop-timeout.

Exit status 0 only when every invariant holds (1: a defect, 2: the run could not be set up).
Python 3 standard library only. See Scripts/chaos/README.md.
"""

import argparse
import collections
import json
import os
import random
import re
import select
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

ALNUM = string.ascii_letters + string.digits
LINE_CHARS = ALNUM + " .,:-_/"
URL_CHARS = ALNUM + "-._"
MAX_DEFECTS_KEPT = 40


def now_stamp(t=None):
    """Local time as the server's log lines print it: 2026-11-28 21:03:04.512."""
    t = time.time() if t is None else t
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + ".%03d" % int((t % 1) * 1000)


# =========================================================================================
# Clients (each client process runs one thread per connection)
# =========================================================================================

class Hang(Exception):
    pass


class Closed(Exception):
    def __init__(self, how):
        super().__init__(how)
        self.how = how


class Conn:
    """A blocking socket with a read buffer; every wait is bounded by a deadline."""

    def __init__(self, host, port, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.local_port = self.sock.getsockname()[1]
        self.in_body = False    # HTTP: the current response's head has been read

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data, deadline):
        self.sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            self.sock.sendall(data)
        except socket.timeout:
            raise Hang()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            raise Closed("reset")
        except OSError as error:
            raise Closed("send-errno-%s" % error.errno)

    def fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Hang()
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(262144)
        except socket.timeout:
            raise Hang()
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            raise Closed("reset")
        except OSError as error:
            raise Closed("recv-errno-%s" % error.errno)
        if not chunk:
            raise Closed("eof")
        self.buf += chunk

    def read_until(self, marker, deadline):
        start = 0
        while True:
            index = self.buf.find(marker, start)
            if index >= 0:
                end = index + len(marker)
                data = bytes(self.buf[:end])
                del self.buf[:end]
                return data
            start = max(0, len(self.buf) - len(marker) + 1)
            self.fill(deadline)

    def read_exact(self, count, deadline):
        while len(self.buf) < count:
            self.fill(deadline)
        data = bytes(self.buf[:count])
        del self.buf[:count]
        return data

    def read_to_eof(self, deadline):
        try:
            while True:
                self.fill(deadline)
        except Closed:
            data = bytes(self.buf)
            self.buf.clear()
            return data

    def unsolicited(self, wait):
        """Bytes the server sent that nobody asked for (checked once all replies came)."""
        if self.buf:
            return bytes(self.buf)
        try:
            ready, _, _ = select.select([self.sock], [], [], wait)
            if ready:
                self.sock.settimeout(0.05)
                return self.sock.recv(65536)
        except OSError:
            pass
        return b""


TASKWAIT_RE = re.compile(rb"taskwait-done by=(\d+) pid=(\d+) (.*)", re.S)


class Request:
    __slots__ = ("kind", "arg", "body", "sent_wall")

    def __init__(self, kind, arg, body=None):
        self.kind = kind
        self.arg = arg
        self.body = body
        self.sent_wall = 0.0


class ClientThread(threading.Thread):
    def __init__(self, spec, index, http):
        super().__init__(daemon=True)
        self.spec = spec
        self.index = index
        self.http = http
        self.rng = random.Random("%s/%s/%s" % (spec["seed"], spec["client"], index))
        self.counts = collections.Counter()
        self.errors = collections.Counter()      # clean failures, by reason
        self.defects = []
        self.defect_count = 0
        self.task_pairs = set()
        self.max_latency = 0.0
        self.seq = 0
        self.tag = "c%dx%d" % (spec["client"], index)

    # --- bookkeeping --------------------------------------------------------------------

    def defect(self, kind, request, detail, conn):
        self.defect_count += 1
        self.counts["defect_" + kind] += 1
        record = {
            "kind": kind,
            "time": now_stamp(),
            "sent": now_stamp(request.sent_wall) if request and request.sent_wall else None,
            "conn": self.tag,
            "local_port": conn.local_port if conn else None,
            "request": describe(request) if request else None,
            "detail": detail,
        }
        if len(self.defects) < MAX_DEFECTS_KEPT:
            self.defects.append(record)
        sys.stderr.write("DEFECT %s\n" % json.dumps(record))
        sys.stderr.flush()

    def clean(self, reason, requests):
        for request in requests:
            self.counts["clean_failures"] += 1
            self.errors[reason] += 1

    def token(self, chars, long_share=0.1):
        self.seq += 1
        if self.rng.random() < long_share:
            pad = self.rng.randint(0, 4000)
        else:
            pad = self.rng.randint(0, 48)
        return "%sn%d-%s" % (self.tag, self.seq, "".join(self.rng.choices(chars, k=pad)))

    def connect(self, port):
        try:
            conn = Conn(self.spec["host"], port, self.spec["timeout"])
            self.counts["connects"] += 1
            return conn
        except socket.timeout:
            self.defect("hang", None, "connect() got no answer within %ss" % self.spec["timeout"], None)
        except ConnectionRefusedError:
            self.counts["connect_refused"] += 1
        except OSError as error:
            self.counts["connect_error_errno_%s" % error.errno] += 1
        time.sleep(0.05)
        return None

    # --- the loop -----------------------------------------------------------------------

    def run(self):
        end = self.spec["end"]
        conn = None
        try:
            while time.time() < end:
                if conn is None:
                    conn = self.connect(self.spec["http_port"] if self.http else self.spec["port"])
                    if conn is None:
                        continue
                batch = self.make_batch()
                keep = self.exchange(conn, batch)
                if not keep:
                    conn.close()
                    conn = None
                if self.spec["think_ms"]:
                    time.sleep(self.rng.uniform(0, 2 * self.spec["think_ms"]) / 1000.0)
            if conn is not None:
                extra = conn.unsolicited(0.3)
                if extra:
                    self.defect("wrong", None, "unsolicited bytes after every reply came: %r" % extra[:200], conn)
        except Exception as error:     # a bug in this script: make it loud, not silent
            self.counts["client_crash"] += 1
            self.defect("client-crash", None, "%s: %s" % (type(error).__name__, error), conn)
        finally:
            if conn is not None:
                conn.close()

    def make_batch(self):
        spec = self.spec
        depth = self.rng.randint(1, spec["pipeline"])
        batch = []
        for _ in range(depth):
            roll = self.rng.random()
            if self.http:
                if roll < spec["task_share"] and spec["task_workers"] > 0:
                    batch.append(Request("http-task", self.token(URL_CHARS, 0.02)))
                else:
                    size = self.rng.choice((0, 1, 7, 100, 1000)) if self.rng.random() < 0.9 else self.rng.randint(1, 65536)
                    body = self.token(URL_CHARS, 0).encode() + b"|" + self.rng.randbytes(size)
                    batch.append(Request("http-echo", None, body))
            else:
                if roll < spec["sleep_share"]:
                    batch.append(Request("sleep", str(self.rng.randint(1, 40))))
                elif roll < spec["sleep_share"] + spec["task_share"] and spec["task_workers"] > 0:
                    batch.append(Request("taskwait", self.token(LINE_CHARS)))
                else:
                    batch.append(Request("echo", self.token(LINE_CHARS)))
        return batch

    def exchange(self, conn, batch):
        """Sends a batch (pipelined) and checks each reply. False: drop the connection."""
        payload = b"".join(encode(request, self.spec) for request in batch)
        wall = time.time()
        for request in batch:
            request.sent_wall = wall
            self.counts["sent"] += 1
            self.counts["sent_" + request.kind] += 1
        try:
            conn.send(payload, time.monotonic() + self.spec["timeout"])
        except Hang:
            self.defect("hang", batch[0], "could not send the request within %ss" % self.spec["timeout"], conn)
            self.counts["abandoned"] += len(batch) - 1
            return False
        except Closed as closed:
            self.clean("closed-" + closed.how, batch)
            return False
        progress = time.monotonic()
        for position, request in enumerate(batch):
            try:
                verdict, detail = (self.read_http if self.http else self.read_line)(conn, request, progress)
            except Hang:
                self.defect("hang", request, "no reply and no close within %ss (%d of %d in its batch)"
                            % (self.spec["timeout"], position + 1, len(batch)), conn)
                self.counts["abandoned"] += len(batch) - position - 1
                return False
            except Closed as closed:
                partial = bytes(conn.buf)
                if self.http and conn.in_body:
                    partial = partial or b"(body)"
                elif partial and not plausible_prefix(request, partial):
                    self.defect("wrong", request, "closed (%s) after a garbled partial reply %r"
                                % (closed.how, partial[:300]), conn)
                    self.counts["abandoned"] += len(batch) - position - 1
                    return False
                self.clean("closed-" + closed.how + ("-mid-reply" if partial else ""), batch[position:])
                return False
            latency = time.monotonic() - progress
            progress = time.monotonic()
            if verdict == "ok":
                self.counts["ok"] += 1
                self.counts["ok_" + request.kind] += 1
                self.max_latency = max(self.max_latency, latency)
            elif verdict == "clean":
                self.clean(detail, [request])
            elif verdict == "clean-close":
                self.clean(detail, batch[position:])
                return False
            else:
                self.defect("wrong", request, detail, conn)
                self.counts["abandoned"] += len(batch) - position - 1
                return False
        return True

    def read_line(self, conn, request, progress):
        line = conn.read_until(b"\n", progress + self.spec["timeout"])[:-1]
        if request.kind == "echo":
            if line == request.arg.encode():
                return "ok", None
        elif request.kind == "sleep":
            if line == ("slept " + request.arg).encode():
                return "ok", None
        elif request.kind == "taskwait":
            verdict = self.check_taskwait(line, request.arg)
            if verdict:
                return verdict
        if line.startswith(b"error "):
            return "clean", "error-line: " + normalize(line.decode("utf-8", "replace"))
        return "wrong", "got %s" % describe_reply(line)

    def check_taskwait(self, data, token):
        match = TASKWAIT_RE.fullmatch(data)
        if not match:
            return None
        by, pid, text = int(match.group(1)), int(match.group(2)), match.group(3)
        if text != token.upper().encode():
            return "wrong", "taskwait answer for another text: %s" % describe_reply(data)
        first = self.spec["worker_num"]
        if not first <= by < first + self.spec["task_workers"] or pid <= 0:
            return "wrong", "taskwait answered by id %d pid %d, not a task worker" % (by, pid)
        self.task_pairs.add((by, pid))
        return "ok", None

    def read_http(self, conn, request, progress):
        deadline = progress + self.spec["timeout"]
        conn.in_body = False
        head = conn.read_until(b"\r\n\r\n", deadline)
        lines = head[:-4].split(b"\r\n")
        status_line = lines[0]
        match = re.fullmatch(rb"HTTP/1\.[01] (\d{3})(?: .*)?", status_line)
        if not match:
            return "wrong", "bad HTTP status line %r" % status_line[:200]
        status = int(match.group(1))
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                return "wrong", "bad HTTP header line %r" % line[:200]
            headers[name.strip().lower()] = value.strip()
        # A close from here on cuts a response that had begun: clean (the server closes a
        # connection whose worker died after the head went out).
        conn.in_body = True
        keep = headers.get(b"connection", b"").lower() != b"close"
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            body = bytearray()
            while True:
                size_line = conn.read_until(b"\r\n", deadline)[:-2]
                try:
                    size = int(size_line.split(b";")[0], 16)
                except ValueError:
                    return "wrong", "bad chunk size line %r" % size_line[:100]
                if size == 0:
                    while conn.read_until(b"\r\n", deadline) != b"\r\n":
                        pass
                    break
                body += conn.read_exact(size, deadline)
                if conn.read_exact(2, deadline) != b"\r\n":
                    return "wrong", "chunk not followed by CRLF"
            body = bytes(body)
        elif b"content-length" in headers:
            body = conn.read_exact(int(headers[b"content-length"]), deadline)
        else:
            body = conn.read_to_eof(deadline)
            keep = False
        if status == 200:
            if request.kind == "http-echo":
                verdict = ("ok", None) if body == request.body else (
                    "wrong", "POST /echo body differs: sent %d bytes starting %r, got %d bytes starting %r"
                    % (len(request.body), request.body[:60], len(body), body[:60]))
            else:
                verdict = self.check_taskwait(body, request.arg) or ("wrong", "GET /task got %s" % describe_reply(body))
        elif status in (500, 502, 503, 504):
            verdict = ("clean", "http-%d: %s" % (status, normalize(body.decode("utf-8", "replace"))))
        else:
            verdict = ("wrong", "HTTP status %d, body %r" % (status, body[:200]))
        if verdict[0] == "clean" and not keep:
            return "clean-close", verdict[1]
        if verdict[0] == "ok" and not keep:
            # Answered, then closed: fine for this one; the rest of the batch sees the close.
            return "ok", None
        return verdict


def encode(request, spec):
    if request.kind in ("echo", "taskwait", "sleep"):
        return ("%s %s\n" % (request.kind, request.arg)).encode()
    host = "%s:%d" % (spec["host"], spec["http_port"])
    if request.kind == "http-echo":
        return (b"POST /echo HTTP/1.1\r\nHost: " + host.encode() +
                b"\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
                str(len(request.body)).encode() + b"\r\n\r\n" + request.body)
    return ("GET /task?text=%s HTTP/1.1\r\nHost: %s\r\n\r\n" % (request.arg, host)).encode()


def plausible_prefix(request, partial):
    """A close mid-reply is clean only if what came is the start of a right answer."""
    if request.kind.startswith("http"):
        return b"HTTP/1.1 "[:len(partial)] == partial[:9]
    candidates = [b"error "]
    if request.kind == "echo":
        candidates.append(request.arg.encode())
    elif request.kind == "sleep":
        candidates.append(("slept " + request.arg).encode())
    else:
        match = re.match(rb"taskwait-done by=\d+ pid=\d+ ", partial)
        if match:
            return request.arg.upper().encode().startswith(partial[match.end():])
        return re.fullmatch(rb"t(a(s(k(w(a(i(t(-(d(o(n(e( (b(y(=(\d+( (p(i(d(=\d*)?)?)?)?)?)?)?)?)?)?)?)?)?)?)?)?)?)?)?)?", partial) is not None \
            or b"error "[:len(partial)] == partial[:6]
    return any(c.startswith(partial) or partial.startswith(b"error ") for c in candidates)


def describe(request):
    if request.kind == "http-echo":
        return "POST /echo (%d bytes, starting %r)" % (len(request.body), request.body[:40])
    if request.kind == "http-task":
        text = request.arg if len(request.arg) <= 80 else request.arg[:80] + "...(%d chars)" % len(request.arg)
        return "GET /task?text=%s" % text
    text = request.arg if len(request.arg) <= 80 else request.arg[:80] + "...(%d chars)" % len(request.arg)
    return "%s %s" % (request.kind, text)


def describe_reply(data):
    text = data.decode("utf-8", "replace")
    shown = repr(text if len(text) <= 160 else text[:160] + "...")
    owner = re.search(r"c(\d+)x(\d+)n(\d+)", text, re.I)
    if owner:
        shown += " (carries the token of connection c%sx%s, request %s)" % owner.groups()
    return shown


def normalize(text):
    """An error message without its numbers, to count kinds of clean failures."""
    text = re.sub(r"c\d+x\d+n\d+-\S*", "<token>", text.strip())
    return re.sub(r"\d+", "N", text)[:100]


def client_main(spec_json):
    spec = json.loads(spec_json)
    threads = [ClientThread(spec, i, http) for i, http in enumerate(spec["kinds"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = collections.Counter()
    errors = collections.Counter()
    defects = []
    pairs = set()
    max_latency = 0.0
    for thread in threads:
        counts.update(thread.counts)
        errors.update(thread.errors)
        defects.extend(thread.defects)
        pairs |= thread.task_pairs
        max_latency = max(max_latency, thread.max_latency)
    out = {"counts": counts, "errors": errors, "defects": defects[:MAX_DEFECTS_KEPT],
           "task_pairs": sorted(pairs), "max_latency": max_latency}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


# =========================================================================================
# The server's process tree, seen through /proc
# =========================================================================================

def read_stat(pid):
    """(state, ppid, starttime) of a process, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return fields[0].decode(), int(fields[1]), int(fields[19])


def read_until_eof(pipe, deadline):
    """Everything a pipe gives until its end, or None at the deadline (time.monotonic())."""
    chunks = []
    fd = pipe.fileno()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def read_stat_path(path):
    data = read_text(path)
    return data[data.rfind(")") + 2:].split(" ")[0] if ")" in data else None


def user_stacks(pid):
    """Every thread's backtrace (gdb, then lldb), Swift names demangled; a note if neither works."""
    for command in (["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt 40", "-ex", "detach"],
                    ["lldb", "--batch", "-p", str(pid), "-o", "thread backtrace all", "-o", "detach"]):
        try:
            result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            continue
        lines = [line[:400] for line in result.stdout.decode("utf-8", "replace").splitlines()
                 if re.match(r"\s*(Thread |#\d|\* thread|thread #|frame #)", line)]
        if not lines:
            continue
        text = "\n".join(lines) + "\n"
        try:
            text = subprocess.run(["swift", "demangle", "--simplified"], input=text.encode(),
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  timeout=60).stdout.decode("utf-8", "replace") or text
        except (OSError, subprocess.TimeoutExpired):
            pass
        return text
    return "(neither gdb nor lldb could attach)\n"


def read_role(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            text = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return None
    match = re.search(r": (master|manager|task worker|worker)(?: (\d+))?$", text)
    if not match:
        return None
    return match.group(1) if match.group(2) is None else "%s %s" % (match.group(1), match.group(2))


def role_kind(role):
    if role is None:
        return "unknown"
    return role.rsplit(" ", 1)[0] if role[-1].isdigit() else role


class Proc:
    __slots__ = ("pid", "start", "role", "first", "last", "zombie_since", "zombie_reported", "state")

    def __init__(self, pid, start):
        self.pid = pid
        self.start = start
        self.role = None
        self.first = time.time()
        self.last = self.first
        self.zombie_since = None
        self.zombie_reported = False
        self.state = "?"


class Tree:
    """Every process ever seen under the master, found by scanning /proc/*/stat ppids."""

    def __init__(self, master_pid, zombie_limit, on_defect):
        self.master = master_pid
        self.seen = {}          # pid -> Proc
        self.current = []       # Procs in the tree at the last scan
        self.lock = threading.Lock()
        self.zombie_limit = zombie_limit
        self.on_defect = on_defect

    def alive(self, proc):
        stat = read_stat(proc.pid)
        return stat is not None and stat[2] == proc.start

    def scan(self):
        stats = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                stat = read_stat(int(name))
                if stat:
                    stats[int(name)] = stat
        children = collections.defaultdict(list)
        for pid, (_, ppid, _) in stats.items():
            children[ppid].append(pid)
        found = []
        if self.master in stats:
            queue = [self.master]
            while queue:
                pid = queue.pop()
                found.append(pid)
                queue.extend(children.get(pid, ()))
        current = []
        now = time.time()
        with self.lock:
            for pid in found:
                state, _, start = stats[pid]
                proc = self.seen.get(pid)
                if proc is None or proc.start != start:
                    proc = Proc(pid, start)
                    self.seen[pid] = proc
                if state != "Z":
                    # Read every time: between fork and exec a new child still carries the
                    # manager's title, and a process retitles itself once it knows its role.
                    proc.role = read_role(pid) or proc.role
                proc.last = now
                proc.state = state
                if state == "Z":
                    if proc.zombie_since is None:
                        proc.zombie_since = now
                    elif now - proc.zombie_since > self.zombie_limit and not proc.zombie_reported:
                        proc.zombie_reported = True
                        self.on_defect("zombie", "%s (pid %d) has been a zombie for over %ss"
                                       % (proc.role, pid, self.zombie_limit))
                current.append(proc)
            self.current = current
        return current

    def snapshot(self):
        with self.lock:
            return list(self.current)

    def composition(self, procs):
        return collections.Counter(role_kind(p.role) for p in procs if p.state != "Z")

    def sample(self, procs):
        """{kind: [rss kB, fds, processes, most anon-inode fds in one process]} for the live
        processes given. `fds` counts sockets, pipes and files, what traffic could leak.
        Anonymous inodes (epoll, eventfd, timerfd) are the runtime's: libdispatch opens
        its own the first time a process sleeps or uses a global queue, so a process's
        count depends on what its handlers happened to do; they are held to a ceiling per
        process instead (--anon-fd-limit)."""
        result = collections.defaultdict(lambda: [0, 0, 0, 0])
        for proc in procs:
            if proc.state == "Z" or not self.alive(proc):
                continue
            rss = 0
            fds = anon = 0
            try:
                with open("/proc/%d/status" % proc.pid) as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            rss = int(line.split()[1])
                for name in os.listdir("/proc/%d/fd" % proc.pid):
                    try:
                        target = os.readlink("/proc/%d/fd/%s" % (proc.pid, name))
                    except OSError:
                        continue
                    if target.startswith("anon_inode:"):
                        anon += 1
                    else:
                        fds += 1
            except OSError:
                continue
            entry = result[role_kind(proc.role)]
            entry[0] += rss
            entry[1] += fds
            entry[2] += 1
            entry[3] = max(entry[3], anon)
        total = [sum(v[i] for v in result.values()) for i in range(3)] + [max([v[3] for v in result.values()] or [0])]
        result["total"] = total
        return dict(result)


# =========================================================================================
# The driver
# =========================================================================================

class Run:
    def __init__(self, args, binary, mode, seed):
        self.args = args
        self.binary = binary
        self.mode = mode
        self.seed = seed
        self.rng = random.Random("%s/%s/chaos" % (seed, mode))
        self.defects = []
        self.kills = collections.Counter()
        self.signals = collections.Counter()
        self.client_results = []
        self.clients = []
        self.server = None
        self.tree = None
        self.stop_monitor = threading.Event()
        self.stopping = False
        self.samples = {}
        self.notes = []
        self.dumped_on_hang = False
        self.client_lines_hidden = 0
        self.dumps = []
        self.dump_lock = threading.Lock()
        base = args.workdir or tempfile.mkdtemp(prefix="swoop-chaos-")
        self.workdir = os.path.join(base, "%s-seed%s" % (mode, seed)) if args.workdir else base
        os.makedirs(self.workdir, exist_ok=True)
        self.log_file = os.path.join(self.workdir, "server.log")
        self.expected = collections.Counter({"master": 1, "manager": 1, "worker": args.workers})
        if args.task_workers:
            self.expected["task worker"] = args.task_workers

    def say(self, text):
        print("[%s %s] %s" % (now_stamp()[11:], self.mode, text), flush=True)

    def defect(self, kind, detail, when=None):
        record = {"kind": kind, "time": now_stamp(when), "detail": detail}
        self.defects.append(record)
        self.say("DEFECT %s: %s" % (kind, detail))

    # --- the server -------------------------------------------------------------------

    def start_server(self):
        a = self.args
        # No HTTP listener without HTTP clients: a base-mode worker then serves its
        # connections on Swoop's own loop instead of NIO's.
        http = ["--http-port", "0"] if a.http_share > 0 else []
        command = [self.binary, "start", "--host", "127.0.0.1", "--port", "0"] + http + [
                   "--mode", self.mode, "--worker-num", str(a.workers),
                   "--task-worker-num", str(a.task_workers), "--log-file", self.log_file]
        command += a.server_arg
        self.say("starting: %s" % " ".join(command))
        self.server_out = open(os.path.join(self.workdir, "server.out"), "wb")
        self.server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.server_out,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        line = b""
        while b"\n" not in line:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.server.poll() is not None:
                raise SystemExit("swoop-demo did not print its ready line (exit %s); see %s"
                                 % (self.server.poll(), self.workdir))
            ready, _, _ = select.select([self.server.stdout], [], [], remaining)
            if ready:
                chunk = os.read(self.server.stdout.fileno(), 4096)
                if not chunk:
                    continue
                line += chunk
        ready_line = line.split(b"\n")[0].decode()
        self.say(ready_line)
        fields = dict(re.findall(r"(\S+)=(\d+)", ready_line))
        self.master_pid = int(fields["master"])
        self.port = int(fields["port"])
        self.http_port = int(fields["http-port"])
        if self.master_pid != self.server.pid:
            self.notes.append("the ready line's master %d is not the started pid %d"
                              % (self.master_pid, self.server.pid))
        threading.Thread(target=self.drain_stdout, daemon=True).start()
        self.tree = Tree(self.master_pid, self.args.zombie_limit, self.defect)
        self.tree.scan()
        threading.Thread(target=self.monitor, daemon=True).start()

    def drain_stdout(self):
        with open(os.path.join(self.workdir, "server.stdout"), "wb") as out:
            while True:
                chunk = os.read(self.server.stdout.fileno(), 65536)
                if not chunk:
                    return
                out.write(chunk)

    def monitor(self):
        while not self.stop_monitor.is_set():
            self.tree.scan()
            if not self.stopping and self.server.poll() is not None:
                self.defect("master-died", "the master exited by itself with status %s" % self.server.returncode)
                self.stopping = True
            time.sleep(0.2)

    # --- load -------------------------------------------------------------------------

    def start_clients(self, seconds, phase):
        a = self.args
        http_conns = int(round(a.connections * a.http_share))
        kinds = [False] * (a.connections - http_conns) + [True] * http_conns
        self.rng.shuffle(kinds)
        procs = max(1, min(a.client_procs, a.connections))
        end = time.time() + seconds
        clients = []
        for index in range(procs):
            spec = {
                "host": "127.0.0.1", "port": self.port, "http_port": self.http_port,
                "kinds": kinds[index::procs], "seed": "%s/%s/%s" % (self.seed, self.mode, phase),
                "client": index + (100 if phase == "chaos" else 0), "end": end, "timeout": a.timeout,
                "pipeline": a.pipeline, "task_share": a.task_share, "sleep_share": a.sleep_share,
                "worker_num": a.workers, "task_workers": a.task_workers, "think_ms": a.think_ms,
            }
            client = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--_client", json.dumps(spec)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
            threading.Thread(target=self.relay_client_stderr, args=(client,), daemon=True).start()
            clients.append(client)
        self.clients = clients
        return clients

    def relay_client_stderr(self, client):
        """Client defects go to the terminal as they happen; the first hang dumps the tree."""
        shown = 0
        for raw in client.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line.startswith("DEFECT ") and shown >= 5:
                self.client_lines_hidden += 1
                continue
            shown += 1
            print("    client: " + line[:400], flush=True)
            if '"kind": "hang"' in line and not self.dumped_on_hang:
                self.dumped_on_hang = True
                threading.Thread(target=self.dump_tree, daemon=True,
                                 args=("the first hang a client saw", self.args.backtraces, ("master", "manager"))).start()

    def wait_clients(self, clients, phase):
        results = []
        limit = time.monotonic() + self.args.timeout * 3 + 30
        for client in clients:
            out = read_until_eof(client.stdout, limit)
            if out is None:
                client.kill()
                client.wait()
                self.defect("client-stuck", "a client process did not finish; killed")
                continue
            client.wait()
            try:
                result = json.loads(out.decode().strip().splitlines()[-1])
            except (ValueError, IndexError):
                self.defect("client-crash", "a client process ended without a result (exit %s)" % client.returncode)
                continue
            result["phase"] = phase
            results.append(result)
        self.clients = []
        self.client_results.extend(results)
        return results

    # --- chaos ------------------------------------------------------------------------

    def chaos(self, seconds):
        a = self.args
        end = time.monotonic() + seconds
        next_kill = time.monotonic() + self.rng.uniform(0.5, 1.5) * a.kill_interval if a.kill_interval > 0 else None
        next_signal = time.monotonic() + self.rng.uniform(0.5, 1.5) * a.signal_interval if a.signal_interval > 0 else None
        next_report = time.monotonic() + 10
        while True:
            now = time.monotonic()
            if now >= end or self.stopping:
                return
            if next_kill is not None and now >= next_kill:
                self.kill_one()
                next_kill = now + self.rng.uniform(0.5, 1.5) * a.kill_interval
            if next_signal is not None and now >= next_signal:
                signo = self.rng.choice((signal.SIGUSR1, signal.SIGUSR2))
                os.kill(self.master_pid, signo)
                self.signals[signal.Signals(signo).name] += 1
                next_signal = now + self.rng.uniform(0.5, 1.5) * a.signal_interval
            if now >= next_report:
                self.say("chaos: %ds left, kills %s, signals %s, tree %s" % (
                    end - now, dict(self.kills), dict(self.signals),
                    dict(self.tree.composition(self.tree.snapshot()))))
                next_report = now + 10
            waits = [t for t in (next_kill, next_signal, next_report, end) if t is not None]
            time.sleep(max(0.0, min(waits) - time.monotonic()))

    def kill_one(self):
        candidates = [p for p in self.tree.snapshot()
                      if role_kind(p.role) in ("worker", "task worker") and p.state != "Z"]
        if self.args.kill != "all":
            wanted = "worker" if self.args.kill == "workers" else "task worker"
            candidates = [p for p in candidates if role_kind(p.role) == wanted]
        if not candidates:
            return
        # Workers and task workers alike often, whatever their numbers.
        kinds = sorted({role_kind(p.role) for p in candidates})
        kind = self.rng.choice(kinds)
        proc = self.rng.choice([p for p in candidates if role_kind(p.role) == kind])
        if not self.tree.alive(proc):
            return
        try:
            os.kill(proc.pid, signal.SIGKILL)
            self.kills[kind] += 1
        except ProcessLookupError:
            pass

    # --- settle, sample, probe, stop -------------------------------------------------

    def settle(self, label):
        """Waits for the tree to be exactly what was asked for, with no zombie, unchanged for 1 s."""
        deadline = time.monotonic() + self.args.settle_timeout
        previous = None
        while time.monotonic() < deadline:
            procs = self.tree.scan()
            comp = self.tree.composition(procs)
            zombies = [p for p in procs if p.state == "Z"]
            pids = frozenset(p.pid for p in procs)
            if comp == self.expected and not zombies and pids == previous:
                return procs
            previous = pids if comp == self.expected and not zombies else None
            time.sleep(1.0)
        procs = self.tree.scan()
        self.defect("not-settled", "%s: after %ss the tree is %s with zombies %s (expected %s)" % (
            label, self.args.settle_timeout, dict(self.tree.composition(procs)),
            [(p.pid, p.role) for p in procs if p.state == "Z"], dict(self.expected)))
        return procs

    def probe(self):
        """After the chaos: one of each request must work, and the counters are read."""
        problems = []
        stats = None
        try:
            conn = Conn("127.0.0.1", self.port, self.args.timeout)
            deadline = time.monotonic() + self.args.timeout
            conn.send(b"echo probe-echo\n", deadline)
            if conn.read_until(b"\n", deadline) != b"probe-echo\n":
                problems.append("echo")
            if self.args.task_workers:
                conn.send(b"taskwait probe-task\n", deadline)
                if not conn.read_until(b"\n", deadline).endswith(b" PROBE-TASK\n"):
                    problems.append("taskwait")
            conn.send(b"stats\n", deadline)
            stats = json.loads(conn.read_until(b"\n", deadline))
            conn.close()
            if self.http_port:
                conn = Conn("127.0.0.1", self.http_port, self.args.timeout)
                conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nprobe", deadline)
                if not conn.read_to_eof(deadline).endswith(b"\r\n\r\nprobe"):
                    problems.append("http echo")
                conn.close()
        except (Hang, Closed, OSError, ValueError) as error:
            problems.append("%s: %s" % (type(error).__name__, error))
        if problems:
            self.defect("probe", "after the chaos the server did not serve: %s" % ", ".join(problems))
        elif stats is not None and stats.get("connection_num") != 1:
            self.defect("connection-count", "with only the probe connected, stats says connection_num %s"
                        % stats.get("connection_num"))
        return stats

    def dump_tree(self, reason, backtraces, roles=None):
        """What every process and thread of the tree is doing: state, wchan, syscall, kernel
        stack; with backtraces, also each process's user-space stacks (lldb, or gdb)."""
        with self.dump_lock:
            path = os.path.join(self.workdir, "dump-%d.txt" % (len(self.dumps) + 1))
            self.dumps.append(path)
            procs = self.tree.scan() or [p for p in list(self.tree.seen.values()) if self.tree.alive(p)]
            with open(path, "w") as out:
                out.write("%s  %s\n\n" % (now_stamp(), reason))
                for proc in procs:
                    out.write("== %s pid %d state %s\n" % (proc.role, proc.pid, proc.state))
                    try:
                        tids = sorted(int(t) for t in os.listdir("/proc/%d/task" % proc.pid))
                    except OSError:
                        continue
                    for tid in tids:
                        base = "/proc/%d/task/%d/" % (proc.pid, tid)
                        comm, state, wchan, syscall, stack = (read_text(base + "comm").strip(),
                                                              (read_stat_path(base + "stat") or "?"),
                                                              read_text(base + "wchan").strip(),
                                                              read_text(base + "syscall").split(" ")[0].strip(),
                                                              read_text(base + "stack").strip())
                        out.write("   tid %d %-16s state %s wchan %-24s syscall %s\n" % (tid, comm, state, wchan or "-", syscall))
                        for line in stack.splitlines()[:6]:
                            out.write("        " + line + "\n")
                if backtraces:
                    for proc in procs:
                        if proc.state == "Z" or (roles and role_kind(proc.role) not in roles):
                            continue
                        out.write("\n== user-space stacks of %s pid %d\n" % (proc.role, proc.pid))
                        out.flush()
                        out.write(user_stacks(proc.pid))
            self.say("wrote %s (%s)" % (path, reason))

    def wait_gone(self, limit):
        """Waits up to `limit` s for every process of the tree ever seen to be gone; returns
        those still there (the master counts as gone once reaped)."""
        seen = list(self.tree.seen.values())
        deadline = time.monotonic() + limit
        while True:
            self.server.poll()
            remaining = [p for p in seen if (p.pid != self.server.pid and self.tree.alive(p))
                         or (p.pid == self.server.pid and self.server.returncode is None)]
            if not remaining or time.monotonic() >= deadline:
                return remaining
            time.sleep(0.05)

    def report_stray(self, remaining, when):
        self.dump_tree("processes left %s" % when, backtraces=self.args.backtraces)
        self.defect("stray", "%s these are still there: %s" % (when, ", ".join(
            "%s pid %d state %s" % (p.role, p.pid, (read_stat(p.pid) or ("gone",))[0]) for p in remaining)))

    def stop_server(self):
        self.stopping = True
        self.say("SIGTERM to the master %d; %d processes seen in its tree during the run"
                 % (self.master_pid, len(self.tree.seen)))
        os.kill(self.master_pid, signal.SIGTERM)
        started = time.monotonic()
        remaining = self.wait_gone(self.args.stop_timeout)
        self.stop_seconds = time.monotonic() - started
        if remaining:
            self.report_stray(remaining, "%ss after SIGTERM" % self.args.stop_timeout)
        self.stop_monitor.set()
        self.master_status = self.server.returncode
        if self.master_status not in (0, None):
            self.defect("master-exit", "the master exited with status %s after SIGTERM" % self.master_status)

    def after_master_died(self):
        """The master died by itself: its manager and workers must still go away."""
        self.say("the master is gone (status %s); its manager and workers must follow" % self.server.returncode)
        remaining = self.wait_gone(self.args.stop_timeout)
        if remaining:
            self.report_stray(remaining, "%ss after the master died" % self.args.stop_timeout)
        else:
            self.say("every process of the tree is gone")
        crash = read_text(os.path.join(self.workdir, "server.out")).strip().splitlines()
        if crash:
            self.notes.append("the master's stderr (%s) begins: %s" % (
                os.path.join(self.workdir, "server.out"), " | ".join(crash[:3])[:300]))

    def cleanup(self):
        """Whatever happened: kill our clients and every process of the tree we recorded."""
        self.stop_monitor.set()
        for client in self.clients:
            if client.poll() is None:
                client.kill()
                client.wait()
        if self.tree is not None:
            for proc in list(self.tree.seen.values()):
                if proc.pid != self.server.pid and self.tree.alive(proc):
                    try:
                        os.kill(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        if self.server is not None and self.server.poll() is None:
            self.server.kill()
        if self.server is not None:
            self.server.wait()

    # --- the run ----------------------------------------------------------------------

    def execute(self):
        a = self.args
        try:
            self.start_server()
            self.settle("start")
            self.say("warm-up: %d connections for %ss, no chaos" % (a.connections, a.warmup))
            self.wait_clients(self.start_clients(a.warmup, "warmup"), "warmup")
            time.sleep(a.quiet)
            self.samples["start"] = self.tree.sample(self.settle("after the warm-up"))
            self.say("baseline: %s" % fmt_sample(self.samples["start"]))
            self.say("chaos: %ds, %d connections, kill every ~%ss, USR1/USR2 every ~%ss, seed %s" % (
                a.duration, a.connections, a.kill_interval, a.signal_interval, self.seed))
            clients = self.start_clients(a.duration, "chaos")
            self.chaos(a.duration)
            self.say("chaos over: kills %s, signals %s; waiting for the clients" % (dict(self.kills), dict(self.signals)))
            self.wait_clients(clients, "chaos")
            if self.stopping:
                self.after_master_died()
                return
            time.sleep(a.quiet)
            defects_before = len(self.defects)
            procs = self.settle("after the chaos")
            self.samples["end"] = self.tree.sample(procs)
            self.say("end:      %s" % fmt_sample(self.samples["end"]))
            self.check_flat()
            self.stats = self.probe()
            if len(self.defects) > defects_before and any(
                    d["kind"] in ("not-settled", "probe") for d in self.defects[defects_before:]):
                self.dump_tree("the server is stuck after the chaos", backtraces=self.args.backtraces)
            self.stop_server()
        finally:
            self.cleanup()
            self.analyse_log()

    def check_flat(self):
        start, end = self.samples["start"]["total"], self.samples["end"]["total"]
        if end[1] - start[1] > self.args.fd_slack:
            self.defect("fd-leak", "open fds of the tree grew %d -> %d (slack %d): %s -> %s" % (
                start[1], end[1], self.args.fd_slack, fmt_sample(self.samples["start"]), fmt_sample(self.samples["end"])))
        if end[3] > self.args.anon_fd_limit:
            self.defect("fd-leak", "a process holds %d anonymous-inode fds (epoll, eventfd, timerfd; limit %d): %s" % (
                end[3], self.args.anon_fd_limit, fmt_sample(self.samples["end"])))
        if start[0] and (end[0] - start[0]) * 100.0 / start[0] > self.args.rss_growth:
            self.defect("rss-growth", "RSS of the tree grew %d -> %d kB (over %s%%)" % (
                start[0], end[0], self.args.rss_growth))

    def analyse_log(self):
        self.log_summary = collections.Counter()
        self.log_messages = collections.Counter()
        started = set()
        lines = []
        try:
            with open(self.log_file, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            pass
        self.log_lines = lines
        for line in lines:
            m = re.match(r"\S+ \S+ (\w+) \[([^\]]*)\] (.*)", line)
            if not m:
                continue
            level, who, message = m.groups()
            self.log_summary["level " + level] += 1
            if level not in ("INFO", "DEBUG", "TRACE"):
                self.log_messages["%s [%s] %s" % (level, re.sub(r"\d+", "N", who), normalize(message))] += 1
            s = re.match(r"onWorkerStart id=(\d+) pid=(\d+)", message)
            if s:
                started.add((int(s.group(1)), int(s.group(2))))
            for key, pattern in (("reloads started", r"reloading (all workers|the task workers)"),
                                 ("reloads queued", r"a reload is under way"),
                                 ("reloads complete", r"reload complete"),
                                 ("reloads rolled back", r"reload rolled back"),
                                 ("onWorkerError", r"onWorkerError"),
                                 ("requests stranded by a dead worker", r"died while handling its request")):
                if re.search(pattern, message) and (not key.startswith("reloads") or who == "manager" or who.startswith("manager ")):
                    self.log_summary[key] += 1
        self.reload_durations = []
        began = None
        for line in lines:
            m = re.match(r"(\S+ \S+) \w+ \[manager[^\]]*\] (reloading |reload complete|reload rolled back)", line)
            if not m:
                continue
            try:
                t = time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%d %H:%M:%S")) + int(m.group(1)[20:23]) / 1000.0
            except ValueError:
                continue
            if m.group(2) == "reloading ":
                began = t
            elif began is not None:
                self.reload_durations.append(t - began)
                began = None
        pairs = set()
        for result in self.client_results:
            pairs |= {tuple(p) for p in result["task_pairs"]}
        unknown = sorted(p for p in pairs if p not in started)
        if unknown and lines:
            self.defect("task-pid", "taskwait replies name (id, pid) pairs the log never saw start: %s" % unknown[:10])
        self.task_pairs = pairs

    # --- the report -------------------------------------------------------------------

    def report(self):
        counts = collections.Counter()
        errors = collections.Counter()
        client_defects = []
        max_latency = 0.0
        for result in self.client_results:
            counts.update(result["counts"])
            errors.update(result["errors"])
            client_defects.extend(result["defects"])
            max_latency = max(max_latency, result["max_latency"])
        wrong = counts["defect_wrong"]
        hangs = counts["defect_hang"]
        crashes = counts["defect_client-crash"]
        out = []
        w = out.append
        w("=" * 78)
        w("chaos soak, --mode %s, seed %s, %ss (+%ss warm-up), %d connections, %d workers + %d task workers"
          % (self.mode, self.seed, self.args.duration, self.args.warmup, self.args.connections,
             self.args.workers, self.args.task_workers))
        w("  kills survived      worker %d, task worker %d" % (self.kills["worker"], self.kills["task worker"]))
        w("  reload signals      SIGUSR1 %d, SIGUSR2 %d   (log: %d started, %d queued, %d complete, %d rolled back)"
          % (self.signals["SIGUSR1"], self.signals["SIGUSR2"], self.log_summary["reloads started"],
             self.log_summary["reloads queued"], self.log_summary["reloads complete"],
             self.log_summary["reloads rolled back"]))
        if self.reload_durations:
            d = sorted(self.reload_durations)
            w("  reload durations    min %.2fs, median %.2fs, max %.2fs (manager: reloading -> complete/rolled back)"
              % (d[0], d[len(d) // 2], d[-1]))
        w("  requests            sent %d, ok %d, clean failures %d, abandoned after a defect %d"
          % (counts["sent"], counts["ok"], counts["clean_failures"], counts["abandoned"]))
        kinds = ["echo", "taskwait", "sleep", "http-echo", "http-task"]
        w("  by kind (ok/sent)   " + ", ".join("%s %d/%d" % (k, counts["ok_" + k], counts["sent_" + k]) for k in kinds))
        w("  connections         %d opened, %d refused; slowest ok reply %.2fs"
          % (counts["connects"], counts["connect_refused"], max_latency))
        if errors:
            w("  clean failures by reason:")
            for reason, n in errors.most_common(12):
                w("      %6d  %s" % (n, reason))
        w("  wrong replies       %d   (must be 0)" % wrong)
        w("  hangs               %d   (must be 0)" % hangs)
        timeouts = sum(n for reason, n in errors.items() if "timed out" in reason)
        if timeouts:
            w("  note: %d taskwait(s) timed out (10 s, answered `error`/500): clean by the rules, but a sign"
              " that the task path stalled" % timeouts)
        if self.client_lines_hidden:
            w("  (%d more client DEFECT lines were not shown as they came)" % self.client_lines_hidden)
        if crashes:
            w("  client crashes      %d   (a bug in the script)" % crashes)
        if "start" in self.samples and "end" in self.samples:
            s, e = self.samples["start"], self.samples["end"]
            w("  fds                 %d -> %d   (slack %d)" % (s["total"][1], e["total"][1], self.args.fd_slack))
            w("  RSS                 %.1f -> %.1f MiB (%+.1f%%, limit +%s%%)" % (
                s["total"][0] / 1024.0, e["total"][0] / 1024.0,
                (e["total"][0] - s["total"][0]) * 100.0 / max(1, s["total"][0]), self.args.rss_growth))
            w("  by role (rss MiB/fds): start %s" % fmt_sample(s))
            w("                         end   %s" % fmt_sample(e))
        if getattr(self, "stats", None):
            st = self.stats
            w("  server stats        reload_count %s, connection_num %s (the probe's own), accept %s, close %s, requests %s"
              % (st.get("reload_count"), st.get("connection_num"), st.get("accept_count"),
                 st.get("close_count"), st.get("request_count")))
        if hasattr(self, "stop_seconds"):
            w("  stop                every process gone %.2fs after SIGTERM, master exit %s; %d pids seen in the run"
              % (self.stop_seconds, self.master_status, len(self.tree.seen)))
        w("  taskwait answerers  %d distinct (id, pid) pairs, all started per the log: %s"
          % (len(self.task_pairs), "yes" if not any(d["kind"] == "task-pid" for d in self.defects) else "NO"))
        w("  log                 %s: %s" % (self.log_file, ", ".join("%s %d" % kv for kv in sorted(self.log_summary.items()))))
        if self.log_messages:
            w("  log warnings/errors by kind:")
            for message, n in self.log_messages.most_common(10):
                w("      %6d  %s" % (n, message[:150]))
        for note in self.notes:
            w("  note: " + note)
        for path in self.dumps:
            w("  process dump        " + path)
        all_defects = client_defects + self.defects
        problems = wrong + hangs + crashes + len(self.defects)
        if problems:
            w("  DEFECTS (%d; first ones with the log lines around them in %s/defects.txt):"
              % (problems, self.workdir))
            for d in all_defects[:8]:
                w("    - " + json.dumps(d))
            self.write_defect_context(all_defects)
        w("  RESULT              %s" % ("PASS" if not problems else "FAIL"))
        w("=" * 78)
        text = "\n".join(out)
        print(text, flush=True)
        with open(os.path.join(self.workdir, "summary.txt"), "w") as f:
            f.write(text + "\n")
        return problems == 0

    def write_defect_context(self, defects):
        stamped = []
        for line in self.log_lines:
            try:
                t = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + int(line[20:23]) / 1000.0
            except (ValueError, IndexError):
                continue
            stamped.append((t, line))
        with open(os.path.join(self.workdir, "defects.txt"), "w") as f:
            for d in defects[:20]:
                f.write(json.dumps(d) + "\n")
                when = d.get("sent") or d.get("time")
                try:
                    t = time.mktime(time.strptime(when[:19], "%Y-%m-%d %H:%M:%S")) + int(when[20:23]) / 1000.0
                except (ValueError, TypeError):
                    continue
                window = [line for lt, line in stamped if t - 2.0 <= lt <= t + 2.0]
                f.write("  log lines from 2 s before to 2 s after %s:\n" % when)
                for line in window[:200]:
                    f.write("    " + line + "\n")
                f.write("\n")


def fmt_sample(sample):
    order = ["master", "manager", "worker", "task worker", "unknown"]
    parts = ["%s %.1f/%d" % (k, sample[k][0] / 1024.0, sample[k][1]) for k in order if k in sample]
    total = sample["total"]
    return "total %.1f MiB/%d fds (%s; at most %d anon-inode fds in a process)" % (
        total[0] / 1024.0, total[1], ", ".join(parts), total[3])


def build_demo():
    print("building swoop-demo (swift build -c release --product swoop-demo) in %s" % REPO, flush=True)
    for attempt in range(1, 5):
        result = subprocess.run(["swift", "build", "-c", "release", "--product", "swoop-demo"],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = result.stdout.decode("utf-8", "replace")
        if result.returncode == 0:
            break
        if "modified during the build" in output and attempt < 4:
            print("a source file changed during the build; again (%d)" % attempt, flush=True)
            time.sleep(5)
            continue
        sys.stderr.write(output[-4000:])
        raise SystemExit(2)
    bin_path = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode().strip()
    return os.path.join(bin_path, "swoop-demo")


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Chaos soak: load + SIGKILLed workers + reload signals against swoop-demo; "
                    "exit 0 only if every reply was right, no request hung, fds/RSS stayed flat "
                    "and every process went away.")
    p.add_argument("--mode", choices=("process", "base", "both"), default="both",
                   help="server mode; both runs process then base (default both)")
    p.add_argument("--duration", type=float, default=120, help="seconds of chaos per mode (120)")
    p.add_argument("--warmup", type=float, default=5, help="seconds of load before the baseline sample (5)")
    p.add_argument("--connections", type=int, default=48, help="client connections (48)")
    p.add_argument("--client-procs", type=int, default=4, help="client processes sharing them (4)")
    p.add_argument("--http-share", type=float, default=0.25, help="share of connections speaking HTTP (0.25)")
    p.add_argument("--task-share", type=float, default=0.3, help="share of requests that are taskwait (0.3)")
    p.add_argument("--sleep-share", type=float, default=0.05, help="share of line requests that are `sleep MS` (0.05)")
    p.add_argument("--pipeline", type=int, default=3, help="requests sent at once per connection, 1..N (3)")
    p.add_argument("--think-ms", type=float, default=0, help="mean pause between a connection's batches (0)")
    p.add_argument("--kill-interval", type=float, default=1.0, help="mean seconds between SIGKILLs (1; 0: none)")
    p.add_argument("--kill", choices=("all", "workers", "task-workers"), default="all",
                   help="which processes the SIGKILLs pick from (all)")
    p.add_argument("--signal-interval", type=float, default=5.0, help="mean seconds between USR1/USR2 (5; 0: none)")
    p.add_argument("--workers", type=int, default=4, help="--worker-num (4)")
    p.add_argument("--task-workers", type=int, default=2, help="--task-worker-num (2)")
    p.add_argument("--seed", help="random seed (default: random, printed)")
    p.add_argument("--timeout", type=float, default=15, help="seconds without answer nor close that make a hang (15)")
    p.add_argument("--quiet", type=float, default=5, help="seconds with no client before each sample (5)")
    p.add_argument("--settle-timeout", type=float, default=30, help="seconds for the tree to settle (30)")
    p.add_argument("--stop-timeout", type=float, default=10, help="seconds after SIGTERM for every pid to be gone (10)")
    p.add_argument("--zombie-limit", type=float, default=5, help="seconds a zombie may stay unreaped (5)")
    p.add_argument("--fd-slack", type=int, default=5, help="socket, pipe and file fds the tree may gain (5)")
    p.add_argument("--anon-fd-limit", type=int, default=16,
                   help="anonymous-inode fds (epoll, eventfd, timerfd) one process may hold (16)")
    p.add_argument("--rss-growth", type=float, default=30, help="percent RSS the tree may gain (30)")
    p.add_argument("--no-backtraces", dest="backtraces", action="store_false",
                   help="leave the gdb/lldb stacks out of the dumps (first hang, stuck server, stray processes)")
    p.add_argument("--binary", help="a built swoop-demo; default: build it (release) in the repository")
    p.add_argument("--no-build", action="store_true", help="use .build/release/swoop-demo as it is")
    p.add_argument("--workdir", help="where logs and reports go (default: a new /tmp/swoop-chaos-* dir)")
    p.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for swoop-demo start (repeatable), e.g. --server-arg=--max-request=500")
    return p.parse_args(argv)


def main(argv):
    if len(argv) == 2 and argv[0] == "--_client":
        client_main(argv[1])
        return 0
    args = parse_args(argv)
    if args.binary:
        binary = os.path.abspath(args.binary)
    elif args.no_build:
        binary = os.path.join(REPO, ".build", "release", "swoop-demo")
    else:
        binary = build_demo()
    if not os.access(binary, os.X_OK):
        print("no swoop-demo at %s" % binary, file=sys.stderr)
        return 2
    seed = args.seed or str(random.SystemRandom().randrange(1, 10 ** 6))
    modes = ["process", "base"] if args.mode == "both" else [args.mode]

    def on_term(signo, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_term)

    passed = []
    for mode in modes:
        run = Run(args, binary, mode, seed)
        try:
            run.execute()
        except KeyboardInterrupt:
            run.defect("interrupted", "the soak was interrupted")
            run.report()
            return 2
        passed.append((mode, run.report(), run.workdir))
    if len(passed) > 1:
        for mode, ok, workdir in passed:
            print("%-8s %s  (%s)" % (mode, "PASS" if ok else "FAIL", workdir))
    return 0 if all(ok for _, ok, _ in passed) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
