// The `_function` module: MicroPython's side of the function agent (<pyrite/function.h>, the
// library OS's libos/agent/agent.c). _function.serve(invoke) hands the agent a C handler that
// calls invoke(event_json_str, context_dict) -> response_json_str; an exception becomes the
// invocation's error ({"errorMessage": str(e), "errorType": type name}), its traceback goes to
// the log. The Python side (JSON, the context object, the user's handler) is the bootstrap
// module that pyrite.functions.runtimes freezes into each Python function's image.
#include <string.h>

#include "py/mpprint.h"
#include "py/runtime.h"

#include <pyrite/function.h>

MP_REGISTER_ROOT_POINTER(mp_obj_t pyrite_function_invoke);

static const struct fn_context *current_context;

static void store(mp_obj_t dict, const char *key, mp_obj_t value) {
    mp_obj_dict_store(dict, mp_obj_new_str(key, strlen(key)), value);
}

static mp_obj_t context_dict(const struct fn_context *ctx) {
    mp_obj_t dict = mp_obj_new_dict(5);
    store(dict, "aws_request_id", mp_obj_new_str(ctx->request_id, strlen(ctx->request_id)));
    store(dict, "function_name", mp_obj_new_str(ctx->function_name, strlen(ctx->function_name)));
    store(dict, "function_version", mp_obj_new_str(ctx->function_version, strlen(ctx->function_version)));
    store(dict, "invoked_function_arn", mp_obj_new_str(ctx->invoked_function_arn, strlen(ctx->invoked_function_arn)));
    store(dict, "memory_limit_in_mb", mp_obj_new_int(ctx->memory_limit_mb));
    return dict;
}

static int call_python(const char *event, size_t len, const struct fn_context *ctx, struct fn_output *out) {
    current_context = ctx;
    int status = 0;
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_obj_t args[2] = { mp_obj_new_str(event, len), context_dict(ctx) };
        mp_obj_t result = mp_call_function_n_kw(MP_STATE_VM(pyrite_function_invoke), 2, 0, args);
        size_t n;
        const char *json = mp_obj_str_get_data(result, &n);
        fn_respond(out, json, n);
        nlr_pop();
    } else {
        mp_obj_t exc = MP_OBJ_FROM_PTR(nlr.ret_val);
        mp_obj_print_exception(&mp_stderr_print, exc);
        vstr_t message;
        mp_print_t print;
        vstr_init_print(&message, 64, &print);
        mp_obj_print_helper(&print, exc, PRINT_STR);
        fn_fail(out, qstr_str(mp_obj_get_type(exc)->name), vstr_null_terminated_str(&message));
        vstr_clear(&message);
        status = -1;
    }
    current_context = NULL;
    return status;
}

// serve(invoke): run the agent (initialised, snapshotted, serving); returns only on failure.
static mp_obj_t function_serve(mp_obj_t invoke) {
    if (!mp_obj_is_callable(invoke)) {
        mp_raise_TypeError(MP_ERROR_TEXT("serve() needs a callable"));
    }
    MP_STATE_VM(pyrite_function_invoke) = invoke;
    return mp_obj_new_int(fn_agent_main(call_python, NULL));
}
static MP_DEFINE_CONST_FUN_OBJ_1(function_serve_obj, function_serve);

// remaining_ms(): what the running invocation has left (0 outside one).
static mp_obj_t function_remaining_ms(void) {
    return mp_obj_new_int_from_ull(current_context ? fn_remaining_ms(current_context) : 0);
}
static MP_DEFINE_CONST_FUN_OBJ_0(function_remaining_ms_obj, function_remaining_ms);

static const mp_rom_map_elem_t function_module_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR__function) },
    { MP_ROM_QSTR(MP_QSTR_serve), MP_ROM_PTR(&function_serve_obj) },
    { MP_ROM_QSTR(MP_QSTR_remaining_ms), MP_ROM_PTR(&function_remaining_ms_obj) },
};
static MP_DEFINE_CONST_DICT(function_module_globals, function_module_globals_table);

const mp_obj_module_t mp_module_function = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&function_module_globals,
};

MP_REGISTER_MODULE(MP_QSTR__function, mp_module_function);
