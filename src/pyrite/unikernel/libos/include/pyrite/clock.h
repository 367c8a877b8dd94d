/* Clocks (libos/sys/time.c) and sleeping (libos/arch/timer.c). clock_gettime, nanosleep and
 * friends use these. */
#ifndef PYRITE_CLOCK_H
#define PYRITE_CLOCK_H

#include <stdint.h>

/* Nanoseconds since boot, from the TSC. */
uint64_t pyrite_monotonic_ns(void);
/* The TSC frequency (Hz) the clocks use, and where it came from ("cpuid", "kvmclock",
 * "pit", "cpuid-nominal" or "guess"). Found on first use. */
unsigned long pyrite_tsc_hz(void);
const char *pyrite_tsc_source(void);
/* Where CLOCK_REALTIME comes from: "kvmclock" or "none" (then it counts from
 * 1970-01-01 at boot). Found on first use. */
const char *pyrite_wall_clock_source(void);
/* Return once pyrite_monotonic_ns() >= deadline, the vCPU halted until a LAPIC timer
 * interrupt meanwhile. */
void pyrite_sleep_until(uint64_t monotonic_ns);

#endif
