// The epoll API for Swift: Glibc's module map leaves <sys/epoll.h> out. Also for swift-epoll:
// <sys/eventfd.h>, and accept4 (a GNU extension, declared by <sys/socket.h> only under
// _GNU_SOURCE, which Glibc's module is not built with).
#ifndef SWOOP_BENCH_CEPOLL_H
#define SWOOP_BENCH_CEPOLL_H

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

int accept4(int fd, struct sockaddr *address, socklen_t *length, int flags);

#endif
