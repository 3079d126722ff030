"""Which transitions a sync announces, from the status Metacontroller sent versus the status we answer.

Pure. The hook is called many times for the same state, so an event is derived from a *change* between the
recorded status and the new one, never from the state alone; repeats that still get through (retried or stale
requests) carry the same `key` and are suppressed by the dispatcher.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from app.core.conditions import INVALID_SPEC, MAX_FAILED_JOBS, READY, REVOKED
from app.core.decision import News, recorded_time
from app.core.observed import ObservedJob, Phase
from app.core.states import State
from app.model.release import ChannelStatus
from app.model.spec import Condition, JobStatus, ObjectMeta, PackerBuilderSpec, PackerBuilderStatus
from app.model.validation import Result, ValidationStatus

EXPIRED_REASON = "AMIExpired"
NO_NEWS = News()
_URL_USERINFO = re.compile(r"//[^/@\s]+@")


class Kind(StrEnum):
    started = "BuildStarted"
    succeeded = "BuildSucceeded"
    failed = "BuildFailed"
    rejected = "ValidationFailed"
    exhausted = "RetriesExhausted"
    adopted = "AMIAdopted"
    expired = "AMIExpired"
    promoted = "AMIPromoted"
    revoked = "AMIRevoked"
    invalid = "InvalidSpec"


class Entry(StrEnum):
    """How an AMI entered a release channel (docs/release.md)."""

    promoted = "promoted"
    """It soaked long enough in the stage before (or, for the first channel, was active long enough)."""
    pinned = "pinned"
    """spec.release.pin names it."""
    fell_back = "fell back"
    """The AMI the channel held left it (revoked, or gone): the channel holds the one it held before again."""


@dataclass(frozen=True)
class Event:
    kind: Kind
    builder: str
    namespace: str
    uid: str
    # What makes this occurrence distinct from an earlier one of the same kind: a build id, an AMI id, or the
    # spec generation and its problem.
    occurrence: str
    region: str = ""
    job_name: str = ""
    base_ami: str = ""
    image_id: str = ""
    source: str = ""
    attempt: int = 0
    max_attempts: int = 0
    duration: str = ""
    detail: str = ""
    channel: str = ""
    entry: Entry | None = None
    previous: str = ""
    """The AMI the channel held before, "" if none."""
    images: tuple[str, ...] = ()
    """Every AMI the event is about, when there can be several (a revocation)."""

    @property
    def key(self) -> tuple[str, str, str]:
        """Builder, occurrence, kind: the same transition seen twice has the same key."""
        return (self.uid or f"{self.namespace}/{self.builder}", self.occurrence, self.kind.value)


def events(
    meta: ObjectMeta,
    spec: PackerBuilderSpec | None,
    old: PackerBuilderStatus,
    new: PackerBuilderStatus,
    jobs: Sequence[ObservedJob] = (),
    news: News = NO_NEWS,
) -> list[Event]:
    """The transitions from `old` to `new`, in the order they happened. `spec` is None when it is invalid.

    Which state changed comes from the statuses; the facts behind a change (why a build failed, which AMI
    expired) come typed from the decision's `news`, never parsed back out of status messages.
    """
    region = spec.region if spec is not None else ""

    def event(kind: Kind, occurrence: str, **facts: Any) -> Event:
        return Event(kind, meta.name, meta.namespace, meta.uid, occurrence, region=region, **facts)

    if spec is None:
        problem = _message(new.conditions, INVALID_SPEC)
        if new.state == State.INVALID_SPEC and (
            old.state != State.INVALID_SPEC or _message(old.conditions, INVALID_SPEC) != problem
        ):
            occurrence = f"generation {meta.generation}: {problem}"
            return [event(Kind.invalid, occurrence, detail=problem)]
        return []

    limit = spec.maxNumberOfJobs
    by_name = {job.name: job for job in jobs}
    found: list[Event] = []

    ended = verdict(old, new)
    superseded = by_name.get(old.jobName)
    moved_on = bool(old.jobName) and new.jobName != old.jobName
    if moved_on and ended is not None and ended.buildID == old.buildID:
        # The validation's verdict was recorded and the next build started within one sync: the new status
        # names only the successor. A failure is announced below, as ValidationFailed.
        if ended.result is Result.passed:
            found.append(
                event(
                    Kind.succeeded,
                    old.buildID,
                    job_name=old.jobName,
                    base_ami=old.lastRunBaseImageID,
                    image_id=ended.imageID,
                    duration=_duration(superseded) if superseded else "",
                    detail=_validated_by(ended, by_name),
                )
            )
    elif (
        old.jobStatus == JobStatus.running
        and moved_on
        and superseded is not None
        and superseded.phase is not Phase.running
    ):
        # The build was recorded and its successor (a retry, or a rebuild because the base moved on meanwhile)
        # started within one sync: the new status only shows the successor. A Job that succeeded without a
        # usable AMI failed as a build; the decision says so in news.failure.
        if superseded.phase is Phase.failed or news.failure:
            found.append(
                event(
                    Kind.failed,
                    superseded.build_id or old.buildID,
                    job_name=old.jobName,
                    base_ami=old.lastRunBaseImageID,
                    attempt=superseded.attempt + 1,
                    max_attempts=limit,
                    detail=news.failure or superseded.failure,
                )
            )
        else:
            found.append(
                event(
                    Kind.succeeded,
                    superseded.build_id or old.buildID,
                    job_name=old.jobName,
                    base_ami=superseded.base_ami or old.lastRunBaseImageID,
                    image_id=new.lastRunBuiltImageID,
                    duration=_duration(superseded),
                )
            )

    if ended is not None and ended.result is Result.failed:
        # A build whose AMIs failed their validation failed as a build (it counts towards maxNumberOfJobs),
        # announced once, as what it is: the message says which check failed.
        found.append(
            event(
                Kind.rejected,
                ended.buildID,
                job_name=ended.jobName,
                image_id=ended.imageID,
                base_ami=new.lastRunBaseImageID if new.buildID == ended.buildID else old.lastRunBaseImageID,
                attempt=max(new.failedJobCount, 1),
                max_attempts=limit,
                detail=ended.message or news.failure,
            )
        )

    if (
        new.jobStatus == JobStatus.failed
        and (old.jobName, old.jobStatus) != (new.jobName, JobStatus.failed)
        and not _rejected(new)
    ):
        job = by_name.get(new.jobName)
        found.append(
            event(
                Kind.failed,
                new.buildID,
                job_name=new.jobName,
                base_ami=new.lastRunBaseImageID,
                attempt=max(new.failedJobCount, 1),
                max_attempts=limit,
                detail=news.failure or (job.failure if job else ""),
            )
        )

    # With spec.validation the build Job's success is only `validating`: the build succeeded once its
    # validation passed and the status records it completed.
    if new.jobStatus == JobStatus.completed and (old.jobName, old.jobStatus) != (
        new.jobName,
        JobStatus.completed,
    ):
        job = by_name.get(new.jobName)
        passed = new.validation if _validated(new) else None
        found.append(
            event(
                Kind.succeeded,
                new.buildID,
                job_name=new.jobName,
                base_ami=new.lastRunBaseImageID,
                image_id=new.lastRunBuiltImageID,
                duration=_duration(job) if job else "",
                detail=_validated_by(passed, by_name) if passed else "",
            )
        )

    if new.state == State.MAX_FAILED and old.state != State.MAX_FAILED:
        found.append(
            event(
                Kind.exhausted,
                new.buildID,
                job_name=new.jobName,
                attempt=new.failedJobCount,
                max_attempts=limit,
                detail=_message(new.conditions, MAX_FAILED_JOBS),
            )
        )

    if new.state == State.AMI_ADOPTED and (
        old.state != State.AMI_ADOPTED or old.lastRunBuiltImageID != new.lastRunBuiltImageID
    ):
        found.append(
            event(
                Kind.adopted,
                new.lastRunBuiltImageID,
                image_id=new.lastRunBuiltImageID,
                base_ami=new.lastRunBaseImageID,
            )
        )

    if news.revoked:
        # Learnt from the decision, which tags them revoked in this sync (the next sees them revoked already):
        # the Revoked condition's message lists only a few ids, and changes as retention removes revoked AMIs.
        only = news.revoked[0] if len(news.revoked) == 1 else ""
        found.append(
            event(
                Kind.revoked,
                " ".join(news.revoked),
                image_id=only,
                images=news.revoked,
                detail=_message(new.conditions, REVOKED),
            )
        )
    for was, now in _entered(old, new):
        # The occurrence is the entry: the channel, the AMI and when it entered, which the AMI's channel tag
        # records, so a replay has the same key and a later entry of the same AMI (a rollback by pin after it
        # was promoted) another.
        found.append(
            event(
                Kind.promoted,
                f"{now.name} {now.imageID} {now.enteredAt}",
                channel=now.name,
                image_id=now.imageID,
                entry=_entry(was, now),
                previous=was.imageID,
                detail=now.enteredAt,
            )
        )

    expired = _ready(new.conditions)
    if expired is not None and expired.reason == EXPIRED_REASON:
        before = _ready(old.conditions)
        if before is None or before.reason != EXPIRED_REASON:
            image_id = news.expired_image_id or old.lastRunBuiltImageID
            found.append(event(Kind.expired, image_id, image_id=image_id, detail=expired.message))

    if new.jobStatus == JobStatus.running and new.jobName and new.jobName != old.jobName:
        found.append(
            event(
                Kind.started,
                new.buildID,
                job_name=new.jobName,
                base_ami=new.lastRunBaseImageID,
                source=f"{_without_userinfo(spec.builder.repoURL)}@{spec.builder.branch}",
                attempt=new.failedJobCount + 1,
                max_attempts=limit,
            )
        )
    return found


def _entered(old: PackerBuilderStatus, new: PackerBuilderStatus) -> list[tuple[ChannelStatus, ChannelStatus]]:
    """Each channel a new AMI entered from `old` to `new`: what it held before (by name), and what it holds."""
    before = {c.name: c for c in old.channels}
    pairs = [(before.get(now.name, ChannelStatus(name=now.name)), now) for now in new.channels]
    return [(was, now) for was, now in pairs if now.imageID and now.imageID != was.imageID]


def _entry(was: ChannelStatus, now: ChannelStatus) -> Entry:
    """A promotion or a pin enters the AMI now; a channel whose AMI left holds the one it held before again,
    which entered it earlier than the one that left."""
    if now.pinned:
        return Entry.pinned
    entered, left = recorded_time(now.enteredAt), recorded_time(was.enteredAt)
    if was.imageID and entered is not None and left is not None and entered < left:
        return Entry.fell_back
    return Entry.promoted


def verdict(old: PackerBuilderStatus, new: PackerBuilderStatus) -> ValidationStatus | None:
    """The validation whose verdict (Passed or Failed) the new status records and the old one did not yet.

    The one place a validation's end is learnt from: its notification and its count in
    packer_builder_validations_total both follow it.
    """
    now = new.validation
    if now is None or now.result not in (Result.passed, Result.failed):
        return None
    before = old.validation
    if before is not None and (before.jobName, before.buildID, before.result) == (
        now.jobName,
        now.buildID,
        now.result,
    ):
        return None
    return now


def _rejected(status: PackerBuilderStatus) -> bool:
    """The status's build failed because its AMIs failed their validation."""
    v = status.validation
    return v is not None and v.result is Result.failed and v.buildID == status.buildID


def _validated(status: PackerBuilderStatus) -> bool:
    v = status.validation
    return v is not None and v.result is Result.passed and v.buildID == status.buildID


def _validated_by(validation: ValidationStatus, jobs: dict[str, ObservedJob]) -> str:
    job = jobs.get(validation.jobName)
    took = _duration(job) if job else ""
    return f"Job {validation.jobName} validated it" + (f" in {took}" if took else "")


def _ready(conditions: Sequence[Condition]) -> Condition | None:
    return next((c for c in conditions if c.type == READY), None)


def _message(conditions: Sequence[Condition], kind: str) -> str:
    return next((c.message for c in conditions if c.type == kind), "")


def _duration(job: ObservedJob) -> str:
    start = job.started_at or job.created_at
    if start is None or job.finished_at is None:
        return ""
    seconds = max(int((job.finished_at - start).total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def _without_userinfo(url: str) -> str:
    # A repository URL may carry a token (https://user:token@host/...): never put it in a message.
    return _URL_USERINFO.sub("//", url)
