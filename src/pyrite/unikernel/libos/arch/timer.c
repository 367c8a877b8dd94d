/*
 * Idle without burning the host's CPU: a halted vCPU (the `hlt` that arch/traps.S emulates
 * for CPL 3) costs the host nothing, and the LAPIC timer's interrupt (VEC_TIMER) ends the
 * halt at a deadline. The timer runs in TSC-deadline mode when CPUID.01H:ECX[24] says the
 * LAPIC has it (the deadline is a TSC value, written to IA32_TSC_DEADLINE by a wrmsr the
 * trap handler emulates), else in one-shot mode, counting the LAPIC's own clock, whose rate
 * is measured once against the TSC. Without a LAPIC, sleeps spin.
 */
#include <stdint.h>
#include <pyrite/arch.h>
#include "../libos_internal.h"

#define LAPIC_LVT_TIMER     0x320
#define LAPIC_TIMER_INITIAL 0x380
#define LAPIC_TIMER_CURRENT 0x390
#define LAPIC_TIMER_DIVIDE  0x3E0
#define LVT_MASKED          0x10000
#define LVT_TSC_DEADLINE    (2u << 17)
#define DIVIDE_BY_1         0xB
#define MSR_TSC_DEADLINE    0x6E0
#define CPUID1_ECX_TSC_DEADLINE (1u << 24)
#define CALIBRATION_NS      5000000ull  /* 5 ms of TSC against the LAPIC's count, once */
#define NS_PER_S            1000000000ull

enum timer_mode { TIMER_UNKNOWN, TIMER_NONE, TIMER_TSC_DEADLINE, TIMER_ONESHOT };
static enum timer_mode mode;
static uint64_t lapic_hz;               /* one-shot mode: LAPIC timer ticks per second */

static uint64_t scale(uint64_t value, uint64_t mul, uint64_t div)
{
    return (uint64_t)((unsigned __int128)value * mul / div);
}

/* The LAPIC timer's rate: count down from the top for CALIBRATION_NS of TSC time. */
static uint64_t calibrate_lapic(void)
{
    uint64_t hz = pyrite_tsc_hz(), span = scale(CALIBRATION_NS, hz, NS_PER_S);
    pyrite_lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | VEC_TIMER);
    pyrite_lapic_write(LAPIC_TIMER_DIVIDE, DIVIDE_BY_1);
    pyrite_lapic_write(LAPIC_TIMER_INITIAL, 0xFFFFFFFFu);
    uint64_t t0 = rdtsc();
    uint32_t c0 = pyrite_lapic_read(LAPIC_TIMER_CURRENT);
    uint64_t t1;
    while ((t1 = rdtsc()) - t0 < span)
        cpu_relax();
    uint32_t c1 = pyrite_lapic_read(LAPIC_TIMER_CURRENT);
    pyrite_lapic_write(LAPIC_TIMER_INITIAL, 0);
    return c0 > c1 ? scale(c0 - c1, hz, t1 - t0) : 0;
}

static enum timer_mode timer_mode(void)
{
    if (mode != TIMER_UNKNOWN)
        return mode;
    uint32_t r[4];
    cpuid(1, 0, r);
    if (pyrite_lapic_enable() != 0) {
        mode = TIMER_NONE;
    } else if (r[2] & CPUID1_ECX_TSC_DEADLINE) {
        pyrite_lapic_write(LAPIC_LVT_TIMER, LVT_TSC_DEADLINE | VEC_TIMER);
        mode = TIMER_TSC_DEADLINE;
    } else if ((lapic_hz = calibrate_lapic()) != 0) {
        pyrite_lapic_write(LAPIC_LVT_TIMER, VEC_TIMER);      /* one-shot, divide by 1 */
        mode = TIMER_ONESHOT;
    } else {
        mode = TIMER_NONE;                                   /* the LAPIC's timer does not count */
    }
    return mode;
}

/* Interrupt at (about) `remaining_ns` from now: exactly with a TSC deadline; a little early in
 * one-shot mode (1/128 less, for the calibration's error), capped at what the count holds.
 * The caller's loop sleeps again for what is left. */
static void arm(uint64_t remaining_ns)
{
    if (mode == TIMER_TSC_DEADLINE) {
        uint64_t deadline = rdtsc() + scale(remaining_ns, pyrite_tsc_hz(), NS_PER_S);
        __asm__ volatile("wrmsr" : : "c"(MSR_TSC_DEADLINE), "a"((uint32_t)deadline),
                         "d"((uint32_t)(deadline >> 32)) : "memory");
    } else {
        uint64_t ticks = scale(remaining_ns - remaining_ns / 128, lapic_hz, NS_PER_S);
        pyrite_lapic_write(LAPIC_TIMER_INITIAL, ticks == 0 ? 1 : ticks > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)ticks);
    }
}

void pyrite_idle_until(uint32_t seen, uint64_t deadline_ns)
{
    if (deadline_ns != PYRITE_NO_DEADLINE) {
        uint64_t now = pyrite_monotonic_ns();
        if (now >= deadline_ns)
            return;
        if (deadline_ns - now < PYRITE_SPIN_NS || timer_mode() == TIMER_NONE) {
            cpu_relax();                /* too close for a halt to pay, or nothing to end it */
            return;
        }
        arm(deadline_ns - now);
    }
    wait_for_irq(seen);
}

void pyrite_sleep_until(uint64_t monotonic_ns)
{
    for (;;) {
        uint32_t seen = pyrite_irq_count;
        if (pyrite_monotonic_ns() >= monotonic_ns)
            return;
        pyrite_idle_until(seen, monotonic_ns);
    }
}
