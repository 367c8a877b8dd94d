/* printf-family conformance: standard C only, so the same file builds for the host
 * (glibc) and both must print the same bytes. */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    char buf[64];
    int n;
    printf("[%d] [%i] [%u] [%x] [%X] [%o]\n", -42, 42, 42u, 0xbeefu, 0xbeefu, 8u);
    printf("[%5d] [%-5d] [%05d] [%+d] [% d] [%+05d]\n", 42, 42, 42, 42, 42, -42);
    printf("[%ld] [%lld] [%lu] [%llx] [%zu] [%zd]\n", LONG_MIN, LLONG_MAX, ULONG_MAX, 0x123456789abcdefull,
           (size_t)12345, (ptrdiff_t)-7);
    printf("[%hhd] [%hhu] [%hd] [%hu]\n", (signed char)-1, (unsigned char)255, (short)-300, (unsigned short)65535);
    printf("[%#x] [%#X] [%#o] [%#x] [%08x] [%-8x|]\n", 255u, 255u, 8u, 0u, 0xabcu, 0xabcu);
    printf("[%.3d] [%8.3d] [%-8.3d|] [%.0d] [%.0x]\n", 7, 7, 7, 0, 0u);
    printf("[%s] [%10s] [%-10s|] [%.3s] [%*s] [%-*s|] [%.*s]\n", "abc", "abc", "abc", "abcdef", 6, "ab", 6, "ab", 2, "xyz");
    printf("[%c] [%3c] [%-3c|] [%%]\n", 'x', 'y', 'z');
    printf("[%p] [%p]\n", (void *)0x1234, (void *)0xffff8000deadbeefull);
    printf("[%d] [%d] [%u] [%x]\n", INT_MIN, INT_MAX, UINT_MAX, UINT_MAX);
    n = snprintf(buf, sizeof buf, "%s-%d-%x", "snprintf", 99, 0x99u);
    printf("[%s] n=%d\n", buf, n);
    n = snprintf(buf, 8, "%s", "truncated output");
    printf("[%s] n=%d\n", buf, n);
    n = snprintf(NULL, 0, "%d%s", 12345, "six");
    printf("n=%d\n", n);
    sprintf(buf, "%08lx|%-4u|", 0x1fUL, 3u);
    printf("[%s] len=%zu\n", buf, strlen(buf));
    fputs("fputs line\n", stdout);
    putchar('p');
    putchar('\n');
    puts("done");
    return 0;
}
