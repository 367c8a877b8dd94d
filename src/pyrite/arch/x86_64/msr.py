"""The MSRs every vCPU gets before boot: Firecracker's create_boot_msr_entries."""
from __future__ import annotations

MSR_IA32_TSC = 0x10
MSR_IA32_SYSENTER_CS = 0x174
MSR_IA32_SYSENTER_ESP = 0x175
MSR_IA32_SYSENTER_EIP = 0x176
MSR_IA32_MISC_ENABLE = 0x1A0
MSR_MTRR_DEF_TYPE = 0x2FF
MSR_STAR = 0xC000_0081
MSR_LSTAR = 0xC000_0082
MSR_CSTAR = 0xC000_0083
MSR_SYSCALL_MASK = 0xC000_0084
MSR_KERNEL_GS_BASE = 0xC000_0102

MSR_IA32_MISC_ENABLE_FAST_STRING = 1 << 0
MTRR_ENABLE = 1 << 11           # IA32_MTRR_DEF_TYPE.E: MTRRs enabled
MTRR_MEM_TYPE_WB = 0x6          # default memory type: write-back


def boot_msrs() -> dict[int, int]:
    """index -> value, in the order Firecracker writes them."""
    return {
        MSR_IA32_SYSENTER_CS: 0,
        MSR_IA32_SYSENTER_ESP: 0,
        MSR_IA32_SYSENTER_EIP: 0,
        # 64-bit SYSCALL state: the guest kernel sets its own.
        MSR_STAR: 0,
        MSR_CSTAR: 0,
        MSR_KERNEL_GS_BASE: 0,
        MSR_SYSCALL_MASK: 0,
        MSR_LSTAR: 0,
        MSR_IA32_TSC: 0,
        MSR_IA32_MISC_ENABLE: MSR_IA32_MISC_ENABLE_FAST_STRING,
        # Memory outside any variable MTRR range is write-back, not uncached.
        MSR_MTRR_DEF_TYPE: MTRR_ENABLE | MTRR_MEM_TYPE_WB,
    }
