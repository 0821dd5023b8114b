// The epoll API for Swift: Glibc's module map leaves <sys/epoll.h> out.
#ifndef SWOOP_BENCH_CEPOLL_H
#define SWOOP_BENCH_CEPOLL_H

#include <sys/epoll.h>

#endif
