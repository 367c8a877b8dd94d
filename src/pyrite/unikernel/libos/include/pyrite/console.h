/* The console: where stdout and stderr go (COM1 unless a sink is set). */
#ifndef PYRITE_CONSOLE_H
#define PYRITE_CONSOLE_H

#include <stddef.h>

typedef void (*pyrite_console_sink)(const char *data, size_t n);

/* Send stdout/stderr bytes to `sink` instead of COM1 (NULL: back to COM1). Buffered
 * stdio is flushed first, so bytes written before the call keep their destination. */
void pyrite_console_set_sink(pyrite_console_sink sink);
/* Write to the console: the sink when one is set, else COM1. */
void pyrite_console_write(const char *data, size_t n);

#endif
