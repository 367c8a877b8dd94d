/* Reads stdin to its end and reports what came: "bytes=<n> fnv1a64=<hex>", then whether the
 * next read is end of file again ("eof_again=1"). argv[1]: "read" (read(0, ...) until it
 * returns 0) or "fread" (fread until feof). Standard C and POSIX only: the same file builds
 * for the host. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    static char buf[4096];
    int use_fread = argc > 1 && strcmp(argv[1], "fread") == 0;
    uint64_t h = 0xcbf29ce484222325ull, total = 0;
    for (;;) {
        long n = use_fread ? (long)fread(buf, 1, sizeof buf, stdin) : (long)read(0, buf, sizeof buf);
        if (n <= 0)
            break;
        for (long i = 0; i < n; i++)
            h = (h ^ (uint8_t)buf[i]) * 0x100000001b3ull;
        total += (uint64_t)n;
    }
    int again = use_fread ? (feof(stdin) && fgetc(stdin) == EOF) : read(0, buf, 1) == 0;
    printf("bytes=%llu fnv1a64=%016llx eof_again=%d\n", (unsigned long long)total, (unsigned long long)h, again);
    return 0;
}
