"""Firecracker's x86_64 guest-physical memory layout."""
from __future__ import annotations

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

MAX_VCPUS = 32                   # Firecracker's limit; the CPUID topology and MP table are sized for it

# Low memory: boot structures live below the EBDA.
GDT_START = 0x500
IDT_START = 0x520
PVH_INFO_START = 0x6000          # hvm_start_info
PVH_MODLIST_START = 0x6040       # hvm_modlist_entry[]
PVH_MEMMAP_START = 0x7000        # hvm_memmap_table_entry[] (PVH only)
ZERO_PAGE_START = 0x7000         # boot_params (Linux 64-bit protocol only)
MULTIBOOT_INFO_START = 0x6000    # multiboot_info + mmap + modules (Multiboot only)
BOOT_STACK_POINTER = 0x8FF0
PML4_START = 0x9000
PDPTE_START = 0xA000
PDE_START = 0xB000
CMDLINE_START = 0x20000
CMDLINE_MAX_SIZE = 4096
EBDA_START = 0x9FC00             # MP table lives here; RAM below it is usable
MPTABLE_START = EBDA_START
HIMEM_START = 0x100000           # kernels load at or above 1 MiB

# The 32-bit MMIO gap: [3 GiB, 4 GiB). RAM beyond it continues at 4 GiB.
MMIO_GAP_START = 3 * GiB
MMIO_GAP_SIZE = 1 * GiB
FIRST_ADDR_PAST_32BITS = 4 * GiB
BOOT_TIMER_ADDR = MMIO_GAP_START  # Firecracker's boot timer device (a guest writes 123)
VIRTIO_MMIO_START = MMIO_GAP_START + 0x1000
VIRTIO_MMIO_SIZE = 0x1000
KVM_TSS_ADDRESS = 0xFFFBD000
KVM_IDENTITY_MAP_ADDRESS = 0xFFFBC000

# Legacy devices
SERIAL_PORT = 0x3F8
SERIAL_IRQ = 4
I8042_PORT = 0x60                # data 0x60, command/status 0x64
EXIT_PORT = 0xF4                 # QEMU isa-debug-exit compatible port


def ram_regions(mem_size: int) -> list[tuple[int, int]]:
    """(gpa, size) of guest RAM: below the MMIO gap, then from 4 GiB on."""
    if mem_size <= 0:
        raise ValueError("memory size must be positive")
    if mem_size <= MMIO_GAP_START:
        return [(0, mem_size)]
    return [(0, MMIO_GAP_START), (FIRST_ADDR_PAST_32BITS, mem_size - MMIO_GAP_START)]


def e820_map(mem_size: int) -> list[tuple[int, int, int]]:
    """(addr, size, type) entries as Firecracker reports them; type 1 = RAM, 2 = reserved."""
    entries = [(0, EBDA_START, 1)]
    for gpa, size in ram_regions(mem_size):
        start = max(gpa, HIMEM_START)
        if gpa + size > start:
            entries.append((start, gpa + size - start, 1))
    return entries
