/* First C code: runs at CPL 3 (CPL 0 in ring-0 builds) with interrupts off, on the start-up
 * stack; main runs on the application's stack. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pyrite/arch.h>
#include <pyrite/boot.h>
#include <pyrite/serial.h>
#include "../libos_internal.h"

#define MAX_ARGS 128

extern char __bss_start[], __bss_end[];

static struct pyrite_bootinfo bootinfo;
static char cmdline_copy[PYRITE_CMDLINE_MAX];
static char cmdline_words[PYRITE_CMDLINE_MAX];
static char *argv_table[MAX_ARGS + 1];
static char *envp_table[MAX_ARGS + 1];
char **environ;
static int app_argc;

const struct pyrite_bootinfo *pyrite_bootinfo(void) { return &bootinfo; }

int main(int argc, char **argv, char **envp);

static void run_main(void) { exit(main(app_argc, argv_table, envp_table)); }

__attribute__((noreturn, used)) void pyrite_start(uint64_t protocol, uint64_t info)
{
    /* The loaders zero the bss; zero it again so a reused memory image starts clean. */
    memset(__bss_start, 0, (size_t)(__bss_end - __bss_start));
    pyrite_idt_init();
    pyrite_paging_init_low();       /* boot structures may lie anywhere below 4 GiB */
    pyrite_pic_disable();
    serial_init();
    pyrite_bootinfo_parse(&bootinfo, (int)protocol, info, cmdline_copy, sizeof cmdline_copy);
    pyrite_paging_map_high(&bootinfo);
    pyrite_heap_init(&bootinfo);
    pyrite_clock_init();
    irq_enable();

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
    strncpy(cmdline_words, line, sizeof cmdline_words - 1);
    argv_table[0] = (char *)pyrite_app_name;
    app_argc = 1 + pyrite_split_cmdline(cmdline_words, argv_table + 1, MAX_ARGS - 1,
                                        envp_table, MAX_ARGS);
    environ = envp_table;

    pyrite_boot_timer_signal();
    pyrite_run_on_app_stack(run_main);
}
