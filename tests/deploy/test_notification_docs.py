"""docs/notifications.md lists exactly the events the notifier announces."""

import re

from app.notify.events import Kind
from tests.deploy.manifests import ROOT, markdown_table

DOC = ROOT / "docs" / "notifications.md"


def spoken(kind: Kind) -> str:
    """`BuildSucceeded` as the table says it: `Build succeeded` (acronyms such as AMI kept)."""
    first, *rest = re.findall(r"[A-Z]+(?![a-z])|[A-Z][a-z]+", kind.value)
    return " ".join([first, *(word if word.isupper() else word.lower() for word in rest)])


def test_spoken_names() -> None:
    assert spoken(Kind.adopted) == "AMI adopted"
    assert spoken(Kind.rejected) == "Validation failed"


def test_the_event_table_has_one_row_per_kind() -> None:
    rows = markdown_table(DOC.read_text(), ["Event", "When", "What the message says"])
    assert [row[0] for row in rows] == [spoken(kind) for kind in Kind]
