/* Ending the VM. */
#ifndef PYRITE_POWER_H
#define PYRITE_POWER_H

#define PYRITE_EXIT_PORT 0xF4

/* Write `status` to the exit port (QEMU isa-debug-exit, pyrite), then reset through
 * the i8042 (Firecracker), then halt. */
__attribute__((noreturn)) void pyrite_poweroff(int status);

#endif
