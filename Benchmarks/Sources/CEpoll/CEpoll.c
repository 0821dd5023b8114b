// Nothing to compile: the target only exports <sys/epoll.h> (see include/CEpoll.h). SwiftPM
// needs one source file to build a C target.
#include "CEpoll.h"
