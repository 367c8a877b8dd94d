/* ACPI tables: RSDP (from the boot protocol, else the EBDA or the BIOS area) -> XSDT (or
 * RSDT) -> a table by signature; the DSDT through the FADT (X_DSDT, else DSDT). */
#include <stdint.h>
#include <string.h>
#include <pyrite/boot.h>
#include "../libos_internal.h"

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static int sums_to_zero(const uint8_t *p, size_t n)
{
    uint8_t sum = 0;
    while (n--)
        sum += *p++;
    return sum == 0;
}

/* "RSD PTR " on a 16-byte boundary in [start, end) whose ACPI 1.0 part sums to 0. */
static const uint8_t *scan_rsdp(uintptr_t start, uintptr_t end)
{
    for (uintptr_t p = start; p + 20 <= end; p += 16)
        if (memcmp((const void *)p, "RSD PTR ", 8) == 0 && sums_to_zero((const void *)p, 20))
            return (const uint8_t *)p;
    return NULL;
}

static const uint8_t *find_rsdp(void)
{
    extern uint16_t pyrite_bda_ebda_segment;          /* BDA word 0x40E, read at boot */
    uint64_t given = pyrite_bootinfo()->rsdp;
    if (given && memcmp((const void *)(uintptr_t)given, "RSD PTR ", 8) == 0)
        return (const uint8_t *)(uintptr_t)given;
    uintptr_t ebda = (uintptr_t)pyrite_bda_ebda_segment << 4;
    const uint8_t *r = NULL;
    if (ebda >= 0x80000 && ebda < 0xA0000)
        r = scan_rsdp(ebda, ebda + 1024);
    return r ? r : scan_rsdp(0xE0000, 0x100000);
}

/* The table at `addr` if it carries `sig` and a length of at least its 36-byte header. */
static const uint8_t *table_at(uint64_t addr, const char *sig)
{
    if (addr < 4096 || addr >= (1ull << 32))          /* page 0 is unmapped; tables live low */
        return NULL;
    const uint8_t *t = (const uint8_t *)(uintptr_t)addr;
    return memcmp(t, sig, 4) == 0 && rd32(t + 4) >= 36 ? t : NULL;
}

const uint8_t *pyrite_acpi_table(const char *sig)
{
    const uint8_t *rsdp = find_rsdp();
    if (!rsdp)
        return NULL;
    if (memcmp(sig, "DSDT", 4) == 0) {
        const uint8_t *fadt = pyrite_acpi_table("FACP");
        if (!fadt)
            return NULL;
        uint32_t len = rd32(fadt + 4);
        uint64_t x_dsdt = len >= 148 ? rd64(fadt + 140) : 0;
        return table_at(x_dsdt ? x_dsdt : (len >= 44 ? rd32(fadt + 40) : 0), "DSDT");
    }
    const uint8_t *sdt;
    unsigned entry_size;
    if (rsdp[15] >= 2 && rd64(rsdp + 24)) {
        sdt = table_at(rd64(rsdp + 24), "XSDT");
        entry_size = 8;
    } else {
        sdt = table_at(rd32(rsdp + 16), "RSDT");
        entry_size = 4;
    }
    if (!sdt)
        return NULL;
    uint32_t len = rd32(sdt + 4);
    for (uint32_t off = 36; off + entry_size <= len; off += entry_size) {
        const uint8_t *t = table_at(entry_size == 8 ? rd64(sdt + off) : rd32(sdt + off), sig);
        if (t)
            return t;
    }
    return NULL;
}
