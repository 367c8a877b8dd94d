/* Ending the VM. */
#ifndef PYRITE_POWER_H
#define PYRITE_POWER_H

#define PYRITE_EXIT_PORT 0xF4

/* Write `status` to the exit port (QEMU isa-debug-exit, pyrite), then reset through
 * the i8042 (Firecracker), then halt. */
__attribute__((noreturn)) void pyrite_poweroff(int status);
/* The same without the hook: for the crash path, which must not run library code. */
__attribute__((noreturn)) void pyrite_poweroff_now(int status);
/* Run `hook` once before pyrite_poweroff ends the VM (the file systems write their caches
 * back to the drives). */
void pyrite_set_poweroff_hook(void (*hook)(void));

#endif
