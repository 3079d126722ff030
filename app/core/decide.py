"""The reconcile decision: (parent, observed Jobs and Pods, AMI facts, now) -> (Jobs, status, resync, effects).

Pure: no I/O, no clock, no randomness. Follows the Metacontroller contract in DESIGN.md section 3; the rule
numbers in comments refer to it. A sync first works out everything it needs once (`app.core.situation`), then
which state the builder is in (`classify`, in the order of the table in `app.core.states`), then hands over to
that state's one function (`app.core.handlers`). AWS trouble, an invalid spec and deletion are answered here.
"""

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from app.core import conditions as cond
from app.core.answer import images
from app.core.children import as_desired, sorted_children
from app.core.conditions import Wanted
from app.core.decision import Decision, World, recorded_time, transition_time
from app.core.due import retry, window_opens
from app.core.effects import Deregister, Disable, Effect, Report, Unpublish
from app.core.facts import AmiFacts, AwsFault
from app.core.handlers import HANDLERS, WAITING_RESYNC, ami_state
from app.core.history import running_fields
from app.core.job import parse_termination_message, render_job
from app.core.lifecycle import report_conditions
from app.core.observed import Phase
from app.core.outcome import ARTIFACT_GRACE, Kind
from app.core.situation import Situation
from app.core.states import State
from app.model.spec import JobStatus, SpecError
from app.model.validation import Result

FAULT_RESYNC_MIN = 15
FAULT_RESYNC_MAX = 300


def decide(world: World, facts: AmiFacts, now: datetime) -> Decision:
    """The sync hook's answer."""
    now = now.replace(microsecond=0)
    if isinstance(world.spec, SpecError):
        return _invalid_spec(world, world.spec, now)
    validation = world.spec.validation
    if validation is not None and validation.bootCheck is not None and not world.hook_image:
        missing = (
            "the hook does not know its own image to run the boot check in (HOOK_IMAGE; the chart sets it)"
        )
        return _invalid_spec(world, SpecError("spec.validation.bootCheck", missing), now)
    situation = Situation(world, world.spec, facts, now)
    if facts.fault is not None:
        return _fault(situation, facts.fault)
    return HANDLERS[classify(situation)](situation)


def classify(s: Situation) -> State:
    """Which state the builder is in: the first row of app.core.states.TABLE whose facts hold."""
    if s.running:
        return State.JOB_RUNNING
    if s.outcome is not None and s.outcome.kind is Kind.waiting:
        return State.WAITING_FOR_IMAGE
    if s.outcome is not None and s.outcome.kind is Kind.validating:
        return State.VALIDATING
    if s.current is not None and not s.rebuild_due and not s.rebuild_asked:
        return ami_state(s, s.current)
    if s.pending is not None and not s.deleted_while_suspended:
        return State.JOB_CREATION  # rule 8: the Job asked for, asked for again
    if s.spec.suspend:
        return State.SUSPENDED
    if s.failures >= s.spec.maxNumberOfJobs:
        return State.MAX_FAILED
    if s.failures > 0:
        _, again = retry(s)
        if again is not None and s.now < again:
            return State.JOB_FAILED
    if s.base_problem is not None:
        return State.BASE_IMAGE_NOT_FOUND
    if s.failures == 0 and s.spec.schedule and not s.urgent and s.now < window_opens(s):
        return State.SCHEDULED
    return State.JOB_CREATION


def needs_facts_to_finalize(world: World) -> bool:
    """Whether the last build's AMIs may still need tagging: its success or one of its copies unrecorded."""
    finished = [j for j in world.jobs if not j.deleting and j.phase is not Phase.running and not j.validates]
    if not finished:
        return False
    latest = max(finished, key=lambda j: j.order)
    if latest.phase is not Phase.succeeded:
        return False
    status = world.status
    if status.validation is not None and status.validation.buildID == latest.build_id:
        # Validated or rejected: recorded once the status says so; a validation that never ran leaves its
        # AMIs `validating`, and they are named in the finalize status.
        return status.validation.result is not Result.passed or status.jobStatus != JobStatus.completed
    if status.jobName != latest.name or status.jobStatus != JobStatus.completed:
        return True
    report = world.reports.get(latest.build_id)
    listed = {(ref.region, ref.imageID) for ref in status.images}
    return report is not None and not set(parse_termination_message(report.message)) <= listed


def decide_finalize(world: World, facts: AmiFacts, now: datetime) -> Decision:
    """Rule 11: let running builds finish (Packer must clean up its EC2 resources), record the last one's
    AMIs (tags, retirement, deprecation time, publishing: what a sync would carry out, except removing an
    AMI or a parameter), then release the parent.

    Waiting is bounded: an AMI that stays pending, or AWS that stays unreachable, for longer than
    ARTIFACT_GRACE after the build finished no longer holds up the deletion.
    """
    now = now.replace(microsecond=0)
    running = [j for j in world.jobs if not j.deleting and j.phase is Phase.running]
    status = world.status.model_copy(
        update={"state": State.FINALIZING.value, "observedGeneration": world.meta.generation}
    )
    wait = ""
    effects: tuple[Effect, ...] = ()
    note = ""
    if running:
        what = "validation" if all(j.validates for j in running) else "build"
        wait = f"Waiting for running {what} {', '.join(j.name for j in running)} to finish"
    elif not isinstance(world.spec, SpecError) and needs_facts_to_finalize(world):
        s = Situation(world, world.spec, facts, now)
        finished = s.finished[-1]
        patient = now - (finished.finished_at or now) <= ARTIFACT_GRACE
        if facts.fault is not None and patient:
            wait = f"Waiting to record build {finished.name}: AWS {facts.fault.code}"
        elif facts.fault is None:
            outcome = s.outcome
            # What is usable is tagged now; a copy still on its way is waited for like the AMI itself.
            # Nothing is removed (nor disabled, removal's first stage), no AMI and no parameter: that is for a
            # builder that goes on building, and what a deleted one leaves behind is the fleet's to launch
            # from (README, deletion).
            effects = tuple(e for e in s.plan.effects if not isinstance(e, Disable | Deregister | Unpublish))
            status = status.model_copy(update={"images": images(s)})
            pending = [a.reason for a in outcome.artifacts if a.kind is Kind.waiting] if outcome else []
            if outcome is not None and outcome.kind is Kind.waiting:
                pending.insert(0, outcome.reason)
            if pending and patient:
                wait = f"Waiting to record build {finished.name}: {pending[0]}"
            if outcome is not None and outcome.kind is Kind.validating:
                ids = ", ".join(f"{a.image_id} in {a.region}" for a in outcome.usable)
                note = f"Deleted before its validation finished: {ids} left tagged validating"
                status = status.model_copy(update=s.record.fields)
    if wait or note:
        status = status.model_copy(update={"lastRunMessage": wait or note, "state": State.FINALIZING.value})
    return Decision(
        children=tuple(as_desired(j.raw) for j in sorted(running, key=lambda j: j.name)),
        status=status,
        resync_seconds=WAITING_RESYNC if wait else FAULT_RESYNC_MAX,
        effects=effects,
        finalized=not wait,
    )


# What an answer says about AMIs and builds: changing any of it is acting, decided on exact facts.
_ACTING_FIELDS = ("state", "jobName", "jobStatus", "lastRunBuiltImageID", "images", "failedJobCount")


def acts(world: World, decision: Decision) -> bool:
    """Whether the answer changes anything in AWS, in the Jobs, or in what the status says about AMIs.

    An answer that does not (a Ready builder re-checked on its timer) may rest on facts up to an index
    period old; one that does must be decided again on exact facts (app.aws.image_index).
    """
    if decision.effects:
        return True
    live = sorted(j.name for j in world.jobs if not j.deleting)
    if sorted(str(c["metadata"]["name"]) for c in decision.children) != live:
        return True
    return any(getattr(world.status, f) != getattr(decision.status, f) for f in _ACTING_FIELDS)


def with_reports(world: World, decision: Decision, reports: Sequence[Report], now: datetime) -> Decision:
    """The decision's status once its effects were carried out: a condition for each kind that did not."""
    wanted = report_conditions(reports)
    if not wanted:
        return decision
    conditions = cond.upsert(
        decision.status.conditions, wanted, world.status.conditions, transition_time(world, now)
    )
    return replace(decision, status=decision.status.model_copy(update={"conditions": conditions}))


def _invalid_spec(world: World, error: SpecError, now: datetime) -> Decision:
    """Rule 15: say which field is wrong, keep every Job that exists, start nothing."""
    live = [j for j in world.jobs if not j.deleting]
    wanted = [
        cond.ready(False, cond.INVALID_SPEC, f"The spec is invalid: {error}"),
        cond.true(cond.INVALID_SPEC, str(error)),
    ]
    status = world.status.model_copy(
        update={
            "conditions": cond.merge(world.status.conditions, wanted, transition_time(world, now)),
            "state": State.INVALID_SPEC.value,
            "observedGeneration": world.meta.generation,
        }
    )
    return Decision(
        children=tuple(as_desired(j.raw) for j in sorted(live, key=lambda j: j.name)),
        status=status,
        resync_seconds=FAULT_RESYNC_MAX,
    )


def _fault(s: Situation, fault: AwsFault) -> Decision:
    """AWS trouble changes nothing but a condition; every Job stays, resync with backoff."""
    previous = s.previous
    since = recorded_time(cond.since(previous.conditions, cond.AWS_ERROR))
    elapsed = int((s.now - since).total_seconds()) if since is not None else 0
    floor = FAULT_RESYNC_MIN if fault.temporary else FAULT_RESYNC_MAX // 5
    resync = min(max(elapsed, floor), FAULT_RESYNC_MAX)
    # Dated now even on a first sync: the backoff counts from it.
    aws = cond.true(cond.AWS_ERROR, fault.describe(), reason=fault.code, since=s.now)
    kept = [c for c in previous.conditions if c.type != cond.AWS_ERROR]
    wanted = [Wanted(c.type, c.status, c.reason, c.message) for c in kept] + [aws]
    fields: dict[str, Any] = {}
    extra = None
    if s.running:
        fields = running_fields(previous, s.running[-1])
    elif s.pending is not None:
        meta = s.world.meta
        extra = render_job(meta.name, meta.namespace, meta.uid, s.spec, s.pending)
    status = previous.model_copy(
        update={**fields, "conditions": cond.merge(previous.conditions, wanted, s.stamp)}
    )
    return Decision(sorted_children([as_desired(j.raw) for j in s.live], extra), status, resync)
