/* stdlib.h: process end, environment, number parsing, sorting. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pyrite/power.h>
#include <pyrite/vmgenid.h>
#include "../libos_internal.h"

int errno;
extern char **environ;

#define MAX_ATEXIT 32
static void (*atexit_fns[MAX_ATEXIT])(void);
static int atexit_count;

int atexit(void (*fn)(void))
{
    if (atexit_count == MAX_ATEXIT)
        return -1;
    atexit_fns[atexit_count++] = fn;
    return 0;
}

void exit(int status)
{
    while (atexit_count)
        atexit_fns[--atexit_count]();
    pyrite_stdio_flush();
    pyrite_poweroff(status & 0xFF);
}

void _Exit(int status)
{
    pyrite_stdio_flush();
    pyrite_poweroff(status & 0xFF);
}

/* SIGABRT's number, as a shell would report 128 + 6. */
void abort(void)
{
    fputs("pyrite: abort()\n", stderr);
    _Exit(134);
}

void __assert_fail(const char *expr, const char *file, int line, const char *func)
{
    fprintf(stderr, "%s:%d: %s: assertion `%s' failed\n", file, line, func, expr);
    abort();
}

void perror(const char *s)
{
    if (s && *s)
        fprintf(stderr, "%s: %s\n", s, strerror(errno));
    else
        fprintf(stderr, "%s\n", strerror(errno));
}

/* ---- environment: environ[] from the command line, grown on setenv */

static size_t env_count(void)
{
    size_t n = 0;
    while (environ && environ[n])
        n++;
    return n;
}

static char **env_find(const char *name, size_t len)
{
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
            return e;
    return NULL;
}

char *getenv(const char *name)
{
    size_t len = strlen(name);
    char **e = env_find(name, len);
    return e ? *e + len + 1 : NULL;
}

int setenv(const char *name, const char *value, int overwrite)
{
    size_t len = strlen(name);
    if (!len || strchr(name, '=')) {
        errno = EINVAL;
        return -1;
    }
    char **e = env_find(name, len);
    if (e && !overwrite)
        return 0;
    char *entry = malloc(len + strlen(value) + 2);
    if (!entry) {
        errno = ENOMEM;
        return -1;
    }
    strcpy(entry, name);
    entry[len] = '=';
    strcpy(entry + len + 1, value);
    if (e) {
        *e = entry;                     /* the old string may live in the command line: leak it */
        return 0;
    }
    static char **owned;                /* environ array allocated by us, if any */
    size_t n = env_count();
    char **grown = realloc(owned, (n + 2) * sizeof *grown);
    if (!grown) {
        free(entry);
        errno = ENOMEM;
        return -1;
    }
    if (environ != grown)
        memcpy(grown, environ, n * sizeof *grown);
    grown[n] = entry;
    grown[n + 1] = NULL;
    environ = owned = grown;
    return 0;
}

int unsetenv(const char *name)
{
    char **e = env_find(name, strlen(name));
    if (e)
        for (; *e; e++)
            e[0] = e[1];
    return 0;
}

/* ---- numbers */

static unsigned long long parse_unsigned(const char *s, char **end, int base, int *negative, int *overflow)
{
    const char *p = s;
    unsigned long long value = 0;
    int any = 0;
    *negative = *overflow = 0;
    while (isspace((unsigned char)*p))
        p++;
    if (*p == '-' || *p == '+')
        *negative = *p++ == '-';
    if ((base == 0 || base == 16) && p[0] == '0' && (p[1] == 'x' || p[1] == 'X') && isxdigit((unsigned char)p[2])) {
        p += 2;
        base = 16;
    } else if (base == 0)
        base = *p == '0' ? 8 : 10;
    for (;; p++) {
        int d;
        if (isdigit((unsigned char)*p)) d = *p - '0';
        else if (isalpha((unsigned char)*p)) d = tolower((unsigned char)*p) - 'a' + 10;
        else break;
        if (d >= base)
            break;
        if (value > (ULLONG_MAX - (unsigned)d) / (unsigned)base)
            *overflow = 1;
        value = value * (unsigned)base + (unsigned)d;
        any = 1;
    }
    if (end)
        *end = (char *)(any ? p : s);
    return value;
}

long long strtoll(const char *s, char **end, int base)
{
    int neg, ovf;
    unsigned long long u = parse_unsigned(s, end, base, &neg, &ovf);
    if (ovf || u > (unsigned long long)LLONG_MAX + neg) {
        errno = ERANGE;
        return neg ? LLONG_MIN : LLONG_MAX;
    }
    return neg ? (long long)(0 - u) : (long long)u;
}

unsigned long long strtoull(const char *s, char **end, int base)
{
    int neg, ovf;
    unsigned long long u = parse_unsigned(s, end, base, &neg, &ovf);
    if (ovf) {
        errno = ERANGE;
        return ULLONG_MAX;
    }
    return neg ? 0 - u : u;
}

long strtol(const char *s, char **end, int base) { return strtoll(s, end, base); }
unsigned long strtoul(const char *s, char **end, int base) { return strtoull(s, end, base); }
int atoi(const char *s) { return (int)strtol(s, NULL, 10); }
long atol(const char *s) { return strtol(s, NULL, 10); }
long long atoll(const char *s) { return strtoll(s, NULL, 10); }

int abs(int v) { return v < 0 ? -v : v; }
long labs(long v) { return v < 0 ? -v : v; }
long long llabs(long long v) { return v < 0 ? -v : v; }
div_t div(int a, int b) { return (div_t){a / b, a % b}; }
ldiv_t ldiv(long a, long b) { return (ldiv_t){a / b, a % b}; }

/* rand(): a 64-bit LCG, as C wants it (srand(s) repeats a sequence; no srand is srand(1))
 * within one VM generation. When the VM generation ID (<pyrite/vmgenid.h>) differs from
 * the one seen at the last rand() or srand(), the VM was restored from a snapshot, perhaps
 * as one of many clones: the new ID is mixed into the state, so clones diverge. */
static uint64_t rand_state = 1;
static uint8_t rand_generation[VMGENID_SIZE];
static int rand_generation_seen;

static uint64_t mix64(uint64_t z)                     /* splitmix64's finaliser */
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Record the current generation; with `reseed`, mix it in if it changed since last seen. */
static void rand_follow_generation(int reseed)
{
    uint8_t id[VMGENID_SIZE];
    if (vmgenid_read(id) != 0)
        return;
    if (reseed && rand_generation_seen && memcmp(id, rand_generation, VMGENID_SIZE) != 0) {
        uint64_t low, high;
        memcpy(&low, id, 8);
        memcpy(&high, id + 8, 8);
        rand_state = mix64(rand_state ^ mix64(low ^ mix64(high)));
    }
    memcpy(rand_generation, id, VMGENID_SIZE);
    rand_generation_seen = 1;
}

void srand(unsigned seed)
{
    rand_follow_generation(0);                        /* an explicit seed stands as given */
    rand_state = seed;
}

int rand(void)
{
    rand_follow_generation(1);
    rand_state = rand_state * 6364136223846793005ull + 1442695040888963407ull;
    return (int)(rand_state >> 33);
}

/* ---- sorting: heapsort (no recursion, no allocation, O(n log n) worst case) */

static void swap_bytes(char *a, char *b, size_t n)
{
    while (n--) {
        char t = *a;
        *a++ = *b;
        *b++ = t;
    }
}

static void sift_down(char *base, size_t root, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= n)
            return;
        if (child + 1 < n && cmp(base + child * size, base + (child + 1) * size) < 0)
            child++;
        if (cmp(base + root * size, base + child * size) >= 0)
            return;
        swap_bytes(base + root * size, base + child * size, size);
        root = child;
    }
}

void qsort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    char *b = base;
    for (size_t i = n / 2; i-- > 0;)
        sift_down(b, i, n, size, cmp);
    for (size_t end = n; end > 1; end--) {
        swap_bytes(b, b + (end - 1) * size, size);
        sift_down(b, 0, end - 1, size, cmp);
    }
}

void *bsearch(const void *key, const void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    const char *b = base;
    while (n) {
        const char *mid = b + (n / 2) * size;
        int c = cmp(key, mid);
        if (c == 0)
            return (void *)mid;
        if (c > 0) {
            b = mid + size;
            n -= n / 2 + 1;
        } else
            n /= 2;
    }
    return NULL;
}
