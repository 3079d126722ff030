"""The reconcile decision: (parent, observed Jobs and Pods, AMI facts, now) -> (Jobs, status, resync, effects).

Pure: no I/O, no clock, no randomness. Follows the Metacontroller contract in DESIGN.md section 3; the rule
numbers in comments refer to it. What the last build produced lives in app.outcome, which Jobs stay in
app.children, when things happen in app.timing and whether the base AMI moved on in app.freshness.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from app import conditions as cond
from app.base_image import BaseImageMissing
from app.build import ANNOTATION_COMMAND, BuildPlan, plan_build
from app.children import as_desired, kept_jobs, sorted_children
from app.conditions import Wanted
from app.durations import parse_duration
from app.effects import Deregister, Disable, Effect, Report, Unpublish
from app.facts import AmiFacts, AwsFault
from app.freshness import BaseCheck, check_base
from app.job import parse_termination_message, render_job
from app.lifecycle import Plan, Published, newest, plan, report_conditions
from app.observed import BuildReport, ObservedJob, Phase
from app.outcome import ARTIFACT_GRACE, Kind, Outcome, built_tags, latest_outcome
from app.spec import ImageRef, JobStatus, ObjectMeta, PackerBuilderSpec, PackerBuilderStatus, SpecError
from app.tags import BASE_AMI, BUILD_ID, Image, Owner, format_timestamp, parse_timestamp
from app.timing import ceil_seconds, retry_at, wake_after, window_start

RUNNING_RESYNC = 60
WAITING_RESYNC = 30
FAULT_RESYNC_MIN = 15
FAULT_RESYNC_MAX = 300
# Longer than Metacontroller's cache can take to show a Job it just created.
INFORMER_LAG = timedelta(minutes=2)

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
STATE_SCHEDULED = "Scheduled"
STATE_SUSPENDED = "Suspended"


@dataclass(frozen=True)
class World:
    """Everything observed in one hook request."""

    meta: ObjectMeta
    spec: PackerBuilderSpec | SpecError
    status: PackerBuilderStatus
    jobs: tuple[ObservedJob, ...] = ()
    reports: Mapping[str, BuildReport] = field(default_factory=dict)


@dataclass(frozen=True)
class _Due:
    """A build that is due, and what the latest finished build leaves to record and keep."""

    outcome: Outcome | None
    effects: tuple[Effect, ...]
    recorded: dict[str, Any]
    recorded_now: bool


@dataclass(frozen=True)
class News:
    """What an answer records, typed for the notifier, which must never parse it back out of status prose."""

    failure: str = ""
    """Why the build this answer records as failed failed."""
    expired_image_id: str = ""
    """The AMI whose expiry makes Ready False (reason AMIExpired)."""


@dataclass(frozen=True)
class Decision:
    children: tuple[dict[str, Any], ...]
    status: PackerBuilderStatus
    resync_seconds: int
    effects: tuple[Effect, ...] = ()
    finalized: bool | None = None
    ami_created_at: datetime | None = None
    """When the builder's current AMI in spec.region (expired or not) was built, for its age metric."""
    news: News = News()


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


def decide(world: World, facts: AmiFacts, now: datetime) -> Decision:
    """The sync hook's answer."""
    now = now.replace(microsecond=0)
    if isinstance(world.spec, SpecError):
        return _invalid_spec(world, world.spec, now)
    return _Reconcile(world, world.spec, facts, now).run()


def needs_facts_to_finalize(world: World) -> bool:
    """Whether the last build's AMIs may still need tagging: its success or one of its copies unrecorded."""
    finished = [j for j in world.jobs if not j.deleting and j.phase is not Phase.running]
    if not finished:
        return False
    latest = max(finished, key=lambda j: j.order)
    if latest.phase is not Phase.succeeded:
        return False
    status = world.status
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
        update={"state": STATE_FINALIZING, "observedGeneration": world.meta.generation}
    )
    wait = ""
    effects: tuple[Effect, ...] = ()
    if running:
        wait = f"Waiting for running build {', '.join(j.name for j in running)} to finish"
    elif not isinstance(world.spec, SpecError) and needs_facts_to_finalize(world):
        reconcile = _Reconcile(world, world.spec, facts, now)
        finished = reconcile.finished[-1]
        patient = now - (finished.finished_at or now) <= ARTIFACT_GRACE
        if facts.fault is not None and patient:
            wait = f"Waiting to record build {finished.name}: AWS {facts.fault.code}"
        elif facts.fault is None:
            outcome = reconcile.settle()
            # What is usable is tagged now; a copy still on its way is waited for like the AMI itself.
            # Nothing is removed (nor disabled, removal's first stage), no AMI and no parameter: that is for a
            # builder that goes on building, and what a deleted one leaves behind is the fleet's to launch
            # from (README, deletion).
            effects = tuple(
                e for e in reconcile.plan.effects if not isinstance(e, Disable | Deregister | Unpublish)
            )
            status = status.model_copy(update={"images": reconcile.images()})
            pending = [a.reason for a in outcome.artifacts if a.kind is Kind.waiting] if outcome else []
            if outcome is not None and outcome.kind is Kind.waiting:
                pending.insert(0, outcome.reason)
            if pending and patient:
                wait = f"Waiting to record build {finished.name}: {pending[0]}"
    if wait:
        status = status.model_copy(update={"lastRunMessage": wait})
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
    period old; one that does must be decided again on exact facts (app.image_index).
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
        self.owner = Owner.of(world.meta.namespace, world.meta.name, spec)
        self.previous = world.status
        self.live = [j for j in world.jobs if not j.deleting]  # rule 9
        self.running = sorted((j for j in self.live if j.phase is Phase.running), key=lambda j: j.order)
        self.finished = sorted((j for j in self.live if j.phase is not Phase.running), key=lambda j: j.order)
        self.expires_in = parse_duration(spec.timeOuts.expiresIn)
        self.timer = ceil_seconds(parse_duration(spec.timeOuts.controllerTimer))
        self.region = spec.region
        self.stamp = transition_time(world, now)
        self.base_check: BaseCheck | None = None
        self.plan = Plan((), ())
        self.outcome: Outcome | None = None
        self._failure = ""
        self._expired_id = ""

    # -- entry point -------------------------------------------------------------------------------------------

    def settle(self) -> Outcome | None:
        """The latest build's outcome and, from it, the plan for the builder's AMIs (self.plan)."""
        outcome = self.outcome = self._outcome()
        self.plan = plan(
            outcome,
            self._built_tags(outcome) if outcome is not None and outcome.kind is Kind.built else {},
            self.facts.regions(self.region),
            Published(
                self.facts.parameters,
                self.facts.parameter_owners,
                self.facts.publish_prefix,
                str(self.owner),
            ),
            self.spec,
            self.owner,
            self.now,
            self.expires_in,
        )
        return outcome

    def images(self) -> list[ImageRef]:
        """status.images: the plan's current AMIs, and, for a region AWS did not answer for, what the
        status said (so the region is looked at again, and its AMIs stay listed, until AWS answers)."""
        unknown = [ref for ref in self.previous.images if ref.region in self.facts.unavailable]
        return sorted([*self.plan.images(), *unknown], key=lambda r: (r.region, r.architecture, r.imageID))

    def run(self) -> Decision:
        if self.facts.fault is not None:
            return self._fault(self.facts.fault)
        decision = self._decide()
        newest_active = self._newest_active()
        return replace(
            decision,
            ami_created_at=newest_active.created_at if newest_active else None,
            news=News(self._failure, self._expired_id),
        )

    def _decide(self) -> Decision:
        outcome = self.settle()
        effects = self.plan.effects
        current = self._current_image()
        self.base_check = check_base(
            current,
            self.facts.base_image,
            self.spec.rebuild.onBaseImageChange,
            parse_duration(self.spec.rebuild.minBaseImageAge, allow_zero=True),
        )

        if self.running:
            return self._follow_running(outcome, effects)
        if outcome is not None and outcome.kind is Kind.waiting:
            return self._waiting(outcome, effects)
        if current is not None and not (
            self.base_check is not None and self.base_check.rebuild_due(self.now)
        ):
            return self._ready(current, outcome, effects)
        pending = self._pending_plan()
        if pending is not None and not self._deleted_while_suspended():
            return self._emit(pending, outcome, effects)
        return self._build(outcome, effects, current)

    # -- facts about builds ------------------------------------------------------------------------------------

    def _built_tags(self, outcome: Outcome) -> dict[str, str]:
        return built_tags(outcome, self.owner, self.now)

    def _outcome(self) -> Outcome | None:
        """The latest finished build's outcome, or None once its success is recorded and carried out.

        A recorded success is history: its AMIs may since have been retired or removed, and the spec (and
        so the management tags) may have changed; neither may be read as news about that build. It stays
        news while its AMI lacks the build's tags (tagging failed or was undone) or a copy is on its way.
        """
        regions = self.facts.regions(self.region)
        built = {region: images.built for region, images in regions.items()}
        outcome = latest_outcome(
            self.finished, self.world.reports, built, self.region, self.now, self.facts.unavailable
        )
        if outcome is None:
            return None
        job = outcome.job
        recorded = self.previous.jobName == job.name and self.previous.jobStatus == JobStatus.completed
        if recorded and outcome.kind is not Kind.built:
            # A recorded success stays a success: its AMI vanishing since (deregistered by hand) means the
            # builder has no usable AMI, which is the world's news, not this build's.
            return None
        untagged = any(a.image.tags.get(BUILD_ID) != job.build_id for a in outcome.usable if a.image)
        # A copy the status lists arrived and was recorded, even while AWS does not answer in its region.
        listed = {(ref.region, ref.imageID) for ref in self.previous.images}
        copying = any(
            a.kind is Kind.waiting and (a.region, a.image_id) not in listed for a in outcome.artifacts
        )
        # A copy that failed (or never appeared) after the build was recorded is news once.
        unreported = any(a.kind is Kind.failed for a in outcome.artifacts) and not cond.since(
            self.previous.conditions, cond.IMAGE_COPY_FAILED
        )
        return None if recorded and not (untagged or copying or unreported) else outcome

    def _current_image(self) -> Image | None:
        """The newest active, unexpired AMI of this builder in spec.region, counting those tagged now."""
        home = [i for region, i in self.plan.current if region == self.region]
        return newest(i for i in home if self.now <= i.expires_at(self.expires_in))

    def _newest_active(self) -> Image | None:
        return newest(i for region, i in self.plan.current if region == self.region)

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

    def _last_failure_at(self, replaces: str, outcome: Outcome | None) -> datetime | None:
        failed = [
            j
            for j in self.finished
            if (
                j.phase is Phase.failed
                or (outcome is not None and outcome.kind is Kind.failed and outcome.job is j)
            )
            and j.generation == self.meta.generation
            and j.replaces_ami == replaces
        ]
        if failed and failed[-1].finished_at is not None:
            return failed[-1].finished_at
        return self._recorded_time(cond.since(self.previous.conditions, cond.JOB_FAILED))

    @staticmethod
    def _recorded_time(text: str | None) -> datetime | None:
        try:
            return parse_timestamp(text) if text else None
        except ValueError:
            return None

    # -- when the next build is due ------------------------------------------------------------------------------

    def _due_since(self, current: Image | None) -> datetime:
        """The moment a build became due: base soaked, AMI expired, or the builder first needed an AMI."""
        if current is not None and self.base_check is not None:
            return self.base_check.soaked_at
        expired = self._newest_active()
        if expired is not None:
            return expired.expires_at(self.expires_in)
        ready = next((c for c in self.previous.conditions if c.type == cond.READY), None)
        needed = self._recorded_time(ready.lastTransitionTime) if ready and ready.status == "False" else None
        return needed or self.stamp

    def _window_start(self, current: Image | None) -> datetime:
        """The first window tick at or after the build became due.

        A builder that was just resumed from `suspend` became due now (a window missed while suspended is
        not made up), and a start time already recorded for this spec generation holds: otherwise the
        next sync would find that tick in the past and start at once.
        """
        due = self._due_since(current)
        if cond.since(self.previous.conditions, cond.SUSPENDED):
            due = max(due, self.now)
        start = window_start(self.spec.schedule, self.spec.timeZone, due)
        recorded = self._recorded_time(self.previous.nextBuildTime)
        same_plan = (
            self.previous.state == STATE_SCHEDULED
            and self.previous.observedGeneration == self.meta.generation
        )
        if recorded is not None and same_plan and recorded > start:
            return recorded
        return start

    def _next_build(self, current: Image) -> datetime | None:
        """While an AMI is current: when its successor is planned to start (expiry or soaked base, windowed)."""
        if self.spec.suspend:
            return None
        due = current.expires_at(self.expires_in)
        soaking = self.base_check.soaking_until if self.base_check is not None else None
        if soaking is not None:
            due = min(due, soaking)
        return window_start(self.spec.schedule, self.spec.timeZone, due)

    # -- status ------------------------------------------------------------------------------------------------

    def _ambient(self) -> list[Wanted]:
        """Conditions every answer carries, whatever the builder is doing."""
        wanted = []
        if self.base_check is not None:
            wanted.append(self.base_check.condition(self.now))
        if self.spec.suspend:
            wanted.append(
                cond.true(cond.SUSPENDED, "spec.suspend is true: no new build starts; a running one finishes")
            )
        if self.facts.stale:
            message = f"Answering from old facts: {self.facts.stale}; no build starts until AWS answers"
            wanted.append(cond.true(cond.IMAGE_INDEX_STALE, message))
        wanted += self.plan.refusals
        if self.facts.unavailable:
            out = sorted(self.facts.unavailable.items())
            message = "Nothing is tagged, published or removed until AWS answers in " + "; ".join(
                f"{region} ({reason})" for region, reason in out
            )
            wanted.append(cond.true(cond.REGION_UNAVAILABLE, message))
        if self.plan.waiting:
            wanted.append(cond.true(cond.RETENTION_PENDING, f"Waiting: {self.plan.waiting}"))
        if self.plan.copy_failures:
            message = "Reported AMIs not usable: " + "; ".join(self.plan.copy_failures)
            wanted.append(cond.true(cond.IMAGE_COPY_FAILED, message))
        elif self.outcome is None or self.outcome.kind is not Kind.built:
            # Nothing new was built: what the last build's copies came to still stands.
            wanted += [
                Wanted(c.type, c.status, c.reason, c.message)
                for c in self.previous.conditions
                if c.type == cond.IMAGE_COPY_FAILED
            ]
        return wanted

    def _status(self, wanted: list[Wanted], **fields: Any) -> PackerBuilderStatus:
        return self.previous.model_copy(
            update={
                "nextBuildTime": "",
                "images": self.images(),
                **fields,
                "conditions": cond.merge(self.previous.conditions, [*wanted, *self._ambient()], self.stamp),
                "observedGeneration": self.meta.generation,
            }
        )

    def _record(self, outcome: Outcome | None) -> tuple[dict[str, Any], bool]:
        """Status fields that record the latest finished build, and whether this response is the first to."""
        if outcome is None or outcome.kind is Kind.waiting:
            return {}, False
        job = outcome.job
        result = JobStatus.completed if outcome.kind is Kind.built else JobStatus.failed
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
        if outcome.kind is Kind.built:
            duration = ""
            if job.finished_at and (job.started_at or job.created_at):
                seconds = int(
                    (job.finished_at - (job.started_at or job.created_at or job.finished_at)).total_seconds()
                )
                duration = f" in {seconds // 60}m{seconds % 60:02d}s"
            source = job.base_ami or "the template source"
            commit = f" at commit {outcome.commit[:12]}" if outcome.commit else ""
            fields |= {
                "lastRunBuiltImageID": outcome.image_id,
                "lastRunCommit": outcome.commit,
                "failedJobCount": 0,
                "lastRunMessage": f"Built {outcome.image_id} from {source}{commit}{duration}",
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
            self._failure = outcome.reason
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

    def _children(
        self, outcome: Outcome | None, recorded_now: bool, extra: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], ...]:
        jobs = kept_jobs(
            self.live,
            outcome,
            recorded_now,
            self.spec.successfulJobsHistoryLimit,
            self.spec.failedJobsHistoryLimit,
        )
        return sorted_children([as_desired(j.raw) for j in jobs], extra)

    # -- the outcomes ------------------------------------------------------------------------------------------

    def _ready_condition(self) -> Wanted:
        """Ready follows the current AMI in spec.region, whatever else is going on (a build, a wait)."""
        current = self._current_image()
        if current is not None:
            until = format_timestamp(current.expires_at(self.expires_in))
            return cond.ready(
                True, "AMIAvailable", f"AMI {current.image_id} is active until {until}", current.created_at
            )
        expired = self._newest_active()
        if expired is not None:
            until = format_timestamp(expired.expires_at(self.expires_in))
            self._expired_id = expired.image_id
            return cond.ready(
                False,
                "AMIExpired",
                f"AMI {expired.image_id} expired at {until}",
                expired.expires_at(self.expires_in),
            )
        return cond.ready(False, "NoActiveAMI", "No active, unexpired AMI exists for this builder")

    def _follow_running(self, outcome: Outcome | None, effects: tuple[Effect, ...]) -> Decision:
        """Rule 1: a running Job is followed (even while suspended), its identity read from its own labels."""
        job = self.running[-1]
        recorded, recorded_now = self._record(outcome)
        status = self._status(
            [
                self._ready_condition(),
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

    def _waiting(self, outcome: Outcome, effects: tuple[Effect, ...]) -> Decision:
        status = self._status(
            [
                self._ready_condition(),
                cond.true(cond.WAITING_FOR_IMAGE, f"Job {outcome.job.name}: {outcome.reason}"),
            ],
            lastRunMessage=f"Build {outcome.job.name} finished; {outcome.reason}",
            state=STATE_WAITING,
        )
        return Decision(self._children(outcome, False), status, min(WAITING_RESYNC, self.timer), effects)

    def _ready(self, current: Image, outcome: Outcome | None, effects: tuple[Effect, ...]) -> Decision:
        recorded, recorded_now = self._record(outcome)
        fields: dict[str, Any] = {**recorded, "failedJobCount": 0}
        built_now = (
            outcome is not None and outcome.kind is Kind.built and outcome.image_id == current.image_id
        )
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
        next_build = self._next_build(current)
        if next_build is not None:
            fields["nextBuildTime"] = format_timestamp(next_build)
        status = self._status(
            [
                self._ready_condition(),
                cond.true(
                    cond.FLIGHT_CHECK_FAILED,
                    f"Latest Created AMI {current.image_id} has not expired and is active",
                ),
            ],
            **{**fields, "state": state},
        )
        soaking = self.base_check.soaking_until if self.base_check is not None else None
        resync = wake_after(self.now, self.timer, current.expires_at(self.expires_in), soaking, next_build)
        return Decision(self._children(outcome, recorded_now), status, resync, effects)

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

    def _deleted_while_suspended(self) -> bool:
        """A suspended builder's running Job is gone for longer than an informer lags: someone deleted it.

        Rule 8 asks again for a Job the request does not show, because a Job just created may not be in
        Metacontroller's cache yet. Minutes later it was deleted, and suspended means it is not restarted.
        """
        if not self.spec.suspend or self._pending_plan() is None:
            return False
        asked = self._recorded_time(self.previous.lastRun)
        return asked is not None and self.now - asked > INFORMER_LAG

    def _hold(self, due: _Due, wanted: list[Wanted], state: str, resync: int, **fields: Any) -> Decision:
        """No build now: say why in a condition and a state, keep the Jobs that must stay."""
        status = self._status(
            [self._ready_condition(), *wanted], **{**due.recorded, **fields, "state": state}
        )
        return Decision(self._children(due.outcome, due.recorded_now), status, resync, due.effects)

    def _build(self, outcome: Outcome | None, effects: tuple[Effect, ...], current: Image | None) -> Decision:
        """A build is due: start it unless suspended, out of retries, backing off, baseless or off-window."""
        recorded, recorded_now = self._record(outcome)
        # The AMI the next build replaces is the one this answer records, when it records a success.
        replaces = str(recorded.get("lastRunBuiltImageID", self.previous.lastRunBuiltImageID))
        count = max(self._failed_count(replaces), int(recorded.get("failedJobCount", 0)))
        limit = self.spec.maxNumberOfJobs
        due = _Due(outcome, effects, recorded, recorded_now)
        if self.spec.suspend:  # the Suspended condition itself is ambient
            stopped: dict[str, Any] = {}
            if self._deleted_while_suspended():
                message = f"Build {self.previous.jobName} was deleted while suspended; it does not restart"
                stopped = {"jobStatus": None, "lastRunMessage": message}
            return self._hold(due, [], STATE_SUSPENDED, self.timer, failedJobCount=count, **stopped)
        if count >= limit:
            message = f"{count} of {limit} builds failed; no more builds until the spec changes"
            wanted = cond.true(cond.MAX_FAILED_JOBS, message)
            return self._hold(due, [wanted], STATE_MAX_FAILED, self.timer, failedJobCount=count)
        if count > 0:
            # A retry belongs to the build that already started: the window does not hold it back.
            failed_at = self._last_failure_at(replaces, outcome)
            retry = retry_at(failed_at, count) if failed_at is not None else None
            if failed_at is not None and retry is not None and self.now < retry:
                message = f"{count} of {limit} builds failed; retrying at {format_timestamp(retry)}"
                wanted = cond.true(cond.JOB_FAILED, message, since=failed_at)
                return self._hold(
                    due,
                    [wanted],
                    STATE_JOB_FAILED,
                    ceil_seconds(retry - self.now),
                    failedJobCount=count,
                    nextBuildTime=format_timestamp(retry),
                )
        base = self.facts.base_image
        if isinstance(base, BaseImageMissing):
            wanted = cond.true(cond.BASE_IMAGE_NOT_FOUND, base.reason)
            return self._hold(due, [wanted], STATE_NO_BASE, self.timer)
        if count == 0 and self.spec.schedule:
            start = self._window_start(current)
            if self.now < start:
                message = (
                    f"Next build starts at {format_timestamp(start)} "
                    f"(schedule {self.spec.schedule!r} in {self.spec.timeZone})"
                )
                wanted = cond.true(cond.SCHEDULED, message, reason="WaitingForWindow")
                resync = wake_after(self.now, self.timer, start)
                return self._hold(
                    due, [wanted], STATE_SCHEDULED, resync, nextBuildTime=format_timestamp(start)
                )
        base_ami = base.image_id if isinstance(base, Image) else None
        plan = plan_build(self.meta.name, self.meta.uid, self.meta.generation, replaces, count, base_ami)
        return self._emit(plan, outcome, effects, recorded=recorded, recorded_now=recorded_now)

    def _emit(
        self,
        plan: BuildPlan,
        outcome: Outcome | None,
        effects: tuple[Effect, ...],
        recorded: dict[str, Any] | None = None,
        recorded_now: bool = False,
    ) -> Decision:
        job = render_job(self.meta.name, self.meta.namespace, self.meta.uid, self.spec, plan)
        command = str(job["metadata"]["annotations"].get(ANNOTATION_COMMAND, ""))
        same_job = self.previous.jobName == plan.job_name
        limit = self.spec.maxNumberOfJobs
        status = self._status(
            [
                self._ready_condition(),
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
                "state": STATE_JOB_CREATION,
            },
        )
        children = self._children(outcome, recorded_now, extra=job)
        return Decision(children, status, min(RUNNING_RESYNC, self.timer), effects)

    def _fault(self, fault: AwsFault) -> Decision:
        """AWS trouble changes nothing but a condition; every Job stays, resync with backoff."""
        since = self._recorded_time(cond.since(self.previous.conditions, cond.AWS_ERROR))
        elapsed = int((self.now - since).total_seconds()) if since is not None else 0
        floor = FAULT_RESYNC_MIN if fault.temporary else FAULT_RESYNC_MAX // 5
        resync = min(max(elapsed, floor), FAULT_RESYNC_MAX)
        # Dated now even on a first sync: the backoff counts from it.
        aws = cond.true(cond.AWS_ERROR, fault.describe(), reason=fault.code, since=self.now)
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
        return Decision(sorted_children([as_desired(j.raw) for j in self.live], extra), status, resync)
