#ifndef _PYRITE_TIME_H
#define _PYRITE_TIME_H

#include <stddef.h>
#include <sys/types.h>

struct timespec {
    time_t tv_sec;
    long tv_nsec;
};

typedef long clock_t;
#define CLOCKS_PER_SEC 1000000L
#define CLOCK_REALTIME  0
#define CLOCK_MONOTONIC 1

int clock_gettime(clockid_t clock, struct timespec *ts);
int nanosleep(const struct timespec *req, struct timespec *rem);
time_t time(time_t *out);
clock_t clock(void);

/* pyrite: the TSC frequency (Hz) the clocks use, and where it came from
 * ("cpuid", "kvmclock", "pit", "cpuid-nominal" or "guess"). */
unsigned long pyrite_tsc_hz(void);
const char *pyrite_tsc_source(void);

#endif
