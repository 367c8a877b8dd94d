/*
 * virtio-blk driver (virtio 1.2 section 5.2): one request queue, one request in flight.
 * A request is the chain header (readable) [+ data] + status byte (writable), with the
 * application's buffer as the data descriptor (identity mapping: no copy).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "virtio_internal.h"

#define VIRTIO_BLK_F_RO    5
#define VIRTIO_BLK_F_FLUSH 9

#define VIRTIO_BLK_T_IN     0
#define VIRTIO_BLK_T_OUT    1
#define VIRTIO_BLK_T_FLUSH  4
#define VIRTIO_BLK_T_GET_ID 8

#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2
#define STATUS_UNWRITTEN    0xFF        /* what we put in the status byte before sending */

#define CONFIG_CAPACITY 0               /* le64, in 512-byte sectors */
#define QUEUE_SIZE 64                   /* one request at a time needs 3 descriptors */
#define MAX_REQUEST_SECTORS 2048        /* 1 MiB a request: bounded work for the device */

struct virtio_blk_req_header {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};

struct virtio_blk {
    struct virtio_mmio_device *dev;
    struct virtq queue;
    struct virtio_blk_req_header header;    /* read by the device */
    volatile uint8_t status;                /* written by the device */
};

int virtio_blk_count(void) { return (int)virtio_mmio_count(VIRTIO_ID_BLOCK); }

int virtio_blk_open(unsigned i, struct virtio_blk **out)
{
    struct virtio_mmio_device *dev = virtio_mmio_find(VIRTIO_ID_BLOCK, i);
    if (!dev)
        return -ENODEV;
    if (dev->driver) {
        *out = dev->driver;
        return 0;
    }
    struct virtio_blk *blk = calloc(1, sizeof *blk);
    if (!blk)
        return -ENOMEM;
    int err = virtio_mmio_negotiate(dev, 1ull << VIRTIO_BLK_F_RO | 1ull << VIRTIO_BLK_F_FLUSH);
    if (!err) {
        err = virtq_setup(&blk->queue, dev, 0, QUEUE_SIZE);
        if (err)
            virtio_mmio_fail(dev);
    }
    if (err) {
        free(blk);
        return err;
    }
    blk->dev = dev;
    virtio_mmio_driver_ok(dev);
    dev->driver = blk;
    *out = blk;
    return 0;
}

/* Send one request and wait for it: 0, or -EIO / -ENOTSUP from the status byte. */
static int submit(struct virtio_blk *blk, uint32_t type, uint64_t sector, const void *data,
                  uint32_t len, int device_writes)
{
    struct virtq_buf bufs[3];
    unsigned n = 0;
    blk->header = (struct virtio_blk_req_header){.type = type, .sector = sector};
    blk->status = STATUS_UNWRITTEN;
    bufs[n++] = (struct virtq_buf){&blk->header, sizeof blk->header, 0};
    if (len)
        bufs[n++] = (struct virtq_buf){data, len, device_writes};
    bufs[n++] = (struct virtq_buf){(const void *)&blk->status, 1, 1};
    int err = virtq_add(&blk->queue, bufs, n, blk);
    if (err)
        return -EIO;                    /* cannot happen with one request in flight */
    virtq_kick(&blk->queue);
    if (virtq_wait_used(&blk->queue, NULL) != blk)
        return -EIO;                    /* the device needs a reset */
    switch (blk->status) {
    case VIRTIO_BLK_S_OK:
        return 0;
    case VIRTIO_BLK_S_UNSUPP:
        return -ENOTSUP;
    default:                            /* IOERR, or no status written */
        return -EIO;
    }
}

static int transfer(struct virtio_blk *blk, uint32_t type, uint64_t sector, const void *buf,
                    uint32_t sectors)
{
    if (!buf && sectors)
        return -EINVAL;
    const char *p = buf;
    while (sectors) {
        uint32_t chunk = sectors < MAX_REQUEST_SECTORS ? sectors : MAX_REQUEST_SECTORS;
        int err = submit(blk, type, sector, p, chunk * VIRTIO_BLK_SECTOR_SIZE, type == VIRTIO_BLK_T_IN);
        if (err)
            return err;
        sector += chunk;
        p += (size_t)chunk * VIRTIO_BLK_SECTOR_SIZE;
        sectors -= chunk;
    }
    return 0;
}

int virtio_blk_read(struct virtio_blk *blk, uint64_t sector, void *buf, uint32_t sectors)
{
    return transfer(blk, VIRTIO_BLK_T_IN, sector, buf, sectors);
}

int virtio_blk_write(struct virtio_blk *blk, uint64_t sector, const void *buf, uint32_t sectors)
{
    return transfer(blk, VIRTIO_BLK_T_OUT, sector, buf, sectors);
}

int virtio_blk_flush(struct virtio_blk *blk)
{
    if (!virtio_blk_can_flush(blk))
        return 0;                       /* no FLUSH feature: the device writes through */
    return submit(blk, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, 0);
}

/* Read live: the VMM may swap the disk (Firecracker's PATCH /drives). */
uint64_t virtio_blk_capacity(struct virtio_blk *blk) { return virtio_mmio_config64(blk->dev, CONFIG_CAPACITY); }

int virtio_blk_read_only(struct virtio_blk *blk) { return (blk->dev->features >> VIRTIO_BLK_F_RO) & 1; }

int virtio_blk_can_flush(struct virtio_blk *blk) { return (blk->dev->features >> VIRTIO_BLK_F_FLUSH) & 1; }

int virtio_blk_get_id(struct virtio_blk *blk, char id[VIRTIO_BLK_ID_BYTES + 1])
{
    memset(id, 0, VIRTIO_BLK_ID_BYTES + 1);     /* the device's string has no NUL at 20 bytes */
    return submit(blk, VIRTIO_BLK_T_GET_ID, 0, id, VIRTIO_BLK_ID_BYTES, 1);
}
