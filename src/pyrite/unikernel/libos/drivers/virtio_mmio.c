/*
 * virtio-mmio transport (virtio 1.2 section 4.2, version 2 registers): discovery, device
 * status, feature negotiation, configuration space and notification.
 *
 * Discovery, in this order, the first that finds anything wins:
 *   1. "virtio_mmio.device=<size>@<base>:<irq>[:<id>]" words of the kernel command line
 *      (Linux's syntax; pyrite and Firecracker append them, so does QEMU microvm with
 *      acpi=off), in command-line order;
 *   2. Firecracker's (and pyrite's) slots: 4 KiB windows at 0xC0001000 + 0x1000 * i, GSI
 *      5 + i, i = 0..18 (an empty slot reads all-ones on pyrite);
 *   3. QEMU microvm's transports: 512-byte windows from 0xFEB00000, 24 of them. QEMU
 *      attaches devices from the last transport down, so they are scanned top down to get
 *      the order of -device options. (With ACPI on, QEMU describes them only in the DSDT.)
 * A window counts when MagicValue is "virt" and DeviceID is not 0. Legacy (Version 1)
 * transports are listed but not driven: QEMU needs -global virtio-mmio.force-legacy=false.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pyrite/arch.h>
#include <pyrite/boot.h>
#include "virtio_internal.h"
#include "../libos_internal.h"

#define REG_MAGIC               0x000
#define REG_VERSION             0x004
#define REG_DEVICE_ID           0x008
#define REG_VENDOR_ID           0x00C
#define REG_DEVICE_FEATURES     0x010
#define REG_DEVICE_FEATURES_SEL 0x014
#define REG_DRIVER_FEATURES     0x020
#define REG_DRIVER_FEATURES_SEL 0x024
#define REG_QUEUE_SEL           0x030
#define REG_QUEUE_NUM_MAX       0x034
#define REG_QUEUE_NUM           0x038
#define REG_QUEUE_READY         0x044
#define REG_QUEUE_NOTIFY        0x050
#define REG_INTERRUPT_STATUS    0x060
#define REG_INTERRUPT_ACK       0x064
#define REG_STATUS              0x070
#define REG_QUEUE_DESC_LOW      0x080
#define REG_QUEUE_DESC_HIGH     0x084
#define REG_QUEUE_DRIVER_LOW    0x090
#define REG_QUEUE_DRIVER_HIGH   0x094
#define REG_QUEUE_DEVICE_LOW    0x0A0
#define REG_QUEUE_DEVICE_HIGH   0x0A4
#define REG_CONFIG_GENERATION   0x0FC
#define REG_CONFIG              0x100

#define VIRTIO_MMIO_MAGIC 0x74726976u   /* "virt" */

#define STATUS_ACKNOWLEDGE       1
#define STATUS_DRIVER            2
#define STATUS_DRIVER_OK         4
#define STATUS_FEATURES_OK       8
#define STATUS_DEVICE_NEEDS_RESET 64
#define STATUS_FAILED            128

#define FIRECRACKER_BASE  0xC0001000u
#define FIRECRACKER_SIZE  0x1000u
#define FIRECRACKER_SLOTS 19
#define FIRECRACKER_IRQ   5
#define QEMU_MICROVM_BASE  0xFEB00000u
#define QEMU_MICROVM_SIZE  0x200u
#define QEMU_MICROVM_SLOTS 24

#define MAX_DEVICES 32

static struct virtio_mmio_device devices[MAX_DEVICES];
static int nr_devices = -1;             /* -1: not probed yet */

static uint32_t reg_read(const struct virtio_mmio_device *d, unsigned reg) { return mmio_read32(d->info.base + reg); }
static void reg_write(const struct virtio_mmio_device *d, unsigned reg, uint32_t v) { mmio_write32(d->info.base + reg, v); }

/* Record the window at `base` if a device sits there. */
static void probe(uintptr_t base, uint32_t size, int irq, const char *source)
{
    if (nr_devices >= MAX_DEVICES || base == 0 || size < REG_CONFIG)
        return;
    if (mmio_read32(base + REG_MAGIC) != VIRTIO_MMIO_MAGIC)
        return;
    uint32_t device_id = mmio_read32(base + REG_DEVICE_ID);
    if (device_id == 0)
        return;                         /* a transport with nothing behind it */
    struct virtio_mmio_device *d = &devices[nr_devices++];
    memset(d, 0, sizeof *d);
    d->info = (struct virtio_device_info){
        .base = base, .size = size, .irq = irq, .version = mmio_read32(base + REG_VERSION),
        .device_id = device_id, .source = source,
    };
}

/* A number as strtoull(s, end, 0) reads it (0x hex, 0 octal, else decimal), without
 * strtoull's locale and errno machinery; *end == s when there is none. */
static uint64_t parse_number(const char *s, const char **end)
{
    unsigned base = 10;
    const char *p = s;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
    } else if (p[0] == '0') {
        base = 8;
    }
    uint64_t v = 0;
    const char *digits = p;
    for (;; p++) {
        unsigned d = (*p >= '0' && *p <= '9') ? (unsigned)(*p - '0')
                   : (*p >= 'a' && *p <= 'f') ? (unsigned)(*p - 'a' + 10)
                   : (*p >= 'A' && *p <= 'F') ? (unsigned)(*p - 'A' + 10) : 99;
        if (d >= base)
            break;
        v = v * base + d;
    }
    *end = p == digits ? (base == 16 ? s + 1 : s) : p;     /* "0x" alone is the number 0 */
    return v;
}

/* Linux's memparse: a number (0x hex, 0 octal, else decimal) with an optional K/M/G suffix. */
static int parse_size(const char *s, const char **end, uint64_t *out)
{
    const char *after;
    uint64_t v = parse_number(s, &after);
    if (after == s)
        return -1;
    switch (*after) {
    case 'G': case 'g': v <<= 10; /* fall through */
    case 'M': case 'm': v <<= 10; /* fall through */
    case 'K': case 'k': v <<= 10; after++; break;
    }
    *out = v;
    *end = after;
    return 0;
}

/* "<size>@<base>:<irq>[:<id>]" (value of one virtio_mmio.device= word, ended by a blank). */
static void parse_device_word(const char *value)
{
    const char *p;
    uint64_t size, base, irq;
    if (parse_size(value, &p, &size) != 0 || *p != '@')
        return;
    if (parse_size(p + 1, &p, &base) != 0 || *p != ':')
        return;
    const char *after;
    irq = parse_number(p + 1, &after);
    if (after == p + 1 || base > UINT32_MAX || size > UINT32_MAX)
        return;                         /* the page tables map only the first 4 GiB as MMIO */
    probe((uintptr_t)base, (uint32_t)size, (int)irq, "cmdline");
}

static void scan_cmdline(const char *line)
{
    const size_t plen = strlen(PYRITE_VIRTIO_MMIO_PARAM);
    while (*line) {
        line += strspn(line, " \t\n");
        const char *end = pyrite_cmdline_word_end(line);    /* a quoted argument is one word */
        if ((size_t)(end - line) > plen && strncmp(line, PYRITE_VIRTIO_MMIO_PARAM, plen) == 0)
            parse_device_word(line + plen);
        line = end;
    }
}

static void discover(void)
{
    nr_devices = 0;
    scan_cmdline(pyrite_bootinfo()->cmdline);
    if (nr_devices)
        return;
    for (unsigned i = 0; i < FIRECRACKER_SLOTS; i++)
        probe(FIRECRACKER_BASE + i * FIRECRACKER_SIZE, FIRECRACKER_SIZE, FIRECRACKER_IRQ + (int)i,
              "firecracker-slots");
    if (nr_devices)
        return;
    for (unsigned i = QEMU_MICROVM_SLOTS; i-- > 0;)
        probe(QEMU_MICROVM_BASE + i * QEMU_MICROVM_SIZE, QEMU_MICROVM_SIZE, -1, "qemu-microvm");
}

int virtio_mmio_device_count(void)
{
    if (nr_devices < 0)
        discover();
    return nr_devices;
}

struct virtio_mmio_device *virtio_mmio_device(unsigned i)
{
    return i < (unsigned)virtio_mmio_device_count() ? &devices[i] : NULL;
}

struct virtio_mmio_device *virtio_mmio_find(uint32_t device_id, unsigned nth)
{
    int n = virtio_mmio_device_count();
    for (int i = 0; i < n; i++)
        if (devices[i].info.device_id == device_id && nth-- == 0)
            return &devices[i];
    return NULL;
}

unsigned virtio_mmio_count(uint32_t device_id)
{
    unsigned count = 0;
    int n = virtio_mmio_device_count();
    for (int i = 0; i < n; i++)
        count += devices[i].info.device_id == device_id;
    return count;
}

int virtio_device_count(void) { return virtio_mmio_device_count(); }

int virtio_device_info(unsigned i, struct virtio_device_info *out)
{
    struct virtio_mmio_device *d = virtio_mmio_device(i);
    if (!d)
        return -ENODEV;
    *out = d->info;
    return 0;
}

/* ---------------------------------------------------------------- status and features */

static void add_status(struct virtio_mmio_device *d, uint32_t bits)
{
    reg_write(d, REG_STATUS, reg_read(d, REG_STATUS) | bits);
}

void virtio_mmio_fail(struct virtio_mmio_device *d) { add_status(d, STATUS_FAILED); }

int virtio_mmio_negotiate(struct virtio_mmio_device *d, uint64_t wanted)
{
    if (d->info.version != 2)
        return -ENOTSUP;                /* legacy register layout: not driven */
    reg_write(d, REG_STATUS, 0);
    /* Reset may complete asynchronously; the device shows 0 when done (4.2.3.1.1). */
    for (unsigned spins = 0; reg_read(d, REG_STATUS) != 0; spins++) {
        if (spins > 1000000)
            return -EIO;
        cpu_relax();
    }
    add_status(d, STATUS_ACKNOWLEDGE);
    add_status(d, STATUS_DRIVER);

    reg_write(d, REG_DEVICE_FEATURES_SEL, 0);
    uint64_t offered = reg_read(d, REG_DEVICE_FEATURES);
    reg_write(d, REG_DEVICE_FEATURES_SEL, 1);
    offered |= (uint64_t)reg_read(d, REG_DEVICE_FEATURES) << 32;

    uint64_t accepted = offered & (wanted | 1ull << VIRTIO_F_VERSION_1);
    if (!(accepted & (1ull << VIRTIO_F_VERSION_1))) {
        virtio_mmio_fail(d);            /* a version 2 transport without virtio 1.x */
        return -ENOTSUP;
    }
    reg_write(d, REG_DRIVER_FEATURES_SEL, 0);
    reg_write(d, REG_DRIVER_FEATURES, (uint32_t)accepted);
    reg_write(d, REG_DRIVER_FEATURES_SEL, 1);
    reg_write(d, REG_DRIVER_FEATURES, (uint32_t)(accepted >> 32));
    add_status(d, STATUS_FEATURES_OK);
    if (!(reg_read(d, REG_STATUS) & STATUS_FEATURES_OK)) {
        virtio_mmio_fail(d);            /* the device refused this subset */
        return -ENOTSUP;
    }
    d->features = accepted;
    return 0;
}

void virtio_mmio_driver_ok(struct virtio_mmio_device *d) { add_status(d, STATUS_DRIVER_OK); }

int virtio_mmio_needs_reset(struct virtio_mmio_device *d)
{
    return (reg_read(d, REG_STATUS) & STATUS_DEVICE_NEEDS_RESET) != 0;
}

void virtio_mmio_notify(struct virtio_mmio_device *d, unsigned queue) { reg_write(d, REG_QUEUE_NOTIFY, queue); }

/* ---------------------------------------------------------------- interrupts */

int virtio_mmio_irq_enable(struct virtio_mmio_device *d)
{
    if (d->irq_state == 0)              /* the interrupt only ends a halt: no handler */
        d->irq_state = d->info.irq >= 0 && pyrite_irq_route((unsigned)d->info.irq, NULL) == 0 ? 1 : -1;
    return d->irq_state > 0 ? 0 : -1;
}

uint32_t virtio_mmio_irq_ack(struct virtio_mmio_device *d)
{
    uint32_t status = reg_read(d, REG_INTERRUPT_STATUS);
    if (status)
        reg_write(d, REG_INTERRUPT_ACK, status);
    return status;
}

/* ---------------------------------------------------------------- configuration space */

uint8_t virtio_mmio_config8(struct virtio_mmio_device *d, unsigned offset)
{
    return *(volatile uint8_t *)(d->info.base + REG_CONFIG + offset);
}

uint32_t virtio_mmio_config32(struct virtio_mmio_device *d, unsigned offset)
{
    return reg_read(d, REG_CONFIG + offset);
}

uint64_t virtio_mmio_config64(struct virtio_mmio_device *d, unsigned offset)
{
    uint32_t generation, lo, hi;
    do {                                /* the two halves must come from one generation */
        generation = reg_read(d, REG_CONFIG_GENERATION);
        lo = reg_read(d, REG_CONFIG + offset);
        hi = reg_read(d, REG_CONFIG + offset + 4);
    } while (reg_read(d, REG_CONFIG_GENERATION) != generation);
    return (uint64_t)hi << 32 | lo;
}

/* ---------------------------------------------------------------- queue set-up */

static void write_addr(struct virtio_mmio_device *d, unsigned low_reg, const volatile void *p)
{
    uint64_t addr = (uintptr_t)p;       /* identity mapped: guest-physical = virtual */
    reg_write(d, low_reg, (uint32_t)addr);
    reg_write(d, low_reg + 4, (uint32_t)(addr >> 32));
}

/* The transport part of virtq_setup (drivers/virtio_queue.c): 0, or -ENOTSUP when the
 * queue does not exist or is already live. `*size` in: the most we want; out: what we got. */
int virtio_mmio_queue_size(struct virtio_mmio_device *d, unsigned index, uint16_t *size)
{
    reg_write(d, REG_QUEUE_SEL, index);
    if (reg_read(d, REG_QUEUE_READY) != 0)
        return -ENOTSUP;
    uint32_t max = reg_read(d, REG_QUEUE_NUM_MAX);
    if (max == 0)
        return -ENOTSUP;                /* no such queue */
    uint32_t want = *size < max ? *size : max;
    uint16_t n = 1;
    while ((uint32_t)n * 2 <= want)
        n *= 2;                         /* split queues have power-of-two sizes (2.7) */
    *size = n;
    return 0;
}

void virtio_mmio_queue_enable(struct virtio_mmio_device *d, unsigned index, uint16_t size,
                              const volatile void *desc, const volatile void *driver,
                              const volatile void *device)
{
    reg_write(d, REG_QUEUE_SEL, index);
    reg_write(d, REG_QUEUE_NUM, size);
    write_addr(d, REG_QUEUE_DESC_LOW, desc);
    write_addr(d, REG_QUEUE_DRIVER_LOW, driver);
    write_addr(d, REG_QUEUE_DEVICE_LOW, device);
    virtio_barrier();                   /* rings initialised before the device may look */
    reg_write(d, REG_QUEUE_READY, 1);
}
