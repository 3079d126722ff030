"""Everything the decision works out once from a request and its facts, before it picks a state (pure).

`Situation` holds the derived facts every state's function needs (the latest build's outcome, the plan for the
builder's AMIs, the current AMI, the base check, the failures of this cycle, a Job asked for and not seen yet),
each worked out once, on first use. `app.core.decide.classify` reads it to pick the state; the state's function in
`app.core.handlers` turns it into a Decision with the helpers of `app.core.answer`.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

from app.core import conditions as cond
from app.core.base_image import BaseImageMissing
from app.core.build import BuildPlan, plan_build
from app.core.conditions import Wanted
from app.core.decision import World, recorded_time, transition_time
from app.core.facts import AmiFacts
from app.core.freshness import BaseCheck, check_base
from app.core.gate import gated, stranded
from app.core.history import Record, failed_count, latest_news, record
from app.core.lifecycle import Plan, plan
from app.core.observed import ObservedJob, Phase
from app.core.outcome import Kind, Outcome, built_tags, newest
from app.core.publishing import Published
from app.core.timing import ceil_seconds
from app.model.durations import parse_duration
from app.model.spec import PackerBuilderSpec, PackerBuilderStatus
from app.model.tags import Image, Owner

# Longer than Metacontroller's cache can take to show a Job it just created.
INFORMER_LAG = timedelta(minutes=2)


@dataclass(frozen=True)
class Situation:
    world: World
    spec: PackerBuilderSpec
    facts: AmiFacts
    now: datetime

    @property
    def previous(self) -> PackerBuilderStatus:
        return self.world.status

    @cached_property
    def owner(self) -> Owner:
        return Owner.of(self.world.meta.namespace, self.world.meta.name, self.spec)

    @cached_property
    def live(self) -> list[ObservedJob]:
        return [j for j in self.world.jobs if not j.deleting]  # rule 9

    @cached_property
    def builds(self) -> list[ObservedJob]:
        return [j for j in self.live if not j.validates]

    @cached_property
    def validations(self) -> list[ObservedJob]:
        return [j for j in self.live if j.validates]

    @cached_property
    def running(self) -> list[ObservedJob]:
        """Running builds (a running validation is part of the latest build's outcome)."""
        return sorted((j for j in self.builds if j.phase is Phase.running), key=lambda j: j.order)

    @cached_property
    def finished(self) -> list[ObservedJob]:
        """Finished builds, oldest first."""
        return sorted((j for j in self.builds if j.phase is not Phase.running), key=lambda j: j.order)

    @cached_property
    def settled(self) -> list[ObservedJob]:
        """Finished builds and validations, oldest first: a failed validation is a failed attempt."""
        return sorted((j for j in self.live if j.phase is not Phase.running), key=lambda j: j.order)

    @cached_property
    def expires_in(self) -> timedelta:
        return parse_duration(self.spec.timeOuts.expiresIn)

    @cached_property
    def timer(self) -> int:
        """The controller timer: the longest the hook waits before looking again."""
        return ceil_seconds(parse_duration(self.spec.timeOuts.controllerTimer))

    @cached_property
    def stamp(self) -> datetime:
        return transition_time(self.world, self.now)

    @cached_property
    def outcome(self) -> Outcome | None:
        """The latest build's news; or, when there is none (or only a failure), the build an interrupted run
        left `validating`, which is validated again (app.core.gate) when spec.validation asks for it, like a
        build's own AMIs."""
        news = latest_news(self.world, self.finished, self.validations, self.facts, self.spec, self.now)
        if news is not None and (news.kind is not Kind.failed or news.rejected):
            return news
        home = self.spec.region
        active = newest(i for i in self.facts.managed if i.is_active)
        meta = self.world.meta
        left = stranded(
            self.facts.regions(home),
            home,
            active.created_at if active is not None else None,
            meta.name,
            meta.generation,
            self.previous.lastRunBuiltImageID,
        )
        if left is None:
            return news
        return gated(left, self.validations, self.world.verdicts, self.spec.validation is not None)

    @cached_property
    def plan(self) -> Plan:
        """The builder's AMIs in every region after this answer's effects, and those effects."""
        tagged = self.outcome is not None and self.outcome.status_tag is not None
        facts = self.facts
        return plan(
            self.outcome,
            built_tags(self.outcome, self.owner, self.now) if self.outcome is not None and tagged else {},
            facts.regions(self.spec.region),
            Published(facts.parameters, facts.parameter_owners, facts.publish_prefix, str(self.owner)),
            self.spec,
            self.owner,
            self.now,
            self.expires_in,
        )

    @cached_property
    def newest_active(self) -> Image | None:
        """The builder's current AMI in spec.region, expired or not."""
        return newest(i for region, i in self.plan.current if region == self.spec.region)

    @cached_property
    def current(self) -> Image | None:
        """The newest active, unexpired AMI of this builder in spec.region, counting those tagged now."""
        home = [i for region, i in self.plan.current if region == self.spec.region]
        return newest(i for i in home if self.now <= i.expires_at(self.expires_in))

    @cached_property
    def base_problem(self) -> Wanted | None:
        """Why no build can start from the base-image source now: it names no usable AMI, or a revoked one."""
        base = self.facts.base_image
        if isinstance(base, BaseImageMissing):
            return cond.true(cond.BASE_IMAGE_NOT_FOUND, base.reason)
        if isinstance(base, Image) and base.image_id in self.spec.release.revokeBase:
            message = (
                f"The base-image source names {base.image_id}, which spec.release.revokeBase revokes: no build "
                "starts from it"
            )
            return cond.true(cond.BASE_IMAGE_REVOKED, message)
        return None

    @cached_property
    def base_check(self) -> BaseCheck | None:
        rebuild = self.spec.rebuild
        age = parse_duration(rebuild.minBaseImageAge, allow_zero=True)
        base = self.facts.base_image if self.base_problem is None else None
        return check_base(self.current, base, rebuild.onBaseImageChange, age)

    @cached_property
    def rebuild_honoured(self) -> str:
        """status.lastRebuild: the spec.release.rebuild value a build was started for.

        A build Job of this spec generation was started with the spec's value in place, so it honoured the
        value: the status that recorded it may lag behind that Job (rule 8), and the value must not ask for a
        second build when the first one's AMI arrives.
        """
        token = self.spec.release.rebuild
        generation = self.world.meta.generation
        if token and any(not j.validates and j.generation == generation for j in self.world.jobs):
            return token
        return self.previous.lastRebuild

    @cached_property
    def rebuild_asked(self) -> bool:
        """A new spec.release.rebuild value: one build now, whatever the current AMI's age (docs/release.md)."""
        token = self.spec.release.rebuild
        return bool(token) and token != self.rebuild_honoured

    @cached_property
    def urgent(self) -> bool:
        """A build that no window holds back: asked for by spec.release.rebuild, or replacing a revoked AMI."""
        home = {image_id for region, image_id in self.plan.revoked if region == self.spec.region}
        return self.rebuild_asked or self.previous.lastRunBuiltImageID in home

    @cached_property
    def rebuild_due(self) -> bool:
        return self.base_check is not None and self.base_check.rebuild_due(self.now)

    @cached_property
    def record(self) -> Record:
        """The status fields that record the latest finished build."""
        meta = self.world.meta
        return record(self.outcome, self.previous, self.settled, meta.generation, meta.name)

    @cached_property
    def replaces(self) -> str:
        """The AMI the next build replaces: the one this answer records, when it records a success."""
        return str(self.record.fields.get("lastRunBuiltImageID", self.previous.lastRunBuiltImageID))

    @cached_property
    def failures(self) -> int:
        """Failed builds of this spec generation and cycle, this answer's record included."""
        counted = failed_count(self.previous, self.settled, self.world.meta.generation, self.replaces)
        return max(counted, int(self.record.fields.get("failedJobCount", 0)))

    @cached_property
    def pending(self) -> BuildPlan | None:
        """Rule 8: the status says we asked for a Job that the request does not show yet; the same one."""
        status = self.previous
        if status.jobStatus != "running" or not status.jobName:
            return None
        if any(j.name == status.jobName for j in self.world.jobs):
            return None
        meta = self.world.meta
        again = plan_build(
            meta.name,
            meta.uid,
            status.observedGeneration,
            status.lastRunBuiltImageID,
            status.failedJobCount,
            status.lastRunBaseImageID or None,
        )
        return again if again.job_name == status.jobName else None

    @cached_property
    def deleted_while_suspended(self) -> bool:
        """A suspended builder's asked-for Job is gone for longer than an informer lags: someone deleted it.

        Rule 8 asks again for a Job the request does not show, because a Job just created may not be in
        Metacontroller's cache yet. Minutes later it was deleted, and suspended means it is not restarted.
        """
        if not self.spec.suspend or self.pending is None:
            return False
        asked = recorded_time(self.previous.lastRun)
        return asked is not None and self.now - asked > INFORMER_LAG
