/* A provided-runtime function for the service's tests: the event (a JSON string) picks a
 * behaviour. Init sets `calls` to 100, so a fresh clone always answers calls=101. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pyrite/function.h>
#include <pyrite/vmgenid.h>

static int calls;
static const char *version = "v1";

int handler_init(void)
{
    calls = 100;
    return 0;
}

static int is(const char *event, size_t len, const char *word)
{
    size_t n = strlen(word);
    return len == n + 2 && event[0] == '"' && memcmp(event + 1, word, n) == 0 && event[n + 1] == '"';
}

int handler(const char *event, size_t len, const struct fn_context *ctx, struct fn_output *out)
{
    static char buf[1024];
    printf("handling %s\n", ctx->request_id);
    if (is(event, len, "fail"))
        return fn_fail(out, "ValueError", "asked to fail");
    if (is(event, len, "crash"))
        return *(volatile int *)8;                        /* a page fault: status 142 */
    if (is(event, len, "spin"))
        for (;;)
            ;
    if (is(event, len, "sleep")) {
        usleep(1500 * 1000);
        return fn_respond(out, "\"slept\"", 7);
    }
    if (is(event, len, "oom")) {
        size_t total = 0;
        for (;;) {                                        /* take all memory, then use the NULL */
            char *p = malloc(1 << 20);
            if (!p)
                break;
            memset(p, 1, 1 << 20);
            total += 1 << 20;
        }
        printf("allocated %zu MiB before malloc failed\n", total >> 20);
        return *(volatile int *)0;
    }
    if (is(event, len, "flood")) {
        static char block[64 * 1024];
        memset(block, 'f', sizeof block);
        block[sizeof block - 1] = '\n';
        for (;;)
            write(1, block, sizeof block);                /* output without end, 64 KiB at a time */
    }
    if (is(event, len, "big")) {
        size_t n = 7u << 20;                             /* over Lambda's 6 MB response limit */
        char *p = malloc(n);
        memset(p, 'x', n);
        p[0] = p[n - 1] = '"';
        return fn_respond(out, p, n);
    }
    if (is(event, len, "env")) {
        const char *greeting = getenv("GREETING");
        int n = snprintf(buf, sizeof buf, "{\"GREETING\":\"%s\"}", greeting ? greeting : "");
        return fn_respond(out, buf, (size_t)n);
    }
    uint8_t id[16] = {0};
    vmgenid_read(id);
    int n = snprintf(buf, sizeof buf,
                     "{\"version\":\"%s\",\"calls\":%d,\"len\":%zu,\"request\":\"%s\",\"function\":\"%s\","
                     "\"memory\":%u,\"remaining_ms\":%llu,\"rand\":%d,\"genid\":\"%02x%02x%02x%02x%02x%02x%02x%02x\"}",
                     version, ++calls, len, ctx->request_id, ctx->function_name, ctx->memory_limit_mb,
                     (unsigned long long)fn_remaining_ms(ctx), rand(), id[0], id[1], id[2], id[3], id[4], id[5],
                     id[6], id[7]);
    return fn_respond(out, buf, (size_t)n);
}
