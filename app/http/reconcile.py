"""The imperative shell around decide(): read the request, gather EC2 facts, decide, carry out the effects."""

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from app.aws.carry_out import carry_out
from app.aws.ec2 import AwsError, ImageSource
from app.core.base_image import base_source
from app.core.build import VALIDATE_CONTAINER
from app.core.decide import acts, decide, decide_finalize, needs_facts_to_finalize, with_reports
from app.core.decision import Decision, World
from app.core.effects import Claim, Result
from app.core.facts import AmiFacts, AwsFault, RegionImages
from app.core.job import parse_termination_message
from app.core.observed import BuildReport, Phase, build_reports, observe_job
from app.core.publishing import architecture_parameter, namespaced_prefix
from app.model.hooks import HookRequest
from app.model.spec import PackerBuilderSpec, PackerBuilderStatus, SpecError, parse_spec, parse_status
from app.model.tags import Owner
from app.notify import announce as notifications
from app.notify.targets import SECRET_GROUP, read_secrets

log = logging.getLogger(__name__)


def world_of(request: HookRequest, hook_image: str = "") -> World:
    parent = request.parent
    spec: PackerBuilderSpec | SpecError
    try:
        spec = parse_spec(parent.spec)
    except SpecError as error:
        spec = error
    pods = [pod for pod in request.pods() if isinstance(pod, dict)]
    return World(
        meta=parent.metadata,
        spec=spec,
        status=parse_status(parent.status),
        jobs=tuple(observe_job(job) for job in request.jobs() if isinstance(job, dict)),
        reports=build_reports(pods),
        verdicts=build_reports(pods, VALIDATE_CONTAINER),
        hook_image=hook_image,
    )


def _owner(world: World, spec: PackerBuilderSpec) -> Owner:
    return Owner.of(world.meta.namespace, world.meta.name, spec)


def _fault(error: AwsError) -> AwsFault:
    return AwsFault(error.code, error.message, error.temporary)


def _regions(
    spec: PackerBuilderSpec, status: PackerBuilderStatus, reports: Mapping[str, BuildReport]
) -> dict[str, list[str]]:
    """Every region to look at, with the AMI ids builds reported there: spec.region, copies, known AMIs."""
    regions: dict[str, list[str]] = {spec.region: []}
    for ref in status.images:
        regions.setdefault(ref.region, [])
    for report in reports.values():
        for region, image_id in parse_termination_message(report.message):
            regions.setdefault(region, []).append(image_id)
    return {region: sorted(set(ids)) for region, ids in sorted(regions.items())}


def _parameters(
    images: ImageSource,
    spec: PackerBuilderSpec,
    status: PackerBuilderStatus,
    regions: Mapping[str, RegionImages],
    publish_prefix: str,
) -> tuple[dict[tuple[str, str], str | None], dict[tuple[str, str], str]]:
    """The values of every parameter the builder may have published, by region, and the owners of those
    that exist (lifecycle decides).

    The name itself (and each release channel's) and `<name>/<architecture>` for each architecture the builder
    has AMIs of there, in any
    state, or had current there: a per-architecture name written once is read (and its AMI protected)
    until it names a current AMI again or is deleted. Names outside the prefix the hook may use are not
    read (AWS would deny it and stop the whole sync); the plan refuses to publish them.
    """
    if spec.publish is None:
        return {}, {}
    bases = [spec.publish.ssmParameter, *(channel.ssmParameter for channel in spec.publish.channels)]
    values: dict[tuple[str, str], str | None] = {}
    owners: dict[tuple[str, str], str] = {}
    for region, found in regions.items():
        architectures = {i.architecture for i in (*found.managed, *found.built) if i.architecture}
        architectures |= {ref.architecture for ref in status.images if ref.region == region}
        names = {
            n for name in bases for n in (name, *(architecture_parameter(name, a) for a in architectures))
        }
        for parameter in sorted(n for n in names if n.startswith(publish_prefix)):
            values[(region, parameter)] = value = images.parameter_value(region, parameter)
            if value is not None:
                owners[(region, parameter)] = images.parameter_owner(region, parameter)
    return values, owners


def _region_images(images: ImageSource, owner: Owner, region: str, reported: Sequence[str]) -> RegionImages:
    found = images.managed_images(region, owner.management)
    # A built AMI once tagged is among the managed ones: no second read for it.
    known = {i.image_id: i for i in found}
    unknown = [i for i in reported if i not in known]
    fetched = images.images_by_id(region, unknown) if unknown else []
    built = tuple(known[i] for i in reported if i in known) + tuple(fetched)
    return RegionImages.of(owner, found, built)


def gather(
    images: ImageSource,
    owner: Owner,
    spec: PackerBuilderSpec,
    status: PackerBuilderStatus,
    reports: Mapping[str, BuildReport],
    publish_prefix: str = "",
) -> AmiFacts:
    """The AWS reads a decision needs (base ones cached), within the hook's 10 s budget.

    A failure in spec.region stops the rest: nothing may be concluded then. A region the builder only
    copies to fails alone: it is left out and named in `unavailable`, and so is one whose index has not
    been refreshed for too long (its facts are as unknown as a failed read's), while spec.region decides.
    """
    name = str(owner)
    effective_prefix = namespaced_prefix(publish_prefix, owner.namespace)
    regions: dict[str, RegionImages] = {}
    parameters: dict[tuple[str, str], str | None] = {}
    owners: dict[tuple[str, str], str] = {}
    unavailable: dict[str, str] = {}
    try:
        for region, ids in _regions(spec, status, reports).items():
            at_home = region == spec.region
            stale = "" if at_home else images.stale(region)
            if stale:
                unavailable[region] = stale
                continue
            try:
                found = _region_images(images, owner, region, ids)
                # Read with the region's AMIs: a parameter not read is one retention cannot protect.
                values, owned = _parameters(images, spec, status, {region: found}, effective_prefix)
            except AwsError as error:
                if at_home:
                    raise
                log.warning("AWS call failed for %s in copy region %s: %s", name, region, error)
                unavailable[region] = _fault(error).describe()
                continue
            regions[region] = found
            parameters |= values
            owners |= owned
        source = base_source(spec)
        base = images.base_image(spec.region, source) if source is not None else None
    except AwsError as error:
        log.warning("AWS call failed for %s: %s", name, error)
        return AmiFacts(fault=_fault(error))
    home = regions.pop(spec.region)
    return AmiFacts(
        stale=images.stale(spec.region),
        managed=home.managed,
        legacy=home.legacy,
        base_image=base,
        built=home.built,
        elsewhere=regions,
        parameters=parameters,
        parameter_owners=owners,
        publish_prefix=effective_prefix,
        unavailable=unavailable,
    )


def _latest_report(world: World) -> dict[str, BuildReport]:
    """The report of the latest finished build: the only one a decision reads (older Jobs are history)."""
    finished = [j for j in world.jobs if not j.deleting and j.phase is not Phase.running]
    if not finished:
        return {}
    build_id = max(finished, key=lambda j: j.order).build_id
    report = world.reports.get(build_id)
    return {build_id: report} if report is not None else {}


def _carried_out(
    world: World,
    decision: Decision,
    images: ImageSource,
    now: datetime,
    again: Callable[[AmiFacts], Decision],
) -> tuple[Decision, bool]:
    """Carry out the decision's effects; a failed tagging turns the answer into the AWS fault's (`again`).

    Also says whether a claim of a legacy AMI was lost to another builder: the answer then rests on the
    AMI being this builder's, and must be decided again.
    """
    try:
        reports = carry_out(images, decision.effects, world.meta.name)
    except AwsError as error:
        # Nothing is recorded as done: the same effects are due again on the next sync.
        log.warning("tagging failed for %s: %s", world.meta.name, error)
        return again(AmiFacts(fault=_fault(error))), False
    lost = any(isinstance(r.effect, Claim) and r.result is not Result.done for r in reports)
    return with_reports(world, decision, reports, now), lost


def sync(world: World, images: ImageSource, now: datetime, publish_prefix: str = "") -> Decision:
    """One /sync, each step once and in this order, down the layers and back (docs/architecture.md):

        gather(images)  ─▶ decide ─▶ acts? ── no ──▶ the answer (a steady builder: no AWS call)
                                       │ yes
        gather(exact)   ─▶ decide      (rule 16: an action never rests on cached facts)
        carry_out       ─▶ with_reports (a condition for each effect that did not happen)

    The one repeat: a claim of a legacy AMI that another builder won is decided and carried out once more.
    """
    spec = world.spec
    if isinstance(spec, SpecError):
        return decide(world, AmiFacts(), now)
    owner = _owner(world, spec)

    def decided(source: ImageSource) -> Decision:
        facts = gather(source, owner, spec, world.status, _latest_report(world), publish_prefix)
        return decide(world, facts, now)

    decision = decided(images)
    if not acts(world, decision):
        return decision
    exact = images.exact()
    if exact is not images:
        decision = decided(exact)
    answer, lost = _carried_out(world, decision, exact, now, lambda fault: decide(world, fault, now))
    if lost:
        # Another namespace's builder claimed the legacy AMI last: it is not this builder's after all.
        answer, _ = _carried_out(world, decided(exact), exact, now, lambda fault: decide(world, fault, now))
    return answer


def finalize(world: World, images: ImageSource, now: datetime, publish_prefix: str = "") -> Decision:
    """Rule 11, and a build that finished during deletion still gets its AMI tagged (and counted)."""
    if isinstance(world.spec, SpecError) or not needs_facts_to_finalize(world):
        return decide_finalize(world, AmiFacts(), now)
    exact = images.exact()
    facts = gather(
        exact, _owner(world, world.spec), world.spec, world.status, _latest_report(world), publish_prefix
    )
    decision = decide_finalize(world, facts, now)
    answer, _ = _carried_out(world, decision, exact, now, lambda fault: decide_finalize(world, fault, now))
    return answer


def announce(
    request: HookRequest, world: World, decision: Decision, now: datetime, fallback_slack_token: str
) -> tuple[Decision, notifications.Announcement]:
    """The notifier's part of a sync: NotifierReady in the status, and the transitions to announce."""
    secrets = read_secrets(request.related.get(SECRET_GROUP, {}).values(), world.meta.namespace)
    try:
        news = notifications.announce(
            world, request.parent.spec, decision.status, decision.news, secrets, fallback_slack_token, now
        )
    except Exception as error:  # notifications are never worth a failed sync
        # Only the type: the text of an unexpected error could quote a Secret value.
        log.error("notifications skipped for %s: %s", world.meta.name, type(error).__name__)
        return decision, notifications.Announcement(decision.status)
    return replace(decision, status=news.status), news
