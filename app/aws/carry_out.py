"""The one place that carries out a decision's effects in AWS, each with its own error handling and log.

Tagging comes first and is all-or-nothing: when it fails the AwsError propagates and nothing later runs
(an older AMI is never retired, published over or removed before its successor is tagged). Every later
effect fails alone: it is reported, logged and due again on the next sync, and the others go on. A removal
step (disable, deregister) is checked just before it is taken: in use, last launched; the decision which
step is due is the plan's (app.core.removal), not made here.
"""

import logging
from collections.abc import Sequence

from app.aws.ec2 import AwsError, ImageSource
from app.core.effects import (
    Claim,
    Deprecate,
    Deregister,
    Disable,
    Effect,
    Enable,
    Protect,
    Publish,
    Report,
    Result,
    Step,
    TagImages,
    Unpublish,
)
from app.model.tags import CREATED_BY_NAMESPACE, DISABLED_AT, format_timestamp

log = logging.getLogger(__name__)


def carry_out(aws: ImageSource, effects: Sequence[Effect], builder: str) -> list[Report]:
    """Carry out `effects` in order; raises AwsError only when tagging fails."""
    in_use: _InUse | None = None
    reports = []
    for effect in effects:
        if isinstance(effect, Claim):
            reports.append(_claim(aws, effect, builder))
            if reports[-1].result is not Result.done:
                return reports  # everything after it was planned on the AMI being the builder's
        elif isinstance(effect, TagImages):
            aws.tag_images(effect.region, effect.image_ids, dict(effect.tags))
            log.info("tagged %s in %s for %s", ",".join(effect.image_ids), effect.region, builder)
            reports.append(Report(effect, Result.done))
        elif isinstance(effect, Disable | Deregister):
            # Asked at the first removal step, after all tagging: nothing is queried when tagging fails.
            if in_use is None:
                in_use = _InUse(
                    aws, [e for e in effects if isinstance(e, Disable | Deregister) and e.skip_in_use]
                )
            held = _held(aws, effect, in_use, builder)
            if held is not None:
                reports.append(held)
            elif isinstance(effect, Disable):
                reports.append(_disable(aws, effect, builder))
            else:
                reports.append(_deregister(aws, effect, builder))
        else:
            reports.append(_attempt(aws, effect, builder))
    return reports


def _claim(aws: ImageSource, effect: Claim, builder: str) -> Report:
    """Tag legacy AMIs with the namespace, then read the tag back: the last writer of two racing builders
    owns the AMI, and the other must not act on it. Raises AwsError like tagging."""
    aws.tag_images(effect.region, effect.image_ids, {CREATED_BY_NAMESPACE: effect.namespace})
    seen = {
        i.image_id: i.tags.get(CREATED_BY_NAMESPACE, "")
        for i in aws.images_by_id(effect.region, effect.image_ids)
    }
    lost = {i: seen.get(i, "") for i in effect.image_ids if seen.get(i) != effect.namespace}
    if lost:
        detail = "; ".join(f"{i} claimed by namespace {ns or '(gone)'}" for i, ns in sorted(lost.items()))
        log.warning("claim of %s in %s for %s lost: %s", ",".join(lost), effect.region, builder, detail)
        return Report(effect, Result.failed, detail)
    log.info("claimed %s in %s for %s", ",".join(effect.image_ids), effect.region, builder)
    return Report(effect, Result.done)


def _attempt(
    aws: ImageSource, effect: Deprecate | Enable | Publish | Unpublish | Protect, builder: str
) -> Report:
    try:
        if isinstance(effect, Enable):
            aws.enable_image(effect.region, effect.image_id)
            aws.untag_images(effect.region, [effect.image_id], [DISABLED_AT])
            log.info("enabled %s in %s for %s: %s", effect.image_id, effect.region, builder, effect.reason)
        elif isinstance(effect, Protect):
            aws.set_deregistration_protection(effect.region, effect.image_id, effect.enabled)
            log.info(
                "deregistration protection of %s in %s turned %s for %s",
                effect.image_id,
                effect.region,
                "on" if effect.enabled else "off",
                builder,
            )
        elif isinstance(effect, Deprecate):
            aws.enable_deprecation(effect.region, effect.image_id, effect.at)
            log.info(
                "deprecation time of %s in %s set to %s for %s",
                effect.image_id,
                effect.region,
                format_timestamp(effect.at),
                builder,
            )
        elif isinstance(effect, Publish):
            owner = dict(effect.owner)
            aws.put_parameter(
                effect.region, effect.parameter, effect.image_id, owner=owner, create=effect.create
            )
            log.info(
                "published %s to %s in %s for %s", effect.image_id, effect.parameter, effect.region, builder
            )
        else:
            aws.delete_parameter(effect.region, effect.parameter)
            log.info(
                "deleted %s in %s for %s: it named %s, no longer a current AMI of its architecture",
                effect.parameter,
                effect.region,
                builder,
                effect.image_id,
            )
    except AwsError as error:
        log.warning("%s for %s failed: %s", type(effect).__name__, builder, error)
        return Report(effect, Result.failed, _detail(error))
    return Report(effect, Result.done)


class _InUse:
    """Which AMIs about to be disabled or removed are used: one query per region, before any step is taken."""

    def __init__(self, aws: ImageSource, removals: Sequence[Step]) -> None:
        self.users: dict[tuple[str, str], str] = {}
        self.unknown: dict[str, str] = {}
        for region in sorted({e.region for e in removals}):
            try:
                found = aws.images_in_use(region, [e.image_id for e in removals if e.region == region])
            except AwsError as error:
                self.unknown[region] = _detail(error)
                continue
            self.users |= {(region, image_id): user for image_id, user in found.items()}


def _held(aws: ImageSource, effect: Step, in_use: _InUse, builder: str) -> Report | None:
    """Why the step must not be taken now (used, or launched within unusedFor), or None to take it.

    Unknown counts as used: never disable or remove what might be running or launched.
    """
    if effect.skip_in_use and effect.region in in_use.unknown:
        log.warning(
            "kept %s in %s for %s: could not check its use: %s",
            effect.image_id,
            effect.region,
            builder,
            in_use.unknown[effect.region],
        )
        return Report(effect, Result.failed, f"could not check its use: {in_use.unknown[effect.region]}")
    user = in_use.users.get((effect.region, effect.image_id))
    if user is not None:
        log.info("kept %s in %s for %s: used by %s", effect.image_id, effect.region, builder, user)
        return Report(effect, Result.skipped, f"used by {user}")
    if effect.unused_since is None:
        return None
    try:
        launched = aws.last_launched(effect.region, effect.image_id)
    except AwsError as error:
        log.warning(
            "kept %s in %s for %s: could not read its last launch: %s",
            effect.image_id,
            effect.region,
            builder,
            error,
        )
        return Report(effect, Result.failed, f"could not check when it was last launched: {_detail(error)}")
    if launched is not None and launched > effect.unused_since:
        stamp = format_timestamp(launched)
        log.info("kept %s in %s for %s: last launched %s", effect.image_id, effect.region, builder, stamp)
        return Report(effect, Result.skipped, f"last launched {stamp}, within retention.unusedFor")
    return None


def _disable(aws: ImageSource, effect: Disable, builder: str) -> Report:
    """Record the time first: an AMI disabled without it would start its clock again on a later sync."""
    try:
        aws.tag_images(effect.region, [effect.image_id], {DISABLED_AT: format_timestamp(effect.at)})
        if not effect.already_disabled:
            aws.disable_image(effect.region, effect.image_id)
    except AwsError as error:
        log.warning("could not disable %s in %s for %s: %s", effect.image_id, effect.region, builder, error)
        return Report(effect, Result.failed, _detail(error))
    log.info(
        "%s %s in %s for %s: %s",
        "recorded the disabling of" if effect.already_disabled else "disabled",
        effect.image_id,
        effect.region,
        builder,
        effect.reason,
    )
    return Report(effect, Result.done)


def _deregister(aws: ImageSource, effect: Deregister, builder: str) -> Report:
    try:
        if effect.snapshot_ids:
            aws.tag_snapshots(effect.region, effect.snapshot_ids, dict(effect.snapshot_tags))
        aws.deregister_image(effect.region, effect.image_id)
    except AwsError as error:
        log.warning(
            "could not deregister %s in %s for %s: %s", effect.image_id, effect.region, builder, error
        )
        return Report(effect, Result.failed, _detail(error))
    log.info("deregistered %s in %s for %s: %s", effect.image_id, effect.region, builder, effect.reason)
    left = []
    for snapshot in effect.snapshot_ids:
        try:
            aws.delete_snapshot(effect.region, snapshot)
        except AwsError as error:
            log.warning(
                "could not delete snapshot %s of %s in %s: %s",
                snapshot,
                effect.image_id,
                effect.region,
                error,
            )
            left.append(f"{snapshot} ({error.code})")
            continue
        log.info("deleted snapshot %s of %s in %s for %s", snapshot, effect.image_id, effect.region, builder)
    if left:
        return Report(
            effect, Result.failed, "deregistered, but snapshots left to delete by hand: " + ", ".join(left)
        )
    return Report(effect, Result.done)


def _detail(error: AwsError) -> str:
    return f"AWS {error.code}: {error.message}"
