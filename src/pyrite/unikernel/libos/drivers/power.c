/* Ending the VM: exit port, then i8042 reset, then halt. */
#include <stdint.h>
#include <pyrite/arch.h>
#include <pyrite/power.h>
#include <pyrite/boot.h>

#define I8042_COMMAND 0x64
#define I8042_RESET   0xFE
#define BOOT_TIMER_ADDR 0xC0000000u
#define BOOT_TIMER_MAGIC 123

static void (*poweroff_hook)(void);

void pyrite_set_poweroff_hook(void (*hook)(void)) { poweroff_hook = hook; }

__attribute__((noreturn)) void pyrite_poweroff(int status)
{
    void (*hook)(void) = poweroff_hook;
    poweroff_hook = NULL;               /* once, even if the hook itself ends the VM */
    if (hook)
        hook();
    pyrite_poweroff_now(status);
}

__attribute__((noreturn)) void pyrite_poweroff_now(int status)
{
    outb(PYRITE_EXIT_PORT, (uint8_t)status);   /* QEMU isa-debug-exit, pyrite */
    outb(I8042_COMMAND, I8042_RESET);          /* VMMs without an exit port (Firecracker) */
    irq_disable();
    for (;;)
        wait_for_irq(pyrite_irq_count);
}

void pyrite_boot_timer_signal(void)
{
    mmio_write8(BOOT_TIMER_ADDR, BOOT_TIMER_MAGIC);
}
