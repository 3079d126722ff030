"""Status conditions whose lastTransitionTime changes only when their status does."""

from dataclasses import dataclass
from datetime import datetime

from app.model.spec import Condition, ConditionStatus
from app.model.tags import format_timestamp

READY = "Ready"
FLIGHT_CHECK_FAILED = "FlightCheckFailed"
JOB_RUNNING = "JobRunning"
JOB_FAILED = "JobFailed"
MAX_FAILED_JOBS = "MaxFailedJobsReached"
BASE_IMAGE_NOT_FOUND = "BaseImageNotFound"
WAITING_FOR_IMAGE = "WaitingForImage"
INVALID_SPEC = "InvalidSpec"
AWS_ERROR = "AWSError"
BASE_IMAGE_OUTDATED = "BaseImageOutdated"
SCHEDULED = "Scheduled"
SUSPENDED = "Suspended"
# The last validation's verdict (docs/validation.md): True (Passed), False (ValidationFailed) or Unknown (Validating).
VALIDATED = "Validated"
VALIDATION_FAILED = "ValidationFailed"
# Release channels and their levers (docs/release.md).
RELEASE_INVALID = "ReleaseInvalid"
REVOKED = "Revoked"
BASE_IMAGE_REVOKED = "BaseImageRevoked"
# The shared AMI index answered from values older than INDEX_STALE_AFTER_SECONDS.
IMAGE_INDEX_STALE = "ImageIndexStale"
# Retention and distribution (app.core.lifecycle): present only while something did not happen or waits.
IMAGE_COPY_FAILED = "ImageCopyFailed"
DEPRECATION_NOT_SET = "DeprecationNotSet"
PUBLISH_FAILED = "PublishFailed"
RETENTION_SKIPPED = "RetentionSkipped"
RETENTION_FAILED = "RetentionFailed"
RETENTION_PENDING = "RetentionPending"
PROTECTION_NOT_SET = "ProtectionNotSet"
# AWS did not answer for a region other than spec.region: nothing is done there meanwhile.
REGION_UNAVAILABLE = "RegionUnavailable"


@dataclass(frozen=True)
class Wanted:
    type: str
    status: ConditionStatus
    reason: str
    message: str
    since: datetime | None = None
    """When the cause happened (a Job's start, an AMI's expiry), if known: better than the time we noticed,
    and the same on every replay of the request."""


def true(kind: str, message: str, reason: str | None = None, since: datetime | None = None) -> Wanted:
    return Wanted(kind, ConditionStatus.true, reason or kind, message, since)


def ready(is_ready: bool, reason: str, message: str, since: datetime | None = None) -> Wanted:
    return Wanted(READY, ConditionStatus.true if is_ready else ConditionStatus.false, reason, message, since)


def merge(previous: list[Condition], wanted: list[Wanted], now: datetime) -> list[Condition]:
    """Ready first, the rest by type; conditions that no longer apply are dropped."""
    before = {condition.type: condition for condition in previous}
    merged = []
    for item in wanted:
        old = before.get(item.type)
        if old and old.status == item.status:
            since = old.lastTransitionTime
        else:
            since = format_timestamp(item.since or now)
        merged.append(
            Condition(
                type=item.type,
                status=item.status,
                reason=item.reason,
                message=item.message,
                lastTransitionTime=since,
            )
        )
    return sorted(merged, key=lambda c: (c.type != READY, c.type))


def false(kind: str, reason: str, message: str, since: datetime | None = None) -> Wanted:
    return Wanted(kind, ConditionStatus.false, reason, message, since)


def upsert(
    current: list[Condition], wanted: list[Wanted], previous: list[Condition], now: datetime
) -> list[Condition]:
    """`current` with `wanted` set on top; a condition keeps its transition time from `previous`."""
    kept = [c for c in current if c.type not in {w.type for w in wanted}]
    return sorted([*kept, *merge(previous, wanted, now)], key=lambda c: (c.type != READY, c.type))


def since(previous: list[Condition], kind: str) -> str | None:
    """When a condition last became True, if it is."""
    for condition in previous:
        if condition.type == kind and condition.status == ConditionStatus.true:
            return condition.lastTransitionTime
    return None
