/* unistd.h: file descriptors 0, 1 and 2 are the serial console. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <pyrite/console.h>
#include <pyrite/serial.h>

ssize_t write(int fd, const void *buf, size_t n)
{
    if (fd != 1 && fd != 2) {
        errno = EBADF;
        return -1;
    }
    fflush(fd == 1 ? stdout : stderr);
    pyrite_console_write(buf, n);
    return (ssize_t)n;
}

ssize_t read(int fd, void *buf, size_t n)
{
    if (fd != 0) {
        errno = EBADF;
        return -1;
    }
    fflush(stdout);
    if (!serial_rx_irq_enabled())
        serial_rx_irq_enable();
    return (ssize_t)serial_read(buf, n);
}

void _exit(int status) { _Exit(status); }

int usleep(useconds_t usec)
{
    struct timespec ts = {usec / 1000000, (long)(usec % 1000000) * 1000};
    return nanosleep(&ts, NULL);
}

unsigned sleep(unsigned seconds)
{
    struct timespec ts = {seconds, 0};
    nanosleep(&ts, NULL);
    return 0;
}
