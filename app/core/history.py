"""What the status records about builds: whether the latest finished build is still news, the fields that
record a finished or running build, and the failures that count against `maxNumberOfJobs` (pure)."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.core import conditions as cond
from app.core.build import validation_job_name
from app.core.decision import World, recorded_time
from app.core.facts import AmiFacts
from app.core.gate import gated
from app.core.observed import ObservedJob, Phase
from app.core.outcome import Kind, Outcome, latest_outcome
from app.model.spec import JobStatus, PackerBuilderSpec, PackerBuilderStatus
from app.model.tags import BUILD_ID, STATUS, VALIDATING, format_timestamp
from app.model.validation import Result, ValidationStatus


@dataclass(frozen=True)
class Record:
    """Status fields that record the latest finished build."""

    fields: dict[str, Any] = field(default_factory=dict)
    now: bool = False
    """Whether this answer is the first to record it (the Job must stay until the status shows it)."""
    failure: str = ""
    """Why the recorded build failed, for the notifier."""


def latest_news(
    world: World,
    finished: Sequence[ObservedJob],
    validations: Sequence[ObservedJob],
    facts: AmiFacts,
    spec: PackerBuilderSpec,
    now: datetime,
) -> Outcome | None:
    """The latest finished build's outcome (its validation taken into account), or None once its success is
    recorded and carried out.

    A recorded success is history: its AMIs may since have been retired or removed, and the spec (and
    so the management tags) may have changed; neither may be read as news about that build. It stays
    news while its AMI lacks the build's tags (tagging failed or was undone, or it is still tagged
    validating) or a copy is on its way.
    """
    region = spec.region
    built = {r: images.built for r, images in facts.regions(region).items()}
    outcome = gated(
        latest_outcome(finished, world.reports, built, region, now, facts.unavailable),
        validations,
        world.verdicts,
        spec.validation is not None,
    )
    if outcome is None:
        return None
    job, previous = outcome.job, world.status
    recorded = previous.jobName == job.name and previous.jobStatus == JobStatus.completed
    if recorded and outcome.kind is not Kind.built:
        # A recorded success stays a success: its AMI vanishing since (deregistered by hand) means the
        # builder has no usable AMI, which is the world's news, not this build's.
        return None
    untagged = any(
        a.image.tags.get(BUILD_ID) != job.build_id or a.image.tags.get(STATUS) == VALIDATING
        for a in outcome.usable
        if a.image
    )
    # A copy the status lists arrived and was recorded, even while AWS does not answer in its region.
    listed = {(ref.region, ref.imageID) for ref in previous.images}
    copying = any(a.kind is Kind.waiting and (a.region, a.image_id) not in listed for a in outcome.artifacts)
    # A copy that failed (or never appeared) after the build was recorded is news once.
    unreported = any(a.kind is Kind.failed for a in outcome.artifacts) and not cond.since(
        previous.conditions, cond.IMAGE_COPY_FAILED
    )
    return None if recorded and not (untagged or copying or unreported) else outcome


def failed_count(
    previous: PackerBuilderStatus, finished: Sequence[ObservedJob], generation: int, replaces: str
) -> int:
    """Failures in this spec generation and cycle, from the status and from the failed Jobs' own labels."""
    count = previous.failedJobCount if previous.observedGeneration == generation else 0
    if previous.lastRunBuiltImageID != replaces:
        count = 0
    for job in finished:
        if job.phase is Phase.failed and job.generation == generation and job.replaces_ami == replaces:
            count = max(count, job.attempt + 1)
    return count


def last_failure_at(
    previous: PackerBuilderStatus,
    finished: Sequence[ObservedJob],
    generation: int,
    replaces: str,
    outcome: Outcome | None,
) -> datetime | None:
    """When the last failed build of this cycle ended: the retry backoff counts from it."""
    failed = [
        j
        for j in finished
        if (
            j.phase is Phase.failed
            or (outcome is not None and outcome.kind is Kind.failed and outcome.job is j)
        )
        and j.generation == generation
        and j.replaces_ami == replaces
    ]
    if failed and failed[-1].finished_at is not None:
        return failed[-1].finished_at
    return recorded_time(cond.since(previous.conditions, cond.JOB_FAILED))


def started(previous: PackerBuilderStatus, job: ObservedJob) -> str:
    if previous.jobName == job.name and previous.lastRun:
        return previous.lastRun
    moment = job.started_at or job.created_at
    return format_timestamp(moment) if moment else previous.lastRun


def running_fields(previous: PackerBuilderStatus, job: ObservedJob) -> dict[str, Any]:
    """Status of a running build, read from the Job's own labels so a lost status cannot hide it."""
    return {
        "jobName": job.name,
        "jobID": job.job_id or previous.jobID,
        "buildID": job.build_id or previous.buildID,
        "jobStatus": JobStatus.running,
        "lastRunStatus": JobStatus.running,
        "lastRunBaseImageID": job.base_ami or previous.lastRunBaseImageID,
        "command": job.command or previous.command,
        "lastRun": started(previous, job),
    }


def record(
    outcome: Outcome | None,
    previous: PackerBuilderStatus,
    finished: Sequence[ObservedJob],
    generation: int,
    parent: str,
) -> Record:
    """The status fields that record the latest finished build (none while it waits for its AMI)."""
    if outcome is None or outcome.kind is Kind.waiting:
        return Record()
    job = outcome.job
    result = {Kind.built: JobStatus.completed, Kind.validating: JobStatus.validating}.get(
        outcome.kind, JobStatus.failed
    )
    already = previous.jobName == job.name and previous.jobStatus == result
    fields = {**running_fields(previous, job), "jobStatus": result, "lastRunStatus": result}
    verdict = _verdict(outcome, parent)
    if verdict is not None:
        fields["validation"] = verdict
        already = already and previous.validation == verdict
    if outcome.kind is Kind.validating:
        fields["lastRunMessage"] = (
            f"Built {outcome.image_id}; {verdict.message if verdict else 'validating it'}"
        )
        return Record(fields, not already)
    if outcome.kind is Kind.built:
        commit = f" at commit {outcome.commit[:12]}" if outcome.commit else ""
        fields |= {
            "lastRunBuiltImageID": outcome.image_id,
            "lastRunCommit": outcome.commit,
            "failedJobCount": 0,
            "lastRunMessage": f"Built {outcome.image_id} from {job.base_ami or 'the template source'}"
            f"{commit}{_duration(job)}",
        }
        return Record(fields, not already)
    # A failure of an older spec generation is reported but does not count: a new spec gets a new budget.
    count = 0
    if job.generation == generation:
        count = max(failed_count(previous, finished, generation, job.replaces_ami), job.attempt + 1)
    fields |= {"failedJobCount": count, "lastRunMessage": f"Build {job.name} failed: {outcome.reason}"}
    return Record(fields, not already, outcome.reason)


def _verdict(outcome: Outcome, parent: str) -> ValidationStatus | None:
    """status.validation for a build that is or was validated: its Job, the AMI under test, the result."""
    if outcome.kind is not Kind.validating and outcome.validation is None:
        return None
    job = outcome.job
    name = (
        outcome.validation.name if outcome.validation is not None else validation_job_name(parent, job.job_id)
    )
    result, message = {
        Kind.validating: (Result.running, f"Job {name} is validating {outcome.image_id}"),
        Kind.built: (Result.passed, f"Job {name} validated {outcome.image_id}"),
    }.get(outcome.kind, (Result.failed, outcome.reason))
    return ValidationStatus(
        jobName=name,
        imageID=outcome.image_id,
        buildID=job.build_id,
        result=result,
        message=message,
    )


def _duration(job: ObservedJob) -> str:
    begun = job.started_at or job.created_at
    if not (job.finished_at and begun):
        return ""
    seconds = int((job.finished_at - begun).total_seconds())
    return f" in {seconds // 60}m{seconds % 60:02d}s"
