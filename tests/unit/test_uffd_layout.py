"""pyrite.snapshot.uffd's numbers and ctypes layouts against <linux/userfaultfd.h> as gcc
compiles it (sizeof, offsetof, macro values), so that a wrong one fails here and not as an
EINVAL from the kernel."""
from __future__ import annotations

import ctypes
import shutil
import subprocess

import pytest

from pyrite.snapshot import uffd

# (what, C expression, pyrite's value)
CHECKS = [
    ("sizeof uffdio_api", "sizeof(struct uffdio_api)", ctypes.sizeof(uffd.uffdio_api)),
    ("sizeof uffdio_range", "sizeof(struct uffdio_range)", ctypes.sizeof(uffd.uffdio_range)),
    ("sizeof uffdio_register", "sizeof(struct uffdio_register)", ctypes.sizeof(uffd.uffdio_register)),
    ("offsetof uffdio_register.mode", "offsetof(struct uffdio_register, mode)", uffd.uffdio_register.mode.offset),
    ("offsetof uffdio_register.ioctls", "offsetof(struct uffdio_register, ioctls)",
     uffd.uffdio_register.ioctls.offset),
    ("sizeof uffdio_copy", "sizeof(struct uffdio_copy)", ctypes.sizeof(uffd.uffdio_copy)),
    ("offsetof uffdio_copy.copy", "offsetof(struct uffdio_copy, copy)", uffd.uffdio_copy.copy.offset),
    ("sizeof uffdio_zeropage", "sizeof(struct uffdio_zeropage)", ctypes.sizeof(uffd.uffdio_zeropage)),
    ("offsetof uffdio_zeropage.zeropage", "offsetof(struct uffdio_zeropage, zeropage)",
     uffd.uffdio_zeropage.zeropage.offset),
    ("sizeof uffd_msg", "sizeof(struct uffd_msg)", ctypes.sizeof(uffd.uffd_msg)),
    ("offsetof uffd_msg.arg.pagefault.flags", "offsetof(struct uffd_msg, arg.pagefault.flags)",
     uffd.uffd_msg.arg0.offset),
    ("offsetof uffd_msg.arg.pagefault.address", "offsetof(struct uffd_msg, arg.pagefault.address)",
     uffd.uffd_msg.arg1.offset),
    ("offsetof uffd_msg.arg.remove.start", "offsetof(struct uffd_msg, arg.remove.start)", uffd.uffd_msg.arg0.offset),
    ("offsetof uffd_msg.arg.remove.end", "offsetof(struct uffd_msg, arg.remove.end)", uffd.uffd_msg.arg1.offset),
    ("UFFD_API", "UFFD_API", uffd.UFFD_API),
    ("UFFDIO_API", "UFFDIO_API", uffd.UFFDIO_API),
    ("UFFDIO_REGISTER", "UFFDIO_REGISTER", uffd.UFFDIO_REGISTER),
    ("UFFDIO_COPY", "UFFDIO_COPY", uffd.UFFDIO_COPY),
    ("UFFDIO_ZEROPAGE", "UFFDIO_ZEROPAGE", uffd.UFFDIO_ZEROPAGE),
    ("USERFAULTFD_IOC_NEW", "USERFAULTFD_IOC_NEW", uffd.USERFAULTFD_IOC_NEW),
    ("UFFD_FEATURE_EVENT_REMOVE", "UFFD_FEATURE_EVENT_REMOVE", uffd.UFFD_FEATURE_EVENT_REMOVE),
    ("UFFDIO_REGISTER_MODE_MISSING", "UFFDIO_REGISTER_MODE_MISSING", uffd.UFFDIO_REGISTER_MODE_MISSING),
    ("UFFD_EVENT_PAGEFAULT", "UFFD_EVENT_PAGEFAULT", uffd.UFFD_EVENT_PAGEFAULT),
    ("UFFD_EVENT_FORK", "UFFD_EVENT_FORK", uffd.UFFD_EVENT_FORK),
    ("UFFD_EVENT_REMAP", "UFFD_EVENT_REMAP", uffd.UFFD_EVENT_REMAP),
    ("UFFD_EVENT_REMOVE", "UFFD_EVENT_REMOVE", uffd.UFFD_EVENT_REMOVE),
    ("UFFD_EVENT_UNMAP", "UFFD_EVENT_UNMAP", uffd.UFFD_EVENT_UNMAP),
    ("UFFD_PAGEFAULT_FLAG_WRITE", "UFFD_PAGEFAULT_FLAG_WRITE", uffd.UFFD_PAGEFAULT_FLAG_WRITE),
    ("1 << _UFFDIO_COPY", "(1ULL << _UFFDIO_COPY)", uffd._UFFDIO_COPY_BIT),
    ("__NR_userfaultfd", "__NR_userfaultfd", uffd.SYS_userfaultfd),
]


@pytest.fixture(scope="module")
def c_answers(tmp_path_factory) -> dict[str, int]:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not found: cannot compile the <linux/userfaultfd.h> probe")
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <sys/ioctl.h>", "#include <sys/syscall.h>",
             "#include <linux/userfaultfd.h>", "int main(void) {"]
    lines += [f'  printf("%llu\\n", (unsigned long long)({expr}));' for _, expr, _ in CHECKS]
    lines += ["  return 0;", "}"]
    workdir = tmp_path_factory.mktemp("uffd_layout")
    (workdir / "probe.c").write_text("\n".join(lines) + "\n")
    build = subprocess.run([gcc, "-o", str(workdir / "probe"), str(workdir / "probe.c")],
                           capture_output=True, text=True)
    if build.returncode != 0 and "userfaultfd.h" in build.stderr and "No such file" in build.stderr:
        pytest.skip("<linux/userfaultfd.h> missing: install linux-libc-dev")
    assert build.returncode == 0, f"the probe does not compile:\n{build.stderr}"
    output = subprocess.run([str(workdir / "probe")], capture_output=True, text=True, check=True).stdout
    return {name: int(value) for (name, _, _), value in zip(CHECKS, output.split())}


@pytest.mark.parametrize("name,expected", [(name, value) for name, _, value in CHECKS], ids=[c[0] for c in CHECKS])
def test_matches_the_kernel_header(name, expected, c_answers):
    assert expected == c_answers[name], f"{name}: pyrite {expected:#x}, <linux/userfaultfd.h> {c_answers[name]:#x}"
