"""The imperative shell around decide(): read the request, gather EC2 facts, decide, carry out the effects."""

import logging
from dataclasses import replace
from datetime import datetime

from app.base_image import base_source
from app.decide import Decision, World, decide, decide_finalize
from app.ec2 import AwsError, ImageSource
from app.facts import AmiFacts, AwsFault
from app.hooks import HookRequest
from app.job import parse_termination_message
from app.notify import announce as notifications
from app.notify.targets import SECRET_GROUP, read_secrets
from app.observed import BuildReport, build_reports, observe_job
from app.spec import PackerBuilderSpec, SpecError, parse_spec, parse_status
from app.tags import management_tags

log = logging.getLogger(__name__)


def world_of(request: HookRequest) -> World:
    parent = request.parent
    spec: PackerBuilderSpec | SpecError
    try:
        spec = parse_spec(parent.spec)
    except SpecError as error:
        spec = error
    return World(
        meta=parent.metadata,
        spec=spec,
        status=parse_status(parent.status),
        jobs=tuple(observe_job(job) for job in request.jobs() if isinstance(job, dict)),
        reports=build_reports([pod for pod in request.pods() if isinstance(pod, dict)]),
    )


def _fault(error: AwsError) -> AwsFault:
    return AwsFault(error.code, error.message, error.temporary)


def gather(
    images: ImageSource, name: str, spec: PackerBuilderSpec, reports: dict[str, BuildReport]
) -> AmiFacts:
    """At most three AWS reads (base ones cached); the first failure stops the rest (10 s hook budget)."""
    built_ids = sorted(
        {
            image_id
            for report in reports.values()
            for region, image_id in parse_termination_message(report.message)
            if region == spec.region
        }
    )
    try:
        managed = images.managed_images(spec.region, management_tags(name, spec))
        built = images.images_by_id(spec.region, built_ids) if built_ids else []
        source = base_source(spec)
        base = images.base_image(spec.region, source) if source is not None else None
    except AwsError as error:
        log.warning("AWS call failed for %s: %s", name, error)
        return AmiFacts(fault=_fault(error))
    return AmiFacts(managed=tuple(managed), base_image=base, built=tuple(built))


def sync(request: HookRequest, images: ImageSource, now: datetime) -> Decision:
    world = world_of(request)
    if isinstance(world.spec, SpecError):
        return decide(world, AmiFacts(), now)
    facts = gather(images, world.meta.name, world.spec, dict(world.reports))
    decision = decide(world, facts, now)
    try:
        for effect in decision.effects:
            images.tag_images(effect.region, effect.image_ids, dict(effect.tags))
            log.info("tagged %s in %s for %s", ",".join(effect.image_ids), effect.region, world.meta.name)
    except AwsError as error:
        # Nothing is recorded as done: the same effects are due again on the next sync.
        log.warning("tagging failed for %s: %s", world.meta.name, error)
        return decide(world, AmiFacts(fault=_fault(error)), now)
    return decision


def finalize(request: HookRequest, now: datetime) -> Decision:
    return decide_finalize(world_of(request), now)


def announce(
    request: HookRequest, decision: Decision, now: datetime, fallback_slack_token: str
) -> tuple[Decision, notifications.Announcement]:
    """The notifier's part of a sync: NotifierReady in the status, and the transitions to announce."""
    world = world_of(request)
    secrets = read_secrets(request.related.get(SECRET_GROUP, {}).values(), world.meta.namespace)
    try:
        news = notifications.announce(
            world, request.parent.spec, decision.status, secrets, fallback_slack_token, now
        )
    except Exception as error:  # notifications are never worth a failed sync
        # Only the type: the text of an unexpected error could quote a Secret value.
        log.error("notifications skipped for %s: %s", world.meta.name, type(error).__name__)
        return decision, notifications.Announcement(decision.status)
    return replace(decision, status=news.status), news
