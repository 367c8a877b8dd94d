/*
 * tiny_pvh: the smallest guest that boots by PVH and ends itself, run by
 * benchmarks/boot.py under pyrite, Firecracker and QEMU alike.
 *
 * PVH starts it in 32-bit protected mode, paging off, at CPL 0, with flat
 * segments (see the x86/HVM direct boot ABI). On our PVM hosts every CPL-0
 * instruction is emulated (~500 ns each), so the guest is kept to a few dozen.
 *
 * It prints one line on the 16550 at 0x3f8, signals the boot timer,
 * writes its status to the exit port (pyrite, QEMU isa-debug-exit) and then
 * resets through the i8042 (Firecracker has no exit port).
 */

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define SERIAL_THR 0x3f8
#define BOOT_TIMER_MMIO 0xC0000000          /* pyrite, Firecracker >= 1.13 (MMIO gap at 3 GiB) */
#define BOOT_TIMER_MMIO_FC_1_12 0xD0000000  /* Firecracker <= 1.12 (gap 768 MiB below 4 GiB) */
#define BOOT_TIMER_MAGIC 123
#define EXIT_PORT 0xf4
#define EXIT_STATUS 0
#define I8042_COMMAND 0x64
#define I8042_RESET 0xFE

	.section .note.Xen, "a"
	.balign 4
	.long 4                         /* namesz: "Xen\0" */
	.long 4                         /* descsz: a 32-bit physical address */
	.long XEN_ELFNOTE_PHYS32_ENTRY
	.asciz "Xen"
	.long pvh_start

	.text
	.code32
	.globl pvh_start
pvh_start:
	cld
	mov $message, %esi
	mov $(message_end - message), %ecx
	mov $SERIAL_THR, %dx
1:	lodsb
	outb %al, %dx                   /* the 16550 transmits at once: no need to poll LSR */
	loop 1b

	/*
	 * Paging is off, so these are physical addresses in the MMIO gap. One byte
	 * each, as Firecracker's boot timer wants; the reference binary (v1.12.1)
	 * has it at the older address. Elsewhere an unclaimed MMIO write is ignored.
	 */
	movb $BOOT_TIMER_MAGIC, BOOT_TIMER_MMIO
	movb $BOOT_TIMER_MAGIC, BOOT_TIMER_MMIO_FC_1_12

	mov $EXIT_STATUS, %al
	outb %al, $EXIT_PORT

	mov $I8042_RESET, %al
	outb %al, $I8042_COMMAND

2:	hlt
	jmp 2b

message:
	.ascii "tiny_pvh: hello\n"
message_end:
