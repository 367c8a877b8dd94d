"""Guest-virtual to guest-physical translation by walking the guest's own page tables."""
from __future__ import annotations

from pyrite.memory import GuestMemory

CR0_PG = 1 << 31
CR4_PAE = 1 << 5
CR4_LA57 = 1 << 12
EFER_LMA = 1 << 10
ADDR_MASK = 0x000F_FFFF_FFFF_F000


def translate(mem: GuestMemory, vaddr: int, cr0: int, cr3: int, cr4: int, efer: int) -> int | None:
    """Physical address of `vaddr`, or None when it is not mapped (or the mode is unsupported)."""
    if not cr0 & CR0_PG:
        return vaddr & 0xFFFF_FFFF
    if not (efer & EFER_LMA and cr4 & CR4_PAE):
        return None  # 32-bit paging: our guests and Linux never fault there early enough to matter
    levels = 5 if cr4 & CR4_LA57 else 4
    table = cr3 & ADDR_MASK
    for level in range(levels, 0, -1):
        shift = 12 + 9 * (level - 1)
        pte_addr = table + ((vaddr >> shift) & 0x1FF) * 8
        if not mem.contains(pte_addr, 8):
            return None
        pte = mem.read_int(pte_addr, 8)
        if not pte & 1:
            return None
        if level in (2, 3) and pte & 0x80:  # 2 MiB / 1 GiB page
            return (pte & ADDR_MASK & ~((1 << shift) - 1)) | (vaddr & ((1 << shift) - 1))
        table = pte & ADDR_MASK
    return table | (vaddr & 0xFFF)
