#ifndef PYRITE_LIBC_FORMAT_H
#define PYRITE_LIBC_FORMAT_H

#include <stdarg.h>
#include <stddef.h>

/* A character sink; put() must increment count. */
struct sink {
    void (*put)(struct sink *s, char c);
    size_t count;
};

void format_to_sink(struct sink *s, const char *fmt, va_list ap);

#endif
