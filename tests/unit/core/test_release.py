"""Release channels and their levers, the pure half (docs/release.md): what the integration tests over HTTP
(tests/integration/test_release.py) found wrong, pinned down where it is decided."""

import copy
import json
from typing import Any

from app.core.decide import decide
from app.core.decision import Decision
from app.core.facts import AmiFacts
from app.http.reconcile import world_of
from app.main import _response
from app.model.hooks import HookRequest
from tests.builders import (
    T0,
    base_image,
    parent,
    request,
)
from tests.seed import SEED_SPEC

BASE = base_image()
TOKEN = "2026-12-07-cve-fix"


def sync(req: dict[str, Any], facts: AmiFacts, now: Any) -> tuple[dict[str, Any], Decision]:
    decision = decide(world_of(HookRequest.model_validate(req)), facts, now)
    return json.loads(json.dumps(_response(decision))), decision


# -- status: rule 6 at every depth ------------------------------------------------------------------------------


def empties(value: Any, path: str = "status") -> list[str]:
    """Where a value is null or an empty string, list or map (rule 6)."""
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in empties(item, f"{path}.{key}")] or (
            [] if value else [path]
        )
    if isinstance(value, list):
        return [p for n, item in enumerate(value) for p in empties(item, f"{path}[{n}]")] or (
            [] if value else [path]
        )
    return [path] if value is None or value == "" else []


def test_a_channel_that_holds_no_ami_yet_is_its_name_alone_in_the_status() -> None:
    """Rule 6 at every depth of the status: no empty imageID or enteredAt for a channel still waiting."""
    raw = copy.deepcopy(SEED_SPEC)
    raw["publish"] = {
        "ssmParameter": "/platform/ami/web",
        "channels": [{"name": "canary", "ssmParameter": "/platform/ami/web-canary"}],
    }
    body, _ = sync(request(parent(raw)), AmiFacts(base_image=BASE), T0)
    assert body["status"]["channels"] == [{"name": "canary", "pinned": False}]
    assert empties(body["status"]) == []
