"""The validation gate (docs/validation.md), pure: what a build's validation Job makes of the build's outcome,
and the AMIs an interrupted run left tagged `validating`, which are validated again rather than adopted.

A build's validation Job carries the build's labels (build id, job id, attempt, generation) and is named after
it, so the pair is found again from any request, and a failed validation counts against `maxNumberOfJobs` and
the retry backoff exactly like a failed build.
"""

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from app.core.build import job_name
from app.core.facts import RegionImages
from app.core.observed import BuildReport, ObservedJob, Phase
from app.core.outcome import Artifact, Kind, Outcome, primary_order
from app.model.tags import (
    BASE_AMI,
    BUILD_ID,
    CREATE_TIMESTAMP,
    JOB_ID,
    PACKER_REPO_COMMIT,
    STATUS,
    VALIDATING,
    Image,
    parse_timestamp,
)

VALIDATION_FAILED = "ValidationFailed"
# A termination message is at most 4 KiB; the reason keeps its first line, which says what failed.
_SHOWN = 300


def validation_of(build: ObservedJob, validations: Sequence[ObservedJob]) -> ObservedJob | None:
    """The build's validation Job, if there is one (the latest, should a person have made a second)."""
    mine = [v for v in validations if v.build_id == build.build_id and v.build_id]
    return max(mine, key=lambda v: v.order) if mine else None


def gated(
    outcome: Outcome | None,
    validations: Sequence[ObservedJob],
    verdicts: Mapping[str, BuildReport],
    required: bool,
) -> Outcome | None:
    """The outcome once its validation is taken into account.

    A build whose validation Job failed is rejected, whatever became of its AMIs since. A successful build is
    validating until its validation Job succeeds, when spec.validation asks for one (`required`) or one was
    started (removing spec.validation does not cut a running validation short).
    """
    if outcome is None:
        return None
    validation = validation_of(outcome.job, validations)
    if validation is not None and validation.phase is Phase.failed:
        reason = rejection(validation, verdicts.get(validation.build_id))
        return replace(outcome, kind=Kind.failed, reason=reason, validation=validation, rejected=True)
    if outcome.kind is not Kind.built or (validation is None and not required):
        return outcome
    if validation is not None and validation.phase is Phase.succeeded:
        return replace(outcome, validation=validation)
    return replace(outcome, kind=Kind.validating, validation=validation)


def rejection(validation: ObservedJob, verdict: BuildReport | None) -> str:
    """Why a validation failed: the Job's failure, and the first line of what the check said when it ended."""
    said = verdict.message.strip().splitlines()[0][:_SHOWN] if verdict is not None and verdict.message else ""
    failure = validation.failure or "Failed"
    reason = f"{VALIDATION_FAILED}: Job {validation.name} failed ({failure})"
    return f"{reason}: {said}" if said else reason


def stranded(
    regions: Mapping[str, RegionImages],
    home: str,
    newer_than: datetime | None,
    parent: str,
    generation: int,
    replaces: str,
) -> Outcome | None:
    """The newest build whose AMIs an interrupted run left `validating` in `home`, newer than the builder's
    newest active AMI there, as the outcome of a build that succeeded: `gated` makes it wait for its validation.

    Its Job is gone (deleted with its history, or the builder was re-created), so the build is known from its
    AMIs' tags alone; the stand-in Job is never answered as a child, it only names the build.
    """
    waiting = [
        i
        for i in regions.get(home, RegionImages()).managed
        if i.tags.get(STATUS) == VALIDATING
        and i.state == "available"
        and i.tags.get(BUILD_ID)
        and i.tags.get(JOB_ID)
        and (newer_than is None or i.created_at > newer_than)
    ]
    if not waiting:
        return None
    primary = min(waiting, key=lambda i: (-i.created_at.timestamp(), *primary_order(i)))
    build_id = primary.tags[BUILD_ID]
    artifacts = tuple(
        sorted(
            (
                Artifact(region, image.image_id, image, Kind.built)
                for region, found in regions.items()
                for image in found.managed
                if image.tags.get(BUILD_ID) == build_id and image.tags.get(STATUS) == VALIDATING
            ),
            key=lambda a: (a.region, a.image_id),
        )
    )
    home_images = sorted((a.image for a in artifacts if a.region == home and a.image), key=primary_order)
    image = home_images[0] if home_images else primary
    job = _stand_in(image, parent, generation, replaces)
    commit = image.tags.get(PACKER_REPO_COMMIT, "")
    return Outcome(job, Kind.built, image, image.image_id, commit=commit, artifacts=artifacts)


def _stand_in(image: Image, parent: str, generation: int, replaces: str) -> ObservedJob:
    tags = image.tags
    try:
        created: datetime | None = parse_timestamp(tags.get(CREATE_TIMESTAMP, ""))
    except ValueError:
        created = image.created_at
    return ObservedJob(
        name=job_name(parent, tags[JOB_ID]),
        raw={},
        phase=Phase.succeeded,
        deleting=False,
        build_id=tags[BUILD_ID],
        job_id=tags[JOB_ID],
        attempt=0,
        generation=generation,
        base_ami=tags.get(BASE_AMI, ""),
        replaces_ami=replaces,
        command="",
        created_at=created,
        started_at=created,
        finished_at=created,
        failure="",
    )
