/*
 * Page tables, finished at CPL 3 (they are user pages; the one privileged step, a CR3
 * reload, is trapped and emulated by arch/traps.S). The boot entry mapped either the
 * first 4 GiB with 1 GiB pages or only [0, __image_end) with 2 MiB pages. Here:
 *   pyrite_paging_init_low():  the first 4 GiB in 2 MiB pages (GiB 3, the MMIO gap,
 *                              uncached), page 0 not present so null pointers fault, nor
 *                              the guard page under each stack (arch/stacks.c);
 *   pyrite_paging_map_high():  RAM above 4 GiB from the memory map, up to 512 GiB,
 *                              with page directories taken from just past the image.
 */
#include <stdint.h>
#include <pyrite/arch.h>
#include <pyrite/boot.h>
#include "../libos_internal.h"

extern uint64_t pyrite_pml4[512];
extern uint64_t pyrite_pdpt[512];
extern uint64_t pyrite_pd[4][512];
extern char __image_end[];
static uint64_t low_pt[512] __attribute__((aligned(4096)));
static uint64_t guard_pt[2][512] __attribute__((aligned(4096)));    /* for the stacks' guard pages */
static unsigned guard_pts_used;

#define GIB (1ull << 30)
#define MIB2 (2ull << 20)
#define MAX_GIB 512
#define PTE_PAGE 0x07           /* present, writable, user (4 KiB page) */
#define PTE_PS 0x80

uint16_t pyrite_bda_ebda_segment;
static uintptr_t early_pages_end;   /* page directories allocated past __image_end end here */

static inline void load_cr3(uint64_t cr3) { __asm__ volatile("mov %0, %%cr3" : : "a"(cr3) : "memory"); }

static int large_pages(void) { return (pyrite_pdpt[0] & PTE_PS) != 0; }

static void fill_directory(uint64_t *pd, uint64_t base, uint64_t flags)
{
    for (unsigned i = 0; i < 512; i++)
        pd[i] = (base + i * MIB2) | flags;
}

/* Make the 4 KiB page at `addr` (in the first GiB) not present, splitting its 2 MiB page. */
static void unmap_page(uintptr_t addr)
{
    uint64_t *pde = &pyrite_pd[0][addr / MIB2];
    if (*pde & PTE_PS) {
        if (guard_pts_used == sizeof guard_pt / sizeof guard_pt[0])
            return;                              /* cannot happen: the guards lie within 128 KiB */
        uint64_t *pt = guard_pt[guard_pts_used++];
        for (unsigned i = 0; i < 512; i++)
            pt[i] = ((addr & ~(MIB2 - 1)) + i * 4096ull) | PTE_PAGE;
        *pde = (uintptr_t)pt | PTE_TABLE;
    }
    uint64_t *pt = (uint64_t *)(uintptr_t)(*pde & ~0xFFFull);
    pt[(addr >> 12) & 511] = 0;
}

void pyrite_paging_init_low(void)
{
    uintptr_t bda_ebda = 0x40E;
    __asm__("" : "+r"(bda_ebda));               /* an address gcc must not reason about */
    pyrite_bda_ebda_segment = *(volatile uint16_t *)bda_ebda;   /* page 0 goes away below */
    early_pages_end = (uintptr_t)__image_end;

    for (unsigned i = 1; i < 512; i++)
        low_pt[i] = (i * 4096ull) | PTE_PAGE;
    low_pt[0] = 0;
    if (large_pages()) {
        fill_directory(pyrite_pd[0], 0, PTE_LARGE);
    } else {
        for (unsigned g = 0; g < 4; g++)
            fill_directory(pyrite_pd[g], g * GIB, PTE_LARGE | (g == 3 ? PTE_UNCACHED : 0));
        for (unsigned g = 1; g < 4; g++)
            pyrite_pdpt[g] = (uintptr_t)pyrite_pd[g] | PTE_TABLE;
    }
    pyrite_pd[0][0] = (uintptr_t)low_pt | PTE_TABLE;
    for (unsigned i = 0; pyrite_stack(i); i++)
        unmap_page(pyrite_stack(i)->bottom - 4096);
    pyrite_pdpt[0] = (uintptr_t)pyrite_pd[0] | PTE_TABLE;
    load_cr3((uintptr_t)pyrite_pml4);
}

/* The RAM region that holds the image: page directories come from its tail past the image. */
static uintptr_t early_limit(const struct pyrite_bootinfo *bi)
{
    for (unsigned i = 0; i < bi->nr_mem; i++) {
        const struct pyrite_mem_region *r = &bi->mem[i];
        if (r->type == PYRITE_MEM_RAM && r->addr <= (uintptr_t)__image_end && (uintptr_t)__image_end < r->addr + r->size)
            return r->addr + r->size < 4 * GIB ? r->addr + r->size : 4 * GIB;
    }
    return (uintptr_t)__image_end;               /* unknown: allocate nothing */
}

void pyrite_paging_map_high(const struct pyrite_bootinfo *bi)
{
    uintptr_t limit = early_limit(bi);
    for (unsigned r = 0; r < bi->nr_mem; r++) {
        if (bi->mem[r].type != PYRITE_MEM_RAM)
            continue;
        uint64_t end = bi->mem[r].addr + bi->mem[r].size;
        for (uint64_t g = bi->mem[r].addr / GIB; g < MAX_GIB && g * GIB < end; g++) {
            if (g < 4 || pyrite_pdpt[g])
                continue;
            if (large_pages()) {
                pyrite_pdpt[g] = (g * GIB) | PTE_LARGE;
                continue;
            }
            if (early_pages_end + 4096 > limit)
                return;                          /* no room for more directories */
            uint64_t *pd = (uint64_t *)early_pages_end;
            early_pages_end += 4096;
            fill_directory(pd, g * GIB, PTE_LARGE);
            pyrite_pdpt[g] = (uintptr_t)pd | PTE_TABLE;
        }
    }
    /* Entries only went from not present to present: no TLB flush needed. */
}

uintptr_t pyrite_image_memory_end(void) { return early_pages_end; }
