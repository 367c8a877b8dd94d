/*
 * Clocks. Monotonic time is the TSC since boot; its frequency comes, in this order, from
 * CPUID (the hypervisor's leaf 0x40000010, then leaf 0x15), from KVM's pvclock (kvmclock),
 * from timing the PIT, or from CPUID leaf 0x16's nominal MHz. Real time is monotonic time
 * plus the wall-clock time at boot, read once from kvmclock's wall-clock record (pyrite,
 * QEMU and Firecracker all provide kvmclock), else 0 (1970-01-01 at boot; no CMOS clock is
 * read: QEMU microvm with rtc=off and Firecracker have none). Both are found on first use, so images that never ask for the time do not pay.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <sys/time.h>
#include <pyrite/arch.h>
#include <pyrite/clock.h>
#include "sys.h"
#include "../libos_internal.h"

#define NS 1000000000ull

static uint64_t boot_tsc;
static uint64_t tsc_hz;
static const char *tsc_source = "none";
static int64_t realtime_offset;         /* wall-clock ns at monotonic 0 */
static const char *wall_source;

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
 * scales TSC ticks to nanoseconds, ns = ((ticks << shift) * mul) >> 32 (shift may be
 * negative), its system time at a TSC value, and the wall-clock time at system time 0.
 * The wrmsr is emulated for CPL 3 by arch/traps.S. */
struct pvclock_time_info {
    uint32_t version, pad0;
    uint64_t tsc_timestamp, system_time;
    uint32_t tsc_to_system_mul;
    int8_t tsc_shift;
    uint8_t flags, pad[2];
} __attribute__((packed));

struct pvclock_wall_clock {
    uint32_t version, sec, nsec;
} __attribute__((packed));

#define MSR_KVM_WALL_CLOCK_NEW  0x4b564d00
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define KVM_FEATURE_CLOCKSOURCE2 (1u << 3)

struct kvmclock_reading {
    uint32_t mul;
    int shift;
    uint64_t system_ns;                 /* kvmclock's system time at `tsc` */
    uint64_t tsc;
    uint64_t wall_ns;                   /* wall-clock time at system time 0 */
};

static inline void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}

static uint64_t pvclock_scale(uint64_t delta, uint32_t mul, int shift)
{
    delta = shift >= 0 ? delta << shift : delta >> -shift;
    return (uint64_t)(((unsigned __int128)delta * mul) >> 32);
}

/* Read kvmclock once (enable, read both records, disable): 0, or -1 without kvmclock. */
static int kvmclock_read(struct kvmclock_reading *out)
{
    static volatile struct pvclock_time_info info __attribute__((aligned(64)));
    static volatile struct pvclock_wall_clock wall __attribute__((aligned(16)));
    uint32_t r[4];
    cpuid(0x40000000, 0, r);
    if (r[1] != 0x4b4d564b || r[2] != 0x564b4d56 || r[3] != 0x4d || r[0] < 0x40000001)
        return -1;                                  /* not "KVMKVMKVM" */
    cpuid(0x40000001, 0, r);
    if (!(r[0] & KVM_FEATURE_CLOCKSOURCE2))
        return -1;
    wrmsr(MSR_KVM_SYSTEM_TIME_NEW, (uintptr_t)&info | 1);   /* bit 0: enable */
    wrmsr(MSR_KVM_WALL_CLOCK_NEW, (uintptr_t)&wall);
    uint32_t version;
    do {                                            /* odd version: an update in progress */
        version = info.version;
        __asm__ volatile("" ::: "memory");
        out->mul = info.tsc_to_system_mul;
        out->shift = info.tsc_shift;
        out->tsc = info.tsc_timestamp;
        out->system_ns = info.system_time;
        __asm__ volatile("" ::: "memory");
    } while ((version & 1) || version != info.version);
    do {
        version = wall.version;
        __asm__ volatile("" ::: "memory");
        out->wall_ns = wall.sec * NS + wall.nsec;
        __asm__ volatile("" ::: "memory");
    } while ((version & 1) || version != wall.version);
    wrmsr(MSR_KVM_SYSTEM_TIME_NEW, 0);              /* stop updates */
    return out->mul ? 0 : -1;
}

static uint64_t tsc_hz_from_kvmclock(void)
{
    struct kvmclock_reading k;
    if (kvmclock_read(&k) != 0)
        return 0;
    /* hz = 10^9 * 2^32 / (mul * 2^shift) */
    unsigned __int128 num = (unsigned __int128)NS << 32;
    if (k.shift >= 0)
        return (uint64_t)(num / ((uint64_t)k.mul << k.shift));
    return (uint64_t)((num << -k.shift) / k.mul);
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
    return (t / hz) * NS + (t % hz) * NS / hz;
}

static void wall_clock_init(void)
{
    struct kvmclock_reading k;
    if (kvmclock_read(&k) == 0) {
        uint64_t now_tsc = rdtsc(), now_mono = pyrite_monotonic_ns();
        uint64_t system_ns = k.system_ns + pvclock_scale(now_tsc - k.tsc, k.mul, k.shift);
        realtime_offset = (int64_t)(k.wall_ns + system_ns) - (int64_t)now_mono;
        wall_source = "kvmclock";
        return;
    }
    realtime_offset = 0;                /* no wall clock: real time counts from 1970 at boot */
    wall_source = "none";
}

const char *pyrite_wall_clock_source(void)
{
    if (!wall_source)
        wall_clock_init();
    return wall_source;
}

static int64_t realtime_ns(void)
{
    if (!wall_source)
        wall_clock_init();
    return realtime_offset + (int64_t)pyrite_monotonic_ns();
}

static void to_timespec(int64_t ns, struct timespec *ts)
{
    ts->tv_sec = (time_t)(ns / (int64_t)NS);
    ts->tv_nsec = (long)(ns % (int64_t)NS);
}

long sys_clock_gettime(clockid_t clock, struct timespec *ts)
{
    switch (clock) {
    case CLOCK_REALTIME:
    case CLOCK_REALTIME_COARSE:
        to_timespec(realtime_ns(), ts);
        return 0;
    case CLOCK_MONOTONIC:
    case CLOCK_MONOTONIC_RAW:
    case CLOCK_MONOTONIC_COARSE:
    case CLOCK_BOOTTIME:
    case CLOCK_PROCESS_CPUTIME_ID:      /* the one process and thread: they run since boot */
    case CLOCK_THREAD_CPUTIME_ID:
        to_timespec((int64_t)pyrite_monotonic_ns(), ts);
        return 0;
    }
    return -EINVAL;
}

long sys_clock_getres(clockid_t clock, struct timespec *ts)
{
    struct timespec now;
    long err = sys_clock_gettime(clock, &now);
    if (err == 0 && ts)
        *ts = (struct timespec){0, 1};
    return err;
}

long sys_gettimeofday(struct timeval *tv, void *tz)
{
    if (tv) {
        int64_t ns = realtime_ns();
        tv->tv_sec = (time_t)(ns / (int64_t)NS);
        tv->tv_usec = (suseconds_t)(ns % (int64_t)NS / 1000);
    }
    if (tz)
        memset(tz, 0, 8);               /* struct timezone: UTC, no DST */
    return 0;
}

long sys_time(time_t *t)
{
    time_t now = (time_t)(realtime_ns() / (int64_t)NS);
    if (t)
        *t = now;
    return now;
}

/* Sleeping halts the vCPU until a LAPIC timer interrupt: pyrite_sleep_until (arch/timer.c). */
static int valid(const struct timespec *ts)
{
    return ts->tv_sec >= 0 && ts->tv_nsec >= 0 && ts->tv_nsec < (long)NS;
}

static uint64_t add_ns(uint64_t base, const struct timespec *ts)
{
    uint64_t d = (uint64_t)ts->tv_sec * NS + (uint64_t)ts->tv_nsec;
    return (uint64_t)ts->tv_sec > UINT64_MAX / NS / 2 || base + d < base ? UINT64_MAX : base + d;
}

long sys_nanosleep(const struct timespec *req, struct timespec *rem)
{
    if (!valid(req))
        return -EINVAL;
    pyrite_sleep_until(add_ns(pyrite_monotonic_ns(), req));
    if (rem)
        *rem = (struct timespec){0, 0};
    return 0;
}

long sys_clock_nanosleep(clockid_t clock, int flags, const struct timespec *req, struct timespec *rem)
{
    struct timespec now;
    if (sys_clock_gettime(clock, &now) != 0 || clock == CLOCK_THREAD_CPUTIME_ID)
        return -EINVAL;
    if (!valid(req))
        return -EINVAL;
    if (!(flags & TIMER_ABSTIME))
        return sys_nanosleep(req, rem);
    int64_t target = (int64_t)req->tv_sec * (int64_t)NS + req->tv_nsec;
    if (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE)
        target -= realtime_offset;              /* to monotonic time */
    if (target > 0)
        pyrite_sleep_until((uint64_t)target);
    return 0;
}
