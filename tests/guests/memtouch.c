/* Writes and reads back a pattern in the first and last 4 KiB of every RAM region of
 * the memory map (past the image's own memory), so that all of RAM, above 4 GiB too, is shown to
 * be mapped. Prints "ram <addr> <size> ok" per region and "memtouch regions=N". */
#include <stdint.h>
#include <stdio.h>
#include <pyrite/boot.h>

static int touch(uint64_t addr)
{
    volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)addr;
    for (unsigned i = 0; i < 512; i++)
        p[i] = addr ^ (i * 0x9E3779B97F4A7C15ull);
    for (unsigned i = 0; i < 512; i++)
        if (p[i] != (addr ^ (i * 0x9E3779B97F4A7C15ull)))
            return 0;
    return 1;
}

int main(void)
{
    const struct pyrite_bootinfo *bi = pyrite_bootinfo();
    int regions = 0, bad = 0;
    for (unsigned i = 0; i < bi->nr_mem; i++) {
        const struct pyrite_mem_region *r = &bi->mem[i];
        uint64_t start = r->addr, end = r->addr + r->size;
        if (r->type != PYRITE_MEM_RAM || end <= pyrite_image_memory_end() + 8192)
            continue;
        if (start < pyrite_image_memory_end())
            start = pyrite_image_memory_end();
        start = (start + 4095) & ~4095ull;
        end &= ~4095ull;
        int ok = touch(start) && touch(end - 4096);
        printf("ram %#lx %#lx %s\n", r->addr, r->size, ok ? "ok" : "BAD");
        regions++;
        bad += !ok;
    }
    printf("memtouch regions=%d\n", regions);
    return bad;
}
