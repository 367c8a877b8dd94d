/* A CPL-3 loop of N iterations (argv[1], default 100000000), for timing; prints the
 * iterations, the TSC cycles they took and a checksum, then exits with status 0.
 * Standard C plus inline rdtsc, so the same file builds for the host: benchmarks/unikernel.py
 * compares the two. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static inline uint64_t read_tsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("lfence\n\trdtsc" : "=a"(lo), "=d"(hi) : : "memory");
    return ((uint64_t)hi << 32) | lo;
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 0) : 100000000ull;
    uint64_t x = 0;
    uint64_t start = read_tsc();
    for (uint64_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + i;
        __asm__ volatile("" : "+r"(x));     /* keep the loop */
    }
    uint64_t cycles = read_tsc() - start;
    printf("spin iterations=%llu cycles=%llu checksum=%016llx\n", (unsigned long long)n,
           (unsigned long long)cycles, (unsigned long long)x);
    return 0;
}
