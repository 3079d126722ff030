"""What release channels announce (docs/release.md, docs/notifications.md): an AMI entering a channel, learnt from
the recorded status.channels versus the answered one, and a revocation, learnt from the decision that tags the
AMIs revoked. A table of transitions, then the same events from the statuses the real decision writes."""

import copy
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from app.core.decide import decide
from app.core.decision import Decision, News
from app.core.facts import AmiFacts
from app.http.reconcile import world_of
from app.main import _response
from app.model.hooks import HookRequest
from app.model.release import ChannelStatus
from app.model.spec import (
    Condition,
    ConditionStatus,
    PackerBuilderSpec,
    PackerBuilderStatus,
    parse_spec,
    parse_status,
)
from app.model.tags import Image, format_timestamp
from app.notify.events import NO_NEWS, Entry, Event, Kind, events
from tests.builders import (
    NAME,
    NAMESPACE,
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
from tests.unit.notify.test_notify_events import META

A = "ami-0aaaaaaaaaaaaaaaa"  # the older AMI
B = "ami-0bbbbbbbbbbbbbbbb"  # the newer one
HOUR = timedelta(hours=1)
CHANNELS = [
    {"name": "canary", "ssmParameter": "/platform/ami/web/canary"},
    {"name": "stable", "ssmParameter": "/platform/ami/web/stable", "after": "72h"},
]
SPEC = parse_spec({**SEED_SPEC, "publish": {"ssmParameter": "/platform/ami/web", "channels": CHANNELS}})


def at(hours: int) -> str:
    return format_timestamp(T0 + hours * HOUR)


def held(*channels: tuple[str, str, int] | tuple[str, str, int, bool] | str) -> PackerBuilderStatus:
    """A status whose channels hold (name, AMI, entered at hour[, pinned]); a bare name holds nothing yet."""
    statuses = []
    for channel in channels:
        if isinstance(channel, str):
            statuses.append(ChannelStatus(name=channel))
        else:
            name, image_id, hours, *pinned = channel
            statuses.append(
                ChannelStatus(name=name, imageID=image_id, enteredAt=at(hours), pinned=any(pinned))
            )
    return PackerBuilderStatus(state="AMICreated", channels=statuses)


@dataclass(frozen=True)
class Case:
    id: str
    old: PackerBuilderStatus
    new: PackerBuilderStatus
    entered: list[tuple[str, str, Entry]]
    """(channel, AMI, how) of each announced entry, in order."""
    news: News = NO_NEWS
    kinds: list[Kind] = field(default_factory=list)
    """Every event's kind, when there is more than entries."""


P = Entry.promoted
CASES = [
    Case("the first AMI enters canary", held(), held(("canary", A, 1), "stable"), [("canary", A, P)]),
    Case("synced again", held(("canary", A, 1), "stable"), held(("canary", A, 1), "stable"), []),
    Case(
        "a stale status that does not show canary's AMI yet",
        PackerBuilderStatus(state="AMICreated"),
        held(("canary", A, 1), "stable"),
        [("canary", A, P)],
    ),
    Case(
        "the next AMI enters canary while stable waits",
        held(("canary", A, 1), "stable"),
        held(("canary", B, 50), "stable"),
        [("canary", B, P)],
    ),
    Case(
        "stable takes A once it has soaked, though canary moved on",
        held(("canary", B, 50), "stable"),
        held(("canary", B, 50), ("stable", A, 73)),
        [("stable", A, P)],
    ),
    Case(
        "both channels move in one sync, in spec order",
        held(("canary", A, 1), ("stable", A, 73)),
        held(("canary", B, 100), ("stable", B, 100)),
        [("canary", B, P), ("stable", B, P)],
    ),
    Case(
        "stable pinned back to A (a rollback)",
        held(("canary", B, 100), ("stable", B, 172)),
        held(("canary", B, 100), ("stable", A, 180, True)),
        [("stable", A, Entry.pinned)],
    ),
    Case(
        "the pin recorded",
        held(("canary", B, 100), ("stable", A, 180, True)),
        held(("canary", B, 100), ("stable", A, 180, True)),
        [],
    ),
    Case(
        "a pin on the AMI the channel holds (a freeze) changes nothing",
        held(("canary", B, 100), ("stable", B, 172)),
        held(("canary", B, 100), ("stable", B, 172, True)),
        [],
    ),
    Case(
        "unpinned, and nothing newer has soaked",
        held(("canary", B, 100), ("stable", A, 180, True)),
        held(("canary", B, 100), ("stable", A, 180)),
        [],
    ),
    Case(
        "unpinned, and promotion moves on at once",
        held(("canary", B, 100), ("stable", A, 180, True)),
        held(("canary", B, 100), ("stable", B, 190)),
        [("stable", B, P)],
    ),
    Case(
        "B revoked: both channels fall back to A, which entered them earlier",
        held(("canary", B, 100), ("stable", B, 172)),
        held(("canary", A, 1), ("stable", A, 73)),
        [("canary", A, Entry.fell_back), ("stable", A, Entry.fell_back)],
        News(revoked=(B,)),
        [Kind.revoked, Kind.promoted, Kind.promoted],
    ),
    Case(
        "the only AMI revoked: nothing to fall back to, only the revocation says so",
        held(("canary", A, 1), "stable"),
        held("canary", "stable"),
        [],
        News(revoked=(A,)),
        [Kind.revoked],
    ),
    Case(
        "a channel added to the spec takes the AMI",
        held(("canary", A, 1)),
        held(("canary", A, 1), ("stable", A, 80)),
        [("stable", A, P)],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_channel_transitions(case: Case) -> None:
    found = events(META, SPEC, case.old, case.new, news=case.news)
    entries = [(e.channel, e.image_id, e.entry) for e in found if e.kind is Kind.promoted]
    assert entries == case.entered
    assert [e.kind for e in found] == (case.kinds or [Kind.promoted] * len(case.entered))


def entry(old: PackerBuilderStatus, new: PackerBuilderStatus) -> Event:
    (found,) = events(META, SPEC, old, new)
    return found


def test_a_promotion_names_the_channel_the_ami_the_one_it_replaces_and_when_it_entered() -> None:
    found = entry(held(("canary", B, 50), "stable"), held(("canary", B, 50), ("stable", A, 73)))
    assert (found.channel, found.image_id, found.previous, found.detail) == ("stable", A, "", at(73))
    assert found.region == "us-west-2"
    moved = entry(held(("canary", A, 1)), held(("canary", B, 50)))
    assert moved.previous == A


def test_the_same_entry_seen_twice_has_one_key_a_later_entry_of_the_same_ami_another() -> None:
    promoted = entry(held(), held(("canary", A, 1)))
    replayed = entry(PackerBuilderStatus(), held(("canary", A, 1)))
    assert promoted.key == replayed.key == (META.uid, f"canary {A} {at(1)}", "AMIPromoted")
    # A promoted earlier that day, then B, then canary pinned back to A: the rollback is announced too.
    rollback = entry(held(("canary", B, 5)), held(("canary", A, 9, True)))
    assert rollback.key != promoted.key
    # The same AMI in another channel is another occurrence.
    assert entry(held(), held(("stable", A, 1))).key != promoted.key


def test_a_revocation_is_one_event_naming_every_revoked_ami_and_the_revoked_condition() -> None:
    said = "Revoked: ami-0aaaaaaaaaaaaaaaa, ami-0bbbbbbbbbbbbbbbb; never used again"
    revoked = Condition(
        type="Revoked", status=ConditionStatus.true, reason="Revoked", message=said, lastTransitionTime=at(0)
    )
    new = held(("canary", A, 1)).model_copy(update={"conditions": [revoked]})
    (found,) = events(META, SPEC, held(("canary", A, 1)), new, news=News(revoked=(A, B)))
    assert found.kind is Kind.revoked
    assert found.images == (A, B)
    assert found.image_id == ""  # two AMIs: no single console link
    assert found.detail == said
    assert found.key == (META.uid, f"{A} {B}", "AMIRevoked")
    (one,) = events(META, SPEC, held(), held(), news=News(revoked=(B,)))
    assert one.image_id == B


def test_an_invalid_spec_announces_no_channel() -> None:
    found = events(META, None, held(), held(("canary", A, 1)), news=News(revoked=(B,)))
    assert [e.kind for e in found] == []


# -- from the statuses the real decision writes ----------------------------------------------------------------

BASE = base_image()
OLD = "ami-0old0000000000001"
BUILT = "ami-0b1a2b3c4d5e6f708"
PARAMETER = "/platform/ami/web"


def raw_spec(**release: Any) -> dict[str, Any]:
    body = copy.deepcopy(SEED_SPEC)
    body["publish"] = {"ssmParameter": PARAMETER, "channels": CHANNELS}
    if release:
        body["release"] = release
    return body


def sync(
    raw: dict[str, Any], status: dict[str, Any] | None, facts: AmiFacts, now: datetime, *extra: Any
) -> tuple[dict[str, Any], Decision, list[Event]]:
    """One sync: the answer, the decision and what it announces (the recorded status against the answer)."""
    jobs, pods = extra if extra else ([], [])
    req = request(parent(raw, status), jobs, pods)
    world = world_of(HookRequest.model_validate(req))
    decision = decide(world, facts, now)
    assert isinstance(world.spec, PackerBuilderSpec)
    found = events(world.meta, world.spec, world.status, decision.status, world.jobs, decision.news)
    return json.loads(json.dumps(_response(decision))), decision, found


def image(image_id: str, built: datetime, status: str, raw: dict[str, Any], **tags: str) -> Image:
    found = managed_image(image_id, built, status, spec=raw, extra={"build-id": image_id, **tags})
    return Image(image_id, found.state, found.created_at, found.name, found.tags, "x86_64")


def published(value: str) -> dict[str, Any]:
    """Every parameter of the builder names `value`."""
    names = [PARAMETER, *(c["ssmParameter"] for c in CHANNELS)]
    return {
        "parameters": {("us-west-2", n): value for n in names},
        "parameter_owners": {("us-west-2", n): f"{NAMESPACE}/{NAME}" for n in names},
    }


def test_a_build_enters_canary_in_the_sync_it_becomes_active_announced_after_its_success() -> None:
    raw = raw_spec()
    first, _, found = sync(raw, None, AmiFacts(base_image=BASE), T0)
    assert [e.kind for e in found] == [Kind.started]
    (job,) = first["children"]
    done = succeeded(job)
    pods = [build_pod(done, f"us-west-2:{BUILT}")]
    built = Image(BUILT, "available", T0 + timedelta(minutes=20), "opsy-built", {}, "x86_64")
    now = T0 + timedelta(minutes=30)

    answer, _, found = sync(
        raw, first["status"], AmiFacts(base_image=BASE, built=(built,)), now, [done], pods
    )

    assert [(e.kind, e.channel, e.image_id, e.entry) for e in found] == [
        (Kind.succeeded, "", BUILT, None),
        (Kind.promoted, "canary", BUILT, Entry.promoted),
    ]
    assert found[1].previous == ""
    assert parse_status(answer["status"]).channels[0].enteredAt == format_timestamp(now)


def test_revoking_the_current_ami_announces_it_once_then_the_fallback_then_the_rebuild() -> None:
    raw = raw_spec()
    stamps = {"ami.refresh.ops/channel/canary": at(-60), "ami.refresh.ops/channel/stable": at(-40)}
    older = image(OLD, T0 - timedelta(days=3), "deprecated", raw, **stamps)
    newer = {"ami.refresh.ops/channel/canary": at(-10)}
    current = image(BUILT, T0 - timedelta(hours=12), "active", raw, **newer)
    facts = AmiFacts(base_image=BASE, managed=(older, current), **published(BUILT))
    before, _, _ = sync(raw, None, facts, T0)
    assert [(c["name"], c["imageID"]) for c in before["status"]["channels"]] == [
        ("canary", BUILT),
        ("stable", OLD),
    ]

    raw = raw_spec(revoke=[BUILT])
    answer, decision, found = sync(raw, before["status"], facts, T0 + HOUR)

    assert decision.news.revoked == (BUILT,)
    assert [(e.kind, e.channel, e.image_id, e.entry) for e in found] == [
        (Kind.revoked, "", BUILT, None),
        (Kind.promoted, "canary", OLD, Entry.fell_back),
        (Kind.started, "", "", None),
    ]
    assert found[0].detail.startswith(f"Revoked: {BUILT}")
    assert found[1].previous == BUILT
    # The next sync sees BUILT tagged revoked and canary's fallback recorded: nothing more to say.
    revoked = image(BUILT, current.created_at, "revoked", raw, **newer)
    again = AmiFacts(base_image=BASE, managed=(older, revoked), **published(OLD))
    (rebuild,) = answer["children"]
    _, decision, found = sync(raw, answer["status"], again, T0 + 2 * HOUR, [running(rebuild)], [])
    assert decision.news.revoked == ()
    assert [e.kind for e in found if e.kind in (Kind.revoked, Kind.promoted)] == []
