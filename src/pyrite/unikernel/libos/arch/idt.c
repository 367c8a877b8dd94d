/* IDT entries and the legacy PIC: filled in from CPL 3 (the tables are user pages). */
#include <stdint.h>
#include <pyrite/arch.h>
#include "../libos_internal.h"

struct idt_gate {
    uint16_t offset_low, selector;
    uint8_t ist, type_attr;
    uint16_t offset_mid;
    uint32_t offset_high, zero;
};

extern struct idt_gate pyrite_idt[256];
extern const uint64_t pyrite_trap_stubs[32 + NR_IRQ_VECTORS + 2];

#define GATE_INTERRUPT_DPL0 0x8E    /* present, DPL 0: `int n` from CPL 3 is a #GP */
#define VEC_DOUBLE_FAULT    8
#define VEC_NMI             2

static void set_gate(unsigned vector, uint64_t handler, uint8_t ist)
{
    pyrite_idt[vector] = (struct idt_gate){
        .offset_low = (uint16_t)handler,
        .selector = SEL_KCODE,
        .ist = ist,
        .type_attr = GATE_INTERRUPT_DPL0,
        .offset_mid = (uint16_t)(handler >> 16),
        .offset_high = (uint32_t)(handler >> 32),
    };
}

void pyrite_idt_init(void)
{
    for (unsigned v = 0; v < 32; v++)
        set_gate(v, pyrite_trap_stubs[v], (v == VEC_DOUBLE_FAULT || v == VEC_NMI) ? 1 : 0);
    for (unsigned i = 0; i < NR_IRQ_VECTORS; i++)
        set_gate(VEC_IRQ_BASE + i, pyrite_trap_stubs[32 + i], 0);
    set_gate(VEC_TIMER, pyrite_trap_stubs[32 + NR_IRQ_VECTORS], 0);
    set_gate(VEC_SPURIOUS, pyrite_trap_stubs[32 + NR_IRQ_VECTORS + 1], 0);
}

/* Remap the 8259s away from the exception vectors and mask every line: interrupts
 * come through the IOAPIC. */
void pyrite_pic_disable(void)
{
    static const uint8_t init[][2] = {
        {0x20, 0x11}, {0xA0, 0x11},     /* ICW1: edge, cascade, ICW4 follows */
        {0x21, 0xF0}, {0xA1, 0xF8},     /* ICW2: vector bases (unused: all masked) */
        {0x21, 0x04}, {0xA1, 0x02},     /* ICW3: slave on line 2 */
        {0x21, 0x01}, {0xA1, 0x01},     /* ICW4: 8086 mode */
        {0x21, 0xFF}, {0xA1, 0xFF},     /* OCW1: mask all */
    };
    for (unsigned i = 0; i < sizeof init / sizeof init[0]; i++)
        outb(init[i][0], init[i][1]);
}
