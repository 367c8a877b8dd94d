// The Python heap: in a unikernel, all the memory the C library has left at start-up (less a
// reserve for the C library's own allocations); on the host, a fixed size.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "heap.h"

#define MIB (1024UL * 1024UL)
#define C_RESERVE_MIN (2 * MIB)         // musl's stdio buffers, directory streams, vsock rings
#define HEAP_MIN (256 * 1024UL)
#define HOST_HEAP (64 * MIB)

unsigned long pyrite_memory_mib(void) {
    long pages = sysconf(_SC_PHYS_PAGES);
    long page_size = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page_size <= 0) {
        return 0;
    }
    return (unsigned long)pages * (unsigned long)page_size / MIB;
}

static size_t heap_wanted(void) {
    #ifdef PYRITE_UNIKERNEL
    long pages = sysconf(_SC_AVPHYS_PAGES);
    long page_size = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page_size > 0) {
        size_t avail = (size_t)pages * (size_t)page_size;
        size_t reserve = avail / 32 > C_RESERVE_MIN ? avail / 32 : C_RESERVE_MIN;
        return avail > reserve + HEAP_MIN ? avail - reserve : HEAP_MIN;
    }
    #endif
    return HOST_HEAP;
}

void *pyrite_heap_alloc(size_t *size) {
    // What the C library reports free may be more than one block can get: shrink until it fits.
    for (size_t want = heap_wanted(); want >= HEAP_MIN; want -= want / 8) {
        void *heap = malloc(want);
        if (heap != NULL) {
            *size = want;
            return heap;
        }
    }
    return NULL;
}
