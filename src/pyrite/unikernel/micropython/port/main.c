// pyrite's MicroPython: runs the program frozen into the image as __main__ (sys.argv from the
// command line, exit status from sys.exit or 1 after an uncaught exception's traceback), or,
// in an image without a program, the REPL (Ctrl-D exits; the raw REPL's Ctrl-D soft-resets,
// which is how MicroPython's run-tests.py drives a board).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "py/builtin.h"
#include "py/compile.h"
#include "py/frozenmod.h"
#include "py/gc.h"
#include "py/mperrno.h"
#include "py/mphal.h"
#include "py/persistentcode.h"
#include "py/runtime.h"
#include "py/stackctrl.h"
#include "extmod/vfs.h"
#include "extmod/vfs_posix.h"
#include "shared/runtime/gchelper.h"
#include "shared/runtime/pyexec.h"

#include "heap.h"

// Generated per image by the build (pyrite.unikernel.micropython.build).
extern const char pyrite_mp_main_module[];      // frozen path of the program, "" for the REPL
extern const unsigned pyrite_mp_min_mem_mib;    // memory the image was built for, 0 for any

// Python recursion stops with RuntimeError this far short of the end of the C stack.
#define STACK_MARGIN (32 * 1024)
#define STACK_FALLBACK (256 * 1024)

static char *heap;                              // the first area; the GC adds more as it needs
static size_t heap_size;

static void start_interpreter(void) {
    gc_init(heap, heap + heap_size);
    mp_init();

    // The C library's files (the library OS's file system) at /, as the unix port does.
    mp_obj_t args[2] = {
        MP_OBJ_TYPE_GET_SLOT(&mp_type_vfs_posix, make_new)(&mp_type_vfs_posix, 0, 0, NULL),
        MP_OBJ_NEW_QSTR(MP_QSTR__slash_),
    };
    mp_vfs_mount(2, args, (mp_map_t *)&mp_const_empty_map);
    MP_STATE_VM(vfs_cur) = MP_STATE_VM(vfs_mount_table);

    mp_sys_path = mp_obj_new_list(0, NULL);
    mp_obj_list_append(mp_sys_path, MP_OBJ_NEW_QSTR(MP_QSTR_));
    mp_obj_list_append(mp_sys_path, MP_OBJ_NEW_QSTR(MP_QSTR__dot_frozen));
    mp_obj_list_append(mp_sys_path, mp_obj_new_str("/lib", 4));
    mp_obj_list_init(MP_OBJ_TO_PTR(mp_sys_argv), 0);
}

static void stop_interpreter(void) {
    gc_sweep_all();
    mp_deinit();
    pyrite_heap_release_grown(&MP_STATE_MEM(area));     // a soft reset starts from the first area
}

// 0, SystemExit's status, or 1 after printing the traceback (as the unix port does).
static int exit_status_of(mp_obj_base_t *exc) {
    if (mp_obj_is_subclass_fast(MP_OBJ_FROM_PTR(exc->type), MP_OBJ_FROM_PTR(&mp_type_SystemExit))) {
        mp_obj_t value = mp_obj_exception_get_value(MP_OBJ_FROM_PTR(exc));
        mp_int_t status = 0;
        if (value != mp_const_none && !mp_obj_get_int_maybe(value, &status)) {
            mp_obj_print_helper(&mp_stderr_print, value, PRINT_STR);  // sys.exit("why"): status 1
            mp_print_str(&mp_stderr_print, "\n");
            status = 1;
        }
        return status & 0xff;
    }
    mp_obj_print_exception(&mp_stderr_print, MP_OBJ_FROM_PTR(exc));
    return 1;
}

static int run_frozen_main(const char *path) {
    int type;
    void *data;
    if (mp_find_frozen_module(path, &type, &data) != MP_IMPORT_STAT_FILE || type != MP_FROZEN_MPY) {
        mp_printf(&mp_stderr_print, "pyrite: the program %s is not in this image\n", path);
        return 1;
    }
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        const mp_frozen_module_t *frozen = data;
        mp_module_context_t *ctx = m_new_obj(mp_module_context_t);
        ctx->module.globals = mp_globals_get();
        ctx->constants = frozen->constants;
        mp_store_global(MP_QSTR___file__, mp_obj_new_str(path, strlen(path)));
        mp_call_function_0(mp_make_function_from_proto_fun(frozen->proto_fun, ctx, NULL));
        nlr_pop();
        return 0;
    }
    return exit_status_of(nlr.ret_val);
}

static int run_atexit(int status) {
    if (!mp_obj_is_callable(MP_STATE_VM(sys_exitfunc))) {
        return status;
    }
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_call_function_0(MP_STATE_VM(sys_exitfunc));
        nlr_pop();
        return status;
    }
    return exit_status_of(nlr.ret_val);
}

static int run_program(int argc, char **argv) {
    start_interpreter();
    // sys.argv[0] is the program's name, as for `python app.py ARGS`.
    mp_obj_list_append(mp_sys_argv, mp_obj_new_str(pyrite_mp_main_module, strlen(pyrite_mp_main_module)));
    for (int i = 1; i < argc; i++) {
        mp_obj_list_append(mp_sys_argv, mp_obj_new_str(argv[i], strlen(argv[i])));
    }
    int status = run_atexit(run_frozen_main(pyrite_mp_main_module));
    stop_interpreter();
    return status;
}

static int run_repl(void) {
    for (;;) {
        if (chdir("/") != 0) {                  // a soft reset starts afresh where the program did
            perror("pyrite: chdir /");
        }
        start_interpreter();
        int ret;
        do {
            ret = pyexec_mode_kind == PYEXEC_MODE_RAW_REPL ? pyexec_raw_repl() : pyexec_friendly_repl();
        } while (ret == 0);
        int was_raw = pyexec_mode_kind == PYEXEC_MODE_RAW_REPL;
        stop_interpreter();
        if (!was_raw) {
            return 0;                                   // Ctrl-D or sys.exit() at the prompt
        }
        mp_hal_stdout_tx_str("MPY: soft reboot\r\n");  // pyboard.py waits for these words
    }
}

// The C stack's size: the library OS reports it as RLIMIT_STACK (the image's --stack-size).
static size_t stack_limit(void) {
    struct rlimit r;
    size_t size = STACK_FALLBACK;
    if (getrlimit(RLIMIT_STACK, &r) == 0 && r.rlim_cur != RLIM_INFINITY && r.rlim_cur > 2 * STACK_MARGIN) {
        size = r.rlim_cur;
    }
    return size - STACK_MARGIN;
}

static int check_memory(void) {
    unsigned long have = pyrite_memory_mib();
    if (pyrite_mp_min_mem_mib != 0 && have != 0 && have < pyrite_mp_min_mem_mib) {
        fprintf(stderr, "pyrite: this image was built for %u MiB of memory (--mem-mib %u) but the VM has "
                "%lu MiB: run it with --mem-mib %u or more\n",
                pyrite_mp_min_mem_mib, pyrite_mp_min_mem_mib, have, pyrite_mp_min_mem_mib);
        return 0;
    }
    return 1;
}

int main(int argc, char **argv) {
    if (!check_memory()) {
        return 1;
    }
    mp_stack_ctrl_init();
    mp_stack_set_limit(stack_limit());
    heap_size = PYRITE_HEAP_FIRST_AREA;
    heap = pyrite_heap_grow(heap_size);
    if (heap == NULL) {
        fprintf(stderr, "pyrite: no memory for the Python heap\n");
        return 1;
    }
    return pyrite_mp_main_module[0] ? run_program(argc, argv) : run_repl();
}

void gc_collect(void) {
    gc_collect_start();
    gc_helper_collect_regs_and_stack();
    gc_collect_end();
}

void nlr_jump_fail(void *val) {
    fprintf(stderr, "pyrite: uncaught exception outside the interpreter (%p)\n", val);
    exit(1);
}
