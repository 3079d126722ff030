"""What every answer is made of, whatever the state: the status with Ready and the ambient conditions, the Jobs
that stay, the plan's effects and the news for the notifier (pure)."""

from typing import Any

from app.core import conditions as cond
from app.core.children import as_desired, kept_jobs, sorted_children
from app.core.conditions import Wanted
from app.core.decision import Decision, News
from app.core.history import Record
from app.core.outcome import Kind
from app.core.situation import Situation
from app.model.spec import ConditionStatus, ImageRef, PackerBuilderStatus
from app.model.tags import format_timestamp
from app.model.validation import Result, ValidationStatus


def images(s: Situation) -> list[ImageRef]:
    """status.images: the plan's current AMIs, and, for a region AWS did not answer for, what the
    status said (so the region is looked at again, and its AMIs stay listed, until AWS answers)."""
    unknown = [ref for ref in s.previous.images if ref.region in s.facts.unavailable]
    return sorted([*s.plan.images(), *unknown], key=lambda r: (r.region, r.architecture, r.imageID))


def ready_condition(s: Situation) -> Wanted:
    """Ready follows the current AMI in spec.region, whatever else is going on (a build, a wait)."""
    current, expired = s.current, s.newest_active
    if current is not None:
        until = format_timestamp(current.expires_at(s.expires_in))
        return cond.ready(
            True, "AMIAvailable", f"AMI {current.image_id} is active until {until}", current.created_at
        )
    if expired is not None:
        moment = expired.expires_at(s.expires_in)
        message = f"AMI {expired.image_id} expired at {format_timestamp(moment)}"
        return cond.ready(False, "AMIExpired", message, moment)
    return cond.ready(False, "NoActiveAMI", "No active, unexpired AMI exists for this builder")


def status(s: Situation, wanted: list[Wanted], **fields: Any) -> PackerBuilderStatus:
    """The whole status (rule 2): the previous one, these fields, Ready, `wanted` and the ambient conditions."""
    conditions = [ready_condition(s), *wanted, *ambient(s)]
    return s.previous.model_copy(
        update={
            "nextBuildTime": "",
            "images": images(s),
            "channels": list(s.plan.channels.statuses),
            "lastRebuild": s.rebuild_honoured,
            **fields,
            "conditions": cond.merge(s.previous.conditions, conditions, s.stamp),
            "observedGeneration": s.world.meta.generation,
        }
    )


def answer(
    s: Situation,
    new_status: PackerBuilderStatus,
    resync: int,
    *,
    recorded: bool,
    extra: dict[str, Any] | None = None,
) -> Decision:
    """The answer: the Jobs that stay (and `extra`, a Job to create), the status, the plan's effects.
    `recorded`: whether the answer records the latest finished build (its Job stays until it is shown)."""
    record = s.record if recorded else Record()
    spec = s.spec
    jobs = kept_jobs(
        s.live, s.outcome, record.now, spec.successfulJobsHistoryLimit, spec.failedJobsHistoryLimit
    )
    expired = s.newest_active.image_id if s.current is None and s.newest_active else ""
    return Decision(
        sorted_children([as_desired(j.raw) for j in jobs], extra),
        new_status,
        resync,
        s.plan.effects,
        ami_created_at=s.newest_active.created_at if s.newest_active else None,
        news=News(record.failure, expired, s.plan.newly_revoked),
    )


def ambient(s: Situation) -> list[Wanted]:
    """Conditions every answer carries, whatever the builder is doing."""
    wanted = []
    if s.base_check is not None:
        wanted.append(s.base_check.condition(s.now))
    if s.spec.suspend:
        wanted.append(
            cond.true(cond.SUSPENDED, "spec.suspend is true: no new build starts; a running one finishes")
        )
    if s.facts.stale:
        message = f"Answering from old facts: {s.facts.stale}; no build starts until AWS answers"
        wanted.append(cond.true(cond.IMAGE_INDEX_STALE, message))
    wanted += s.plan.refusals
    if s.facts.unavailable:
        out = sorted(s.facts.unavailable.items())
        message = "Nothing is tagged, published or removed until AWS answers in " + "; ".join(
            f"{region} ({reason})" for region, reason in out
        )
        wanted.append(cond.true(cond.REGION_UNAVAILABLE, message))
    verdict = s.record.fields.get("validation", s.previous.validation)
    if isinstance(verdict, ValidationStatus) and (
        s.spec.validation is not None or verdict.result is Result.running
    ):
        wanted += _validated(verdict)
    if s.plan.waiting:
        wanted.append(cond.true(cond.RETENTION_PENDING, f"Waiting: {s.plan.waiting}"))
    if s.plan.copy_failures:
        message = "Reported AMIs not usable: " + "; ".join(s.plan.copy_failures)
        wanted.append(cond.true(cond.IMAGE_COPY_FAILED, message))
    elif s.outcome is None or s.outcome.kind is not Kind.built:
        # Nothing new was built: what the last build's copies came to still stands.
        wanted += [
            Wanted(c.type, c.status, c.reason, c.message)
            for c in s.previous.conditions
            if c.type == cond.IMAGE_COPY_FAILED
        ]
    return wanted


def _validated(verdict: ValidationStatus) -> list[Wanted]:
    """The Validated condition: what the last validation said, naming its Job (and why, when it failed)."""
    if verdict.result is Result.passed:
        return [cond.true(cond.VALIDATED, verdict.message, reason="Passed")]
    if verdict.result is Result.failed:
        return [cond.false(cond.VALIDATED, cond.VALIDATION_FAILED, verdict.message)]
    if verdict.result is Result.running:
        return [Wanted(cond.VALIDATED, ConditionStatus.unknown, "Validating", verdict.message)]
    return []
