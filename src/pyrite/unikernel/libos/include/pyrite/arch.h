/* x86-64 primitives usable at CPL 3 (ports via the TSS I/O bitmap) and CPL 0. */
#ifndef PYRITE_ARCH_H
#define PYRITE_ARCH_H

#include <stdint.h>

static inline void outb(uint16_t port, uint8_t value) { __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port) : "memory"); }
static inline void outw(uint16_t port, uint16_t value) { __asm__ volatile("outw %0, %1" : : "a"(value), "Nd"(port) : "memory"); }
static inline void outl(uint16_t port, uint32_t value) { __asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port) : "memory"); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port) : "memory"); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port) : "memory"); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port) : "memory"); return v; }

static inline void mmio_write32(uintptr_t addr, uint32_t value) { *(volatile uint32_t *)addr = value; }
static inline uint32_t mmio_read32(uintptr_t addr) { return *(volatile uint32_t *)addr; }
static inline void mmio_write8(uintptr_t addr, uint8_t value) { *(volatile uint8_t *)addr = value; }

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

static inline void cpuid(uint32_t leaf, uint32_t subleaf, uint32_t r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(subleaf));
}

static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }

/* Interrupts seen so far (incremented at CPL 0 by every interrupt). */
extern volatile uint32_t pyrite_irq_count;

/* cli / sti / hlt: native at CPL 0; at CPL 3 they trap (#GP) and the CPL-0 handler
 * emulates them (arch/traps.S). */
static inline void irq_disable(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void irq_enable(void) { __asm__ volatile("sti" ::: "memory"); }

/* Sleep until an interrupt arrives, unless one arrived since pyrite_irq_count read `seen`. */
void pyrite_ring0_wait_for_irq(uint32_t seen);     /* arch/traps.S */
static inline void wait_for_irq(uint32_t seen)
{
#ifdef PYRITE_RING0
    pyrite_ring0_wait_for_irq(seen);
#else
    __asm__ volatile("hlt" : : "a"(seen) : "memory");
#endif
}

/* Registers saved by arch/traps.S, lowest address first. */
struct pyrite_trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error, rip, cs, rflags, rsp, ss;
};

typedef void (*pyrite_irq_handler)(void);

/* Interrupt handlers run at CPL 0 in the middle of the application, whose x87/SSE
 * registers are not saved: a handler must use general registers only. Declare it so
 * (gcc then refuses floating point in it and emits no SSE). */
#define PYRITE_IRQ_HANDLER __attribute__((target("general-regs-only")))

/* Route IOAPIC pin `gsi` (edge, active high) to the boot CPU and call `handler` at CPL 0
 * (see PYRITE_IRQ_HANDLER). */
int pyrite_irq_route(unsigned gsi, pyrite_irq_handler handler);
void pyrite_irq_eoi(void);

/* Number of processors from the MP table or the ACPI MADT; *source names which
 * ("mptable", "acpi") or is "none" when neither was found (then 1 is returned). */
int pyrite_cpu_count(const char **source);

/* Exit statuses of crashes: 128 + exception vector. */
#define PYRITE_CRASH_STATUS_BASE 128

#endif
