#ifndef _PYRITE_UNISTD_H
#define _PYRITE_UNISTD_H

#include <stddef.h>
#include <sys/types.h>

#define STDIN_FILENO  0
#define STDOUT_FILENO 1
#define STDERR_FILENO 2

ssize_t write(int fd, const void *buf, size_t n);
ssize_t read(int fd, void *buf, size_t n);
__attribute__((noreturn)) void _exit(int status);
unsigned sleep(unsigned seconds);
int usleep(useconds_t usec);

#endif
