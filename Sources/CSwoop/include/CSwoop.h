#pragma once
#include <sys/types.h>
#include <stdint.h>
// Glibc's Swift module leaves these out; EpollLoop needs them.
#include <sys/epoll.h>
#include <sys/eventfd.h>

/// Flags for cswoop_spawn.
#define CSWOOP_SPAWN_NEW_PGROUP 1
#define CSWOOP_SPAWN_SETSID     2
/// Every descriptor above the mapped ones is closed at exec: a daemon must not keep its
/// launcher's pipes and sockets open (a caller waiting for their end would wait forever).
#define CSWOOP_SPAWN_CLOSE_OTHERS 4

/// Forks and execs `path` without running any Swift code in the child: the child only
/// resets its signal state, optionally drops to `gid`/`uid` (-1: keep; supplementary groups
/// cleared), sets PR_SET_PDEATHSIG (after the drop, which would clear it) and a new process
/// group or session, applies `fd_map` (pairs of source, target), then execs.
/// Returns the pid, or -1 with errno set (also when exec failed in the child: the error
/// is reported through a close-on-exec pipe).
pid_t cswoop_spawn(const char *path, char *const argv[], char *const envp[],
                   const int *fd_map, int fd_map_count, int flags, int pdeathsig,
                   long long uid, long long gid);

/// The program's arguments as they were at start, before any process title was written.
int cswoop_original_argc(void);
const char *cswoop_original_argv(int index);

/// Rewrites the process title seen in /proc/<pid>/cmdline and `ps -o args`.
void cswoop_set_process_title(const char *title);

int cswoop_wifexited(int status);
int cswoop_wexitstatus(int status);
int cswoop_wifsignaled(int status);
int cswoop_wtermsig(int status);

int cswoop_set_pdeathsig(int signo);
int cswoop_set_child_subreaper(void);
/* Names the calling thread (at most 15 bytes), as `top -H` and /proc/<pid>/task/<tid>/comm show it. */
int cswoop_set_thread_name(const char *name);

/// Installs handlers for `signals` that only write the signal number, one byte, into a
/// non-blocking close-on-exec pipe; returns the read end, or -1 with errno.
int cswoop_signal_pipe(const int *signals, int count);
/// Ignores `signo` (SIG_IGN).
int cswoop_ignore_signal(int signo);

/// Binds a listening Unix stream socket in the abstract namespace (Linux). Close-on-exec.
int cswoop_listen_abstract(const char *name, int backlog);
/// Connects to an abstract Unix stream socket. Close-on-exec, blocking.
int cswoop_connect_abstract(const char *name);

/// A listening TCP socket or bound UDP socket: `udp` 0/1. Returns fd or -1 with errno.
/// `port_out` receives the port actually bound (for port 0).
int cswoop_bind_inet(const char *host, int port, int udp, int backlog, int reuse_port, int *port_out);

/// A close-on-exec, non-blocking pipe.
int cswoop_pipe(int fds[2]);

/// A listening Unix stream socket at `path` (an old socket file there is replaced). Close-on-exec.
int cswoop_listen_unix_path(const char *path, int backlog, int mode);

/// accept4 with SOCK_CLOEXEC | SOCK_NONBLOCK.
int cswoop_accept(int fd);

/// The credentials of a Unix socket's peer (the layout of Linux's `struct ucred`, which
/// Swift cannot see without _GNU_SOURCE), for getsockopt(SO_PEERCRED).
typedef struct cswoop_ucred {
    int32_t pid;
    uint32_t uid;
    uint32_t gid;
} cswoop_ucred;

/// A descriptor that becomes readable when process `pid` exits (pidfd_open, Linux 5.3+).
/// Close-on-exec. Returns -1 with errno (ENOSYS on older kernels).
int cswoop_pidfd_open(pid_t pid);

/// Points descriptor `target` at what `source` refers to, atomically, keeping `target`
/// close-on-exec when `cloexec` (dup3).
int cswoop_dup3(int source, int target, int cloexec);
