/* Boot protocol structures -> struct pyrite_bootinfo. Memory is identity mapped. */
#include <stdint.h>
#include <string.h>
#include <pyrite/boot.h>

#define PVH_MAGIC       0x336ec578
#define MULTIBOOT_MAGIC 0x2BADB002

/* Xen's hvm_start_info (xen/include/public/arch-x86/hvm/start_info.h). */
struct hvm_start_info {
    uint32_t magic, version, flags, nr_modules;
    uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr;
    uint64_t memmap_paddr;              /* version >= 1 */
    uint32_t memmap_entries, reserved;
};
struct hvm_modlist_entry { uint64_t paddr, size, cmdline_paddr, reserved; };
struct hvm_memmap_table_entry { uint64_t addr, size; uint32_t type, reserved; };

/* Linux boot_params (zero page) offsets, Documentation/arch/x86/zero-page.rst. */
#define ZP_ACPI_RSDP_ADDR     0x070
#define ZP_EXT_RAMDISK_IMAGE  0x0c0
#define ZP_EXT_RAMDISK_SIZE   0x0c4
#define ZP_EXT_CMD_LINE_PTR   0x0c8
#define ZP_E820_ENTRIES       0x1e8
#define ZP_RAMDISK_IMAGE      0x218
#define ZP_RAMDISK_SIZE       0x21c
#define ZP_CMD_LINE_PTR       0x228
#define ZP_E820_TABLE         0x2d0
#define ZP_E820_MAX           128

/* Multiboot 1 info. */
struct multiboot_info {
    uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
    uint32_t syms[4], mmap_length, mmap_addr;
};
struct multiboot_module { uint32_t mod_start, mod_end, string, reserved; };
#define MB_INFO_MEMORY  (1u << 0)
#define MB_INFO_CMDLINE (1u << 2)
#define MB_INFO_MODS    (1u << 3)
#define MB_INFO_MMAP    (1u << 6)

static void add_region(struct pyrite_bootinfo *bi, uint64_t addr, uint64_t size, uint32_t type)
{
    if (bi->nr_mem < PYRITE_MAX_MEM_REGIONS)
        bi->mem[bi->nr_mem++] = (struct pyrite_mem_region){addr, size, type};
}

static void add_module(struct pyrite_bootinfo *bi, uint64_t addr, uint64_t size)
{
    if (bi->nr_modules < PYRITE_MAX_MODULES)
        bi->modules[bi->nr_modules++] = (struct pyrite_module){addr, size};
}

static void copy_cmdline(char *buf, size_t size, uint64_t addr)
{
    buf[0] = 0;
    if (addr)
        strncpy(buf, (const char *)(uintptr_t)addr, size - 1);
    buf[size - 1] = 0;
}

static void parse_pvh(struct pyrite_bootinfo *bi, const struct hvm_start_info *si, char *buf, size_t size)
{
    if (si->magic != PVH_MAGIC)
        return;
    copy_cmdline(buf, size, si->cmdline_paddr);
    bi->rsdp = si->rsdp_paddr;
    const struct hvm_modlist_entry *mods = (const void *)(uintptr_t)si->modlist_paddr;
    for (uint32_t i = 0; mods && i < si->nr_modules; i++)
        add_module(bi, mods[i].paddr, mods[i].size);
    if (si->version >= 1 && si->memmap_paddr) {
        const struct hvm_memmap_table_entry *map = (const void *)(uintptr_t)si->memmap_paddr;
        for (uint32_t i = 0; i < si->memmap_entries; i++)
            add_region(bi, map[i].addr, map[i].size, map[i].type);
    }
}

static uint32_t zp32(const uint8_t *zp, unsigned off) { uint32_t v; memcpy(&v, zp + off, 4); return v; }

static void parse_linux64(struct pyrite_bootinfo *bi, const uint8_t *zp, char *buf, size_t size)
{
    copy_cmdline(buf, size, zp32(zp, ZP_CMD_LINE_PTR) | (uint64_t)zp32(zp, ZP_EXT_CMD_LINE_PTR) << 32);
    memcpy(&bi->rsdp, zp + ZP_ACPI_RSDP_ADDR, 8);
    unsigned n = zp[ZP_E820_ENTRIES];
    for (unsigned i = 0; i < n && i < ZP_E820_MAX; i++) {
        const uint8_t *e = zp + ZP_E820_TABLE + 20 * i;    /* packed: u64 addr, u64 size, u32 type */
        uint64_t addr, len;
        uint32_t type;
        memcpy(&addr, e, 8);
        memcpy(&len, e + 8, 8);
        memcpy(&type, e + 16, 4);
        add_region(bi, addr, len, type);
    }
    uint64_t rd_addr = zp32(zp, ZP_RAMDISK_IMAGE) | (uint64_t)zp32(zp, ZP_EXT_RAMDISK_IMAGE) << 32;
    uint64_t rd_size = zp32(zp, ZP_RAMDISK_SIZE) | (uint64_t)zp32(zp, ZP_EXT_RAMDISK_SIZE) << 32;
    if (rd_size)
        add_module(bi, rd_addr, rd_size);
}

static void parse_multiboot(struct pyrite_bootinfo *bi, const struct multiboot_info *mb, char *buf, size_t size)
{
    extern uint32_t pyrite_boot_magic;
    if (pyrite_boot_magic != MULTIBOOT_MAGIC)
        return;
    if (mb->flags & MB_INFO_CMDLINE)
        copy_cmdline(buf, size, mb->cmdline);
    if (mb->flags & MB_INFO_MODS) {
        const struct multiboot_module *mods = (const void *)(uintptr_t)mb->mods_addr;
        for (uint32_t i = 0; i < mb->mods_count; i++)
            add_module(bi, mods[i].mod_start, mods[i].mod_end - mods[i].mod_start);
    }
    if (mb->flags & MB_INFO_MMAP) {
        /* Entries: u32 size (not counting itself), u64 addr, u64 len, u32 type. */
        uintptr_t p = mb->mmap_addr, end = p + mb->mmap_length;
        while (p + 4 <= end) {
            uint32_t entry_size;
            uint64_t addr, len;
            uint32_t type;
            memcpy(&entry_size, (void *)p, 4);
            memcpy(&addr, (void *)(p + 4), 8);
            memcpy(&len, (void *)(p + 12), 8);
            memcpy(&type, (void *)(p + 20), 4);
            add_region(bi, addr, len, type);
            p += entry_size + 4;
        }
    } else if (mb->flags & MB_INFO_MEMORY) {
        add_region(bi, 0, (uint64_t)mb->mem_lower << 10, PYRITE_MEM_RAM);
        add_region(bi, 1 << 20, (uint64_t)mb->mem_upper << 10, PYRITE_MEM_RAM);
    }
}

void pyrite_bootinfo_parse(struct pyrite_bootinfo *bi, int protocol, uint64_t info,
                           char *cmdline_buf, size_t cmdline_buf_size)
{
    static const char *const names[] = {"unknown", "pvh", "linux64", "multiboot"};
    bi->protocol = protocol;
    bi->protocol_name = names[(protocol >= BOOT_PVH && protocol <= BOOT_MULTIBOOT) ? protocol : 0];
    bi->info_addr = info;
    cmdline_buf[0] = 0;
    bi->cmdline = cmdline_buf;
    if (!info)
        return;
    switch (protocol) {
    case BOOT_PVH:
        parse_pvh(bi, (const void *)(uintptr_t)info, cmdline_buf, cmdline_buf_size);
        break;
    case BOOT_LINUX64:
        parse_linux64(bi, (const void *)(uintptr_t)info, cmdline_buf, cmdline_buf_size);
        break;
    case BOOT_MULTIBOOT:
        parse_multiboot(bi, (const void *)(uintptr_t)info, cmdline_buf, cmdline_buf_size);
        break;
    }
}
