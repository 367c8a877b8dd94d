"""System: the /dev/kvm handle (capabilities, supported CPUID and MSRs, VM creation)."""
from __future__ import annotations

import ctypes
import errno
import os

from . import ioctls as io
from . import structs as s
from ._libc import call, get_errno, ioctl
from .errors import KvmError
from .types import CpuidEntry
from .vm import Vm


def cpuid_entries_from(cpuid: ctypes.Structure) -> list[CpuidEntry]:
    """The first `nent` entries of a sized kvm_cpuid2 as plain records."""
    return [CpuidEntry(e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx)
            for e in cpuid.entries[:cpuid.nent]]


class System:
    """An open /dev/kvm. Raises KvmError naming the path when it is missing or not permitted."""

    def __init__(self, path: str = "/dev/kvm"):
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise KvmError(path, errno.ENOENT,
                           "no such device; is KVM enabled (kvm_intel, kvm_amd or kvm_pvm loaded)?") from None
        except PermissionError as e:
            raise KvmError(path, e.errno,
                           "permission denied; add your user to the kvm group (or run with access to it)") from None
        except OSError as e:
            raise KvmError(path, e.errno, f"cannot open: {os.strerror(e.errno)}") from None
        try:
            version = self.api_version()
        except KvmError:
            self.close()   # e.g. a path that is not a KVM device (ENOTTY)
            raise
        if version != io.KVM_API_VERSION:
            self.close()
            raise KvmError("KVM_GET_API_VERSION", 0,
                           f"{path} speaks KVM API version {version}, pyrite needs {io.KVM_API_VERSION}")
        self._vcpu_mmap_size: int | None = None

    # --- context manager ---------------------------------------------------------------
    def __enter__(self) -> System:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # --- ioctls -------------------------------------------------------------------------
    def api_version(self) -> int:
        return call(self.fd, io.KVM_GET_API_VERSION)

    def check_extension(self, cap: int) -> int:
        """0 if `cap` (a Cap) is unsupported, else 1 or a capability-specific value."""
        return call(self.fd, io.KVM_CHECK_EXTENSION, int(cap))

    def get_vcpu_mmap_size(self) -> int:
        if self._vcpu_mmap_size is None:
            self._vcpu_mmap_size = call(self.fd, io.KVM_GET_VCPU_MMAP_SIZE)
        return self._vcpu_mmap_size

    def get_supported_cpuid(self, max_entries: int = io.MAX_CPUID_ENTRIES) -> list[CpuidEntry]:
        while True:
            cpuid = s.with_entries(s.kvm_cpuid2, max_entries)()
            cpuid.nent = max_entries
            if ioctl(self.fd, io.KVM_GET_SUPPORTED_CPUID, ctypes.byref(cpuid)) >= 0:
                return cpuid_entries_from(cpuid)
            err = get_errno()
            if err != errno.E2BIG or max_entries >= 64 * io.MAX_CPUID_ENTRIES:
                raise KvmError("KVM_GET_SUPPORTED_CPUID", err)
            max_entries *= 2   # the buffer was too small

    def get_msr_index_list(self) -> list[int]:
        """Indices of the MSRs KVM saves and restores for a vCPU (KVM_GET_MSR_INDEX_LIST)."""
        return self._msr_list(io.KVM_GET_MSR_INDEX_LIST)

    def get_msr_feature_index_list(self) -> list[int]:
        """Indices of the feature MSRs readable with KVM_GET_MSRS on /dev/kvm."""
        return self._msr_list(io.KVM_GET_MSR_FEATURE_INDEX_LIST)

    def _msr_list(self, request: int) -> list[int]:
        probe = s.kvm_msr_list(nmsrs=0)
        if ioctl(self.fd, request, ctypes.byref(probe)) < 0:
            err = get_errno()
            if err != errno.E2BIG:   # E2BIG is expected: KVM wrote the count it needs
                raise KvmError(io.IOCTL_NAMES[request], err)
        if probe.nmsrs == 0:
            return []
        msr_list = s.with_entries(s.kvm_msr_list, probe.nmsrs)()
        msr_list.nmsrs = probe.nmsrs
        call(self.fd, request, msr_list)
        return list(msr_list.indices[:msr_list.nmsrs])

    def create_vm(self, vm_type: int = 0) -> Vm:
        fd = call(self.fd, io.KVM_CREATE_VM, vm_type)
        return Vm(fd, self.get_vcpu_mmap_size())
