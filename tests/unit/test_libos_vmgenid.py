"""The library OS's VMGenID finder (libos/drivers/vmgenid.c), compiled for the host with a
stub in place of the ACPI table walk: which DSDTs it finds an ID in and which it refuses,
without an AML interpreter. No KVM needed (gcc is)."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from pyrite.arch.x86_64 import acpi
from pyrite.unikernel.build import LIBOS_DIR

ID_ADDR = 0x2000_0000            # below 4 GiB, as the finder wants; mapped by the harness

HARNESS = r"""
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

int vmgenid_read(uint8_t id[16]);
static uint8_t dsdt[8192];

const uint8_t *pyrite_acpi_table(const char *sig) { return memcmp(sig, "DSDT", 4) ? NULL : dsdt; }

/* argv[1]: the DSDT's AML in hex. Prints the ID read twice (the second after the "VMM"
 * changed its first byte in place), or "none". */
int main(int argc, char **argv)
{
    uint8_t *page = mmap((void *)0x20000000, 4096, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (page != (uint8_t *)0x20000000)
        return 2;
    for (int i = 0; i < 16; i++)
        page[i] = 0xA0 + i;
    uint32_t n = strlen(argv[1]) / 2, len = 36 + n;
    memcpy(dsdt, "DSDT", 4);
    memcpy(dsdt + 4, &len, 4);
    for (uint32_t i = 0; i < n; i++)
        sscanf(argv[1] + 2 * i, "%2hhx", &dsdt[36 + i]);
    uint8_t id[16];
    if (vmgenid_read(id) != 0) {
        puts("none");
        return 0;
    }
    page[0] = 0x55;
    uint8_t again[16];
    vmgenid_read(again);
    for (int i = 0; i < 16; i++)
        printf("%02x", id[i]);
    printf(" %02x\n", again[0]);
    return 0;
}
"""


@pytest.fixture(scope="module")
def finder(tmp_path_factory):
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not installed: cannot build the library OS's VMGenID finder for the host")
    work = tmp_path_factory.mktemp("vmgenid")
    (work / "include").mkdir()
    (work / "include" / "pyrite").symlink_to(LIBOS_DIR / "include" / "pyrite")  # host libc otherwise
    (work / "harness.c").write_text(HARNESS)
    exe = work / "finder"
    subprocess.run([gcc, "-O2", "-Wall", "-Werror", "-I", str(work / "include"), str(work / "harness.c"),
                    str(LIBOS_DIR / "drivers" / "vmgenid.c"), "-o", str(exe)], check=True)

    def find(aml: bytes) -> str:
        return subprocess.run([str(exe), aml.hex()], capture_output=True, text=True, check=True).stdout.strip()
    return find


FOUND = bytes(range(0xA0, 0xB0)).hex() + " 55"        # the ID, then its first byte read again


def vgen(*terms: bytes) -> bytes:
    return acpi._device("_SB_.VGEN", acpi._name("_CID", acpi._string("VM_Gen_Counter")), *terms)


def test_finds_the_id_in_pyrites_dsdt_and_reads_it_in_place(finder):
    # pyrite's and Firecracker 1.12.1's AML: Package(2) {DWord low, DWord high}
    assert finder(acpi.vmgenid_aml(ID_ADDR, 5) + acpi.dsdt_aml()) == FOUND


@pytest.mark.parametrize("low,high", [
    (b"\x0C" + ID_ADDR.to_bytes(4, "little"), b"\x00"),            # ZeroOp for the high half
    (b"\x0E" + ID_ADDR.to_bytes(8, "little"), b"\x0A\x00"),        # QWordConst, ByteConst 0
])
def test_any_integer_encoding_of_the_package(finder, low, high):
    assert finder(vgen(acpi._name("ADDR", acpi._package(low, high)))) == FOUND


@pytest.mark.parametrize("aml", [
    acpi.dsdt_aml(),                                                             # no VMGenID
    acpi._device("_SB_.VGEN", acpi._name("ADDR", acpi._package(acpi._dword(ID_ADDR), acpi._dword(0)))),
    vgen(acpi._method("ADDR", 0, acpi._return(acpi._package(acpi._dword(ID_ADDR), acpi._dword(0))))),
    vgen(acpi._name("ADDR", acpi._package(acpi._dword(ID_ADDR)))),             # one element
    vgen(acpi._name("ADDR", acpi._package(acpi._dword(0), acpi._dword(0)))),   # page 0
    vgen(acpi._name("ADDR", acpi._package(acpi._dword(ID_ADDR), acpi._dword(1)))),  # above 4 GiB
    vgen(acpi._name("ADDR", acpi._package(acpi._string("x"), acpi._dword(0)))),  # not integers
], ids=["no-device", "no-VM_Gen_Counter", "ADDR-a-method", "one-element", "page-0", "above-4GiB",
        "a-string"])
def test_refuses_what_it_cannot_read_safely(finder, aml):
    assert finder(aml) == "none"
