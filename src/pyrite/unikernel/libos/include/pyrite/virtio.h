/*
 * virtio devices for applications: block (virtio-blk) and entropy (virtio-rng) over the
 * virtio-mmio transport, version 2 registers (virtio 1.x), split virtqueues. Callable at
 * CPL 3; completion is by polling the used ring for a while, then by halting the vCPU until
 * the device's interrupt (routed through the IOAPIC when the device's GSI is known).
 *
 * Buffers are handed to the device as they are (memory is identity mapped): no copy.
 * Every function is synchronous and, like the rest of the library OS, single-threaded.
 *
 * Errors are negative errno values:
 *   -ENODEV   no such device (index out of range, or no entropy device at all)
 *   -ENOTSUP  the device cannot be driven: a legacy (version 1) virtio-mmio transport,
 *             no VIRTIO_F_VERSION_1, features refused (FEATURES_OK not kept), no queue 0;
 *             for a request: the device answered VIRTIO_BLK_S_UNSUPP
 *   -EIO      the device answered VIRTIO_BLK_S_IOERR (a write to a read-only disk, sectors
 *             past the end, a host I/O error), did not write a status, or needs a reset
 *   -ENOMEM   no memory for the rings
 *   -EINVAL   a bad argument (NULL buffer with a non-zero count)
 */
#ifndef PYRITE_VIRTIO_H
#define PYRITE_VIRTIO_H

#include <stddef.h>
#include <stdint.h>
#include <errno.h>

#ifndef ENODEV
#define ENODEV  19
#endif
#ifndef ENOTSUP
#define ENOTSUP 95
#endif

/* Kernel command-line words that place a device (Linux's virtio_mmio driver syntax,
 * "virtio_mmio.device=<size>@<base>:<irq>[:<id>]"). The library OS consumes them: they never
 * reach main's argv or the environment. */
#define PYRITE_VIRTIO_MMIO_PARAM "virtio_mmio.device="

#define VIRTIO_ID_BLOCK   2
#define VIRTIO_ID_ENTROPY 4

#define VIRTIO_BLK_SECTOR_SIZE 512
#define VIRTIO_BLK_ID_BYTES    20

/* What discovery found (see drivers/virtio_mmio.c for where it looks). */
struct virtio_device_info {
    uintptr_t base;         /* guest-physical address of the register window */
    uint32_t size;          /* window size in bytes */
    int irq;                /* GSI from the command line, Firecracker's 5 + slot, or -1 if unknown */
    uint32_t version;       /* transport version: 2 is driven, 1 (legacy) is not */
    uint32_t device_id;     /* VIRTIO_ID_* */
    const char *source;     /* "cmdline", "firecracker-slots" or "qemu-microvm" */
};

/* Devices found, whatever their type (0 when none). */
int virtio_device_count(void);
int virtio_device_info(unsigned i, struct virtio_device_info *out);

struct virtio_blk;

/* Block devices in discovery order: command-line order when the VMM gives the
 * virtio_mmio.device= words, else slot order (Firecracker, pyrite), else QEMU microvm's
 * order of -device options. */
int virtio_blk_count(void);
/* Initialise block device i (once; later calls give the same handle). */
int virtio_blk_open(unsigned i, struct virtio_blk **out);
/* Read or write `sectors` 512-byte sectors at `sector`. 0 on success. Large transfers go
 * as several requests. A write to a read-only disk is sent all the same, and the device's
 * VIRTIO_BLK_S_IOERR comes back as -EIO (check virtio_blk_read_only() to avoid it). */
int virtio_blk_read(struct virtio_blk *blk, uint64_t sector, void *buf, uint32_t sectors);
int virtio_blk_write(struct virtio_blk *blk, uint64_t sector, const void *buf, uint32_t sectors);
/* Make written data durable (VIRTIO_BLK_T_FLUSH). Without VIRTIO_BLK_F_FLUSH the device
 * writes through and this returns 0 without a request. */
int virtio_blk_flush(struct virtio_blk *blk);
uint64_t virtio_blk_capacity(struct virtio_blk *blk);      /* in 512-byte sectors */
int virtio_blk_read_only(struct virtio_blk *blk);          /* VIRTIO_BLK_F_RO offered */
int virtio_blk_can_flush(struct virtio_blk *blk);          /* VIRTIO_BLK_F_FLUSH negotiated */
/* The device's serial (VIRTIO_BLK_T_GET_ID): up to 20 bytes, NUL-terminated in id. */
int virtio_blk_get_id(struct virtio_blk *blk, char id[VIRTIO_BLK_ID_BYTES + 1]);

/* Fill buf with n random bytes from the first entropy device: returns n, or a negative
 * error (-ENODEV without a device; -EIO if the device returned a buffer with no bytes). */
long virtio_rng_read(void *buf, size_t n);

/* ---------------------------------------------------------------- network (virtio-net) */

#ifndef ENODATA
#define ENODATA 61
#endif
#define VIRTIO_ID_NET 1
#define VIRTIO_NET_HDR_BYTES 12          /* struct virtio_net_hdr_v1, before every frame */
#define VIRTIO_NET_MIN_FRAME 14          /* an Ethernet header */
#define VIRTIO_NET_MAX_FRAME 65550       /* what the device accepts (Firecracker's limit) */
#define VIRTIO_NET_MAX_RX_FRAME 2036     /* received frames are at most this long (buffer size) */
#define VIRTIO_NET_WAIT_FOREVER UINT64_MAX

struct virtio_net;

/* Network interfaces in discovery order (as block devices). */
int virtio_net_count(void);
/* Initialise interface i (once; later calls give the same handle): receive buffers are
 * posted from here on, so frames are queued for virtio_net_recv(). */
int virtio_net_open(unsigned i, struct virtio_net **out);
/* The MAC address the VMM configured (VIRTIO_NET_F_MAC); -ENODATA when it gave none. */
int virtio_net_mac(struct virtio_net *net, uint8_t mac[6]);
/* Send one Ethernet frame (destination MAC first, no FCS): 0 once the device took it;
 * -EINVAL outside [VIRTIO_NET_MIN_FRAME, VIRTIO_NET_MAX_FRAME]; -EIO if the device needs a reset. */
int virtio_net_send(struct virtio_net *net, const void *frame, size_t len);
/* Receive one frame into buf: its length (cut to cap), -EAGAIN if none came within
 * timeout_us microseconds (0: just look; VIRTIO_NET_WAIT_FOREVER: wait), -EIO if the
 * device needs a reset. */
long virtio_net_recv(struct virtio_net *net, void *buf, size_t cap, uint64_t timeout_us);

/* ---------------------------------------------------------------- sockets (virtio-vsock) */

#define VIRTIO_ID_VSOCK 19
#ifndef EPIPE
#define EPIPE 32
#endif
#ifndef EADDRINUSE
#define EADDRINUSE 98
#endif
#ifndef ECONNRESET
#define ECONNRESET 104
#endif
#ifndef ETIMEDOUT
#define ETIMEDOUT 110
#endif
#ifndef ECONNREFUSED
#define ECONNREFUSED 111
#endif
#ifndef EMFILE
#define EMFILE 24
#endif
#define VSOCK_HOST_CID 2                  /* the host, as the guest addresses it */
#define VSOCK_WAIT_FOREVER UINT64_MAX     /* a timeout that never expires; 0 only looks */
#define VSOCK_BUF_ALLOC (256u * 1024)     /* receive buffer per connection (our credit) */
#define VSOCK_MAX_CONNECTIONS 16
#define VSOCK_MAX_LISTENERS 8

/* Stream sockets to the host over the first vsock device (opened on first use). With
 * pyrite's or Firecracker's Unix-socket backend, a host client reaches a guest listener by
 * writing "CONNECT <port>\n" to the VMM's uds_path, and vsock_connect(VSOCK_HOST_CID, P)
 * reaches the host program listening on "<uds_path>_P". Connections are small integer
 * handles. Errors: -ENODEV (no device), -ETIMEDOUT, -ECONNREFUSED (nothing listens there),
 * -ECONNRESET (the peer reset the stream), -EPIPE (the peer receives no more), -EBADF,
 * -EMFILE (too many connections or listeners), -EADDRINUSE, -EIO (device needs a reset). */
uint64_t vsock_guest_cid(void);                        /* the device's guest CID, 0 without one */
int vsock_listen(uint32_t port);                       /* 0; incoming requests on port are accepted */
int vsock_accept(uint32_t port, uint64_t timeout_us);  /* a connection handle */
int vsock_connect(uint32_t cid, uint32_t port);        /* a connection handle */
/* Up to n bytes as they come: their count, 0 once the peer has shut down sending and
 * everything was read, -ETIMEDOUT when nothing came within timeout_us. */
long vsock_read(int conn, void *buf, size_t n, uint64_t timeout_us);
/* All n bytes, waiting for the peer's credit: n, or a negative error. */
long vsock_write(int conn, const void *buf, size_t n);
int vsock_close(int conn);                             /* shuts down both ways, frees the handle */

#endif
