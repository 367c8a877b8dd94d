/* Reports what the boot protocol gave the guest, one fact per line:
 *   protocol=<pvh|linux64|multiboot>
 *   cmdline=<the command line as received>
 *   argc=<n>  /  argv[i]=<word>  /  env <KEY=VALUE>
 *   e820 <addr hex> <size hex> <type>
 *   initrd <addr hex> <size hex> <fnv1a-64 hex of its bytes>   (for each module)
 *   cpus=<n> source=<mptable|acpi|none>
 *   zeropage <field>=<value>   (Linux 64-bit protocol only)
 * then "bootinfo done" and exit status 0. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <pyrite/arch.h>
#include <pyrite/boot.h>

extern char **environ;

static uint64_t fnv1a64(const uint8_t *p, uint64_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    while (n--) {
        h ^= *p++;
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t zp_field(const uint8_t *zp, unsigned offset, unsigned size)
{
    uint64_t v = 0;
    memcpy(&v, zp + offset, size);
    return v;
}

static void report_zeropage(const uint8_t *zp)
{
    static const struct { const char *name; unsigned offset, size; } fields[] = {
        {"ext_ramdisk_image", 0x0c0, 4}, {"ext_ramdisk_size", 0x0c4, 4}, {"ext_cmd_line_ptr", 0x0c8, 4},
        {"e820_entries", 0x1e8, 1}, {"setup_sects", 0x1f1, 1}, {"boot_flag", 0x1fe, 2},
        {"header", 0x202, 4}, {"version", 0x206, 2}, {"type_of_loader", 0x210, 1},
        {"loadflags", 0x211, 1}, {"ramdisk_image", 0x218, 4}, {"ramdisk_size", 0x21c, 4},
        {"cmd_line_ptr", 0x228, 4}, {"kernel_alignment", 0x230, 4}, {"cmdline_size", 0x238, 4},
    };
    for (unsigned i = 0; i < sizeof fields / sizeof fields[0]; i++)
        printf("zeropage %s=%#lx\n", fields[i].name, zp_field(zp, fields[i].offset, fields[i].size));
}

int main(int argc, char **argv)
{
    const struct pyrite_bootinfo *bi = pyrite_bootinfo();
    printf("protocol=%s\n", bi->protocol_name);
    printf("cmdline=%s\n", bi->cmdline);
    printf("argc=%d\n", argc);
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    for (char **e = environ; *e; e++)
        printf("env %s\n", *e);
    for (unsigned i = 0; i < bi->nr_mem; i++)
        printf("e820 %#lx %#lx %u\n", bi->mem[i].addr, bi->mem[i].size, bi->mem[i].type);
    for (unsigned i = 0; i < bi->nr_modules; i++) {
        const struct pyrite_module *m = &bi->modules[i];
        printf("initrd %#lx %#lx %016lx\n", m->addr, m->size,
               fnv1a64((const uint8_t *)(uintptr_t)m->addr, m->size));
    }
    const char *source;
    int cpus = pyrite_cpu_count(&source);
    printf("cpus=%d source=%s\n", cpus, source);
    if (bi->protocol == BOOT_LINUX64)
        report_zeropage((const uint8_t *)(uintptr_t)bi->info_addr);
    puts("bootinfo done");
    return 0;
}
