/* Clocks: reports the TSC frequency the library OS found, then sleeps argv[1]
 * milliseconds (default 200) with nanosleep and reports the CLOCK_MONOTONIC time that
 * passed, and whether time() and clock() moved forward. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <pyrite/clock.h>

static long long ns(const struct timespec *t) { return t->tv_sec * 1000000000LL + t->tv_nsec; }

int main(int argc, char **argv)
{
    long ms = argc > 1 ? atol(argv[1]) : 200;
    struct timespec t0, t1, req = {ms / 1000, (ms % 1000) * 1000000L};
    printf("tsc_hz=%lu source=%s\n", pyrite_tsc_hz(), pyrite_tsc_source());
    clock_t c0 = clock();
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (nanosleep(&req, NULL) != 0)
        return 2;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("slept_ns=%lld\n", ns(&t1) - ns(&t0));
    printf("clock_advanced=%d\n", clock() > c0);
    struct timespec bad = {0, 1000000000L};
    printf("invalid_rejected=%d\n", nanosleep(&bad, NULL) == -1);
    return 0;
}
