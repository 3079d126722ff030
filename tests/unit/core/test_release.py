"""Release channels and their levers, the pure half (docs/release.md): what the integration tests over HTTP
(tests/integration/test_release.py) found wrong, pinned down where it is decided."""

import copy
import json
from datetime import timedelta
from typing import Any

from app.core.conditions import Wanted
from app.core.decide import decide, decide_finalize
from app.core.decision import Decision
from app.core.effects import Deregister, Enable, Publish, Unpublish
from app.core.facts import AmiFacts, RegionImages
from app.core.lifecycle import Plan, plan
from app.core.publishing import Published
from app.http.reconcile import world_of
from app.main import _response
from app.model.hooks import HookRequest
from app.model.spec import PackerBuilderSpec, parse_spec
from app.model.tags import Image, Owner, format_timestamp
from tests.builders import (
    NAME,
    NAMESPACE,
    T0,
    base_image,
    build_pod,
    empties,
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


def test_a_recorded_status_item_without_its_identity_is_not_written_back_without_it() -> None:
    """A hand-edited status: a channel without a name, a current AMI without a region. Read back as they are,
    rule 6 would write them without the very fields the CRD requires."""
    recorded = {
        "channels": [{"name": "", "imageID": "", "pinned": True}],
        "images": [{"region": "", "architecture": "x86_64", "imageID": "ami-0c0c0c0c0c0c0c0c1"}],
        "state": "AMICreated",
    }
    body = request(parent(status=recorded))
    body["finalizing"] = True
    decision = decide_finalize(world_of(HookRequest.model_validate(body)), AmiFacts(), T0)
    status = json.loads(json.dumps(_response(decision)))["status"]
    assert all(c.get("name") for c in status.get("channels", []))
    assert all(i.get("region") and i.get("imageID") for i in status.get("images", []))
    assert empties(status) == []


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


# -- Revoked: which parameters had nothing left -----------------------------------------------------------------

HOME = "us-west-2"
WEB, CANARY, STABLE = "/platform/ami/web", "/platform/ami/web-canary", "/platform/ami/web-stable"
OLD, NEW = "ami-0000000000000000a", "ami-0000000000000000b"


def channels_spec(retention: dict[str, Any] | None = None, **release: Any) -> PackerBuilderSpec:
    raw = copy.deepcopy(SEED_SPEC)
    if retention is not None:
        raw["retention"] = retention
    raw["publish"] = {
        "ssmParameter": WEB,
        "channels": [
            {"name": "canary", "ssmParameter": CANARY},
            {"name": "stable", "ssmParameter": STABLE, "after": "1h"},
        ],
    }
    raw["release"] = release
    return parse_spec(raw)


def planned(spec: PackerBuilderSpec, images: tuple[Image, ...], values: dict[str, str | None]) -> Plan:
    owner = Owner.of(NAMESPACE, NAME, spec)
    published = {(HOME, name): value for name, value in values.items()}
    owners = {key: str(owner) for key, value in published.items() if value is not None}
    regions = {HOME: RegionImages(managed=images)}
    return plan(
        None, {}, regions, Published(published, owners, "", str(owner)), spec, owner, T0, timedelta(hours=48)
    )


def revoked_condition(result: Plan) -> Wanted:
    (found,) = [w for w in result.refusals if w.type == "Revoked"]
    return found


def test_a_channel_that_never_held_an_ami_is_not_said_to_have_lost_it_to_a_revocation() -> None:
    """stable is still soaking: revoking an old AMI stable never held leaves it as it was, and the condition
    does not say it was deleted."""
    old = managed_image(OLD, T0 - timedelta(hours=5), status="deprecated", extra={"build-id": "b1"})
    canary_entry = {
        "build-id": "b2",
        "ami.refresh.ops/channel/canary": format_timestamp(T0 - timedelta(minutes=5)),
    }
    new = managed_image(NEW, T0 - timedelta(minutes=5), extra=canary_entry)

    result = planned(channels_spec(revoke=[OLD]), (old, new), {WEB: NEW, CANARY: NEW, STABLE: None})

    condition = revoked_condition(result)
    assert condition.reason == "Revoked"
    assert STABLE not in condition.message
    assert not [e for e in result.effects if isinstance(e, Unpublish)]


def test_a_channel_whose_every_ami_is_revoked_is_said_to_have_nothing_to_fall_back_to() -> None:
    stable_entry = {"ami.refresh.ops/channel/stable": format_timestamp(T0 - timedelta(hours=2))}
    canary_entry = {"ami.refresh.ops/channel/canary": format_timestamp(T0 - timedelta(hours=4))}
    old = managed_image(
        OLD,
        T0 - timedelta(hours=5),
        status="deprecated",
        extra={"build-id": "b1", **canary_entry, **stable_entry},
    )
    canary_entry = {
        "build-id": "b2",
        "ami.refresh.ops/channel/canary": format_timestamp(T0 - timedelta(minutes=5)),
    }
    new = managed_image(NEW, T0 - timedelta(minutes=5), extra=canary_entry)

    result = planned(channels_spec(revoke=[OLD]), (old, new), {WEB: NEW, CANARY: NEW, STABLE: OLD})

    condition = revoked_condition(result)
    assert condition.reason == "NothingToFallBackTo"
    assert STABLE in condition.message
    assert WEB not in condition.message.replace(STABLE, "")
    assert CANARY not in condition.message
    assert Unpublish(HOME, STABLE, OLD) in result.effects


# -- AMIs retention disabled: wanted again when a pin names them or a channel falls back to them -----------------

DISABLED = {"disabled-at": format_timestamp(T0 - timedelta(minutes=30))}


def test_a_pin_of_an_ami_retention_disabled_enables_it_and_holds_the_channel_on_it() -> None:
    """The rollback pin's usual target: beyond keep, disabled with disableFor, waiting to be removed."""
    entered = {"ami.refresh.ops/channel/stable": format_timestamp(T0 - timedelta(hours=3))}
    old = managed_image(
        OLD, T0 - timedelta(hours=5), "deprecated", state="disabled", extra={**DISABLED, **entered}
    )
    entered = {"ami.refresh.ops/channel/stable": format_timestamp(T0 - timedelta(hours=1))}
    new = managed_image(
        NEW,
        T0 - timedelta(hours=2),
        extra={"ami.refresh.ops/channel/canary": format_timestamp(T0 - timedelta(hours=2)), **entered},
    )

    result = planned(channels_spec(pin={"stable": OLD}), (old, new), {WEB: NEW, CANARY: NEW, STABLE: NEW})

    assert result.channels.invalid == ()
    assert [(s.name, s.imageID, s.pinned) for s in result.channels.statuses] == [
        ("canary", NEW, False),
        ("stable", OLD, True),
    ]
    enable = next(i for i, e in enumerate(result.effects) if isinstance(e, Enable) and e.image_id == OLD)
    publish = next(
        i for i, e in enumerate(result.effects) if isinstance(e, Publish) and e.parameter == STABLE
    )
    assert enable < publish
    assert result.effects[publish] == Publish(HOME, STABLE, OLD)


def test_a_channel_falls_back_to_an_ami_retention_disabled_and_enables_it() -> None:
    canary = "ami.refresh.ops/channel/canary"
    old = managed_image(
        OLD,
        T0 - timedelta(hours=5),
        "deprecated",
        state="disabled",
        extra={**DISABLED, canary: format_timestamp(T0 - timedelta(hours=5))},
    )
    new = managed_image(
        NEW, T0 - timedelta(hours=2), extra={canary: format_timestamp(T0 - timedelta(hours=2))}
    )

    result = planned(channels_spec(revoke=[NEW]), (old, new), {WEB: NEW, CANARY: NEW, STABLE: None})

    assert result.channels.statuses[0].imageID == OLD
    assert Enable(HOME, OLD, "needed again: it is current or published") in result.effects
    assert Publish(HOME, CANARY, OLD) in result.effects
    assert Publish(HOME, WEB, OLD) in result.effects


def test_publish_ssm_parameter_falls_back_to_an_ami_retention_disabled_and_enables_it() -> None:
    raw = copy.deepcopy(SEED_SPEC)
    raw["publish"] = {"ssmParameter": WEB}
    raw["release"] = {"revoke": [NEW]}
    old = managed_image(OLD, T0 - timedelta(hours=5), "deprecated", state="disabled", extra=DISABLED)
    new = managed_image(NEW, T0 - timedelta(hours=2))

    result = planned(parse_spec(raw), (old, new), {WEB: NEW})

    enable = result.effects.index(Enable(HOME, OLD, "needed again: it is current or published"))
    assert result.effects.index(Publish(HOME, WEB, OLD)) > enable


# -- retention and the builds still soaking for the next channel ----------------------------------------------

OLDEST = "ami-00000000000000009"


def test_retention_keeps_a_build_soaking_for_the_next_channel_and_nothing_older_than_what_it_holds() -> None:
    """keep 1, stable `after` 1h: `soaking` left canary for `new` before its hour there, and stable holds
    `held`, the build before it. `soaking` stays for stable; `oldest`, in no channel and older than what stable
    holds, can never enter it and goes."""
    canary, stable = "ami.refresh.ops/channel/canary", "ami.refresh.ops/channel/stable"
    oldest = managed_image(
        OLDEST,
        T0 - timedelta(hours=6),
        "deprecated",
        extra={"build-id": "b0", canary: format_timestamp(T0 - timedelta(hours=6))},
    )
    held = managed_image(
        "ami-00000000000000008",
        T0 - timedelta(hours=4),
        "deprecated",
        extra={
            "build-id": "b1",
            canary: format_timestamp(T0 - timedelta(hours=4)),
            stable: format_timestamp(T0 - timedelta(hours=3)),
        },
    )
    soaking = managed_image(
        OLD,
        T0 - timedelta(minutes=50),
        "deprecated",
        extra={"build-id": "b2", canary: format_timestamp(T0 - timedelta(minutes=50))},
    )
    new = managed_image(
        NEW,
        T0 - timedelta(minutes=10),
        extra={"build-id": "b3", canary: format_timestamp(T0 - timedelta(minutes=10))},
    )
    keep_one = channels_spec(retention={"keep": 1, "skipInUse": False})

    result = planned(keep_one, (oldest, held, soaking, new), {WEB: NEW, CANARY: NEW, STABLE: held.image_id})

    removed = {e.image_id for e in result.effects if isinstance(e, Deregister)}
    assert removed == {OLDEST}
    assert [(s.name, s.imageID) for s in result.channels.statuses] == [
        ("canary", NEW),
        ("stable", held.image_id),
    ]
