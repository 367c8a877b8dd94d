/* printf-style formatting into a sink; shared by printf, snprintf and friends.
 * Integers, strings, characters and pointers; no floating point (the library OS is
 * built without SSE/x87). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "format.h"

struct spec {
    int left, zero, plus, space, alt;
    int width, precision;       /* precision -1: none */
};

static void emit_padding(struct sink *s, char c, int n)
{
    while (n-- > 0)
        s->put(s, c);
}

static void emit_string(struct sink *s, const struct spec *sp, const char *str, size_t len)
{
    int pad = sp->width > (int)len ? sp->width - (int)len : 0;
    if (!sp->left)
        emit_padding(s, ' ', pad);
    for (size_t i = 0; i < len; i++)
        s->put(s, str[i]);
    if (sp->left)
        emit_padding(s, ' ', pad);
}

static void emit_number(struct sink *s, const struct spec *sp, uint64_t value, int negative,
                        unsigned base, int upper, const char *prefix)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char buf[24];
    int n = 0;
    while (value) {
        buf[n++] = digits[value % base];
        value /= base;
    }
    int ndigits = n;
    if (sp->precision >= 0) {
        if (ndigits < sp->precision)
            ndigits = sp->precision;     /* precision 0 with value 0 prints nothing */
    } else if (n == 0)
        ndigits = 1;
    char sign = negative ? '-' : sp->plus ? '+' : sp->space ? ' ' : 0;
    int prefix_len = prefix ? (int)strlen(prefix) : 0;
    int len = ndigits + (sign != 0) + prefix_len;
    int pad = sp->width > len ? sp->width - len : 0;
    int zero_pad = sp->zero && !sp->left && sp->precision < 0;
    if (!sp->left && !zero_pad)
        emit_padding(s, ' ', pad);
    if (sign)
        s->put(s, sign);
    for (int i = 0; i < prefix_len; i++)
        s->put(s, prefix[i]);
    if (zero_pad)
        emit_padding(s, '0', pad);
    emit_padding(s, '0', ndigits - n);
    while (n)
        s->put(s, buf[--n]);
    if (sp->left)
        emit_padding(s, ' ', pad);
}

void format_to_sink(struct sink *s, const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            s->put(s, *fmt);
            continue;
        }
        struct spec sp = {.precision = -1};
        for (;; fmt++) {
            char c = fmt[1];
            if (c == '-') sp.left = 1;
            else if (c == '0') sp.zero = 1;
            else if (c == '+') sp.plus = 1;
            else if (c == ' ') sp.space = 1;
            else if (c == '#') sp.alt = 1;
            else break;
        }
        fmt++;
        if (*fmt == '*') {
            sp.width = va_arg(ap, int);
            if (sp.width < 0) {
                sp.left = 1;
                sp.width = -sp.width;
            }
            fmt++;
        } else
            while (*fmt >= '0' && *fmt <= '9')
                sp.width = sp.width * 10 + (*fmt++ - '0');
        if (*fmt == '.') {
            fmt++;
            sp.precision = 0;
            if (*fmt == '*') {
                sp.precision = va_arg(ap, int);
                if (sp.precision < 0)
                    sp.precision = -1;
                fmt++;
            } else
                while (*fmt >= '0' && *fmt <= '9')
                    sp.precision = sp.precision * 10 + (*fmt++ - '0');
        }
        int size = 0;                   /* -2 hh, -1 h, 0 int, 1 long, 2 long long */
        for (;; fmt++) {
            if (*fmt == 'h') size--;
            else if (*fmt == 'l') size++;
            else if (*fmt == 'z' || *fmt == 'j' || *fmt == 't') size = 1;
            else break;
        }
        char conv = *fmt;
        if (!conv)
            break;
        uint64_t u;
        int64_t v;
        switch (conv) {
        case 'd':
        case 'i':
            v = size >= 1 ? va_arg(ap, long) : va_arg(ap, int);
            if (size == -1) v = (short)v;
            if (size == -2) v = (signed char)v;
            emit_number(s, &sp, v < 0 ? -(uint64_t)v : (uint64_t)v, v < 0, 10, 0, NULL);
            break;
        case 'u':
        case 'x':
        case 'X':
        case 'o':
            u = size >= 1 ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int);
            if (size == -1) u = (unsigned short)u;
            if (size == -2) u = (unsigned char)u;
            if (conv == 'u')
                emit_number(s, &sp, u, 0, 10, 0, NULL);
            else if (conv == 'o')
                emit_number(s, &sp, u, 0, 8, 0, sp.alt && u ? "0" : NULL);
            else
                emit_number(s, &sp, u, 0, 16, conv == 'X', sp.alt && u ? (conv == 'X' ? "0X" : "0x") : NULL);
            break;
        case 'p':
            u = (uintptr_t)va_arg(ap, void *);
            emit_number(s, &sp, u, 0, 16, 0, "0x");
            break;
        case 'c': {
            char c = (char)va_arg(ap, int);
            emit_string(s, &sp, &c, 1);
            break;
        }
        case 's': {
            const char *str = va_arg(ap, const char *);
            if (!str)
                str = "(null)";
            size_t len = sp.precision >= 0 ? strnlen(str, (size_t)sp.precision) : strlen(str);
            emit_string(s, &sp, str, len);
            break;
        }
        case 'n':
            *va_arg(ap, int *) = (int)s->count;
            break;
        case '%':
            s->put(s, '%');
            break;
        default:                        /* unknown conversion: print it as written */
            s->put(s, '%');
            s->put(s, conv);
            break;
        }
    }
}
