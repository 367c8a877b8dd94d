/*
 * Functions: the guest side of `pyrite functions` (a Lambda-style service). A function's
 * image runs fn_agent_main(), which initialises once, then serves invocations that the
 * host sends over vsock; the host snapshots the VM after initialisation and runs each
 * invocation in a fresh clone of that snapshot. See libos/README.md "Function agent".
 *
 * A `provided` runtime function is C:
 *
 *     #include <pyrite/function.h>
 *     int handler(const char *event, size_t len, const struct fn_context *ctx, struct fn_output *out)
 *     {
 *         printf("got %zu bytes\n", len);          // a log line, sent to the host
 *         return fn_respond(out, "{\"ok\":true}", 11);
 *     }
 *
 * and, optionally, `int handler_init(void)`: run once before the snapshot (non-zero fails
 * the deployment).
 */
#ifndef PYRITE_FUNCTION_H
#define PYRITE_FUNCTION_H

#include <stddef.h>
#include <stdint.h>

#define FN_AGENT_PORT 9000u                 /* the vsock port the agent listens on */
#define FN_AGENT_READY "pyrite-agent: ready" /* console line once initialised */

/* Frames, both ways: u32 type, u32 payload length (little-endian), payload. */
#define FN_FRAME_INVOKE 1   /* host: u64 timeout_us, u32 memory_mb, 4 NUL-terminated strings
                               (request id, function name, version, ARN), the event */
#define FN_FRAME_LOG    2   /* guest: bytes the handler wrote to stdout/stderr */
#define FN_FRAME_RESULT 3   /* guest: the handler's response (JSON) */
#define FN_FRAME_ERROR  4   /* guest: {"errorMessage": ..., "errorType": ...} */
#define FN_FRAME_HEADER 8
#define FN_MAX_EVENT (6u * 1024 * 1024 + 4096)   /* Lambda's 6 MB, and the context */

struct fn_context {
    const char *request_id;
    const char *function_name;
    const char *function_version;
    const char *invoked_function_arn;
    uint32_t memory_limit_mb;
    uint64_t deadline_us;                  /* CLOCK_MONOTONIC, microseconds */
};

struct fn_output;                          /* owned by the agent */

typedef int (*fn_handler)(const char *event, size_t len, const struct fn_context *ctx,
                          struct fn_output *out);

/* Milliseconds left before the host ends this invocation (0 when past). */
uint64_t fn_remaining_ms(const struct fn_context *ctx);
/* The response: `len` bytes of JSON, copied. A handler that returns 0 without one
 * answers `null`. Returns 0, or -ENOMEM. */
int fn_respond(struct fn_output *out, const void *json, size_t len);
/* A handler error, as Lambda reports it: {"errorMessage": message, "errorType": type}.
 * Returns -1, so `return fn_fail(out, "ValueError", "bad input");` reads naturally. */
int fn_fail(struct fn_output *out, const char *error_type, const char *message);

/* Initialise (`init` may be NULL), listen on FN_AGENT_PORT, print FN_AGENT_READY, and serve
 * invocations for ever. Returns only on a setup failure (a status for main to return). */
int fn_agent_main(fn_handler handler, int (*init)(void));

#endif
