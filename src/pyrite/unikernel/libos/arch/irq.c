/* Local APIC and IOAPIC (xAPIC MMIO), and the CPL-0 interrupt dispatcher. The LAPIC timer
 * (VEC_TIMER) has no handler: its interrupt only ends a halt (arch/timer.c). */
#include <stdint.h>
#include <pyrite/arch.h>
#include "../libos_internal.h"

#define LAPIC_BASE      0xFEE00000u
#define LAPIC_ID        0x020
#define LAPIC_VERSION   0x030
#define LAPIC_EOI       0x0B0
#define LAPIC_SVR       0x0F0
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_LINT1 0x360
#define LAPIC_SVR_ENABLE 0x100
#define LVT_MASKED      0x10000
#define LVT_NMI         0x400

#define IOAPIC_BASE     0xFEC00000u
#define IOAPIC_REGSEL   0x00
#define IOAPIC_WINDOW   0x10
#define IOAPIC_VER      0x01
#define IOAPIC_REDIR(n) (0x10 + 2 * (n))

volatile uint32_t pyrite_irq_count;
static pyrite_irq_handler irq_handlers[NR_IRQ_VECTORS];
static int lapic_ready;

void pyrite_lapic_write(unsigned reg, uint32_t v) { mmio_write32(LAPIC_BASE + reg, v); }
uint32_t pyrite_lapic_read(unsigned reg) { return mmio_read32(LAPIC_BASE + reg); }

static void ioapic_write(unsigned reg, uint32_t v)
{
    mmio_write32(IOAPIC_BASE + IOAPIC_REGSEL, reg);
    mmio_write32(IOAPIC_BASE + IOAPIC_WINDOW, v);
}

static uint32_t ioapic_read(unsigned reg)
{
    mmio_write32(IOAPIC_BASE + IOAPIC_REGSEL, reg);
    return mmio_read32(IOAPIC_BASE + IOAPIC_WINDOW);
}

int pyrite_lapic_enable(void)
{
    if (lapic_ready)
        return 0;
    if (pyrite_lapic_read(LAPIC_VERSION) == 0xFFFFFFFFu)
        return -1;                               /* nothing at the LAPIC's address */
    pyrite_lapic_write(LAPIC_LVT_LINT0, LVT_MASKED);    /* no ExtINT from the 8259 */
    pyrite_lapic_write(LAPIC_LVT_LINT1, LVT_NMI);
    pyrite_lapic_write(LAPIC_SVR, LAPIC_SVR_ENABLE | VEC_SPURIOUS);
    lapic_ready = 1;
    return 0;
}

int pyrite_irq_route(unsigned gsi, pyrite_irq_handler handler)
{
    if (gsi >= NR_IRQ_VECTORS)
        return -1;
    if (pyrite_lapic_enable() != 0)
        return -1;
    unsigned pins = ((ioapic_read(IOAPIC_VER) >> 16) & 0xFF) + 1;
    if (ioapic_read(IOAPIC_VER) == 0xFFFFFFFFu || gsi >= pins)
        return -1;                               /* no IOAPIC, or no such pin */
    irq_handlers[gsi] = handler;
    uint32_t apic_id = pyrite_lapic_read(LAPIC_ID) >> 24;
    ioapic_write(IOAPIC_REDIR(gsi) + 1, apic_id << 24);
    ioapic_write(IOAPIC_REDIR(gsi), VEC_IRQ_BASE + gsi);  /* fixed, physical, edge, high, unmasked */
    return 0;
}

void pyrite_irq_eoi(void) { pyrite_lapic_write(LAPIC_EOI, 0); }

/* CPL 0, interrupts off. Keep it short: every instruction may be emulated. */
void pyrite_irq_dispatch(struct pyrite_trap_frame *frame)
{
    pyrite_irq_count++;
    if (frame->vector == VEC_SPURIOUS)
        return;                                  /* no EOI for spurious interrupts */
    unsigned gsi = (unsigned)frame->vector - VEC_IRQ_BASE;
    if (gsi < NR_IRQ_VECTORS && irq_handlers[gsi])
        irq_handlers[gsi]();
    pyrite_irq_eoi();
}
