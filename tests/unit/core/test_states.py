"""The state table is the one vocabulary: every state has its row, its function, and the docs show the table."""

from pathlib import Path

import pytest

from app.core.handlers import HANDLERS
from app.core.states import TABLE, Row, State, column_description
from tests.deploy.manifests import CRD_FILE, load_yaml

ROOT = Path(__file__).resolve().parents[3]
# Answered by app.core.decide itself, before any state's function: a spec that does not parse, and deletion.
ANSWERED_BY_DECIDE = {State.INVALID_SPEC, State.FINALIZING}


def test_every_state_has_one_row_and_one_way_to_be_answered() -> None:
    assert [row.state for row in TABLE] == list(dict.fromkeys(row.state for row in TABLE))
    assert {row.state for row in TABLE} == set(State)
    assert set(HANDLERS) == set(State) - ANSWERED_BY_DECIDE


@pytest.mark.parametrize("row", TABLE, ids=[r.state.value for r in TABLE])
def test_every_row_says_what_it_means_when_it_holds_ready_and_when_the_hook_looks_again(row: Row) -> None:
    assert all(getattr(row, field).strip() for field in ("means", "when", "ready", "again"))


def test_readme_lists_the_states_as_the_table_has_them() -> None:
    lines = ["| State | What it means | Ready |", "|---|---|---|"]
    lines += [f"| `{r.state.value}` | {r.means} | {r.ready} |" for r in TABLE]
    readme = (ROOT / "README.md").read_text()
    section = readme.split("How a builder lives:", 1)[1].split("\n## ", 1)[0]
    assert "\n".join(lines) + "\n" in section


def test_the_crd_state_column_names_every_state() -> None:
    crd = load_yaml(CRD_FILE)
    (column,) = [c for c in crd["spec"]["versions"][0]["additionalPrinterColumns"] if c["name"] == "State"]
    assert column["description"] == column_description()
    assert all(state.value in column["description"] for state in State)
