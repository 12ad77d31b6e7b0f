"""The layout's rules, read from the docstrings that state them: the docstring is the only source.

A room is a folder under schedc (lang, check, cli, ...), a ground-floor module (errors, ir, dag,
simulate, ...), `backends` (installed as schedc.backends), the package's own `__init__` or its
`__main__`. Its rules are lines of its docstring (a folder's `__init__.py`, a module's own); a
sub-folder with rules of its own (backends/torch/profile) narrows its room's for its modules:

    May import: errors, ir, lang           (rooms; `nothing`, or `everything` for the top floor)
    Libraries at module level: networkx    (optional and heavy libraries; `none`)
    Libraries inside functions: torch      (imported only inside the functions that need them)

Every module is read with `ast` (imports inside functions included). Each import of schedc must
land in the module's own room or one its `May import` names; each import of a watched library
must be allowed at its level; no module imports another module's `_private` name. Each checker is
a pure function of (module, source), so the tests below also plant a breaking import and see the
rule fail on it.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "schedc"
BACKENDS = ROOT / "backends"
WATCHED = {"numpy", "scipy", "ortools", "graphviz", "cairosvg", "torch", "networkx", "lark"}
RULE_KEYS = ("May import:", "Libraries at module level:", "Libraries inside functions:")
MAX_MODULES, MAX_ROOM_LINES, MAX_MODULE_LINES = 12, 2000, 400


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


def _path_of(parts: tuple[str, ...]) -> Path:
    return PACKAGE.joinpath(*parts) if parts[:1] != ("backends",) else BACKENDS.joinpath(*parts[1:])


def _is_room(parts: tuple[str, ...]) -> bool:
    """Whether `parts` (under schedc) names an existing module or folder rather than a value (a
    last part starting with `*` is a name imported by `from . import name`: a module or a value)."""
    if parts and parts[-1].startswith("*"):
        parts = parts[:-1] + (parts[-1][1:],)
    path = _path_of(parts)
    return path.with_suffix(".py").exists() or path.is_dir()


# ---- the rules, from the docstrings -------------------------------------------------------------

def parse_rules(doc: str) -> dict[str, frozenset[str] | None]:
    """The rule lines of a docstring: key -> the names it lists (None: `everything`). A key
    missing from the docstring is missing from the result."""
    rules = {}
    for line in (doc or "").splitlines():
        for key in RULE_KEYS:
            if line.strip().startswith(key):
                value = line.strip()[len(key):].strip()
                names = frozenset(n.strip() for n in value.split(",") if n.strip())
                rules[key] = None if names == {"everything"} else names - {"nothing", "none"}
    return rules


def _rule_source(parts: tuple[str, ...]) -> Path:
    """The file whose docstring holds the rules for module `parts`: the nearest enclosing folder's
    `__init__.py` that states `May import:`, else the module itself (a ground-floor module)."""
    for depth in range(len(parts) - 1, 0, -1):
        init = _path_of(parts[:depth]) / "__init__.py"
        if init.exists() and "May import:" in (ast.get_docstring(ast.parse(init.read_text())) or ""):
            return init
    return _path_of(parts).with_suffix(".py") if parts else PACKAGE / "__init__.py"


def rules_of(parts: tuple[str, ...]) -> dict:
    source = _rule_source(parts)
    return parse_rules(ast.get_docstring(ast.parse(source.read_text(encoding="utf-8"))) or "")


# ---- what a module imports ----------------------------------------------------------------------

def imports(source: str, parts: tuple[str, ...]):
    """(line, module parts under schedc or None, top-level name, inside a function, imported
    names) of each import in `source`, the module at `parts`."""
    tree = ast.parse(source)
    package = parts[:-1]  # the package a relative import starts from (a package's own for __init__)
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    name = alias.name.split(".")
                    target = tuple(name[1:]) if name[0] == "schedc" else None
                    found.append((child.lineno, target, name[0], in_function, ()))
            elif isinstance(child, ast.ImportFrom):
                found.extend(_from_import(child, package, in_function))
            visit(child, inside)

    visit(tree, False)
    return found


def _from_import(node: ast.ImportFrom, package, in_function):
    names = tuple(alias.name for alias in node.names)
    if not node.level:
        name = (node.module or "").split(".")
        target = tuple(name[1:]) if name[0] == "schedc" else None
        return [(node.lineno, target, name[0], in_function, names)]
    base = package[:len(package) - (node.level - 1)]
    if not node.module:  # `from . import x`: each name is a module or a value of base
        return [(node.lineno, base + ("*" + n,), "schedc", in_function, ()) for n in names]
    return [(node.lineno, base + tuple(node.module.split(".")), "schedc", in_function, names)]


# ---- the checkers: pure functions of (module, source) -------------------------------------------

def room_breaks(parts: tuple[str, ...], source: str, rules: dict) -> list[str]:
    """Imports of schedc that land outside the module's room and the rooms it may import."""
    allowed = rules.get("May import:", frozenset())
    room, broken = room_of(parts), []
    for line, target, _top, _in_function, _names in imports(source, parts):
        if target is None or allowed is None:
            continue
        while target and not _is_room(target):
            target = target[:-1]  # `from . import x` where x is a value, not a module
        goal = room_of(target) if target else "__init__"
        if goal != room and goal not in allowed:
            broken.append(f"{line}: {room} imports {'.'.join(target) or 'the package'}")
    return broken


def library_breaks(parts: tuple[str, ...], source: str, rules: dict) -> list[str]:
    """Imports of a watched library that the module's room does not allow at that level."""
    at_top = rules.get("Libraries at module level:", frozenset())
    inside = rules.get("Libraries inside functions:", frozenset()) | at_top
    broken = []
    for line, target, top, in_function, _names in imports(source, parts):
        if target is not None or top not in WATCHED:
            continue
        if top not in (inside if in_function else at_top):
            level = "inside a function" if in_function else "at module level"
            broken.append(f"{line}: {room_of(parts)} imports {top} {level}")
    return broken


def private_breaks(parts: tuple[str, ...], source: str) -> list[str]:
    """Imports of another schedc module's `_private` names."""
    return [f"{line}: imports {', '.join(n for n in names if n.startswith('_'))} from "
            f"{'.'.join(target)}" for line, target, _top, _f, names in imports(source, parts)
            if target is not None and target != parts and any(n.startswith("_") for n in names)]


def _all_breaks(checker) -> list[str]:
    broken = []
    for path, parts in modules():
        source = path.read_text(encoding="utf-8")
        args = (parts, source) if checker is private_breaks else (parts, source, rules_of(parts))
        broken += [f"{path.relative_to(ROOT)}:{b}" for b in checker(*args)]
    return broken


def test_every_import_follows_the_rooms_rules():
    broken = _all_breaks(room_breaks)
    assert not broken, "imports that break the layout:\n" + "\n".join(broken)


def test_every_library_is_imported_where_its_room_allows():
    broken = _all_breaks(library_breaks)
    assert not broken, "library imports the docstrings do not allow:\n" + "\n".join(broken)


def test_no_module_imports_another_modules_private_names():
    broken = _all_breaks(private_breaks)
    assert not broken, "imports of private names:\n" + "\n".join(broken)


def test_every_import_of_schedc_names_a_module_that_exists():
    missing = [f"{path.relative_to(ROOT)}:{line}: {'.'.join(target)}" for path, parts in modules()
               for line, target, _, _, _ in imports(path.read_text(encoding="utf-8"), parts)
               if target is not None and not _is_room(target)
               and not (target[-1].startswith("*") and _is_room(target[:-1]))]
    assert not missing, "imports of modules that do not exist:\n" + "\n".join(missing)


def test_every_room_states_its_rules():
    sources = {_rule_source(parts) for _, parts in modules() if parts[-1:] != ("__init__",) or len(parts) > 1}
    sources |= {PACKAGE / "__init__.py"}
    missing = [str(s.relative_to(ROOT)) for s in sorted(sources)
               if "May import:" not in parse_rules(ast.get_docstring(ast.parse(s.read_text())) or "")]
    assert not missing, "rooms whose docstring has no `May import:` line:\n" + "\n".join(missing)


def test_every_folder_says_what_it_is_for():
    for init in list(PACKAGE.rglob("__init__.py")) + list(BACKENDS.rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc.split()) >= 5, f"{init.relative_to(ROOT)} must say what the folder is for"


def test_rooms_stay_small_and_modules_short():
    assert len(list(PACKAGE.glob("*.py"))) <= 8
    long = [f"{path.relative_to(ROOT)}: {n} lines" for path, _ in modules()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES]
    assert not long
    folders = {path.parent for path, _ in modules() if path.parent != PACKAGE}
    for folder in folders:
        files = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in folder.glob("*.py"))
        assert len(files) <= MAX_MODULES, f"{folder.relative_to(ROOT)}: {len(files)} modules"
        assert lines <= MAX_ROOM_LINES, f"{folder.relative_to(ROOT)}: {lines} lines"


@pytest.mark.parametrize("module", ["schedc", "schedc.cli"])
def test_importing_the_package_loads_neither_numpy_nor_torch(module):
    probe = (f"import sys, {module}; heavy = sorted(m for m in ('numpy', 'torch', 'scipy', 'ortools') "
             "if m in sys.modules); print(','.join(heavy))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"`import {module}` loads {done.stdout.strip()}"


# ---- each rule fails on a planted import --------------------------------------------------------

def test_a_planted_import_of_a_higher_room_breaks_the_room_rule():
    rules = rules_of(("lang", "spec"))
    assert not room_breaks(("lang", "spec"), "from ..errors import SchedError\n", rules)
    assert room_breaks(("lang", "spec"), "from ..check.verify import verify_plan\n", rules) == [
        "1: lang imports check.verify"]
    assert room_breaks(("passes", "fuse"), "def f():\n    from ..compiler import compile_spec\n",
                       rules_of(("passes", "fuse")))


def test_a_planted_library_import_breaks_the_library_rule():
    experts = rules_of(("experts", "eplb"))
    assert not library_breaks(("experts", "eplb"), "import numpy as np\n", experts)
    assert library_breaks(("experts", "eplb"), "import torch\n", experts) == [
        "1: experts imports torch at module level"]
    assert not library_breaks(("experts", "eplb"), "def f():\n    import torch\n", experts)
    assert library_breaks(("partition", "problem"), "import numpy\n", rules_of(("partition", "problem")))
    assert library_breaks(("lang", "spec"), "import networkx\n", rules_of(("lang", "spec")))
    assert library_breaks(("viz", "png"), "import cairosvg\n", rules_of(("viz", "png")))


def test_a_planted_private_import_breaks_the_private_rule():
    assert private_breaks(("cli", "core"), "from .common import _load\n") == [
        "1: imports _load from cli.common"]
    assert not private_breaks(("cli", "core"), "from .common import load_specs\n")


def test_rule_lines_parse():
    rules = parse_rules("What it is.\n\nMay import: errors, ir\nLibraries at module level: none\n"
                        "Libraries inside functions: torch, numpy\n")
    assert rules == {"May import:": frozenset({"errors", "ir"}), "Libraries at module level:": frozenset(),
                     "Libraries inside functions:": frozenset({"torch", "numpy"})}
    assert parse_rules("May import: everything")["May import:"] is None


def test_every_package_folder_is_installed():
    """pyproject's package list names every folder with an __init__.py, so a non-editable install
    (CI's wheel, a user's pip install) ships it."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    listed = set(re.findall(r'"(schedc(?:\.\w+)*)"', text.split("packages = [", 1)[1].split("]", 1)[0]))
    found = {".".join(("schedc",) + init.parent.relative_to(PACKAGE).parts) for init in PACKAGE.rglob("__init__.py")}
    found |= {".".join(("schedc", "backends") + init.parent.relative_to(BACKENDS).parts)
              for init in BACKENDS.rglob("__init__.py")}
    assert found <= listed, f"folders pyproject.toml does not install: {sorted(found - listed)}"
