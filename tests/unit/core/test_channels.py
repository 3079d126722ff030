"""Release channels over time, the pure half (app/core/release.py): promotion in order, soak times, a cadence
shorter than the soak, pins, revocation and its fallbacks."""

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from app.core.effects import Deprecate, Deregister, Disable, Effect, Publish, TagImages, Unpublish
from app.core.facts import RegionImages
from app.core.lifecycle import Plan, plan
from app.core.publishing import Published
from app.core.release import channel_tag, promote, revoke
from app.model.release import Channel, Release
from app.model.spec import parse_spec
from app.model.tags import Image, Owner, format_timestamp
from tests.builders import NAME, NAMESPACE, T0

HOME = "us-west-2"
CANARY = Channel(name="canary", ssmParameter="/platform/ami/web/canary")
STABLE = Channel(name="stable", ssmParameter="/platform/ami/web/stable", after="72h")
CHANNELS = (CANARY, STABLE)
HOUR = timedelta(hours=1)


def ami(n: int, built: datetime, status: str = "active", **entries: datetime) -> Image:
    """The builder's n-th AMI, built at `built`, with the channel entries given as channel=time."""
    tags = {
        "status": status,
        "create-timestamp": format_timestamp(built),
        "build-id": f"build-{n}",
        **{channel_tag(name): format_timestamp(at) for name, at in entries.items()},
    }
    return Image(f"ami-{n:017x}", "available", built, f"web-{n}", tags, "x86_64")


def entered(effects: Sequence[Effect]) -> dict[str, list[str]]:
    """Channel -> the AMIs this sync's promotions tag into it."""
    out: dict[str, list[str]] = {}
    for effect in effects:
        assert isinstance(effect, TagImages)
        ((key, _),) = effect.tags
        out.setdefault(key.removeprefix("ami.refresh.ops/channel/"), []).extend(effect.image_ids)
    return out


def held(images: Sequence[Image], now: datetime, pins: dict[str, str] | None = None) -> dict[str, str]:
    channels = promote(CHANNELS, pins or {}, images, HOME, now)
    return {s.name: s.imageID for s in channels.statuses}


def test_a_new_active_ami_enters_the_first_channel_at_once_and_the_next_after_its_soak() -> None:
    first = ami(1, T0)
    channels = promote(CHANNELS, {}, [first], HOME, T0 + HOUR)
    assert entered(channels.effects) == {"canary": [first.image_id]}
    assert [(s.name, s.imageID, s.pinned) for s in channels.statuses] == [
        ("canary", first.image_id, False),
        ("stable", "", False),
    ]
    assert channels.statuses[0].enteredAt == format_timestamp(T0 + HOUR)
    # 72 h in canary later, stable takes it; canary's own entry is not written again.
    soaked = ami(1, T0, canary=T0 + HOUR)
    later = promote(CHANNELS, {}, [soaked], HOME, T0 + 73 * HOUR)
    assert entered(later.effects) == {"stable": [first.image_id]}
    assert promote(CHANNELS, {}, [soaked], HOME, T0 + 72 * HOUR).effects == ()


@pytest.mark.parametrize(
    ("hours", "canary", "stable"),
    [
        (50, 2, None),  # the first soaks 72 h; canary moved on to the second already
        (73, 2, 1),  # 72 h after the first entered canary: stable takes it, though canary moved on
        (121, 3, 2),  # then the second, 72 h after it entered canary
        (169, 3, 3),
    ],
)
def test_a_cadence_shorter_than_the_soak_never_starves_the_next_channel(
    hours: int, canary: int, stable: int | None
) -> None:
    """A new AMI every two days: each enters canary when built; stable follows each one 72 h later."""
    now = T0 + hours * HOUR
    builds = [(1, T0), (2, T0 + 48 * HOUR), (3, T0 + 96 * HOUR)]
    images = [
        ami(n, at, "active" if n == max(m for m, t in builds if t <= now) else "deprecated", canary=at)
        for n, at in builds
        if at <= now
    ]
    stable_id = ami(stable, T0).image_id if stable else ""
    assert held(images, now) == {"canary": ami(canary, T0).image_id, "stable": stable_id}


def test_a_channel_never_moves_back_by_promotion() -> None:
    """Stable was pinned to the newer AMI, then unpinned: the older soaked one does not replace it."""
    older = ami(1, T0, "deprecated", canary=T0, stable=T0 + 80 * HOUR)
    newer = ami(2, T0 + 10 * HOUR, canary=T0 + 10 * HOUR, stable=T0 + 90 * HOUR)
    assert held([older, newer], T0 + 100 * HOUR)["stable"] == newer.image_id


def test_a_pin_holds_the_channel_and_later_channels_promote_from_it() -> None:
    """Rollback: stable pinned to the previous AMI; once unpinned, promotion resumes from the newest."""
    previous = ami(1, T0, "deprecated", canary=T0, stable=T0 + 72 * HOUR)
    bad = ami(2, T0 + 100 * HOUR, canary=T0 + 100 * HOUR, stable=T0 + 172 * HOUR)
    now = T0 + 180 * HOUR
    pinned = promote(CHANNELS, {"stable": previous.image_id}, [previous, bad], HOME, now)
    assert [(s.name, s.imageID, s.pinned) for s in pinned.statuses] == [
        ("canary", bad.image_id, False),
        ("stable", previous.image_id, True),
    ]
    assert entered(pinned.effects) == {"stable": [previous.image_id]}  # it enters again: now
    # Unpinned at the next sync: the newest soaked AMI comes back in (and enters anew).
    back = replace(previous, tags={**previous.tags, channel_tag("stable"): format_timestamp(now)})
    unpinned = promote(CHANNELS, {}, [back, bad], HOME, now + HOUR)
    assert entered(unpinned.effects) == {"stable": [bad.image_id]}


@pytest.mark.parametrize(
    ("pins", "invalid"),
    [
        (
            {"stable": "ami-00000000000000099"},
            "release.pin.stable: ami-00000000000000099 is not an AMI of this builder",
        ),
        ({"prod": "ami-00000000000000001"}, "release.pin.prod: there is no channel 'prod'"),
        ({"stable": "ami-00000000000000003"}, "release.pin.stable: ami-00000000000000003 is revoked"),
        (
            {"stable": "ami-00000000000000004"},
            "release.pin.stable: ami-00000000000000004 failed its validation",
        ),
    ],
    ids=["not-ours", "no-such-channel", "revoked", "rejected"],
)
def test_an_invalid_pin_leaves_the_channel_where_it_is(pins: dict[str, str], invalid: str) -> None:
    images = [
        ami(1, T0, "deprecated", canary=T0, stable=T0 + 72 * HOUR),
        ami(2, T0 + 10 * HOUR, canary=T0 + 10 * HOUR),
        ami(3, T0 + 20 * HOUR, "revoked"),
        ami(4, T0 + 30 * HOUR, "rejected"),
    ]
    channels = promote(CHANNELS, pins, images, HOME, T0 + 75 * HOUR)
    assert len(channels.invalid) == 1
    assert channels.invalid[0].startswith(invalid)
    assert {s.name: s.imageID for s in channels.statuses}["stable"] == images[0].image_id


def test_a_revoked_ami_leaves_every_channel_which_falls_back_to_what_it_held_before() -> None:
    previous = ami(1, T0, "deprecated", canary=T0, stable=T0 + 72 * HOUR)
    bad = ami(2, T0 + 100 * HOUR, canary=T0 + 100 * HOUR, stable=T0 + 172 * HOUR)
    now = T0 + 180 * HOUR
    revocation = revoke({HOME: [previous, bad]}, Release(revoke=[bad.image_id]), HOME, now)
    assert revocation.tagging == (TagImages(HOME, (bad.image_id,), (("status", "revoked"),)),)
    assert [type(e) for e in revocation.stopping] == [Deprecate, Disable]
    assert held(revocation.views[HOME], now) == {"canary": previous.image_id, "stable": previous.image_id}


def test_revoke_base_revokes_every_ami_built_on_it_in_every_region() -> None:
    on_bad = replace(ami(1, T0), tags={**ami(1, T0).tags, "base-ami": "ami-0aaaabbbbccccdddd"})
    copy = replace(on_bad, image_id="ami-0c0c0c0c0c0c0c0c0")
    fine = ami(2, T0 + HOUR)
    revocation = revoke(
        {HOME: [on_bad, fine], "eu-west-1": [copy]}, Release(revokeBase=["ami-0aaaabbbbccccdddd"]), HOME, T0
    )
    assert revocation.revoked == {(HOME, on_bad.image_id), ("eu-west-1", copy.image_id)}


def _plan(
    images: Sequence[Image],
    values: Mapping[str, str | None],
    release: Release,
    retention: dict[str, int] | None = None,
) -> list[Effect]:
    return list(_whole_plan(images, values, release, retention).effects)


def _whole_plan(
    images: Sequence[Image],
    values: Mapping[str, str | None],
    release: Release,
    retention: dict[str, int] | None = None,
) -> Plan:
    spec = parse_spec(
        {
            "region": HOME,
            "builder": {"repoURL": "https://example.com/org/images.git", "image": "hashicorp/packer:1.11"},
            "publish": {
                "ssmParameter": "/platform/ami/web",
                "channels": [c.model_dump() for c in CHANNELS],
            },
            "release": release.model_dump(exclude_none=True),
            "retention": retention or {},
        }
    )
    owner = Owner.of(NAMESPACE, NAME, spec)
    mine = {(HOME, name): f"{NAMESPACE}/{NAME}" for name, value in values.items() if value}
    published = Published(
        {(HOME, k): v for k, v in values.items()}, mine, "/platform/ami/", f"{NAMESPACE}/{NAME}"
    )
    regions = {HOME: RegionImages(tuple(images))}
    return plan(None, {}, regions, published, spec, owner, T0 + 180 * HOUR, timedelta(hours=48))


def test_revoking_the_only_ami_deletes_every_parameter_that_named_it() -> None:
    only = ami(1, T0, canary=T0, stable=T0 + 72 * HOUR)
    values = {
        "/platform/ami/web": only.image_id,
        CANARY.ssmParameter: only.image_id,
        STABLE.ssmParameter: only.image_id,
    }
    effects = _plan([only], values, Release(revoke=[only.image_id]))
    deleted = sorted(e.parameter for e in effects if isinstance(e, Unpublish))
    assert deleted == sorted(values)
    assert not [e for e in effects if isinstance(e, Publish)]
    # The parameters move before the AMI is disabled.
    last_unpublish = max(i for i, e in enumerate(effects) if isinstance(e, Unpublish))
    assert last_unpublish < next(i for i, e in enumerate(effects) if isinstance(e, Disable))


def test_revoking_the_current_ami_publishes_the_one_before_it_everywhere() -> None:
    previous = ami(1, T0, "deprecated", canary=T0, stable=T0 + 72 * HOUR)
    current = ami(2, T0 + 100 * HOUR, canary=T0 + 100 * HOUR, stable=T0 + 172 * HOUR)
    values = {
        "/platform/ami/web": current.image_id,
        CANARY.ssmParameter: current.image_id,
        STABLE.ssmParameter: current.image_id,
    }
    effects = _plan([previous, current], values, Release(revoke=[current.image_id]))
    written = {e.parameter: e.image_id for e in effects if isinstance(e, Publish)}
    assert written == dict.fromkeys(values, previous.image_id)
    assert not [e for e in effects if isinstance(e, Unpublish)]


def test_retention_keeps_what_a_channel_holds_and_removes_revoked_amis_first() -> None:
    images = [
        ami(1, T0, "deprecated", canary=T0, stable=T0 + 72 * HOUR),  # stable
        ami(2, T0 + 50 * HOUR, "deprecated"),
        ami(3, T0 + 100 * HOUR, canary=T0 + 150 * HOUR),  # current, canary: soaking for stable
    ]
    gone = replace(ami(4, T0 + 60 * HOUR, "revoked"), state="disabled")
    effects = _plan([*images, gone], {}, Release(), {"keep": 1})
    removed = [e.image_id for e in effects if isinstance(e, Deregister)]
    assert images[0].image_id not in removed
    assert removed[0] == gone.image_id


def test_a_revoked_ami_stays_while_a_parameter_it_left_empty_is_deleted() -> None:
    """Retention removes revoked AMIs first, but not while a parameter they left with nothing to fall back to is
    still deleted: removed at the next sync, the AMI took the Revoked condition with it, and nothing said why
    the parameters were gone (stable's for its whole soak)."""
    bad = replace(ami(1, T0, "revoked", canary=T0, stable=T0 + 72 * HOUR), state="disabled")
    release = Release(revoke=[bad.image_id])
    names = ["/platform/ami/web", CANARY.ssmParameter, STABLE.ssmParameter]

    def outcome(images: Sequence[Image], values: Mapping[str, str | None]) -> tuple[list[str], str, str]:
        """The AMIs retention removes, and the Revoked condition's reason and message."""
        whole = _whole_plan(images, values, release, {"keep": 1})
        removed = [e.image_id for e in whole.effects if isinstance(e, Deregister | Disable)]
        (revoked,) = [w for w in whole.refusals if w.type == "Revoked"]
        return removed, revoked.reason, revoked.message

    # The sync after the revocation: every parameter deleted, the rebuild running.
    removed, reason, message = outcome([bad], dict.fromkeys(names))
    assert (removed, reason) == ([], "NothingToFallBackTo")
    assert bad.image_id in message
    assert all(name in message for name in names)
    # The rebuild's AMI is published and in canary; stable still has nothing while it soaks.
    new = ami(2, T0 + 170 * HOUR, canary=T0 + 170 * HOUR)
    removed, reason, message = outcome(
        [bad, new], {**dict.fromkeys(names, new.image_id), STABLE.ssmParameter: None}
    )
    assert (removed, reason) == ([], "NothingToFallBackTo")
    assert STABLE.ssmParameter in message
    assert CANARY.ssmParameter not in message
    # Once stable holds the new AMI nothing is left empty: the revoked AMI goes first.
    soaked = ami(2, T0 + 100 * HOUR, canary=T0 + 100 * HOUR, stable=T0 + 172 * HOUR)
    removed, reason, message = outcome([bad, soaked], dict.fromkeys(names, soaked.image_id))
    assert (removed, reason) == ([bad.image_id], "Revoked")
    assert message == f"Revoked: {bad.image_id}; never used again"


def test_the_hook_looks_again_when_the_next_ami_has_soaked() -> None:
    soaking = ami(1, T0, canary=T0 + HOUR)
    channels = promote(CHANNELS, {}, [soaking], HOME, T0 + 2 * HOUR)
    assert channels.next_promotion == T0 + 73 * HOUR
    assert (
        promote(
            CHANNELS, {}, [ami(1, T0, canary=T0 + HOUR, stable=T0 + 73 * HOUR)], HOME, T0 + 80 * HOUR
        ).next_promotion
        is None
    )


def test_a_cadence_shorter_than_the_first_channels_soak_never_starves_it() -> None:
    """canary after 36h, a build a day: each AMI is replaced before it has been active 36 h, and canary still
    takes each one 36 h after it became active."""
    slow = (Channel(name="canary", ssmParameter="/platform/ami/web/canary", after="36h"), STABLE)
    images = [ami(1, T0, "deprecated"), ami(2, T0 + 24 * HOUR, "deprecated"), ami(3, T0 + 48 * HOUR)]
    channels = promote(slow, {}, images, HOME, T0 + 61 * HOUR)
    assert entered(channels.effects) == {"canary": [images[1].image_id]}
