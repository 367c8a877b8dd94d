"""pyrite.unikernel.build: compiling images with the host gcc (no KVM needed)."""
from __future__ import annotations

import shutil
import struct
import time

import pytest

from pyrite.unikernel import build
from pyrite.unikernel.build import BuildError, build_image

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed (apt-get install gcc)")


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Image cache in a per-session directory (library OS objects are shared across tests)."""
    monkeypatch.setenv("PYRITE_CACHE", str(tmp_path_factory.getbasetemp() / "pyrite-cache"))


def write(path, text):
    path.write_text(text)
    return path


def info_section(image: bytes) -> dict[str, str]:
    start = image.index(b"pyrite-info\0")
    fields = image[start:].split(b"\0")[1:4]
    return dict(f.decode().split("=", 1) for f in fields)


def test_compiler_errors_are_shown_as_gcc_gave_them(tmp_path):
    src = write(tmp_path / "broken.c", "int main(void) { return undeclared_name; }\n")
    with pytest.raises(BuildError) as e:
        build_image([src])
    assert "broken.c:1:" in str(e.value)
    assert "undeclared_name" in str(e.value) and "error:" in str(e.value)


def test_missing_main_is_a_clear_message(tmp_path):
    src = write(tmp_path / "nomain.c", "int helper(void) { return 1; }\n")
    with pytest.raises(BuildError, match=r"no main\(\) in .*nomain\.c"):
        build_image([src])


def test_missing_gcc_is_a_clear_message(tmp_path, monkeypatch):
    src = write(tmp_path / "app.c", "int main(void) { return 0; }\n")
    monkeypatch.setenv("PYRITE_GCC", "no-such-gcc-anywhere")
    build._gcc.cache_clear()
    try:
        with pytest.raises(BuildError, match="gcc not found: install gcc"):
            build_image([src])
    finally:
        build._gcc.cache_clear()


def test_bad_inputs_name_the_input(tmp_path):
    with pytest.raises(BuildError, match="missing.c: no such source file"):
        build_image([tmp_path / "missing.c"])
    txt = write(tmp_path / "notes.txt", "x")
    with pytest.raises(BuildError, match="notes.txt: not a C or assembly source"):
        build_image([txt])
    src = write(tmp_path / "app.c", "int main(void) { return 0; }\n")
    with pytest.raises(BuildError, match="unknown boot protocol 'uefi'"):
        build_image([src], protocol="uefi")


def test_images_are_cached_by_content(tmp_path):
    src = write(tmp_path / "app.c", "int main(void) { return 3; }\n")
    first = build_image([src])
    mtime = first.stat().st_mtime_ns
    start = time.perf_counter()
    assert build_image([src]) == first
    assert time.perf_counter() - start < 0.5 and first.stat().st_mtime_ns == mtime
    write(src, "int main(void) { return 4; }\n")
    assert build_image([src]) != first
    assert build_image([src], ring0=True) != build_image([src])


def test_several_sources_and_user_cflags(tmp_path):
    a = write(tmp_path / "a.c", "int twice(int);\nint main(void) { return twice(VALUE); }\n")
    b = write(tmp_path / "b.c", "int twice(int x) { return 2 * x; }\n")
    out = build_image([a, b], tmp_path / "app.img", cflags=["-DVALUE=21"])
    assert out == tmp_path / "app.img" and out.read_bytes()[:4] == b"\x7fELF"
    with pytest.raises(BuildError, match="VALUE"):
        build_image([a, b])               # VALUE undefined without the flag


def test_info_section_carries_version_name_and_default_cmdline(tmp_path):
    src = write(tmp_path / "app.c", "int main(void) { return 0; }\n")
    cmdline = 'say "hi there" PATH=/x\\y'
    image = build_image([src], tmp_path / "greeter.img", cmdline=cmdline).read_bytes()
    assert info_section(image) == {"version": build.LIBOS_VERSION, "name": "greeter", "cmdline": cmdline}


def test_entry_points_per_protocol(tmp_path):
    src = write(tmp_path / "app.c", "int main(void) { return 0; }\n")

    def elf(image):
        data = image.read_bytes()
        e_entry, e_phoff = struct.unpack_from("<QQ", data, 0x18)
        types = [struct.unpack_from("<I", data, e_phoff + 56 * i)[0]
                 for i in range(struct.unpack_from("<H", data, 0x38)[0])]
        return data, e_entry, types

    data, entry, types = elf(build_image([src], tmp_path / "pvh.img"))
    assert 4 in types and b"Xen\0" in data and struct.pack("<I", 0x1BADB002) not in data
    data, entry_no_note, types = elf(build_image([src], tmp_path / "plain.img", pvh_note=False))
    assert 4 not in types and b"Xen\0" not in data
    data, mb_entry, types = elf(build_image([src], tmp_path / "mb.img", protocol="multiboot"))
    assert 4 not in types and struct.pack("<I", 0x1BADB002) in data[:8192]
    assert mb_entry != entry
