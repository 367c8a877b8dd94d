"""The one place that wires a microVM together: VM, memory, interrupt controllers (after the
memory: see machine.py), kernel and boot parameters, devices, vCPUs (created stopped)."""
from __future__ import annotations

import os
import threading
import stat
import time
from collections.abc import Callable

from pyrite import kvm
from pyrite.arch.x86_64 import boot_cpu, cpuid, layout, msr
from pyrite.arch.x86_64.acpi import VMGENID_ADDR, AcpiError, write_acpi_tables
from pyrite.arch.x86_64.bootparams import BootConfigError, configure_boot
from pyrite.arch.x86_64.cpuid import CpuidError
from pyrite.arch.x86_64.loader import LoaderError, load_initrd, load_kernel
from pyrite.arch.x86_64.mptable import MptableError, write_mptable
from pyrite.devices.acpi.vmgenid import VmGenId
from pyrite.devices.virtio.handler import DeviceError
from pyrite.devices.legacy.boot_timer import BootTime, BootTimer
from pyrite.devices.legacy.exit_port import ExitPort
from pyrite.devices.legacy.i8042 import I8042
from pyrite.devices.legacy.serial import Serial
from pyrite.memory import GuestMemory, GuestMemoryError
from . import memory_cgroup
from .bus import Bus
from .console import FdSink, SerialConsole
from .devices import attach_devices, create_devices, kernel_cmdline, plan_slots, vmgenid_gsi
from .errors import (BootSetupError, BuildError, DeviceSetupError, InitrdLoadError, KernelLoadError,
                     KvmSetupError, MemorySetupError, VcpuSetupError)
from .event_loop import EventLoop
from .exit import VmExit
from .machine import add_interrupt_controllers, create_machine
from .vcpu import RunControl, VcpuThread
from .vmm import LegacyDevices, Vmm

CRASH_STATUS_BASE = 128          # pyrite's library OS ends a crash with 128 + the exception vector

__all__ = ["BuildError", "build_for_boot", "build_for_restore", "log_boot_time"]


def _image_path(what: str, path: str, error: type[BuildError]) -> str:
    """`path`, checked here so that a user gets one clear message; the loader maps the file
    instead of reading a copy into the heap."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(f"{what} {path}: no such file") from None
    except PermissionError:
        raise error(f"{what} {path}: permission denied") from None
    except OSError as e:
        raise error(f"{what} {path}: {e.strerror}") from None
    try:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    if is_dir:
        raise error(f"{what} {path}: is a directory, not an image file")
    return path


def log_boot_time(boot_time: BootTime) -> None:
    os.write(2, f"pyrite: {boot_time}\n".encode())


def build_for_boot(resources, *, console_out=None, console_in: int | None = None,
                   on_boot_timer: Callable[[BootTime], None] | None = log_boot_time,
                   start_ns: int | None = None, kvm_path: str = "/dev/kvm",
                   symbolize=None, machine: tuple[kvm.System, kvm.Vm] | None = None) -> Vmm:
    """Build a stopped microVM from `resources` (a validated pyrite.config.VmResources, as
    Firecracker's builder takes VmResources); `Vmm.start()` runs it. Each step raises its own
    BuildError subclass (pyrite.vmm.errors) for what it expects to fail; `resources` is not
    changed, failed or not.

    `machine` is a (System, Vm) pair from machine.create_machine(), made early by a caller that
    wants the VM's creation out of the way (see machine.py); the build then owns it.
    """
    closers: list = [machine[0].close, machine[1].close] if machine is not None else []
    event_loop = EventLoop()
    try:
        boot_source, machine_config = resources.boot_source, resources.machine_config
        if boot_source is None:
            raise KernelLoadError("no kernel configured (boot-source)")
        vcpu_count, mem_size = machine_config.vcpu_count, machine_config.mem_size_mib << 20
        kernel_path = _image_path("kernel", boot_source.kernel_image_path, KernelLoadError)
        initrd_path = boot_source.initrd_path
        if initrd_path is not None:
            _image_path("initrd", initrd_path, InitrdLoadError)
        kvm.install_kick_handler()  # stopping vCPUs needs it; signal handlers install from the main thread only
        start_ns = time.monotonic_ns() if start_ns is None else start_ns
        if machine is None:
            machine = _create_machine(kvm_path)
            closers += [machine[0].close, machine[1].close]
        system, vm = machine
        memory = _create_memory(vm, mem_size, closers, machine_config.track_dirty_pages)

        try:
            kernel = load_kernel(memory, kernel_path, name=kernel_path)
        except LoaderError as e:
            raise KernelLoadError(str(e)) from e
        initrd = None
        if initrd_path is not None:
            try:
                initrd = load_initrd(memory, initrd_path, kernel, mem_size, name=initrd_path)
            except LoaderError as e:
                raise InitrdLoadError(str(e)) from e

        params = None

        def configure(vcpu, index: int, supported) -> None:
            _configure_vcpu(vcpu, index, vcpu_count, supported, memory, params)

        # Crash reports name functions from the kernel's symbols, read through an fd opened now:
        # a vCPU thread under its seccomp filter cannot open files.
        kernel_fd = os.open(kernel_path, os.O_RDONLY | os.O_CLOEXEC)
        closers.append(lambda: os.close(kernel_fd))

        def describe(vcpu, ex) -> str:
            from .crash import register_dump   # only a failing guest needs the crash report
            from pyrite.arch.x86_64.loader.symbols import elf_symbolizer
            return register_dump(vcpu, memory, symbolize or elf_symbolizer(kernel_fd))

        def crash_site() -> str | None:
            from .crash import library_os_crash_site
            return library_os_crash_site(memory, kernel_fd)

        def write_boot_params(cmdline: str, vmgenid: VmGenId) -> None:
            nonlocal params
            params = _write_boot_params(memory, kernel, initrd, mem_size, vcpu_count, cmdline, vmgenid)

        vmm = _assemble(resources, system, vm, memory, event_loop, closers, console_out, console_in,
                        start_ns, on_boot_timer, write_boot_params, configure, describe, crash_site)
    except BaseException:
        event_loop.stop()        # closes its epoll fd: it never ran
        _close_all(closers)
        raise
    vmm.kernel, vmm.boot_params = kernel, params
    return vmm


def build_for_restore(resources, memory: GuestMemory, *, console_out=None, console_in: int | None = None,
                      kvm_path: str = "/dev/kvm", machine: tuple[kvm.System, kvm.Vm] | None = None,
                      track_dirty_pages: bool = False) -> Vmm:
    """Build a stopped microVM around `memory` (a snapshot's guest RAM) from `resources`, as
    build_for_boot does but with no kernel, boot parameters or vCPU set-up: the caller gives each
    piece its saved state (pyrite.snapshot) before `Vmm.start()`. The build owns `memory`."""
    closers: list = [memory.close]
    if machine is not None:
        closers += [machine[0].close, machine[1].close]
    event_loop = EventLoop()
    try:
        kvm.install_kick_handler()
        if machine is None:
            machine = _create_machine(kvm_path)
            closers += [machine[0].close, machine[1].close]
        system, vm = machine
        _register_memory(vm, memory, track_dirty_pages)

        def describe(vcpu, ex) -> str:
            from .crash import register_dump
            return register_dump(vcpu, memory)

        vmm = _assemble(resources, system, vm, memory, event_loop, closers, console_out, console_in,
                        time.monotonic_ns(), None, None, None, describe)
    except BaseException:
        event_loop.stop()
        _close_all(closers)
        raise
    return vmm


def _assemble(resources, system, vm, memory, event_loop, closers, console_out, console_in, start_ns,
              on_boot_timer, write_boot_params, configure_vcpu, describe, crash_site=None) -> Vmm:
    """Devices, boot parameters (when `write_boot_params` is given) and vCPUs around a VM with
    its memory: the steps a boot and a restore share. `crash_site` names where a library-OS
    image crashed when it ends with a crash status."""
    control = RunControl()
    pio, mmio = Bus("port I/O"), Bus("MMIO")
    vmm_box: list[Vmm] = []  # devices call into the Vmm built below
    finish = lambda result: vmm_box[0].finish(result)  # noqa: E731
    legacy = _attach_legacy_devices(vm, pio, mmio, closers, finish, console_out, start_ns, on_boot_timer,
                                    crash_site)
    slots = _plan_slots(resources)
    virtio = _attach_virtio_devices(vm, mmio, memory, event_loop, slots, closers)
    vmgenid = _attach_vmgenid(vm, vmgenid_gsi(slots), closers)
    if console_in is not None:
        _attach_console_input(event_loop, legacy.console, console_in, _reads_breaks(resources))
    if write_boot_params is not None:
        write_boot_params(kernel_cmdline(resources.kernel_cmdline, slots), vmgenid)
    threads = _create_vcpus(system, vm, resources.machine_config.vcpu_count, closers, configure_vcpu,
                            lambda index, vcpu: VcpuThread(index, vcpu, pio, mmio, control, finish, describe))
    vmm = Vmm(system=system, vm=vm, memory=memory, vcpus=threads, control=control,
              event_loop=event_loop, legacy=legacy, closers=closers, virtio=virtio, vmgenid=vmgenid)
    vmm_box.append(vmm)
    return vmm


def _create_machine(kvm_path: str):
    try:
        return create_machine(kvm_path)
    except (kvm.KvmError, OSError) as e:
        raise KvmSetupError(f"{kvm_path}: {e}") from e


def _create_memory(vm, mem_size: int, closers: list, track_dirty_pages: bool = False) -> GuestMemory:
    host_mib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") >> 20
    if mem_size >> 20 > host_mib:
        raise MemorySetupError(f"memory size {mem_size >> 20} MiB is more than this host has ({host_mib} MiB)")
    problem = memory_cgroup.fit_problem(mem_size)
    if problem is not None:
        raise MemorySetupError(problem)
    try:
        memory = GuestMemory(layout.ram_regions(mem_size))
    except (GuestMemoryError, OSError) as e:
        raise MemorySetupError(f"guest memory of {mem_size >> 20} MiB: {e}") from e
    closers.append(memory.close)
    _register_memory(vm, memory, track_dirty_pages)
    return memory


def _register_memory(vm, memory: GuestMemory, track_dirty_pages: bool = False) -> None:
    """Guest memory's slots, then the interrupt controllers (that order: see machine.py). Each
    region is in the KVM slot of its index (pyrite.snapshot.dirty reads the logs by it); with
    `track_dirty_pages`, KVM logs the guest's writes and GuestMemory the VMM's."""
    flags = kvm.KVM_MEM_LOG_DIRTY_PAGES if track_dirty_pages else 0
    if track_dirty_pages:
        memory.track_dirty_pages()
    try:
        for slot, region in enumerate(memory.regions):
            vm.set_user_memory_region(slot, region.gpa, region.size, region.host_addr, flags)
    except kvm.KvmError as e:
        raise MemorySetupError(f"guest memory of {memory.size >> 20} MiB: {e}") from e
    try:
        add_interrupt_controllers(vm)
    except kvm.KvmError as e:
        raise KvmSetupError(f"interrupt controllers: {e}") from e


def _write_boot_params(memory, kernel, initrd, mem_size: int, vcpu_count: int, cmdline: str, vmgenid: VmGenId):
    try:
        # ACPI tables for kernels without MP-table support; the MP table stays for those with.
        rsdp_addr = write_acpi_tables(memory, vcpu_count, vmgenid=(vmgenid.addr, vmgenid.gsi))
        params = configure_boot(memory, kernel, cmdline.encode(), initrd, mem_size, rsdp_addr=rsdp_addr)
        write_mptable(memory, vcpu_count)
        vmgenid.generate(memory)
    except (AcpiError, BootConfigError, MptableError, GuestMemoryError) as e:
        raise BootSetupError(str(e)) from e
    return params


def _plan_slots(resources) -> list:
    try:
        return plan_slots(resources)
    except DeviceError as e:
        raise DeviceSetupError(str(e)) from e


def _attach_virtio_devices(vm, mmio: Bus, memory, loop, slots: list, closers: list) -> list:
    try:
        handlers = create_devices(slots, closers)
        attach_devices(vm, mmio, memory, loop, handlers, lambda gsi: _irq_line(vm, gsi, closers), closers)
    except DeviceError as e:
        raise DeviceSetupError(str(e)) from e
    except (kvm.KvmError, OSError) as e:     # eventfds, ioeventfds, irqfds
        raise DeviceSetupError(f"virtio devices: {e}") from e
    return handlers


def _create_vcpus(system, vm, count: int, closers: list, configure, make_thread) -> list:
    """`count` vCPUs, each set up for boot by `configure` (none on a restore: saved state follows)."""
    supported = system.get_supported_cpuid() if configure is not None else None
    threads = []
    for index in range(count):
        try:
            vcpu = vm.create_vcpu(index)
            closers.append(vcpu.close)
            if configure is not None:
                configure(vcpu, index, supported)
        except (kvm.KvmError, CpuidError) as e:
            raise VcpuSetupError(f"vCPU {index}: {e}") from e
        threads.append(make_thread(index, vcpu))
    return threads


def _close_all(closers: list) -> None:
    for close in reversed(closers):
        close()


def _irq_line(vm, gsi: int, closers: list) -> Callable[[], None]:
    """An edge on `gsi` through an irqfd: any thread may raise it without a vCPU exit."""
    fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    closers.append(lambda: os.close(fd))
    vm.register_irqfd(fd, gsi)
    return lambda: os.eventfd_write(fd, 1)


def _attach_vmgenid(vm, gsi: int, closers: list) -> VmGenId:
    """The VM generation ID at Firecracker's address, announcing new IDs on `gsi`; a boot writes
    its first ID with the ACPI tables, a restore its next one (pyrite.snapshot)."""
    try:
        return VmGenId(VMGENID_ADDR, gsi, _irq_line(vm, gsi, closers))
    except (kvm.KvmError, OSError) as e:     # the irqfd
        raise DeviceSetupError(f"vmgenid: {e}") from e


def _attach_legacy_devices(vm, pio: Bus, mmio: Bus, closers, finish, console_out, start_ns,
                           on_boot_timer, crash_site) -> LegacyDevices:
    try:
        return _legacy_devices(vm, pio, mmio, closers, finish, console_out, start_ns, on_boot_timer, crash_site)
    except (kvm.KvmError, OSError) as e:     # the irqfds
        raise DeviceSetupError(f"legacy devices: {e}") from e


def _legacy_devices(vm, pio: Bus, mmio: Bus, closers, finish, console_out, start_ns, on_boot_timer,
                    crash_site) -> LegacyDevices:
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

    def on_exit(status: int) -> None:
        message = f"the guest wrote {status} to the exit port {layout.EXIT_PORT:#x}"
        site = crash_site() if crash_site is not None and status >= CRASH_STATUS_BASE else None
        finish(VmExit("exit-port", status, f"{message}: crashed at {site}" if site else message))
    exit_port = ExitPort(on_exit)
    pio.register(layout.EXIT_PORT, 1, "exit port", lambda off, n: b"\0" * n,
                 lambda off, data: exit_port.write(data[0]))

    timer = BootTimer(start_ns, on_boot_timer or (lambda boot_time: None))
    mmio.register(layout.BOOT_TIMER_ADDR, 0x1000, "boot timer", lambda off, n: b"\0" * n, timer.write)
    return LegacyDevices(serial=serial, console=console, i8042=i8042, i8042_lock=i8042_lock,
                         boot_timer=timer, exit_port=exit_port)


def _reads_breaks(resources) -> bool:
    """Whether the guest reads a serial break as end of input: pyrite's library OS does; a
    Linux guest would take it for a break (a NUL, or the start of a magic SysRq)."""
    from pyrite.arch.x86_64.loader.pyrite_image import is_pyrite_image
    boot = resources.boot_source
    return boot is not None and is_pyrite_image(boot.kernel_image_path)


def _attach_console_input(loop: EventLoop, console: SerialConsole, fd: int, eof_as_break: bool) -> None:
    """Host input to the serial console; with `eof_as_break`, its end (and a terminal's Ctrl-D
    at the start of a line) reaches the guest as a break (console.py)."""
    terminal = eof_as_break and os.isatty(fd)
    end_of_input = console.end_of_input if eof_as_break else (lambda: None)

    def on_input(events: int) -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove(fd)
            end_of_input()
            return
        if not console.feed(data, terminal):
            loop.remove(fd)
            console.on_drained = lambda: loop.add(fd, on_input)
    try:
        loop.add(fd, on_input)
    except PermissionError:
        # epoll refuses regular files and /dev/null: they are always readable, so feed them whole.
        with os.fdopen(os.dup(fd), "rb") as f:
            console.feed(f.read())
        end_of_input()


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
