"""Plain records exchanged with pyrite.kvm that other layers build without ctypes."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CpuidEntry:
    """One kvm_cpuid_entry2: the answer to CPUID(function, index)."""
    function: int
    index: int = 0
    flags: int = 0   # KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1
    eax: int = 0
    ebx: int = 0
    ecx: int = 0
    edx: int = 0
