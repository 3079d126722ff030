"""The reconcile decision: (parent, observed Jobs and Pods, AMI facts, now) -> (Jobs, status, resync, effects).

Pure: no I/O, no clock, no randomness. Follows the Metacontroller contract in DESIGN.md section 3; the rule
numbers in comments refer to it.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from app import conditions as cond
from app.build import ANNOTATION_COMMAND, BuildPlan, plan_build
from app.conditions import Wanted
from app.durations import parse_duration
from app.facts import AmiFacts, AwsFault
from app.job import parse_termination_message, render_job
from app.observed import BuildReport, ObservedJob, Phase
from app.spec import JobStatus, ObjectMeta, PackerBuilderSpec, PackerBuilderStatus, SpecError
from app.tags import (
    ACTIVE,
    BASE_AMI,
    BUILD_ID,
    CREATE_TIMESTAMP,
    DEPRECATED,
    JOB_ID,
    STATUS,
    Image,
    format_timestamp,
    management_tags,
    parse_timestamp,
)

RUNNING_RESYNC = 60
WAITING_RESYNC = 30
FAULT_RESYNC_MIN = 15
FAULT_RESYNC_MAX = 300
RETRY_BACKOFF = timedelta(seconds=60)
RETRY_BACKOFF_CAP = timedelta(hours=1)
# How long a finished build may take to show its AMI (termination message, EC2 eventual consistency).
ARTIFACT_GRACE = timedelta(minutes=15)

STATE_JOB_CREATION = "JobCreation"
STATE_JOB_RUNNING = "JobRunning"
STATE_JOB_FAILED = "JobFailed"
STATE_WAITING = "WaitingForImage"
STATE_AMI_CREATED = "AMICreated"
STATE_AMI_ADOPTED = "AMIAdopted"
STATE_MAX_FAILED = "MaxFailedJobsReached"
STATE_NO_BASE = "BaseImageNotFound"
STATE_INVALID = "InvalidSpec"
STATE_FINALIZING = "Finalizing"


@dataclass(frozen=True)
class World:
    """Everything observed in one hook request."""

    meta: ObjectMeta
    spec: PackerBuilderSpec | SpecError
    status: PackerBuilderStatus
    jobs: tuple[ObservedJob, ...] = ()
    reports: Mapping[str, BuildReport] = field(default_factory=dict)


@dataclass(frozen=True)
class TagImages:
    """Effect: set these tags on these AMIs (idempotent)."""

    region: str
    image_ids: tuple[str, ...]
    tags: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Decision:
    children: tuple[dict[str, Any], ...]
    status: PackerBuilderStatus
    resync_seconds: int
    effects: tuple[TagImages, ...] = ()
    finalized: bool | None = None


@dataclass(frozen=True)
class _Outcome:
    """How the latest finished build ended, as far as EC2 and its Pod tell."""

    job: ObservedJob
    kind: str  # "built" | "waiting" | "failed"
    image: Image | None = None
    image_id: str = ""
    reason: str = ""


# Labels and annotations the API server adds to Jobs; desired objects must not carry them (rule 5).
_GENERATED_LABELS = ("controller-uid", "job-name")
_GENERATED_PREFIX = "batch.kubernetes.io/"


def _prune(value: Any) -> Any:
    """Drop nulls and empty strings/lists/maps (rule 6)."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        items = [_prune(v) for v in value]
        return [v for v in items if v not in (None, "", [], {})]
    return value


def _without_generated(mapping: Any) -> dict[str, Any]:
    if not isinstance(mapping, dict):
        return {}
    return {
        k: v
        for k, v in mapping.items()
        if k not in _GENERATED_LABELS and not str(k).startswith(_GENERATED_PREFIX)
    }


def as_desired(raw: Mapping[str, Any]) -> dict[str, Any]:
    """An observed Job restated as a desired child: what we asked for, none of what the API server added."""
    metadata = raw.get("metadata") or {}
    spec = dict(raw.get("spec") or {})
    spec.pop("selector", None)
    template = dict(spec.get("template") or {})
    template_meta = dict(template.get("metadata") or {})
    template_meta["labels"] = _without_generated(template_meta.get("labels"))
    template_meta.pop("creationTimestamp", None)
    template["metadata"] = template_meta
    spec["template"] = template
    desired = {
        "apiVersion": raw.get("apiVersion", "batch/v1"),
        "kind": raw.get("kind", "Job"),
        "metadata": {
            "name": metadata.get("name"),
            "namespace": metadata.get("namespace"),
            "labels": _without_generated(metadata.get("labels")),
            "annotations": _without_generated(metadata.get("annotations")),
        },
        "spec": spec,
    }
    pruned: dict[str, Any] = _prune(desired)
    return pruned


def transition_time(world: World, now: datetime) -> datetime:
    """`now`, except on a builder's very first sync, whose transitions date from the builder's creation.

    A first sync happens moments after creation; using that moment makes the answer to a replayed first
    request byte-identical (rule 3) instead of depending on which second it arrived in.
    """
    status = world.status
    if status.conditions or status.jobName or not world.meta.creationTimestamp:
        return now
    try:
        created = parse_timestamp(world.meta.creationTimestamp)
    except ValueError:
        return now
    return min(created, now)


def _ceil_seconds(delta: timedelta) -> int:
    return max(1, math.ceil(delta.total_seconds()))


def decide(world: World, facts: AmiFacts, now: datetime) -> Decision:
    """The sync hook's answer."""
    now = now.replace(microsecond=0)
    if isinstance(world.spec, SpecError):
        return _invalid_spec(world, world.spec, now)
    return _Reconcile(world, world.spec, facts, now).run()


def decide_finalize(world: World, now: datetime) -> Decision:
    """Rule 11: let running builds finish (Packer must clean up its EC2 resources), then release the parent."""
    running = [j for j in world.jobs if not j.deleting and j.phase is Phase.running]
    status = world.status.model_copy(
        update={"state": STATE_FINALIZING, "observedGeneration": world.meta.generation}
    )
    if running:
        names = ", ".join(j.name for j in running)
        status = status.model_copy(update={"lastRunMessage": f"Waiting for running build {names} to finish"})
    return Decision(
        children=tuple(as_desired(j.raw) for j in sorted(running, key=lambda j: j.name)),
        status=status,
        resync_seconds=WAITING_RESYNC if running else FAULT_RESYNC_MAX,
        finalized=not running,
    )


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
            "state": STATE_INVALID,
            "observedGeneration": world.meta.generation,
        }
    )
    return Decision(
        children=tuple(as_desired(j.raw) for j in sorted(live, key=lambda j: j.name)),
        status=status,
        resync_seconds=FAULT_RESYNC_MAX,
    )


class _Reconcile:
    def __init__(self, world: World, spec: PackerBuilderSpec, facts: AmiFacts, now: datetime) -> None:
        self.world = world
        self.spec = spec
        self.facts = facts
        self.now = now
        self.meta = world.meta
        self.previous = world.status
        self.live = [j for j in world.jobs if not j.deleting]  # rule 9
        self.running = sorted((j for j in self.live if j.phase is Phase.running), key=lambda j: j.order)
        self.finished = sorted((j for j in self.live if j.phase is not Phase.running), key=lambda j: j.order)
        self.expires_in = parse_duration(spec.timeOuts.expiresIn)
        self.timer = _ceil_seconds(parse_duration(spec.timeOuts.controllerTimer))
        self.region = spec.region
        self.stamp = transition_time(world, now)

    # -- entry point -------------------------------------------------------------------------------------------

    def run(self) -> Decision:
        if self.facts.fault is not None:
            return self._fault(self.facts.fault)
        outcome = self._latest_outcome()
        effects = self._effects(outcome)
        current = self._current_image(outcome)

        if self.running:
            return self._follow_running(current, outcome, effects)
        if outcome is not None and outcome.kind == "waiting":
            return self._waiting(outcome, effects)
        if current is not None:
            return self._ready(current, outcome, effects)
        pending = self._pending_plan()
        if pending is not None:
            return self._emit(pending, outcome, effects, state=STATE_JOB_CREATION)
        return self._build(outcome, effects)

    # -- facts about builds ------------------------------------------------------------------------------------

    def _latest_outcome(self) -> _Outcome | None:
        if not self.finished:
            return None
        job = self.finished[-1]
        if job.phase is Phase.failed:
            return _Outcome(job, "failed", reason=job.failure or "the Job failed")
        finished_at = job.finished_at or job.created_at or self.now
        overdue = self.now - finished_at > ARTIFACT_GRACE
        report = self.world.reports.get(job.build_id)
        if report is None:
            if overdue:
                return _Outcome(
                    job, "failed", reason="NoArtifact: the build pod's termination message was never seen"
                )
            return _Outcome(job, "waiting", reason="waiting for the build pod's termination message")
        image_id = dict(parse_termination_message(report.message)).get(self.region, "")
        if not image_id:
            shown = report.message[:200] or "empty"
            return _Outcome(
                job, "failed", reason=f"NoArtifact: the build reported no AMI in {self.region} ({shown})"
            )
        image = next((i for i in self.facts.built if i.image_id == image_id), None)
        if image is None:
            if overdue:
                return _Outcome(
                    job, "failed", image_id=image_id, reason=f"AMI {image_id} not found in {self.region}"
                )
            return _Outcome(
                job, "waiting", image_id=image_id, reason=f"waiting for AMI {image_id} to appear in EC2"
            )
        if image.state == "pending":
            return _Outcome(
                job, "waiting", image, image_id, f"waiting for AMI {image_id} to become available"
            )
        if image.state != "available":
            return _Outcome(job, "failed", image, image_id, f"AMI {image_id} is {image.state}")
        return _Outcome(job, "built", image, image_id)

    def _built_tags(self, outcome: _Outcome) -> dict[str, str]:
        job = outcome.job
        created = job.finished_at or job.created_at or self.now
        tags = {
            **management_tags(self.meta.name, self.spec),
            STATUS: ACTIVE,
            CREATE_TIMESTAMP: format_timestamp(created),
            BUILD_ID: job.build_id,
            JOB_ID: job.job_id,
        }
        if job.base_ami:
            tags[BASE_AMI] = job.base_ami
        return tags

    def _effects(self, outcome: _Outcome | None) -> tuple[TagImages, ...]:
        """Tag a fresh AMI as active and retire the builder's other active AMIs; nothing when already done."""
        if outcome is None or outcome.kind != "built" or outcome.image is None:
            return ()
        effects = []
        wanted = self._built_tags(outcome)
        if any(outcome.image.tags.get(k) != v for k, v in wanted.items()):
            effects.append(TagImages(self.region, (outcome.image.image_id,), tuple(sorted(wanted.items()))))
        stale = sorted(
            i.image_id
            for i in self.facts.managed
            if i.tags.get(STATUS) == ACTIVE and i.image_id != outcome.image.image_id
        )
        if stale:
            effects.append(TagImages(self.region, tuple(stale), ((STATUS, DEPRECATED),)))
        return tuple(effects)

    def _current_image(self, outcome: _Outcome | None) -> Image | None:
        """The newest active, unexpired AMI of this builder, counting one this sync is about to tag."""
        candidates = [i for i in self.facts.managed if i.is_active]
        if outcome is not None and outcome.kind == "built" and outcome.image is not None:
            fresh = Image(
                outcome.image.image_id,
                outcome.image.state,
                outcome.image.creation_date,
                outcome.image.name,
                {**outcome.image.tags, **self._built_tags(outcome)},
            )
            candidates = [i for i in candidates if i.image_id != fresh.image_id] + [fresh]
        valid = [i for i in candidates if self.now <= i.expires_at(self.expires_in)]
        return max(valid, key=lambda i: (i.created_at, i.image_id), default=None)

    def _expired_image(self) -> Image | None:
        active = [i for i in self.facts.managed if i.is_active]
        return max(active, key=lambda i: (i.created_at, i.image_id), default=None)

    def _failed_count(self, replaces: str) -> int:
        """Failures in this spec generation and cycle, from the status and from the failed Jobs' own labels."""
        generation = self.meta.generation
        count = self.previous.failedJobCount if self.previous.observedGeneration == generation else 0
        if self.previous.lastRunBuiltImageID != replaces:
            count = 0
        for job in self.finished:
            if job.phase is Phase.failed and job.generation == generation and job.replaces_ami == replaces:
                count = max(count, job.attempt + 1)
        return count

    def _last_failure_at(self, replaces: str, outcome: _Outcome | None) -> datetime | None:
        failed = [
            j
            for j in self.finished
            if (
                j.phase is Phase.failed
                or (outcome is not None and outcome.kind == "failed" and outcome.job is j)
            )
            and j.generation == self.meta.generation
            and j.replaces_ami == replaces
        ]
        if failed and failed[-1].finished_at is not None:
            return failed[-1].finished_at
        recorded = cond.since(self.previous.conditions, cond.JOB_FAILED)
        try:
            return parse_timestamp(recorded) if recorded else None
        except ValueError:
            return None

    # -- children ----------------------------------------------------------------------------------------------

    def _keep(self, job: ObservedJob, outcome: _Outcome | None, recorded_now: bool) -> bool:
        """Rule 7: a finished Job leaves `children` only once the status the request carries records it."""
        status = self.previous
        if job.phase is Phase.running:
            return True
        is_latest = outcome is not None and outcome.job.name == job.name
        if is_latest and recorded_now:
            return True  # recorded in this response; dropped on a later sync
        if is_latest and outcome is not None and outcome.kind in ("waiting",):
            return True
        if is_latest and outcome is not None and outcome.kind == "built":
            tagged = outcome.image is not None and outcome.image.tags.get(BUILD_ID) == job.build_id
            recorded = status.jobName == job.name and status.jobStatus == JobStatus.completed
            return not (tagged and recorded)
        if job.phase is Phase.failed or (is_latest and outcome is not None and outcome.kind == "failed"):
            # Failed builds stay for `kubectl logs` until the spec changes or a later build succeeds.
            superseded = status.observedGeneration > job.generation or (
                status.lastRunStatus == JobStatus.completed and status.jobName != job.name
            )
            return not superseded
        # A succeeded Job that is not the latest: its AMI was recorded when a later build was planned.
        return False

    def _children(
        self, outcome: _Outcome | None, recorded_now: bool, extra: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], ...]:
        kept = [as_desired(j.raw) for j in self.live if self._keep(j, outcome, recorded_now)]
        if extra is not None and all(c["metadata"]["name"] != extra["metadata"]["name"] for c in kept):
            kept.append(extra)
        return tuple(sorted(kept, key=lambda c: str(c["metadata"]["name"])))

    # -- status ------------------------------------------------------------------------------------------------

    def _status(self, wanted: list[Wanted], **fields: Any) -> PackerBuilderStatus:
        return self.previous.model_copy(
            update={
                **fields,
                "conditions": cond.merge(self.previous.conditions, wanted, self.stamp),
                "observedGeneration": self.meta.generation,
            }
        )

    def _record(self, outcome: _Outcome | None) -> tuple[dict[str, Any], bool]:
        """Status fields that record the latest finished build, and whether this response is the first to."""
        if outcome is None or outcome.kind == "waiting":
            return {}, False
        job = outcome.job
        result = JobStatus.completed if outcome.kind == "built" else JobStatus.failed
        already = self.previous.jobName == job.name and self.previous.jobStatus == result
        fields: dict[str, Any] = {
            "jobName": job.name,
            "jobID": job.job_id or self.previous.jobID,
            "buildID": job.build_id or self.previous.buildID,
            "jobStatus": result,
            "lastRunStatus": result,
            "lastRunBaseImageID": job.base_ami or self.previous.lastRunBaseImageID,
            "command": job.command or self.previous.command,
            "lastRun": self._started(job),
        }
        if outcome.kind == "built":
            duration = ""
            if job.finished_at and (job.started_at or job.created_at):
                seconds = int(
                    (job.finished_at - (job.started_at or job.created_at or job.finished_at)).total_seconds()
                )
                duration = f" in {seconds // 60}m{seconds % 60:02d}s"
            fields |= {
                "lastRunBuiltImageID": outcome.image_id,
                "failedJobCount": 0,
                "lastRunMessage": f"Built {outcome.image_id} from {job.base_ami or 'the template source'}{duration}",
            }
        else:
            # A failure of an older spec generation is reported but does not count: a new spec gets a new budget.
            count = 0
            if job.generation == self.meta.generation:
                count = max(self._failed_count(job.replaces_ami), job.attempt + 1)
            fields |= {
                "failedJobCount": count,
                "lastRunMessage": f"Build {job.name} failed: {outcome.reason}",
            }
        return fields, not already

    def _running_fields(self, job: ObservedJob) -> dict[str, Any]:
        """Status of a running build, read from the Job's own labels so a lost status cannot hide it."""
        return {
            "jobName": job.name,
            "jobID": job.job_id or self.previous.jobID,
            "buildID": job.build_id or self.previous.buildID,
            "jobStatus": JobStatus.running,
            "lastRunStatus": JobStatus.running,
            "lastRunBaseImageID": job.base_ami or self.previous.lastRunBaseImageID,
            "command": job.command or self.previous.command,
            "lastRun": self._started(job),
        }

    def _started(self, job: ObservedJob) -> str:
        if self.previous.jobName == job.name and self.previous.lastRun:
            return self.previous.lastRun
        moment = job.started_at or job.created_at
        return format_timestamp(moment) if moment else self.previous.lastRun

    # -- the outcomes ------------------------------------------------------------------------------------------

    def _ready_condition(self, current: Image | None) -> Wanted:
        if current is not None:
            until = format_timestamp(current.expires_at(self.expires_in))
            return cond.ready(
                True, "AMIAvailable", f"AMI {current.image_id} is active until {until}", current.created_at
            )
        expired = self._expired_image()
        if expired is not None:
            until = format_timestamp(expired.expires_at(self.expires_in))
            return cond.ready(
                False,
                "AMIExpired",
                f"AMI {expired.image_id} expired at {until}",
                expired.expires_at(self.expires_in),
            )
        return cond.ready(False, "NoActiveAMI", "No active, unexpired AMI exists for this builder")

    def _follow_running(
        self, current: Image | None, outcome: _Outcome | None, effects: tuple[TagImages, ...]
    ) -> Decision:
        """Rule 1 and issue item 4: a running Job is followed, its identity read from its own labels."""
        job = self.running[-1]
        recorded, recorded_now = self._record(outcome)
        status = self._status(
            [
                self._ready_condition(current),
                cond.true(
                    cond.JOB_RUNNING,
                    f"Job {job.name} is building an AMI",
                    since=job.started_at or job.created_at,
                ),
            ],
            **{
                **recorded,
                **self._running_fields(job),
                "lastRunMessage": f"Build {job.name} is running",
                "state": STATE_JOB_RUNNING,
            },
        )
        return Decision(
            self._children(outcome, recorded_now), status, min(RUNNING_RESYNC, self.timer), effects
        )

    def _waiting(self, outcome: _Outcome, effects: tuple[TagImages, ...]) -> Decision:
        status = self._status(
            [
                self._ready_condition(None),
                cond.true(cond.WAITING_FOR_IMAGE, f"Job {outcome.job.name}: {outcome.reason}"),
            ],
            lastRunMessage=f"Build {outcome.job.name} finished; {outcome.reason}",
            state=STATE_WAITING,
        )
        return Decision(self._children(outcome, False), status, min(WAITING_RESYNC, self.timer), effects)

    def _ready(self, current: Image, outcome: _Outcome | None, effects: tuple[TagImages, ...]) -> Decision:
        recorded, recorded_now = self._record(outcome)
        fields: dict[str, Any] = {**recorded, "failedJobCount": 0}
        built_now = outcome is not None and outcome.kind == "built" and outcome.image_id == current.image_id
        if built_now:
            state = STATE_AMI_CREATED
        elif current.image_id == self.previous.lastRunBuiltImageID:
            state = (
                self.previous.state
                if self.previous.state in (STATE_AMI_CREATED, STATE_AMI_ADOPTED)
                else STATE_AMI_CREATED
            )
        else:
            # Adoption: record it, never touch its tags (its expiry clock keeps running from its own timestamp).
            state = STATE_AMI_ADOPTED
            fields |= {
                "lastRunBuiltImageID": current.image_id,
                "lastRunMessage": f"Adopted existing AMI {current.image_id}",
            }
            if current.tags.get(BASE_AMI):
                fields["lastRunBaseImageID"] = current.tags[BASE_AMI]
        status = self._status(
            [
                self._ready_condition(current),
                cond.true(
                    cond.FLIGHT_CHECK_FAILED,
                    f"Latest Created AMI {current.image_id} has not expired and is active",
                ),
            ],
            **{**fields, "state": state},
        )
        until_expiry = _ceil_seconds(current.expires_at(self.expires_in) - self.now)
        return Decision(self._children(outcome, recorded_now), status, min(self.timer, until_expiry), effects)

    def _pending_plan(self) -> BuildPlan | None:
        """Rule 8: the status says we asked for a Job that the request does not show yet; ask for the same one."""
        status = self.previous
        if status.jobStatus != JobStatus.running or not status.jobName:
            return None
        if any(j.name == status.jobName for j in self.world.jobs):
            return None
        plan = plan_build(
            self.meta.name,
            self.meta.uid,
            status.observedGeneration,
            status.lastRunBuiltImageID,
            status.failedJobCount,
            status.lastRunBaseImageID or None,
        )
        return plan if plan.job_name == status.jobName else None

    def _build(self, outcome: _Outcome | None, effects: tuple[TagImages, ...]) -> Decision:
        recorded, recorded_now = self._record(outcome)
        replaces = self.previous.lastRunBuiltImageID
        count = max(self._failed_count(replaces), int(recorded.get("failedJobCount", 0)))
        limit = self.spec.maxNumberOfJobs
        ready = self._ready_condition(None)
        children = self._children(outcome, recorded_now)
        if count >= limit:
            status = self._status(
                [
                    ready,
                    cond.true(
                        cond.MAX_FAILED_JOBS,
                        f"{count} of {limit} builds failed; no more builds until the spec changes",
                    ),
                ],
                **{**recorded, "failedJobCount": count, "state": STATE_MAX_FAILED},
            )
            return Decision(children, status, self.timer, effects)
        if count > 0:
            failed_at = self._last_failure_at(replaces, outcome)
            delay = min(RETRY_BACKOFF * 2 ** (count - 1), RETRY_BACKOFF_CAP)
            if failed_at is not None and self.now < failed_at + delay:
                retry_at = failed_at + delay
                message = f"{count} of {limit} builds failed; retrying at {format_timestamp(retry_at)}"
                status = self._status(
                    [ready, cond.true(cond.JOB_FAILED, message, since=failed_at)],
                    **{**recorded, "failedJobCount": count, "state": STATE_JOB_FAILED},
                )
                return Decision(children, status, _ceil_seconds(retry_at - self.now), effects)
        base_ami: str | None = None
        if self.spec.amiFilters:
            if self.facts.base_image is None:
                filters = "; ".join(f"{f.name}={','.join(f.values)}" for f in self.spec.amiFilters)
                status = self._status(
                    [
                        ready,
                        cond.true(cond.BASE_IMAGE_NOT_FOUND, f"No AMI in {self.region} matches {filters}"),
                    ],
                    **{**recorded, "state": STATE_NO_BASE},
                )
                return Decision(children, status, self.timer, effects)
            base_ami = self.facts.base_image.image_id
        plan = plan_build(self.meta.name, self.meta.uid, self.meta.generation, replaces, count, base_ami)
        return self._emit(
            plan, outcome, effects, state=STATE_JOB_CREATION, recorded=recorded, recorded_now=recorded_now
        )

    def _emit(
        self,
        plan: BuildPlan,
        outcome: _Outcome | None,
        effects: tuple[TagImages, ...],
        state: str,
        recorded: dict[str, Any] | None = None,
        recorded_now: bool = False,
    ) -> Decision:
        job = render_job(self.meta.name, self.meta.namespace, self.meta.uid, self.spec, plan)
        command = str(job["metadata"]["annotations"].get(ANNOTATION_COMMAND, ""))
        same_job = self.previous.jobName == plan.job_name
        limit = self.spec.maxNumberOfJobs
        status = self._status(
            [
                self._ready_condition(None),
                cond.true(cond.JOB_RUNNING, f"Job {plan.job_name} is building an AMI"),
            ],
            **{
                **(recorded or {}),
                "jobName": plan.job_name,
                "jobID": plan.job_id,
                "buildID": plan.build_id,
                "jobStatus": JobStatus.running,
                "lastRunStatus": JobStatus.running,
                "lastRunBaseImageID": plan.base_ami or "",
                "command": command,
                "failedJobCount": plan.attempt,
                "lastRun": self.previous.lastRun
                if same_job and self.previous.lastRun
                else format_timestamp(self.stamp),
                "lastRunMessage": f"Build {plan.job_name} started (attempt {plan.attempt + 1} of {limit})",
                "state": state,
            },
        )
        children = self._children(outcome, recorded_now, extra=job)
        return Decision(children, status, min(RUNNING_RESYNC, self.timer), effects)

    def _fault(self, fault: AwsFault) -> Decision:
        """Issue item 11: EC2 trouble changes nothing but a condition; every Job stays, resync with backoff."""
        since = cond.since(self.previous.conditions, cond.AWS_ERROR)
        elapsed = 0
        if since:
            try:
                elapsed = int((self.now - parse_timestamp(since)).total_seconds())
            except ValueError:
                elapsed = 0
        floor = FAULT_RESYNC_MIN if fault.temporary else FAULT_RESYNC_MAX // 5
        resync = min(max(elapsed, floor), FAULT_RESYNC_MAX)
        kind = "temporary" if fault.temporary else "permanent"
        # Dated now even on a first sync: the backoff counts from it.
        aws = cond.true(
            cond.AWS_ERROR, f"EC2 {fault.code} ({kind}): {fault.message}", reason=fault.code, since=self.now
        )
        kept = [c for c in self.previous.conditions if c.type != cond.AWS_ERROR]
        wanted = [Wanted(c.type, c.status, c.reason, c.message) for c in kept] + [aws]
        fields: dict[str, Any] = {}
        extra = None
        if self.running:
            fields = self._running_fields(self.running[-1])
        else:
            pending = self._pending_plan()
            if pending is not None:
                extra = render_job(self.meta.name, self.meta.namespace, self.meta.uid, self.spec, pending)
        status = self.previous.model_copy(
            update={**fields, "conditions": cond.merge(self.previous.conditions, wanted, self.stamp)}
        )
        kept_jobs = [as_desired(j.raw) for j in self.live]
        if extra is not None and all(c["metadata"]["name"] != extra["metadata"]["name"] for c in kept_jobs):
            kept_jobs.append(extra)
        return Decision(tuple(sorted(kept_jobs, key=lambda c: str(c["metadata"]["name"]))), status, resync)
