/*
 * malloc and friends: boundary-tag blocks with an explicit free list, first fit,
 * coalescing on free. The arenas are the RAM regions of the memory map above the
 * image (and outside the boot modules). Single-threaded, like the rest of the OS.
 *
 * A block: [size | used] payload... [size | used]   (size includes both tags, multiple of 16)
 * Each arena starts and ends with a used zero-size fence so coalescing stops there.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <pyrite/boot.h>
#include "../libos_internal.h"

#define ALIGN      16
#define TAG        8
#define USED       1ull
#define MIN_BLOCK  48                 /* tags + two free-list links, rounded to ALIGN */
#define MAX_ARENAS 16

struct free_block {
    uint64_t head;
    struct free_block *next, *prev;
};

static struct free_block free_list = {0, &free_list, &free_list};
static size_t heap_bytes;

static uint64_t *foot(void *block, uint64_t size) { return (uint64_t *)((char *)block + size - TAG); }
static uint64_t size_of(const void *block) { return *(const uint64_t *)block & ~(uint64_t)(ALIGN - 1); }
static int used(const void *block) { return *(const uint64_t *)block & USED; }

static void set_tags(void *block, uint64_t size, uint64_t flag)
{
    *(uint64_t *)block = size | flag;
    *foot(block, size) = size | flag;
}

static void list_insert(struct free_block *b)
{
    b->next = free_list.next;
    b->prev = &free_list;
    free_list.next->prev = b;
    free_list.next = b;
}

static void list_remove(struct free_block *b)
{
    b->prev->next = b->next;
    b->next->prev = b->prev;
}

static void add_arena(uint64_t start, uint64_t end)
{
    start = (start + ALIGN - 1) & ~(uint64_t)(ALIGN - 1);
    end &= ~(uint64_t)(ALIGN - 1);
    if (end <= start || end - start < 2 * ALIGN + MIN_BLOCK)
        return;
    /* Fences: a used 16-byte block at each end. */
    set_tags((void *)(uintptr_t)start, ALIGN, USED);
    set_tags((void *)(uintptr_t)(end - ALIGN), ALIGN, USED);
    struct free_block *b = (void *)(uintptr_t)(start + ALIGN);
    set_tags(b, end - start - 2 * ALIGN, 0);
    list_insert(b);
    heap_bytes += end - start - 2 * ALIGN;
}

/* [start, end) minus the boot modules (the initrd must survive). */
static void add_ram(const struct pyrite_bootinfo *bi, uint64_t start, uint64_t end, unsigned first_module)
{
    for (unsigned m = first_module; m < bi->nr_modules; m++) {
        uint64_t ms = bi->modules[m].addr, me = ms + bi->modules[m].size;
        if (ms < end && me > start) {
            if (ms > start)
                add_ram(bi, start, ms, m + 1);
            if (me < end)
                add_ram(bi, me, end, m + 1);
            return;
        }
    }
    add_arena(start, end);
}

void pyrite_heap_init(const struct pyrite_bootinfo *bi)
{
    uint64_t floor = pyrite_image_memory_end();     /* past the image and its page directories */
    for (unsigned i = 0; i < bi->nr_mem; i++) {
        const struct pyrite_mem_region *r = &bi->mem[i];
        uint64_t start = r->addr, end = r->addr + r->size;
        if (r->type != PYRITE_MEM_RAM || end <= floor)
            continue;                 /* low memory holds the boot structures: leave it */
        if (start < floor)
            start = floor;
        if (end > (512ull << 30))
            end = 512ull << 30;       /* beyond what the page tables map */
        if (start < end)
            add_ram(bi, start, end, 0);
    }
}

size_t pyrite_heap_size(void) { return heap_bytes; }

static uint64_t block_size_for(size_t n)
{
    if (n > (SIZE_MAX >> 2))
        return 0;
    uint64_t size = (n + 2 * TAG + ALIGN - 1) & ~(uint64_t)(ALIGN - 1);
    return size < MIN_BLOCK ? MIN_BLOCK : size;
}

/* Use `size` bytes of free block b (removed from the list), returning the rest. */
static void *take(struct free_block *b, uint64_t size)
{
    uint64_t have = size_of(b);
    list_remove(b);
    if (have - size >= MIN_BLOCK) {
        struct free_block *rest = (void *)((char *)b + size);
        set_tags(rest, have - size, 0);
        list_insert(rest);
        have = size;
    }
    set_tags(b, have, USED);
    return (char *)b + TAG;
}

void *malloc(size_t n)
{
    uint64_t size = block_size_for(n);
    if (size)
        for (struct free_block *b = free_list.next; b != &free_list; b = b->next)
            if (size_of(b) >= size)
                return take(b, size);
    errno = ENOMEM;
    return NULL;
}

void free(void *p)
{
    if (!p)
        return;
    char *block = (char *)p - TAG;
    uint64_t size = size_of(block);
    char *next = block + size;
    if (!used(next)) {
        list_remove((struct free_block *)next);
        size += size_of(next);
    }
    uint64_t prev_tag = *(uint64_t *)(block - TAG);
    if (!(prev_tag & USED)) {
        block -= prev_tag & ~(uint64_t)(ALIGN - 1);
        list_remove((struct free_block *)block);
        size += size_of(block);
    }
    set_tags(block, size, 0);
    list_insert((struct free_block *)block);
}

void *calloc(size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = malloc(count * size);
    return p ? memset(p, 0, count * size) : NULL;
}

void *realloc(void *p, size_t n)
{
    if (!p)
        return malloc(n);
    if (!n) {
        free(p);
        return NULL;
    }
    char *block = (char *)p - TAG;
    uint64_t have = size_of(block), want = block_size_for(n);
    if (!want) {
        errno = ENOMEM;
        return NULL;
    }
    char *next = block + have;
    if (want > have && !used(next) && have + size_of(next) >= want) {
        list_remove((struct free_block *)next);
        have += size_of(next);
        set_tags(block, have, USED);
    }
    if (want <= have) {
        if (have - want >= MIN_BLOCK) {         /* give back the tail */
            set_tags(block, want, USED);
            set_tags(block + want, have - want, USED);
            free(block + want + TAG);
        }
        return p;
    }
    void *q = malloc(n);
    if (q) {
        memcpy(q, p, have - 2 * TAG);
        free(p);
    }
    return q;
}

int posix_memalign(void **out, size_t alignment, size_t size)
{
    if (alignment < ALIGN || (alignment & (alignment - 1)))
        return alignment < ALIGN && alignment && !(alignment & (alignment - 1))
                   ? ((*out = malloc(size)) ? 0 : ENOMEM) : EINVAL;
    /* Over-allocate, then free the leading part so the payload lands aligned. */
    char *p = malloc(size + alignment + MIN_BLOCK);
    if (!p)
        return ENOMEM;
    uintptr_t aligned = (uintptr_t)p;
    if (aligned & (alignment - 1))   /* leave a lead of at least MIN_BLOCK to free */
        aligned = ((uintptr_t)p + MIN_BLOCK + alignment - 1) & ~(uintptr_t)(alignment - 1);
    if (aligned != (uintptr_t)p) {
        char *block = p - TAG, *start = (char *)aligned - TAG;
        uint64_t total = size_of(block), lead = (uint64_t)(start - block);
        set_tags(block, lead, USED);
        set_tags(start, total - lead, USED);
        free(p);
        p = (char *)aligned;
    }
    *out = p;
    return 0;
}

void *aligned_alloc(size_t alignment, size_t size)
{
    void *p;
    int err = posix_memalign(&p, alignment, size);
    if (err) {
        errno = err;
        return NULL;
    }
    return p;
}
