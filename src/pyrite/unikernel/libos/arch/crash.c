/* Crash report for unexpected exceptions; runs at CPL 3 on its own stack
 * (CPL 0 in ring-0 builds), entered from arch/traps.S. Formats by hand and writes to the
 * serial port directly: no C library state is trusted, no floating point is touched. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <pyrite/arch.h>
#include <pyrite/boot.h>
#include <pyrite/power.h>
#include <pyrite/serial.h>
#include "../libos_internal.h"

uint64_t pyrite_fault_cr2;
/* The faulting RIP, where the VMM can find it (pyrite reads it by this symbol's address and
 * names the function in its own message). */
volatile uint64_t pyrite_crash_rip;

/* Flush what the program wrote to stdout, if it has stdio (weak: no stdio, nothing to flush). */
extern int fflush(FILE *) __attribute__((weak));

static const char *const exception_names[32] = {
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
    "#BR bound range", "#UD invalid opcode", "#NM device not available",
    "#DF double fault", "coprocessor segment overrun", "#TS invalid TSS",
    "#NP segment not present", "#SS stack fault", "#GP general protection",
    "#PF page fault", "reserved 15", "#MF x87 error", "#AC alignment check",
    "#MC machine check", "#XM SIMD error", "#VE virtualization", "#CP control protection",
};

void pyrite_put(const char *s) { serial_write(s, strlen(s)); }

void pyrite_put_hex(uint64_t v, int digits)
{
    char buf[16];
    for (int i = digits - 1; i >= 0; i--, v >>= 4)
        buf[i] = "0123456789abcdef"[v & 15];
    serial_write(buf, (size_t)digits);
}

void pyrite_put_dec(uint64_t v)
{
    char buf[24], *p = buf + sizeof buf;
    do
        *--p = (char)('0' + v % 10);
    while (v /= 10);
    serial_write(p, (size_t)(buf + sizeof buf - p));
}

static int stack_readable(uint64_t addr, uint64_t n)
{
    if (pyrite_stack_guarded_at(addr) || pyrite_stack_guarded_at(addr + n - 1))
        return 0;
    const struct pyrite_bootinfo *bi = pyrite_bootinfo();
    for (unsigned i = 0; i < bi->nr_mem; i++) {
        const struct pyrite_mem_region *r = &bi->mem[i];
        if (r->type == PYRITE_MEM_RAM && addr >= r->addr && addr + n <= r->addr + r->size)
            return 1;
    }
    extern char __image_start[], __image_end[];
    return addr >= (uintptr_t)__image_start && addr + n <= (uintptr_t)__image_end;
}

__attribute__((noreturn)) void pyrite_crash(struct pyrite_trap_frame *frame)
{
    static int crashing;
    struct pyrite_trap_frame f = *frame;     /* the next trap reuses the kernel stack */
    unsigned vector = (unsigned)f.vector;
    int status = PYRITE_CRASH_STATUS_BASE + (int)(vector & 0x7F);
    /* A page fault in a guard page, or the #DF it becomes when it hits a CPL-0 stack (the
     * CPU cannot push the #PF's frame there): a stack overflow, a #PF's status either way. */
    const struct pyrite_stack *overflowed =
        vector == 14 || vector == 8 ? pyrite_stack_guarded_at(pyrite_fault_cr2) : NULL;
    if (overflowed)
        status = PYRITE_CRASH_STATUS_BASE + 14;
    if (crashing++)
        pyrite_poweroff_now(status);             /* crashed while reporting a crash */
    pyrite_crash_rip = f.rip;
    if (fflush && f.rip)
        fflush(NULL);

    const char *name = vector < 32 && exception_names[vector] ? exception_names[vector] : "unexpected interrupt";
    pyrite_put("\npyrite: crash: ");
    pyrite_put(name);
    pyrite_put(" (vector ");
    pyrite_put_dec(vector);
    pyrite_put(") error=0x");
    int digits = 1;
    while (digits < 16 && (f.error >> (4 * digits)))
        digits++;
    pyrite_put_hex(f.error, digits);
    pyrite_put(" at rip=0x");
    pyrite_put_hex(f.rip, 16);
    pyrite_put(" cpl=");
    pyrite_put_dec(f.cs & 3);
    pyrite_put("\n");
    if (overflowed) {
        pyrite_put("  stack overflow: ");
        pyrite_put(overflowed->name);
        pyrite_put(" [0x");
        pyrite_put_hex(overflowed->bottom, 16);
        pyrite_put(", 0x");
        pyrite_put_hex(overflowed->top, 16);
        pyrite_put(") (");
        pyrite_put_dec((overflowed->top - overflowed->bottom) >> 10);
        pyrite_put(" KiB) ran into its guard page at 0x");
        pyrite_put_hex(pyrite_fault_cr2, 16);
        pyrite_put("\n");
    }
    if (vector == 14) {
        pyrite_put("  cr2=0x");
        pyrite_put_hex(pyrite_fault_cr2, 16);
        pyrite_put(f.error & 2 ? " (write " : " (read ");
        pyrite_put(f.error & 1 ? "protection, " : "not present, ");
        pyrite_put(f.error & 16 ? "instruction fetch)\n" : (f.error & 4 ? "user)\n" : "kernel)\n"));
    }
    /* General registers in Linux's order, as indexes into the frame (arch.h's layout). */
    static const char names[] = "raxrbxrcxrdxrsirdirbprspr8 r9 r10r11r12r13r14r15";
    static const uint8_t slots[16] = {14, 13, 12, 11, 10, 9, 8, 20, 7, 6, 5, 4, 3, 2, 1, 0};
    for (int i = 0; i < 16; i++) {
        pyrite_put(i % 4 ? " " : "  ");
        serial_write(names + 3 * i, 3);
        pyrite_put("=");
        pyrite_put_hex(((const uint64_t *)&f)[slots[i]], 16);
        if (i % 4 == 3)
            pyrite_put("\n");
    }
    pyrite_put("  rflags=");
    pyrite_put_hex(f.rflags, 16);
    pyrite_put(" cs=");
    pyrite_put_hex(f.cs, 4);
    pyrite_put(" ss=");
    pyrite_put_hex(f.ss, 4);
    pyrite_put("\n  stack:\n");
    for (unsigned i = 0; i < 8; i++) {
        uint64_t addr = f.rsp + 8 * i;
        if (!stack_readable(addr, 8))
            break;
        pyrite_put("    ");
        pyrite_put_hex(addr, 16);
        pyrite_put(": ");
        pyrite_put_hex(*(const uint64_t *)(uintptr_t)addr, 16);
        pyrite_put("\n");
    }
    pyrite_put("pyrite: exit status ");
    pyrite_put_dec((uint64_t)status);
    pyrite_put("\n");
    pyrite_poweroff_now(status);
}
