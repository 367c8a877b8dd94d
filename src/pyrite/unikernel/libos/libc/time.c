/* Clocks from the TSC. Its frequency comes from CPUID (the hypervisor's leaf
 * 0x40000010, then leaf 0x15, then 0x16) or, failing that, from timing the PIT;
 * it is found on first use so that images that never ask for the time do not pay. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <pyrite/arch.h>
#include "../libos_internal.h"

static uint64_t boot_tsc;
static uint64_t tsc_hz;

void pyrite_clock_init(void) { boot_tsc = rdtsc(); }

static uint64_t tsc_hz_from_cpuid(void)
{
    uint32_t r[4];
    cpuid(0x40000000, 0, r);
    if (r[0] >= 0x40000010 && r[0] < 0x40010000) {
        cpuid(0x40000010, 0, r);
        if (r[0])
            return (uint64_t)r[0] * 1000;           /* kHz */
    }
    cpuid(0, 0, r);
    uint32_t max_leaf = r[0];
    if (max_leaf >= 0x15) {
        cpuid(0x15, 0, r);                          /* eax/ebx: TSC/crystal ratio, ecx: crystal Hz */
        if (r[0] && r[1] && r[2])
            return (uint64_t)r[2] * r[1] / r[0];
    }
    if (max_leaf >= 0x16) {
        cpuid(0x16, 0, r);
        if (r[0] & 0xFFFF)
            return (uint64_t)(r[0] & 0xFFFF) * 1000000;   /* base MHz */
    }
    return 0;
}

/* PIT channel 2, gated through port 0x61, counts 11932 ticks of 1.193182 MHz (10 ms). */
static uint64_t tsc_hz_from_pit(void)
{
    const unsigned ticks = 11932;
    outb(0x61, (inb(0x61) & ~0x02) | 0x01);           /* gate on, speaker off */
    outb(0x43, 0xB0);                                 /* channel 2, lo/hi, mode 0 */
    outb(0x42, ticks & 0xFF);
    outb(0x42, ticks >> 8);
    uint64_t start = rdtsc();
    for (uint32_t spins = 0; !(inb(0x61) & 0x20); spins++)
        if (spins > 10000000)
            return 0;                                 /* no PIT */
    return (rdtsc() - start) * 1193182 / ticks;
}

unsigned long pyrite_tsc_hz(void)
{
    if (!tsc_hz) {
        tsc_hz = tsc_hz_from_cpuid();
        if (!tsc_hz)
            tsc_hz = tsc_hz_from_pit();
        if (!tsc_hz)
            tsc_hz = 1000000000;                      /* last resort: call it 1 GHz */
    }
    return tsc_hz;
}

static uint64_t ns_since_boot(void)
{
    uint64_t hz = pyrite_tsc_hz(), t = rdtsc() - boot_tsc;
    return (t / hz) * 1000000000ull + (t % hz) * 1000000000ull / hz;
}

int clock_gettime(clockid_t clock, struct timespec *ts)
{
    if (clock != CLOCK_MONOTONIC && clock != CLOCK_REALTIME) {
        errno = EINVAL;
        return -1;
    }
    uint64_t ns = ns_since_boot();      /* no wall clock source: REALTIME counts from boot */
    ts->tv_sec = (time_t)(ns / 1000000000ull);
    ts->tv_nsec = (long)(ns % 1000000000ull);
    return 0;
}

time_t time(time_t *out)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out)
        *out = ts.tv_sec;
    return ts.tv_sec;
}

clock_t clock(void) { return (clock_t)(ns_since_boot() / 1000); }

/* Busy-waits at CPL 3: there is no timer interrupt to sleep on. */
int nanosleep(const struct timespec *req, struct timespec *rem)
{
    if (req->tv_nsec < 0 || req->tv_nsec >= 1000000000L || req->tv_sec < 0) {
        errno = EINVAL;
        return -1;
    }
    uint64_t until = ns_since_boot() + (uint64_t)req->tv_sec * 1000000000ull + (uint64_t)req->tv_nsec;
    while (ns_since_boot() < until)
        cpu_relax();
    if (rem)
        rem->tv_sec = rem->tv_nsec = 0;
    return 0;
}
