#include <stddef.h>

// The Python heap starts as one area of this size; MicroPython's GC adds areas (doubling its
// total, MICROPY_GC_SPLIT_HEAP_AUTO) when a collection leaves no room, until the memory is
// used up: collections then sweep only what the program uses.
#define PYRITE_HEAP_FIRST_AREA (2 * 1024 * 1024)

struct _mp_state_mem_area_t;

unsigned long pyrite_memory_mib(void);          // the machine's memory, 0 when unknown
void *pyrite_heap_grow(size_t size);            // a zeroed heap area, NULL when memory is used up
int pyrite_take_heap_is_zero(void);             // whether the area gc_init/gc_add sets up is zero
void pyrite_heap_release_grown(struct _mp_state_mem_area_t *first);   // free the areas after the first
