/*
 * Boot entries of the pyrite library OS.
 *
 * Three ways in, one way on:
 *   pvh_entry32        PVH (XEN_ELFNOTE_PHYS32_ENTRY): 32-bit protected mode, paging off,
 *                      ebx = hvm_start_info.
 *   multiboot_entry32  Multiboot 1 (PYRITE_MULTIBOOT builds): 32-bit protected mode,
 *                      eax = 0x2BADB002, ebx = multiboot_info.
 *   linux64_entry      the ELF e_entry of default builds: Linux 64-bit boot protocol,
 *                      long mode with the first GiB identity mapped, rsi = boot_params.
 * All of them install our page tables, GDT, TSS and IDT and then drop to CPL 3
 * (CPL 0 for PYRITE_RING0 builds) in pyrite_start(protocol, info).
 *
 * Guest CPL 0 may be emulated at ~500 ns per instruction (see DESIGN.md), so this
 * file does only what CPL 3 cannot: everything else happens in C at CPL 3.
 */
#include "pyrite/asm.h"

/* ---------------------------------------------------------------- headers */

#ifdef PYRITE_MULTIBOOT
#define MB_MAGIC  0x1BADB002
/* bit 0: page-align modules, bit 1: memory map wanted, bit 16: a.out address fields valid
 * (QEMU loads only ELF32 multiboot images unless the address fields are given). */
#define MB_FLAGS  0x00010003
        .section .boot.header, "a"
        .balign 4
multiboot_header:
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)
        .long multiboot_header          /* header_addr */
        .long __image_start             /* load_addr: file offset 0 */
        .long __load_end                /* load_end_addr */
        .long __image_end               /* bss_end_addr: past the stacks, where loaders put modules */
        .long multiboot_entry32         /* entry_addr */
#endif

#ifdef PYRITE_PVH_NOTE
        .section .note.pvh, "a", @note
        .balign 4
        .long 4                         /* namesz: "Xen\0" */
        .long 4                         /* descsz */
        .long 18                        /* XEN_ELFNOTE_PHYS32_ENTRY */
        .asciz "Xen"
        .long pvh_entry32
#endif

/* -------------------------------------------------------------- 32-bit entries */

/* Boot page tables. With 1 GiB pages (CPUID pdpe1gb) they map the first 4 GiB
 * (4 stores; GiB 3, the MMIO gap, uncached). Without, they map only [0, __image_end)
 * with 2 MiB pages: each iteration costs emulated CPL-0 time, so arch/paging.c maps
 * the rest from CPL 3. Every entry is user-accessible: the application runs at CPL 3
 * in the one address space. Works in .code32 and .code64 (32-bit registers only);
 * clobbers eax, ebx, ecx, edx. */
.macro BUILD_PAGE_TABLES
        movl    $(pyrite_pdpt + PTE_TABLE), pyrite_pml4
        movl    $0x80000001, %eax
        cpuid
        btl     $26, %edx               /* pdpe1gb */
        jnc     1f
        movl    $(0x00000000 + PTE_LARGE), pyrite_pdpt
        movl    $(0x40000000 + PTE_LARGE), pyrite_pdpt + 8
        movl    $(0x80000000 + PTE_LARGE), pyrite_pdpt + 16
        movl    $(0xC0000000 + PTE_LARGE + PTE_UNCACHED), pyrite_pdpt + 24
        jmp     3f
1:      movl    $(pyrite_pd + PTE_TABLE), pyrite_pdpt
        movl    $pyrite_pd, %ebx
        movl    $PTE_LARGE, %eax
2:      movl    %eax, (%ebx)
        addl    $8, %ebx
        addl    $0x200000, %eax
        cmpl    $__image_end, %eax      /* __image_end is 4 KiB aligned: flags do not matter */
        jb      2b
3:
.endm

/* Floating point as the CPU requires it (Intel SDM vol. 3, 13.1): CR0.EM and TS off, MP on;
 * CR4.OSFXSR and OSXMMEXCPT on, so SSE instructions do not #UD; with XSAVE, CR4.OSXSAVE on
 * and XCR0 = x87 | SSE (| AVX when the CPU has it), so AVX code runs too. x87 and MXCSR
 * control words are set by boot/start.c. Works in .code32 and .code64 (`reg` is the
 * 32- or 64-bit accumulator for the control-register moves); clobbers eax..edx. */
.macro ENABLE_FPU reg
        mov     %cr0, \reg
        andl    $~(CR0_EM | CR0_TS), %eax
        orl     $CR0_MP, %eax
        mov     \reg, %cr0
        mov     %cr4, \reg
        orl     $(CR4_OSFXSR | CR4_OSXMMEXCPT), %eax
        mov     \reg, %cr4
        movl    $1, %eax
        cpuid
        btl     $26, %ecx               /* XSAVE */
        jnc     1f
        mov     %cr4, \reg
        orl     $CR4_OSXSAVE, %eax
        mov     \reg, %cr4
        movl    $XCR0_X87_SSE, %eax
        btl     $28, %ecx               /* AVX */
        jnc     2f
        orl     $XCR0_AVX, %eax
2:      xorl    %edx, %edx
        xorl    %ecx, %ecx
        xsetbv
1:
.endm

        .section .boot.text, "ax"
        .code32
        .globl  pvh_entry32
        .type   pvh_entry32, @function
pvh_entry32:
        movl    $BOOT_PVH, %edi
        movl    %ebx, %esi
        jmp     enter_long_mode32

#ifdef PYRITE_MULTIBOOT
        .globl  multiboot_entry32
        .type   multiboot_entry32, @function
multiboot_entry32:
        movl    $BOOT_MULTIBOOT, %edi
        movl    %ebx, %esi
        movl    %eax, pyrite_boot_magic
        jmp     enter_long_mode32
#endif

enter_long_mode32:
        BUILD_PAGE_TABLES
        ENABLE_FPU %eax
        movl    $pyrite_pml4, %eax
        movl    %eax, %cr3
        movl    %cr4, %eax
        andl    $~(CR4_SMEP | CR4_SMAP), %eax   /* CPL-0 handlers live in user pages */
        orl     $CR4_PAE, %eax
        movl    %eax, %cr4
        movl    $MSR_EFER, %ecx
        rdmsr
        orl     $EFER_LME, %eax
        wrmsr
        movl    %cr0, %eax
        orl     $(CR0_PG | CR0_PE), %eax
        movl    %eax, %cr0
        lgdt    pyrite_gdt_ptr
        ljmp    $SEL_KCODE, $long_mode64

/* -------------------------------------------------------------- 64-bit entries */

        .code64
        .globl  linux64_entry
        .type   linux64_entry, @function
linux64_entry:
        movl    $BOOT_LINUX64, %edi     /* rsi = boot_params already */
        BUILD_PAGE_TABLES
        ENABLE_FPU %rax
        movl    $pyrite_pml4, %eax
        movq    %rax, %cr3
        movq    %cr4, %rax
        andl    $~(CR4_SMEP | CR4_SMAP), %eax
        movq    %rax, %cr4
        lgdt    pyrite_gdt_ptr
        movl    $pyrite_kstack_top, %esp
        pushq   $SEL_KCODE
        pushq   $long_mode64
        lretq

long_mode64:
        movl    $SEL_KDATA, %eax
        movl    %eax, %ds
        movl    %eax, %es
        movl    %eax, %ss
        xorl    %eax, %eax
        movl    %eax, %fs
        movl    %eax, %gs
        movl    $pyrite_kstack_top, %esp
        /* TSS descriptor base; the limit and type are static in the GDT. */
        movl    $pyrite_tss, %eax
        movw    %ax, pyrite_gdt + SEL_TSS + 2
        shrl    $16, %eax
        movb    %al, pyrite_gdt + SEL_TSS + 4
        movb    %ah, pyrite_gdt + SEL_TSS + 7
        movq    $pyrite_kstack_top, pyrite_tss + TSS_RSP0
        movq    $pyrite_dfstack_top, pyrite_tss + TSS_IST1
        movw    $TSS_SIZE, pyrite_tss + TSS_IOMAP_BASE  /* I/O bitmap right after: all ports */
        movl    $SEL_TSS, %eax
        ltr     %ax
        lidt    pyrite_idt_ptr          /* entries are filled in by C before interrupts are on */
        /* C starts on the crash stack; pyrite_start moves to the application's stack once it
         * has checked that it lies in RAM. */
#ifdef PYRITE_RING0
        movl    $pyrite_crash_stack_top, %esp
        call    pyrite_start
#else
        pushq   $SEL_UDATA
        pushq   $(pyrite_crash_stack_top - 8) /* as after a call: rsp+8 16-byte aligned */
        pushq   $RFLAGS_RESERVED        /* IF=0: C enables interrupts when it is ready */
        pushq   $SEL_UCODE
        pushq   $pyrite_start
        iretq
#endif
        ud2

/* ------------------------------------------------------------------ tables */

        .section .data
        .balign 16
        .globl  pyrite_gdt
pyrite_gdt:
        .quad   0                       /* null */
        .quad   0x00AF9A000000FFFF      /* 0x08 kernel code, 64-bit */
        .quad   0x00CF92000000FFFF      /* 0x10 kernel data */
        .quad   0x00CFF2000000FFFF      /* 0x18 user data, DPL 3 */
        .quad   0x00AFFA000000FFFF      /* 0x20 user code, 64-bit, DPL 3 */
        .quad   0x0000890000000000 + TSS_LIMIT  /* 0x28 TSS (base filled in at boot) */
        .quad   0
pyrite_gdt_end:

        .balign 8
        .globl  pyrite_gdt_ptr
pyrite_gdt_ptr:
        .word   pyrite_gdt_end - pyrite_gdt - 1
        .quad   pyrite_gdt

        .balign 8
pyrite_idt_ptr:
        .word   256 * 16 - 1
        .quad   pyrite_idt

        .globl  pyrite_boot_magic
pyrite_boot_magic:
        .long   0

/* Memory the loaders zero for us ([p_filesz, p_memsz) of the one PT_LOAD segment). */
        .section .pyrite.bss, "aw", @nobits
        .balign 4096
        .globl  pyrite_pml4, pyrite_pdpt, pyrite_pd, pyrite_idt
pyrite_pml4:    .skip 4096
pyrite_pdpt:    .skip 4096
pyrite_pd:      .skip 4 * 4096
pyrite_idt:     .skip 256 * 16
        .balign 16
        .globl  pyrite_tss
pyrite_tss:     .skip TSS_SIZE
pyrite_iomap:   .skip 8192 + 1          /* all zero: every port open to CPL 3 */

/* The stacks are in .pyrite.stacks, laid out by libos.lds.in. */

        .section .note.GNU-stack, "", @progbits
