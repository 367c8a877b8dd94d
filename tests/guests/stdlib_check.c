/* string.h, ctype.h and stdlib.h results, printed. Standard C only, so the same file
 * builds for the host (glibc) and both must print the same lines. Run with the
 * environment GREETING=hello (guest: command line word GREETING=hello). */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_int(const void *a, const void *b) { return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b); }
static int sign(int v) { return (v > 0) - (v < 0); }

int main(void)
{
    /* string.h */
    char buf[64] = "hello";
    strcat(buf, ", world");
    printf("strcat=%s strlen=%zu\n", buf, strlen(buf));
    printf("strchr=%s strrchr=%s strstr=%s\n", strchr(buf, 'o'), strrchr(buf, 'o'), strstr(buf, "wor"));
    printf("strstr_missing=%d strchr_nul=%d\n", strstr(buf, "xyz") == NULL, strchr(buf, 0) == buf + strlen(buf));
    printf("cmp=%d,%d,%d ncmp=%d casecmp=%d\n", sign(strcmp("abc", "abd")), sign(strcmp("b", "a")),
           strcmp("same", "same"), strncmp("abcdef", "abcxyz", 3), strcasecmp("HeLLo", "hello"));
    printf("memcmp=%d spn=%zu cspn=%zu pbrk=%s\n", sign(memcmp("ab\0c", "ab\0d", 4)), strspn("aabbc", "ab"),
           strcspn("hello world", " "), strpbrk("hello world", "ow"));
    char overlap[16] = "abcdefghij";
    memmove(overlap + 2, overlap, 6);
    printf("memmove_up=%s ", overlap);
    memmove(overlap, overlap + 3, 5);
    printf("memmove_down=%s\n", overlap);
    char padded[8];
    strncpy(padded, "ab", sizeof padded);
    printf("strncpy_pad=%d%d%d\n", padded[2], padded[5], padded[7]);
    char toks[] = " one,two,,three ";
    for (char *t = strtok(toks, " ,"); t; t = strtok(NULL, " ,"))
        printf("tok=%s\n", t);
    char *dup = strdup("duplicate");
    printf("strdup=%s ndup=%s\n", dup, strndup("duplicate", 3));
    free(dup);

    /* ctype.h */
    int classes[8] = {0};
    for (int c = 0; c < 128; c++) {
        classes[0] += !!isalpha(c); classes[1] += !!isdigit(c); classes[2] += !!isspace(c);
        classes[3] += !!ispunct(c); classes[4] += !!isxdigit(c); classes[5] += !!isprint(c);
        classes[6] += !!iscntrl(c); classes[7] += toupper(c) != c;
    }
    printf("ctype alpha=%d digit=%d space=%d punct=%d xdigit=%d print=%d cntrl=%d upper=%d\n", classes[0],
           classes[1], classes[2], classes[3], classes[4], classes[5], classes[6], classes[7]);

    /* stdlib.h numbers */
    char *end;
    printf("strtol=%ld,%ld,%ld,%ld\n", strtol("  -123xyz", &end, 10), strtol("0x1f", NULL, 0), strtol("0755", NULL, 0),
           strtol("zz", NULL, 36));
    printf("strtol_end=%s\n", end);
    errno = 0;
    long big = strtol("99999999999999999999", NULL, 10);
    printf("strtol_overflow=%d erange=%d\n", big == LONG_MAX, errno == ERANGE);
    printf("strtoul=%lu strtoull=%llu atoi=%d atol=%ld\n", strtoul("4294967295", NULL, 10),
           strtoull("18446744073709551615", NULL, 10), atoi("  42abc"), atol("-9000000000"));
    printf("abs=%d labs=%ld div=%d,%d\n", abs(-5), labs(-7L), div(17, 5).quot, div(17, 5).rem);

    /* sorting */
    int v[] = {5, -1, 9, 3, 3, 0, 12, -8, 7, 1};
    qsort(v, 10, sizeof v[0], cmp_int);
    printf("qsort=");
    for (int i = 0; i < 10; i++)
        printf("%d%s", v[i], i < 9 ? "," : "\n");
    int key = 7, missing = 4;
    int *hit = bsearch(&key, v, 10, sizeof v[0], cmp_int);
    printf("bsearch=%ld missing=%d\n", hit ? (long)(hit - v) : -1L, bsearch(&missing, v, 10, sizeof v[0], cmp_int) == NULL);

    /* environment */
    printf("getenv=%s unset=%d\n", getenv("GREETING"), getenv("NO_SUCH_VARIABLE") == NULL);
    setenv("ADDED", "1", 0);
    setenv("GREETING", "kept", 0);
    printf("setenv=%s,%s\n", getenv("ADDED"), getenv("GREETING"));
    setenv("GREETING", "replaced", 1);
    unsetenv("ADDED");
    printf("after=%s,%d\n", getenv("GREETING"), getenv("ADDED") == NULL);
    return 0;
}
