/* Clocks from the TSC. Its frequency comes, in this order, from CPUID (the
 * hypervisor's leaf 0x40000010, then leaf 0x15), from KVM's pvclock (kvmclock), from
 * timing the PIT, or from CPUID leaf 0x16's nominal MHz. It is found on first use so
 * that images that never ask for the time do not pay. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <pyrite/arch.h>
#include "../libos_internal.h"

static uint64_t boot_tsc;
static uint64_t tsc_hz;
static const char *tsc_source = "none";

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
    if (r[0] >= 0x15) {
        cpuid(0x15, 0, r);                          /* eax/ebx: TSC/crystal ratio, ecx: crystal Hz */
        if (r[0] && r[1] && r[2])
            return (uint64_t)r[2] * r[1] / r[0];
    }
    return 0;
}

static uint64_t tsc_hz_from_cpuid_nominal(void)
{
    uint32_t r[4];
    cpuid(0, 0, r);
    if (r[0] < 0x16)
        return 0;
    cpuid(0x16, 0, r);
    return (uint64_t)(r[0] & 0xFFFF) * 1000000;     /* base MHz */
}

/* KVM's pvclock (Documentation/virt/kvm/x86/msr.rst): the hypervisor publishes how it
 * scales TSC ticks to nanoseconds: ns = ((ticks << shift) * mul) >> 32 (shift may be
 * negative). The wrmsr is emulated for CPL 3 by arch/traps.S. */
struct pvclock_time_info {
    uint32_t version, pad0;
    uint64_t tsc_timestamp, system_time;
    uint32_t tsc_to_system_mul;
    int8_t tsc_shift;
    uint8_t flags, pad[2];
} __attribute__((packed));

#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define KVM_FEATURE_CLOCKSOURCE2 (1u << 3)

static uint64_t tsc_hz_from_kvmclock(void)
{
    static volatile struct pvclock_time_info info __attribute__((aligned(64)));
    uint32_t r[4];
    cpuid(0x40000000, 0, r);
    if (r[1] != 0x4b4d564b || r[2] != 0x564b4d56 || r[3] != 0x4d || r[0] < 0x40000001)
        return 0;                                   /* not "KVMKVMKVM" */
    cpuid(0x40000001, 0, r);
    if (!(r[0] & KVM_FEATURE_CLOCKSOURCE2))
        return 0;
    uint64_t msr = (uintptr_t)&info | 1;            /* bit 0: enable */
    __asm__ volatile("wrmsr" : : "c"(MSR_KVM_SYSTEM_TIME_NEW), "a"((uint32_t)msr), "d"((uint32_t)(msr >> 32)) : "memory");
    uint32_t mul = info.tsc_to_system_mul;
    int shift = info.tsc_shift;
    __asm__ volatile("wrmsr" : : "c"(MSR_KVM_SYSTEM_TIME_NEW), "a"(0), "d"(0) : "memory");   /* stop updates */
    if (!mul)
        return 0;
    /* hz = 10^9 * 2^32 / (mul * 2^shift) */
    unsigned __int128 num = (unsigned __int128)1000000000u << 32;
    if (shift >= 0)
        return (uint64_t)(num / ((uint64_t)mul << shift));
    return (uint64_t)((num << -shift) / mul);
}

/* PIT channel 2, gated through port 0x61, counts 11932 ticks of 1.193182 MHz (10 ms).
 * Its output (port 0x61 bit 5) must start low: if not, there is no PIT. */
static uint64_t tsc_hz_from_pit(void)
{
    const unsigned ticks = 11932;
    if (inb(0x61) == 0xFF)
        return 0;                                     /* nothing at port 0x61 */
    outb(0x61, (inb(0x61) & ~0x02) | 0x01);           /* gate on, speaker off */
    outb(0x43, 0xB0);                                 /* channel 2, lo/hi, mode 0 */
    outb(0x42, ticks & 0xFF);
    outb(0x42, ticks >> 8);
    if (inb(0x61) & 0x20)
        return 0;
    uint64_t start = rdtsc();
    for (uint32_t spins = 0; !(inb(0x61) & 0x20); spins++)
        if (spins > 10000000)
            return 0;                                 /* it never counted down */
    return (rdtsc() - start) * 1193182 / ticks;
}

unsigned long pyrite_tsc_hz(void)
{
    static const struct { const char *name; uint64_t (*probe)(void); } sources[] = {
        {"cpuid", tsc_hz_from_cpuid}, {"kvmclock", tsc_hz_from_kvmclock},
        {"pit", tsc_hz_from_pit}, {"cpuid-nominal", tsc_hz_from_cpuid_nominal},
    };
    for (unsigned i = 0; !tsc_hz && i < sizeof sources / sizeof sources[0]; i++) {
        tsc_hz = sources[i].probe();
        tsc_source = sources[i].name;
    }
    if (!tsc_hz) {
        tsc_hz = 1000000000;                          /* last resort: call it 1 GHz */
        tsc_source = "guess";
    }
    return tsc_hz;
}

const char *pyrite_tsc_source(void)
{
    pyrite_tsc_hz();
    return tsc_source;
}

uint64_t pyrite_monotonic_ns(void)
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
    uint64_t ns = pyrite_monotonic_ns();      /* no wall clock source: REALTIME counts from boot */
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

clock_t clock(void) { return (clock_t)(pyrite_monotonic_ns() / 1000); }

/* Halts the vCPU until a timer interrupt (arch/timer.c). */
int nanosleep(const struct timespec *req, struct timespec *rem)
{
    if (req->tv_nsec < 0 || req->tv_nsec >= 1000000000L || req->tv_sec < 0) {
        errno = EINVAL;
        return -1;
    }
    pyrite_sleep_until(pyrite_monotonic_ns() + (uint64_t)req->tv_sec * 1000000000ull + (uint64_t)req->tv_nsec);
    if (rem)
        rem->tv_sec = rem->tv_nsec = 0;
    return 0;
}
