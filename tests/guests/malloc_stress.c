/* malloc/calloc/realloc/free stress with a checksum. Standard C only, so the same
 * file also builds for the host (glibc): both must print the same lines.
 * Usage: malloc_stress [rounds] [seed] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 512

static uint64_t state;

static uint32_t next_random(void)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (uint32_t)state;
}

static void fill(unsigned char *p, size_t n, unsigned tag)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(tag * 31 + i);
}

static int intact(const unsigned char *p, size_t n, unsigned tag)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(tag * 31 + i))
            return 0;
    return 1;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 200000;
    state = argc > 2 ? strtoull(argv[2], NULL, 0) : 88172645463325252ull;
    static unsigned char *ptr[SLOTS];
    static size_t len[SLOTS];
    static unsigned tag[SLOTS];
    uint64_t checksum = 0, peak = 0, live = 0;
    long corrupt = 0;

    for (long r = 0; r < rounds; r++) {
        unsigned s = next_random() % SLOTS;
        uint32_t op = next_random() % 8;
        /* sizes: mostly small, some pages, a few large */
        uint32_t pick = next_random() % 100;
        size_t size = pick < 70 ? next_random() % 128 : pick < 95 ? next_random() % 8192 : next_random() % (1 << 20);
        if (ptr[s]) {
            if (!intact(ptr[s], len[s], tag[s]))
                corrupt++;
            checksum = checksum * 1099511628211ull + len[s] + ptr[s][len[s] ? len[s] - 1 : 0];
        }
        if (op < 3 && ptr[s]) {                      /* realloc keeps the common prefix */
            unsigned char *q = realloc(ptr[s], size + 1);
            if (!q) { puts("realloc failed"); return 2; }
            size_t keep = len[s] < size + 1 ? len[s] : size + 1;
            if (!intact(q, keep, tag[s]))
                corrupt++;
            live += size + 1 - len[s];
            ptr[s] = q;
            len[s] = size + 1;
            fill(q, len[s], tag[s]);
        } else if (op < 5 && ptr[s]) {
            free(ptr[s]);
            live -= len[s];
            ptr[s] = NULL;
        } else {
            if (ptr[s]) {
                free(ptr[s]);
                live -= len[s];
            }
            unsigned char *q = op == 7 ? calloc(size + 1, 1) : malloc(size + 1);
            if (!q) { puts("malloc failed"); return 2; }
            if (op == 7)
                for (size_t i = 0; i <= size; i++)
                    if (q[i]) { corrupt++; break; }
            ptr[s] = q;
            len[s] = size + 1;
            tag[s] = next_random();
            fill(q, len[s], tag[s]);
            live += len[s];
        }
        if (live > peak)
            peak = live;
    }
    for (unsigned s = 0; s < SLOTS; s++)
        if (ptr[s]) {
            if (!intact(ptr[s], len[s], tag[s]))
                corrupt++;
            free(ptr[s]);
        }
    /* After everything is freed, one big block must fit again. */
    void *big = malloc(32u << 20);
    printf("malloc_stress rounds=%ld checksum=%016llx peak=%llu corrupt=%ld big=%s\n", rounds,
           (unsigned long long)checksum, (unsigned long long)peak, corrupt, big ? "ok" : "failed");
    free(big);
    return corrupt || !big ? 1 : 0;
}
