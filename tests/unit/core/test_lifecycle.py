"""Retention and distribution, pure: what a sync decides about a builder's AMIs in every region.

Driven through `decide` with the hook's own request shapes, so each row reads as "the builder, these AMIs in
EC2, this build just finished -> these effects, this status".
"""

import copy
import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from app.core.decide import acts, decide, decide_finalize, with_reports
from app.core.decision import Decision
from app.core.effects import Deprecate, Deregister, Publish, Report, Result, TagImages, Unpublish
from app.core.facts import AmiFacts, RegionImages
from app.core.lifecycle import deprecation_moment
from app.core.publishing import parameter_names
from app.http.reconcile import world_of
from app.main import _response
from app.model.hooks import HookRequest
from app.model.spec import parse_spec
from app.model.tags import Image, Owner, format_timestamp
from tests.builders import (
    NAME,
    NAMESPACE,
    T0,
    base_image,
    build_id_of,
    build_pod,
    managed_image,
    parent,
    request,
    succeeded,
)
from tests.seed import SEED_SPEC

HOME = "us-west-2"
COPY = "eu-west-1"
BASE = base_image()
FINISHED = T0 + timedelta(minutes=25)
NOW = T0 + timedelta(minutes=30)
PARAMETER = "/platform/ami/eks-al2023"
X86 = "ami-0aaa0000000000001"
OWNER = Owner.of(NAMESPACE, NAME, parse_spec(SEED_SPEC))
ARM = "ami-0bbb0000000000002"
EU = "ami-0ccc0000000000003"


def spec(**fields: Any) -> dict[str, Any]:
    raw = copy.deepcopy(SEED_SPEC)
    raw.update(fields)
    return raw


def first_job(raw_spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    decision = decide(
        world_of(HookRequest.model_validate(request(parent(raw_spec)))), AmiFacts(base_image=BASE), T0
    )
    body = json.loads(json.dumps(_response(decision)))
    return body["status"], body["children"][0]


def fresh(image_id: str, arch: str = "x86_64", snapshots: tuple[str, ...] = ()) -> Image:
    return Image(image_id, "available", T0 + timedelta(minutes=20), "opsy-built", {}, arch, snapshots)


def older(image_id: str, days: int, status: str = "deprecated", arch: str = "x86_64", **kw: Any) -> Image:
    image = managed_image(image_id, T0 - timedelta(days=days), status=status, **kw)
    return replace(image, architecture=arch, snapshot_ids=(f"snap-{image_id[4:]}",))


def finished_sync(
    raw_spec: dict[str, Any],
    message: str,
    built: Mapping[str, tuple[Image, ...]],
    managed: Mapping[str, tuple[Image, ...]] | None = None,
    parameters: dict[tuple[str, str], str | None] | None = None,
    now: datetime = NOW,
    owners: dict[tuple[str, str], str] | None = None,
    unavailable: Mapping[str, str] | None = None,
) -> Decision:
    """The sync that sees the first build of `raw_spec` finished with this termination message.

    Existing parameters are the builder's own unless `owners` says otherwise.
    """
    status, job = first_job(raw_spec)
    done = succeeded(job, finished=FINISHED)
    req = request(parent(raw_spec, status=status), [done], [build_pod(done, message)])
    managed = managed or {}
    regions = {r: RegionImages(managed.get(r, ()), built.get(r, ())) for r in {*built, *managed} if r != HOME}
    facts = AmiFacts(
        managed=managed.get(HOME, ()),
        base_image=BASE,
        built=built.get(HOME, ()),
        elsewhere=regions,
        parameters=parameters or {},
        parameter_owners=owners
        if owners is not None
        else {key: str(OWNER) for key, value in (parameters or {}).items() if value is not None},
        unavailable=unavailable or {},
    )
    return decide(world_of(HookRequest.model_validate(req)), facts, now)


def created(region: str, name: str, image_id: str) -> Publish:
    """A parameter the hook creates: it records its owner."""
    return Publish(region, name, image_id, tuple(sorted(OWNER.parameter_tags.items())), create=True)


def of(kind: type, decision: Decision) -> list[Any]:
    return [e for e in decision.effects if isinstance(e, kind)]


def images(decision: Decision) -> list[tuple[str, str, str]]:
    return [(i.region, i.architecture, i.imageID) for i in decision.status.images]


# -- every artifact, every region, any order -------------------------------------------------------------


@pytest.mark.parametrize("message", [f"{HOME}:{X86},{HOME}:{ARM}", f"{HOME}:{ARM},{HOME}:{X86}"])
def test_two_architectures_are_both_tagged_active_whatever_the_message_order(message: str) -> None:
    decision = finished_sync(spec(), message, {HOME: (fresh(ARM, "arm64"), fresh(X86))})

    (tag,) = of(TagImages, decision)
    assert tag.image_ids == (X86, ARM)
    assert dict(tag.tags)["status"] == "active"
    assert images(decision) == [(HOME, "arm64", ARM), (HOME, "x86_64", X86)]
    assert decision.status.lastRunBuiltImageID == X86  # x86_64 speaks for the builder, never the order


def test_a_copy_in_another_region_is_tagged_there_and_retires_the_old_one_there_only() -> None:
    old_eu = older("ami-0eee0000000000009", 3, status="active")
    old_home = older("ami-0ddd0000000000008", 3, status="active")
    decision = finished_sync(
        spec(),
        f"{COPY}:{EU},{HOME}:{X86}",
        {HOME: (fresh(X86),), COPY: (fresh(EU),)},
        managed={HOME: (old_home,), COPY: (old_eu,)},
    )

    tags = {(e.region, e.image_ids, dict(e.tags)["status"]) for e in of(TagImages, decision)}
    assert tags == {
        (COPY, (EU,), "active"),
        (HOME, (X86,), "active"),
        (COPY, (old_eu.image_id,), "deprecated"),
        (HOME, (old_home.image_id,), "deprecated"),
    }
    # Every new AMI is tagged before any old one is retired.
    kinds = [dict(e.tags)["status"] for e in of(TagImages, decision)]
    assert kinds == ["active", "active", "deprecated", "deprecated"]
    assert images(decision) == [(COPY, "x86_64", EU), (HOME, "x86_64", X86)]
    assert decision.status.lastRunBuiltImageID == X86


@pytest.mark.parametrize(
    ("copy", "overdue", "condition"),
    [
        (None, False, False),  # not visible yet: wait quietly, the Job stays
        (None, True, True),  # never appeared
        (replace(fresh(EU), state="failed"), False, True),
    ],
)
def test_a_missing_or_failed_copy_is_a_condition_and_never_undoes_the_home_ami(
    copy: Image | None, overdue: bool, condition: bool
) -> None:
    now = FINISHED + timedelta(hours=1) if overdue else NOW
    built = {HOME: (fresh(X86),), COPY: (copy,) if copy else ()}
    decision = finished_sync(spec(), f"{HOME}:{X86},{COPY}:{EU}", built, now=now)

    assert decision.status.state == "AMICreated"
    assert of(TagImages, decision)[0].image_ids == (X86,)
    found = [c for c in decision.status.conditions if c.type == "ImageCopyFailed"]
    assert bool(found) is condition
    if condition:
        assert EU in found[0].message
        assert COPY in found[0].message
    else:
        assert len(decision.children) == 1  # kept until the copy is tagged


def test_without_retention_fields_nothing_but_tags_happens() -> None:
    decision = finished_sync(spec(), f"{HOME}:{X86}", {HOME: (fresh(X86),)}, {HOME: (older("ami-0old", 9),)})
    assert all(isinstance(e, TagImages) for e in decision.effects)


# -- native deprecation -----------------------------------------------------------------------------------


def test_deprecation_time_is_each_current_amis_expiry() -> None:
    raw = spec(retention={"deprecate": True})
    decision = finished_sync(raw, f"{HOME}:{X86},{COPY}:{EU}", {HOME: (fresh(X86),), COPY: (fresh(EU),)})

    expiry = FINISHED + timedelta(hours=48)  # create-timestamp (the Job's completion) + expiresIn
    assert of(Deprecate, decision) == [Deprecate(COPY, EU, expiry), Deprecate(HOME, X86, expiry)]
    # Tagging comes first: a deprecation time is never set on an AMI that is not yet ours.
    assert isinstance(decision.effects[0], TagImages)


@pytest.mark.parametrize(
    ("deprecation", "expected"),
    [
        (None, True),
        (FINISHED + timedelta(hours=48), False),
        (FINISHED + timedelta(hours=48, seconds=20), False),  # EC2 keeps minutes
        (FINISHED + timedelta(hours=24), True),
    ],
)
def test_deprecation_is_set_only_when_ec2_shows_another_time(
    deprecation: datetime | None, expected: bool
) -> None:
    current = replace(
        older(X86, 0, status="active", extra={"create-timestamp": "2026-11-20T12:25:00Z"}),
        deprecation_time=deprecation.replace(second=0) if deprecation else None,
    )
    req = request(parent(spec(retention={"deprecate": True})))
    decision = decide(
        world_of(HookRequest.model_validate(req)), AmiFacts(managed=(current,), base_image=BASE), NOW
    )
    assert bool(of(Deprecate, decision)) is expected


def test_an_ami_pinned_in_the_far_future_gets_no_deprecation_time_ec2_would_refuse() -> None:
    pinned = older(X86, 0, status="active", extra={"create-timestamp": "9999-12-31T00:00:00Z"})
    req = request(parent(spec(retention={"deprecate": True})))
    world = world_of(HookRequest.model_validate(req))
    decision = decide(world, AmiFacts(managed=(pinned,), base_image=BASE), NOW)
    assert decision.status.state == "AMIAdopted"
    # More than ten years ahead: refused by EC2 on every sync, so never asked for.
    assert of(Deprecate, decision) == []


def test_deprecation_moment_rounds_to_the_nearest_minute() -> None:
    image = managed_image(X86, T0, extra={"create-timestamp": "2026-11-20T12:00:31Z"})
    assert deprecation_moment(image, timedelta(hours=1)) == T0.replace(hour=13, minute=1)


# -- publishing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "published"), [(None, True), ("ami-0123456789abcdef0", True), (X86, False)]
)
def test_the_parameter_is_written_only_when_it_holds_another_id(value: str | None, published: bool) -> None:
    raw = spec(publish={"ssmParameter": PARAMETER})
    decision = finished_sync(
        raw, f"{HOME}:{X86}", {HOME: (fresh(X86),)}, parameters={(HOME, PARAMETER): value}
    )
    expected = created(HOME, PARAMETER, X86) if value is None else Publish(HOME, PARAMETER, X86)
    assert of(Publish, decision) == ([expected] if published else [])
    assert decision.effects.index(of(TagImages, decision)[0]) == 0


def test_several_architectures_are_published_per_architecture_in_every_region() -> None:
    raw = spec(publish={"ssmParameter": PARAMETER})
    decision = finished_sync(
        raw,
        f"{HOME}:{X86},{HOME}:{ARM},{COPY}:{EU}",
        {HOME: (fresh(X86), fresh(ARM, "arm64")), COPY: (fresh(EU),)},
    )
    assert of(Publish, decision) == [
        created(COPY, PARAMETER, EU),
        created(HOME, PARAMETER, X86),  # the name itself keeps the primary: it never goes stale
        created(HOME, f"{PARAMETER}/arm64", ARM),
        created(HOME, f"{PARAMETER}/x86_64", X86),
    ]


OLD_X86 = "ami-0old0000000000001"
OLD_ARM = "ami-0old0000000000002"
STRANGER = "ami-0fee0000000000009"


@pytest.mark.parametrize(
    ("values", "effects"),
    [
        pytest.param(
            {f"{PARAMETER}/x86_64": OLD_X86, f"{PARAMETER}/arm64": OLD_ARM},
            [
                Publish(HOME, PARAMETER, X86),
                Publish(HOME, f"{PARAMETER}/x86_64", X86),
                Unpublish(HOME, f"{PARAMETER}/arm64", OLD_ARM),
            ],
            id="a build that stopped making arm64: x86_64 name follows, arm64 name goes",
        ),
        pytest.param(
            {f"{PARAMETER}/arm64": STRANGER},
            [Publish(HOME, PARAMETER, X86)],
            id="a value someone else wrote is left alone",
        ),
        pytest.param({}, [Publish(HOME, PARAMETER, X86)], id="one architecture, never more: the name only"),
    ],
)
def test_every_parameter_written_names_a_current_ami_of_its_architecture_or_goes(
    values: dict[str, str], effects: list[Any]
) -> None:
    raw = spec(retention={"keep": 1}, publish={"ssmParameter": PARAMETER})
    olds = (older(OLD_X86, 2, status="active"), older(OLD_ARM, 2, status="active", arch="arm64"))
    parameters: dict[tuple[str, str], str | None] = {(HOME, PARAMETER): OLD_X86}
    parameters |= {(HOME, name): value for name, value in values.items()}
    # The stranger's value is in a parameter the hook did not create: no owner recorded.
    owners = {key: str(OWNER) for key, value in parameters.items() if value != STRANGER}
    decision = finished_sync(
        raw, f"{HOME}:{X86}", {HOME: (fresh(X86),)}, {HOME: olds}, parameters, owners=owners
    )
    assert [e for e in decision.effects if isinstance(e, Publish | Unpublish)] == effects
    # Whatever a parameter names when the sync reads it stays, whatever keep says.
    removed = {d.image_id for d in of(Deregister, decision)}
    assert not removed & {v for v in parameters.values() if v}


def test_a_name_outside_the_publish_prefix_is_refused_in_the_plan_not_tried() -> None:
    raw = spec(publish={"ssmParameter": "/teams/web/eks"})
    status, job = first_job(raw)
    done = succeeded(job, finished=FINISHED)
    req = request(parent(raw, status=status), [done], [build_pod(done, f"{HOME}:{X86}")])
    facts = AmiFacts(base_image=BASE, built=(fresh(X86),), publish_prefix="/platform/ami/")
    decision = decide(world_of(HookRequest.model_validate(req)), facts, NOW)
    assert of(Publish, decision) == []
    (refused,) = [c for c in decision.status.conditions if c.type == "PublishFailed"]
    assert refused.reason == "OutsidePrefix"
    assert "/teams/web/eks in us-west-2: outside /platform/ami/" in refused.message


@pytest.mark.parametrize(
    ("architectures", "names"),
    [
        ([], {}),
        (["arm64"], {"/p/x": "arm64"}),
        (["x86_64", "arm64", "x86_64"], {"/p/x": "x86_64", "/p/x/arm64": "arm64", "/p/x/x86_64": "x86_64"}),
    ],
)
def test_parameter_names(architectures: list[str], names: dict[str, str]) -> None:
    assert parameter_names("/p/x", architectures) == names


# -- keep N -----------------------------------------------------------------------------------------------


def test_keep_two_deregisters_all_but_the_new_ami_and_the_newest_older_one() -> None:
    olds = tuple(older(f"ami-0old000000000000{n}", n) for n in range(1, 6))
    raw = spec(retention={"keep": 2})
    decision = finished_sync(raw, f"{HOME}:{X86}", {HOME: (fresh(X86),)}, {HOME: olds})

    removed = of(Deregister, decision)
    assert [d.image_id for d in removed] == [o.image_id for o in reversed(olds[1:])]  # oldest first
    assert all(d.region == HOME and d.skip_in_use for d in removed)
    assert removed[-1].snapshot_ids == ("snap-0old0000000000002",)
    assert dict(removed[0].snapshot_tags)["created-by"] == NAME
    assert "newest 2" in removed[0].reason
    # Removal comes last: after the new AMI is tagged and the old ones retired.
    assert decision.effects[-len(removed) :] == tuple(removed)


def test_at_most_five_removals_per_sync_oldest_first() -> None:
    olds = tuple(older(f"ami-0old00000000000{n:02d}", n) for n in range(1, 13))
    decision = finished_sync(
        spec(retention={"keep": 1}), f"{HOME}:{X86}", {HOME: (fresh(X86),)}, {HOME: olds}
    )
    assert [d.image_id for d in of(Deregister, decision)] == [o.image_id for o in olds[::-1][:5]]


def test_an_ami_a_published_parameter_still_names_is_not_removed() -> None:
    # The parameter update in this sync may fail; consumers resolving it must never get a removed AMI.
    olds = (older("ami-0old0000000000001", 1), older("ami-0old0000000000002", 2))
    raw = spec(retention={"keep": 1}, publish={"ssmParameter": PARAMETER})
    decision = finished_sync(
        raw,
        f"{HOME}:{X86}",
        {HOME: (fresh(X86),)},
        {HOME: olds},
        {(HOME, PARAMETER): "ami-0old0000000000002"},
    )
    assert [d.image_id for d in of(Deregister, decision)] == ["ami-0old0000000000001"]
    assert of(Publish, decision) == [Publish(HOME, PARAMETER, X86)]


def test_keep_counts_per_architecture_and_never_removes_a_current_ami() -> None:
    # An adopted, still-current arm64 AMI older than every x86_64 one stays, though it is beyond "keep 1".
    arm = older("ami-0arm0000000000001", 9, status="active", arch="arm64")
    arm_old = older("ami-0arm0000000000002", 10, arch="arm64")
    x86_old = older("ami-0x860000000000001", 1)
    raw = spec(retention={"keep": 1, "skipInUse": False})
    decision = finished_sync(raw, f"{HOME}:{X86}", {HOME: (fresh(X86),)}, {HOME: (arm, arm_old, x86_old)})

    assert sorted(d.image_id for d in of(Deregister, decision)) == [arm_old.image_id, x86_old.image_id]
    assert not any(d.skip_in_use for d in of(Deregister, decision))


def test_an_ami_without_a_readable_create_timestamp_is_left_alone_and_not_counted() -> None:
    unreadable = older("ami-0bad0000000000001", 40, extra={"create-timestamp": "yesterday"})
    olds = (older("ami-0old0000000000001", 1), older("ami-0old0000000000002", 2))
    decision = finished_sync(
        spec(retention={"keep": 2}), f"{HOME}:{X86}", {HOME: (fresh(X86),)}, {HOME: (unreadable, *olds)}
    )
    assert [d.image_id for d in of(Deregister, decision)] == ["ami-0old0000000000002"]


def test_retention_runs_in_every_region_the_status_knows() -> None:
    eu_olds = (older("ami-0eu00000000000001", 1), older("ami-0eu00000000000002", 2))
    decision = finished_sync(
        spec(retention={"keep": 1}),
        f"{HOME}:{X86},{COPY}:{EU}",
        {HOME: (fresh(X86),), COPY: (fresh(EU),)},
        {COPY: eu_olds},
    )
    assert [(d.region, d.image_id) for d in of(Deregister, decision)] == [
        (COPY, "ami-0eu00000000000002"),
        (COPY, "ami-0eu00000000000001"),
    ]


# -- how the effects went ----------------------------------------------------------------------------------


REMOVAL = Deregister(HOME, "ami-0old0000000000002", ("snap-1",), "old", True, ())


@pytest.mark.parametrize(
    ("report", "kind", "text"),
    [
        (Report(Deprecate(HOME, X86, NOW), Result.failed, "AWS InternalError: no"), "DeprecationNotSet", X86),
        (
            Report(Publish(HOME, PARAMETER, X86), Result.failed, "AWS AccessDenied: no"),
            "PublishFailed",
            PARAMETER,
        ),
        (Report(REMOVAL, Result.failed, "AWS AccessDenied: no"), "RetentionFailed", "ami-0old0000000000002"),
        (Report(REMOVAL, Result.skipped, "used by instance i-0123"), "RetentionSkipped", "i-0123"),
    ],
)
def test_an_effect_that_did_not_happen_is_a_condition_and_touches_nothing_else(
    report: Report, kind: str, text: str
) -> None:
    decision = finished_sync(spec(), f"{HOME}:{X86}", {HOME: (fresh(X86),)})
    world = world_of(HookRequest.model_validate(request(parent(spec()))))
    after = with_reports(world, decision, [Report(decision.effects[0], Result.done), report], NOW)

    (condition,) = [c for c in after.status.conditions if c.type == kind]
    assert condition.status == "True"
    assert text in condition.message
    assert HOME in condition.message
    others = [c for c in after.status.conditions if c.type != kind]
    assert others == decision.status.conditions
    assert after.children == decision.children


def test_effects_that_all_happened_change_nothing() -> None:
    decision = finished_sync(spec(), f"{HOME}:{X86}", {HOME: (fresh(X86),)})
    world = world_of(HookRequest.model_validate(request(parent(spec()))))
    reports = [Report(e, Result.done) for e in decision.effects]
    assert with_reports(world, decision, reports, NOW) == decision


# -- job history ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "kept"), [(0, 0), (1, 1), (3, 1)])
def test_successful_history_limit_keeps_the_build_that_made_the_current_ami(limit: int, kept: int) -> None:
    raw = spec(successfulJobsHistoryLimit=limit)
    first = finished_sync(raw, f"{HOME}:{X86}", {HOME: (fresh(X86),)})
    (tag,) = of(TagImages, first)
    tagged = replace(fresh(X86), tags=dict(tag.tags))
    status = json.loads(json.dumps(_response(first)))["status"]
    job = first.children[0]
    done = succeeded(job, finished=FINISHED)
    req = request(parent(raw, status=status), [done], [build_pod(done, f"{HOME}:{X86}")])
    facts = AmiFacts(managed=(tagged,), base_image=BASE, built=(tagged,))
    again = decide(world_of(HookRequest.model_validate(req)), facts, NOW + timedelta(minutes=1))
    assert len(again.children) == kept
    assert again.effects == ()


# -- finalize ---------------------------------------------------------------------------------------------------


def test_a_build_that_finished_during_deletion_is_tagged_before_the_builder_goes() -> None:
    raw = spec(retention={"keep": 1}, publish={"ssmParameter": PARAMETER})
    status, job = first_job(raw)
    done = succeeded(job, finished=FINISHED)
    req = request(parent(raw, status=status), [done], [build_pod(done, f"{HOME}:{X86}")])
    world = world_of(HookRequest.model_validate(req))
    # The builder made x86_64 and arm64 before; the build that finished during deletion made x86_64 only.
    olds = (older(OLD_X86, 1, status="active"), older(OLD_ARM, 1, status="active", arch="arm64"))
    names = {PARAMETER: OLD_X86, f"{PARAMETER}/x86_64": OLD_X86, f"{PARAMETER}/arm64": OLD_ARM}
    facts = AmiFacts(
        managed=(*olds, older("ami-0old0000000000003", 2)),
        built=(fresh(X86),),
        parameters={(HOME, name): value for name, value in names.items()},
        parameter_owners={(HOME, name): str(OWNER) for name in names},
    )

    decision = decide_finalize(world, facts, NOW)

    assert decision.finalized is True
    tag, retire = of(TagImages, decision)
    assert tag.image_ids == (X86,)
    assert dict(tag.tags)["build-id"] == build_id_of(job)
    assert (retire.image_ids, dict(retire.tags)) == ((OLD_X86, OLD_ARM), {"status": "deprecated"})
    published = [(p.region, p.parameter, p.image_id) for p in of(Publish, decision)]
    assert published == [(HOME, PARAMETER, X86), (HOME, f"{PARAMETER}/x86_64", X86)]
    # keep: 1 and stale names are for a builder that goes on building: one being deleted removes nothing,
    # no AMI and no parameter (README, deletion).
    assert of(Deregister, decision) == []
    assert of(Unpublish, decision) == []
    assert images(decision) == [(HOME, "x86_64", X86)]


@pytest.mark.parametrize(
    ("built", "now", "finalized"),
    [
        ((replace(fresh(X86), state="pending"),), NOW, False),
        ((replace(fresh(X86), state="pending"),), FINISHED + timedelta(hours=1), True),
        ((), NOW, False),  # not visible yet
    ],
)
def test_finalize_waits_for_a_pending_ami_but_not_forever(
    built: tuple[Image, ...], now: datetime, finalized: bool
) -> None:
    status, job = first_job(spec())
    done = succeeded(job, finished=FINISHED)
    req = request(parent(spec(), status=status), [done], [build_pod(done, f"{HOME}:{X86}")])
    decision = decide_finalize(world_of(HookRequest.model_validate(req)), AmiFacts(built=built), now)
    assert decision.finalized is finalized
    assert decision.effects == ()


# -- copies that are slower than the build ----------------------------------------------------------------


def later_sync(
    raw_spec: dict[str, Any], answer: Decision, message: str, facts: AmiFacts, now: datetime
) -> Decision:
    """The next sync of the same build (its Job kept), with the status `answer` wrote."""
    status = json.loads(json.dumps(_response(answer)))["status"]
    done = succeeded(observed_job(answer), finished=FINISHED)
    req = request(parent(raw_spec, status=status), [done], [build_pod(done, message)])
    return decide(world_of(HookRequest.model_validate(req)), facts, now)


def observed_job(answer: Decision) -> dict[str, Any]:
    (job,) = answer.children
    return job


def test_a_copy_still_pending_when_the_build_is_recorded_is_tagged_once_available() -> None:
    message = f"{HOME}:{X86},{COPY}:{EU}"
    first = finished_sync(
        spec(), message, {HOME: (fresh(X86),), COPY: (replace(fresh(EU), state="pending"),)}
    )
    (tag,) = of(TagImages, first)
    assert tag.region == HOME
    assert len(first.children) == 1
    tagged = replace(fresh(X86), tags=dict(tag.tags))
    facts = AmiFacts(
        managed=(tagged,), base_image=BASE, built=(tagged,), elsewhere={COPY: RegionImages((), (fresh(EU),))}
    )

    later = later_sync(spec(), first, message, facts, NOW + timedelta(minutes=5))

    assert [(e.region, e.image_ids) for e in of(TagImages, later)] == [(COPY, (EU,))]
    assert images(later) == [(COPY, "x86_64", EU), (HOME, "x86_64", X86)]


def test_a_copy_that_never_appears_is_reported_and_the_report_stays() -> None:
    message = f"{HOME}:{X86},{COPY}:{EU}"
    first = finished_sync(spec(), message, {HOME: (fresh(X86),)})
    (tag,) = of(TagImages, first)
    tagged = replace(fresh(X86), tags=dict(tag.tags))
    facts = AmiFacts(managed=(tagged,), base_image=BASE, built=(tagged,))

    overdue = later_sync(spec(), first, message, facts, FINISHED + timedelta(hours=1))
    (failed,) = [c for c in overdue.status.conditions if c.type == "ImageCopyFailed"]
    assert EU in failed.message
    assert COPY in failed.message
    assert overdue.status.state == "AMICreated"

    after = later_sync(spec(), overdue, message, facts, FINISHED + timedelta(hours=2))
    assert [c for c in after.status.conditions if c.type == "ImageCopyFailed"] == [failed]


def test_finalize_tags_what_is_usable_and_waits_for_a_copy_on_its_way() -> None:
    status, job = first_job(spec())
    done = succeeded(job, finished=FINISHED)
    req = request(parent(spec(), status=status), [done], [build_pod(done, f"{HOME}:{X86},{COPY}:{EU}")])
    facts = AmiFacts(
        built=(fresh(X86),), elsewhere={COPY: RegionImages((), (replace(fresh(EU), state="pending"),))}
    )

    decision = decide_finalize(world_of(HookRequest.model_validate(req)), facts, NOW)

    assert decision.finalized is False
    assert EU in decision.status.lastRunMessage
    assert [e.image_ids for e in of(TagImages, decision)] == [(X86,)]


# -- a region AWS does not answer for ---------------------------------------------------------------------------


OUT = {COPY: "AWS Unavailable (temporary): EC2 DescribeImages in eu-west-1: down"}
DISTRIBUTED = {"retention": {"keep": 1, "deprecate": True}, "publish": {"ssmParameter": PARAMETER}}


def region_unavailable(decision: Decision) -> str:
    (found,) = [c for c in decision.status.conditions if c.type == "RegionUnavailable"]
    assert found.status == "True"
    return found.message


def copy_recorded() -> tuple[dict[str, Any], str, Decision, Image]:
    """A build that made an AMI in spec.region and a copy in COPY, both tagged and recorded."""
    raw, message = spec(**DISTRIBUTED), f"{HOME}:{X86},{COPY}:{EU}"
    first = finished_sync(raw, message, {HOME: (fresh(X86),), COPY: (fresh(EU),)})
    home = next(e for e in of(TagImages, first) if e.region == HOME)
    return raw, message, first, replace(fresh(X86), tags=dict(home.tags))


def test_an_outage_in_a_copy_region_leaves_builds_ready_and_expiry_to_spec_region() -> None:
    raw, message, first, tagged = copy_recorded()
    expired_at = FINISHED + timedelta(hours=49)
    facts = AmiFacts(managed=(tagged,), base_image=BASE, built=(tagged,), unavailable=OUT)

    later = later_sync(raw, first, message, facts, expired_at)

    assert later.status.state == "JobCreation"
    (ready,) = [c for c in later.status.conditions if c.type == "Ready"]
    assert (ready.status, ready.reason) == ("False", "AMIExpired")
    assert len(later.children) == 2  # the finished build as history, and its successor
    said = region_unavailable(later)
    assert COPY in said
    assert OUT[COPY] in said
    assert not [c for c in later.status.conditions if c.type in ("AWSError", "ImageCopyFailed")]
    # What the status knew of the region stays; nothing is planned there.
    assert images(later) == images(first) == [(COPY, "x86_64", EU), (HOME, "x86_64", X86)]
    assert [e for e in later.effects if e.region == COPY] == []


def test_a_copy_made_during_an_outage_waits_for_its_region_however_long() -> None:
    old_home = older("ami-0ddd0000000000008", 3, status="active")
    raw, message = spec(**DISTRIBUTED), f"{HOME}:{X86},{COPY}:{EU}"
    overdue = FINISHED + timedelta(hours=1)  # past the artifact grace: a missing copy would be a failure
    first = finished_sync(
        raw, message, {HOME: (fresh(X86),)}, {HOME: (old_home,)}, now=overdue, unavailable=OUT
    )

    assert first.status.state == "AMICreated"
    assert {e.region for e in first.effects} == {HOME}
    assert [c for c in first.status.conditions if c.type == "ImageCopyFailed"] == []
    assert COPY in region_unavailable(first)
    assert len(first.children) == 1  # kept: only its report names the copy
    assert images(first) == [(HOME, "x86_64", X86)]

    # The region answers again: the copy is tagged there like any other.
    home = next(e for e in of(TagImages, first) if e.region == HOME and dict(e.tags)["status"] == "active")
    tagged = replace(fresh(X86), tags=dict(home.tags))
    back = AmiFacts(
        managed=(tagged,), base_image=BASE, built=(tagged,), elsewhere={COPY: RegionImages((), (fresh(EU),))}
    )
    later = later_sync(raw, first, message, back, overdue + timedelta(hours=5))
    assert [(e.region, e.image_ids) for e in of(TagImages, later) if e.region == COPY] == [(COPY, (EU,))]
    assert images(later) == [(COPY, "x86_64", EU), (HOME, "x86_64", X86)]
    assert [c for c in later.status.conditions if c.type == "RegionUnavailable"] == []


@pytest.mark.parametrize(("now", "finalized"), [(NOW, False), (FINISHED + timedelta(hours=1), True)])
def test_finalize_tags_spec_region_and_waits_for_a_copy_region_only_within_the_grace(
    now: datetime, finalized: bool
) -> None:
    status, job = first_job(spec())
    done = succeeded(job, finished=FINISHED)
    req = request(parent(spec(), status=status), [done], [build_pod(done, f"{HOME}:{X86},{COPY}:{EU}")])
    facts = AmiFacts(built=(fresh(X86),), unavailable=OUT)

    decision = decide_finalize(world_of(HookRequest.model_validate(req)), facts, now)

    assert decision.finalized is finalized
    assert [(e.region, e.image_ids) for e in of(TagImages, decision)] == [(HOME, (X86,))]
    assert images(decision) == [(HOME, "x86_64", X86)]
    if not finalized:
        assert decision.status.lastRunMessage.endswith(f"waiting for AWS to answer in {COPY}")


def test_a_steady_builder_says_a_copy_region_is_out_without_acting() -> None:
    raw, _, first, tagged = copy_recorded()
    status = json.loads(json.dumps(_response(first)))["status"]
    req = request(parent(raw, status=status))
    world = world_of(HookRequest.model_validate(req))
    parameters: dict[tuple[str, str], str | None] = {(HOME, PARAMETER): X86}
    deprecated = replace(tagged, deprecation_time=deprecation_moment(tagged, timedelta(hours=48)))
    facts = AmiFacts(
        managed=(deprecated,),
        base_image=BASE,
        parameters=parameters,
        parameter_owners={(HOME, PARAMETER): str(OWNER)},
        unavailable=OUT,
    )

    decision = decide(world, facts, NOW + timedelta(minutes=5))

    assert decision.status.state == "AMICreated"
    assert COPY in region_unavailable(decision)
    assert images(decision) == images(first)
    assert acts(world, decision) is False


# -- which answers act (and so are decided again on exact facts) -----------------------------------------------


def steady() -> tuple[dict[str, Any], AmiFacts, Decision]:
    """A Ready builder re-checked on its timer: its AMI tagged, its status recorded."""
    first = finished_sync(spec(), f"{HOME}:{X86}", {HOME: (fresh(X86),)})
    (tag,) = of(TagImages, first)
    tagged = replace(fresh(X86), tags=dict(tag.tags))
    status = json.loads(json.dumps(_response(first)))["status"]
    facts = AmiFacts(managed=(tagged,), base_image=BASE)
    req = request(parent(spec(), status=status))
    return req, facts, decide(world_of(HookRequest.model_validate(req)), facts, NOW)


def test_a_ready_builder_rechecked_does_not_act() -> None:
    req, _, decision = steady()
    assert acts(world_of(HookRequest.model_validate(req)), decision) is False


@pytest.mark.parametrize(
    "change",
    [
        "no AMI (a build starts)",
        "a new AMI tagged by someone else (adoption)",
        "an effect (retention due)",
    ],
)
def test_answers_that_change_jobs_status_or_aws_act(change: str) -> None:
    req, facts, _ = steady()
    world = world_of(HookRequest.model_validate(req))
    if change.startswith("no AMI"):
        facts = AmiFacts(base_image=BASE)
    elif change.startswith("a new AMI"):
        newer = replace(
            facts.managed[0],
            image_id="ami-0fff0000000000001",
            tags={**facts.managed[0].tags, "create-timestamp": format_timestamp(NOW)},
        )
        facts = AmiFacts(managed=(*facts.managed, newer), base_image=BASE)
    else:
        world = world_of(
            HookRequest.model_validate(
                {**req, "parent": {**req["parent"], "spec": spec(retention={"keep": 1})}}
            )
        )
        facts = AmiFacts(managed=(*facts.managed, older("ami-0old0000000000001", 3)), base_image=BASE)
    assert acts(world, decide(world, facts, NOW)) is True


def test_an_old_index_is_said_in_a_condition_without_acting() -> None:
    req, facts, _ = steady()
    world = world_of(HookRequest.model_validate(req))
    decision = decide(world, replace(facts, stale="the AMI index of us-west-2 is 400 s old"), NOW)
    (stale,) = [c for c in decision.status.conditions if c.type == "ImageIndexStale"]
    assert "400 s old" in stale.message
    assert acts(world, decision) is False


# -- news for the notifier, typed -------------------------------------------------------------------------------


def test_the_decision_says_why_a_build_failed_and_which_ami_expired() -> None:
    status, job = first_job(spec())
    done = succeeded(job, finished=FINISHED)
    req = request(parent(spec(), status=status), [done], [build_pod(done, f"{HOME}:{X86}")])
    failed = decide(
        world_of(HookRequest.model_validate(req)), AmiFacts(base_image=BASE), FINISHED + timedelta(hours=1)
    )
    assert failed.news.failure == f"AMI {X86} not found in {HOME}"

    expired = older("ami-0exp0000000000001", 5, status="active")
    quiet = decide(
        world_of(HookRequest.model_validate(request(parent(spec())))),
        AmiFacts(managed=(expired,), base_image=BASE),
        NOW,
    )
    assert quiet.news.expired_image_id == expired.image_id
