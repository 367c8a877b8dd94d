/*
 * virtio-vsock driver (virtio 1.2 section 5.10): stream sockets between this guest and its
 * host (CID 2), at CPL 3 like the other drivers (waits poll, then halt until the device's
 * interrupt: virtq_wait_any). Queue 0 (rx) holds device-writable
 * buffers that come back as packets (a 44-byte header and payload), queue 1 (tx) takes our
 * packets, queue 2 (event) one buffer for VIRTIO_VSOCK_EVENT_TRANSPORT_RESET.
 *
 * Every packet is handled when the application calls in (accept, read, write...): data is
 * copied into the connection's receive ring, whose size we advertise as buf_alloc; the
 * application's reads advance fwd_cnt and, every quarter of the ring, a CREDIT_UPDATE tells
 * the peer it may send more (5.10.6.3). Writes never exceed the peer's credit.
 * Packets are sent synchronously: one header buffer, reused once the device has used it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pyrite/arch.h>
#include "virtio_internal.h"
#include "../libos_internal.h"

#define OP_REQUEST        1
#define OP_RESPONSE       2
#define OP_RST            3
#define OP_SHUTDOWN       4
#define OP_RW             5
#define OP_CREDIT_UPDATE  6
#define OP_CREDIT_REQUEST 7
#define SHUTDOWN_RCV  1
#define SHUTDOWN_SEND 2
#define TYPE_STREAM   1

#define RXQ 0
#define TXQ 1
#define EVQ 2
#define RX_BUFS 8
#define RX_PAYLOAD (64u * 1024)          /* the device's largest packet payload */
#define MAX_PAYLOAD (64u * 1024)
#define CONNECT_TIMEOUT_US 5000000ull
#define CLOSE_TIMEOUT_US 1000000ull
#define EPHEMERAL_PORT_BASE 0xC000u

struct vsock_hdr {
    uint64_t src_cid, dst_cid;
    uint32_t src_port, dst_port, len;
    uint16_t type, op;
    uint32_t flags, buf_alloc, fwd_cnt;
} __attribute__((packed));
_Static_assert(sizeof(struct vsock_hdr) == 44, "virtio_vsock_hdr is 44 bytes");

enum { CONN_FREE, CONN_REQUESTING, CONN_ESTABLISHED, CONN_CLOSED };

struct vconn {
    int state;
    int accepted;                       /* from a listener: handed out by vsock_accept */
    int from_listener;
    int reset;                          /* the peer sent RST */
    uint32_t peer_shutdown;             /* SHUTDOWN flags the peer sent */
    uint64_t peer_cid;
    uint32_t local_port, peer_port;
    uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
    uint32_t fwd_cnt, last_fwd_sent;
    uint8_t *ring;                      /* VSOCK_BUF_ALLOC bytes */
    size_t head, len;
};

struct vsock {
    struct virtio_mmio_device *dev;
    struct virtq rxq, txq, evq;
    uint64_t guest_cid;
    uint8_t *rx_bufs[RX_BUFS];
    uint32_t event_buf;
    struct vsock_hdr tx_hdr;
    uint32_t listening[VSOCK_MAX_LISTENERS];
    unsigned nr_listening;
    struct vconn conns[VSOCK_MAX_CONNECTIONS];
    uint32_t next_port;
};

static struct vsock *vs;

/* A deadline in pyrite_monotonic_ns() time, PYRITE_NO_DEADLINE for VSOCK_WAIT_FOREVER. */
struct deadline { uint64_t end; };
static struct deadline deadline_in(uint64_t timeout_us)
{
    if (timeout_us == VSOCK_WAIT_FOREVER || timeout_us > UINT64_MAX / 2000)
        return (struct deadline){PYRITE_NO_DEADLINE};
    return (struct deadline){pyrite_monotonic_ns() + timeout_us * 1000};
}
static int expired(const struct deadline *d)
{
    return d->end != PYRITE_NO_DEADLINE && pyrite_monotonic_ns() >= d->end;
}

static void post_rx(uint8_t *buf)
{
    struct virtq_buf b = {buf, sizeof(struct vsock_hdr) + RX_PAYLOAD, 1};
    virtq_add(&vs->rxq, &b, 1, buf);
}

static void post_event(void)
{
    struct virtq_buf b = {&vs->event_buf, sizeof vs->event_buf, 1};
    virtq_add(&vs->evq, &b, 1, &vs->event_buf);
}

static int vsock_open(void)
{
    if (vs)
        return 0;
    struct virtio_mmio_device *dev = virtio_mmio_find(VIRTIO_ID_VSOCK, 0);
    if (!dev)
        return -ENODEV;
    struct vsock *v = calloc(1, sizeof *v);
    if (!v)
        return -ENOMEM;
    int err = virtio_mmio_negotiate(dev, 0);
    if (err) {
        free(v);
        return err;
    }
    v->dev = dev;
    v->guest_cid = virtio_mmio_config64(dev, 0);
    v->next_port = EPHEMERAL_PORT_BASE;
    err = virtq_setup(&v->rxq, dev, RXQ, RX_BUFS);
    if (!err)
        err = virtq_setup(&v->txq, dev, TXQ, 4);
    if (!err)
        err = virtq_setup(&v->evq, dev, EVQ, 2);
    for (unsigned i = 0; !err && i < RX_BUFS; i++)
        if (!(v->rx_bufs[i] = malloc(sizeof(struct vsock_hdr) + RX_PAYLOAD)))
            err = -ENOMEM;
    if (err) {
        virtio_mmio_fail(dev);
        free(v);
        return err;
    }
    vs = v;
    dev->driver = v;
    for (unsigned i = 0; i < RX_BUFS; i++)
        post_rx(v->rx_bufs[i]);
    post_event();
    virtio_mmio_driver_ok(dev);
    virtq_kick(&v->rxq);
    virtq_kick(&v->evq);
    return 0;
}

/* ---------------------------------------------------------------- sending */

static int send_packet(uint64_t dst_cid, uint32_t src_port, uint32_t dst_port, struct vconn *c,
                       uint16_t op, uint32_t flags, const void *payload, uint32_t len)
{
    struct vsock_hdr *h = &vs->tx_hdr;
    *h = (struct vsock_hdr){
        .src_cid = vs->guest_cid, .dst_cid = dst_cid, .src_port = src_port, .dst_port = dst_port,
        .len = len, .type = TYPE_STREAM, .op = op, .flags = flags,
        .buf_alloc = c ? VSOCK_BUF_ALLOC : 0, .fwd_cnt = c ? c->fwd_cnt : 0,
    };
    if (c)
        c->last_fwd_sent = c->fwd_cnt;
    struct virtq_buf bufs[2] = {{h, sizeof *h, 0}, {payload, len, 0}};
    if (virtq_add(&vs->txq, bufs, len ? 2 : 1, h) != 0)
        return -EIO;
    virtq_kick(&vs->txq);
    return virtq_wait_used(&vs->txq, NULL) == h ? 0 : -EIO;
}

static int send_on(struct vconn *c, uint16_t op, uint32_t flags, const void *payload, uint32_t len)
{
    return send_packet(c->peer_cid, c->local_port, c->peer_port, c, op, flags, payload, len);
}

/* ---------------------------------------------------------------- receiving */

static struct vconn *find_conn(uint64_t cid, uint32_t local_port, uint32_t peer_port)
{
    for (unsigned i = 0; i < VSOCK_MAX_CONNECTIONS; i++) {
        struct vconn *c = &vs->conns[i];
        if (c->state != CONN_FREE && c->local_port == local_port && c->peer_port == peer_port &&
            c->peer_cid == cid)
            return c;
    }
    return NULL;
}

static struct vconn *new_conn(uint64_t cid, uint32_t local_port, uint32_t peer_port)
{
    for (unsigned i = 0; i < VSOCK_MAX_CONNECTIONS; i++) {
        struct vconn *c = &vs->conns[i];
        if (c->state == CONN_FREE) {
            uint8_t *ring = malloc(VSOCK_BUF_ALLOC);
            if (!ring)
                return NULL;
            *c = (struct vconn){.state = CONN_REQUESTING, .peer_cid = cid, .local_port = local_port,
                                .peer_port = peer_port, .ring = ring};
            return c;
        }
    }
    return NULL;
}

static void free_conn(struct vconn *c)
{
    free(c->ring);
    *c = (struct vconn){.state = CONN_FREE};
}

static int is_listening(uint32_t port)
{
    for (unsigned i = 0; i < vs->nr_listening; i++)
        if (vs->listening[i] == port)
            return 1;
    return 0;
}

static void ring_put(struct vconn *c, const uint8_t *p, size_t n)
{
    size_t tail = (c->head + c->len) % VSOCK_BUF_ALLOC;
    size_t first = VSOCK_BUF_ALLOC - tail < n ? VSOCK_BUF_ALLOC - tail : n;
    memcpy(c->ring + tail, p, first);
    memcpy(c->ring, p + first, n - first);
    c->len += n;
}

static void handle_packet(const uint8_t *pkt, uint32_t written)
{
    if (written < sizeof(struct vsock_hdr))
        return;
    struct vsock_hdr h;
    memcpy(&h, pkt, sizeof h);
    const uint8_t *payload = pkt + sizeof h;
    uint32_t len = h.len < written - sizeof h ? h.len : written - (uint32_t)sizeof h;
    if (h.type != TYPE_STREAM || h.dst_cid != vs->guest_cid)
        return;
    struct vconn *c = find_conn(h.src_cid, h.dst_port, h.src_port);
    if (!c) {
        if (h.op == OP_REQUEST && is_listening(h.dst_port) &&
            (c = new_conn(h.src_cid, h.dst_port, h.src_port)) != NULL) {
            c->state = CONN_ESTABLISHED;
            c->from_listener = 1;
            c->peer_buf_alloc = h.buf_alloc;
            c->peer_fwd_cnt = h.fwd_cnt;
            send_on(c, OP_RESPONSE, 0, NULL, 0);
        } else if (h.op != OP_RST) {
            send_packet(h.src_cid, h.dst_port, h.src_port, NULL, OP_RST, 0, NULL, 0);
        }
        return;
    }
    c->peer_buf_alloc = h.buf_alloc;
    c->peer_fwd_cnt = h.fwd_cnt;
    switch (h.op) {
    case OP_RESPONSE:
        if (c->state == CONN_REQUESTING)
            c->state = CONN_ESTABLISHED;
        break;
    case OP_RST:
        c->reset = 1;
        c->state = CONN_CLOSED;
        break;
    case OP_SHUTDOWN:
        c->peer_shutdown |= h.flags & (SHUTDOWN_RCV | SHUTDOWN_SEND);
        break;
    case OP_RW: {
        size_t room = VSOCK_BUF_ALLOC - c->len;
        ring_put(c, payload, len < room ? len : room);   /* a peer within its credit always fits */
        break;
    }
    case OP_CREDIT_REQUEST:
        send_on(c, OP_CREDIT_UPDATE, 0, NULL, 0);
        break;
    default:
        break;
    }
}

/* Handle every packet the device has given us, and give the buffers back. */
static void poll_device(void)
{
    uint32_t written;
    void *cookie;
    int reposted = 0;
    /* TRANSPORT_RESET (the VM was restored): every connection is gone (5.10.6.7). Handled
     * before the rx packets: a connection the host opened after the restore must survive it. */
    if (virtq_get_used(&vs->evq, &written)) {
        for (unsigned i = 0; i < VSOCK_MAX_CONNECTIONS; i++)
            if (vs->conns[i].state != CONN_FREE) {
                vs->conns[i].reset = 1;
                vs->conns[i].state = CONN_CLOSED;
            }
        post_event();
        virtq_kick(&vs->evq);
    }
    while ((cookie = virtq_get_used(&vs->rxq, &written)) != NULL) {
        handle_packet(cookie, written);
        post_rx(cookie);
        reposted = 1;
    }
    if (reposted)
        virtq_kick(&vs->rxq);
}

/* Until a packet or an event comes, or the deadline passes (then poll_device again). */
static void wait_device(const struct deadline *d)
{
    struct virtq *const queues[] = {&vs->rxq, &vs->evq};
    virtq_wait_any(queues, 2, d->end, VIRTQ_POLL_INPUT_NS);
}

static struct vconn *conn_of(int handle)
{
    if (!vs || handle < 0 || handle >= VSOCK_MAX_CONNECTIONS || vs->conns[handle].state == CONN_FREE)
        return NULL;
    return &vs->conns[handle];
}

/* ---------------------------------------------------------------- the API */

uint64_t vsock_guest_cid(void)
{
    return vsock_open() == 0 ? vs->guest_cid : 0;
}

int vsock_listen(uint32_t port)
{
    int err = vsock_open();
    if (err)
        return err;
    if (is_listening(port))
        return -EADDRINUSE;
    if (vs->nr_listening == VSOCK_MAX_LISTENERS)
        return -EMFILE;
    vs->listening[vs->nr_listening++] = port;
    return 0;
}

int vsock_accept(uint32_t port, uint64_t timeout_us)
{
    int err = vsock_open();
    if (err)
        return err;
    if (!is_listening(port))
        return -EINVAL;
    struct deadline d = deadline_in(timeout_us);
    for (;;) {
        poll_device();
        for (unsigned i = 0; i < VSOCK_MAX_CONNECTIONS; i++) {
            struct vconn *c = &vs->conns[i];
            if (c->state != CONN_FREE && !c->reset && c->from_listener && !c->accepted && c->local_port == port) {
                c->accepted = 1;
                return (int)i;
            }
        }
        if (expired(&d))
            return -ETIMEDOUT;
        wait_device(&d);
    }
}

int vsock_connect(uint32_t cid, uint32_t port)
{
    int err = vsock_open();
    if (err)
        return err;
    uint32_t local;
    do
        local = vs->next_port++;
    while (is_listening(local));
    struct vconn *c = new_conn(cid, local, port);
    if (!c)
        return -EMFILE;
    c->accepted = 1;
    err = send_on(c, OP_REQUEST, 0, NULL, 0);
    struct deadline d = deadline_in(CONNECT_TIMEOUT_US);
    while (!err && c->state == CONN_REQUESTING) {
        poll_device();
        if (c->state != CONN_REQUESTING)
            break;
        if (expired(&d))
            err = -ETIMEDOUT;
        else
            wait_device(&d);
    }
    if (!err && c->state != CONN_ESTABLISHED)
        err = -ECONNREFUSED;
    if (err) {
        if (err == -ETIMEDOUT)
            send_on(c, OP_RST, 0, NULL, 0);
        free_conn(c);
        return err;
    }
    return (int)(c - vs->conns);
}

long vsock_read(int handle, void *buf, size_t n, uint64_t timeout_us)
{
    struct vconn *c = conn_of(handle);
    if (!c)
        return -EBADF;
    if (!buf && n)
        return -EINVAL;
    struct deadline d = deadline_in(timeout_us);
    for (;;) {
        poll_device();
        if (c->len) {
            size_t k = n < c->len ? n : c->len;
            size_t first = VSOCK_BUF_ALLOC - c->head < k ? VSOCK_BUF_ALLOC - c->head : k;
            memcpy(buf, c->ring + c->head, first);
            memcpy((uint8_t *)buf + first, c->ring, k - first);
            c->head = (c->head + k) % VSOCK_BUF_ALLOC;
            c->len -= k;
            c->fwd_cnt += (uint32_t)k;
            if (c->state == CONN_ESTABLISHED && c->fwd_cnt - c->last_fwd_sent >= VSOCK_BUF_ALLOC / 4)
                send_on(c, OP_CREDIT_UPDATE, 0, NULL, 0);
            return (long)k;
        }
        if (c->reset)
            return -ECONNRESET;
        if (c->peer_shutdown & SHUTDOWN_SEND)
            return 0;
        if (n == 0 || expired(&d))
            return n == 0 ? 0 : -ETIMEDOUT;
        wait_device(&d);
    }
}

long vsock_write(int handle, const void *buf, size_t n)
{
    struct vconn *c = conn_of(handle);
    if (!c)
        return -EBADF;
    if (!buf && n)
        return -EINVAL;
    const uint8_t *p = buf;
    size_t sent = 0;
    while (sent < n) {
        if (c->reset || c->state != CONN_ESTABLISHED)
            return -ECONNRESET;
        if (c->peer_shutdown & SHUTDOWN_RCV)
            return -EPIPE;
        uint32_t credit = c->peer_buf_alloc - (c->tx_cnt - c->peer_fwd_cnt);
        if (credit == 0 || credit > c->peer_buf_alloc) {
            struct deadline forever = {PYRITE_NO_DEADLINE};
            wait_device(&forever);      /* for a CREDIT_UPDATE */
            poll_device();
            continue;
        }
        size_t chunk = n - sent;
        if (chunk > credit)
            chunk = credit;
        if (chunk > MAX_PAYLOAD)
            chunk = MAX_PAYLOAD;
        int err = send_on(c, OP_RW, 0, p + sent, (uint32_t)chunk);
        if (err)
            return err;
        c->tx_cnt += (uint32_t)chunk;
        sent += chunk;
        poll_device();                  /* take credit updates and data as they come */
    }
    return (long)sent;
}

int vsock_close(int handle)
{
    struct vconn *c = conn_of(handle);
    if (!c)
        return -EBADF;
    if (!c->reset && c->state == CONN_ESTABLISHED) {
        /* Both directions done; the peer answers RST once it has flushed (5.10.6.6). */
        send_on(c, OP_SHUTDOWN, SHUTDOWN_RCV | SHUTDOWN_SEND, NULL, 0);
        struct deadline d = deadline_in(CLOSE_TIMEOUT_US);
        for (poll_device(); !c->reset && !expired(&d); poll_device())
            wait_device(&d);
        if (!c->reset)
            send_on(c, OP_RST, 0, NULL, 0);
    }
    free_conn(c);
    return 0;
}
