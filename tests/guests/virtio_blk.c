/* virtio-blk from a unikernel: runs the commands of its command line in order against one
 * disk (<pyrite/virtio.h>) and reports each on serial.
 *
 *   info                      devices found, capacity=, read_only=, flush=, id=
 *   disk <i>                  use block device i from now on (default 0)
 *   write <sector> <count> <seed>
 *                             write count sectors of the pattern below, then flush;
 *                             prints "write <sector> <count> fnv1a64=<hex>"
 *   read <sector> <count>     prints "read <sector> <count> fnv1a64=<hex>" of the bytes read
 *   wait                      prints "waiting", then reads a line from the console (so that
 *                             the host can change the drive meanwhile)
 *
 * Pattern: 64-bit words, little-endian, state = state * 6364136223846793005 +
 * 1442695040888963407 (mod 2^64) before each word, starting from state = seed.
 * It first prints argv and the environment (virtio_mmio.device= words must not be there).
 *
 * Exit status: 0 success, 2 bad command line, 3 no block device, 4 open refused the device
 * (-ENOTSUP: legacy transport, features), 5 open failed otherwise, 6 write failed with -EIO,
 * 7 write failed otherwise, 8 flush failed, 9 read failed with -EIO, 10 read failed
 * otherwise, 11 GET_ID failed, 12 out of memory. Errors print "error <op> <code>".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pyrite/virtio.h>

extern char **environ;

static uint64_t fnv1a64(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static void fill_pattern(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t state = seed;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        memcpy(p + i, &state, 8);
    }
}

static int fail(const char *op, int code, int status)
{
    printf("error %s %d\n", op, code);
    return status;
}

static struct virtio_blk *blk;

static int open_disk(unsigned index)
{
    if (virtio_blk_count() == 0)
        return fail("open", -ENODEV, 3);
    int err = virtio_blk_open(index, &blk);
    if (err)
        return fail("open", err, err == -ENOTSUP ? 4 : 5);
    return 0;
}

static int info(void)
{
    int n = virtio_device_count();
    printf("devices=%d\n", n);
    for (int i = 0; i < n; i++) {
        struct virtio_device_info d;
        virtio_device_info((unsigned)i, &d);
        printf("device %d type=%u version=%u base=0x%lx size=0x%x irq=%d source=%s\n", i,
               d.device_id, d.version, (unsigned long)d.base, d.size, d.irq, d.source);
    }
    printf("capacity=%lu\n", (unsigned long)virtio_blk_capacity(blk));
    printf("read_only=%d\n", virtio_blk_read_only(blk));
    printf("flush=%d\n", virtio_blk_can_flush(blk));
    char id[VIRTIO_BLK_ID_BYTES + 1];
    int err = virtio_blk_get_id(blk, id);
    if (err)
        return fail("get_id", err, 11);
    printf("id=%s\n", id);
    return 0;
}

static int do_write(uint64_t sector, uint32_t count, uint64_t seed)
{
    size_t bytes = (size_t)count * VIRTIO_BLK_SECTOR_SIZE;
    uint8_t *buf = malloc(bytes ? bytes : 1);
    if (!buf)
        return fail("malloc", -ENOMEM, 12);
    fill_pattern(buf, bytes, seed);
    int err = virtio_blk_write(blk, sector, buf, count);
    if (err) {
        free(buf);
        return fail("write", err, err == -EIO ? 6 : 7);
    }
    err = virtio_blk_flush(blk);
    if (err) {
        free(buf);
        return fail("flush", err, 8);
    }
    printf("write %lu %u fnv1a64=%016lx\n", (unsigned long)sector, count, (unsigned long)fnv1a64(buf, bytes));
    free(buf);
    return 0;
}

static int do_read(uint64_t sector, uint32_t count)
{
    size_t bytes = (size_t)count * VIRTIO_BLK_SECTOR_SIZE;
    uint8_t *buf = malloc(bytes ? bytes : 1);
    if (!buf)
        return fail("malloc", -ENOMEM, 12);
    memset(buf, 0xA5, bytes);           /* so that bytes the device did not write show */
    int err = virtio_blk_read(blk, sector, buf, count);
    if (err) {
        free(buf);
        return fail("read", err, err == -EIO ? 9 : 10);
    }
    printf("read %lu %u fnv1a64=%016lx\n", (unsigned long)sector, count, (unsigned long)fnv1a64(buf, bytes));
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    for (char **e = environ; *e; e++)
        printf("env %s\n", *e);
    if (argc < 2)
        return fail("usage", 0, 2);
    unsigned disk = 0;
    int status;
    for (int i = 1; i < argc; i++) {
        const char *cmd = argv[i];
        int left = argc - i - 1;
        if (strcmp(cmd, "disk") == 0 && left >= 1) {
            disk = (unsigned)strtoul(argv[++i], NULL, 0);
            blk = NULL;
            continue;
        }
        if (!blk && (status = open_disk(disk)) != 0)
            return status;
        if (strcmp(cmd, "wait") == 0) {
            char line[64];
            printf("waiting\n");
            fflush(stdout);
            status = fgets(line, sizeof line, stdin) ? 0 : 2;
        } else if (strcmp(cmd, "info") == 0) {
            status = info();
        } else if (strcmp(cmd, "write") == 0 && left >= 3) {
            status = do_write(strtoull(argv[i + 1], NULL, 0), (uint32_t)strtoul(argv[i + 2], NULL, 0),
                              strtoull(argv[i + 3], NULL, 0));
            i += 3;
        } else if (strcmp(cmd, "read") == 0 && left >= 2) {
            status = do_read(strtoull(argv[i + 1], NULL, 0), (uint32_t)strtoul(argv[i + 2], NULL, 0));
            i += 2;
        } else {
            printf("unknown command or missing arguments: %s\n", cmd);
            return 2;
        }
        if (status)
            return status;
    }
    printf("done\n");
    return 0;
}
