"""docs/architecture.md stays true: every file it names exists, every state it names is one, and its state
table is the code's."""

import re
from pathlib import Path

from app.core.states import TABLE, State

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"


def test_every_path_the_guide_names_exists() -> None:
    paths = set(re.findall(r"`((?:app|tests|scripts|helm)/[\w./-]+)`", DOC.read_text()))
    assert paths, "the guide names no files"
    assert sorted(p for p in paths if not (ROOT / p).exists()) == []


def test_every_layer_folder_is_in_the_guide() -> None:
    folders = {p.name for p in (ROOT / "app").iterdir() if p.is_dir() and p.name != "__pycache__"}
    text = DOC.read_text()
    assert {f for f in folders if f"`app/{f}/`" not in text} == set()


def test_the_guide_shows_the_state_table_of_the_code() -> None:
    lines = ["| State | What it means | Ready | The hook looks again |", "|---|---|---|---|"]
    lines += [f"| `{r.state.value}` | {r.means} | {r.ready} | {r.again} |" for r in TABLE]
    assert "\n".join(lines) + "\n" in DOC.read_text()


def test_every_state_the_guide_names_is_a_state() -> None:
    text = DOC.read_text().split("## The state table", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"\| `(\w+)` \|", text))
    assert named == {s.value for s in State}
