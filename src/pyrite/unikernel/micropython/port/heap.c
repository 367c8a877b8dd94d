// The Python heap's memory: areas from the C library (musl's calloc: fresh pages, zero and
// not written), as many as MicroPython's GC asks for, up to all the memory the C library has
// left less a reserve for its own allocations. On the host, a fixed budget.
#include <stdlib.h>
#include <unistd.h>

#include "py/gc.h"
#include "py/mpstate.h"
#include "heap.h"

#ifdef PYRITE_UNIKERNEL
#include <pyrite/boot.h>
#endif

#define MIB (1024UL * 1024UL)
#define C_RESERVE_MIN (2 * MIB)         // musl's stdio buffers, directory streams, vsock rings
#define HOST_BUDGET (64 * MIB)

static int area_is_zero;
static size_t grown_on_host;

unsigned long pyrite_memory_mib(void) {
    long pages = sysconf(_SC_PHYS_PAGES);
    long page_size = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page_size <= 0) {
        return 0;
    }
    unsigned long bytes = (unsigned long)pages * (unsigned long)page_size;
    #ifdef PYRITE_UNIKERNEL
    bytes += pyrite_image_memory_end();         // the C library counts RAM above the image only
    #endif
    return (bytes + MIB - 1) / MIB;
}

// The largest area the GC may add now (MICROPY_GC_SPLIT_HEAP_AUTO asks before growing).
size_t gc_get_max_new_split(void) {
    #ifdef PYRITE_UNIKERNEL
    long avail_pages = sysconf(_SC_AVPHYS_PAGES);
    long total_pages = sysconf(_SC_PHYS_PAGES);
    long page_size = sysconf(_SC_PAGESIZE);
    if (avail_pages <= 0 || total_pages <= 0 || page_size <= 0) {
        return 0;
    }
    size_t avail = (size_t)avail_pages * (size_t)page_size;
    size_t reserve = (size_t)total_pages * (size_t)page_size / 32;
    reserve = reserve > C_RESERVE_MIN ? reserve : C_RESERVE_MIN;
    return avail > reserve ? avail - reserve : 0;
    #else
    return HOST_BUDGET > grown_on_host ? HOST_BUDGET - grown_on_host : 0;
    #endif
}

void *pyrite_heap_grow(size_t size) {
    void *area = calloc(1, size);
    if (area != NULL) {
        area_is_zero = 1;
        grown_on_host += size;
    }
    return area;
}

int pyrite_take_heap_is_zero(void) {
    int zero = area_is_zero;
    area_is_zero = 0;                           // the next gc_init (a soft reset) finds it used
    return zero;
}

void pyrite_heap_release_grown(mp_state_mem_area_t *first) {
    mp_state_mem_area_t *area = first->next;
    first->next = NULL;
    while (area != NULL) {
        mp_state_mem_area_t *next = area->next;
        free(area);                             // gc_add put the area's record at its start
        area = next;
    }
}
