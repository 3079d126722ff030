"""Removal in stages, pure (app.core.removal): for each AMI of a builder, what state it is in, what happens next, when.

Each row reads "this AMI, this retention -> this step now, or this wait"; then the same through `plan` and
`decide`, for the order of the effects and the status a user reads.
"""

import json
from datetime import timedelta
from typing import Any, TypedDict

import pytest

from app.core.decide import acts, decide, decide_finalize
from app.core.effects import Deprecate, Deregister, Disable, Effect, Enable, Protect, Publish, TagImages
from app.core.facts import AmiFacts, RegionImages
from app.core.lifecycle import plan
from app.core.publishing import Published
from app.core.removal import MAX_REMOVALS_PER_SYNC, NEXT, Action, State, needed, protections, removals
from app.http.reconcile import world_of
from app.main import _response
from app.model.hooks import HookRequest
from app.model.spec import Retention, parse_spec
from app.model.tags import Image, Owner, format_timestamp
from tests.builders import (
    NAME,
    NAMESPACE,
    T0,
    base_image,
    build_pod,
    managed_image,
    parent,
    request,
    succeeded,
)
from tests.seed import SEED_SPEC

HOME, COPY = "us-west-2", "eu-west-1"
NOW = T0 + timedelta(days=60)
CURRENT = "ami-0c00000000000000a"
SUBJECT = "ami-0500000000000000b"
PARAMETER = "/platform/ami/eks-al2023"
MANAGEMENT = {"created-by": NAME}
OWNER = Owner.of(NAMESPACE, NAME, parse_spec(SEED_SPEC))


def published(values: dict[tuple[str, str], str | None] | None = None) -> Published:
    return Published(values or {}, {}, "", str(OWNER))


class Shape(TypedDict, total=False):
    """How an AMI looks to retention, besides its age and status."""

    state: str
    disabled_days: float
    launched_days: float
    protected: bool


def ami(
    image_id: str,
    days: float,
    *,
    status: str = "deprecated",
    state: str = "available",
    disabled_days: float | None = None,
    launched_days: float | None = None,
    protected: bool = False,
) -> Image:
    """An AMI of the builder created `days` before NOW; disabled by retention and launched so many days ago."""
    extra = (
        {}
        if disabled_days is None
        else {"disabled-at": format_timestamp(NOW - timedelta(days=disabled_days))}
    )
    image = managed_image(image_id, NOW - timedelta(days=days), status=status, state=state, extra=extra)
    launched = None if launched_days is None else NOW - timedelta(days=launched_days)
    return Image(
        image.image_id,
        image.state,
        image.creation_date,
        image.name,
        image.tags,
        "x86_64",
        (f"snap-{image_id[4:]}",),
        protected=protected,
        last_launched=launched,
    )


def current(days: float = 1) -> Image:
    return ami(CURRENT, days, status="active")


def retention(**fields: Any) -> Retention:
    return Retention.model_validate({"keep": 1, **fields})


def run(images: list[Image], ret: Retention, kept: set[tuple[str, str]] | None = None) -> list[str]:
    """What happens now, one line per effect, then what waits (if anything)."""
    found = removals({HOME: images}, kept if kept is not None else {(HOME, CURRENT)}, ret, MANAGEMENT, NOW)
    lines = [summary(e) for e in (*found.enables, *found.steps)]
    return lines + ([f"waiting: {found.waiting}"] if found.waiting else [])


def summary(effect: Effect) -> str:
    if isinstance(effect, Enable):
        return f"enable {effect.image_id}"
    if isinstance(effect, Disable):
        return f"{'record' if effect.already_disabled else 'disable'} {effect.image_id}"
    if isinstance(effect, Deregister):
        return f"deregister {effect.image_id}"
    if isinstance(effect, Protect):
        return f"protect {effect.image_id} {'on' if effect.enabled else 'off'}"
    raise AssertionError(effect)


def stamp(days: float) -> str:
    return format_timestamp(NOW + timedelta(days=days))


# -- the table --------------------------------------------------------------------------------------------------


def test_the_table_has_a_row_for_every_state_and_never_disables_or_removes_what_is_wanted() -> None:
    assert set(NEXT) == set(State)
    assert {row[0] for row in NEXT.values()} <= {Action.keep, Action.enable}
    # Without disableFor nothing is disabled first: beyond keep is removal at once, as before stages existed.
    assert {row[2] for row in NEXT.values()} == {Action.deregister}


AVAILABLE = Shape()
DISABLED_1D = Shape(state="disabled", disabled_days=1)
DISABLED_8D = Shape(state="disabled", disabled_days=8)
ELSEWHERE = Shape(state="disabled")
WEEK = "168h"


@pytest.mark.parametrize(
    ("subject", "keep", "disable_for", "expected"),
    [
        # available
        (AVAILABLE, 2, WEEK, []),
        (AVAILABLE, 1, WEEK, [f"disable {SUBJECT}"]),
        (AVAILABLE, 1, None, [f"deregister {SUBJECT}"]),
        # disabled by retention a day ago, a week ago
        (DISABLED_1D, 2, WEEK, [f"enable {SUBJECT}"]),
        (DISABLED_1D, None, WEEK, [f"enable {SUBJECT}"]),
        (
            DISABLED_1D,
            1,
            WEEK,
            [f"waiting: {SUBJECT} in {HOME} (disabled since {stamp(-1)}): removed after {stamp(6)}"],
        ),
        (DISABLED_8D, 1, WEEK, [f"deregister {SUBJECT}"]),
        (DISABLED_1D, 1, None, [f"deregister {SUBJECT}"]),
        # disabled by someone else: never enabled by the hook; beyond keep, its clock starts now
        (ELSEWHERE, 2, WEEK, []),
        (ELSEWHERE, 1, WEEK, [f"record {SUBJECT}"]),
        (ELSEWHERE, 1, None, [f"deregister {SUBJECT}"]),
        # nothing launches from a failed AMI: nothing to disable
        (Shape(state="failed"), 1, WEEK, [f"deregister {SUBJECT}"]),
        (Shape(state="failed"), 2, WEEK, []),
        # pending: not an AMI yet
        (Shape(state="pending"), 1, None, []),
    ],
)
def test_what_happens_next_to_an_older_ami(
    subject: Shape, keep: int | None, disable_for: str | None, expected: list[str]
) -> None:
    ret = Retention.model_validate({"keep": keep, "disableFor": disable_for})
    assert run([current(), ami(SUBJECT, 10, **subject)], ret) == expected


def test_the_steps_carry_the_checks_and_the_moment() -> None:
    ret = retention(disableFor=WEEK, unusedFor="720h", skipInUse=True)
    found = removals(
        {HOME: [current(), ami(SUBJECT, 10), ami("ami-0e00000000000000c", 20, **ELSEWHERE)]},
        {(HOME, CURRENT)},
        ret,
        MANAGEMENT,
        NOW,
    )
    recorded, disabled = found.steps
    assert isinstance(recorded, Disable)
    assert disabled == Disable(
        HOME, SUBJECT, NOW, disabled.reason, skip_in_use=True, unused_since=NOW - timedelta(days=30)
    )
    assert "older than the newest 1 x86_64 AMIs" in disabled.reason
    # Recording changes nothing anyone launches: no checks.
    assert (recorded.already_disabled, recorded.skip_in_use, recorded.unused_since) == (True, False, None)


def test_deregistration_after_disabling_says_since_when_and_tags_the_snapshots() -> None:
    found = removals(
        {HOME: [current(), ami(SUBJECT, 10, **DISABLED_8D)]},
        {(HOME, CURRENT)},
        retention(disableFor=WEEK),
        MANAGEMENT,
        NOW,
    )
    (step,) = found.steps
    assert isinstance(step, Deregister)
    assert step.snapshot_ids == (f"snap-{SUBJECT[4:]}",)
    assert step.snapshot_tags == (("created-by", NAME),)
    assert f"disabled since {stamp(-8)}" in step.reason
    assert step.unused_since is None


# -- unusedFor ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        # EC2's listing shows a launch 10 days ago: nothing happens before 30 days after it.
        (
            Shape(launched_days=10),
            [f"waiting: {SUBJECT} in {HOME} (last launched {stamp(-10)}): disabled after {stamp(20)}"],
        ),
        # Launched 40 days ago, or never reported: due; carry_out asks EC2 once more just before.
        (Shape(launched_days=40), [f"disable {SUBJECT}"]),
        (AVAILABLE, [f"disable {SUBJECT}"]),
        # Disabled a week ago, launched 25 days ago: the later of the two clocks.
        (
            Shape(state="disabled", disabled_days=8, launched_days=25),
            [
                f"waiting: {SUBJECT} in {HOME} (disabled since {stamp(-8)}, last launched {stamp(-25)}): "
                f"removed after {stamp(5)}"
            ],
        ),
    ],
)
def test_an_ami_launched_within_unused_for_waits(subject: Shape, expected: list[str]) -> None:
    assert (
        run([current(), ami(SUBJECT, 50, **subject)], retention(disableFor=WEEK, unusedFor="720h"))
        == expected
    )


def test_without_unused_for_a_launch_does_not_matter_and_nothing_is_asked() -> None:
    found = removals(
        {HOME: [current(), ami(SUBJECT, 50, launched_days=1)]},
        {(HOME, CURRENT)},
        retention(),
        MANAGEMENT,
        NOW,
    )
    (step,) = found.steps
    assert isinstance(step, Deregister)
    assert step.unused_since is None


# -- protection -----------------------------------------------------------------------------------------------------


def test_protection_someone_else_turned_on_holds_the_ami_and_says_so() -> None:
    lines = run([current(), ami(SUBJECT, 10, protected=True)], retention(disableFor=WEEK))
    assert lines == [
        f"waiting: {SUBJECT} in {HOME} has deregistration protection, turned on outside the hook: "
        "kept while it is on"
    ]


def test_with_protect_the_hook_owns_protection_of_every_ami_of_the_builder() -> None:
    published = ami("ami-0b00000000000000d", 5, protected=False)
    old = ami(SUBJECT, 10, protected=True)
    within = ami("ami-0a00000000000000e", 3, protected=True)
    view = [current(), published, old, within]
    kept = needed({HOME: view}, [(HOME, current())], {(HOME, PARAMETER): published.image_id})
    ret = retention(keep=3, protect=True)

    assert [summary(p) for p in protections({HOME: view}, kept, ret)] == [
        f"protect {SUBJECT} off",
        f"protect {within.image_id} off",
        f"protect {published.image_id} on",
        f"protect {CURRENT} on",
    ]
    # Not held: the hook turns its protection off in the same sync, before the step.
    assert run(view, ret, kept) == [f"deregister {SUBJECT}"]
    assert protections({HOME: view}, kept, retention(keep=3)) == []


def test_only_the_builders_own_amis_are_protected() -> None:
    view = [current()]
    kept = needed({HOME: view}, [(HOME, current())], {(HOME, PARAMETER): "ami-0someone0000000000"})
    assert kept == {(HOME, CURRENT)}


# -- needed again -----------------------------------------------------------------------------------------------------


def test_a_published_ami_retention_disabled_is_enabled_and_never_removed() -> None:
    old = ami(SUBJECT, 10, **DISABLED_8D)
    kept = needed({HOME: [current(), old]}, [(HOME, current())], {(HOME, PARAMETER): SUBJECT})
    assert run([current(), old], retention(disableFor=WEEK), kept) == [f"enable {SUBJECT}"]
    (enable,) = removals({HOME: [current(), old]}, kept, retention(), MANAGEMENT, NOW).enables
    assert enable.reason == "needed again: it is current or published"


def test_removals_and_enables_share_the_cap_enables_first_then_oldest() -> None:
    olds = [ami(f"ami-0{n:02d}0000000000000f", 10 + n) for n in range(8)]
    back = [ami(f"ami-0e{n}0000000000000f", 2 + n, **DISABLED_1D) for n in range(2)]
    lines = run([current(), *back, *olds], Retention.model_validate({"keep": 3}))
    assert len(lines) == MAX_REMOVALS_PER_SYNC
    assert lines == [
        f"enable {back[0].image_id}",
        f"enable {back[1].image_id}",
        *[f"deregister {o.image_id}" for o in olds[::-1][:3]],
    ]


def test_the_waiting_list_is_sorted_and_cut_after_ten() -> None:
    waiting = [ami(f"ami-0{n:02d}0000000000000f", 10 + n, **DISABLED_1D) for n in range(13)]
    (line,) = run([current(), *waiting], retention(disableFor=WEEK))
    assert line.count(" in us-west-2 ") == 10
    assert line.endswith("; and 3 more")
    assert line.index(waiting[0].image_id) < line.index(waiting[9].image_id)
    assert run([current(), *reversed(waiting)], retention(disableFor=WEEK)) == [line]


# -- through the plan and the decision ---------------------------------------------------------------------------------


def raw_spec(**fields: Any) -> dict[str, Any]:
    return {**json.loads(json.dumps(SEED_SPEC)), **fields}


def test_effects_come_in_the_safe_order() -> None:
    """Enabled before anything is published; protection changed, then removal steps, last."""
    spec = parse_spec(
        raw_spec(
            retention={"keep": 1, "disableFor": WEEK, "protect": True, "deprecate": True},
            publish={"ssmParameter": PARAMETER},
        )
    )
    new = ami(CURRENT, 0.01, status="active")
    back = ami("ami-0b00000000000000d", 20, **DISABLED_8D)  # published by hand: needed again
    old = ami(SUBJECT, 10, protected=True)
    planned = plan(
        None,
        {},
        {HOME: RegionImages(managed=(new, back, old))},
        published({(HOME, PARAMETER): back.image_id}),
        spec,
        OWNER,
        NOW,
        timedelta(days=2),
    )

    assert [(type(e).__name__, getattr(e, "image_id", "")) for e in planned.effects] == [
        ("Enable", back.image_id),
        ("Deprecate", CURRENT),
        ("Publish", CURRENT),
        ("Protect", SUBJECT),
        ("Protect", back.image_id),
        ("Protect", CURRENT),
        ("Disable", SUBJECT),
    ]
    assert [e.enabled for e in planned.effects if isinstance(e, Protect)] == [False, True, True]


def test_an_active_ami_retention_disabled_is_current_again_once_enabled() -> None:
    """Adoption of an AMI that is disabled: enabled first, then it is the current one."""
    spec = parse_spec(
        raw_spec(retention={"keep": 1, "disableFor": WEEK}, publish={"ssmParameter": PARAMETER})
    )
    revived = ami(SUBJECT, 1, status="active", **DISABLED_1D)
    planned = plan(
        None, {}, {HOME: RegionImages(managed=(revived,))}, published(), spec, OWNER, NOW, timedelta(days=2)
    )

    ((region, chosen),) = planned.current
    assert (region, chosen.image_id, chosen.state) == (HOME, SUBJECT, "available")
    assert "disabled-at" not in chosen.tags
    enable, publish = planned.effects
    assert enable == Enable(HOME, SUBJECT, "needed again: it is current or published")
    assert isinstance(publish, Publish)
    assert (publish.region, publish.parameter, publish.image_id) == (HOME, PARAMETER, SUBJECT)


def test_an_active_ami_disabled_by_someone_else_is_never_current() -> None:
    spec = parse_spec(raw_spec(retention={"keep": 1, "disableFor": WEEK}))
    elsewhere = ami(SUBJECT, 1, status="active", **ELSEWHERE)
    planned = plan(
        None, {}, {HOME: RegionImages(managed=(elsewhere,))}, published(), spec, OWNER, NOW, timedelta(days=2)
    )
    assert planned.current == ()
    assert planned.effects == ()


def ready(raw: dict[str, Any], managed: tuple[Image, ...]) -> tuple[Any, Any]:
    """A builder re-checked with these AMIs, its status as the sync before left it."""
    facts = AmiFacts(managed=managed, base_image=base_image())
    before = decide(world_of(HookRequest.model_validate(request(parent(raw)))), facts, NOW)
    status = json.loads(json.dumps(_response(before)))["status"]
    world = world_of(HookRequest.model_validate(request(parent(raw, status=status))))
    return world, decide(world, facts, NOW)


def test_retention_pending_names_what_is_disabled_and_when_it_goes_without_acting() -> None:
    raw = raw_spec(retention={"keep": 1, "disableFor": WEEK})
    world, decision = ready(raw, (current(), ami(SUBJECT, 10, **DISABLED_1D)))

    (pending,) = [c for c in decision.status.conditions if c.type == "RetentionPending"]
    assert (pending.status, pending.reason) == ("True", "RetentionPending")
    assert pending.message == (
        f"Waiting: {SUBJECT} in {HOME} (disabled since {stamp(-1)}): removed after {stamp(6)}"
    )
    assert decision.effects == ()
    assert acts(world, decision) is False  # waiting is answered from memory
    replay = decide(
        world, AmiFacts(managed=(current(), ami(SUBJECT, 10, **DISABLED_1D)), base_image=base_image()), NOW
    )
    assert json.dumps(_response(replay)) == json.dumps(_response(decision))


def test_retention_pending_goes_once_nothing_waits() -> None:
    raw = raw_spec(retention={"keep": 1, "disableFor": WEEK})
    _, decision = ready(raw, (current(), ami(SUBJECT, 10, **DISABLED_8D)))
    assert "RetentionPending" not in {c.type for c in decision.status.conditions}
    assert [type(e) for e in decision.effects] == [Deregister]
    _, unset = ready(raw_spec(retention={"keep": 1}), (current(), ami(SUBJECT, 10)))
    assert "RetentionPending" not in {c.type for c in unset.status.conditions}
    assert not any(isinstance(e, TagImages | Deprecate) for e in unset.effects)


@pytest.mark.parametrize(
    ("retention_fields", "message"),
    [
        ({"disableFor": "7 days"}, "spec.retention.disableFor: '7 days' is not a duration such as 48h"),
        ({"disableFor": "0s"}, "spec.retention.disableFor: '0s' must be longer than zero"),
        ({"unusedFor": "3651d"}, "spec.retention.unusedFor: '3651d' is longer than 3650d"),
        ({"protect": "yes"}, "spec.retention.protect: "),
    ],
)
def test_a_wrong_stage_field_is_an_invalid_spec_naming_it(
    retention_fields: dict[str, Any], message: str
) -> None:
    raw = raw_spec(retention={"keep": 1, **retention_fields})
    decision = decide(world_of(HookRequest.model_validate(request(parent(raw)))), AmiFacts(), NOW)
    (invalid,) = [c for c in decision.status.conditions if c.type == "InvalidSpec"]
    assert invalid.message.startswith(message)
    assert decision.effects == ()


def test_a_builder_being_deleted_disables_nothing() -> None:
    """Disabling is removal's first stage: /finalize, which removes nothing, disables nothing either."""
    raw = raw_spec(retention={"keep": 1, "disableFor": WEEK})
    first = json.loads(
        json.dumps(
            _response(decide(world_of(HookRequest.model_validate(request(parent(raw)))), AmiFacts(), NOW))
        )
    )
    (job,) = first["children"]
    done = succeeded(job, NOW - timedelta(minutes=30), NOW - timedelta(minutes=5))
    req = request(parent(raw, status=first["status"]), [done], [build_pod(done, f"{HOME}:{CURRENT}")])
    world = world_of(HookRequest.model_validate(req))
    built = Image(CURRENT, "available", NOW - timedelta(minutes=10), "opsy-built", {}, "x86_64")
    facts = AmiFacts(managed=(ami(SUBJECT, 10),), built=(built,), base_image=base_image())

    assert [e.image_id for e in decide(world, facts, NOW).effects if isinstance(e, Disable)] == [SUBJECT]
    finalizing = decide_finalize(world, facts, NOW)
    assert finalizing.finalized is True
    assert [type(e) for e in finalizing.effects] == [TagImages]
