"""Which transitions are announced: derived from the recorded status versus the answered one, never per sync."""

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from app.core.decision import News
from app.core.observed import ObservedJob, Phase
from app.model.spec import (
    Condition,
    ConditionStatus,
    JobStatus,
    ObjectMeta,
    PackerBuilderSpec,
    PackerBuilderStatus,
    parse_spec,
)
from app.notify.events import NO_NEWS, Event, Kind, events
from tests.builders import NAME, NAMESPACE, T0, UID
from tests.seed import SEED_SPEC

META = ObjectMeta(name=NAME, namespace=NAMESPACE, uid=UID, generation=1)
SPEC = parse_spec(SEED_SPEC)
BASE = "ami-0a1f30a1b2c3d4e03"
BUILT = "ami-0b1a2b3c4d5e6f708"
OLDER = "ami-0c0ffee0c0ffee001"
STAMP = "2026-11-20T12:00:00Z"


def changed(status: PackerBuilderStatus, **fields: Any) -> PackerBuilderStatus:
    return status.model_copy(update=fields)


def ready(reason: str, message: str = "", ok: bool = False) -> Condition:
    status = ConditionStatus.true if ok else ConditionStatus.false
    return Condition(type="Ready", status=status, reason=reason, message=message, lastTransitionTime=STAMP)


def cond(kind: str, message: str) -> Condition:
    return Condition(
        type=kind, status=ConditionStatus.true, reason=kind, message=message, lastTransitionTime=STAMP
    )


def running(
    job: str, build: str, attempt: int = 0, state: str = "JobCreation", **extra: Any
) -> PackerBuilderStatus:
    return PackerBuilderStatus(
        jobName=job,
        buildID=build,
        jobStatus=JobStatus.running,
        lastRunStatus=JobStatus.running,
        lastRunBaseImageID=BASE,
        failedJobCount=attempt,
        state=state,
        conditions=[ready("NoActiveAMI")],
        observedGeneration=1,
        **extra,
    )


def failed(
    job: str,
    build: str,
    count: int,
    reason: str = "BackoffLimitExceeded: too many pod failures",
    state: str = "JobFailed",
) -> PackerBuilderStatus:
    return changed(
        running(job, build, count, state=state),
        jobStatus=JobStatus.failed,
        lastRunStatus=JobStatus.failed,
        lastRunMessage=f"Build {job} failed: {reason}",
    )


def succeeded(job: str, build: str) -> PackerBuilderStatus:
    return changed(
        running(job, build, state="AMICreated"),
        jobStatus=JobStatus.completed,
        lastRunStatus=JobStatus.completed,
        lastRunBuiltImageID=BUILT,
        conditions=[ready("AMIAvailable", f"AMI {BUILT} is active until 2026-11-22T12:25:00Z", ok=True)],
    )


def job(name: str, phase: Phase, attempt: int = 0, build: str = "", failure: str = "") -> ObservedJob:
    return ObservedJob(
        name=name,
        raw={},
        phase=phase,
        deleting=False,
        build_id=build,
        job_id=name[-8:],
        attempt=attempt,
        generation=1,
        base_ami=BASE,
        replaces_ami="",
        command="",
        created_at=T0,
        started_at=T0 + timedelta(seconds=5),
        finished_at=T0 + timedelta(minutes=25, seconds=12) if phase is not Phase.running else None,
        failure=failure,
    )


EMPTY = PackerBuilderStatus()
R1 = running("pb-aaaa1111", "build-1")
R1_FOLLOWED = running("pb-aaaa1111", "build-1", state="JobRunning")
S1 = succeeded("pb-aaaa1111", "build-1")
F1 = failed("pb-aaaa1111", "build-1", 1)
R2 = running("pb-bbbb2222", "build-2", attempt=1)
F2_LAST = changed(
    failed("pb-bbbb2222", "build-2", 2, state="MaxFailedJobsReached"),
    conditions=[
        ready("NoActiveAMI"),
        cond("MaxFailedJobsReached", "2 of 2 builds failed; no more builds until the spec changes"),
    ],
)
ADOPTED = PackerBuilderStatus(
    state="AMIAdopted",
    lastRunBuiltImageID=OLDER,
    lastRunBaseImageID=BASE,
    conditions=[ready("AMIAvailable", ok=True)],
)
EXPIRED_REBUILD = changed(
    running("pb-cccc3333", "build-3"),
    lastRunBuiltImageID=BUILT,
    conditions=[ready("AMIExpired", f"AMI {BUILT} expired at 2026-11-22T12:25:00Z")],
)

REBUILD = changed(running("pb-dddd4444", "build-4"), lastRunBuiltImageID=BUILT)


@dataclass(frozen=True)
class Case:
    id: str
    old: PackerBuilderStatus
    new: PackerBuilderStatus
    kinds: list[Kind]
    jobs: list[ObservedJob] = field(default_factory=list)
    spec: PackerBuilderSpec | None = SPEC


CASES = [
    Case("new builder: its first Job", EMPTY, R1, [Kind.started]),
    Case("the same running build, synced again", R1, R1_FOLLOWED, []),
    Case("status lagging behind the running Job", EMPTY, R1_FOLLOWED, [Kind.started]),
    Case(
        "the build produced its AMI", R1_FOLLOWED, S1, [Kind.succeeded], [job("pb-aaaa1111", Phase.succeeded)]
    ),
    Case("success already recorded", S1, S1, []),
    Case("stale replay of the success", R1, S1, [Kind.succeeded]),
    Case("the build failed, retry waits", R1, F1, [Kind.failed]),
    Case("failure already recorded", F1, F1, []),
    Case("the retry starts", F1, R2, [Kind.started]),
    Case(
        "failure recorded and retry started in one sync",
        R1,
        R2,
        [Kind.failed, Kind.started],
        [job("pb-aaaa1111", Phase.failed, build="build-1", failure="DeadlineExceeded: too slow")],
    ),
    Case(
        "a superseded Job that did not fail is no failure",
        R1,
        R2,
        [Kind.started],
        [job("pb-aaaa1111", Phase.running)],
    ),
    Case(
        "success recorded and a rebuild on a newer base started in one sync",
        R1,
        REBUILD,
        [Kind.succeeded, Kind.started],
        [job("pb-aaaa1111", Phase.succeeded, build="build-1")],
    ),
    Case("the last allowed build failed", R2, F2_LAST, [Kind.failed, Kind.exhausted]),
    Case("retries stay exhausted", F2_LAST, F2_LAST, []),
    Case("an existing AMI is adopted", EMPTY, ADOPTED, [Kind.adopted]),
    Case("still the same adopted AMI", ADOPTED, ADOPTED, []),
    Case("a newer AMI is adopted", ADOPTED, changed(ADOPTED, lastRunBuiltImageID=BUILT), [Kind.adopted]),
    Case("our AMI expired and the rebuild starts", S1, EXPIRED_REBUILD, [Kind.expired, Kind.started]),
    Case(
        "still expired while the rebuild runs",
        EXPIRED_REBUILD,
        changed(EXPIRED_REBUILD, state="JobRunning"),
        [],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_transitions(case: Case) -> None:
    found = events(META, case.spec, case.old, case.new, case.jobs)
    assert [e.kind for e in found] == case.kinds


def one(
    old: PackerBuilderStatus,
    new: PackerBuilderStatus,
    jobs: list[ObservedJob] | None = None,
    news: News = NO_NEWS,
) -> Event:
    (found,) = events(META, SPEC, old, new, jobs or [], news)
    return found


def test_started_says_which_job_on_which_base_from_which_source() -> None:
    started = one(EMPTY, R2)
    assert started.job_name == "pb-bbbb2222"
    assert started.base_ami == BASE
    assert started.source == "https://github.com/ibeify/eks-node-group-ami-refresh@main"
    assert (started.attempt, started.max_attempts) == (2, 3)
    assert started.region == "us-west-2"


def test_succeeded_carries_the_ami_the_base_and_the_duration() -> None:
    done = one(R1, S1, [job("pb-aaaa1111", Phase.succeeded)])
    assert (done.image_id, done.base_ami, done.duration) == (BUILT, BASE, "25m07s")


def test_failed_carries_the_attempt_and_the_jobs_failure_reason() -> None:
    # The reason comes typed from the decision, never parsed back out of lastRunMessage.
    broken = one(R1, F1, news=News(failure="BackoffLimitExceeded: too many pod failures"))
    assert broken.job_name == "pb-aaaa1111"
    assert (broken.attempt, broken.max_attempts) == (1, 3)
    assert broken.detail == "BackoffLimitExceeded: too many pod failures"


def test_a_failure_recorded_with_its_retry_is_told_from_the_failed_job() -> None:
    failure, _ = events(
        META,
        SPEC,
        R1,
        R2,
        [job("pb-aaaa1111", Phase.failed, build="build-1", failure="DeadlineExceeded: too slow")],
    )
    assert (failure.job_name, failure.attempt, failure.detail) == (
        "pb-aaaa1111",
        1,
        "DeadlineExceeded: too slow",
    )
    assert failure.key == one(R1, F1).key


def test_a_success_recorded_with_a_rebuild_is_told_from_the_finished_job() -> None:
    success, started = events(META, SPEC, R1, REBUILD, [job("pb-aaaa1111", Phase.succeeded, build="build-1")])
    assert (success.job_name, success.image_id, success.duration) == ("pb-aaaa1111", BUILT, "25m07s")
    assert success.key == one(R1, S1, [job("pb-aaaa1111", Phase.succeeded)]).key
    assert started.job_name == "pb-dddd4444"


def test_a_job_that_succeeded_without_an_ami_and_was_retried_at_once_is_a_failure() -> None:
    failure, _ = events(
        META,
        SPEC,
        R1,
        R2,
        [job("pb-aaaa1111", Phase.succeeded, build="build-1")],
        News(failure="NoArtifact: the build reported no AMI in us-west-2 (empty)"),
    )
    assert failure.kind is Kind.failed
    assert failure.detail.startswith("NoArtifact")


def test_a_repeat_of_the_same_transition_has_the_same_key() -> None:
    assert one(EMPTY, R1).key == one(EMPTY, R1_FOLLOWED).key == (UID, "build-1", "BuildStarted")
    assert one(R1, S1).key != one(R1, F1).key
    assert one(EMPTY, R1).key != one(F1, R2).key


def test_the_expired_ami_is_named() -> None:
    expired, _ = events(META, SPEC, S1, EXPIRED_REBUILD, news=News(expired_image_id="ami-0e0e0e0e0e0e0e0e0"))
    assert expired.image_id == "ami-0e0e0e0e0e0e0e0e0"
    expired, _ = events(META, SPEC, S1, EXPIRED_REBUILD)
    assert expired.image_id == BUILT  # without news: the AMI the status last recorded
    assert "expired at 2026-11-22T12:25:00Z" in expired.detail


def test_a_token_in_the_repository_url_is_not_repeated() -> None:
    spec = parse_spec(
        {
            **SEED_SPEC,
            "builder": {**SEED_SPEC["builder"], "repoURL": "https://bot:ghp_s3cr3t@github.com/org/packer"},
        }
    )
    (started,) = events(META, spec, EMPTY, R1)
    assert started.source == "https://github.com/org/packer@main"


INVALID = PackerBuilderStatus(
    state="InvalidSpec",
    conditions=[ready("InvalidSpec"), cond("InvalidSpec", "spec.region: is required")],
)


@pytest.mark.parametrize(
    ("old", "new", "announced"),
    [
        (R1, INVALID, True),
        (INVALID, INVALID, False),
        (
            INVALID,
            changed(INVALID, conditions=[cond("InvalidSpec", "spec.builder.image: is required")]),
            True,
        ),
    ],
    ids=["spec becomes invalid", "still the same problem", "a different problem"],
)
def test_an_invalid_spec_is_announced_once_per_problem(
    old: PackerBuilderStatus, new: PackerBuilderStatus, announced: bool
) -> None:
    found = events(META, None, old, new)
    assert [e.kind for e in found] == ([Kind.invalid] if announced else [])
    if announced:
        assert found[0].detail in {"spec.region: is required", "spec.builder.image: is required"}
