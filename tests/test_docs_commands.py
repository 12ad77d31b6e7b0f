"""Documented commands are tests (STYLE.md 16, issue 24 section 5): every command that README.md
or docs/*.md shows with its output is re-run and its output compared.

The convention, in the Markdown files:
- A checked example is a fenced block (a bare ``` fence, or ```console) whose first line is
  `$ schedc ARGS`. Each `$ schedc` line is a command; the lines after it, up to the next `$ ` line
  or the fence, are what it prints: standard output and standard error together, in order, as a
  terminal shows them. A command is split like a shell's words (shlex), but no shell runs it: no
  globs, pipes or redirections.
- A block that is not re-run (it needs torchrun, or it takes long) has the HTML comment
  `<!-- not checked: REASON -->` on the line right before its fence; any other fence language
  (```text, ```python, ...) is not re-run either. A `$ schedc run` block without the comment fails
  (it would start torchrun).
- An output whose last line is `...` (spaces around it allowed) is an excerpt: only the lines
  before it are compared, and an update keeps as many lines and the `...`.
- Each command runs in-process (`schedc.cli.main`, no interpreter start), in a temporary folder
  where the repository's top-level entries are linked: paths in the docs are relative to the
  repository root, and what a command writes (`-o placement.json`) lands in the temporary folder.
  Commands that need torch (`NEEDS_TORCH`) are skipped where torch is not installed.

Normalisation, a few rules, the same on both sides (no rule for one block):
- of the output, as compared and as written back: trailing spaces of every line and blank lines at
  the end are dropped; the repository's absolute path and the temporary folder's are dropped before
  a path under them (which then reads relative) and read `.` alone;
- for comparing only (an update writes the figure as printed): durations (`0.42 s`, `12ms`, `1.5s`)
  become `<time>`.

To update the documents from what the commands print now, the golden files' flag:
    .venv/bin/python -m pytest tests/test_docs_commands.py --update-goldens
It rewrites only the output lines of each checked block, re-reading the file first.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from schedc.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_CHECKED = re.compile(r"^\s*<!--\s*not checked:.*-->\s*$")
CHECKED_FENCES = ("```", "```console")
PROMPT = "$ schedc "
ELLIPSIS = "..."
NEEDS_TORCH = {"audit-torch"}
NEVER_RERUN = {"run"}  # starts torchrun: its blocks must say `not checked`
DURATION = re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|s)\b")


@dataclass(frozen=True)
class Example:
    """One documented command: a `$ schedc` line of `path`, at `line` (1-based), with its
    documented output lines."""

    path: Path
    line: int
    command: str
    output: tuple[str, ...]
    marked: bool  # its block carries `<!-- not checked: ... -->`

    @property
    def excerpt(self) -> bool:
        return bool(self.output) and self.output[-1].strip() == ELLIPSIS

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line} {self.command}"


def fenced_blocks(lines: list[str]):
    """Each fenced block of `lines` as (fence line index, its language line, body start, body end)."""
    i = 0
    while i < len(lines):
        if not lines[i].startswith("```"):
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        yield i, lines[i].rstrip(), i + 1, end
        i = end + 1


def parse_examples(path: Path, text: str) -> list[Example]:
    """The documented commands of one Markdown file (marked ones included, so the test can see a
    `schedc run` that lacks its mark)."""
    lines = text.split("\n")
    found = []
    for fence, language, start, end in fenced_blocks(lines):
        if language not in CHECKED_FENCES or start >= end or not lines[start].startswith(PROMPT):
            continue
        marked = fence > 0 and bool(NOT_CHECKED.match(lines[fence - 1]))
        commands = [k for k in range(start, end) if lines[k].startswith("$ ")] + [end]
        for here, after in zip(commands, commands[1:]):
            output = tuple(lines[here + 1:after])
            found.append(Example(path, here + 1, lines[here][len("$ "):].strip(), output, marked))
    return found


def all_examples() -> list[Example]:
    return [e for path in DOCUMENTS for e in parse_examples(path, path.read_text(encoding="utf-8"))]


def run_in_process(command: str, folder: Path) -> str:
    """What `command` (`schedc ...`) prints, standard output and error interleaved, run by
    `schedc.cli.main` in `folder`."""
    args = shlex.split(command)[1:]
    buffer = io.StringIO()
    before = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            try:
                main(args)
            except SystemExit:  # argparse's usage errors and --help
                pass
    finally:
        os.chdir(before)
    return buffer.getvalue()


def clean(text: str, folder: Path) -> list[str]:
    """`text` as lines the documents may hold: absolute paths made relative, no trailing spaces or
    trailing blank lines."""
    for absolute in (str(folder), str(folder.resolve()), str(ROOT)):
        text = text.replace(absolute + os.sep, "").replace(absolute, ".")
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def normalise(lines) -> list[str]:
    """The lines as compared: durations made `<time>`, trailing blank lines dropped."""
    lines = [DURATION.sub("<time>", line.rstrip()) for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def compared(example: Example, actual: list[str]) -> tuple[list[str], list[str]]:
    """(documented, actual) as compared: an excerpt against as many first lines of the output."""
    documented = list(example.output)
    if example.excerpt:
        documented = documented[:-1]
        actual = actual[:len(documented)]
    return normalise(documented), normalise(actual)


def updated_output(example: Example, actual: list[str]) -> list[str]:
    if example.excerpt:
        kept = len(example.output) - 1
        return actual[:kept] + [example.output[-1]]
    return actual


def write_back(example: Example, actual: list[str]) -> None:
    """Replace the output of `example` in its file (re-read now: others may have edited it)."""
    text = example.path.read_text(encoding="utf-8")
    current = [e for e in parse_examples(example.path, text) if e.command == example.command]
    same = [e for e in current if e.output == example.output] or current
    if not same:
        pytest.fail(f"{example}: no longer in the file; run the update again")
    target = same[0]
    lines = text.split("\n")
    first = target.line  # the output starts on the line after the command (0-based: target.line)
    lines[first:first + len(target.output)] = updated_output(target, actual)
    example.path.write_text("\n".join(lines), encoding="utf-8")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder that sees the repository's top-level entries, where commands write their files."""
    folder = tmp_path_factory.mktemp("docs")
    for entry in ROOT.iterdir():
        if not entry.name.startswith("."):
            (folder / entry.name).symlink_to(entry)
    return folder


EXAMPLES = all_examples()


def test_documents_show_commands():
    assert len([e for e in EXAMPLES if not e.marked]) >= 8
    assert {"README.md", "partition.md", "interop.md"} <= {e.path.name for e in EXAMPLES if not e.marked}


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_documented_output_is_what_the_command_prints(example: Example, workdir, update_goldens):
    words = shlex.split(example.command)
    assert words[0] == "schedc"
    if example.marked:
        pytest.skip("not checked (marked in the document)")
    assert words[1] not in NEVER_RERUN, (
        f"{example}: `schedc {words[1]}` is never re-run here; put <!-- not checked: needs torchrun --> "
        "on the line before its fence")
    if words[1] in NEEDS_TORCH:
        pytest.importorskip("torch")
    actual = clean(run_in_process(example.command, workdir), workdir)
    documented, got = compared(example, actual)
    if update_goldens and documented != got:
        write_back(example, actual)
        return
    assert got == documented, (
        f"{example} prints something else than the document shows; update with "
        f"`pytest {Path(__file__).relative_to(ROOT)} --update-goldens`")


def test_normalisation_rules():
    folder = Path("/tmp/x")
    assert clean(f"wrote {ROOT}/docs/a.png  \nin {folder}\n\n", folder) == ["wrote docs/a.png", "in ."]
    assert normalise(["found in 0.42 s, 12ms, 1.5s; 8 ranks", ""]) == ["found in <time>, <time>, <time>; 8 ranks"]


def test_parsing_finds_commands_marks_and_excerpts():
    text = "\n".join([
        "```", "$ schedc compare a.sched", "table", "...", "$ schedc check b.sched", "fine", "```",
        "<!-- not checked: needs torchrun -->", "```", "$ schedc run a.sched --check", "PASS", "```",
        "```text", "$ schedc simulate a.sched", "```", "```", "schedc viz a.sched", "```"])
    found = parse_examples(ROOT / "x.md", text)
    assert [(e.command, e.output, e.marked) for e in found] == [
        ("schedc compare a.sched", ("table", "..."), False), ("schedc check b.sched", ("fine",), False),
        ("schedc run a.sched --check", ("PASS",), True)]
    assert found[0].excerpt and not found[1].excerpt
    assert compared(found[0], ["table", "more"]) == (["table"], ["table"])
    assert updated_output(found[0], ["new table", "more"]) == ["new table", "..."]


def _shell_commands(text: str) -> list[list[str]]:
    """Each simple command of `text` (lines joined by `&&`), as words, comments dropped."""
    commands = []
    for line in text.splitlines():
        for part in line.split("&&"):
            words = shlex.split(part, comments=True)
            if words:
                commands.append(words)
    return commands


def _pip_installs(commands: list[list[str]]) -> list[list[str]]:
    """The arguments after `pip install` of each command that runs pip (not pip upgrading itself)."""
    found = []
    for words in commands:
        joined = " ".join(words)
        if "pip install" in joined and "--upgrade pip" not in joined:
            found.append(words[words.index("install") + 1:])
    return found


def test_readme_installs_and_tests_as_ci_does():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    install = next(line for line in readme.splitlines() if line.startswith("python3 -m venv .venv"))
    assert _pip_installs(_shell_commands(install)) == _pip_installs(_shell_commands(ci))
    assert "apt-get install graphviz libcairo2" in readme and "install -y -qq graphviz libcairo2" in ci
    tests = next(line for line in readme.splitlines() if line.startswith(".venv/bin/python -m pytest"))
    ci_tests = next(words for words in _shell_commands(ci) if words[:3] == ["python", "-m", "pytest"])
    assert shlex.split(tests)[1:] == ci_tests[1:len(shlex.split(tests))]
