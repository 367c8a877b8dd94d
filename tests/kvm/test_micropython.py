"""Python unikernels (MicroPython on the library OS), booted under pyrite, QEMU and Firecracker.

The MicroPython source (Debian's package) is fetched into the pyrite cache on first use, and
mpy-cross, the core library and the host unix reference are built there once.
"""
from __future__ import annotations

import json
import signal
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pyrite.unikernel.micropython import build as mpbuild

REPO = Path(__file__).resolve().parents[2]
PYRITE = [sys.executable, "-m", "pyrite.cli"]

pytestmark = [
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed (apt-get install gcc)"),
    pytest.mark.skipif(shutil.which("make") is None, reason="make not installed (apt-get install make)"),
]
needs_kvm = pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK), reason="/dev/kvm missing or not accessible")

# Deterministic computations whose printed results must be the same, byte for byte, in the
# unikernel and in the host unix port built with the same options (doubles included).
COMPUTE = """
import math, cmath, json, re, struct, binascii, hashlib, collections, heapq, io, sys
xs = [math.sqrt(2), math.exp(1.5), math.log(10), math.sin(1e10), math.atan2(-1, -3), math.pow(3.1, 2.7),
      math.gamma(4.5), math.lgamma(0.3), math.erf(0.7), 1 / 3, 2.5e-308, 1.5e308 * 1.1, 0.1 + 0.2]
print([repr(x) for x in xs])
print(struct.pack("<d", math.tan(0.9)).hex(), "%.17g %g %e %f" % (math.pi, 1e-7, 12345.678, 2 / 7))
print(float("1e23"), float("-0.0"), math.isnan(float("nan")), int(1e20), round(2.675, 2))
print(cmath.sqrt(-2), cmath.exp(1j * math.pi), abs(3 + 4j))
print(2 ** 200 // 3 ** 50, (-7) ** 31 % 1000003, hex(2 ** 100 - 1), int("9" * 40) * int("7" * 30))
print(json.dumps({"a": [1, 2.5, None, True], "b": "x\\ny"}), json.loads('{"k": [1e3, -2]}'))
m = re.match(r"(\\w+)@(\\w+)\\.com", "user@example.com"); print(m.group(1), m.group(2))
print(re.sub(r"[aeiou]", "_", "pyrite unikernels"), re.compile(r",\\s*").split("a, b,c"))
print(binascii.hexlify(b"pyrite"), binascii.b2a_base64(b"hello"), binascii.crc32(b"abc"))
print(hashlib.sha256(b"abc").digest().hex())
d = collections.OrderedDict(); d["z"] = 1; d["a"] = 2; print(list(d.items()))
q = collections.deque((), 5); [q.append(i) for i in range(8)]; print(list(q))
h = [5, 1, 4, 2]; heapq.heapify(h); print([heapq.heappop(h) for _ in range(4)])
s = io.StringIO(); s.write("abc"); print(s.getvalue(), io.BytesIO(b"xy").read())
print(sorted({"b": 1, "a": 2}), [x * x for x in range(10) if x % 3], "%08.3f|%-6s|%x" % (3.14159, "ab", 255))
"""


@pytest.fixture(scope="session")
def unix_reference() -> Path:
    return mpbuild.unix_reference()


def build_py(tmp_path: Path, source: str, name: str = "app", *extra: str) -> tuple[Path, subprocess.CompletedProcess]:
    app = tmp_path / f"{name}.py"
    app.write_text(textwrap.dedent(source))
    image = tmp_path / f"{name}.img"
    proc = subprocess.run([*PYRITE, "unikernel", "build", str(app), "-o", str(image), *extra],
                          capture_output=True, text=True, cwd=tmp_path)
    return image, proc


def image_of(tmp_path: Path, source: str, *extra: str, name: str = "app") -> Path:
    image, proc = build_py(tmp_path, source, name, *extra)
    assert proc.returncode == 0, proc.stderr
    return image


def run(image: Path, *args: str, mem_mib: int = 128, stdin: bytes | None = None, timeout: float = 60,
        extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*PYRITE, "run", "--quiet", "--mem-mib", str(mem_mib), *extra, str(image), *args],
                          input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                          capture_output=True, timeout=timeout)


# ---------------------------------------------------------------- build-time errors (no VM)

def test_syntax_error_is_reported_at_build_time_with_file_and_line(tmp_path):
    image, proc = build_py(tmp_path, "x = 1\nif x:\n    print(x\nprint('never')\n")
    assert proc.returncode == 1
    assert "app.py" in proc.stderr and "line " in proc.stderr and "SyntaxError" in proc.stderr, proc.stderr
    assert not image.exists()


def test_missing_module_is_reported_at_build_time(tmp_path):
    image, proc = build_py(tmp_path, "import json\nimport nosuchmodule\n")
    assert proc.returncode == 1
    assert "app.py:2: import nosuchmodule: no module named 'nosuchmodule'" in proc.stderr, proc.stderr
    assert not image.exists()


def test_bad_build_options_are_refused(tmp_path):
    app = tmp_path / "app.py"
    app.write_text("print(1)\n")
    for args, words in ((["--mem-mib", "lots"], "--mem-mib lots"), (["--module", str(tmp_path / "nope.py")], "nope.py"),
                        (["--files", str(tmp_path / "nodir")], "not a directory"), ([str(app)], "give one program")):
        proc = subprocess.run([*PYRITE, "unikernel", "build", str(app), "-o", str(tmp_path / "x.img"), *args],
                              capture_output=True, text=True)
        assert proc.returncode != 0 and words in proc.stderr, (args, proc.stderr)


# ---------------------------------------------------------------- programs in a VM

@needs_kvm
def test_argv_environ_and_exit_status(tmp_path):
    image = image_of(tmp_path, """
        import sys, os
        print("argv", sys.argv)
        print("env", os.environ.get("GREETING"), os.getenv("GREETING"))
        print("name", __name__, sys.platform)
        sys.exit(int(sys.argv[1]))
        """)
    proc = run(image, "7", "two words", extra=("--env", "GREETING=hi"))
    out = proc.stdout.decode()
    assert proc.returncode == 7, out + proc.stderr.decode()
    assert "argv ['app.py', '7', 'two words']" in out
    assert "env hi hi" in out and "name __main__ pyrite" in out


@needs_kvm
def test_uncaught_exception_prints_traceback_and_gives_status_1(tmp_path):
    image = image_of(tmp_path, """
        def inner():
            raise ValueError("boom")
        print("before")
        inner()
        """)
    proc = run(image)
    out = proc.stdout.decode()
    assert proc.returncode == 1
    assert "before" in out
    assert 'File "app.py", line 5, in <module>' in out and 'File "app.py", line 3, in inner' in out, out
    assert out.rstrip().endswith("ValueError: boom")


@needs_kvm
def test_sys_exit_with_a_message_prints_it_and_gives_status_1(tmp_path):
    image = image_of(tmp_path, "import sys\nsys.exit('cannot go on')\n")
    proc = run(image)
    assert proc.returncode == 1 and "cannot go on" in proc.stdout.decode()


@needs_kvm
def test_modules_and_doubles_match_the_host_unix_port(tmp_path, unix_reference):
    image = image_of(tmp_path, COMPUTE)
    guest = run(image)
    assert guest.returncode == 0, guest.stdout.decode() + guest.stderr.decode()
    host = subprocess.run([str(unix_reference), str(tmp_path / "app.py")], capture_output=True, timeout=60)
    assert host.returncode == 0, host.stderr
    assert guest.stdout.decode().replace("\r\n", "\n") == host.stdout.decode()


@needs_kvm
def test_modules_of_a_package_are_frozen_in(tmp_path):
    pkg = tmp_path / "lib" / "shapes"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .square import area\n")
    (pkg / "square.py").write_text("def area(x):\n    return x * x\n")
    (tmp_path / "helper.py").write_text("WORD = 'helped'\n")
    image = image_of(tmp_path, "import shapes, helper\nprint(shapes.area(12), helper.WORD)\n",
                     "--module", str(pkg), "--module", str(tmp_path / "helper.py"))
    proc = run(image)
    assert proc.returncode == 0 and "144 helped" in proc.stdout.decode()


@needs_kvm
def test_import_inside_try_is_an_import_error_at_run_time(tmp_path):
    image = image_of(tmp_path, "try:\n    import yaml\nexcept ImportError as e:\n    print('no yaml:', e)\n")
    proc = run(image)
    assert proc.returncode == 0 and "no yaml:" in proc.stdout.decode()


@needs_kvm
def test_heap_grows_to_the_memory_of_the_vm_and_running_out_is_memory_error(tmp_path):
    image = image_of(tmp_path, """
        import gc
        print("free_mib", (gc.mem_free() + gc.mem_alloc()) // (1024 * 1024))
        hoard = []
        try:
            while True:
                hoard.append(bytearray(1024 * 1024))
        except MemoryError:
            n = len(hoard)
            hoard = None
            gc.collect()
            print("MemoryError after", n, "MiB")
        print("still alive", sum(range(1000)))
        """)
    for mem in (64, 256):
        proc = run(image, mem_mib=mem)
        out = proc.stdout.decode()
        assert proc.returncode == 0, out + proc.stderr.decode()
        free = int(out.split("free_mib ")[1].split()[0])
        grabbed = int(out.split("MemoryError after ")[1].split()[0])
        # All memory but the C stack's (the image's default 8 MiB, in the VM's RAM) and the C library's share.
        assert free >= (mem - 8) * 0.8, out         # gc.mem_free counts what the heap can grow into
        assert grabbed >= (mem - 8) * 0.8, out
        assert "still alive 499500" in out, out


@needs_kvm
def test_image_built_for_more_memory_than_the_vm_has_refuses_to_run(tmp_path):
    image = image_of(tmp_path, "print('ran')\n", "--mem-mib", "256")
    small = run(image, mem_mib=64)
    assert small.returncode == 1
    assert b"built for 256 MiB" in small.stderr + small.stdout and b"ran" not in small.stdout
    big = run(image, mem_mib=256)
    assert big.returncode == 0 and b"ran" in big.stdout


@needs_kvm
def test_repl_runs_lines_and_ctrl_d_exits(tmp_path):
    proc = subprocess.run([*PYRITE, "micropython"], input=b"x = 6 * 7\nprint(x, 2 ** 70)\n\x04",
                          capture_output=True, timeout=60)
    out = proc.stdout.decode()
    assert proc.returncode == 0, out + proc.stderr.decode()
    assert "MicroPython v1.25.0" in out and ">>> " in out
    assert "42 1180591620717411303424" in out


@needs_kvm
def test_vsock_module_talks_to_the_host(tmp_path):
    uds = tmp_path / "v.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(f"{uds}_1234")
    listener.listen(1)
    listener.settimeout(30)
    image = image_of(tmp_path, """
        import vsock, select
        conn = vsock.connect(1234)
        conn.write(b"ping\\n")
        poller = select.poll()
        poller.register(conn, select.POLLIN)
        print("ready", len(poller.poll(10000)))
        print("got", conn.readline())
        conn.close()
        """)
    vm = subprocess.Popen([*PYRITE, "run", "--quiet", "--vsock", f"3,{uds}", str(image)], stdout=subprocess.PIPE)
    try:
        peer, _ = listener.accept()
        peer.settimeout(30)
        assert peer.recv(100) == b"ping\n"
        peer.sendall(b"pong\n")
        out, _ = vm.communicate(timeout=30)
    finally:
        vm.kill()
        listener.close()
    assert vm.returncode == 0 and b"ready 1" in out and b"got b'pong\\n'" in out, out


# ---------------------------------------------------------------- other VMMs

QEMU = shutil.which("qemu-system-x86_64")


@needs_kvm
@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
def test_same_image_same_output_on_pyrite_qemu_and_firecracker(tmp_path, firecracker_bin):
    image = image_of(tmp_path, COMPUTE + "print('argv', __import__('sys').argv)\n")
    ours = run(image, "a1")
    assert ours.returncode == 0
    expected = ours.stdout.decode().replace("\r\n", "\n")
    qemu = subprocess.run([QEMU, "-M", "microvm,x-option-roms=off,isa-serial=on,rtc=off", "-enable-kvm",
                           "-cpu", "host,-arch-capabilities", "-nodefaults", "-no-user-config", "-nographic",
                           "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-no-reboot",
                           "-m", "128M", "-kernel", str(image), "-append", "a1"],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert qemu.returncode == 1, qemu.stderr                  # status 0 -> (0 << 1) | 1
    assert qemu.stdout.decode().replace("\r\n", "\n") == expected
    config = tmp_path / "vm.json"
    config.write_text(json.dumps({"boot-source": {"kernel_image_path": str(image), "boot_args": "a1"},
                                  "machine-config": {"vcpu_count": 1, "mem_size_mib": 128}, "drives": []}))
    fc = subprocess.run([str(firecracker_bin), "--no-api", "--config-file", str(config), "--level", "Error"],
                        stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert fc.returncode == 0, fc.stderr
    assert fc.stdout.decode().replace("\r\n", "\n") == expected


@needs_kvm
def test_random_reseeds_in_each_clone_of_a_snapshot(tmp_path):
    image = image_of(tmp_path, """
        import random, time
        random.seed(42)
        print("ready")
        time.sleep(3)
        print("draw", random.getrandbits(32), random.getrandbits(32))
        """)
    state, mem = tmp_path / "vm.state", tmp_path / "vm.mem"
    vm = subprocess.Popen([*PYRITE, "run", "--quiet", "--snapshot-on-signal", f"{state},{mem}", str(image)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert vm.stdout.readline() == b"ready\n"
        vm.send_signal(signal.SIGUSR1)
        assert b"snapshot written" in vm.stderr.readline()
        original = vm.stdout.read().decode()
        assert vm.wait(timeout=30) == 0
    finally:
        vm.kill()
    clones = subprocess.run([*PYRITE, "snapshot", "clone", str(state), str(mem), "-n", "2"],
                            capture_output=True, timeout=120)
    draws = sorted(line.split("draw", 1)[1] for line in clones.stdout.decode().splitlines() if "draw" in line)
    assert len(draws) == 2, clones.stdout + clones.stderr
    unreseeded = original.split("draw", 1)[1].strip()        # seed 42's numbers, as drawn without a restore
    assert draws[0].strip() != draws[1].strip() and unreseeded not in (d.strip() for d in draws), (draws, original)


@needs_kvm
def test_micropython_test_suite_passes_in_pyrite_as_on_the_host_unix_port():
    """A part of MicroPython's own tests/ (the whole: python -m pyrite.unikernel.micropython.suite)."""
    from pyrite.unikernel.micropython.suite import compare, run_suite
    dirs = ("float", "micropython")
    pyrite, unix = run_suite("pyrite", dirs), run_suite("unix", dirs)
    report = "\n".join(compare(pyrite, unix))
    assert len(pyrite.passed) >= 100, report
    assert not set(pyrite.failed) - set(unix.failed), report
    assert set(pyrite.passed) | set(pyrite.skipped) >= set(unix.passed) - {"micropython/meminfo.py"}, report
