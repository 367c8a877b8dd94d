/*
 * The shared virtio layer under the device drivers (block, entropy; net and vsock later):
 * the virtio-mmio transport (discovery, status, feature negotiation, queue set-up,
 * configuration space, notification) and split virtqueues (descriptor chains in, used
 * buffers out, by polling). Virtio 1.2 sections 2.7 (split queues), 3.1 (initialisation)
 * and 4.2 (MMIO transport).
 */
#ifndef PYRITE_VIRTIO_INTERNAL_H
#define PYRITE_VIRTIO_INTERNAL_H

#include <stdint.h>
#include <pyrite/virtio.h>

/* Feature bits shared by every device type. */
#define VIRTIO_F_VERSION_1 32

/* ---------------------------------------------------------------- transport */

struct virtio_mmio_device {
    struct virtio_device_info info;
    uint64_t features;          /* negotiated (after virtio_mmio_negotiate) */
    void *driver;               /* the device driver's state once opened, else NULL */
    int irq_state;              /* 0 not routed yet, 1 routed through the IOAPIC, -1 cannot be */
};

/* Find the devices (once); later calls are free. */
int virtio_mmio_device_count(void);
struct virtio_mmio_device *virtio_mmio_device(unsigned i);
/* The nth device of type `device_id` in discovery order, or NULL. */
struct virtio_mmio_device *virtio_mmio_find(uint32_t device_id, unsigned nth);
unsigned virtio_mmio_count(uint32_t device_id);

/* Steps 1-6 of 3.1.1: reset, ACKNOWLEDGE, DRIVER, features (device's & wanted, which must
 * include VIRTIO_F_VERSION_1), FEATURES_OK read back. Queues are set up next, then
 * virtio_mmio_driver_ok(). On failure the device is marked FAILED and -ENOTSUP returned. */
int virtio_mmio_negotiate(struct virtio_mmio_device *dev, uint64_t wanted);
void virtio_mmio_driver_ok(struct virtio_mmio_device *dev);
void virtio_mmio_fail(struct virtio_mmio_device *dev);
/* DEVICE_NEEDS_RESET set by the device (2.1.2). */
int virtio_mmio_needs_reset(struct virtio_mmio_device *dev);
void virtio_mmio_notify(struct virtio_mmio_device *dev, unsigned queue);
/* Route the device's interrupt (its GSI from discovery) to this CPU: 0, or -1 when its GSI is
 * unknown (QEMU's transports found by scanning) or there is no IOAPIC. */
int virtio_mmio_irq_enable(struct virtio_mmio_device *dev);
/* Read InterruptStatus and acknowledge what it shows (a level-triggered line, as QEMU's,
 * must fall before it can rise again); returns the bits (1 used buffer, 2 configuration). */
uint32_t virtio_mmio_irq_ack(struct virtio_mmio_device *dev);
#define VIRTIO_MMIO_INT_CONFIG 2
/* Queue set-up, used by virtq_setup: the size to use (*size in: the most wanted), then the
 * ring addresses and QueueReady. -ENOTSUP when the queue does not exist or is live. */
int virtio_mmio_queue_size(struct virtio_mmio_device *dev, unsigned index, uint16_t *size);
void virtio_mmio_queue_enable(struct virtio_mmio_device *dev, unsigned index, uint16_t size,
                              const volatile void *desc, const volatile void *driver,
                              const volatile void *device);

/* Device-specific configuration space, read consistently (ConfigGeneration, 4.2.2.2:
 * 32-bit accesses for 32- and 64-bit fields). */
uint8_t virtio_mmio_config8(struct virtio_mmio_device *dev, unsigned offset);
uint32_t virtio_mmio_config32(struct virtio_mmio_device *dev, unsigned offset);
uint64_t virtio_mmio_config64(struct virtio_mmio_device *dev, unsigned offset);

/* ---------------------------------------------------------------- split virtqueue */

struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};
#define VIRTQ_DESC_F_NEXT  1
#define VIRTQ_DESC_F_WRITE 2        /* device-writable */

struct virtq_avail {
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[];                /* then used_event (EVENT_IDX, not negotiated) */
};
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

struct virtq_used_elem {
    uint32_t id;
    uint32_t len;
};
struct virtq_used {
    uint16_t flags;
    uint16_t idx;
    struct virtq_used_elem ring[];  /* then avail_event */
};
#define VIRTQ_USED_F_NO_NOTIFY 1

struct virtq {
    struct virtio_mmio_device *dev;
    unsigned index;                 /* queue number on the device */
    uint16_t size;                  /* a power of two */
    volatile struct virtq_desc *desc;
    volatile struct virtq_avail *avail;
    volatile struct virtq_used *used;
    uint16_t free_head;             /* free descriptors are chained through .next */
    uint16_t num_free;
    uint16_t avail_idx;             /* next avail slot to fill (published by virtq_kick) */
    uint16_t last_used;             /* next used entry to consume */
    void **cookies;                 /* per head descriptor: what virtq_get_used returns */
};

/* One buffer of a chain: driver-readable, or device-writable when `device_writes`. */
struct virtq_buf {
    const void *addr;
    uint32_t len;
    int device_writes;
};

/* QueueSel `index`: a queue of min(QueueNumMax, max_size) entries (rounded down to a power
 * of two), rings from the heap, QueueReady. Interrupts are suppressed except while a driver
 * halts in virtq_wait_any. */
int virtq_setup(struct virtq *q, struct virtio_mmio_device *dev, unsigned index, unsigned max_size);
/* Queue a chain (readable buffers must come before writable ones, 2.7.4.2); published
 * by the next virtq_kick. -ENOSPC when there are not enough free descriptors. */
int virtq_add(struct virtq *q, const struct virtq_buf *bufs, unsigned n, void *cookie);
/* Make queued chains visible to the device and notify it unless it asked not to be. */
void virtq_kick(struct virtq *q);
/* A used chain: its cookie (descriptors freed) and the bytes the device wrote; NULL if none. */
void *virtq_get_used(struct virtq *q, uint32_t *written);
/* Wait until a chain is used (virtq_wait_any, polling up to VIRTQ_POLL_COMPLETION_NS). NULL
 * (-EIO for the caller) if the device needs a reset. */
void *virtq_wait_used(struct virtq *q, uint32_t *written);
/* Wait until one of the n queues (all of one device) has a used chain, or until deadline_ns
 * (pyrite_monotonic_ns time; PYRITE_NO_DEADLINE: none): polls the used rings for poll_ns,
 * then halts the vCPU with the queues' interrupts on until the device's interrupt or the
 * deadline; without a known interrupt line, naps VIRTQ_NAP_NS at a time. May return early:
 * callers loop. -EIO if the device needs a reset, else 0.
 * Polling bounds (benchmarks/virtio.py, on a host where a guest's halt and interrupt cost
 * ~100 us of emulated CPL 0): a request the driver has just sent completes within the
 * device's service time, which polling up to VIRTQ_POLL_COMPLETION_NS catches (halting
 * halved 4 KiB random-read IOPS); input (a frame, a packet) may never come, so its waits
 * poll only VIRTQ_POLL_INPUT_NS. */
int virtq_wait_any(struct virtq *const *qs, unsigned n, uint64_t deadline_ns, uint64_t poll_ns);
#define VIRTQ_POLL_COMPLETION_NS 1000000
#define VIRTQ_POLL_INPUT_NS 50000
#define VIRTQ_NAP_NS 1000000

/* Full barrier (store-load ordering on x86, needed before reading the device's flags
 * after publishing); compiler barrier elsewhere (x86 keeps loads with loads and stores with
 * stores in order, 2.7.13's virtio_wmb/virtio_rmb). */
static inline void virtio_mb(void) { __asm__ volatile("lock; addl $0, (%%rsp)" ::: "memory", "cc"); }
static inline void virtio_barrier(void) { __asm__ volatile("" ::: "memory"); }

#endif
