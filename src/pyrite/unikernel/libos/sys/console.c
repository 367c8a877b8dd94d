/* The console behind file descriptors 1 and 2: COM1, or a sink an application sets (the
 * function agent sends a handler's output to the host over vsock this way). */
#include <stdio.h>
#include <pyrite/console.h>
#include <pyrite/serial.h>

/* Flush stdio's buffers on a change of sink, if the program has stdio. */
extern int fflush(FILE *) __attribute__((weak));

static pyrite_console_sink console_sink;

void pyrite_console_set_sink(pyrite_console_sink sink)
{
    if (fflush)
        fflush(NULL);
    console_sink = sink;
}

void pyrite_console_write(const char *data, size_t n)
{
    if (console_sink)
        console_sink(data, n);
    else
        serial_write(data, n);
}
