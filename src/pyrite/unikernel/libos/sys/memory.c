/*
 * Memory system calls over a page allocator on the guest's RAM map.
 *
 * All RAM is identity mapped, readable, writable and executable (arch/paging.c), so
 * "mapping" memory is handing out physical pages. The free pages are a sorted table of
 * extents: RAM from the memory map above the image, minus the boot modules (the initrd).
 * The program break starts at the first free page and grows upward; mmap takes pages from
 * the top of memory downward, so the two meet only when memory is full. Anonymous memory is
 * zeroed when handed out, as Linux gives it. Protection is not enforced per page: mprotect
 * accepts what the memory already allows (read and write) and refuses narrower access.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <pyrite/boot.h>
#include "sys.h"
#include "../libos_internal.h"
#include "../fs/fs.h"

#define PAGE 4096ull
#define MAX_EXTENTS 1024
#define MAX_RAM (512ull << 30)         /* what the page tables map */

struct extent { uint64_t start, end; };

static struct extent free_list[MAX_EXTENTS];    /* sorted, disjoint, not adjacent */
static unsigned nr_free;
static struct extent ram[PYRITE_MAX_MEM_REGIONS]; /* every page the allocator manages */
static unsigned nr_ram;
static uint64_t brk_start, brk_end;             /* brk_end page aligned */
static uint64_t brk_current;

/* Pages never handed out since boot still hold the zeroes the VMM gave them: a single
 * window of them, so that handing out memory does not write every page of it (touching
 * hundreds of MiB costs the host page faults and RSS for nothing). */
static uint64_t clean_start, clean_end;

static uint64_t page_up(uint64_t v) { return (v + PAGE - 1) & ~(PAGE - 1); }

/* [start, end) leaves the clean window: keep the larger clean side of it. */
static void dirty(uint64_t start, uint64_t end)
{
    if (end <= clean_start || start >= clean_end)
        return;
    uint64_t below = start > clean_start ? start - clean_start : 0;
    uint64_t above = clean_end > end ? clean_end - end : 0;
    if (below >= above)
        clean_end = start > clean_start ? start : clean_start;
    else
        clean_start = end;
}

/* Zero [start, end) for handing out (anonymous memory reads as zeroes, as on Linux),
 * writing only the pages outside the clean window. */
static void zero_fresh(uint64_t start, uint64_t end)
{
    uint64_t cs = start > clean_start ? start : clean_start;
    uint64_t ce = end < clean_end ? end : clean_end;
    if (cs >= ce) {
        memset((void *)(uintptr_t)start, 0, end - start);
        return;
    }
    memset((void *)(uintptr_t)start, 0, cs - start);
    memset((void *)(uintptr_t)ce, 0, end - ce);
    dirty(start, end);
}

static void insert_extent(unsigned at, uint64_t start, uint64_t end)
{
    if (nr_free == MAX_EXTENTS)
        return;                                 /* table full: these pages are lost */
    memmove(&free_list[at + 1], &free_list[at], (nr_free - at) * sizeof free_list[0]);
    free_list[at] = (struct extent){start, end};
    nr_free++;
}

static void remove_extent(unsigned at)
{
    memmove(&free_list[at], &free_list[at + 1], (nr_free - at - 1) * sizeof free_list[0]);
    nr_free--;
}

/* Give [start, end) back, merging with neighbours. */
static void release(uint64_t start, uint64_t end)
{
    dirty(start, end);
    unsigned i = 0;
    while (i < nr_free && free_list[i].end < start)
        i++;
    if (i < nr_free && free_list[i].start <= end) {          /* touches or overlaps extent i */
        if (start < free_list[i].start)
            free_list[i].start = start;
        if (end > free_list[i].end)
            free_list[i].end = end;
        while (i + 1 < nr_free && free_list[i + 1].start <= free_list[i].end) {
            if (free_list[i + 1].end > free_list[i].end)
                free_list[i].end = free_list[i + 1].end;
            remove_extent(i + 1);
        }
        return;
    }
    insert_extent(i, start, end);
}

/* Take [start, end) out of the free table; pages already taken stay taken. */
static void reserve(uint64_t start, uint64_t end)
{
    for (unsigned i = 0; i < nr_free && start < end;) {
        struct extent *x = &free_list[i];
        if (x->end <= start || x->start >= end) {
            i++;
            continue;
        }
        if (x->start < start && x->end > end) {                  /* split */
            uint64_t tail = x->end;
            x->end = start;
            insert_extent(i + 1, end, tail);
            return;
        }
        if (x->start >= start && x->end <= end) {
            remove_extent(i);
            continue;
        }
        if (x->start < start)
            x->end = start;
        else
            x->start = end;
        i++;
    }
}

static int range_free(uint64_t start, uint64_t end)
{
    for (unsigned i = 0; i < nr_free; i++)
        if (free_list[i].start <= start && end <= free_list[i].end)
            return 1;
    return 0;
}

static int range_managed(uint64_t start, uint64_t end)
{
    for (unsigned i = 0; i < nr_ram; i++)
        if (ram[i].start <= start && end <= ram[i].end)
            return 1;
    return 0;
}

/* [start, end) minus the boot modules, which must survive (the initrd). */
static void add_ram(const struct pyrite_bootinfo *bi, uint64_t start, uint64_t end, unsigned first_module)
{
    for (unsigned m = first_module; m < bi->nr_modules; m++) {
        uint64_t ms = bi->modules[m].addr & ~(PAGE - 1), me = page_up(bi->modules[m].addr + bi->modules[m].size);
        if (ms < end && me > start) {
            if (ms > start)
                add_ram(bi, start, ms, m + 1);
            if (me < end)
                add_ram(bi, me, end, m + 1);
            return;
        }
    }
    if (start < end)
        release(start, end);
}

void pyrite_memory_init(const struct pyrite_bootinfo *bi)
{
    uint64_t floor = page_up(pyrite_image_memory_end());   /* past the image and its page directories */
    for (unsigned i = 0; i < bi->nr_mem; i++) {
        const struct pyrite_mem_region *r = &bi->mem[i];
        uint64_t start = page_up(r->addr), end = (r->addr + r->size) & ~(PAGE - 1);
        if (r->type != PYRITE_MEM_RAM || end <= floor)
            continue;                 /* low memory holds the boot structures: leave it */
        if (start < floor)
            start = floor;
        if (end > MAX_RAM)
            end = MAX_RAM;
        if (start >= end)
            continue;
        add_ram(bi, start, end, 0);
        if (nr_ram < PYRITE_MAX_MEM_REGIONS)
            ram[nr_ram++] = (struct extent){start, end};
    }
    brk_start = brk_end = brk_current = nr_free ? free_list[0].start : floor;
    if (nr_free) {                              /* after add_ram: its releases are not dirt */
        clean_start = free_list[0].start;
        clean_end = free_list[nr_free - 1].end;
    }
}

size_t pyrite_memory_free(void)
{
    size_t total = 0;
    for (unsigned i = 0; i < nr_free; i++)
        total += free_list[i].end - free_list[i].start;
    return total;
}

long sys_brk(uintptr_t addr)
{
    if (addr < brk_start)
        return (long)brk_current;
    uint64_t end = page_up(addr);
    if (end > brk_end) {
        if (!range_free(brk_end, end))
            return (long)brk_current;       /* Linux: the old break means failure */
        reserve(brk_end, end);
        zero_fresh(brk_end, end);
    } else if (end < brk_end) {
        release(end, brk_end);
    }
    brk_end = end;
    brk_current = addr;
    return (long)brk_current;
}

/* Highest free extent with room for len bytes: take its top. */
static uint64_t take_top(uint64_t len)
{
    for (unsigned i = nr_free; i-- > 0;) {
        if (free_list[i].end - free_list[i].start >= len) {
            uint64_t start = free_list[i].end - len;
            reserve(start, start + len);
            return start;
        }
    }
    return 0;
}

long sys_mmap(uintptr_t addr, size_t len, int prot, int flags, int fd, off_t offset)
{
    if (!len || (addr & (PAGE - 1)))
        return -EINVAL;
    int file = !(flags & MAP_ANONYMOUS);
    if (file && (flags & MAP_TYPE) != MAP_PRIVATE)
        return -ENODEV;                       /* shared file mappings: none (no page cache to share) */
    if (file && (offset < 0 || (offset & (PAGE - 1))))
        return -EINVAL;
    uint64_t size = page_up(len);
    if (size < len)
        return -ENOMEM;
    uint64_t start;
    if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) {
        if (addr + size < addr || !range_managed(addr, addr + size))
            return -ENOMEM;
        if ((flags & MAP_FIXED_NOREPLACE) && !range_free(addr, addr + size))
            return -EEXIST;
        reserve(addr, addr + size);       /* over a mapping of ours: replaced, as on Linux */
        start = addr;
    } else if (addr && range_free(addr, addr + size)) {
        reserve(addr, addr + size);       /* the hint can be honoured */
        start = addr;
    } else if (!(start = take_top(size))) {
        return -ENOMEM;
    }
    zero_fresh(start, start + size);
    if (file) {                               /* private: a copy of the file as it is now */
        long err = fs_mmap_private(fd, (void *)(uintptr_t)start, len, offset);
        if (err < 0) {
            release(start, start + size);
            return err;
        }
    }
    return (long)start;
}

long sys_munmap(uintptr_t addr, size_t len)
{
    if (!len || (addr & (PAGE - 1)) || addr + len < addr)
        return -EINVAL;
    uint64_t end = page_up(addr + len);
    if (range_managed(addr, end))
        release(addr, end);
    return 0;                                 /* as on Linux, unmapping nothing is fine */
}

long sys_mremap(uintptr_t old, size_t old_len, size_t new_len, int flags, uintptr_t new_addr)
{
    if ((old & (PAGE - 1)) || !new_len || (flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED)) || (flags & MREMAP_FIXED))
        return -EINVAL;
    uint64_t have = page_up(old_len), want = page_up(new_len);
    if (!range_managed(old, old + have))
        return -EFAULT;
    if (want <= have) {
        if (want < have)
            release(old + want, old + have);
        return (long)old;
    }
    if (range_free(old + have, old + want)) {          /* grow in place */
        reserve(old + have, old + want);
        zero_fresh(old + have, old + want);
        return (long)old;
    }
    if (!(flags & MREMAP_MAYMOVE))
        return -ENOMEM;
    uint64_t moved = take_top(want);
    if (!moved)
        return -ENOMEM;
    dirty(moved, moved + have);
    zero_fresh(moved + have, moved + want);
    memcpy((void *)(uintptr_t)moved, (void *)old, have);
    release(old, old + have);
    return (long)moved;
}

long sys_mprotect(uintptr_t addr, size_t len, int prot)
{
    if (addr & (PAGE - 1))
        return -EINVAL;
    if ((prot & (PROT_READ | PROT_WRITE)) != (PROT_READ | PROT_WRITE))
        return -EACCES;                       /* pages cannot be made read-only or inaccessible */
    return 0;                                 /* read-write(-execute) is what every page allows */
}

long sys_madvise(uintptr_t addr, size_t len, int advice)
{
    if (addr & (PAGE - 1))
        return -EINVAL;
    if (advice == MADV_DONTNEED) {            /* private anonymous memory reads back as zeroes */
        uint64_t end = page_up(addr + len);
        if (!range_managed(addr, end))
            return -EINVAL;
        memset((void *)addr, 0, end - addr);
    }
    return 0;                                 /* other advice (MADV_FREE included) is only advice */
}

/* Nothing to write back: there are no file mappings. */
long sys_msync(uintptr_t addr, size_t len, int flags)
{
    if ((addr & (PAGE - 1)) || (flags & ~(MS_ASYNC | MS_SYNC | MS_INVALIDATE)) ||
        ((flags & MS_ASYNC) && (flags & MS_SYNC)))
        return -EINVAL;
    return range_managed(addr, page_up(addr + len)) ? 0 : -ENOMEM;
}
