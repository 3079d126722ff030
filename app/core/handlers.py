"""One function per state (app.core.states): what the builder answers once `app.core.decide.classify` has said which
state it is in. Each is given the `Situation` and returns the Decision (pure)."""

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, cast

from app.core import conditions as cond
from app.core.answer import answer, status
from app.core.build import ANNOTATION_COMMAND, BuildPlan, plan_build
from app.core.conditions import Wanted
from app.core.decision import Decision
from app.core.due import next_build, retry, window_opens
from app.core.history import running_fields
from app.core.job import render_job
from app.core.outcome import Kind, Outcome
from app.core.situation import Situation
from app.core.states import State
from app.core.timing import ceil_seconds, wake_after
from app.core.validation_job import render_validation_job
from app.model.spec import JobStatus
from app.model.tags import BASE_AMI, Image, format_timestamp

RUNNING_RESYNC = 60
WAITING_RESYNC = 30


def job_running(s: Situation) -> Decision:
    """Rule 1: a running Job is followed (even while suspended), its identity read from its own labels."""
    job = s.running[-1]
    running = cond.true(
        cond.JOB_RUNNING, f"Job {job.name} is building an AMI", since=job.started_at or job.created_at
    )
    fields = {
        **s.record.fields,
        **running_fields(s.previous, job),
        "lastRunMessage": f"Build {job.name} is running",
        "state": State.JOB_RUNNING.value,
    }
    new = status(s, [running], **fields)
    return answer(s, new, min(RUNNING_RESYNC, s.timer), recorded=True)


def waiting_for_image(s: Situation) -> Decision:
    outcome = cast(Outcome, s.outcome)  # classified: the latest build waits for its AMI
    waiting = cond.true(cond.WAITING_FOR_IMAGE, f"Job {outcome.job.name}: {outcome.reason}")
    message = f"Build {outcome.job.name} finished; {outcome.reason}"
    new = status(s, [waiting], lastRunMessage=message, state=State.WAITING_FOR_IMAGE.value)
    return answer(s, new, min(WAITING_RESYNC, s.timer), recorded=False)


def validating(s: Situation) -> Decision:
    """The build's AMIs are tagged validating; its validation Job is asked for (again: rule 8, the same one)
    until the request shows it, then followed. Nothing else starts meanwhile."""
    outcome = cast(Outcome, s.outcome)  # classified: the latest build waits for its verdict
    extra = None
    # Every copy is checked with the rest: a copy still on its way is waited for (ARTIFACT_GRACE bounds it).
    copying = any(a.kind is Kind.waiting for a in outcome.artifacts)
    if outcome.validation is None and not copying:
        meta = s.world.meta
        extra = render_validation_job(meta, s.spec, outcome, s.world.hook_image, s.owner.tags)
    new = status(s, [], **{**s.record.fields, "state": State.VALIDATING.value})
    return answer(s, new, min(RUNNING_RESYNC, s.timer), recorded=True, extra=extra)


def ami_available(s: Situation) -> Decision:
    """AMICreated or AMIAdopted: nothing to do until the AMI expires or a newer base has soaked."""
    current = cast(Image, s.current)  # classified: a current AMI, no rebuild due
    fields: dict[str, Any] = {**s.record.fields, "failedJobCount": 0, "state": ami_state(s, current).value}
    built_now = (
        s.outcome is not None and s.outcome.kind is Kind.built and s.outcome.image_id == current.image_id
    )
    if not built_now and current.image_id != s.previous.lastRunBuiltImageID:
        # Adoption: record it, never touch its tags (its expiry clock keeps running from its own timestamp).
        fields |= {
            "lastRunBuiltImageID": current.image_id,
            "lastRunMessage": f"Adopted existing AMI {current.image_id}",
        }
        if current.tags.get(BASE_AMI):
            fields["lastRunBaseImageID"] = current.tags[BASE_AMI]
    planned = next_build(s, current)
    if planned is not None:
        fields["nextBuildTime"] = format_timestamp(planned)
    fine = cond.true(
        cond.FLIGHT_CHECK_FAILED, f"Latest Created AMI {current.image_id} has not expired and is active"
    )
    soaking = s.base_check.soaking_until if s.base_check is not None else None
    promotion = s.plan.channels.next_promotion
    resync = wake_after(s.now, s.timer, current.expires_at(s.expires_in), soaking, planned, promotion)
    return answer(s, status(s, [fine], **fields), resync, recorded=True)


def ami_state(s: Situation, current: Image) -> State:
    """Built by this builder (this answer or an earlier one) or adopted: a recorded AMI keeps its word."""
    if s.outcome is not None and s.outcome.kind is Kind.built and s.outcome.image_id == current.image_id:
        return State.AMI_CREATED
    if current.image_id != s.previous.lastRunBuiltImageID:
        return State.AMI_ADOPTED
    held = s.previous.state
    return State(held) if held in (State.AMI_CREATED, State.AMI_ADOPTED) else State.AMI_CREATED


def _hold(s: Situation, state: State, wanted: list[Wanted], resync: int, **fields: Any) -> Decision:
    """No build now: say why in a condition and a state, keep the Jobs that must stay."""
    new = status(s, wanted, **{**s.record.fields, **fields, "state": state.value})
    return answer(s, new, resync, recorded=True)


def suspended(s: Situation) -> Decision:
    stopped: dict[str, Any] = {}
    if s.deleted_while_suspended:
        message = f"Build {s.previous.jobName} was deleted while suspended; it does not restart"
        stopped = {"jobStatus": None, "lastRunMessage": message}
    # The Suspended condition itself is ambient.
    return _hold(s, State.SUSPENDED, [], s.timer, failedJobCount=s.failures, **stopped)


def max_failed(s: Situation) -> Decision:
    count, limit = s.failures, s.spec.maxNumberOfJobs
    message = f"{count} of {limit} builds failed; no more builds until the spec changes"
    return _hold(
        s, State.MAX_FAILED, [cond.true(cond.MAX_FAILED_JOBS, message)], s.timer, failedJobCount=count
    )


def job_failed(s: Situation) -> Decision:
    """Backing off: a retry belongs to the build that already started, so no window holds it back."""
    failed_at, retry_time = retry(s)
    again = cast(datetime, retry_time)  # classified: the retry is still ahead
    message = f"{s.failures} of {s.spec.maxNumberOfJobs} builds failed; retrying at {format_timestamp(again)}"
    wanted = [cond.true(cond.JOB_FAILED, message, since=failed_at)]
    resync = ceil_seconds(again - s.now)
    fields = {"failedJobCount": s.failures, "nextBuildTime": format_timestamp(again)}
    return _hold(s, State.JOB_FAILED, wanted, resync, **fields)


def base_image_not_found(s: Situation) -> Decision:
    problem = cast(Wanted, s.base_problem)  # classified: the source names no usable (or a revoked) AMI
    return _hold(s, State.BASE_IMAGE_NOT_FOUND, [problem], s.timer)


def scheduled(s: Situation) -> Decision:
    start = window_opens(s)
    message = (
        f"Next build starts at {format_timestamp(start)} (schedule {s.spec.schedule!r} in {s.spec.timeZone})"
    )
    wanted = [cond.true(cond.SCHEDULED, message, reason="WaitingForWindow")]
    resync = wake_after(s.now, s.timer, start)
    return _hold(s, State.SCHEDULED, wanted, resync, nextBuildTime=format_timestamp(start))


def job_creation(s: Situation) -> Decision:
    """Ask for the build's Job: the one the status already asked for (rule 8), or the next one."""
    if s.pending is not None and not s.deleted_while_suspended:
        return _emit(s, s.pending, recorded=False)
    meta = s.world.meta
    base = s.facts.base_image
    base_ami = base.image_id if isinstance(base, Image) else None
    build = plan_build(meta.name, meta.uid, meta.generation, s.replaces, s.failures, base_ami)
    return _emit(s, build, recorded=True)


def _emit(s: Situation, build: BuildPlan, *, recorded: bool) -> Decision:
    meta = s.world.meta
    job = render_job(meta.name, meta.namespace, meta.uid, s.spec, build)
    same_job = s.previous.jobName == build.job_name
    attempt = f"attempt {build.attempt + 1} of {s.spec.maxNumberOfJobs}"
    fields = {
        **(s.record.fields if recorded else {}),
        "jobName": build.job_name,
        "jobID": build.job_id,
        "buildID": build.build_id,
        "jobStatus": JobStatus.running,
        "lastRunStatus": JobStatus.running,
        "lastRunBaseImageID": build.base_ami or "",
        "command": str(job["metadata"]["annotations"].get(ANNOTATION_COMMAND, "")),
        "failedJobCount": build.attempt,
        "lastRebuild": s.spec.release.rebuild if s.rebuild_asked else s.rebuild_honoured,
        "lastRun": s.previous.lastRun if same_job and s.previous.lastRun else format_timestamp(s.stamp),
        "lastRunMessage": f"Build {build.job_name} started ({attempt})",
        "state": State.JOB_CREATION.value,
    }
    asked = cond.true(cond.JOB_RUNNING, f"Job {build.job_name} is building an AMI")
    return answer(s, status(s, [asked], **fields), min(RUNNING_RESYNC, s.timer), recorded=recorded, extra=job)


HANDLERS: Mapping[State, Callable[[Situation], Decision]] = {
    State.JOB_RUNNING: job_running,
    State.WAITING_FOR_IMAGE: waiting_for_image,
    State.VALIDATING: validating,
    State.AMI_CREATED: ami_available,
    State.AMI_ADOPTED: ami_available,
    State.SUSPENDED: suspended,
    State.MAX_FAILED: max_failed,
    State.JOB_FAILED: job_failed,
    State.BASE_IMAGE_NOT_FOUND: base_image_not_found,
    State.SCHEDULED: scheduled,
    State.JOB_CREATION: job_creation,
}
"""Every state a sync can answer in; InvalidSpec and Finalizing are answered by app.core.decide itself."""
