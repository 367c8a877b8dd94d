/* stdio on the serial console: stdout and stderr write to COM1 (stdout line-buffered),
 * stdin reads from it (interrupt-driven when possible). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <pyrite/serial.h>
#include "format.h"
#include "../libos_internal.h"

struct pyrite_file {
    int fd;
    int line_buffered;
    size_t len;
    int unget;                  /* -1: none */
    int eof, error;
    char buf[256];
};

static struct pyrite_file files[3] = {
    {.fd = 0, .unget = -1},
    {.fd = 1, .line_buffered = 1, .unget = -1},
    {.fd = 2, .unget = -1},
};
FILE *stdin = &files[0];
FILE *stdout = &files[1];
FILE *stderr = &files[2];

int fflush(FILE *f)
{
    if (!f) {
        fflush(stdout);
        return fflush(stderr);
    }
    if (f->len) {
        serial_write(f->buf, f->len);
        f->len = 0;
    }
    return 0;
}

void pyrite_stdio_flush(void) { fflush(NULL); }

size_t fwrite(const void *data, size_t size, size_t count, FILE *f)
{
    const char *p = data;
    size_t n = size * count;
    if (f == stdin) {
        f->error = 1;
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        f->buf[f->len++] = p[i];
        if (f->len == sizeof f->buf || (f->line_buffered && p[i] == '\n'))
            fflush(f);
    }
    if (!f->line_buffered)
        fflush(f);
    return count;
}

int fputc(int c, FILE *f)
{
    char ch = (char)c;
    return fwrite(&ch, 1, 1, f) == 1 ? (unsigned char)c : EOF;
}

int putc(int c, FILE *f) { return fputc(c, f); }
int putchar(int c) { return fputc(c, stdout); }

int fputs(const char *s, FILE *f)
{
    fwrite(s, 1, strlen(s), f);
    return 0;
}

int puts(const char *s)
{
    fputs(s, stdout);
    return fputc('\n', stdout) == EOF ? EOF : 0;
}

struct file_sink {
    struct sink sink;
    FILE *f;
};

static void file_put(struct sink *s, char c)
{
    fputc(c, ((struct file_sink *)s)->f);
    s->count++;
}

int vfprintf(FILE *f, const char *fmt, va_list ap)
{
    int buffered = f->line_buffered;
    f->line_buffered = 2;       /* flush once at the end, not per byte */
    struct file_sink fs = {{file_put, 0}, f};
    format_to_sink(&fs.sink, fmt, ap);
    f->line_buffered = buffered;
    if (!buffered || memchr(f->buf, '\n', f->len))
        fflush(f);
    return (int)fs.sink.count;
}

int fprintf(FILE *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vfprintf(f, fmt, ap);
    va_end(ap);
    return n;
}

int vprintf(const char *fmt, va_list ap) { return vfprintf(stdout, fmt, ap); }

int printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vfprintf(stdout, fmt, ap);
    va_end(ap);
    return n;
}

struct buffer_sink {
    struct sink sink;
    char *buf;
    size_t size;
};

static void buffer_put(struct sink *s, char c)
{
    struct buffer_sink *b = (struct buffer_sink *)s;
    if (s->count + 1 < b->size)
        b->buf[s->count] = c;
    s->count++;
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct buffer_sink b = {{buffer_put, 0}, buf, size};
    format_to_sink(&b.sink, fmt, ap);
    if (size)
        buf[b.sink.count < size ? b.sink.count : size - 1] = 0;
    return (int)b.sink.count;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

int vsprintf(char *buf, const char *fmt, va_list ap) { return vsnprintf(buf, (size_t)-1 >> 1, fmt, ap); }

int sprintf(char *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsprintf(buf, fmt, ap);
    va_end(ap);
    return n;
}

int fgetc(FILE *f)
{
    if (f != stdin) {
        f->error = 1;
        return EOF;
    }
    if (f->unget >= 0) {
        int c = f->unget;
        f->unget = -1;
        return c;
    }
    fflush(stdout);
    if (!serial_rx_irq_enabled())
        serial_rx_irq_enable();     /* falls back to polling if there is no IOAPIC */
    int c = serial_read_byte();
    if (c == SERIAL_EOF) {
        f->eof = 1;
        return EOF;
    }
    return c;
}

int getc(FILE *f) { return fgetc(f); }
int getchar(void) { return fgetc(stdin); }

int ungetc(int c, FILE *f)
{
    if (c == EOF || f->unget >= 0)
        return EOF;
    f->unget = (unsigned char)c;
    return c;
}

/* A line ends at '\n' or '\r' (terminals send '\r'), which is stored as '\n'; input
 * ends where the VMM's stdin ended. */
char *fgets(char *s, int size, FILE *f)
{
    int n = 0;
    while (n < size - 1) {
        int c = fgetc(f);
        if (c == EOF)
            break;
        if (c == '\r')
            c = '\n';
        s[n++] = (char)c;
        if (c == '\n')
            break;
    }
    if (n == 0)
        return NULL;
    s[n] = 0;
    return s;
}

size_t fread(void *data, size_t size, size_t count, FILE *f)
{
    char *p = data;
    size_t n = size * count;
    for (size_t i = 0; i < n; i++) {
        int c = fgetc(f);
        if (c == EOF)
            return i / size;
        p[i] = (char)c;
    }
    return count;
}

int feof(FILE *f) { return f->eof; }
int ferror(FILE *f) { return f->error; }
void clearerr(FILE *f) { f->eof = f->error = 0; }
int fileno(FILE *f) { return f->fd; }
