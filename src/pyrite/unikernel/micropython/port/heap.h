#include <stddef.h>

unsigned long pyrite_memory_mib(void);        // the machine's memory, 0 when unknown
void *pyrite_heap_alloc(size_t *size);        // the Python heap; NULL when there is no memory
