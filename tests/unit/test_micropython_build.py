"""The Python image build's own logic, without MicroPython's source or a VM: import checks,
source patching, command-line parsing, the manifest handed to makemanifest.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from pyrite.unikernel.micropython import build, source
from pyrite.unikernel.micropython.cli import UsageError, is_python_build, parse_build
from pyrite.unikernel.micropython.imports import builtin_modules, check_imports, files_modules, imported_names


def test_imports_inside_try_are_not_checked(tmp_path):
    app = tmp_path / "app.py"
    app.write_text("import os, json.decoder\nfrom re import sub\nfrom . import sibling\n"
                   "try:\n    import yaml\nexcept ImportError:\n    yaml = None\n"
                   "def f():\n    import heapq\n")
    assert imported_names(app) == [("os", 1), ("json", 1), ("re", 2), ("heapq", 9)]


def test_missing_import_message_names_file_line_and_module(tmp_path):
    app = tmp_path / "app.py"
    app.write_text("import os\n\nimport requests\n")
    problems = check_imports([app], {"os"})
    assert problems == [f"{app}:3: import requests: no module named 'requests' in the image "
                        "(add it with --module requests.py or --module requests/, or put it in the --files directory)"]


def test_source_cpython_cannot_parse_is_left_to_mpy_cross(tmp_path):
    app = tmp_path / "app.py"
    app.write_text("print('unclosed'\n")
    assert imported_names(app) == []


def test_builtin_modules_come_from_moduledefs_with_u_aliases(tmp_path):
    defs = tmp_path / "moduledefs.h"
    defs.write_text("#define MODULE_DEF_JSON { MP_ROM_QSTR(MP_QSTR_json), MP_ROM_PTR(&mp_module_json) },\n"
                    "#define MODULE_DEF_SYS { MP_ROM_QSTR(MP_QSTR_sys), MP_ROM_PTR(&mp_module_sys) },\n")
    assert builtin_modules(defs) == {"json", "sys", "ujson", "usys"}


def test_files_tree_modules_at_root_and_in_lib(tmp_path):
    (tmp_path / "lib" / "pkg").mkdir(parents=True)
    (tmp_path / "top.py").write_text("")
    (tmp_path / "lib" / "deep.mpy").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    assert files_modules(tmp_path) == {"top", "lib", "pkg", "deep"}
    assert files_modules(None) == set()


def test_patches_apply_once_or_fail_naming_the_file(tmp_path, monkeypatch):
    (tmp_path / "a.c").write_text("int x;\nint y;\n")
    monkeypatch.setattr(source, "PATCHES", (("a.c", "int y;\n", "int y = 1;\n"),))
    source._apply_patches(tmp_path)
    assert (tmp_path / "a.c").read_text() == "int x;\nint y = 1;\n"
    with pytest.raises(source.SourceError, match="a.c: the text to patch occurs 0 times"):
        source._apply_patches(tmp_path)


def test_python_build_options():
    assert is_python_build(["app.py", "-o", "x.img"]) and not is_python_build(["app.c", "-o", "x.img"])
    opts = parse_build(["app.py", "--module", "m.py", "--module=pkg", "--mem-mib", "64", "--name", "svc"])
    assert opts["main"] == Path("app.py") and opts["output"] == "app.img"
    assert opts["modules"] == [Path("m.py"), Path("pkg")] and opts["mem_mib"] == 64 and opts["name"] == "svc"
    for bad, words in ((["app.py", "--mem-mib", "0"], "--mem-mib 0"), (["app.py", "two.py"], "give one program"),
                       (["app.py", "--ring0"], "unknown option --ring0"), (["app.py", "-o"], "-o needs a value"),
                       (["--files", "."], "no program given")):
        with pytest.raises(UsageError, match=words):
            parse_build(bad)


def test_manifest_freezes_program_modules_and_packages(tmp_path, monkeypatch):
    monkeypatch.setattr(source, "source_tree", lambda: Path("/mpy"))
    (tmp_path / "pkg").mkdir()
    program = build.Program(tmp_path / "app.py", (tmp_path / "pkg", tmp_path / "helper.py"))
    text = build._manifest(program, {"asyncio"})
    assert f"module('app.py', base_path={str(tmp_path)!r})" in text
    assert f"package('pkg', base_path={str(tmp_path)!r})" in text
    assert f"module('helper.py', base_path={str(tmp_path)!r})" in text
    assert "package('asyncio', base_path='/mpy/extmod')" in text
    assert f"module('os.py', base_path={str(build.PORT_MODULES_DIR)!r})" in text
