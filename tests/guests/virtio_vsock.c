/* virtio-vsock from a unikernel (<pyrite/virtio.h>): runs the commands of its command line.
 *
 *   echo <port> <n>       listen on port, print "listening <port> cid=<guest cid>", accept n
 *                         connections, serving them interleaved: every byte read is written
 *                         back, until the peer shuts down sending (or resets). For each:
 *                         "echo conn=<k> bytes=<n> fnv1a64=<hex> end=eof|reset|error<code>"
 *   connect <port> <bytes>
 *                         connect to the host (CID 2) port, send <bytes> of the pattern below
 *                         while reading back what comes, until as many bytes came back:
 *                         "connect sent=<n> sent_fnv1a64=<hex> received=<n> received_fnv1a64=<hex>"
 *
 * Pattern byte i: (i * 7 + i / 251) & 0xff.
 * Exit status: 0 success, 2 bad command line, 3 no vsock device, 4 listen/accept failed,
 * 5 connect failed, 6 write/read failed while connecting, 12 out of memory.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pyrite/virtio.h>

#define CHUNK (64 * 1024)
#define MAX_CONNS 8

static uint8_t buf[CHUNK];

static uint64_t fnv1a64_update(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}
#define FNV_INIT 0xcbf29ce484222325ull

struct served {
    int handle, index;
    uint64_t bytes, hash;
};

static void finish(struct served *s, const char *end, long code)
{
    if (code)
        printf("echo conn=%d bytes=%llu fnv1a64=%016llx end=%s%ld\n", s->index,
               (unsigned long long)s->bytes, (unsigned long long)s->hash, end, code);
    else
        printf("echo conn=%d bytes=%llu fnv1a64=%016llx end=%s\n", s->index,
               (unsigned long long)s->bytes, (unsigned long long)s->hash, end);
    vsock_close(s->handle);
    s->handle = -1;
}

static int echo(uint32_t port, int n)
{
    int err = vsock_listen(port);
    if (err) {
        printf("error listen %d\n", err);
        return err == -ENODEV ? 3 : 4;
    }
    printf("listening %u cid=%llu\n", port, (unsigned long long)vsock_guest_cid());
    struct served s[MAX_CONNS];
    int accepted = 0, done = 0, active = 0;
    for (int i = 0; i < MAX_CONNS; i++)
        s[i].handle = -1;
    while (done < n) {
        if (accepted < n && active < MAX_CONNS) {
            /* wait for the first connection, then only look for more between reads */
            int c = vsock_accept(port, active ? 0 : VSOCK_WAIT_FOREVER);
            if (c >= 0) {
                for (int i = 0; i < MAX_CONNS; i++)
                    if (s[i].handle < 0) {
                        s[i] = (struct served){c, accepted, 0, FNV_INIT};
                        break;
                    }
                accepted++;
                active++;
            } else if (c != -ETIMEDOUT) {
                printf("error accept %d\n", c);
                return 4;
            }
        }
        for (int i = 0; i < MAX_CONNS; i++) {
            if (s[i].handle < 0)
                continue;
            long k = vsock_read(s[i].handle, buf, sizeof buf, 0);
            if (k == -ETIMEDOUT)
                continue;
            if (k > 0) {
                s[i].bytes += (uint64_t)k;
                s[i].hash = fnv1a64_update(s[i].hash, buf, (size_t)k);
                long w = vsock_write(s[i].handle, buf, (size_t)k);
                if (w == k)
                    continue;
                finish(&s[i], w == -ECONNRESET ? "reset" : "error", w == -ECONNRESET ? 0 : w);
            } else {
                finish(&s[i], k == 0 ? "eof" : k == -ECONNRESET ? "reset" : "error",
                       k == 0 || k == -ECONNRESET ? 0 : k);
            }
            active--;
            done++;
        }
    }
    return 0;
}

static int connect_host(uint32_t port, uint64_t total)
{
    int c = vsock_connect(VSOCK_HOST_CID, port);
    if (c < 0) {
        printf("error connect %d\n", c);
        return c == -ENODEV ? 3 : 5;
    }
    static uint8_t out[CHUNK / 4];
    uint64_t sent = 0, received = 0, hs = FNV_INIT, hr = FNV_INIT;
    while (received < total) {
        if (sent < total) {
            size_t k = total - sent < sizeof out ? (size_t)(total - sent) : sizeof out;
            for (size_t i = 0; i < k; i++) {
                uint64_t j = sent + i;
                out[i] = (uint8_t)((j * 7 + j / 251) & 0xff);
            }
            long w = vsock_write(c, out, k);
            if (w != (long)k) {
                printf("error write %ld\n", w);
                return 6;
            }
            hs = fnv1a64_update(hs, out, k);
            sent += k;
        }
        long r = vsock_read(c, buf, sizeof buf, sent < total ? 0 : 10000000);
        if (r == -ETIMEDOUT && sent < total)
            continue;
        if (r <= 0) {
            printf("error read %ld\n", r);
            return 6;
        }
        hr = fnv1a64_update(hr, buf, (size_t)r);
        received += (uint64_t)r;
    }
    printf("connect sent=%llu sent_fnv1a64=%016llx received=%llu received_fnv1a64=%016llx\n",
           (unsigned long long)sent, (unsigned long long)hs, (unsigned long long)received,
           (unsigned long long)hr);
    vsock_close(c);
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        int status;
        if (!strcmp(argv[i], "echo") && i + 2 < argc) {
            status = echo((uint32_t)strtoul(argv[i + 1], NULL, 0), atoi(argv[i + 2]));
            i += 2;
        } else if (!strcmp(argv[i], "connect") && i + 2 < argc) {
            status = connect_host((uint32_t)strtoul(argv[i + 1], NULL, 0), strtoull(argv[i + 2], NULL, 0));
            i += 2;
        } else {
            printf("error usage %s\n", argv[i]);
            return 2;
        }
        if (status)
            return status;
    }
    printf("done\n");
    return 0;
}
