// time.time() for extmod/modtime.c (included there): the wall clock as a float
// (kvmclock's wall-clock record in a unikernel).
#include <time.h>

static mp_obj_t mp_time_time_get(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return mp_obj_new_float((mp_float_t)ts.tv_sec + (mp_float_t)ts.tv_nsec / 1e9);
}
