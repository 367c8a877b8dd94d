"""The one place that wires a microVM together, in Firecracker's order: memory, VM, irqchip,
kernel and boot parameters, devices, vCPUs (created stopped)."""
from __future__ import annotations

import os
import threading
import stat
import time
from collections.abc import Callable

from pyrite import kvm
from pyrite.arch.x86_64 import boot_cpu, cpuid, layout, msr
from pyrite.arch.x86_64.acpi import write_acpi_tables
from pyrite.arch.x86_64.bootparams import configure_boot
from pyrite.arch.x86_64.loader import LoaderError, load_initrd, load_kernel
from pyrite.arch.x86_64.mptable import write_mptable
from pyrite.devices.legacy.boot_timer import BootTime, BootTimer
from pyrite.devices.legacy.exit_port import ExitPort
from pyrite.devices.legacy.i8042 import I8042
from pyrite.devices.legacy.serial import Serial
from pyrite.memory import GuestMemory
from .bus import Bus
from .console import FdSink, SerialConsole
from .devices import DriveSpec, EntropySpec, NetSpec, VsockSpec, attach_virtio_devices, kernel_cmdline, plan_slots
from .event_loop import EventLoop
from .exit import VmExit
from .machine import create_machine
from .vcpu import RunControl, VcpuThread
from .vmm import Vmm

DEFAULT_CMDLINE = "console=ttyS0 reboot=k panic=1 pci=off"
MAX_VCPUS = 32


class BuildError(Exception):
    """The microVM could not be built; the message names the input at fault."""


class VmSpec:
    """What to boot: kernel and initrd (each a path, or the image itself), command line, size,
    and virtio devices: drives (DriveSpec, or a path or dict for DriveSpec.coerce) and an
    entropy device (EntropySpec, True or a dict); network interfaces `net` (NetSpec, a TAP
    name or a dict for NetSpec.coerce)."""
    __slots__ = ("kernel", "cmdline", "initrd", "mem_mib", "vcpus", "drives", "entropy", "net", "vsock")

    def __init__(self, kernel: str | os.PathLike | bytes, cmdline: str = DEFAULT_CMDLINE,
                 initrd: str | os.PathLike | bytes | None = None, mem_mib: int = 128,
                 vcpus: int = 1, drives=(), entropy: EntropySpec | bool | dict | None = None, net=(),
                 vsock: VsockSpec | dict | tuple | None = None):
        self.kernel = kernel
        self.cmdline = cmdline
        self.initrd = initrd
        self.mem_mib = mem_mib
        self.vcpus = vcpus
        try:
            self.drives: tuple[DriveSpec, ...] = tuple(DriveSpec.coerce(d, i) for i, d in enumerate(drives))
            self.entropy: EntropySpec | None = EntropySpec.coerce(entropy)
            self.net: tuple[NetSpec, ...] = tuple(NetSpec.coerce(n, i) for i, n in enumerate(net))
            self.vsock: VsockSpec | None = VsockSpec.coerce(vsock)   # (guest_cid, uds_path) or a dict
        except ValueError as e:
            raise BuildError(str(e)) from None

    def validate(self) -> None:
        if not isinstance(self.vcpus, int) or not 1 <= self.vcpus <= MAX_VCPUS:
            raise BuildError(f"vcpu count {self.vcpus!r}: must be between 1 and {MAX_VCPUS}")
        if not isinstance(self.mem_mib, int) or self.mem_mib <= 0:
            raise BuildError(f"memory size {self.mem_mib!r} MiB: must be a positive number of MiB")
        host_mib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") >> 20
        if self.mem_mib > host_mib:
            raise BuildError(f"memory size {self.mem_mib} MiB is more than this host has ({host_mib} MiB)")
        try:
            plan_slots(self.drives, self.entropy, net=self.net, vsock=self.vsock)
        except ValueError as e:
            raise BuildError(str(e)) from None


def _image_source(what: str, source) -> tuple[object, str]:
    """The image and its name for messages. A path is only checked here, so that a user gets
    one clear message; the loader maps the file instead of reading a copy into the heap."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return source, what
    path = os.fspath(source)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise BuildError(f"{what} {path}: no such file") from None
    except PermissionError:
        raise BuildError(f"{what} {path}: permission denied") from None
    try:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    if is_dir:
        raise BuildError(f"{what} {path}: is a directory, not an image file")
    return path, path


def log_boot_time(boot_time: BootTime) -> None:
    os.write(2, f"pyrite: {boot_time}\n".encode())


def build_for_boot(spec: VmSpec, *, console_out=None, console_in: int | None = None,
                   on_boot_timer: Callable[[BootTime], None] | None = log_boot_time,
                   start_ns: int | None = None, kvm_path: str = "/dev/kvm",
                   symbolize=None, machine: tuple[kvm.System, kvm.Vm] | None = None) -> Vmm:
    """Build a stopped microVM from `spec`; `Vmm.start()` runs it.

    `machine` is a (System, Vm) pair from machine.create_machine(), made early by a caller that
    wants the VM's creation out of the way (see machine.py); the build then owns it.
    """
    closers: list = [machine[0].close, machine[1].close] if machine is not None else []
    try:
        spec.validate()
        kernel_image, kernel_name = _image_source("kernel", spec.kernel)
        initrd_image = _image_source("initrd", spec.initrd) if spec.initrd is not None else None
        kvm.install_kick_handler()  # stopping vCPUs needs it; signal handlers install from the main thread only
        start_ns = time.monotonic_ns() if start_ns is None else start_ns
        mem_size = spec.mem_mib << 20
        if machine is None:
            machine = create_machine(kvm_path)
            closers += [machine[0].close, machine[1].close]
        system, vm = machine
        memory = GuestMemory(layout.ram_regions(mem_size))
        closers.append(memory.close)
        for slot, region in enumerate(memory.regions):
            vm.set_user_memory_region(slot, region.gpa, region.size, region.host_addr)

        kernel = load_kernel(memory, kernel_image, name=kernel_name)
        initrd = None
        if initrd_image is not None:
            initrd = load_initrd(memory, initrd_image[0], kernel, mem_size, name=initrd_image[1])
        # ACPI tables for kernels without MP-table support; the MP table stays for those with.
        rsdp_addr = write_acpi_tables(memory, spec.vcpus)
        virtio_plans = plan_slots(spec.drives, spec.entropy, net=spec.net, vsock=spec.vsock)
        cmdline = kernel_cmdline(spec.cmdline, virtio_plans)
        params = configure_boot(memory, kernel, cmdline.encode(), initrd, mem_size,
                                rsdp_addr=rsdp_addr)
        write_mptable(memory, spec.vcpus)

        control = RunControl()
        pio, mmio = Bus("port I/O"), Bus("MMIO")
        vmm_box: list[Vmm] = []  # devices call into the Vmm built below
        finish = lambda result: vmm_box[0].finish(result)  # noqa: E731
        devices = _attach_legacy_devices(vm, pio, mmio, closers, finish, console_out, start_ns, on_boot_timer)
        event_loop = EventLoop()
        virtio = attach_virtio_devices(vm, mmio, memory, event_loop, virtio_plans,
                                       lambda gsi: _irq_line(vm, gsi, closers), closers)
        if console_in is not None:
            _attach_console_input(event_loop, devices["serial_console"], console_in)

        supported = system.get_supported_cpuid()

        def describe(vcpu, ex) -> str:
            from .crash import register_dump   # only a failing guest needs the crash report
            from pyrite.arch.x86_64.loader.symbols import elf_symbolizer
            return register_dump(vcpu, memory, symbolize or elf_symbolizer(spec.kernel))

        threads = []
        for index in range(spec.vcpus):
            vcpu = vm.create_vcpu(index)
            closers.append(vcpu.close)
            _configure_vcpu(vcpu, index, spec.vcpus, supported, memory, params)
            threads.append(VcpuThread(index, vcpu, pio, mmio, control, finish, describe))
    except (LoaderError, kvm.KvmError, ValueError, OSError) as e:
        _close_all(closers)
        raise BuildError(str(e)) from e
    except BaseException:
        _close_all(closers)
        raise
    vmm = Vmm(system=system, vm=vm, memory=memory, vcpus=threads, control=control,
              event_loop=event_loop, devices=devices, closers=closers, virtio=virtio)
    vmm.kernel, vmm.boot_params = kernel, params
    vmm_box.append(vmm)
    return vmm


def _close_all(closers: list) -> None:
    for close in reversed(closers):
        close()


def _irq_line(vm, gsi: int, closers: list) -> Callable[[], None]:
    """An edge on `gsi` through an irqfd: any thread may raise it without a vCPU exit."""
    fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    closers.append(lambda: os.close(fd))
    vm.register_irqfd(fd, gsi)
    return lambda: os.eventfd_write(fd, 1)


def _attach_legacy_devices(vm, pio: Bus, mmio: Bus, closers, finish, console_out, start_ns, on_boot_timer) -> dict:
    out = console_out if console_out is not None else FdSink(1)
    serial = Serial(_irq_line(vm, layout.SERIAL_IRQ, closers), out)
    console = SerialConsole(serial)
    pio.register(layout.SERIAL_PORT, 8, "serial", console.pio_read, console.pio_write)

    i8042 = I8042(reset=lambda: finish(VmExit("reset", 0, "the guest reset the machine through the i8042")),
                  kbd_irq=_irq_line(vm, 1, closers))
    i8042_lock = threading.Lock()  # vCPU threads and the API's SendCtrlAltDel share the device

    def i8042_read(off: int, n: int) -> bytes:
        with i8042_lock:
            return bytes((i8042.read(off),)) * n

    def i8042_write(off: int, data: bytes) -> None:
        with i8042_lock:
            i8042.write(off, data[0])
    pio.register(layout.I8042_PORT, 1, "i8042 data", i8042_read, i8042_write)
    pio.register(layout.I8042_PORT + 4, 1, "i8042 command",
                 lambda off, n: i8042_read(4, n), lambda off, data: i8042_write(4, data))

    exit_port = ExitPort(lambda status: finish(
        VmExit("exit-port", status, f"the guest wrote {status} to the exit port {layout.EXIT_PORT:#x}")))
    pio.register(layout.EXIT_PORT, 1, "exit port", lambda off, n: b"\0" * n,
                 lambda off, data: exit_port.write(data[0]))

    timer = BootTimer(start_ns, on_boot_timer or (lambda boot_time: None))
    mmio.register(layout.BOOT_TIMER_ADDR, 0x1000, "boot timer", lambda off, n: b"\0" * n, timer.write)
    return {"serial": serial, "serial_console": console, "i8042": i8042, "i8042_lock": i8042_lock,
            "boot_timer": timer, "exit_port": exit_port}


def _attach_console_input(loop: EventLoop, console: SerialConsole, fd: int) -> None:
    def on_input(events: int) -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove(fd)  # end of input: the guest simply gets no more bytes
            return
        if not console.feed(data):
            loop.remove(fd)
            console.on_drained = lambda: loop.add(fd, on_input)
    try:
        loop.add(fd, on_input)
    except PermissionError:
        # epoll refuses regular files and /dev/null: they are always readable, so feed them whole.
        with os.fdopen(os.dup(fd), "rb") as f:
            console.feed(f.read())


def _configure_vcpu(vcpu, index: int, count: int, supported, memory: GuestMemory, params) -> None:
    vcpu.set_cpuid2(cpuid.normalize(supported, index, count))
    vcpu.set_msrs(msr.boot_msrs())
    lapic = vcpu.get_lapic()
    boot_cpu.set_lint(lapic.regs_view())
    vcpu.set_lapic(lapic)
    if index != 0:
        return  # application processors wait for INIT/SIPI from the guest
    sregs = vcpu.get_sregs()
    boot_cpu.configure_sregs(memory, sregs, params.protocol)
    vcpu.set_sregs(sregs)
    regs = vcpu.get_regs()
    for name, value in boot_cpu.boot_gprs(params.protocol, params.entry, params.regs).items():
        setattr(regs, name, value)
    vcpu.set_regs(regs)
    fpu = vcpu.get_fpu()
    fpu.fcw, fpu.mxcsr = 0x37F, 0x1F80
    vcpu.set_fpu(fpu)
