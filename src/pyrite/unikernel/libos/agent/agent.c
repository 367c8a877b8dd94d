/*
 * The function agent: one small loop shared by every function runtime. It initialises the
 * function, listens on vsock port FN_AGENT_PORT, and for each INVOKE frame calls the
 * handler with the event and its context, sending what the handler prints as LOG frames
 * (stdout/stderr go through a console sink while it runs) and its answer as one RESULT or
 * ERROR frame. The host runs each invocation in a fresh clone of the VM snapshotted at
 * "ready", so the agent keeps no state between invocations but the connection.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pyrite/console.h>
#include <pyrite/function.h>
#include <pyrite/virtio.h>

struct fn_output {
    char *data;
    size_t len;
    int kind;                       /* 0 none, FN_FRAME_RESULT or FN_FRAME_ERROR */
};

static int agent_conn = -1;

static uint64_t monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t fn_remaining_ms(const struct fn_context *ctx)
{
    uint64_t now = monotonic_us();
    return ctx->deadline_us > now ? (ctx->deadline_us - now) / 1000u : 0;
}

static int send_frame(uint32_t type, const void *payload, size_t len)
{
    uint8_t hdr[FN_FRAME_HEADER];
    for (int i = 0; i < 4; i++) {
        hdr[i] = (uint8_t)(type >> (8 * i));
        hdr[4 + i] = (uint8_t)((uint32_t)len >> (8 * i));
    }
    if (vsock_write(agent_conn, hdr, sizeof hdr) < 0)
        return -1;
    return len && vsock_write(agent_conn, payload, len) < 0 ? -1 : 0;
}

static void log_sink(const char *data, size_t n)
{
    if (agent_conn >= 0 && n)
        send_frame(FN_FRAME_LOG, data, n);
}

static int set_output(struct fn_output *out, int kind, const void *data, size_t len)
{
    char *copy = malloc(len ? len : 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, data, len);
    free(out->data);
    out->data = copy;
    out->len = len;
    out->kind = kind;
    return 0;
}

int fn_respond(struct fn_output *out, const void *json, size_t len)
{
    return set_output(out, FN_FRAME_RESULT, json, len);
}

/* `s` as the inside of a JSON string, into buf (at most cap - 1 bytes, NUL-terminated). */
static size_t json_escape(char *buf, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)c;
        } else if (c < 0x20) {
            memcpy(buf + n, "\\u00", 4);
            buf[n + 4] = hex[c >> 4];
            buf[n + 5] = hex[c & 15];
            n += 6;
        } else {
            buf[n++] = (char)c;
        }
    }
    buf[n] = 0;
    return n;
}

int fn_fail(struct fn_output *out, const char *error_type, const char *message)
{
    static char type[256], msg[4096], json[4400];
    json_escape(type, sizeof type, error_type ? error_type : "Error");
    json_escape(msg, sizeof msg, message ? message : "");
    int n = snprintf(json, sizeof json, "{\"errorMessage\":\"%s\",\"errorType\":\"%s\"}", msg, type);
    set_output(out, FN_FRAME_ERROR, json, (size_t)n);
    return -1;
}

static int read_exact(void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n) {
        long got = vsock_read(agent_conn, p, n, VSOCK_WAIT_FOREVER);
        if (got <= 0)
            return -1;
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

static uint64_t le(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* The context's strings, in place in the payload; the event is what follows them. */
static int parse_invoke(char *payload, size_t len, struct fn_context *ctx, const char **event, size_t *event_len)
{
    if (len < 12)
        return -1;
    uint64_t timeout_us = le((uint8_t *)payload, 8);
    ctx->memory_limit_mb = (uint32_t)le((uint8_t *)payload + 8, 4);
    ctx->deadline_us = monotonic_us() + timeout_us;
    const char **fields[4] = {&ctx->request_id, &ctx->function_name, &ctx->function_version,
                              &ctx->invoked_function_arn};
    size_t at = 12;
    for (int i = 0; i < 4; i++) {
        char *end = memchr(payload + at, 0, len - at);
        if (!end)
            return -1;
        *fields[i] = payload + at;
        at = (size_t)(end - payload) + 1;
    }
    *event = payload + at;
    *event_len = len - at;
    return 0;
}

static void invoke(fn_handler handler, char *payload, size_t len)
{
    struct fn_context ctx;
    struct fn_output out = {0};
    const char *event;
    size_t event_len;
    if (parse_invoke(payload, len, &ctx, &event, &event_len) != 0) {
        fn_fail(&out, "Runtime.InvalidInvoke", "pyrite-agent: malformed INVOKE frame");
    } else {
        pyrite_console_set_sink(log_sink);
        int status = handler(event, event_len, &ctx, &out);
        pyrite_console_set_sink(NULL);      /* flushes the handler's last partial line */
        if (status != 0 && out.kind != FN_FRAME_ERROR) {
            char msg[64];
            snprintf(msg, sizeof msg, "handler returned %d", status);
            fn_fail(&out, "Runtime.HandlerError", msg);
        }
    }
    if (out.kind == 0)
        fn_respond(&out, "null", 4);
    send_frame((uint32_t)out.kind, out.data, out.len);
    free(out.data);
}

/* Serve one connection's frames until the host closes it. */
static void serve(fn_handler handler)
{
    uint8_t hdr[FN_FRAME_HEADER];
    while (read_exact(hdr, sizeof hdr) == 0) {
        uint32_t type = (uint32_t)le(hdr, 4), len = (uint32_t)le(hdr + 4, 4);
        if (type != FN_FRAME_INVOKE || len > FN_MAX_EVENT)
            return;
        char *payload = malloc(len + 1);
        if (!payload) {
            struct fn_output out = {0};
            fn_fail(&out, "Runtime.OutOfMemory", "pyrite-agent: no memory for the event");
            send_frame(FN_FRAME_ERROR, out.data, out.len);
            return;
        }
        if (read_exact(payload, len) != 0) {
            free(payload);
            return;
        }
        payload[len] = 0;                   /* an event that is text is a C string too */
        invoke(handler, payload, len);
        free(payload);
    }
}

int fn_agent_main(fn_handler handler, int (*init)(void))
{
    if (init) {
        int status = init();
        if (status != 0) {
            printf("pyrite-agent: init failed with status %d\n", status);
            return status;
        }
    }
    int err = vsock_listen(FN_AGENT_PORT);
    if (err) {
        printf("pyrite-agent: vsock_listen(%u) failed: %d (is there a vsock device?)\n", FN_AGENT_PORT, err);
        return 1;
    }
    /* rand() reseeds when the VM generation ID differs from the one it last saw: let it see this
     * one before the snapshot, so that every clone draws its own numbers. */
    (void)rand();
    printf(FN_AGENT_READY "\n");
    fflush(stdout);
    for (;;) {
        agent_conn = vsock_accept(FN_AGENT_PORT, VSOCK_WAIT_FOREVER);
        if (agent_conn < 0)
            continue;
        serve(handler);
        vsock_close(agent_conn);
        agent_conn = -1;
    }
}
