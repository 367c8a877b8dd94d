/* Constants shared by the assembly and C parts of the library OS. */
#ifndef PYRITE_ASM_H
#define PYRITE_ASM_H

/* Boot protocols (first argument of pyrite_start). */
#define BOOT_PVH        1
#define BOOT_LINUX64    2
#define BOOT_MULTIBOOT  3

/* GDT selectors; user selectors carry RPL 3. */
#define SEL_KCODE       0x08
#define SEL_KDATA       0x10
#define SEL_UDATA       (0x18 | 3)
#define SEL_UCODE       (0x20 | 3)
#define SEL_TSS         0x28

/* 64-bit TSS: rsp0 at 4, ist1 at 0x24, I/O map base at 0x66; 0x68 bytes, then the bitmap. */
#define TSS_RSP0        0x04
#define TSS_IST1        0x24
#define TSS_IOMAP_BASE  0x66
#define TSS_SIZE        0x68
#define TSS_LIMIT       (TSS_SIZE + 8192)   /* bitmap for ports 0..0xffff plus the 0xff byte */

/* Page-table entry bits: present, writable, user (and page size for leaves). */
#define PTE_TABLE       0x07
#define PTE_LARGE       0x87
#define PTE_UNCACHED    0x18                /* PWT | PCD */

#define CR0_PE          0x00000001
#define CR0_MP          0x00000002          /* wait/fwait honour TS */
#define CR0_EM          0x00000004          /* x87 emulation: must be off */
#define CR0_TS          0x00000008          /* task switched: #NM on FP use */
#define CR0_PG          0x80000000
#define CR4_PAE         0x00000020
#define CR4_OSFXSR      0x00000200          /* SSE and fxsave/fxrstor enabled */
#define CR4_OSXMMEXCPT  0x00000400          /* SIMD exceptions as #XM */
#define CR4_OSXSAVE     0x00040000          /* XCR0 (xgetbv/xsetbv) enabled */
#define XCR0_X87_SSE    0x3
#define XCR0_AVX        0x4
#define CR4_SMEP        0x00100000
#define CR4_SMAP        0x00200000
#define MSR_EFER        0xC0000080
#define EFER_LME        0x00000100
#define RFLAGS_RESERVED 0x002
#define RFLAGS_IF       0x200

/* Stacks (libos.lds.in places them, each above a guard page); the application's stack size
 * is PYRITE_STACK_SIZE, given by the build. */
#define PAGE_SIZE        4096
#define KSTACK_SIZE      16384              /* TSS.RSP0: exceptions and interrupts */
#define DFSTACK_SIZE     4096               /* IST1: #DF and NMI */
#define CRASH_STACK_SIZE 65536              /* start-up code, then the crash report */

/* Interrupt vectors: exceptions 0..31, IOAPIC pins from 0x20, the LAPIC timer after them,
 * spurious at 0xFF. */
#define VEC_IRQ_BASE    0x20
#define NR_IRQ_VECTORS  24
#define VEC_TIMER       (VEC_IRQ_BASE + NR_IRQ_VECTORS)
#define VEC_SPURIOUS    0xFF

#endif
