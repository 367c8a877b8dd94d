/* Floating-point and string work for benchmarks/unikernel.py: libm calls, printf("%.17g")
 * and strtod round trips, memcpy/strlen/strcmp over short strings, argv[1] rounds (default
 * 200000). Standard C plus inline rdtsc, so the same file builds for the host; prints the
 * loop's TSC cycles and a checksum (the same everywhere). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline uint64_t read_tsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("lfence\n\trdtsc" : "=a"(lo), "=d"(hi) : : "memory");
    return ((uint64_t)hi << 32) | lo;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 200000;
    char buf[64], copy[64];
    double sum = 0;
    unsigned long chars = 0;
    uint64_t start = read_tsc();
    for (long i = 0; i < rounds; i++) {
        double x = (double)i * 1e-4 + 0.5;
        double y = sin(x) * exp(-x / 8) + pow(x, 0.37) + log(x) + sqrt(x) / (1 + atan(x));
        int n = snprintf(buf, sizeof buf, "%.17g", y);
        sum += strtod(buf, NULL);
        memcpy(copy, buf, (size_t)n + 1);
        chars += strlen(copy) + (strcmp(copy, buf) == 0);
    }
    uint64_t cycles = read_tsc() - start;
    printf("cycles=%llu checksum=%.17g chars=%lu\n", (unsigned long long)cycles, sum, chars);
    return 0;
}
