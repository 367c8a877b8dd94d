"""`pyrite unikernel build` and `pyrite unikernel inspect` as a user runs them (subprocess),
plus the pieces behind them: image description, argument quoting, the demo image.
No KVM needed; gcc is."""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from pyrite.unikernel.cmdline import ArgumentError, is_pyrite_image, quote_args
from pyrite.unikernel.image_info import ImageError, describe_image, read_image_info

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed (apt-get install gcc)")
GUESTS = Path(__file__).resolve().parents[1] / "guests"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The user's environment with a private image cache (shared by this module's builds)."""
    return {**os.environ, "PYRITE_CACHE": str(tmp_path_factory.mktemp("pyrite-cache"))}


def pyrite(*args, env, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyrite.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=120)


def elf_header(path: Path) -> tuple[int, int, int]:
    data = path.read_bytes()
    e_entry, e_phoff = struct.unpack_from("<QQ", data, 0x18)
    return e_entry, e_phoff, struct.unpack_from("<H", data, 0x38)[0]


def pvh_note_entry(path: Path) -> int | None:
    data = path.read_bytes()
    _, phoff, phnum = elf_header(path)
    for i in range(phnum):
        p_type, _, p_offset = struct.unpack_from("<IIQ", data, phoff + 56 * i)
        if p_type == 4:
            return struct.unpack_from("<I", data, p_offset + 16)[0]
    return None


def nm(path: Path) -> dict[str, int]:
    out = subprocess.run(["nm", str(path)], capture_output=True, text=True, check=True).stdout
    return {line.split()[2]: int(line.split()[0], 16) for line in out.splitlines() if len(line.split()) == 3}


# ------------------------------------------------------------------ build

def test_build_writes_a_bootable_image_and_says_what_it_is(tmp_path, env):
    r = pyrite("unikernel", "build", GUESTS / "hello.c", "-o", tmp_path / "hello.img", env=env)
    assert r.returncode == 0, r.stderr
    image = tmp_path / "hello.img"
    assert image.read_bytes()[:5] == b"\x7fELF\x02"
    loaded = read_image_info(image).loaded_size
    assert 0 < loaded <= 32 * 1024 and loaded < image.stat().st_size   # the symbol table is not loaded
    assert f"{image}: {loaded} bytes loaded" in r.stdout and f"the file, {image.stat().st_size} bytes" in r.stdout
    assert "PVH and Linux 64-bit" in r.stdout and "CPL 3" in r.stdout


def test_build_default_output_name_and_several_sources(tmp_path, env):
    (tmp_path / "main.c").write_text('#include "twice.h"\nint main(void) { return twice(21); }\n')
    (tmp_path / "twice.h").write_text("int twice(int);\n")
    (tmp_path / "twice.c").write_text('#include "twice.h"\nint twice(int x) { return 2 * x; }\n')
    r = pyrite("unikernel", "build", "main.c", "twice.c", "--ring0", "--cmdline", "x Y=1", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    info = read_image_info(tmp_path / "main.img")
    assert info.info["name"] == "main" and info.info["cmdline"] == "x Y=1" and info.info["privilege"] == "ring 0"


def test_editing_a_local_header_rebuilds(tmp_path, env):
    (tmp_path / "app.c").write_text('#include "value.h"\nint main(void) { return VALUE; }\n')
    (tmp_path / "value.h").write_text("#define VALUE 1\n")
    assert pyrite("unikernel", "build", "app.c", env=env, cwd=tmp_path).returncode == 0
    first = (tmp_path / "app.img").read_bytes()
    (tmp_path / "value.h").write_text("#define VALUE 2\n")
    assert pyrite("unikernel", "build", "app.c", env=env, cwd=tmp_path).returncode == 0
    assert (tmp_path / "app.img").read_bytes() != first


def test_compiler_errors_are_gccs_own_with_a_failing_status(tmp_path, env):
    src = tmp_path / "broken.c"
    src.write_text("int main(void)\n{\n    return undeclared_name;\n}\n")
    r = pyrite("unikernel", "build", src, "-o", tmp_path / "broken.img", env=env)
    assert r.returncode == 1
    # gcc's quotes follow the locale: 'x' or ‘x’
    assert re.search(rf"^{re.escape(str(src))}:3:12: error: .undeclared_name. undeclared", r.stderr, re.M)
    assert "Traceback" not in r.stderr and not (tmp_path / "broken.img").exists()


def test_warnings_are_shown_and_the_image_still_built(tmp_path, env):
    src = tmp_path / "warns.c"
    src.write_text("int main(void) { int *p = 5; return p != 0; }\n")
    r = pyrite("unikernel", "build", src, "-o", tmp_path / "warns.img", env=env)
    assert r.returncode == 0 and "warning:" in r.stderr and "warns.c:1:" in r.stderr


def test_missing_main_and_missing_gcc_are_clear_messages(tmp_path, env):
    src = tmp_path / "lib.c"
    src.write_text("int helper(void) { return 1; }\n")
    r = pyrite("unikernel", "build", src, "-o", tmp_path / "lib.img", env=env)
    assert r.returncode == 1 and "no main() in" in r.stderr and "int main(int argc, char **argv)" in r.stderr
    r = pyrite("unikernel", "build", src, "-o", tmp_path / "lib.img", env={**env, "PYRITE_GCC": "no-such-gcc"})
    assert r.returncode == 1 and r.stderr.startswith("gcc not found: install gcc")


@pytest.mark.parametrize("args,message", [
    ([], "no source files given"),
    (["app.c", "--bogus"], "unknown option --bogus"),
    (["app.c", "-o"], "-o needs a value"),
])
def test_build_usage_errors(tmp_path, env, args, message):
    r = pyrite("unikernel", "build", *args, env=env, cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr


def test_unknown_unikernel_command(env):
    r = pyrite("unikernel", "frobnicate", env=env)
    assert r.returncode == 2 and "unknown command 'frobnicate'" in r.stderr


# ------------------------------------------------------------------ inspect

@pytest.fixture(scope="module")
def images(tmp_path_factory, env):
    out = tmp_path_factory.mktemp("images")
    built = {}
    for name, extra in [("default", ["--cmdline", 'say "hi there" KEY=v']), ("ring0", ["--ring0"]),
                        ("multiboot", ["--multiboot"]), ("nonote", ["--no-pvh-note"])]:
        path = out / f"{name}.img"
        r = pyrite("unikernel", "build", GUESTS / "hello.c", "-o", path, *extra, env=env)
        assert r.returncode == 0, r.stderr
        built[name] = path
    return built


def test_inspect_prints_entries_sections_version_and_cmdline(images, env):
    image = images["default"]
    r = pyrite("unikernel", "inspect", image, env=env)
    assert r.returncode == 0, r.stderr
    e_entry, _, _ = elf_header(image)
    symbols = nm(image)
    assert symbols["linux64_entry"] == e_entry and symbols["pvh_entry32"] == pvh_note_entry(image)
    assert f"PVH           {pvh_note_entry(image):#010x} <pvh_entry32>" in r.stdout
    assert f"Linux 64-bit  {e_entry:#010x} <linux64_entry>" in r.stdout
    assert "Multiboot" not in r.stdout
    assert "library OS      0.1.0" in r.stdout and "name (argv[0])  default" in r.stdout
    assert """default cmdline 'say "hi there" KEY=v'""" in r.stdout
    sections = subprocess.run(["readelf", "-SW", str(image)], capture_output=True, text=True, check=True).stdout
    for name in (".text", ".rodata", ".data", ".bss", ".pyrite.info"):
        line = next(line for line in sections.splitlines() if f" {name} " in line)
        size = int(line.split(name)[1].split()[3], 16)
        assert any(row.split()[0] == name and int(row.split()[2]) == size
                   for row in r.stdout.splitlines() if row.strip().startswith(name)), (name, size, r.stdout)


def test_inspect_tells_the_builds_apart(images):
    def protocols(name):
        return [e.protocol for e in read_image_info(images[name]).entries]
    assert protocols("default") == ["PVH", "Linux 64-bit"]
    assert protocols("nonote") == ["Linux 64-bit"]
    assert protocols("multiboot") == ["Multiboot 1"]
    [entry] = read_image_info(images["multiboot"]).entries
    assert entry.address == elf_header(images["multiboot"])[0] and entry.symbol == "multiboot_entry32"
    assert read_image_info(images["ring0"]).info["privilege"] == "ring 0"
    assert read_image_info(images["default"]).info["privilege"].startswith("CPL 3")


def test_inspect_refuses_what_is_not_a_pyrite_image(tmp_path, env):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    r = pyrite("unikernel", "inspect", text, env=env)
    assert r.returncode == 1 and f"{text}: not an ELF file" in r.stderr
    host_elf = Path(shutil.which("gcc")).resolve()
    r = pyrite("unikernel", "inspect", host_elf, env=env)
    assert r.returncode == 1 and "not a pyrite image (no .pyrite.info section" in r.stderr
    r = pyrite("unikernel", "inspect", tmp_path / "missing.img", env=env)
    assert r.returncode == 1 and "missing.img: no such file" in r.stderr
    r = pyrite("unikernel", "inspect", env=env)
    assert r.returncode == 2 and "give one IMAGE" in r.stderr


def test_truncated_images_are_refused_naming_the_problem(images):
    data = images["default"].read_bytes()
    with pytest.raises(ImageError, match="truncated ELF header"):
        describe_image(data[:40], "short.img")
    with pytest.raises(ImageError, match="short.img: section table at .* does not fit"):
        describe_image(data[:len(data) - 100], "short.img")
    with pytest.raises(ImageError, match="ELF file for another machine"):
        describe_image(data[:4] + b"\x01" + data[5:], "elf32.img")


# ------------------------------------------------------------------ run-time helpers

def test_quote_args_round_trips_through_the_library_os_rules():
    assert quote_args(["a", "two words", "", "tab\there"]) == 'a "two words" "" "tab\there"'
    with pytest.raises(ArgumentError, match="'say \"hi\"': a double quote"):
        quote_args(['say "hi"'])
    with pytest.raises(ArgumentError, match="line breaks"):
        quote_args(["a\nb"])


def test_is_pyrite_image(images, tmp_path):
    assert all(is_pyrite_image(path) for path in images.values())
    assert not is_pyrite_image(Path(shutil.which("gcc")).resolve())
    assert not is_pyrite_image(tmp_path / "missing")
    (tmp_path / "short").write_bytes(b"\x7fELF\x02")
    assert not is_pyrite_image(tmp_path / "short")


def test_demo_image_is_built_once_and_then_found_without_gcc(tmp_path, monkeypatch):
    from pyrite.unikernel import demo
    monkeypatch.setenv("PYRITE_CACHE", str(tmp_path))
    first = demo.demo_image()
    info = read_image_info(first)
    assert info.info["name"] == "pyrite-demo" and [e.protocol for e in info.entries] == ["PVH", "Linux 64-bit"]
    monkeypatch.setenv("PYRITE_GCC", "no-such-gcc")       # a second start must not need gcc
    assert demo.demo_image() == first
