/*
 * CPL-0 side of exceptions and interrupts.
 *
 * Every vector pushes (error code, vector) and comes to trap_common, which saves the
 * general registers as a struct pyrite_trap_frame (arch/trap.h) and then:
 *   - vectors >= 32 (interrupts): pyrite_irq_dispatch(frame) in C, then return;
 *   - #GP from CPL 3 on cli / sti / hlt / mov %rax,%cr3 / wrmsr: emulates the instruction
 *     (CPL 3 cannot execute them, and `int n` is not available on every KVM):
 *       cli, sti  clear / set IF in the saved RFLAGS;
 *       hlt       halts until the next interrupt unless pyrite_irq_count differs
 *                 from the caller's eax (no lost wake-ups: checked with IF=0, and an
 *                 interrupt taken just before the hlt returns past it);
 *       mov %rax,%cr3  loads CR3 (flushes the TLB after CPL 3 edited page tables);
 *       wrmsr       writes the MSR (used for kvmclock);
 *   - anything else is a crash: the frame goes to pyrite_crash(frame), at CPL 3 on
 *     its own stack (ring-3 builds) or directly (ring-0 builds).
 */
#include "pyrite/asm.h"

#define F_RDX    (11 * 8)
#define F_RCX    (12 * 8)
#define F_RAX    (14 * 8)
#define F_VECTOR (15 * 8)
#define F_ERROR  (16 * 8)
#define F_RIP    (17 * 8)
#define F_CS     (18 * 8)
#define F_RFLAGS (19 * 8)

        .text
        .code64

.macro STUB vec, has_error
        .balign 8
trap_stub_\vec:
        .if \has_error == 0
        pushq   $0
        .endif
        pushq   $\vec
        jmp     trap_common
.endm

/* Vectors whose exceptions push an error code. */
#define HAS_ERROR(v) ((v) == 8 || ((v) >= 10 && (v) <= 14) || (v) == 17 || (v) == 21 || (v) == 29 || (v) == 30)

        .altmacro
.macro STUBS from, to
        STUB \from, %(HAS_ERROR(\from))
        .if \to - \from
        STUBS %(\from + 1), \to
        .endif
.endm
        STUBS 0, 31
        STUBS 32, 56                    /* VEC_IRQ_BASE .. + NR_IRQ_VECTORS - 1, VEC_TIMER */
        STUB  255, 0                    /* VEC_SPURIOUS */

trap_common:
        pushq   %rax
        pushq   %rbx
        pushq   %rcx
        pushq   %rdx
        pushq   %rsi
        pushq   %rdi
        pushq   %rbp
        pushq   %r8
        pushq   %r9
        pushq   %r10
        pushq   %r11
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        movq    %rsp, %rdi
        cmpq    $32, F_VECTOR(%rsp)
        jae     trap_interrupt
        cmpq    $13, F_VECTOR(%rsp)
        jne     trap_crash
        testb   $3, F_CS(%rsp)
        jz      trap_crash
        movq    F_RIP(%rsp), %rax
        movl    (%rax), %eax
        andl    $0xFFFFFF, %eax
        cmpl    $0xD8220F, %eax         /* mov %rax, %cr3 */
        je      trap_mov_cr3
        cmpw    $0x300F, %ax            /* wrmsr */
        je      trap_wrmsr
        movzbl  %al, %eax
        cmpl    $0xF4, %eax
        je      trap_hlt
        cmpl    $0xFB, %eax
        je      trap_sti
        cmpl    $0xFA, %eax
        jne     trap_crash
        andq    $~RFLAGS_IF, F_RFLAGS(%rsp)
        jmp     trap_skip_insn
trap_sti:
        orq     $RFLAGS_IF, F_RFLAGS(%rsp)
        jmp     trap_skip_insn
trap_hlt:
        movl    F_RAX(%rsp), %eax
        cmpl    %eax, pyrite_irq_count
        jne     trap_skip_insn
        testl   $RFLAGS_IF, F_RFLAGS(%rsp)
        jz      trap_hlt_insn
        sti                             /* sti; hlt: an interrupt pending now wakes the hlt */
trap_hlt_insn:
        hlt
        cli
        jmp     trap_skip_insn
trap_wrmsr:
        movl    F_RCX(%rsp), %ecx
        movl    F_RAX(%rsp), %eax
        movl    F_RDX(%rsp), %edx
        wrmsr
        incq    F_RIP(%rsp)
        jmp     trap_skip_insn
trap_mov_cr3:
        movq    F_RAX(%rsp), %rax
        movq    %rax, %cr3
        addq    $2, F_RIP(%rsp)         /* 3 bytes with the increment below */
trap_skip_insn:
        incq    F_RIP(%rsp)
        jmp     trap_return

trap_interrupt:
        /* An interrupt taken before a wait's hlt (where the sti's one-instruction shadow is
         * not kept, as by some instruction emulators) would leave the hlt to wait for the
         * next one: it returns past the hlt instead. */
        movq    F_RIP(%rsp), %rax
        cmpq    $trap_hlt_insn, %rax
        je      1f
        cmpq    $pyrite_ring0_hlt_insn, %rax
        jne     2f
1:      incq    F_RIP(%rsp)             /* hlt is one byte */
2:      call    pyrite_irq_dispatch
trap_return:
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %r11
        popq    %r10
        popq    %r9
        popq    %r8
        popq    %rbp
        popq    %rdi
        popq    %rsi
        popq    %rdx
        popq    %rcx
        popq    %rbx
        popq    %rax
        addq    $16, %rsp
        iretq

trap_crash:
        movq    %cr2, %rax
        movq    %rax, pyrite_fault_cr2
#ifdef PYRITE_RING0
        movl    $pyrite_crash_stack_top - 8, %esp
        jmp     pyrite_crash
#else
        pushq   $SEL_UDATA
        pushq   $(pyrite_crash_stack_top - 8)
        pushq   $RFLAGS_RESERVED
        pushq   $SEL_UCODE
        pushq   $pyrite_crash
        iretq
#endif

/* Ring-0 builds' wait_for_irq (<pyrite/arch.h>): halt until an interrupt unless
 * pyrite_irq_count differs from edi. */
        .globl  pyrite_ring0_wait_for_irq
        .type   pyrite_ring0_wait_for_irq, @function
pyrite_ring0_wait_for_irq:
        cli
        cmpl    %edi, pyrite_irq_count
        jne     1f
        sti
pyrite_ring0_hlt_insn:
        hlt
        ret
1:      sti
        ret

/* Stub addresses, for C to build the IDT: 0..31, the IRQ vectors, the timer, then spurious. */
        .section .rodata
        .balign 8
        .globl  pyrite_trap_stubs
pyrite_trap_stubs:
.macro STUB_ADDRS from, to
        .quad   trap_stub_\from
        .if \to - \from
        STUB_ADDRS %(\from + 1), \to
        .endif
.endm
        STUB_ADDRS 0, 31
        STUB_ADDRS 32, 56
        .quad   trap_stub_255

        .section .note.GNU-stack, "", @progbits
