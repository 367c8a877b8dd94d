/* What the boot loader told us, whichever protocol it used. */
#ifndef PYRITE_BOOT_H
#define PYRITE_BOOT_H

#include <stdint.h>
#include <stddef.h>
#include <pyrite/asm.h>

#define PYRITE_MAX_MEM_REGIONS 128
#define PYRITE_MAX_MODULES     16
#define PYRITE_CMDLINE_MAX     4096

/* Memory types as in e820: 1 RAM, 2 reserved, 3 ACPI reclaimable, 4 ACPI NVS, 5 bad. */
#define PYRITE_MEM_RAM 1

struct pyrite_mem_region {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
};

struct pyrite_module {
    uint64_t addr;
    uint64_t size;
};

struct pyrite_bootinfo {
    int protocol;                   /* BOOT_PVH, BOOT_LINUX64, BOOT_MULTIBOOT */
    const char *protocol_name;      /* "pvh", "linux64", "multiboot" */
    uint64_t info_addr;             /* hvm_start_info, boot_params or multiboot_info */
    const char *cmdline;            /* as given ("" if none) */
    unsigned nr_mem;
    struct pyrite_mem_region mem[PYRITE_MAX_MEM_REGIONS];
    unsigned nr_modules;            /* modules[0] is the initrd */
    struct pyrite_module modules[PYRITE_MAX_MODULES];
    uint64_t rsdp;                  /* ACPI RSDP address if the loader gave one, else 0 */
};

const struct pyrite_bootinfo *pyrite_bootinfo(void);

/* Fill *bi from the protocol's structure at `info`; cmdline is copied into cmdline_buf. */
void pyrite_bootinfo_parse(struct pyrite_bootinfo *bi, int protocol, uint64_t info,
                           char *cmdline_buf, size_t cmdline_buf_size);

/* Split a command line in place into argv words and KEY=VALUE environment words
 * (see boot/args.c for the rules). Returns argc. */
int pyrite_split_cmdline(char *line, char **argv, int max_argv, char **envp, int max_envp);
/* Whether `line` has a word for the application (virtio_mmio.device= words do not count). */
int pyrite_cmdline_has_words(const char *line);
/* End of the command-line word starting at `p` (its first blank outside quotes, or its NUL). */
const char *pyrite_cmdline_word_end(const char *p);

/* End of the memory the image uses (code, data, bss and page tables it allocated):
 * RAM from here on, outside the boot modules, belongs to the heap. */
uintptr_t pyrite_image_memory_end(void);

/* Signal Firecracker's boot timer (write 123 to MMIO 0xC0000000). */
void pyrite_boot_timer_signal(void);

/* The image's name (argv[0]) and default command line, set at build time. */
extern const char *const pyrite_app_name;
extern const char *const pyrite_default_cmdline;
extern const char *const pyrite_libos_version;

#endif
