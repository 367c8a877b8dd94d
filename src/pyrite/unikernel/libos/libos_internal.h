/* Interfaces between parts of the library OS that applications do not use. */
#ifndef PYRITE_LIBOS_INTERNAL_H
#define PYRITE_LIBOS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <pyrite/arch.h>
#include <pyrite/boot.h>
#include <pyrite/clock.h>           /* pyrite_monotonic_ns, pyrite_tsc_hz, pyrite_sleep_until */

void pyrite_idt_init(void);
void pyrite_pic_disable(void);
void pyrite_paging_init_low(void);
void pyrite_paging_map_high(const struct pyrite_bootinfo *bi);
void pyrite_memory_init(const struct pyrite_bootinfo *bi);
size_t pyrite_memory_free(void);            /* bytes the page allocator has left */
size_t pyrite_stack_size(void);             /* the application's stack (RLIMIT_STACK), arch/stacks.c */
void pyrite_clock_init(void);
void pyrite_boot_random(uint8_t out[16]);   /* AT_RANDOM's bytes */
void pyrite_irq_dispatch(struct pyrite_trap_frame *frame);
__attribute__((noreturn)) void pyrite_crash(struct pyrite_trap_frame *frame);
/* Console output formatted by hand (arch/crash.c): no C library state, no floating point. */
void pyrite_put(const char *s);
void pyrite_put_hex(uint64_t v, int digits);
void pyrite_put_dec(uint64_t v);
/* Local APIC registers (xAPIC MMIO, arch/irq.c); enable: 0, or -1 when there is no LAPIC. */
int pyrite_lapic_enable(void);
uint32_t pyrite_lapic_read(unsigned reg);
void pyrite_lapic_write(unsigned reg, uint32_t value);

/* Idle (arch/timer.c). pyrite_sleep_until (<pyrite/clock.h>): return at
 * pyrite_monotonic_ns() >= monotonic_ns, the vCPU halted meanwhile (a LAPIC timer interrupt ends the halt; spins only for the last
 * PYRITE_SPIN_NS). pyrite_idle_until: halt until an interrupt that came after
 * pyrite_irq_count read `seen`, or until `deadline_ns` (PYRITE_NO_DEADLINE: no timer);
 * it may return early (spurious wake-ups, the last PYRITE_SPIN_NS), so callers loop. */
#define PYRITE_NO_DEADLINE UINT64_MAX
#define PYRITE_SPIN_NS 20000
void pyrite_idle_until(uint32_t seen, uint64_t deadline_ns);

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
