"""Build-time import check: a module the program imports unconditionally must be built in,
frozen into the image or in the --files tree; otherwise the build says which, where.
Imports inside `try:` blocks are left alone (the program handles ImportError itself)."""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Iterable


def builtin_modules(moduledefs_h: Path) -> set[str]:
    """Names of the modules compiled into the core (its genhdr/moduledefs.h)."""
    names = set(re.findall(r"MP_ROM_QSTR\(MP_QSTR_(\w+)\)", moduledefs_h.read_text()))
    # Extensible built-ins answer to their old u-prefixed names too (ujson, uos, ...).
    return names | {"u" + n for n in names} | {"usys"}


def imported_names(path: Path) -> list[tuple[str, int]]:
    """(top-level module, line) for each import not inside a try block; [] if CPython's
    parser does not read the file (MicroPython accepts a little more)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError):
        return []
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, in_try: bool) -> None:
        if isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            in_try = True
        if not in_try:
            if isinstance(node, ast.Import):
                found.extend((alias.name.split(".")[0], node.lineno) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append((node.module.split(".")[0], node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child, in_try)

    visit(tree, False)
    return found


def files_modules(files_dir: Path | None) -> set[str]:
    """Modules importable from the --files tree (sys.path has "" = / and /lib)."""
    if files_dir is None:
        return set()
    names = set()
    for base in (files_dir, files_dir / "lib"):
        if base.is_dir():
            for entry in base.iterdir():
                if entry.suffix in (".py", ".mpy"):
                    names.add(entry.stem)
                elif entry.is_dir():
                    names.add(entry.name)
    return names


def check_imports(sources: Iterable[Path], available: set[str]) -> list[str]:
    """One message per unconditional import of a module that is not `available`."""
    problems = []
    for path in sources:
        for name, line in imported_names(path):
            if name not in available:
                problems.append(f"{path}:{line}: import {name}: no module named {name!r} in the image "
                                f"(add it with --module {name}.py or --module {name}/, or put it in "
                                f"the --files directory)")
    return problems
