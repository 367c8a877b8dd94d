// The pyrite port's hardware abstraction: the C library's stdin/stdout and clocks.
#include <unistd.h>

#ifndef CHAR_CTRL_C
#define CHAR_CTRL_C (3)
#endif

static inline void mp_hal_set_interrupt_char(char c) {
    (void)c;                // Ctrl-C is pyrite's: it ends the VM (the terminal keeps ISIG)
}

#define mp_hal_stdio_poll unused
#define MICROPY_INTERNAL_WFE(TIMEOUT_MS) mp_hal_delay_us(500)

uint64_t mp_hal_time_ns(void);
#define mp_hal_time_ns mp_hal_time_ns

// Used by ports/unix/modos.c (os.getenv, os.putenv, ...), which this port shares.
#define RAISE_ERRNO(err_flag, error_val) \
    { if (err_flag == -1) \
      { mp_raise_OSError(error_val); } }

// Used by extmod/vfs_posix*.c: retry a C library call interrupted by a signal (PEP 475).
#include <errno.h>
#define MP_HAL_RETRY_SYSCALL(ret, syscall, raise) { \
        for (;;) { \
            ret = syscall; \
            if (ret == -1) { \
                int err = errno; \
                if (err == EINTR) { \
                    mp_handle_pending(true); \
                    continue; \
                } \
                raise; \
            } \
            break; \
        } \
}
