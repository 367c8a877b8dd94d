// Console, clocks and randomness for MicroPython, through the C library (musl on the
// library OS in a unikernel, the host's C library in a host build).
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>

#include "py/mphal.h"
#include "py/mpprint.h"
#include "py/runtime.h"
#include "shared/readline/readline.h"
#include "shared/runtime/pyexec.h"

#ifdef PYRITE_UNIKERNEL
#include <pyrite/vmgenid.h>
#endif

static void write_all(int fd, const char *str, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, str, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return;             // nowhere to write to: output is lost, the program goes on
        }
        str += n;
        len -= n;
    }
}

mp_uint_t mp_hal_stdout_tx_strn(const char *str, size_t len) {
    write_all(STDOUT_FILENO, str, len);
    return len;
}

static void stderr_print_strn(void *env, const char *str, size_t len) {
    (void)env;
    write_all(STDERR_FILENO, str, len);
}

const mp_print_t mp_stderr_print = {NULL, stderr_print_strn};

int mp_hal_stdin_rx_chr(void) {
    unsigned char c;
    for (;;) {
        ssize_t n = read(STDIN_FILENO, &c, 1);
        if (n == 1) {
            break;
        }
        if (n == 0) {
            return CHAR_CTRL_D;     // end of input ends the REPL as Ctrl-D does
        }
        if (errno != EINTR && errno != EAGAIN) {
            return CHAR_CTRL_D;
        }
    }
    // A terminal sends Enter as \n (the host tty translates CR); readline wants \r.
    if (c == '\n' && pyexec_mode_kind == PYEXEC_MODE_FRIENDLY_REPL) {
        c = '\r';
    }
    return c;
}

static uint64_t clock_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t mp_hal_time_ns(void) {
    return clock_ns(CLOCK_REALTIME);
}

mp_uint_t mp_hal_ticks_ms(void) {
    return clock_ns(CLOCK_MONOTONIC) / 1000000;
}

mp_uint_t mp_hal_ticks_us(void) {
    return clock_ns(CLOCK_MONOTONIC) / 1000;
}

mp_uint_t mp_hal_ticks_cpu(void) {
    return clock_ns(CLOCK_MONOTONIC);
}

void mp_hal_delay_us(mp_uint_t us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void mp_hal_delay_ms(mp_uint_t ms) {
    // Sleep in slices so that pending callbacks and Ctrl-C are handled as elsewhere.
    while (ms > 0) {
        mp_uint_t slice = ms < 100 ? ms : 100;
        mp_hal_delay_us(slice * 1000);
        ms -= slice;
        mp_handle_pending(true);
    }
}

void mp_hal_get_random(size_t n, void *buf) {
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            mp_raise_OSError(errno);
        }
        p += got;
        n -= got;
    }
}

unsigned long mp_random_seed_init(void) {
    unsigned long seed;
    mp_hal_get_random(sizeof(seed), &seed);
    return seed;
}

// True once after the VM generation ID changed (this VM was restored from a snapshot,
// maybe as one of many clones): random then reseeds, so clones draw different numbers.
int mp_random_generation_changed(void) {
    #ifdef PYRITE_UNIKERNEL
    static uint8_t seen[16];
    static int known;
    uint8_t id[16];
    if (vmgenid_read(id) != 0) {
        return 0;
    }
    int changed = known && memcmp(id, seen, sizeof(id)) != 0;
    memcpy(seen, id, sizeof(id));
    known = 1;
    return changed;
    #else
    return 0;
    #endif
}
