// MicroPython configuration of the pyrite port: a Python program as a unikernel on pyrite's
// library OS (musl underneath), or the same port built for the host (PYRITE_UNIKERNEL unset)
// for development. Language and module options are in pyrite_features.h, shared with the host
// unix build it is measured against.

#include <stdint.h>
#include <alloca.h>
#include <stdlib.h>

#include "pyrite_features.h"

#define MICROPY_HW_BOARD_NAME             "pyrite"
#define MICROPY_HW_MCU_NAME               "x86_64"
#define MICROPY_PY_SYS_PLATFORM           "pyrite"
#define MICROPY_BANNER_MACHINE            MICROPY_HW_BOARD_NAME " with " MICROPY_HW_MCU_NAME

typedef long mp_int_t;
typedef unsigned long mp_uint_t;
typedef long mp_off_t;
#define MP_SSIZE_MAX                      (0x7fffffffffffffffL)
#define MP_STATE_PORT                     MP_STATE_VM

// The program and the REPL.
#define MICROPY_ENABLE_COMPILER           (1)
#define MICROPY_HELPER_REPL               (1)
#define MICROPY_REPL_INFO                 (0)
#define MICROPY_KBD_EXCEPTION             (1)
#define MICROPY_READER_POSIX              (1)
#define MICROPY_HELPER_LEXER_UNIX         (1)
#define MICROPY_ALLOC_PATH_MAX            (4096)
#define MICROPY_STREAMS_POSIX_API         (1)
#define MICROPY_PY_SYS_EXECUTABLE         (0)
#define MICROPY_PY_OS_INCLUDEFILE         "ports/unix/modos.c"
#define MICROPY_PY_TIME_INCLUDEFILE       "modtime_include.c"
#define MICROPY_PY_RANDOM_SEED_INIT_FUNC  (mp_random_seed_init())
#define MICROPY_PY_RANDOM_GENERATION_CHANGED() (mp_random_generation_changed())
// The heap grows by areas from the C library up to all memory (heap.c); a new area comes
// from calloc, so its tables are zero already (MICROPY_GC_AREA_IS_ZERO: patched gc.c).
#define MICROPY_GC_SPLIT_HEAP             (1)
#define MICROPY_GC_SPLIT_HEAP_AUTO        (1)
#define MP_PLAT_ALLOC_HEAP(size)          (pyrite_heap_grow(size))
#define MP_PLAT_FREE_HEAP(ptr)            (free(ptr))
#define MICROPY_GC_AREA_IS_ZERO           (pyrite_take_heap_is_zero())

// Tracebacks and warnings go to stderr, as with the unix port.
extern const struct _mp_print_t mp_stderr_print;
#define MICROPY_ERROR_PRINTER             (&mp_stderr_print)

#define MICROPY_PORT_ROOT_POINTERS

#ifndef __ASSEMBLER__
#include <stddef.h>
unsigned long mp_random_seed_init(void);
int mp_random_generation_changed(void);
void *pyrite_heap_grow(size_t size);
int pyrite_take_heap_is_zero(void);

void mp_hal_get_random(size_t n, void *buf);
#endif
