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
from app.model.validation import Result, ValidationStatus
from app.notify.events import NO_NEWS, Event, Kind, events, verdict
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

# spec.validation: the build Job succeeded, its AMI waits for the validation Job (status.validation).
VJOB = "pb-aaaa1111-validate"
REASON = (
    f"ValidationFailed: Job {VJOB} failed (BackoffLimitExceeded): "
    "ssm command 2 (systemctl is-active kubelet) exited 3: inactive"
)


def validation(
    result: Result, build: str = "build-1", job: str = VJOB, message: str = ""
) -> ValidationStatus:
    return ValidationStatus(jobName=job, imageID=BUILT, buildID=build, result=result, message=message)


def validating(job: str, build: str, attempt: int = 0) -> PackerBuilderStatus:
    return changed(
        running(job, build, attempt, state="Validating"),
        jobStatus=JobStatus.validating,
        lastRunStatus=JobStatus.validating,
        validation=validation(Result.running, build, f"{job}-validate"),
    )


def rejected(status: PackerBuilderStatus, build: str = "build-1", job: str = VJOB) -> PackerBuilderStatus:
    return changed(status, validation=validation(Result.failed, build, job, REASON))


V1 = validating("pb-aaaa1111", "build-1")
V1_PASSED = changed(S1, validation=validation(Result.passed))
V1_FAILED = rejected(failed("pb-aaaa1111", "build-1", 1, reason=REASON))
# The verdict is recorded and the next build starts in the same sync.
R2_AFTER_REJECTION = rejected(R2)
REBUILD_AFTER_PASS = changed(REBUILD, validation=validation(Result.passed))
V2 = validating("pb-bbbb2222", "build-2", attempt=1)
V2_LAST = changed(
    rejected(F2_LAST, "build-2", "pb-bbbb2222-validate"),
    state="MaxFailedJobsReached",
)
# Rejected while an older AMI of the builder stays current: Ready stays True, the build still failed.
V1_FAILED_OLDER_CURRENT = changed(
    V1_FAILED,
    state="AMICreated",
    lastRunBuiltImageID=OLDER,
    conditions=[ready("AMIAvailable", f"AMI {OLDER} is active until 2026-11-22T12:25:00Z", ok=True)],
)
# A later build after spec.validation was removed: status.validation still tells of build-1's.
S2_UNVALIDATED = changed(succeeded("pb-bbbb2222", "build-2"), validation=validation(Result.passed))


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
    Case("the build Job succeeded: validation, not success", R1_FOLLOWED, V1, []),
    Case("still validating", V1, V1, []),
    Case("the validation passed: the build succeeded", V1, V1_PASSED, [Kind.succeeded]),
    Case("pass already recorded", V1_PASSED, V1_PASSED, []),
    Case("stale replay of the pass", R1, V1_PASSED, [Kind.succeeded]),
    Case("the validation failed, retry waits", V1, V1_FAILED, [Kind.rejected]),
    Case("rejection already recorded", V1_FAILED, V1_FAILED, []),
    Case("stale replay of the rejection", R1_FOLLOWED, V1_FAILED, [Kind.rejected]),
    Case("the retry after a rejection starts", V1_FAILED, R2_AFTER_REJECTION, [Kind.started]),
    Case(
        "rejection recorded and retry started in one sync",
        V1,
        R2_AFTER_REJECTION,
        [Kind.rejected, Kind.started],
        [job("pb-aaaa1111", Phase.succeeded, build="build-1"), job(VJOB, Phase.failed, build="build-1")],
    ),
    Case(
        "pass recorded and a rebuild on a newer base started in one sync",
        V1,
        REBUILD_AFTER_PASS,
        [Kind.succeeded, Kind.started],
        [job("pb-aaaa1111", Phase.succeeded, build="build-1")],
    ),
    Case("the last allowed build was rejected", V2, V2_LAST, [Kind.rejected, Kind.exhausted]),
    Case("rejected while an older AMI stays current", V1, V1_FAILED_OLDER_CURRENT, [Kind.rejected]),
    Case("a later build without validation", R2, S2_UNVALIDATED, [Kind.succeeded]),
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


def test_a_validated_success_names_the_build_and_the_job_that_validated_it() -> None:
    done = one(
        V1,
        V1_PASSED,
        [job("pb-aaaa1111", Phase.succeeded), job(VJOB, Phase.succeeded)],
    )
    assert (done.job_name, done.image_id, done.base_ami) == ("pb-aaaa1111", BUILT, BASE)
    assert done.duration == "25m07s"  # the build's
    assert done.detail == f"Job {VJOB} validated it in 25m07s"
    # Announced once per build, whether the next build started in the same sync or not.
    success, _ = events(META, SPEC, V1, REBUILD_AFTER_PASS, [job("pb-aaaa1111", Phase.succeeded)])
    assert success.key == done.key
    assert (success.job_name, success.image_id, success.detail) == (
        "pb-aaaa1111",
        BUILT,
        f"Job {VJOB} validated it",
    )


def test_a_success_without_validation_claims_none() -> None:
    assert one(R2, S2_UNVALIDATED).detail == ""
    assert one(R1, S1).detail == ""


def test_a_rejection_says_which_check_failed_on_which_ami_and_counts_as_an_attempt() -> None:
    # news.failure is the decision's words for the same failure; the status's validation message wins.
    found = one(V1, V1_FAILED, news=News(failure="ValidationFailed: something shorter"))
    assert found.kind is Kind.rejected
    assert found.detail == REASON
    assert (found.job_name, found.image_id, found.base_ami) == (VJOB, BUILT, BASE)
    assert (found.attempt, found.max_attempts) == (1, 3)
    assert found.key == (UID, "build-1", "ValidationFailed")
    # The same rejection seen with its retry already started: the same key, so it is announced once.
    first, _ = events(META, SPEC, V1, R2_AFTER_REJECTION)
    assert (first.key, first.detail, first.attempt) == (found.key, REASON, 1)
    last, _ = events(META, SPEC, V2, V2_LAST)
    assert (last.job_name, last.attempt, last.max_attempts) == ("pb-bbbb2222-validate", 2, 3)


def test_a_rejection_without_a_recorded_message_falls_back_to_the_decisions_reason() -> None:
    bare = changed(V1_FAILED, validation=validation(Result.failed))
    assert one(V1, bare, news=News(failure=REASON)).detail == REASON


@pytest.mark.parametrize(
    ("old", "new", "ended"),
    [
        (R1_FOLLOWED, V1, None),
        (V1, V1, None),
        (V1, V1_PASSED, Result.passed),
        (V1_PASSED, V1_PASSED, None),
        (EMPTY, V1_PASSED, Result.passed),
        (V1, V1_FAILED, Result.failed),
        (V1_FAILED, V1_FAILED, None),
        (V1, R2_AFTER_REJECTION, Result.failed),
        (V1_FAILED, R2_AFTER_REJECTION, None),
        # The next validation of another build, after an earlier one passed, is a verdict of its own.
        (V1_PASSED, rejected(V1_FAILED, "build-2", "pb-bbbb2222-validate"), Result.failed),
    ],
)
def test_a_verdict_is_a_change_of_the_validations_result(
    old: PackerBuilderStatus, new: PackerBuilderStatus, ended: Result | None
) -> None:
    found = verdict(old, new)
    assert (found.result if found else None) == ended


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
