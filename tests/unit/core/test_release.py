"""Release channels and their levers, the pure half (docs/release.md): what the integration tests over HTTP
(tests/integration/test_release.py) found wrong, pinned down where it is decided."""

import copy
import json
from datetime import timedelta
from typing import Any

from app.core.decide import decide
from app.core.decision import Decision
from app.core.facts import AmiFacts
from app.http.reconcile import world_of
from app.main import _response
from app.model.hooks import HookRequest
from app.model.tags import Image
from tests.builders import (
    T0,
    base_image,
    build_pod,
    managed_image,
    parent,
    request,
    running,
    succeeded,
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


# -- the rebuild token ------------------------------------------------------------------------------------------


def with_token(token: str | None) -> dict[str, Any]:
    raw = copy.deepcopy(SEED_SPEC)
    if token is not None:
        raw["release"] = {"rebuild": token}
    return raw


def test_a_rebuild_token_is_honoured_once_when_the_status_lags_behind_its_build() -> None:
    """Rule 8: the status that recorded the token may not have reached the next request; the token's build
    (a build Job of the spec generation that carries the token) says it was honoured."""
    current = managed_image("ami-0c0c0c0c0c0c0c0c1", T0 - timedelta(hours=1))
    facts = AmiFacts(base_image=BASE, managed=(current,))
    steady, _ = sync(request(parent(with_token(None))), facts, T0)
    assert steady["status"]["state"] == "AMIAdopted"
    before = steady["status"]

    asked, _ = sync(request(parent(with_token(TOKEN), before, generation=2)), facts, T0)
    assert asked["status"]["lastRebuild"] == TOKEN
    (job,) = asked["children"]

    # The request after it still carries the status from before the token.
    lagging, _ = sync(request(parent(with_token(TOKEN), before, generation=2), [running(job, T0)]), facts, T0)
    assert lagging["status"]["state"] == "JobRunning"
    assert lagging["status"]["lastRebuild"] == TOKEN

    # The build finished; the status still lags: its AMI is recorded, and nothing is built again.
    finished_at = T0 + timedelta(minutes=30)
    done = succeeded(job, T0, finished_at)
    built = Image("ami-0c0c0c0c0c0c0c0c2", "available", finished_at, "opsy-built")
    after = AmiFacts(base_image=BASE, managed=(current,), built=(built,))
    pod = build_pod(done, f"us-west-2:{built.image_id}")
    recorded, _ = sync(
        request(parent(with_token(TOKEN), before, generation=2), [done], [pod]), after, finished_at
    )
    assert recorded["status"]["state"] == "AMICreated"
    assert [c["metadata"]["name"] for c in recorded["children"]] == [job["metadata"]["name"]]
    assert recorded["status"]["lastRebuild"] == TOKEN
