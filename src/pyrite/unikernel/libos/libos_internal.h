/* Interfaces between parts of the library OS that applications do not use. */
#ifndef PYRITE_LIBOS_INTERNAL_H
#define PYRITE_LIBOS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <pyrite/arch.h>
#include <pyrite/boot.h>

void pyrite_idt_init(void);
void pyrite_pic_disable(void);
void pyrite_paging_init_low(void);
void pyrite_paging_map_high(const struct pyrite_bootinfo *bi);
void pyrite_memory_init(const struct pyrite_bootinfo *bi);
size_t pyrite_memory_free(void);            /* bytes the page allocator has left */
size_t pyrite_stack_size(void);             /* the application's stack (RLIMIT_STACK), 0 if unknown */
void pyrite_clock_init(void);
void pyrite_boot_random(uint8_t out[16]);   /* AT_RANDOM's bytes */
void pyrite_irq_dispatch(struct pyrite_trap_frame *frame);
__attribute__((noreturn)) void pyrite_crash(struct pyrite_trap_frame *frame);
/* The ACPI table with signature `sig` (4 characters; "DSDT" through the FADT), or NULL. */
const uint8_t *pyrite_acpi_table(const char *sig);

#endif
