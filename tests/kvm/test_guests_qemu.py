"""Test guests built with pyrite's library OS, booted under QEMU (-M microvm, KVM).

QEMU is the independent reference: an image that boots here follows the PVH and
Multiboot contracts as QEMU reads them. Each guest reports what it saw over serial;
QEMU's isa-debug-exit turns the guest's status byte b into exit status (b << 1) | 1.
"""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from guests import needs_native_cpl0

from pyrite.unikernel.build import build_image
from pyrite.unikernel.image_info import describe_image

GUESTS = Path(__file__).resolve().parent.parent / "guests"
QEMU = shutil.which("qemu-system-x86_64")
QEMU_ARGS = [
    "-M", "microvm,x-option-roms=off,isa-serial=on,rtc=off", "-enable-kvm",
    "-cpu", "host,-arch-capabilities", "-nodefaults", "-no-user-config",
    "-nographic", "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
    "-no-reboot",
]

pytestmark = [
    pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 not installed (apt-get install qemu-system-x86)"),
    pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK), reason="/dev/kvm missing or not accessible"),
]


class Run:
    def __init__(self, proc: subprocess.CompletedProcess, seconds: float):
        self.qemu_status = proc.returncode
        self.output = proc.stdout.decode(errors="replace").replace("\r\n", "\n")
        self.stderr = proc.stderr.decode(errors="replace")
        self.seconds = seconds

    def exited_with(self, status: int) -> bool:
        """Whether the guest wrote `status` to port 0xf4. QEMU exits with (byte << 1) | 1,
        truncated to 8 bits by the OS, so bit 7 of the byte is lost on the way."""
        return self.qemu_status == ((status & 0xFF) << 1 | 1) & 0xFF

    def lines(self, prefix: str) -> list[str]:
        return [line[len(prefix):] for line in self.output.splitlines() if line.startswith(prefix)]

    def value(self, key: str) -> str:
        found = self.lines(key + "=")
        assert found, f"guest did not report {key}=: output was\n{self.output}\nstderr:\n{self.stderr}"
        return found[0]


def boot(image: Path, *, append: str | None = None, initrd: Path | None = None, smp: int | None = None,
         stdin: bytes | None = None, mem: str = "128M", timeout: float = 30) -> Run:
    cmd = [QEMU, *QEMU_ARGS, "-m", mem, "-kernel", str(image)]
    if append is not None:
        cmd += ["-append", append]
    if initrd is not None:
        cmd += ["-initrd", str(initrd)]
    if smp is not None:
        cmd += ["-smp", str(smp)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                          capture_output=True, timeout=timeout)
    return Run(proc, time.perf_counter() - start)


def guest(name: str, tmp_path: Path, **build_options) -> Path:
    return build_image([GUESTS / f"{name}.c"], tmp_path / f"{name}.elf", **build_options)


def fnv1a64(data: bytes) -> int:
    h = 0xcbf29ce484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001b3) & (2**64 - 1)
    return h


def e820(run: Run) -> list[tuple[int, int, int]]:
    return [tuple(int(x, 0) for x in line.split()) for line in run.lines("e820 ")]


# ---------------------------------------------------------------- hello, timing

def test_hello_pvh_boots_and_exits_with_status_0(tmp_path):
    image = guest("hello", tmp_path)
    run = boot(image)
    assert "hello from pyrite" in run.output
    assert run.exited_with(0), run.stderr
    print(f"\nhello under QEMU (PVH): {run.seconds * 1000:.0f} ms wall, image {image.stat().st_size} bytes")


def test_hello_image_is_small_and_standard(tmp_path):
    """One ELF64 file: e_entry is the 64-bit Linux entry, the PVH note gives the 32-bit one.
    At most 32 KiB of it is loaded (the symbol table, kept for crash reports, is not)."""
    data = guest("hello", tmp_path).read_bytes()
    assert describe_image(data).loaded_size <= 32 * 1024
    assert data[:5] == b"\x7fELF\x02"
    e_entry, e_phoff = struct.unpack_from("<QQ", data, 0x18)
    e_phnum = struct.unpack_from("<H", data, 0x38)[0]
    notes = []
    for i in range(e_phnum):
        p_type, _, p_offset, p_vaddr, p_paddr, p_filesz = struct.unpack_from("<IIQQQQ", data, e_phoff + 56 * i)
        if p_type == 1:
            assert p_paddr >= 0x100000, "loaded below 1 MiB"
        if p_type == 4:
            namesz, descsz, ntype = struct.unpack_from("<III", data, p_offset)
            notes.append((data[p_offset + 12:p_offset + 12 + namesz], ntype,
                          struct.unpack_from("<I", data, p_offset + 16)[0]))
    assert len(notes) == 1 and notes[0][:2] == (b"Xen\0", 18)
    pvh_entry = notes[0][2]
    assert pvh_entry != e_entry and 0x100000 <= pvh_entry < 0x200000 and 0x100000 <= e_entry < 0x200000


# ---------------------------------------------------------------- boot contracts

def test_pvh_bootinfo_cmdline_memory_map_initrd_and_cpus(tmp_path):
    initrd = tmp_path / "initrd.bin"
    initrd.write_bytes(os.urandom(5000) + b"end")
    cmdline = 'alpha "two words" KEY=value -- gamma=1'
    run = boot(guest("bootinfo", tmp_path), append=cmdline, initrd=initrd, smp=2)
    assert run.exited_with(0), run.output + run.stderr
    assert run.value("protocol") == "pvh"
    assert run.value("cmdline") == cmdline
    assert [run.value(f"argv[{i}]") for i in range(int(run.value("argc")))] == \
        ["bootinfo", "alpha", "two words", "gamma=1"]
    assert run.lines("env ") == ["KEY=value"]
    # QEMU's map for 128 MiB: low RAM below the EBDA, and RAM from 1 MiB to the top.
    ram = [(a, s) for a, s, t in e820(run) if t == 1]
    assert (0, 0x9FC00) in ram
    assert (0x100000, 128 * 2**20 - 0x100000) in ram
    [(addr, size, digest)] = [line.split() for line in run.lines("initrd ")]
    assert int(size, 16) == initrd.stat().st_size
    assert int(digest, 16) == fnv1a64(initrd.read_bytes())
    assert int(addr, 16) % 4096 == 0
    assert run.lines("cpus=") == ["2 source=acpi"]   # QEMU microvm describes CPUs by ACPI, not an MP table


def test_multiboot_variant_boots_with_info_modules_and_memory_map(tmp_path):
    initrd = tmp_path / "initrd.bin"
    initrd.write_bytes(os.urandom(3000))
    image = guest("bootinfo", tmp_path, protocol="multiboot")
    run = boot(image, append="one two X=1", initrd=initrd)
    assert run.exited_with(0), run.output + run.stderr
    assert run.value("protocol") == "multiboot"
    # QEMU (like GRUB) puts the kernel's path first; it is argv[0]'s place, not an argument.
    assert run.value("cmdline") == f"{image} one two X=1"
    assert [run.value(f"argv[{i}]") for i in range(int(run.value("argc")))] == ["bootinfo", "one", "two"]
    assert run.lines("env ") == ["X=1"]
    assert (0x100000, 128 * 2**20 - 0x100000, 1) in e820(run)
    [(_, size, digest)] = [line.split() for line in run.lines("initrd ")]
    assert (int(size, 16), int(digest, 16)) == (3000, fnv1a64(initrd.read_bytes()))


def test_multiboot_image_has_header_and_no_pvh_note(tmp_path):
    data = guest("hello", tmp_path, protocol="multiboot").read_bytes()
    offset = data.find(struct.pack("<I", 0x1BADB002))
    assert 0 <= offset < 8192 and offset % 4 == 0
    magic, flags, checksum = struct.unpack_from("<III", data, offset)
    assert (magic + flags + checksum) & 0xFFFFFFFF == 0
    header_addr, load_addr, load_end, bss_end, entry = struct.unpack_from("<5I", data, offset + 12)
    assert header_addr - load_addr == offset                      # file offset 0 loads at load_addr
    assert entry == struct.unpack_from("<Q", data, 0x18)[0]         # e_entry is the multiboot entry
    assert b"Xen\0" not in data


def test_default_command_line_is_used_when_none_is_given(tmp_path):
    image = build_image([GUESTS / "bootinfo.c"], tmp_path / "b.elf", cmdline="from-image FLAVOUR=baked")
    run = boot(image)
    assert run.value("argv[1]") == "from-image"
    assert run.lines("env ") == ["FLAVOUR=baked"]
    run = boot(image, append="given")
    assert run.value("argv[1]") == "given" and run.lines("env ") == []


def test_all_ram_is_mapped_above_4_gib_too(tmp_path):
    run = boot(guest("memtouch", tmp_path), mem="4608M")
    regions = run.lines("ram ")
    assert run.exited_with(0), run.output
    assert any(line.startswith("0x100000000 ") for line in regions)     # QEMU puts 1.5 GiB above 4 GiB
    assert all(line.endswith(" ok") for line in regions) and len(regions) >= 2


@pytest.mark.parametrize("ring0", [False, pytest.param(True, marks=needs_native_cpl0)], ids=["ring3", "ring0"])
def test_ring0_and_ring3_builds_both_boot(tmp_path, ring0):
    run = boot(guest("bootinfo", tmp_path, ring0=ring0), append="x")
    assert run.exited_with(0) and run.value("argv[1]") == "x"


# ---------------------------------------------------------------- exit status

@pytest.mark.parametrize("status,how", [(0, "return"), (1, "return"), (42, "exit"), (255, "exit"), (256 + 7, "return")])
def test_exit_status_reaches_the_exit_port(tmp_path, status, how):
    run = boot(guest("exit_code", tmp_path), append=f"{status} {how}")
    assert f"exiting with {status}" in run.output
    assert run.exited_with(status & 0xFF)


# ---------------------------------------------------------------- serial input

def test_serial_input_by_interrupts(tmp_path):
    """Each line is sent only once the guest waits for it (halted), so only the UART's
    interrupt can wake it."""
    image = guest("serial_echo", tmp_path)
    proc = subprocess.Popen([QEMU, *QEMU_ARGS, "-m", "128M", "-kernel", str(image)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ready irq=1\n"
        lines = [b"first line", b"second, longer line of input than a 16-byte FIFO holds"]
        for line in lines:
            time.sleep(0.05)                 # the guest is asleep in hlt by now
            proc.stdin.write(line + b"\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == b"echo:" + line + b"\n"
        proc.stdin.write(b"quit\n")
        proc.stdin.flush()
        interrupts = proc.stdout.readline()
        assert proc.wait(timeout=10) == (2 << 1) | 1
    finally:
        proc.kill()
        proc.wait()
    assert interrupts.startswith(b"interrupts=") and int(interrupts.split(b"=")[1]) >= 3


def test_serial_input_typed_ahead_is_not_lost(tmp_path):
    run = boot(guest("serial_echo", tmp_path), stdin=b"early one\nearly two\nquit\n")
    assert run.lines("echo:") == ["early one", "early two"]
    assert run.exited_with(2)


# ---------------------------------------------------------------- crashes

@pytest.mark.parametrize("what,vector,name", [("div0", 0, "#DE"), ("ud", 6, "#UD"), ("null", 14, "#PF")])
@pytest.mark.parametrize("ring0", [False, pytest.param(True, marks=needs_native_cpl0)], ids=["ring3", "ring0"])
def test_exceptions_print_a_crash_report_and_exit_128_plus_vector(tmp_path, what, vector, name, ring0):
    run = boot(guest("crash", tmp_path, ring0=ring0), append=what)
    assert f"pyrite: crash: {name}" in run.output and f"(vector {vector})" in run.output
    assert "rip=0x" in run.output and "rsp=" in run.output and "stack:" in run.output
    assert f"cpl={0 if ring0 else 3}" in run.output
    if what == "null":
        assert "cr2=0x0000000000000000 (write not present" in run.output
    assert "unreachable" not in run.output
    assert run.exited_with(128 + vector)


def test_triple_fault_resets_the_vm(tmp_path):
    run = boot(guest("triple_fault", tmp_path))
    assert "breaking the IDT" in run.output and "unreachable" not in run.output
    assert run.qemu_status == 0          # -no-reboot: QEMU ends on the reset instead of rebooting


# ---------------------------------------------------------------- CPL 3 speed

def spin_fields(run: Run) -> dict[str, str]:
    return dict(kv.split("=") for kv in run.output.split("spin ", 1)[1].split())


def test_spin_loop_computes_what_the_host_computes(tmp_path):
    run = boot(guest("spin", tmp_path), append="1000")
    x = 0
    for i in range(1000):
        x = (x * 6364136223846793005 + i) & (2**64 - 1)
    assert run.exited_with(0)
    assert int(spin_fields(run)["checksum"], 16) == x


def test_spin_loop_runs_natively_at_cpl3(tmp_path):
    iterations = 100_000_000
    run = boot(guest("spin", tmp_path), append=str(iterations))
    assert run.exited_with(0)
    fields = spin_fields(run)
    assert int(fields["iterations"]) == iterations
    # Emulated CPL 0 would take ~500 ns an instruction: 10^8 iterations would need minutes.
    assert run.seconds < 20
    print(f"\nspin 1e8 under QEMU: {run.seconds:.2f} s wall, "
          f"{int(fields['cycles']) / iterations:.2f} TSC cycles/iteration")


# ---------------------------------------------------------------- the C library against glibc

def host_output(name: str, tmp_path: Path, args: list[str], env: dict[str, str] | None = None) -> str:
    """Stdout of the same guest source built for the host with glibc."""
    exe = tmp_path / f"{name}.host"
    subprocess.run(["gcc", "-O2", "-w", str(GUESTS / f"{name}.c"), "-o", str(exe)], check=True)
    return subprocess.run([str(exe), *args], capture_output=True, check=True, text=True, env=env or {}).stdout


def test_printf_family_prints_what_glibc_prints(tmp_path):
    run = boot(guest("formats", tmp_path))
    assert run.exited_with(0)
    assert run.output == host_output("formats", tmp_path, [])


def test_malloc_stress_matches_glibc_checksum(tmp_path):
    args = ["20000", "12345"]
    run = boot(guest("malloc_stress", tmp_path), append=" ".join(args))
    expected = host_output("malloc_stress", tmp_path, args)
    assert "corrupt=0 big=ok" in expected
    assert run.output == expected
    assert run.exited_with(0)


def test_string_ctype_stdlib_and_environment_behave_like_glibc(tmp_path):
    run = boot(guest("stdlib_check", tmp_path), append="GREETING=hello")
    assert run.exited_with(0)
    assert run.output == host_output("stdlib_check", tmp_path, [], env={"GREETING": "hello"})


# ---------------------------------------------------------------- clocks

def test_monotonic_clock_keeps_real_time(tmp_path):
    """nanosleep(500 ms) by the guest's TSC clock takes 500 ms of the host's time."""
    run = boot(guest("clock", tmp_path), append="500")
    assert run.exited_with(0)
    hz, source = run.value("tsc_hz").split(" source=")
    assert int(hz) > 100_000_000 and source != "guess"
    assert 500_000_000 <= int(run.value("slept_ns")) < 600_000_000
    assert 0.5 <= run.seconds < 5
    assert run.value("clock_advanced") == "1" and run.value("invalid_rejected") == "1"
