/* virtio throughput from a unikernel at CPL 3, timed with the TSC inside the guest.
 * benchmarks/virtio.py boots it under pyrite and under QEMU with the same disk file.
 *
 * Runs the commands of its command line in order, against block device 0 and the entropy
 * device (<pyrite/virtio.h>), and prints one line per command:
 *
 *   idle                      opens nothing, prints "result idle bytes=0 ops=0 cycles=0"
 *                             (the host's baseline for start-up and exit costs)
 *   seqwrite <MiB>            128 KiB writes from sector 0, one request each, then one flush;
 *                             the flush is timed on its own: "result flush ... cycles=N"
 *   seqread <MiB>             128 KiB reads from sector 0
 *   randread <ops>            4 KiB reads at random 4 KiB-aligned places on the whole disk,
 *                             one at a time (queue depth 1)
 *   rng <MiB>                 virtio_rng_read() in 64 KiB pieces
 *   nettx <frames>            sends 64-byte Ethernet frames (to a MAC no one has, EtherType
 *                             0x88B5, "local experimental") on interface 0, one at a time;
 *                             built only when <pyrite/virtio.h> has the virtio-net API
 *
 *   result <name> bytes=<moved> ops=<requests> cycles=<TSC cycles>
 *
 * It first prints "tsc_hz=<the library OS's TSC frequency> source=<where it found it>".
 * Sequential commands wrap around at the end of the disk. Exit status: 0 success, 2 bad
 * command line, 3 no device, 4 open failed, 5 I/O error (printed as "error <op> <code>"),
 * 12 out of memory.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pyrite/clock.h>
#include <pyrite/virtio.h>

#define SEQ_BYTES   (128u * 1024)
#define RAND_BYTES  4096u
#define RNG_CHUNK   (64u * 1024)
#define MIB         (1024ull * 1024)

static inline uint64_t read_tsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("lfence\n\trdtsc" : "=a"(lo), "=d"(hi) : : "memory");
    return ((uint64_t)hi << 32) | lo;
}

static struct virtio_blk *blk;
static uint8_t *buf;

static int fail(const char *op, long code, int status)
{
    printf("error %s %ld\n", op, code);
    return status;
}

static void result(const char *name, uint64_t bytes, uint64_t ops, uint64_t cycles)
{
    printf("result %s bytes=%llu ops=%llu cycles=%llu\n", name, (unsigned long long)bytes,
           (unsigned long long)ops, (unsigned long long)cycles);
}

static int open_disk(void)
{
    if (blk)
        return 0;
    if (virtio_blk_count() == 0)
        return fail("open", -ENODEV, 3);
    int err = virtio_blk_open(0, &blk);
    return err ? fail("open", err, 4) : 0;
}

static int sequential(int writing, uint64_t mib)
{
    const uint32_t sectors = SEQ_BYTES / VIRTIO_BLK_SECTOR_SIZE;
    uint64_t capacity = virtio_blk_capacity(blk), chunks = mib * MIB / SEQ_BYTES, sector = 0;
    if (capacity < sectors)
        return fail("capacity", (long)capacity, 2);
    uint64_t start = read_tsc();
    for (uint64_t i = 0; i < chunks; i++) {
        if (sector + sectors > capacity)
            sector = 0;
        int err = writing ? virtio_blk_write(blk, sector, buf, sectors)
                          : virtio_blk_read(blk, sector, buf, sectors);
        if (err)
            return fail(writing ? "write" : "read", err, 5);
        sector += sectors;
    }
    uint64_t cycles = read_tsc() - start;
    result(writing ? "seqwrite" : "seqread", chunks * SEQ_BYTES, chunks, cycles);
    if (writing) {
        start = read_tsc();
        int err = virtio_blk_flush(blk);
        if (err)
            return fail("flush", err, 5);
        result("flush", 0, 1, read_tsc() - start);
    }
    return 0;
}

static int random_reads(uint64_t ops)
{
    const uint32_t sectors = RAND_BYTES / VIRTIO_BLK_SECTOR_SIZE;
    uint64_t blocks = virtio_blk_capacity(blk) / sectors, state = 0x9e3779b97f4a7c15ull;
    if (blocks == 0)
        return fail("capacity", 0, 2);
    uint64_t start = read_tsc();
    for (uint64_t i = 0; i < ops; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        int err = virtio_blk_read(blk, (state >> 17) % blocks * sectors, buf, sectors);
        if (err)
            return fail("read", err, 5);
    }
    result("randread", ops * RAND_BYTES, ops, read_tsc() - start);
    return 0;
}

static int entropy(uint64_t mib)
{
    uint64_t total = mib * MIB, done = 0, ops = 0;
    uint64_t start = read_tsc();
    while (done < total) {
        size_t want = total - done < RNG_CHUNK ? (size_t)(total - done) : RNG_CHUNK;
        long got = virtio_rng_read(buf, want);
        if (got <= 0)
            return fail("rng", got, got == -ENODEV ? 3 : 5);
        done += (uint64_t)got;
        ops++;
    }
    result("rng", done, ops, read_tsc() - start);
    return 0;
}

#ifdef VIRTIO_ID_NET
#define NET_FRAME_BYTES 64u

static int net_transmit(uint64_t frames)
{
    struct virtio_net *net;
    if (virtio_net_count() == 0)
        return fail("net", -ENODEV, 3);
    int err = virtio_net_open(0, &net);
    if (err)
        return fail("net", err, 4);
    static const uint8_t header[14] = {0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x88, 0xb5};
    uint8_t frame[NET_FRAME_BYTES] = {0};
    memcpy(frame, header, sizeof header);
    uint64_t start = read_tsc();
    for (uint64_t i = 0; i < frames; i++) {
        memcpy(frame + sizeof header, &i, sizeof i);
        err = virtio_net_send(net, frame, sizeof frame);
        if (err)
            return fail("send", err, 5);
    }
    result("nettx", frames * NET_FRAME_BYTES, frames, read_tsc() - start);
    return 0;
}
#endif

int main(int argc, char **argv)
{
    printf("tsc_hz=%lu source=%s\n", pyrite_tsc_hz(), pyrite_tsc_source());
    buf = malloc(SEQ_BYTES);
    if (!buf)
        return fail("malloc", -ENOMEM, 12);
    memset(buf, 0x5a, SEQ_BYTES);
    for (int i = 1; i < argc; i++) {
        const char *cmd = argv[i];
        int status;
        if (strcmp(cmd, "idle") == 0) {
            result("idle", 0, 0, 0);
            continue;
        }
        if (i + 1 >= argc)
            return fail("usage", 0, 2);
        char *end;
        uint64_t n = strtoull(argv[++i], &end, 0);
        if (*end || n == 0)
            return fail("usage", 0, 2);
        if (strcmp(cmd, "rng") == 0)
            status = entropy(n);
#ifdef VIRTIO_ID_NET
        else if (strcmp(cmd, "nettx") == 0)
            status = net_transmit(n);
#endif
        else if ((status = open_disk()) != 0)
            return status;
        else if (strcmp(cmd, "seqwrite") == 0)
            status = sequential(1, n);
        else if (strcmp(cmd, "seqread") == 0)
            status = sequential(0, n);
        else if (strcmp(cmd, "randread") == 0)
            status = random_reads(n);
        else
            return fail("usage", 0, 2);
        if (status)
            return status;
    }
    return 0;
}
