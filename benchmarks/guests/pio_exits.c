/* Port I/O exits, as fast as the guest can make them, timed with the TSC: N writes to the
 * serial port's scratch register (0x3ff: a device register with no side effect), each one a
 * VM exit served by the VMM's vCPU thread (KVM_RUN, the port bus, the device, KVM_RUN).
 *
 *   pio_exits <N>   prints "tsc_hz=<Hz>" and "result pio exits=<N> cycles=<TSC cycles>"
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <pyrite/arch.h>
#include <time.h>

static inline uint64_t read_tsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

int main(int argc, char **argv)
{
    unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 0) : 100000;
    printf("tsc_hz=%lu\n", pyrite_tsc_hz());
    uint64_t start = read_tsc();
    for (unsigned long i = 0; i < n; i++)
        outb(0x3ff, (uint8_t)i);
    uint64_t cycles = read_tsc() - start;
    printf("result pio exits=%lu cycles=%llu\n", n, (unsigned long long)cycles);
    return 0;
}
