"""pyrite.arch.x86_64.loader.symbols: addresses to function+offset, checked against
binutils' nm on a real image (no KVM needed; gcc and nm are)."""
from __future__ import annotations

import shutil
import struct
import subprocess

import pytest

from pyrite.arch.x86_64.loader.symbols import elf_symbolizer, parse_symbols

needs_toolchain = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("nm") is None,
                                     reason="gcc and binutils needed (apt-get install gcc binutils)")


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    from pyrite.unikernel.build import build_image
    cache = tmp_path_factory.mktemp("cache")
    src = cache / "app.c"
    src.write_text("#include <stdio.h>\n"
                   "int helper(int x) { return x * 3 + 1; }\n"
                   "int main(int argc, char **argv) { printf(\"%d\\n\", argc); return helper(argc); }\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYRITE_CACHE", str(cache))
        return build_image([src], cache / "app.img", cflags=["-fno-inline"])

def nm_functions(path) -> list[tuple[int, int, str]]:
    """(address, size, name) of every sized text symbol (weak ones too), as nm sees them."""
    out = subprocess.run(["nm", "-S", "--defined-only", str(path)], capture_output=True, text=True, check=True)
    found = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tTwW":          # weak: musl's aliases, weak console calls
            found.append((int(parts[0], 16), int(parts[1], 16), parts[3]))
    return found


@needs_toolchain
def test_every_function_is_named_with_its_offset(image):
    symbolize = elf_symbolizer(image.read_bytes())
    functions = nm_functions(image)
    # The application's, musl's and the library OS's functions.
    assert {"main", "helper", "printf", "__libc_start_main", "pyrite_crash"} <= {name for _, _, name in functions}
    aliases = {}                         # musl names many functions twice (weak_alias)
    for address, size, name in functions:
        aliases.setdefault((address, size), set()).add(name)
    for (address, size), names in aliases.items():
        assert symbolize(address) in {f"{name}+0x0" for name in names}
        assert symbolize(address + size - 1) in {f"{name}+{size - 1:#x}" for name in names}


@needs_toolchain
def test_assembly_labels_reach_to_the_next_symbol(image):
    """The boot entries are labels without a size; an address inside one is named by it."""
    out = subprocess.run(["nm", "-n", str(image)], capture_output=True, text=True, check=True).stdout.split("\n")
    order = [(int(line.split()[0], 16), line.split()[2]) for line in out if line]
    index = next(i for i, (_, name) in enumerate(order) if name == "pvh_entry32")
    start, next_start = order[index][0], order[index + 1][0]
    symbolize = elf_symbolizer(image)
    assert symbolize(start + 1) == "pvh_entry32+0x1"
    assert symbolize(next_start - 1).startswith("pvh_entry32+")


@needs_toolchain
def test_addresses_outside_code_name_nothing(image):
    symbolize = elf_symbolizer(image)
    bss = [int(line.split()[0], 16) for line in subprocess.run(["nm", str(image)], capture_output=True,
                                                               text=True).stdout.splitlines()
           if line.split()[-1] == "__bss_start"][0]
    assert symbolize(0) is None and symbolize(bss) is None and symbolize(2**64 - 1) is None


def test_construction_reads_nothing_until_the_first_lookup(tmp_path):
    path = tmp_path / "later.img"
    symbolize = elf_symbolizer(path)          # no file yet: fine, nothing is read
    path.write_bytes(b"not an ELF file at all")
    assert symbolize(0x100000) is None


def test_images_without_symbols_name_nothing():
    assert elf_symbolizer(b"")(0x1000) is None
    assert elf_symbolizer(b"\x7fELF" + bytes(60))(0x1000) is None        # no section table
    # ELF64 header whose section table lies past the end of the file
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x28, 10_000)
    struct.pack_into("<HH", header, 0x3A, 64, 3)
    assert len(parse_symbols(bytes(header))) == 0
    assert elf_symbolizer(bytes(header))(0) is None


@needs_toolchain
def test_stripped_image_names_nothing(image, tmp_path):
    stripped = tmp_path / "stripped.img"
    subprocess.run(["strip", "-o", str(stripped), str(image)], check=True)
    address = nm_functions(image)[0][0]
    assert elf_symbolizer(stripped)(address) is None
