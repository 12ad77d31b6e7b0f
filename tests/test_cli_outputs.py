"""Output files (issue 13, section 4): written whole or not at all, never over an input, and a
failed write is one line naming the path and the cause."""

import os
from pathlib import Path

import pytest

from schedc.cli import main

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "1f1b.sched"


@pytest.fixture
def csv(tmp_path, capsys):
    path = tmp_path / "plan.csv"
    assert main(["export", str(EXAMPLE), "-o", str(path)]) == 0
    capsys.readouterr()
    return path


def test_import_through_a_hard_link_to_its_input_is_refused(tmp_path, csv, capsys):
    link = tmp_path / "link.sched"
    os.link(csv, link)
    before = csv.read_text()
    assert main(["import", str(csv), "--placement", "loop", "-o", str(link), "--force"]) == 2
    assert "refusing to overwrite the input file" in capsys.readouterr().err
    assert csv.read_text() == before


def test_output_that_is_a_directory_says_so(tmp_path, capsys):
    folder = tmp_path / "adir.sched"
    folder.mkdir()
    assert main(["compile", str(EXAMPLE), "--format", "sched", "-o", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err == f"schedc: error: cannot write '{folder}': it is a directory; name a file inside it\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_folder_is_one_line_and_the_old_file_stays(tmp_path, capsys):
    folder = tmp_path / "locked"
    folder.mkdir()
    old = folder / "plan.json"
    old.write_text("the user's file\n")
    folder.chmod(0o500)
    try:
        assert main(["compile", str(EXAMPLE), "--format", "json", "-o", str(old)]) == 2
    finally:
        folder.chmod(0o700)
    err = capsys.readouterr().err
    assert err == f"schedc: error: cannot write '{old}': Permission denied\n"
    assert old.read_text() == "the user's file\n" and os.listdir(folder) == ["plan.json"]


def test_a_failed_write_leaves_the_existing_file_whole(tmp_path, capsys, monkeypatch):
    target = tmp_path / "plan.txt"
    target.write_text("the user's file\n")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    assert main(["compile", str(EXAMPLE), "-o", str(target)]) == 2
    assert capsys.readouterr().err == f"schedc: error: cannot write '{target}': No space left on device\n"
    assert target.read_text() == "the user's file\n"
    assert sorted(os.listdir(tmp_path)) == ["plan.txt"]  # no temporary file left behind


@pytest.mark.parametrize("command", [
    ["compile", "EX"], ["compile", "EX", "--format", "json"], ["export", "EX"], ["trace", "EX"],
    ["viz", "EX"],
])
def test_every_writing_command_replaces_its_output_whole(tmp_path, capsys, command):
    suffix = {"export": ".csv", "trace": ".json", "viz": ".svg"}.get(command[0], ".txt")
    target = tmp_path / f"out{suffix}"
    target.write_text("old\n")
    target.chmod(0o640)
    args = [str(EXAMPLE) if a == "EX" else a for a in command]
    assert main([*args, "-o", str(target)]) == 0
    assert target.read_text() != "old\n" and (target.stat().st_mode & 0o777) == 0o640
    assert sorted(os.listdir(tmp_path)) == [target.name]


def test_parent_that_is_a_file_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["compile", str(EXAMPLE), "-o", str(blocker / "plan.txt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"schedc: error: cannot write '{blocker / 'plan.txt'}': ") and err.count("\n") == 1


def test_trace_files_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """A rank's trace part and the merged trace go through a temporary file renamed over the old
    one: a failure mid-write leaves the old file as it was and no temporary behind."""
    import os
    from schedc.backends.torch import measure

    old = tmp_path / "trace.json"
    old.write_text("old trace")
    measure._write_whole(old, "new trace")
    assert old.read_text() == "new trace"

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        measure._write_whole(old, "half")
    assert old.read_text() == "new trace"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trace.json"]
