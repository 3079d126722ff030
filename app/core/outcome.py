"""What the latest finished build produced, as far as its Pod and EC2 tell, and the tags that record it."""

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from app.core.job import parse_termination_message, termination_commit
from app.core.observed import BuildReport, ObservedJob, Phase
from app.model.tags import (
    ACTIVE,
    ACTIVE_SINCE,
    BASE_AMI,
    BUILD_ID,
    CREATE_TIMESTAMP,
    JOB_ID,
    PACKER_REPO_COMMIT,
    REJECTED,
    STATUS,
    VALIDATING,
    Image,
    Owner,
    format_timestamp,
)

# How long a finished build may take to show its AMI (termination message, EC2 eventual consistency).
ARTIFACT_GRACE = timedelta(minutes=15)


class Kind(StrEnum):
    built = "built"
    waiting = "waiting"
    validating = "validating"
    """Built; its AMIs wait for the verdict of the validation Job."""
    failed = "failed"


@dataclass(frozen=True)
class Artifact:
    """One `region:ami-id` pair a build reported, and how EC2 sees that AMI now."""

    region: str
    image_id: str
    image: Image | None
    kind: Kind
    reason: str = ""

    @property
    def usable(self) -> Image | None:
        return self.image if self.kind is Kind.built else None


@dataclass(frozen=True)
class Outcome:
    """How the latest finished build ended."""

    job: ObservedJob
    kind: Kind
    image: Image | None = None
    """The primary AMI: in spec.region, x86_64 first when the build made several architectures there."""
    image_id: str = ""
    reason: str = ""
    commit: str = ""
    """The git commit the build reported (second line of its termination message), if any."""
    artifacts: tuple[Artifact, ...] = ()
    """Every AMI the build reported, in every region, sorted by region and AMI id."""
    validation: ObservedJob | None = None
    """The build's validation Job, once there is one (app.core.gate)."""
    rejected: bool = False
    """Failed because its validation Job failed: the AMIs are tagged rejected."""

    @property
    def built(self) -> Image | None:
        """The primary AMI, when the build produced a usable one."""
        return self.image if self.kind is Kind.built else None

    @property
    def status_tag(self) -> str | None:
        """The `status` tag the build's AMIs get: active, validating, rejected; None for a failed build's."""
        if self.kind is Kind.built:
            return ACTIVE
        if self.kind is Kind.validating:
            return VALIDATING
        return REJECTED if self.rejected else None

    @property
    def usable(self) -> tuple[Artifact, ...]:
        """The artifacts to tag with `status_tag`: none unless the build as a whole succeeded."""
        if self.status_tag is None:
            return ()
        return tuple(a for a in self.artifacts if a.kind is Kind.built)


def primary_order(image: Image) -> tuple[bool, str, str]:
    """Which of several current AMIs in one region speaks for the builder: x86_64, then by architecture."""
    return (image.architecture != "x86_64", image.architecture, image.image_id)


def newest(images: Iterable[Image]) -> Image | None:
    """The newest of `images`; between AMIs of one build, x86_64 first (never the order EC2 listed them)."""
    pool = list(images)
    if not pool:
        return None
    latest = max(i.created_at for i in pool)
    return min((i for i in pool if i.created_at == latest), key=primary_order)


def _artifact(
    region: str, image_id: str, found: Mapping[str, Image], overdue: bool, unavailable: Collection[str]
) -> Artifact:
    if region in unavailable:
        # Neither there nor missing: unknown until AWS answers there again, however long that takes.
        return Artifact(region, image_id, None, Kind.waiting, f"waiting for AWS to answer in {region}")
    image = found.get(image_id)
    if image is None:
        if overdue:
            return Artifact(region, image_id, None, Kind.failed, f"AMI {image_id} not found in {region}")
        return Artifact(
            region, image_id, None, Kind.waiting, f"waiting for AMI {image_id} to appear in EC2 in {region}"
        )
    if image.state == "pending":
        return Artifact(
            region, image_id, image, Kind.waiting, f"waiting for AMI {image_id} to become available"
        )
    if image.state != "available":
        return Artifact(region, image_id, image, Kind.failed, f"AMI {image_id} is {image.state} in {region}")
    return Artifact(region, image_id, image, Kind.built)


def latest_outcome(
    finished: Sequence[ObservedJob],
    reports: Mapping[str, BuildReport],
    built: Mapping[str, Sequence[Image]],
    region: str,
    now: datetime,
    unavailable: Collection[str] = (),
) -> Outcome | None:
    """The outcome of the last of `finished` (ordered oldest first); None when nothing has finished.

    `built` holds, per region, the reported AMIs as EC2 sees them. The build succeeds on its AMIs in
    `region` (spec.region): it waits while one of them is pending and fails when none is usable. AMIs in
    other regions (copies) never change that; a missing or failed copy is reported beside it, and one in
    a region AWS did not answer for (`unavailable`) is waited for.
    """
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
    found = {r: {i.image_id: i for i in images} for r, images in built.items()}
    artifacts = tuple(
        _artifact(r, image_id, found.get(r, {}), overdue, unavailable)
        for r, image_id in sorted(set(parse_termination_message(report.message)))
    )
    home = [a for a in artifacts if a.region == region]
    if not home:
        shown = report.message.splitlines()[0][:200] if report.message else "empty"
        return Outcome(
            job, Kind.failed, reason=f"NoArtifact: the build reported no AMI in {region} ({shown})"
        )
    waiting = next((a for a in home if a.kind is Kind.waiting), None)
    if waiting is not None:
        return Outcome(job, Kind.waiting, waiting.image, waiting.image_id, waiting.reason, commit, artifacts)
    usable = sorted(
        (a.image for a in home if a.image is not None and a.kind is Kind.built), key=primary_order
    )
    if not usable:
        first = home[0]
        return Outcome(job, Kind.failed, first.image, first.image_id, first.reason, commit, artifacts)
    primary = usable[0]
    return Outcome(job, Kind.built, primary, primary.image_id, commit=commit, artifacts=artifacts)


def built_tags(outcome: Outcome, owner: Owner, now: datetime) -> dict[str, str]:
    """The tags a successful build's AMI carries: derived from the Job, so re-tagging is idempotent."""
    job = outcome.job
    created = job.finished_at or job.created_at or now
    tags = {
        **owner.tags,
        STATUS: outcome.status_tag or ACTIVE,
        CREATE_TIMESTAMP: format_timestamp(created),
        BUILD_ID: job.build_id,
        JOB_ID: job.job_id,
    }
    if job.base_ami:
        tags[BASE_AMI] = job.base_ami
    if outcome.commit:
        tags[PACKER_REPO_COMMIT] = outcome.commit
    validation = outcome.validation
    if outcome.kind is Kind.built and validation is not None:
        # A release channel's soak counts from when the AMI became active: its validation's end.
        tags[ACTIVE_SINCE] = format_timestamp(validation.finished_at or validation.created_at or now)
    return tags
