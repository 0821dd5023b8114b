#define _GNU_SOURCE
#include "CSwoop.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stddef.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <grp.h>
#if __has_include(<linux/close_range.h>)
#include <linux/close_range.h>
#endif

extern char **environ;

static int saved_argc;
static char **saved_argv;      /* heap copies, never rewritten */
static char **live_argv;       /* the kernel's argv area, rewritten for titles */
static char *title_area;       /* contiguous argv+environ strings */
static size_t title_area_len;

/* glibc passes argc/argv/envp to ELF constructors; capturing them here is the only way to
   reach the real argv memory before Swift code (or a title) can change it. */
__attribute__((constructor)) static void cswoop_capture_args(int argc, char **argv, char **envp) {
    (void)envp;
    saved_argc = argc;
    live_argv = argv;
    saved_argv = calloc((size_t)argc + 1, sizeof(char *));
    for (int i = 0; i < argc && saved_argv; i++) saved_argv[i] = strdup(argv[i]);
}

int cswoop_original_argc(void) { return saved_argc; }
const char *cswoop_original_argv(int index) {
    if (index < 0 || index >= saved_argc || !saved_argv) return NULL;
    return saved_argv[index];
}

/* The title may be longer than argv's own strings, so (as nginx does) the environment
   strings that follow argv in memory are moved to the heap and their space reused. */
static void prepare_title_area(void) {
    if (title_area || !live_argv || saved_argc == 0) return;
    char *start = live_argv[0];
    char *end = live_argv[0] + strlen(live_argv[0]) + 1;
    for (int i = 1; i < saved_argc; i++) {
        if (live_argv[i] == end) end = live_argv[i] + strlen(live_argv[i]) + 1;
    }
    if (environ) {
        size_t n = 0;
        while (environ[n]) n++;
        char **copy = calloc(n + 1, sizeof(char *));
        if (copy) {
            for (size_t i = 0; i < n; i++) {
                if (environ[i] == end) end = environ[i] + strlen(environ[i]) + 1;
                copy[i] = strdup(environ[i]);
            }
            environ = copy;
        }
    }
    title_area = start;
    title_area_len = (size_t)(end - start);
}

void cswoop_set_process_title(const char *title) {
    prepare_title_area();
    if (!title_area || title_area_len < 2) return;
    size_t n = strlen(title);
    if (n > title_area_len - 1) n = title_area_len - 1;
    memcpy(title_area, title, n);
    memset(title_area + n, 0, title_area_len - n);
    for (int i = 1; i < saved_argc; i++) live_argv[i] = title_area + title_area_len - 1;
    char comm[16];
    const char *base = title;
    strncpy(comm, base, sizeof(comm) - 1);
    comm[15] = 0;
    prctl(PR_SET_NAME, comm, 0, 0, 0);
}

int cswoop_wifexited(int status) { return WIFEXITED(status); }
int cswoop_wexitstatus(int status) { return WEXITSTATUS(status); }
int cswoop_wifsignaled(int status) { return WIFSIGNALED(status); }
int cswoop_wtermsig(int status) { return WTERMSIG(status); }

int cswoop_set_pdeathsig(int signo) { return prctl(PR_SET_PDEATHSIG, signo, 0, 0, 0); }
int cswoop_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }
int cswoop_set_thread_name(const char *name) { return prctl(PR_SET_NAME, name, 0, 0, 0); }

pid_t cswoop_spawn(const char *path, char *const argv[], char *const envp[],
                   const int *fd_map, int fd_map_count, int flags, int pdeathsig,
                   long long uid, long long gid) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(report[0]);
        close(report[1]);
        errno = e;
        return -1;
    }
    if (pid == 0) {
        /* Child: only async-signal-safe calls from here to exec. */
        int err = 0;
        sigset_t all;
        sigemptyset(&all);
        for (int s = 1; s < NSIG; s++) {
            if (s == SIGKILL || s == SIGSTOP) continue;
            struct sigaction sa;
            if (sigaction(s, NULL, &sa) == 0 && sa.sa_handler != SIG_IGN) {
                sa.sa_handler = SIG_DFL;
                sa.sa_flags = 0;
                sigaction(s, &sa, NULL);
            }
        }
        signal(SIGPIPE, SIG_DFL);
        sigprocmask(SIG_SETMASK, &all, NULL);
        if (flags & CSWOOP_SPAWN_SETSID) {
            if (setsid() < 0) { err = errno; goto fail; }
        } else if (flags & CSWOOP_SPAWN_NEW_PGROUP) {
            if (setpgid(0, 0) != 0) { err = errno; goto fail; }
        }
        if (gid >= 0) {
            if (setgroups(0, NULL) != 0 || setgid((gid_t)gid) != 0) { err = errno; goto fail; }
        }
        if (uid >= 0) {
            if (setuid((uid_t)uid) != 0) { err = errno; goto fail; }
        }
        if (pdeathsig > 0) {
            if (prctl(PR_SET_PDEATHSIG, pdeathsig, 0, 0, 0) != 0) { err = errno; goto fail; }
            /* The parent may have died before prctl took effect. */
            if (getppid() != parent) _exit(1);
        }
        /* Move every source above every target first so that dup2 never clobbers a
           source that a later pair still needs. */
        int moved[64];
        if (fd_map_count > 64) { err = EINVAL; goto fail; }
        int floor = 3;
        for (int i = 0; i < fd_map_count; i++) {
            if (fd_map[2 * i + 1] >= floor) floor = fd_map[2 * i + 1] + 1;
        }
        if (report[1] >= floor) floor = report[1] + 1;
        for (int i = 0; i < fd_map_count; i++) {
            moved[i] = fcntl(fd_map[2 * i], F_DUPFD_CLOEXEC, floor);
            if (moved[i] < 0) { err = errno; goto fail; }
        }
        for (int i = 0; i < fd_map_count; i++) {
            if (dup2(moved[i], fd_map[2 * i + 1]) < 0) { err = errno; goto fail; }
        }
        if (flags & CSWOOP_SPAWN_CLOSE_OTHERS) {
            /* Marked close-on-exec rather than closed: the report pipe must live until exec. */
            int first = 0;
            for (int i = 0; i < fd_map_count; i++) {
                if (fd_map[2 * i + 1] >= first) first = fd_map[2 * i + 1] + 1;
            }
#if defined(SYS_close_range) && defined(CLOSE_RANGE_CLOEXEC)
            if (syscall(SYS_close_range, (unsigned)first, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
#endif
            {
                long limit = sysconf(_SC_OPEN_MAX);
                if (limit < 0 || limit > 65536) limit = 65536;
                for (int fd = first; fd < limit; fd++) {
                    int fdflags = fcntl(fd, F_GETFD);
                    if (fdflags >= 0 && !(fdflags & FD_CLOEXEC)) fcntl(fd, F_SETFD, fdflags | FD_CLOEXEC);
                }
            }
        }
        execve(path, argv, envp);
        err = errno;
    fail:
        (void)!write(report[1], &err, sizeof(err));
        _exit(127);
    }
    close(report[1]);
    int child_err = 0;
    ssize_t got;
    do {
        got = read(report[0], &child_err, sizeof(child_err));
    } while (got < 0 && errno == EINTR);
    close(report[0]);
    if (got == (ssize_t)sizeof(child_err)) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        errno = child_err;
        return -1;
    }
    return pid;
}

static int signal_write_fd = -1;

static void on_signal(int signo) {
    int saved = errno;
    unsigned char b = (unsigned char)signo;
    (void)!write(signal_write_fd, &b, 1);
    errno = saved;
}

int cswoop_signal_pipe(const int *signals, int count) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
    signal_write_fd = fds[1];
    for (int i = 0; i < count; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        if (sigaction(signals[i], &sa, NULL) != 0) return -1;
    }
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < count; i++) sigaddset(&set, signals[i]);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    return fds[0];
}

int cswoop_ignore_signal(int signo) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    return sigaction(signo, &sa, NULL);
}

static socklen_t abstract_address(const char *name, struct sockaddr_un *addr) {
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    size_t n = strlen(name);
    if (n > sizeof(addr->sun_path) - 1) n = sizeof(addr->sun_path) - 1;
    memcpy(addr->sun_path + 1, name, n);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

int cswoop_listen_abstract(const char *name, int backlog) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_un addr;
    socklen_t len = abstract_address(name, &addr);
    if (bind(fd, (struct sockaddr *)&addr, len) != 0 || listen(fd, backlog) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int cswoop_connect_abstract(const char *name) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_un addr;
    socklen_t len = abstract_address(name, &addr);
    int rc;
    do {
        rc = connect(fd, (struct sockaddr *)&addr, len);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int cswoop_bind_inet(const char *host, int port, int udp, int backlog, int reuse_port, int *port_out) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = udp ? SOCK_DGRAM : SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char service[16];
    snprintf(service, sizeof(service), "%d", port);
    int gai = getaddrinfo(host, service, &hints, &res);
    if (gai != 0) {
        errno = (gai == EAI_SYSTEM) ? errno : EADDRNOTAVAIL;
        return -1;
    }
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        freeaddrinfo(res);
        errno = e;
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuse_port) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || (!udp && listen(fd, backlog) != 0)) {
        int e = errno;
        freeaddrinfo(res);
        close(fd);
        errno = e;
        return -1;
    }
    freeaddrinfo(res);
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    if (getsockname(fd, (struct sockaddr *)&bound, &blen) == 0) {
        if (bound.ss_family == AF_INET) *port_out = ntohs(((struct sockaddr_in *)&bound)->sin_port);
        else if (bound.ss_family == AF_INET6) *port_out = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
    }
    return fd;
}

int cswoop_pipe(int fds[2]) { return pipe2(fds, O_CLOEXEC | O_NONBLOCK); }

int cswoop_listen_unix_path(const char *path, int backlog, int mode) {
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(addr.sun_path)) { errno = ENAMETOOLONG; return -1; }
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    unlink(path);
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, backlog) != 0 ||
        (mode > 0 && chmod(path, (mode_t)mode) != 0)) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int cswoop_accept(int fd) { return accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK); }

#include <sys/syscall.h>

int cswoop_pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

int cswoop_dup3(int source, int target, int cloexec) {
    return dup3(source, target, cloexec ? O_CLOEXEC : 0);
}
