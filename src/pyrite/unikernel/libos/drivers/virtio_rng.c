/*
 * virtio-rng driver (virtio 1.2 section 5.4): one request queue of device-writable buffers.
 * The device may fill less than a whole buffer, so a read is repeated until n bytes came.
 */
#include <stdint.h>
#include "virtio_internal.h"

#define QUEUE_SIZE 8
#define MAX_REQUEST_BYTES (64u * 1024)  /* bounded work (and rate-limiter tokens) a request */

struct virtio_rng {
    struct virtio_mmio_device *dev;
    struct virtq queue;
};

static struct virtio_rng *rng_open(int *err)
{
    struct virtio_mmio_device *dev = virtio_mmio_find(VIRTIO_ID_ENTROPY, 0);
    if (!dev) {
        *err = -ENODEV;
        return NULL;
    }
    if (dev->driver)
        return dev->driver;
    static struct virtio_rng first;             /* only the first entropy device is used */
    struct virtio_rng *rng = &first;
    *err = virtio_mmio_negotiate(dev, 0);
    if (!*err) {
        *err = virtq_setup(&rng->queue, dev, 0, QUEUE_SIZE);
        if (*err)
            virtio_mmio_fail(dev);
    }
    if (*err)
        return NULL;
    rng->dev = dev;
    virtio_mmio_driver_ok(dev);
    dev->driver = rng;
    return rng;
}

long virtio_rng_read(void *buf, size_t n)
{
    int err;
    if (!buf && n)
        return -EINVAL;
    struct virtio_rng *rng = rng_open(&err);
    if (!rng)
        return err;
    char *p = buf;
    size_t got = 0;
    while (got < n) {
        uint32_t want = n - got < MAX_REQUEST_BYTES ? (uint32_t)(n - got) : MAX_REQUEST_BYTES;
        struct virtq_buf b = {p + got, want, 1};
        if (virtq_add(&rng->queue, &b, 1, rng) != 0)
            return -EIO;
        virtq_kick(&rng->queue);
        uint32_t written = 0;
        if (virtq_wait_used(&rng->queue, &written) != rng)
            return -EIO;                /* the device needs a reset */
        if (written == 0 || written > want)
            return -EIO;                /* the device must give at least one byte (5.4.6) */
        got += written;
    }
    return (long)got;
}
