/* A CPL-3 loop of N iterations (argv[1], default 100000000), for timing; prints the
 * iterations, the TSC cycles they took and a checksum, then exits with status 0. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <pyrite/arch.h>

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 0) : 100000000ull;
    uint64_t x = 0;
    uint64_t start = rdtsc();
    for (uint64_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + i;
        __asm__ volatile("" : "+r"(x));     /* keep the loop */
    }
    uint64_t cycles = rdtsc() - start;
    printf("spin iterations=%lu cycles=%lu checksum=%016lx\n", n, cycles, x);
    return 0;
}
