/*
 * Split virtqueues, driver side (virtio 1.2 section 2.7): the descriptor table, the
 * driver area ("available ring") and the device area ("used ring") in one page-aligned
 * block of pages from sys_mmap. Free descriptors are chained through their `next` fields, so a chain taken
 * from the head of the free list is already linked in order.
 *
 * Completions are found by reading used->idx, an ordinary memory read at CPL 3: no VM exit
 * and no CPL-0 code. Interrupts are suppressed (VIRTQ_AVAIL_F_NO_INTERRUPT) while the driver
 * looks; when a wait outlasts its polling bound, virtq_wait_any turns them on and halts the vCPU
 * until the device's interrupt, so that a driver waiting for input costs the host nothing.
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <pyrite/arch.h>
#include "virtio_internal.h"
#include "../libos_internal.h"
#include "../sys/sys.h"

#ifndef ENOSPC
#define ENOSPC 28
#endif

#define PAGE 4096

static size_t align_up(size_t v, size_t a) { return (v + a - 1) & ~(a - 1); }

int virtq_setup(struct virtq *q, struct virtio_mmio_device *dev, unsigned index, unsigned max_size)
{
    uint16_t size = max_size > 32768 ? 32768 : (uint16_t)max_size;
    int err = virtio_mmio_queue_size(dev, index, &size);
    if (err)
        return err;
    /* Alignments from 2.7: descriptors 16, driver area 2, device area 4. */
    size_t desc_bytes = 16u * size;
    size_t avail_off = desc_bytes, avail_bytes = 6 + 2u * size;
    size_t used_off = align_up(avail_off + avail_bytes, PAGE), used_bytes = 6 + 8u * size;
    size_t cookies_off = align_up(used_off + used_bytes, 8);
    size_t total = align_up(cookies_off + sizeof(void *) * size, PAGE);
    /* Pages straight from the page allocator: aligned, zeroed, and no malloc in images
     * whose only virtio use is getrandom. */
    long mapped = sys_mmap(0, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapped < 0)
        return (int)mapped;
    char *rings = (char *)mapped;
    void **cookies = (void **)(rings + cookies_off);
    *q = (struct virtq){
        .dev = dev, .index = index, .size = size,
        .desc = (volatile struct virtq_desc *)rings,
        .avail = (volatile struct virtq_avail *)(rings + avail_off),
        .used = (volatile struct virtq_used *)(rings + used_off),
        .free_head = 0, .num_free = size, .avail_idx = 0, .last_used = 0, .cookies = cookies,
    };
    for (uint16_t i = 0; i < size; i++)
        q->desc[i].next = (uint16_t)(i + 1);
    q->avail->flags = VIRTQ_AVAIL_F_NO_INTERRUPT;      /* we poll */
    virtio_mmio_queue_enable(dev, index, size, q->desc, q->avail, q->used);
    return 0;
}

int virtq_add(struct virtq *q, const struct virtq_buf *bufs, unsigned n, void *cookie)
{
    if (n == 0 || n > q->num_free)
        return -ENOSPC;
    uint16_t head = q->free_head, d = head, last = head;
    for (unsigned i = 0; i < n; i++) {
        last = d;
        q->desc[d].addr = (uintptr_t)bufs[i].addr;     /* identity mapped */
        q->desc[d].len = bufs[i].len;
        q->desc[d].flags = (uint16_t)((bufs[i].device_writes ? VIRTQ_DESC_F_WRITE : 0) |
                                      (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
        d = q->desc[d].next;
    }
    q->free_head = q->desc[last].next;
    q->num_free = (uint16_t)(q->num_free - n);
    q->cookies[head] = cookie;
    q->avail->ring[q->avail_idx & (q->size - 1)] = head;
    q->avail_idx++;
    return 0;
}

void virtq_kick(struct virtq *q)
{
    virtio_barrier();                   /* descriptors and ring entries before the index */
    q->avail->idx = q->avail_idx;
    virtio_mb();                        /* index visible before we read the device's flags */
    if (!(q->used->flags & VIRTQ_USED_F_NO_NOTIFY))
        virtio_mmio_notify(q->dev, q->index);
}

void *virtq_get_used(struct virtq *q, uint32_t *written)
{
    if (q->last_used == q->used->idx)
        return NULL;
    virtio_barrier();                   /* read the entry (and the data) after the index */
    volatile struct virtq_used_elem *e = &q->used->ring[q->last_used & (q->size - 1)];
    uint32_t id = e->id, len = e->len;
    q->last_used++;
    if (id >= q->size || !q->cookies[id])
        return NULL;                    /* not a chain we gave: a device bug, nothing to free */
    void *cookie = q->cookies[id];
    q->cookies[id] = NULL;
    uint16_t d = (uint16_t)id, count = 1;
    while ((q->desc[d].flags & VIRTQ_DESC_F_NEXT) && count < q->size) {
        d = q->desc[d].next;
        count++;
    }
    q->desc[d].next = q->free_head;
    q->free_head = (uint16_t)id;
    q->num_free = (uint16_t)(q->num_free + count);
    if (written)
        *written = len;
    return cookie;
}

static int any_used(struct virtq *const *qs, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (qs[i]->last_used != qs[i]->used->idx)
            return 1;
    return 0;
}

static void set_interrupts(struct virtq *const *qs, unsigned n, int on)
{
    for (unsigned i = 0; i < n; i++)
        qs[i]->avail->flags = on ? 0 : VIRTQ_AVAIL_F_NO_INTERRUPT;
}

int virtq_wait_any(struct virtq *const *qs, unsigned n, uint64_t deadline_ns, uint64_t poll_ns)
{
    struct virtio_mmio_device *dev = qs[0]->dev;
    uint64_t now = pyrite_monotonic_ns(), poll_end = now + poll_ns;
    for (; now < poll_end && now < deadline_ns; now = pyrite_monotonic_ns()) {
        if (any_used(qs, n))
            return 0;
        cpu_relax();
    }
    if (now >= deadline_ns)
        return 0;
    uint32_t seen = pyrite_irq_count;
    if (virtio_mmio_irq_enable(dev) != 0) {
        /* No interrupt line known: nap, then look again. A device that found our chain
         * malformed may never use it: it says so in Status. */
        pyrite_idle_until(seen, deadline_ns - now < VIRTQ_NAP_NS ? deadline_ns : now + VIRTQ_NAP_NS);
        return virtio_mmio_needs_reset(dev) ? -EIO : 0;
    }
    /* A device needing a reset says so with a configuration interrupt (2.1.2). */
    if ((virtio_mmio_irq_ack(dev) & VIRTIO_MMIO_INT_CONFIG) && virtio_mmio_needs_reset(dev))
        return -EIO;
    set_interrupts(qs, n, 1);
    virtio_mb();                        /* flags visible before we look at the used rings */
    if (!any_used(qs, n))
        pyrite_idle_until(seen, deadline_ns);
    set_interrupts(qs, n, 0);
    return 0;
}

void *virtq_wait_used(struct virtq *q, uint32_t *written)
{
    for (;;) {
        void *cookie = virtq_get_used(q, written);
        if (cookie)
            return cookie;
        if (virtq_wait_any(&q, 1, PYRITE_NO_DEADLINE, VIRTQ_POLL_COMPLETION_NS) != 0)
            return NULL;
    }
}
