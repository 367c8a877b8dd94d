// The host unix port built with pyrite's options (pyrite_features.h): the reference that
// pyrite's MicroPython unikernel is compared with (test suite, benchmarks).
#include "../pyrite_features.h"

#define MICROPY_PY_OS_INCLUDEFILE         "ports/unix/modos.c"
#define MICROPY_PY_TIME_CUSTOM_SLEEP      (1)
#define MICROPY_PY_TIME_INCLUDEFILE       "ports/unix/modtime.c"
// The unix main.c's -v option needs it (printing only; no effect on running programs).
#define MICROPY_DEBUG_PRINTERS            (1)
