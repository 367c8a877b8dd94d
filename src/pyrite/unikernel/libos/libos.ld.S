/*
 * Linker script of pyrite images (run through cpp by build.py).
 * One PT_LOAD segment that starts with the ELF headers themselves at 1 MiB, so file
 * offset N is physical address 1 MiB + N: what the Multiboot a.out fields describe,
 * and what every ELF loader (QEMU, Firecracker, pyrite) loads. Identity mapped.
 */
OUTPUT_FORMAT("elf64-x86-64")
OUTPUT_ARCH(i386:x86-64)
ENTRY(PYRITE_ENTRY)

PHDRS
{
    image PT_LOAD FILEHDR PHDRS FLAGS(7);
#ifdef PYRITE_PVH_NOTE
    note PT_NOTE FLAGS(4);
#endif
}

SECTIONS
{
    . = 0x100000;
    __image_start = .;
    . += SIZEOF_HEADERS;
    .boot.header : { KEEP(*(.boot.header)) } :image
#ifdef PYRITE_PVH_NOTE
    .note.pvh : { KEEP(*(.note.pvh)) } :image :note
#endif
    .text : { *(.boot.text) *(.text .text.*) } :image
    .rodata : { *(.rodata .rodata.*) }
    .pyrite.info : { KEEP(*(.pyrite.info)) }
    .data : { *(.data .data.*) }
    __load_end = .;
    .bss (NOLOAD) : ALIGN(4096) {
        *(.pyrite.bss)
        __bss_start = .;
        *(.bss .bss.* COMMON)
        __bss_end = .;
    }
    . = ALIGN(4096);
    __image_end = .;
    /DISCARD/ : { *(.comment) *(.note.GNU-stack) *(.note.gnu.property) *(.note.gnu.build-id) *(.eh_frame) *(.eh_frame_hdr) }
}
