"""The layout's import rules, as each folder's `__init__.py` docstring states them.

Every module of the package is read with `ast` (imports inside functions included) and each import
of schedc is mapped to the room it lands in: a folder (lang, check, cli, ...) or a ground-floor
module (errors, ir, dag, compiler, simulate, ...). A room may import only what its row below allows,
so a change that breaks the flow (lang importing check, a pass importing the compiler, anything
importing the command line) fails here, with the line that did it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "schedc"
BACKENDS = ROOT / "backends"

GROUND = {"errors", "ir", "dag", "gcpause"}
# room -> the rooms it may import (itself always allowed)
ALLOWED = {
    "errors": set(),
    "ir": {"errors"},
    "gcpause": set(),
    "lang": {"errors", "ir"},
    "dag": {"errors", "ir", "lang"},
    "passes": GROUND | {"lang"},
    "schedules": GROUND | {"lang"},
    "check": GROUND | {"lang", "passes"},
    "simulate": GROUND | {"lang", "check"},
    "viz": GROUND | {"lang", "simulate"},
    "compiler": GROUND | {"lang", "schedules", "passes", "check", "simulate", "viz", "search"},
    "search": GROUND | {"lang", "schedules", "passes", "check", "simulate"},
    "balance": GROUND | {"lang", "schedules", "passes", "check", "simulate", "compiler", "search"},
    "interop": GROUND | {"lang", "schedules", "passes", "check", "simulate", "compiler"},
    "backends": GROUND | {"lang", "schedules", "passes", "check", "simulate", "compiler", "interop",
                          "balance", "search", "viz"},
    "__init__": GROUND | {"lang", "compiler", "simulate", "balance"},  # balance: stages = auto
    "cli": None,  # the top floor: anything
    "__main__": {"cli"},
}
TORCH_AT_MODULE_LEVEL = {"backends", "interop"}


def modules() -> list[tuple[Path, tuple[str, ...]]]:
    """Every module as (path, dotted name parts under schedc)."""
    found = []
    for base, prefix in ((PACKAGE, ()), (BACKENDS, ("backends",))):
        for path in sorted(base.rglob("*.py")):
            parts = prefix + path.relative_to(base).with_suffix("").parts
            found.append((path, parts))
    return found


def room_of(parts: tuple[str, ...]) -> str:
    return parts[0] if parts else "__init__"


def imports(path: Path, parts: tuple[str, ...]):
    """(line, absolute module parts under schedc or None, top-level name, at module level) of each
    import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = parts[:-1]  # the package a relative import starts from (a package's own for __init__)
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        at_top = id(node) in top_level
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name.split(".")
                inside = tuple(name[1:]) if name[0] == "schedc" else None
                yield node.lineno, inside, name[0], at_top
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = base + tuple((node.module or "").split(".") if node.module else ())
                if not node.module:  # `from . import x`: each name is a module or a value of base
                    for alias in node.names:
                        yield node.lineno, target + ("*" + alias.name,), "schedc", at_top
                    continue
                yield node.lineno, target, "schedc", at_top
            else:
                name = (node.module or "").split(".")
                inside = tuple(name[1:]) if name[0] == "schedc" else None
                yield node.lineno, inside, name[0], at_top


def _is_room(parts: tuple[str, ...]) -> bool:
    """Whether `parts` (under schedc) names an existing module or folder rather than a value (a
    last part starting with `*` is a name imported by `from . import name`: a module or a value)."""
    if parts and parts[-1].startswith("*"):
        parts = parts[:-1] + (parts[-1][1:],)
    path = PACKAGE.joinpath(*parts) if parts[:1] != ("backends",) else BACKENDS.joinpath(*parts[1:])
    return path.with_suffix(".py").exists() or path.is_dir()


def test_every_import_follows_the_rooms_rules():
    broken = []
    for path, parts in modules():
        room = room_of(parts)
        allowed = ALLOWED[room]
        for line, target, top, _ in imports(path, parts):
            if target is None or allowed is None:
                continue
            while target and not _is_room(target):
                target = target[:-1]  # `from . import x` where x is a value, not a module
            goal = room_of(target) if target else "__init__"
            if goal != room and goal not in allowed:
                broken.append(f"{path.relative_to(ROOT)}:{line}: {room} imports {'.'.join(target) or 'a module that does not exist'}")
    assert not broken, "imports that break the layout:\n" + "\n".join(broken)


def test_every_import_of_schedc_names_a_module_that_exists():
    missing = [f"{path.relative_to(ROOT)}:{line}: {'.'.join(target)}" for path, parts in modules()
               for line, target, _, _ in imports(path, parts)
               if target is not None and not _is_room(target)
               and not (target[-1].startswith("*") and _is_room(target[:-1]))]
    assert not missing, "imports of modules that do not exist:\n" + "\n".join(missing)


def test_only_the_dag_imports_networkx():
    users = [f"{path.relative_to(ROOT)}:{line}" for path, parts in modules()
             for line, _, top, _ in imports(path, parts) if top == "networkx" and parts != ("dag",)]
    assert not users


def test_torch_is_imported_at_module_level_only_by_the_backends_and_interop():
    users = [f"{path.relative_to(ROOT)}:{line}" for path, parts in modules()
             for line, _, top, at_top in imports(path, parts)
             if top == "torch" and at_top and room_of(parts) not in TORCH_AT_MODULE_LEVEL]
    assert not users


def test_every_folder_says_what_it_is_for():
    for folder in [p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()]:
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text(encoding="utf-8")))
        assert doc and "import" in doc, f"{folder.name}/__init__.py must say what it may import"


def test_the_ground_floor_stays_small_and_modules_stay_short():
    assert len(list(PACKAGE.glob("*.py"))) <= 8
    long = [f"{path.relative_to(ROOT)}: {n} lines" for path, _ in modules()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 400]
    assert not long


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_every_room_in_the_table_exists(room):
    assert room == "backends" or _is_room((room,)) or room in ("__init__", "__main__")
