"""What the latest finished build produced, as far as its Pod and EC2 tell, and the tags that record it."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from app.job import parse_termination_message, termination_commit
from app.observed import BuildReport, ObservedJob, Phase
from app.spec import PackerBuilderSpec
from app.tags import (
    ACTIVE,
    BASE_AMI,
    BUILD_ID,
    CREATE_TIMESTAMP,
    JOB_ID,
    PACKER_REPO_COMMIT,
    STATUS,
    Image,
    format_timestamp,
    management_tags,
)

# How long a finished build may take to show its AMI (termination message, EC2 eventual consistency).
ARTIFACT_GRACE = timedelta(minutes=15)


class Kind(StrEnum):
    built = "built"
    waiting = "waiting"
    failed = "failed"


@dataclass(frozen=True)
class Outcome:
    """How the latest finished build ended."""

    job: ObservedJob
    kind: Kind
    image: Image | None = None
    image_id: str = ""
    reason: str = ""
    commit: str = ""
    """The git commit the build reported (second line of its termination message), if any."""

    @property
    def built(self) -> Image | None:
        """The AMI, when the build produced a usable one."""
        return self.image if self.kind is Kind.built else None


def latest_outcome(
    finished: Sequence[ObservedJob],
    reports: Mapping[str, BuildReport],
    built: Sequence[Image],
    region: str,
    now: datetime,
) -> Outcome | None:
    """The outcome of the last of `finished` (ordered oldest first); None when nothing has finished."""
    if not finished:
        return None
    job = finished[-1]
    if job.phase is Phase.failed:
        return Outcome(job, Kind.failed, reason=job.failure or "the Job failed")
    finished_at = job.finished_at or job.created_at or now
    overdue = now - finished_at > ARTIFACT_GRACE
    report = reports.get(job.build_id)
    if report is None:
        if overdue:
            return Outcome(
                job, Kind.failed, reason="NoArtifact: the build pod's termination message was never seen"
            )
        return Outcome(job, Kind.waiting, reason="waiting for the build pod's termination message")
    commit = termination_commit(report.message)
    image_id = dict(parse_termination_message(report.message)).get(region, "")
    if not image_id:
        shown = report.message.splitlines()[0][:200] if report.message else "empty"
        return Outcome(
            job, Kind.failed, reason=f"NoArtifact: the build reported no AMI in {region} ({shown})"
        )
    image = next((i for i in built if i.image_id == image_id), None)
    if image is None:
        if overdue:
            return Outcome(
                job, Kind.failed, image_id=image_id, reason=f"AMI {image_id} not found in {region}"
            )
        return Outcome(
            job, Kind.waiting, image_id=image_id, reason=f"waiting for AMI {image_id} to appear in EC2"
        )
    if image.state == "pending":
        return Outcome(
            job, Kind.waiting, image, image_id, f"waiting for AMI {image_id} to become available", commit
        )
    if image.state != "available":
        return Outcome(job, Kind.failed, image, image_id, f"AMI {image_id} is {image.state}", commit)
    return Outcome(job, Kind.built, image, image_id, commit=commit)


def built_tags(outcome: Outcome, builder: str, spec: PackerBuilderSpec, now: datetime) -> dict[str, str]:
    """The tags a successful build's AMI carries: derived from the Job, so re-tagging is idempotent."""
    job = outcome.job
    created = job.finished_at or job.created_at or now
    tags = {
        **management_tags(builder, spec),
        STATUS: ACTIVE,
        CREATE_TIMESTAMP: format_timestamp(created),
        BUILD_ID: job.build_id,
        JOB_ID: job.job_id,
    }
    if job.base_ami:
        tags[BASE_AMI] = job.base_ami
    if outcome.commit:
        tags[PACKER_REPO_COMMIT] = outcome.commit
    return tags
