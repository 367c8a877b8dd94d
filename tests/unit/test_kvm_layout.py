"""Every ctypes mirror in pyrite.kvm.structs, and every number in pyrite.kvm.ioctls,
checked against the kernel headers as compiled by gcc (sizeof, offsetof, macro values)."""
from __future__ import annotations

import ctypes
import shutil
import subprocess

import pytest

from pyrite.kvm import ioctls, structs

HEADER = "/usr/include/linux/kvm.h"


def _fields(cls: type, c_path: str = "", py_offset: int = 0):
    """(C member path, offset, size, is_flexible_array) for every field, recursively.

    Anonymous ctypes members (C anonymous unions) are descended into but not named.
    """
    anonymous = getattr(cls, "_anonymous_", ())
    for name, field_type, *_ in cls._fields_:
        descriptor = getattr(cls, name)
        offset = py_offset + descriptor.offset
        path = c_path if name in anonymous else (f"{c_path}.{name}" if c_path else name)
        if name not in anonymous:
            flexible = issubclass(field_type, ctypes.Array) and field_type._length_ == 0
            yield path, offset, descriptor.size, flexible
        if issubclass(field_type, (ctypes.Structure, ctypes.Union)):
            yield from _fields(field_type, path, offset)


def _ioctl_constants() -> dict[str, int]:
    """Every KVM_* integer in ioctls.py, plus KVM_CAP_* and KVM_EXIT_* from the enums."""
    names = {name: value for name, value in vars(ioctls).items()
             if name.startswith("KVM_") and isinstance(value, int) and not isinstance(value, bool)}
    names.update({f"KVM_CAP_{cap.name}": int(cap) for cap in ioctls.Cap})
    names.update({f"KVM_EXIT_{reason.name}": int(reason) for reason in ioctls.ExitReason})
    return names


@pytest.fixture(scope="module")
def c_answers(tmp_path_factory) -> dict[str, int]:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not found: cannot compile the <linux/kvm.h> layout probe")
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <linux/kvm.h>",
             "int main(void) {"]
    for cls in structs.c_structs():
        c_type = cls._c_name_
        lines.append(f'  printf("sizeof {cls.__name__} %zu\\n", sizeof({c_type}));')
        for path, _offset, _size, flexible in _fields(cls):
            lines.append(f'  printf("offsetof {cls.__name__}.{path} %zu\\n", offsetof({c_type}, {path}));')
            if not flexible:
                lines.append(f'  printf("sizeof {cls.__name__}.{path} %zu\\n", '
                             f'sizeof((({c_type} *)0)->{path}));')
    for name in _ioctl_constants():
        lines += [f"#ifdef {name}",
                  f'  printf("value {name} %llu\\n", (unsigned long long)({name}));',
                  "#endif"]
    lines += ["  return 0;", "}"]
    workdir = tmp_path_factory.mktemp("kvm_layout")
    source = workdir / "layout.c"
    source.write_text("\n".join(lines) + "\n")
    binary = workdir / "layout"
    build = subprocess.run([gcc, "-o", str(binary), str(source)], capture_output=True, text=True)
    if build.returncode != 0 and "linux/kvm.h" in build.stderr and "No such file" in build.stderr:
        pytest.skip(f"{HEADER} missing: install linux-libc-dev")
    assert build.returncode == 0, f"layout probe does not compile:\n{build.stderr}"
    output = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    answers = {}
    for line in output.splitlines():
        kind, key, value = line.split()
        answers[f"{kind} {key}"] = int(value)
    return answers


@pytest.mark.parametrize("cls", structs.c_structs(), ids=lambda cls: cls.__name__)
def test_struct_layout_matches_kernel_header(cls, c_answers):
    mismatches = []
    if ctypes.sizeof(cls) != c_answers[f"sizeof {cls.__name__}"]:
        mismatches.append(f"sizeof: ctypes {ctypes.sizeof(cls)}, C {c_answers[f'sizeof {cls.__name__}']}")
    for path, offset, size, flexible in _fields(cls):
        c_offset = c_answers[f"offsetof {cls.__name__}.{path}"]
        if offset != c_offset:
            mismatches.append(f"offsetof {path}: ctypes {offset}, C {c_offset}")
        if not flexible and size != c_answers[f"sizeof {cls.__name__}.{path}"]:
            mismatches.append(f"sizeof {path}: ctypes {size}, C {c_answers[f'sizeof {cls.__name__}.{path}']}")
    assert not mismatches, f"{cls._c_name_}: " + "; ".join(mismatches)


def test_every_mirrored_struct_is_checked():
    names = {cls.__name__ for cls in structs.c_structs()}
    # The structs the KVM handles pass to ioctls must all be among the checked ones.
    for required in ("kvm_run", "kvm_regs", "kvm_sregs", "kvm_fpu", "kvm_msrs", "kvm_cpuid2",
                     "kvm_userspace_memory_region", "kvm_irqchip", "kvm_pit_state2",
                     "kvm_vcpu_events", "kvm_xcrs", "kvm_ioeventfd", "kvm_irqfd"):
        assert required in names


@pytest.mark.parametrize("name", sorted(_ioctl_constants()))
def test_number_matches_kernel_header(name, c_answers):
    expected = c_answers.get(f"value {name}")
    assert expected is not None, f"{name} is not defined by {HEADER}"
    assert _ioctl_constants()[name] == expected, f"{name}: pyrite {_ioctl_constants()[name]:#x}, C {expected:#x}"


def test_key_ioctls_against_c_macros(c_answers):
    for name in ("KVM_RUN", "KVM_SET_USER_MEMORY_REGION", "KVM_GET_SUPPORTED_CPUID", "KVM_GET_MSRS",
                 "KVM_SET_CPUID2", "KVM_GET_SREGS", "KVM_IOEVENTFD", "KVM_IRQFD", "KVM_SET_IRQCHIP"):
        assert getattr(ioctls, name) == c_answers[f"value {name}"], name


def test_sized_variable_length_struct_keeps_header_layout():
    msrs = structs.with_entries(structs.kvm_msrs, 3)
    assert ctypes.sizeof(msrs) == ctypes.sizeof(structs.kvm_msrs) + 3 * ctypes.sizeof(structs.kvm_msr_entry)
    assert msrs.entries.offset == structs.kvm_msrs.entries.offset
    assert structs.with_entries(structs.kvm_msrs, 3) is msrs   # cached
