/* Mappings beyond the first 4 GiB the boot code maps (RAM above the MMIO gap). */
#include <stdint.h>
#include <pyrite/arch.h>
#include <pyrite/boot.h>
#include "../libos_internal.h"

extern uint64_t pyrite_pdpt[512];

#define GIB (1ull << 30)

/* With 1 GiB pages the PDPT maps up to 512 GiB; the new entries were not present
 * before, so no TLB flush is needed (and CPL 3 could not flush anyway). Without
 * 1 GiB pages only the first 4 GiB are mapped. */
void pyrite_paging_init(const struct pyrite_bootinfo *bi)
{
    if (!(pyrite_pdpt[0] & 0x80))
        return;
    for (unsigned i = 0; i < bi->nr_mem; i++) {
        uint64_t end = bi->mem[i].addr + bi->mem[i].size;
        for (uint64_t g = 4; g < 512 && g * GIB < end; g++)
            if (!pyrite_pdpt[g])
                pyrite_pdpt[g] = (g * GIB) | PTE_LARGE;
    }
}
