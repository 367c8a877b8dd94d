/*
 * virtio-net driver (virtio 1.2 section 5.1): a receive queue kept full of fixed-size
 * buffers and a transmit queue with one frame in flight. No offloads and no
 * VIRTIO_NET_F_MRG_RXBUF are negotiated, so every buffer starts with the 12-byte
 * virtio_net_hdr_v1 (VERSION_1), which is all zeros on transmit, and a received frame fits
 * in one buffer. Completions are found at CPL 3, by polling and then halting until the
 * device's interrupt (virtq_wait_any).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pyrite/arch.h>
#include "virtio_internal.h"
#include "../libos_internal.h"

#define VIRTIO_NET_F_MAC 5

#define RX_QUEUE 0
#define TX_QUEUE 1
#define RX_BUFFERS 16
#define RX_BUFFER_SIZE 2048             /* header + a 1514-byte frame (+ VLAN tag), rounded up */
#define TX_QUEUE_SIZE 8
#define CONFIG_MAC 0

struct virtio_net {
    struct virtio_mmio_device *dev;
    struct virtq rx, tx;
    uint8_t *rx_buffers;                /* RX_BUFFERS * RX_BUFFER_SIZE, owned by the device until used */
    uint8_t tx_header[VIRTIO_NET_HDR_BYTES];
};

int virtio_net_count(void) { return (int)virtio_mmio_count(VIRTIO_ID_NET); }

static int post_rx(struct virtio_net *net, uint8_t *buffer)
{
    struct virtq_buf b = {buffer, RX_BUFFER_SIZE, 1};
    return virtq_add(&net->rx, &b, 1, buffer);
}

int virtio_net_open(unsigned i, struct virtio_net **out)
{
    struct virtio_mmio_device *dev = virtio_mmio_find(VIRTIO_ID_NET, i);
    if (!dev)
        return -ENODEV;
    if (dev->driver) {
        *out = dev->driver;
        return 0;
    }
    struct virtio_net *net = calloc(1, sizeof *net);
    uint8_t *buffers = malloc((size_t)RX_BUFFERS * RX_BUFFER_SIZE);
    if (!net || !buffers) {
        free(net);
        free(buffers);
        return -ENOMEM;
    }
    net->rx_buffers = buffers;
    int err = virtio_mmio_negotiate(dev, 1ull << VIRTIO_NET_F_MAC);
    if (!err)
        err = virtq_setup(&net->rx, dev, RX_QUEUE, RX_BUFFERS);
    if (!err)
        err = virtq_setup(&net->tx, dev, TX_QUEUE, TX_QUEUE_SIZE);
    /* The rx queue may be smaller than asked: post as many buffers as it holds. */
    for (unsigned b = 0; !err && b < RX_BUFFERS && b < net->rx.size; b++)
        err = post_rx(net, buffers + (size_t)b * RX_BUFFER_SIZE) ? -EIO : 0;
    if (err) {
        virtio_mmio_fail(dev);
        free(buffers);
        free(net);
        return err;
    }
    net->dev = dev;
    virtio_mmio_driver_ok(dev);
    virtq_kick(&net->rx);               /* buffers published after DRIVER_OK: the device reads them now */
    dev->driver = net;
    *out = net;
    return 0;
}

int virtio_net_mac(struct virtio_net *net, uint8_t mac[6])
{
    if (!(net->dev->features >> VIRTIO_NET_F_MAC & 1))
        return -ENODATA;
    for (unsigned i = 0; i < 6; i++)
        mac[i] = virtio_mmio_config8(net->dev, CONFIG_MAC + i);
    return 0;
}

int virtio_net_send(struct virtio_net *net, const void *frame, size_t len)
{
    if (!frame || len < VIRTIO_NET_MIN_FRAME || len > VIRTIO_NET_MAX_FRAME)
        return -EINVAL;
    memset(net->tx_header, 0, sizeof net->tx_header);
    struct virtq_buf bufs[2] = {{net->tx_header, sizeof net->tx_header, 0}, {frame, (uint32_t)len, 0}};
    if (virtq_add(&net->tx, bufs, 2, net) != 0)
        return -EIO;                    /* cannot happen with one frame in flight */
    virtq_kick(&net->tx);
    if (virtq_wait_used(&net->tx, NULL) != net)
        return -EIO;                    /* the device needs a reset */
    return 0;
}

long virtio_net_recv(struct virtio_net *net, void *buf, size_t cap, uint64_t timeout_us)
{
    if (!buf && cap)
        return -EINVAL;
    uint64_t deadline = timeout_us == VIRTIO_NET_WAIT_FOREVER || timeout_us > UINT64_MAX / 2000
        ? PYRITE_NO_DEADLINE : pyrite_monotonic_ns() + timeout_us * 1000;
    struct virtq *rx = &net->rx;
    for (;;) {
        uint32_t written = 0;
        uint8_t *buffer = virtq_get_used(&net->rx, &written);
        if (buffer) {
            long len = -1;
            if (written >= VIRTIO_NET_HDR_BYTES && written <= RX_BUFFER_SIZE) {
                len = (long)(written - VIRTIO_NET_HDR_BYTES);
                if ((size_t)len > cap)
                    len = (long)cap;    /* the rest of the frame is cut off */
                memcpy(buf, buffer + VIRTIO_NET_HDR_BYTES, (size_t)len);
            }
            post_rx(net, buffer);       /* the buffer goes straight back to the device */
            virtq_kick(&net->rx);
            if (len >= 0)
                return len;
            continue;                   /* a buffer returned without a frame */
        }
        if (deadline != PYRITE_NO_DEADLINE && pyrite_monotonic_ns() >= deadline)
            return -EAGAIN;
        if (virtq_wait_any(&rx, 1, deadline, VIRTQ_POLL_INPUT_NS) != 0)
            return -EIO;                /* the device needs a reset */
    }
}
