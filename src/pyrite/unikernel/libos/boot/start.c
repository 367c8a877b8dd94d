/* First C code: runs at CPL 3 (CPL 0 in ring-0 builds) with interrupts off. Sets up the
 * machine, then starts the C library as Linux's exec would leave a static program: one
 * vector of argv, NULL, envp, NULL and the auxiliary vector, given to musl's
 * __libc_start_main, which sets up TLS (arch_prctl), runs constructors, calls main and
 * exit()s with its value. It runs on the application's stack (arch/stacks.c); the code before
 * it on the start-up stack. */
#include <elf.h>
#include <stdint.h>
#include <string.h>
#include <pyrite/arch.h>
#include <pyrite/boot.h>
#include <pyrite/serial.h>
#include "../libos_internal.h"

#define MAX_ARGS (PYRITE_CMDLINE_MAX / 2)     /* a word and a blank each: every word fits */
#define AUX_PAIRS 16

extern char __bss_start[], __bss_end[], __image_start[];

static struct pyrite_bootinfo bootinfo;
static char cmdline_copy[PYRITE_CMDLINE_MAX];
static char cmdline_words[PYRITE_CMDLINE_MAX];
static char *env_words[MAX_ARGS + 1];
/* argv[0..argc], NULL, envp..., NULL, auxv pairs: what a Linux process finds on its stack. */
static uintptr_t start_vector[1 + MAX_ARGS + 1 + MAX_ARGS + 1 + 2 * AUX_PAIRS];
static uint8_t at_random[16];
static int app_argc;

const struct pyrite_bootinfo *pyrite_bootinfo(void) { return &bootinfo; }

int main(int argc, char **argv, char **envp);
int __libc_start_main(int (*main)(int, char **, char **), int argc, char **argv,
                      void (*init)(void), void (*fini)(void), void (*ldso)(void));

/* x87 control as Linux starts a process: double-extended precision, round to nearest, all
 * exceptions masked (FCW 0x37F; the CPU's power-up value is 0x40). MXCSR's power-up value
 * is already Linux's 0x1F80 (and KVM's emulation of CPL 0 has no ldmxcsr). */
static void fpu_init(void)
{
    __asm__ volatile("fninit");
}

/* __libc_start_main calls exit(main(...)). */
static void run_main(void) { __libc_start_main(main, app_argc, (char **)start_vector, 0, 0, 0); }

static const char *command_line(void)
{
    const char *line = bootinfo.cmdline;
    if (bootinfo.protocol == BOOT_MULTIBOOT) {
        /* Multiboot loaders (GRUB, QEMU) put the kernel's path first: argv[0]'s place. */
        while (*line == ' ')
            line++;
        while (*line && *line != ' ')
            line++;
    }
    line += strspn(line, " \t");
    if (!pyrite_cmdline_has_words(line))
        line = pyrite_default_cmdline;      /* nothing but the VMM's virtio_mmio.device= words */
    return line;
}

static uintptr_t hwcap(void)
{
    uint32_t r[4];
    cpuid(1, 0, r);
    return r[3];
}

/* Fill start_vector; returns argc. */
static int build_start_vector(void)
{
    strncpy(cmdline_words, command_line(), sizeof cmdline_words - 1);
    char **argv = (char **)start_vector;
    argv[0] = (char *)pyrite_app_name;
    int argc = 1 + pyrite_split_cmdline(cmdline_words, argv + 1, MAX_ARGS - 1, env_words, MAX_ARGS);
    uintptr_t *p = start_vector + argc + 1;     /* argv[argc] is NULL */
    for (char **e = env_words; *e; e++)
        *p++ = (uintptr_t)*e;
    *p++ = 0;
    const Elf64_Ehdr *ehdr = (const Elf64_Ehdr *)__image_start;   /* loaded with the image */
    pyrite_boot_random(at_random);
    const uintptr_t aux[][2] = {
        {AT_PHDR, (uintptr_t)__image_start + ehdr->e_phoff}, {AT_PHENT, ehdr->e_phentsize},
        {AT_PHNUM, ehdr->e_phnum}, {AT_PAGESZ, 4096}, {AT_ENTRY, ehdr->e_entry},
        {AT_UID, 0}, {AT_EUID, 0}, {AT_GID, 0}, {AT_EGID, 0}, {AT_SECURE, 0},
        {AT_HWCAP, hwcap()}, {AT_CLKTCK, 100}, {AT_RANDOM, (uintptr_t)at_random},
        {AT_EXECFN, (uintptr_t)pyrite_app_name}, {AT_NULL, 0},
    };
    memcpy(p, aux, sizeof aux);
    return argc;
}

__attribute__((noreturn, used)) void pyrite_start(uint64_t protocol, uint64_t info)
{
    fpu_init();
    /* The loaders zero the bss; zero it again so a reused memory image starts clean. */
    memset(__bss_start, 0, (size_t)(__bss_end - __bss_start));
    pyrite_idt_init();
    pyrite_paging_init_low();       /* boot structures may lie anywhere below 4 GiB */
    pyrite_pic_disable();
    serial_init();
    pyrite_bootinfo_parse(&bootinfo, (int)protocol, info, cmdline_copy, sizeof cmdline_copy);
    pyrite_paging_map_high(&bootinfo);
    pyrite_memory_init(&bootinfo);
    pyrite_clock_init();
    irq_enable();

    app_argc = build_start_vector();
    pyrite_boot_timer_signal();
    pyrite_run_on_app_stack(run_main);
}
