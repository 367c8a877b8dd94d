"""Plain records exchanged with pyrite.kvm that other layers build without ctypes."""
from __future__ import annotations


class CpuidEntry:
    """One kvm_cpuid_entry2: the answer to CPUID(function, index). A mutable record."""
    __slots__ = ("function", "index", "flags", "eax", "ebx", "ecx", "edx")

    def __init__(self, function: int, index: int = 0, flags: int = 0,
                 eax: int = 0, ebx: int = 0, ecx: int = 0, edx: int = 0):
        self.function = function
        self.index = index
        self.flags = flags     # KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1
        self.eax = eax
        self.ebx = ebx
        self.ecx = ecx
        self.edx = edx

    def _values(self) -> tuple[int, ...]:
        return (self.function, self.index, self.flags, self.eax, self.ebx, self.ecx, self.edx)

    def copy(self) -> CpuidEntry:
        return CpuidEntry(*self._values())

    def __eq__(self, other: object) -> bool:
        if type(other) is not CpuidEntry:
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None   # mutable

    def __repr__(self) -> str:
        return (f"CpuidEntry(function={self.function:#x}, index={self.index}, flags={self.flags}, "
                f"eax={self.eax:#x}, ebx={self.ebx:#x}, ecx={self.ecx:#x}, edx={self.edx:#x})")
