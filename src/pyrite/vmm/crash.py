"""Crash reports from vCPU state: registers, the faulting instruction bytes, the stack."""
from __future__ import annotations

from collections.abc import Callable

from pyrite.arch.x86_64.pagewalk import translate
from pyrite.kvm import exits
from pyrite.kvm.ioctls import KVM_INTERNAL_ERROR_EMULATION
from pyrite.memory import GuestMemory


Symbolizer = Callable[[int], "str | None"]


def guest_bytes(mem: GuestMemory, sregs, vaddr: int, length: int) -> bytes | None:
    """Read guest-virtual memory through the guest's page tables; None if unmapped."""
    out = bytearray()
    while length > 0:
        chunk = min(length, 0x1000 - (vaddr & 0xFFF))
        gpa = translate(mem, vaddr, sregs.cr0, sregs.cr3, sregs.cr4, sregs.efer)
        if gpa is None or not mem.contains(gpa, chunk):
            return bytes(out) or None
        out += mem.read(gpa, chunk)
        vaddr, length = vaddr + chunk, length - chunk
    return bytes(out)


def register_dump(vcpu, mem: GuestMemory, symbolize: Symbolizer | None = None) -> str:
    regs, sregs = vcpu.get_regs(), vcpu.get_sregs()
    rip = sregs.cs.base + regs.rip if not sregs.efer & (1 << 10) else regs.rip
    where = symbolize(rip) if symbolize else None
    lines = [f"  RIP={regs.rip:#018x}{f' <{where}>' if where else ''}  RFLAGS={regs.rflags:#x}  "
             f"CPL={sregs.cs.dpl if sregs.cr0 & 1 else 0}  CS={sregs.cs.selector:#x}",
             f"  RAX={regs.rax:#018x} RBX={regs.rbx:#018x} RCX={regs.rcx:#018x} RDX={regs.rdx:#018x}",
             f"  RSI={regs.rsi:#018x} RDI={regs.rdi:#018x} RBP={regs.rbp:#018x} RSP={regs.rsp:#018x}",
             f"  R8 ={regs.r8:#018x} R9 ={regs.r9:#018x} R10={regs.r10:#018x} R11={regs.r11:#018x}",
             f"  R12={regs.r12:#018x} R13={regs.r13:#018x} R14={regs.r14:#018x} R15={regs.r15:#018x}",
             f"  CR0={sregs.cr0:#x} CR2={sregs.cr2:#x} CR3={sregs.cr3:#x} CR4={sregs.cr4:#x} EFER={sregs.efer:#x}"]
    code = guest_bytes(mem, sregs, rip, 16)
    lines.append("  code at RIP: " + (code.hex(" ") if code else "(not mapped)"))
    stack = guest_bytes(mem, sregs, regs.rsp, 64)
    if stack:
        words = [int.from_bytes(stack[i:i + 8], "little") for i in range(0, len(stack) - 7, 8)]
        lines.append("  stack: " + " ".join(f"{w:#x}" for w in words))
    return "\n".join(lines)


def library_os_crash_site(mem: GuestMemory, image_fd: int) -> str | None:
    """Where a pyrite library-OS image crashed, after its crash report (which records the
    faulting RIP in `pyrite_crash_rip`, identity mapped): "rip 0x... <function+0xoff>", or None
    when the image has no such symbol (not a pyrite image) or nothing was recorded. The image
    is read from `image_fd` (pread: the vCPU thread's seccomp filter allows no openat)."""
    from pyrite.arch.x86_64.loader.symbols import elf_symbolizer, read_image, symbol_value
    try:
        image = read_image(image_fd)
    except OSError:
        return None
    addr = symbol_value(image, "pyrite_crash_rip")
    if addr is None or not mem.contains(addr, 8):
        return None
    rip = int.from_bytes(mem.read(addr, 8), "little")
    if not rip:
        return None
    where = elf_symbolizer(image)(rip)
    return f"rip {rip:#x}" + (f" <{where}>" if where else "")


def describe_failure(index: int, ex, dump: str) -> str:
    if isinstance(ex, exits.Shutdown):
        head = f"guest crashed: vCPU {index} triple fault (KVM_EXIT_SHUTDOWN)"
    elif isinstance(ex, exits.InternalError):
        name = exits.INTERNAL_ERROR_NAMES.get(ex.suberror, f"suberror {ex.suberror}")
        head = f"KVM internal error on vCPU {index}: {name}"
        if ex.suberror == KVM_INTERNAL_ERROR_EMULATION:
            head += ": KVM could not emulate an instruction (the code bytes at RIP are below)"
        if ex.data:
            head += "\n  data: " + " ".join(f"{d:#x}" for d in ex.data)
    elif isinstance(ex, exits.FailEntry):
        head = (f"KVM_EXIT_FAIL_ENTRY on vCPU {index}: hardware entry failure reason {ex.reason:#x} "
                f"(cpu {ex.cpu}); the vCPU state is invalid for this host")
    else:
        head = f"unexpected vCPU exit on vCPU {index}: {ex!r}"
    return f"{head}\n{dump}"
