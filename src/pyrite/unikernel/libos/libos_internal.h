/* Interfaces between parts of the library OS that applications do not use. */
#ifndef PYRITE_LIBOS_INTERNAL_H
#define PYRITE_LIBOS_INTERNAL_H

#include <pyrite/arch.h>
#include <pyrite/boot.h>

void pyrite_idt_init(void);
void pyrite_pic_disable(void);
void pyrite_paging_init_low(void);
void pyrite_paging_map_high(const struct pyrite_bootinfo *bi);
void pyrite_heap_init(const struct pyrite_bootinfo *bi);
void pyrite_clock_init(void);
void pyrite_stdio_flush(void);
void pyrite_irq_dispatch(struct pyrite_trap_frame *frame);
__attribute__((noreturn)) void pyrite_crash(struct pyrite_trap_frame *frame);
/* The stacks (arch/stacks.c): 0 the application's, then the start-up and crash stack, the
 * CPL-0 interrupt stack and the double-fault stack. Each has a guard page under `bottom`. */
struct pyrite_stack {
    const char *name;
    uintptr_t bottom, top;
};
const struct pyrite_stack *pyrite_stack(unsigned i);           /* NULL past the last */
const struct pyrite_stack *pyrite_stack_guarded_at(uintptr_t addr);    /* whose guard page holds addr */
/* Call fn on the application's stack (after checking it lies in RAM); never returns. */
__attribute__((noreturn)) void pyrite_run_on_app_stack(void (*fn)(void));
/* The ACPI table with signature `sig` (4 characters; "DSDT" through the FADT), or NULL. */
const uint8_t *pyrite_acpi_table(const char *sig);

#endif
