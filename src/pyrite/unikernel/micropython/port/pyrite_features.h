// The Python language and module options of pyrite's MicroPython, shared by the unikernel
// port (mpconfigport.h) and the host unix build it is measured against
// (unix-variant/mpconfigvariant.h): both are "built with the same options".

#define MICROPY_CONFIG_ROM_LEVEL          (MICROPY_CONFIG_ROM_LEVEL_EXTRA_FEATURES)

// Numbers: double-precision floats, arbitrary-precision integers.
#define MICROPY_FLOAT_IMPL                (MICROPY_FLOAT_IMPL_DOUBLE)
#define MICROPY_LONGINT_IMPL              (MICROPY_LONGINT_IMPL_MPZ)

// Behaviour a CPython user expects from a program run as a file.
#define MICROPY_ERROR_REPORTING           (MICROPY_ERROR_REPORTING_DETAILED)
#define MICROPY_WARNINGS                  (1)
#define MICROPY_ENABLE_GC                 (1)
#define MICROPY_ENABLE_FINALISER          (1)
#define MICROPY_ENABLE_EMERGENCY_EXCEPTION_BUF (1)
#define MICROPY_EMERGENCY_EXCEPTION_BUF_SIZE (256)
#define MICROPY_STACK_CHECK               (1)
#define MICROPY_OPT_COMPUTED_GOTO         (1)
// Bytecode only: no native/viper emitter (its code generator would cost ~40 KiB of image).
#define MICROPY_EMIT_X64                  (0)
#define MICROPY_EMIT_INLINE_X64           (0)
#define MICROPY_PY_SYS_ATEXIT             (1)
#define MICROPY_PY_SYS_EXC_INFO           (1)
#define MICROPY_PY_SYS_STDFILES           (1)
#define MICROPY_PY_SYS_PATH_ARGV_DEFAULTS (0)
#define MICROPY_PY_GC_COLLECT_RETVAL      (1)
#define MICROPY_PERSISTENT_CODE_LOAD      (1)
#define MICROPY_MODULE_OVERRIDE_MAIN_IMPORT (1)
#define MICROPY_EPOCH_IS_1970             (1)

// Modules (those of the EXTRA_FEATURES level not listed stay as that level sets them).
#define MICROPY_PY_OS                     (1)
#define MICROPY_PY_OS_ERRNO               (1)
#define MICROPY_PY_OS_GETENV_PUTENV_UNSETENV (1)
#define MICROPY_PY_OS_URANDOM             (1)
#define MICROPY_PY_OS_SYSTEM              (0)
#define MICROPY_PY_TIME                   (1)
#define MICROPY_PY_TIME_TIME_TIME_NS      (1)
#define MICROPY_PY_HASHLIB                (1)
#define MICROPY_PY_HASHLIB_SHA256         (1)
#define MICROPY_PY_RANDOM_SEED_INIT_FUNC  (mp_random_seed_init())
#define MICROPY_PY_SELECT_POSIX_OPTIMISATIONS (0)
#define MICROPY_PY_SELECT_SELECT          (1)
#define MICROPY_PY_MACHINE                (0)
#define MICROPY_PY_NETWORK                (0)
#define MICROPY_PY_SOCKET                 (0)
#define MICROPY_PY_SSL                    (0)
#define MICROPY_PY_BTREE                  (0)
#define MICROPY_PY_FRAMEBUF               (0)
#define MICROPY_PY_WEBSOCKET              (0)
#define MICROPY_PY_WEBREPL                (0)
#define MICROPY_PY_ONEWIRE                (0)
#define MICROPY_PY_BLUETOOTH              (0)
#define MICROPY_PY_LWIP                   (0)
#define MICROPY_PY_OPENAMP                (0)
#define MICROPY_PY_CRYPTOLIB              (0)
#define MICROPY_PY_ASYNCIO                (1)

// Files: the C library's file system, mounted at / as the unix port does.
#define MICROPY_VFS                       (1)
#define MICROPY_VFS_POSIX                 (1)
#define MICROPY_READER_VFS                (1)
#define MICROPY_VFS_FAT                   (0)
#define MICROPY_VFS_LFS1                  (0)
#define MICROPY_VFS_LFS2                  (0)
#define MICROPY_VFS_ROM                   (0)
#define MICROPY_PY_SYS_PATH_DEFAULT       ".frozen:/lib"

// The REPL: MicroPython's readline, with history.
#define MICROPY_USE_READLINE_HISTORY      (1)
#define MICROPY_READLINE_HISTORY_SIZE     (50)
#define MICROPY_REPL_EMACS_WORDS_MOVE     (1)
#define MICROPY_REPL_EMACS_EXTRA_WORDS_MOVE (1)
