/* Processor count from the MP table (Firecracker, pyrite) or the ACPI MADT (QEMU). */
#include <stdint.h>
#include <string.h>
#include <pyrite/arch.h>
#include <pyrite/boot.h>
#include "../libos_internal.h"

static uint8_t checksum(const uint8_t *p, size_t n)
{
    uint8_t sum = 0;
    while (n--)
        sum += *p++;
    return sum;
}

/* A signature on a 16-byte boundary in [start, end) whose `len` bytes sum to 0. */
static const uint8_t *scan(uintptr_t start, uintptr_t end, const char *sig, size_t siglen, size_t len)
{
    for (uintptr_t p = start; p + len <= end; p += 16)
        if (memcmp((const void *)p, sig, siglen) == 0 && checksum((const void *)p, len) == 0)
            return (const uint8_t *)p;
    return NULL;
}

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

static uintptr_t ebda_base(void)
{
    extern uint16_t pyrite_bda_ebda_segment;          /* BDA word 0x40E, read at boot */
    return (uintptr_t)pyrite_bda_ebda_segment << 4;
}

/* MP spec 1.4: floating pointer "_MP_" in the EBDA's first KiB, the last KiB of base
 * memory, or the BIOS ROM; processor entries (type 0, 20 bytes) in the "PCMP" table. */
static int mptable_cpus(void)
{
    const uint8_t *mpf = NULL;
    uintptr_t ebda = ebda_base();
    if (ebda >= 0x80000 && ebda < 0xA0000)
        mpf = scan(ebda, ebda + 1024, "_MP_", 4, 16);
    if (!mpf)
        mpf = scan(0x9FC00, 0xA0000, "_MP_", 4, 16);
    if (!mpf)
        mpf = scan(0xF0000, 0x100000, "_MP_", 4, 16);
    if (!mpf || !rd32(mpf + 4))
        return -1;
    const uint8_t *cfg = (const uint8_t *)(uintptr_t)rd32(mpf + 4);
    if (memcmp(cfg, "PCMP", 4) != 0 || checksum(cfg, rd16(cfg + 4)) != 0)
        return -1;
    unsigned count = rd16(cfg + 0x22), cpus = 0;
    const uint8_t *e = cfg + 44, *end = cfg + rd16(cfg + 4);
    for (unsigned i = 0; i < count && e < end; i++) {
        if (e[0] == 0) {
            cpus += e[3] & 1;                        /* CPU enabled */
            e += 20;
        } else
            e += 8;
    }
    return (int)cpus;
}

/* ACPI MADT ("APIC"): count enabled local APIC (type 0) and x2APIC (type 9) entries. */
static int madt_cpus(void)
{
    const uint8_t *t = pyrite_acpi_table("APIC");
    if (!t)
        return -1;
    uint32_t tlen = rd32(t + 4);
    int cpus = 0;
    for (uint32_t p = 44; p + 2 <= tlen && t[p + 1] >= 2; p += t[p + 1]) {
        if (t[p] == 0)
            cpus += rd32(t + p + 4) & 1;
        else if (t[p] == 9)
            cpus += rd32(t + p + 8) & 1;
    }
    return cpus;
}

int pyrite_cpu_count(const char **source)
{
    int n = mptable_cpus();
    if (n > 0) {
        *source = "mptable";
        return n;
    }
    n = madt_cpus();
    if (n > 0) {
        *source = "acpi";
        return n;
    }
    *source = "none";
    return 1;
}
