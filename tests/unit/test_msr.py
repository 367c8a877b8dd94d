"""Boot MSRs as Firecracker sets them (Intel SDM vol. 4 indexes)."""
from pyrite.arch.x86_64 import msr


def test_boot_msrs_in_firecracker_order():
    assert list(msr.boot_msrs()) == [
        0x174, 0x175, 0x176,                      # SYSENTER_CS/ESP/EIP
        0xC0000081, 0xC0000083, 0xC0000102, 0xC0000084, 0xC0000082,  # STAR CSTAR KGSBASE FMASK LSTAR
        0x10,                                     # TSC
        0x1A0,                                    # MISC_ENABLE
        0x2FF,                                    # MTRR default type
    ]


def test_boot_msr_values():
    values = msr.boot_msrs()
    assert values[msr.MSR_IA32_MISC_ENABLE] == 1            # fast strings
    assert values[msr.MSR_MTRR_DEF_TYPE] == 0x806           # MTRRs on, default write-back
    zeroed = set(values) - {msr.MSR_IA32_MISC_ENABLE, msr.MSR_MTRR_DEF_TYPE}
    assert len(zeroed) == 9 and all(values[i] == 0 for i in zeroed)


def test_each_call_returns_a_fresh_dict():
    a = msr.boot_msrs()
    a[msr.MSR_IA32_TSC] = 5
    assert msr.boot_msrs()[msr.MSR_IA32_TSC] == 0
