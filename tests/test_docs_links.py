"""Every document a user reads cites only files that ship with the repository (or a public URL)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
READ_BY_USERS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
                 *sorted((ROOT / "examples").glob("*.sched"))]
CITED_MD = re.compile(r"(?<![\w/.:-])((?:[\w-]+/)+[\w-]+\.md)\b")


@pytest.mark.parametrize("path", READ_BY_USERS, ids=lambda p: p.name)
def test_cited_markdown_files_exist(path):
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"https?://\S+", "", text)
    missing = [m for m in CITED_MD.findall(text) if not (ROOT / m).exists()]
    assert not missing, f"{path.name} cites {missing}, which are not in the repository"
