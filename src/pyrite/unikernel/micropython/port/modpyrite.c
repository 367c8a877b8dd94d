// The `pyrite` module: what the library OS knows that MicroPython's modules do not expose.
#include <string.h>

#include "py/runtime.h"

extern char **environ;

// The environment as a new dict (the frozen os.py makes it os.environ).
static mp_obj_t pyrite_environ(void) {
    mp_obj_t env = mp_obj_new_dict(0);
    for (char **e = environ; e != NULL && *e != NULL; e++) {
        const char *eq = strchr(*e, '=');
        if (eq != NULL) {
            mp_obj_dict_store(env, mp_obj_new_str(*e, eq - *e), mp_obj_new_str(eq + 1, strlen(eq + 1)));
        }
    }
    return env;
}
static MP_DEFINE_CONST_FUN_OBJ_0(pyrite_environ_obj, pyrite_environ);

static const mp_rom_map_elem_t pyrite_module_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_pyrite) },
    { MP_ROM_QSTR(MP_QSTR_environ), MP_ROM_PTR(&pyrite_environ_obj) },
};
static MP_DEFINE_CONST_DICT(pyrite_module_globals, pyrite_module_globals_table);

const mp_obj_module_t mp_module_pyrite = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&pyrite_module_globals,
};

MP_REGISTER_MODULE(MP_QSTR_pyrite, mp_module_pyrite);
