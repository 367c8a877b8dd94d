/* Isolation probe: init keeps SECRET (an environment variable) in its memory, as a function's
 * data would be. An invocation whose event is a hex string H scans this VM's RAM for the
 * bytes H encodes (decoded into a buffer the scan skips) from the end of the image and its
 * stacks (their guard pages are not mapped) to the end of RAM: the heap, where init keeps the
 * secret, and every page never handed out; and tries to reach another guest
 * over vsock; it answers what it found. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pyrite/boot.h>
#include <pyrite/function.h>
#include <pyrite/virtio.h>
static char *secret_copy;

int handler_init(void)
{
    const char *secret = getenv("SECRET");
    if (secret) {
        secret_copy = malloc(strlen(secret) + 1);
        strcpy(secret_copy, secret);
    }
    return 0;
}

static int hexval(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

int handler(const char *event, size_t len, const struct fn_context *ctx, struct fn_output *out)
{
    static char needle[128], buf[256];
    size_t n = 0;
    for (size_t i = 1; i + 2 < len && n < sizeof needle; i += 2)   /* skip the quotes */
        needle[n++] = (char)(hexval(event[i]) << 4 | hexval(event[i + 1]));
    size_t ram = (size_t)ctx->memory_limit_mb << 20, found = 0;
    for (const char *p = (const char *)pyrite_image_memory_end(); p + n <= (const char *)ram; p++)
        if (p[0] == needle[0] && p != needle && memcmp(p, needle, n) == 0)
            found++;
    int peer = vsock_connect(3, FN_AGENT_PORT);                  /* every clone's CID is 3 */
    int host = vsock_connect(VSOCK_HOST_CID, FN_AGENT_PORT);
    int k = snprintf(buf, sizeof buf, "{\"found\":%zu,\"own_secret\":\"%s\",\"peer_connect\":%d,\"host_connect\":%d}",
                     found, secret_copy ? secret_copy : "", peer, host);
    return fn_respond(out, buf, (size_t)k);
}
