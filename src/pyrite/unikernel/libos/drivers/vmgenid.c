/*
 * VM generation ID (Microsoft's VMGenID, as Firecracker and pyrite describe it): the DSDT
 * holds a device with _CID "VM_Gen_Counter" and Name(ADDR, Package(2) {low, high}), the
 * guest-physical address of the 16-byte ID. No AML interpreter: the DSDT is scanned for the
 * bytes NameOp 'ADDR' PackageOp, and the two integers of that package are decoded (any
 * integer encoding; Firecracker and pyrite write DWordConsts). A VMM whose ADDR is a method
 * (QEMU's) is not understood. The ID is read from memory at every call: the VMM rewrites it
 * in place; the notification interrupt (GED, GSI in the DSDT) is not used.
 */
#include <stdint.h>
#include <string.h>
#include <pyrite/vmgenid.h>
#include "../libos_internal.h"

static const volatile uint8_t *id_addr;
static int probed;

/* PkgLength (ACPI 6.5 20.2.4): 1..4 bytes; its value is returned, *size is its own length. */
static uint32_t pkg_length(const uint8_t *p, const uint8_t *end, unsigned *size)
{
    unsigned follow = p[0] >> 6;
    if (p + 1 + follow > end)
        return 0;
    uint32_t value = follow ? p[0] & 0x0F : p[0] & 0x3F;
    for (unsigned i = 0; i < follow; i++)
        value |= (uint32_t)p[1 + i] << (4 + 8 * i);
    *size = 1 + follow;
    return value;
}

/* One ComputationalData integer at *p (advanced past it); -1 if it is not one. */
static int integer(const uint8_t **p, const uint8_t *end, uint64_t *value)
{
    static const uint8_t widths[] = {[0x0A] = 1, [0x0B] = 2, [0x0C] = 4, [0x0E] = 8};
    uint8_t op = **p;
    if (op == 0x00 || op == 0x01 || op == 0xFF) {     /* ZeroOp, OneOp, OnesOp */
        *value = op == 0xFF ? ~0ull : op;
        *p += 1;
        return 0;
    }
    unsigned width = op < sizeof widths ? widths[op] : 0;
    if (!width || *p + 1 + width > end)
        return -1;
    *value = 0;
    memcpy(value, *p + 1, width);
    *p += 1 + width;
    return 0;
}

static const volatile uint8_t *find_id(void)
{
    const uint8_t *dsdt = pyrite_acpi_table("DSDT");
    if (!dsdt)
        return NULL;
    uint32_t len;
    memcpy(&len, dsdt + 4, 4);
    const uint8_t *end = dsdt + len;
    static const char cid[] = "\x0DVM_Gen_Counter";   /* StringPrefix "VM_Gen_Counter" NUL */
    int named = 0;
    for (const uint8_t *p = dsdt + 36; p + sizeof cid <= end && !named; p++)
        named = memcmp(p, cid, sizeof cid) == 0;
    if (!named)
        return NULL;
    for (const uint8_t *p = dsdt + 36; p + 8 <= end; p++) {
        if (memcmp(p, "\x08" "ADDR" "\x12", 6) != 0)
            continue;
        unsigned size;
        const uint8_t *q = p + 6;
        uint32_t plen = pkg_length(q, end, &size);
        if (plen < size + 1 || q + plen > end || q[size] != 2)     /* NumElements 2 */
            continue;
        const uint8_t *pkg_end = q + plen;
        uint64_t low, high;
        q += size + 1;
        if (integer(&q, pkg_end, &low) || integer(&q, pkg_end, &high))
            continue;
        uint64_t addr = (low & 0xFFFFFFFFu) | high << 32;
        /* Page 0 is unmapped and only the first 4 GiB are mapped for sure. */
        if (addr < 4096 || addr + VMGENID_SIZE > (1ull << 32))
            return NULL;
        return (const volatile uint8_t *)(uintptr_t)addr;
    }
    return NULL;
}

int vmgenid_read(uint8_t id[VMGENID_SIZE])
{
    if (!probed) {
        id_addr = find_id();
        probed = 1;
    }
    if (!id_addr)
        return -1;
    for (unsigned i = 0; i < VMGENID_SIZE; i++)
        id[i] = id_addr[i];
    return 0;
}
