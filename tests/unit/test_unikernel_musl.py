"""pyrite.unikernel.musl: the pinned source is checked, the build is keyed by what goes
into it, the system call names come from musl's own table (no KVM needed)."""
from __future__ import annotations

import hashlib
import re

import pytest

from pyrite.unikernel import build, musl


def test_a_tarball_with_the_wrong_checksum_is_refused_and_removed(tmp_path):
    tarball = tmp_path / f"musl_{musl.MUSL_VERSION}.orig.tar.gz"
    tarball.write_bytes(b"not musl")
    with pytest.raises(musl.MuslError) as e:
        musl.fetch_source(tmp_path)
    assert hashlib.sha256(b"not musl").hexdigest() in str(e.value) and musl.MUSL_SHA256 in str(e.value)
    assert not tarball.exists()                 # the next build fetches it again


def test_the_build_key_follows_the_compiler_and_the_overlay(monkeypatch, tmp_path):
    key = musl.build_key("gcc", "12.2.0")
    assert key == musl.build_key("gcc", "12.2.0")
    assert key != musl.build_key("gcc", "13.1.0")
    overlay = tmp_path / "overlay"
    (overlay / "arch").mkdir(parents=True)
    (overlay / "arch" / "syscall_arch.h").write_text("/* one */")
    monkeypatch.setattr(musl, "OVERLAY_DIR", overlay)
    one = musl.build_key("gcc", "12.2.0")
    (overlay / "arch" / "syscall_arch.h").write_text("/* two */")
    assert one != musl.build_key("gcc", "12.2.0") and one != key


def test_the_overlay_turns_system_calls_into_calls_and_patches_apply_once():
    arch = (musl.OVERLAY_DIR / "arch" / "x86_64" / "syscall_arch.h").read_text()
    assert "__pyrite_syscall(n, a, b, c, d, e, f)" in arch and '"syscall"' not in arch
    for rel, old, new in musl.PATCHES:
        assert old != new and rel.endswith(".h")
    removed = {p.rsplit("/", 1)[1].rsplit(".", 1)[0] for p in musl.REMOVED_SOURCES}
    assert {"clone", "syscall_cp", "__set_thread_area", "vfork", "restore", "__unmapself"} == removed


def test_unsupported_call_names_leave_out_what_the_dispatcher_handles(tmp_path):
    (tmp_path / "syscall.h.in").write_text("#define __NR_read 0\n#define __NR_write 1\n#define __NR_io_setup 206\n"
                                            "#define __NR_fork 57\n")
    assert musl.syscall_names(tmp_path) == {0: "read", 1: "write", 206: "io_setup", 57: "fork"}
    source = build._syscall_names_source(tmp_path)
    assert "pyrite_syscall_names_count = 207;" in source
    names = re.findall(r'"([a-z_0-9]*)" "\\0"', source)
    assert names[206] == "io_setup"
    assert names[0] == names[1] == names[57] == ""        # read, write: dispatched; fork: a known refusal
