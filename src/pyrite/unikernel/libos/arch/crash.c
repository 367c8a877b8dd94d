/* Crash report for unexpected exceptions; runs at CPL 3 on its own stack
 * (CPL 0 in ring-0 builds), entered from arch/traps.S. */
#include <stdint.h>
#include <stdio.h>
#include <pyrite/arch.h>
#include <pyrite/boot.h>
#include <pyrite/power.h>
#include "../libos_internal.h"

uint64_t pyrite_fault_cr2;
/* The faulting RIP, where the VMM can find it (pyrite reads it by this symbol's address and
 * names the function in its own message). */
volatile uint64_t pyrite_crash_rip;

static const char *const exception_names[32] = {
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
    "#BR bound range", "#UD invalid opcode", "#NM device not available",
    "#DF double fault", "coprocessor segment overrun", "#TS invalid TSS",
    "#NP segment not present", "#SS stack fault", "#GP general protection",
    "#PF page fault", "reserved 15", "#MF x87 error", "#AC alignment check",
    "#MC machine check", "#XM SIMD error", "#VE virtualization", "#CP control protection",
};

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
        pyrite_poweroff(status);             /* crashed while reporting a crash */
    pyrite_crash_rip = f.rip;
    pyrite_stdio_flush();

    const char *name = vector < 32 && exception_names[vector] ? exception_names[vector] : "unexpected interrupt";
    printf("\npyrite: crash: %s (vector %u) error=%#lx at rip=0x%016lx cpl=%lu\n",
           name, vector, f.error, f.rip, f.cs & 3);
    if (overflowed)
        printf("  stack overflow: %s [0x%016lx, 0x%016lx) (%lu KiB) ran into its guard page at 0x%016lx\n",
               overflowed->name, (unsigned long)overflowed->bottom, (unsigned long)overflowed->top,
               (unsigned long)(overflowed->top - overflowed->bottom) >> 10, pyrite_fault_cr2);
    if (vector == 14)
        printf("  cr2=0x%016lx (%s %s, %s)\n", pyrite_fault_cr2,
               f.error & 2 ? "write" : "read", f.error & 1 ? "protection" : "not present",
               f.error & 16 ? "instruction fetch" : (f.error & 4 ? "user" : "kernel"));
    printf("  rax=%016lx rbx=%016lx rcx=%016lx rdx=%016lx\n", f.rax, f.rbx, f.rcx, f.rdx);
    printf("  rsi=%016lx rdi=%016lx rbp=%016lx rsp=%016lx\n", f.rsi, f.rdi, f.rbp, f.rsp);
    printf("  r8 =%016lx r9 =%016lx r10=%016lx r11=%016lx\n", f.r8, f.r9, f.r10, f.r11);
    printf("  r12=%016lx r13=%016lx r14=%016lx r15=%016lx\n", f.r12, f.r13, f.r14, f.r15);
    printf("  rflags=%016lx cs=%04lx ss=%04lx\n", f.rflags, f.cs, f.ss);
    printf("  stack:\n");
    for (unsigned i = 0; i < 8; i++) {
        uint64_t addr = f.rsp + 8 * i;
        if (!stack_readable(addr, 8))
            break;
        printf("    %016lx: %016lx\n", addr, *(const uint64_t *)(uintptr_t)addr);
    }
    printf("pyrite: exit status %d\n", status);
    pyrite_poweroff(status);
}
