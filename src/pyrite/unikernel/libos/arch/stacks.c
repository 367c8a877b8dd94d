/*
 * The stacks (laid out by libos.lds.in, in no loaded segment) and their guard pages: one
 * page under each stack, made not present by arch/paging.c, so that an overflow faults
 * at once instead of writing over whatever lies below. arch/crash.c names the stack whose
 * guard page a fault hit; pyrite_start() moves to the application's stack here.
 */
#include <stdint.h>
#include <pyrite/arch.h>
#include <pyrite/boot.h>
#include <pyrite/power.h>
#include "../libos_internal.h"

extern char pyrite_kstack_bottom[], pyrite_kstack_top[], pyrite_dfstack_bottom[], pyrite_dfstack_top[];
extern char pyrite_crash_stack_bottom[], pyrite_crash_stack_top[], pyrite_ustack_bottom[], pyrite_ustack_top[];

static const struct pyrite_stack stacks[] = {
    {"the application stack", (uintptr_t)pyrite_ustack_bottom, (uintptr_t)pyrite_ustack_top},
    {"the start-up and crash stack", (uintptr_t)pyrite_crash_stack_bottom, (uintptr_t)pyrite_crash_stack_top},
    {"the CPL-0 interrupt stack (TSS.RSP0)", (uintptr_t)pyrite_kstack_bottom, (uintptr_t)pyrite_kstack_top},
    {"the CPL-0 double-fault stack (IST1)", (uintptr_t)pyrite_dfstack_bottom, (uintptr_t)pyrite_dfstack_top},
};

const struct pyrite_stack *pyrite_stack(unsigned i)
{
    return i < sizeof stacks / sizeof stacks[0] ? &stacks[i] : NULL;
}

const struct pyrite_stack *pyrite_stack_guarded_at(uintptr_t addr)
{
    for (unsigned i = 0; i < sizeof stacks / sizeof stacks[0]; i++)
        if (addr >= stacks[i].bottom - PAGE_SIZE && addr < stacks[i].bottom)
            return &stacks[i];
    return NULL;
}

size_t pyrite_stack_size(void) { return stacks[0].top - stacks[0].bottom; }

static int in_ram(uintptr_t start, uintptr_t end)
{
    const struct pyrite_bootinfo *bi = pyrite_bootinfo();
    for (unsigned i = 0; i < bi->nr_mem; i++) {
        const struct pyrite_mem_region *r = &bi->mem[i];
        if (r->type == PYRITE_MEM_RAM && start >= r->addr && end <= r->addr + r->size)
            return 1;
    }
    return 0;
}

__attribute__((noreturn)) void pyrite_run_on_app_stack(void (*fn)(void))
{
    const struct pyrite_stack *s = &stacks[0];
    if (!in_ram(s->bottom, s->top)) {
        pyrite_put("pyrite: ");
        pyrite_put(s->name);
        pyrite_put(" [0x");
        pyrite_put_hex(s->bottom, 16);
        pyrite_put(", 0x");
        pyrite_put_hex(s->top, 16);
        pyrite_put(") (");
        pyrite_put_dec((s->top - s->bottom) >> 10);
        pyrite_put(" KiB) does not fit in this VM's RAM: give the VM more memory or build the "
                   "image with a smaller --stack-size\n");
        pyrite_poweroff(PYRITE_CRASH_STATUS_BASE + 6);      /* as abort() */
    }
    /* The top is page aligned: after the call, rsp + 8 is 16-byte aligned as the ABI wants. */
    __asm__ volatile("mov %0, %%rsp\n\tcall *%1\n\tud2" : : "r"(s->top), "r"(fn) : "memory");
    __builtin_unreachable();
}
