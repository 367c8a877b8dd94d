"""pyrite-cc, the compiler driver, as make and configure scripts run it (subprocess, in the
caller's directory). No KVM needed; gcc is. Images it links are booted in
tests/kvm/test_real_programs.py."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from pyrite.unikernel.cmdline import is_pyrite_image

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed (apt-get install gcc)")
CC = [sys.executable, "-m", "pyrite.unikernel.cc"]


@pytest.fixture
def project(tmp_path):
    """A small project: include/, lib/ with a library, src/ with the program."""
    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "twice.h").write_text("int twice(int);\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "twice.c").write_text('#include "twice.h"\nint twice(int x) { return 2 * x; }\n')
    (tmp_path / "main.c").write_text('#include <stdio.h>\n#include <math.h>\n#include "twice.h"\n'
                                     'int main(void) { printf("%d %.3f\\n", twice(VALUE), sqrt(2.0)); return 0; }\n')
    return tmp_path


def cc(*args, cwd, env=None):
    return subprocess.run([*CC, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_make_style_build_with_relative_paths_objects_archives_and_libraries(project):
    r = cc("-Iinclude", "-c", "lib/twice.c", "-o", "lib/twice.o", cwd=project)
    assert r.returncode == 0, r.stderr
    subprocess.run(["ar", "rcs", "lib/libtwice.a", "lib/twice.o"], cwd=project, check=True)
    r = cc("-I", "include", "-DVALUE=21", "-O2", "-g", "-Wall", "-std=c99", "-MMD", "-MP", "-c", "main.c", cwd=project)
    assert r.returncode == 0, r.stderr
    assert (project / "main.o").is_file()
    assert (project / "main.d").read_text().startswith("main.o: main.c include/twice.h")
    r = cc("main.o", "-Llib", "-ltwice", "-lm", "-o", "app", cwd=project)
    assert r.returncode == 0, r.stderr
    assert is_pyrite_image(project / "app") and os.access(project / "app", os.X_OK)
    r = cc("main.o", "lib/libtwice.a", cwd=project)               # archive as an input; a.out by default
    assert r.returncode == 0 and is_pyrite_image(project / "a.out")


def test_compile_and_link_in_one_step_and_the_images_name(project):
    r = cc("-Iinclude", "-DVALUE=1", "main.c", "lib/twice.c", "-o", "prog", cwd=project)
    assert r.returncode == 0, r.stderr
    assert b"name=prog\0" in (project / "prog").read_bytes()


def test_a_source_on_standard_input(project):
    r = subprocess.run([*CC, "-x", "c", "-", "-o", "fromstdin"], cwd=project, capture_output=True, text=True,
                       input="int main(void) { return 3; }\n")
    assert r.returncode == 0, r.stderr
    assert is_pyrite_image(project / "fromstdin")
    r = subprocess.run([*CC, "-c", "-"], cwd=project, capture_output=True, text=True, input="int x;\n")
    assert r.returncode == 1 and "-x LANGUAGE is needed" in r.stderr


def test_stack_size_is_a_link_option(project):
    r = cc("-Iinclude", "-DVALUE=1", "main.c", "lib/twice.c", "-o", "prog", "--stack-size=64K", cwd=project)
    assert r.returncode == 0, r.stderr
    assert b"\0stack=65536\0" in (project / "prog").read_bytes()
    r = cc("-Iinclude", "-DVALUE=1", "main.c", "lib/twice.c", "-o", "prog", "--stack-size", "lots", cwd=project)
    assert r.returncode == 1 and "stack size 'lots'" in r.stderr, r.stderr


def test_errors_name_the_problem(project):
    r = cc("-c", "main.c", cwd=project)                               # twice.h not found without -I
    assert r.returncode == 1 and "twice.h" in r.stderr and "No such file" in r.stderr
    r = cc("-Iinclude", "-DVALUE=1", "main.c", "-o", "app", cwd=project)
    assert r.returncode == 1 and "undefined reference to `twice'" in r.stderr
    r = cc("main.o", "-lnosuch", cwd=project)
    assert r.returncode == 1
    r = cc("-Iinclude", "-DVALUE=1", "-c", "main.c", cwd=project)
    r = cc("main.o", "-lnosuch", "-Llib", cwd=project)
    assert r.returncode == 1 and "cannot find -lnosuch: no libnosuch.a in" in r.stderr
    r = cc("-shared", "lib/twice.c", cwd=project)
    assert r.returncode == 1 and "-shared: a pyrite image is one static executable" in r.stderr
    r = cc("-o", cwd=project)
    assert r.returncode == 1 and "missing argument to '-o'" in r.stderr
    r = cc("-Wall", cwd=project)
    assert r.returncode == 1 and "no input files" in r.stderr


def test_preprocessing_and_assembly_use_the_guest_headers(project):
    r = cc("-E", "-Iinclude", "-DVALUE=7", "main.c", cwd=project)
    assert r.returncode == 0 and "twice(7)" in r.stdout
    assert "/usr/include/stdio.h" not in r.stdout                    # musl's, not the host's
    r = cc("-M", "-Iinclude", "main.c", cwd=project)
    assert r.returncode == 0 and r.stdout.startswith("main.o: main.c")
    r = cc("-S", "-Iinclude", "-DVALUE=7", "main.c", "-o", "main.s", cwd=project)
    assert r.returncode == 0 and "main:" in (project / "main.s").read_text()


def test_what_configure_scripts_ask(project):
    assert cc("-dumpmachine", cwd=project).stdout == "x86_64-linux-musl\n"
    version = cc("-dumpversion", cwd=project).stdout.strip()
    assert version and version[0].isdigit()
    r = cc("--version", cwd=project)
    assert r.returncode == 0 and "pyrite-cc" in r.stdout and "Free Software Foundation" in r.stdout
    assert "gcc version" in cc("-v", cwd=project).stderr              # zlib's configure looks for it
    assert cc("-print-prog-name=ld", cwd=project).stdout.strip()


def test_an_edit_recompiles_only_that_file(project, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    env = {"PYRITE_CACHE": str(cache)}
    for source in ("main.c", "lib/twice.c"):
        assert cc("-Iinclude", "-DVALUE=1", "-c", source, cwd=project, env=env).returncode == 0
    objects = set((cache / "objects").glob("*.o"))
    assert len(objects) == 2
    # Recompiling unchanged sources (even from a copy in another place) adds nothing.
    copy = tmp_path_factory.mktemp("copy")
    shutil.copytree(project, copy, dirs_exist_ok=True)
    for source in ("main.c", "lib/twice.c"):
        assert cc("-Iinclude", "-DVALUE=1", "-c", source, cwd=copy, env=env).returncode == 0
    assert set((cache / "objects").glob("*.o")) == objects
    # A header edit changes what includes it (both here); a source edit only that source.
    (project / "lib" / "twice.c").write_text('#include "twice.h"\nint twice(int x) { return x + x; }\n')
    for source in ("main.c", "lib/twice.c"):
        assert cc("-Iinclude", "-DVALUE=1", "-c", source, cwd=project, env=env).returncode == 0
    assert len(set((cache / "objects").glob("*.o")) - objects) == 1
    # Flags that change the code are part of the key.
    assert cc("-Iinclude", "-DVALUE=1", "-O0", "-c", "main.c", cwd=project, env=env).returncode == 0
    assert len(set((cache / "objects").glob("*.o")) - objects) == 2


def test_warnings_are_shown_again_when_the_object_comes_from_the_cache(project):
    (project / "warn.c").write_text("int f(void) { int unused; return 0; }\n")
    first = cc("-Wall", "-c", "warn.c", cwd=project)
    second = cc("-Wall", "-c", "warn.c", cwd=project)
    assert first.returncode == second.returncode == 0
    assert "unused variable" in first.stderr and second.stderr == first.stderr


def test_pyrite_unikernel_build_takes_relative_includes_and_libraries(project):
    assert cc("-Iinclude", "-c", "lib/twice.c", "-o", "lib/twice.o", cwd=project).returncode == 0
    subprocess.run(["ar", "rcs", "lib/libtwice.a", "lib/twice.o"], cwd=project, check=True)
    r = subprocess.run([sys.executable, "-m", "pyrite.cli", "unikernel", "build", "main.c", "-I", "include",
                        "-DVALUE=3", "-Llib", "-ltwice", "-o", "app.img"], cwd=project, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert is_pyrite_image(project / "app.img")
    r = subprocess.run([sys.executable, "-m", "pyrite.cli", "unikernel", "build", "main.c", "lib/twice.o", "-I",
                        "include", "-DVALUE=3", "-o", "app2.img"], cwd=project, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

