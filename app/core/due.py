"""When a build that is due may start: after its retry backoff, at the next tick of its window (pure)."""

from datetime import datetime

from app.core import conditions as cond
from app.core.decision import recorded_time
from app.core.history import last_failure_at
from app.core.situation import Situation
from app.core.states import State
from app.core.timing import retry_at, window_start
from app.model.tags import Image


def retry(s: Situation) -> tuple[datetime | None, datetime | None]:
    """When the last failure of this cycle happened, and when its retry may start (None: not known)."""
    failed_at = last_failure_at(s.previous, s.settled, s.world.meta.generation, s.replaces, s.outcome)
    return failed_at, retry_at(failed_at, s.failures) if failed_at is not None else None


def due_since(s: Situation) -> datetime:
    """The moment a build became due: base soaked, AMI expired, or the builder first needed an AMI."""
    if s.current is not None and s.base_check is not None:
        return s.base_check.soaked_at
    if s.newest_active is not None:
        return s.newest_active.expires_at(s.expires_in)
    ready = next((c for c in s.previous.conditions if c.type == cond.READY), None)
    needed = recorded_time(ready.lastTransitionTime) if ready and ready.status == "False" else None
    return needed or s.stamp


def window_opens(s: Situation) -> datetime:
    """The first window tick at or after the build became due.

    A builder that was just resumed from `suspend` became due now (a window missed while suspended is
    not made up), and a start time already recorded for this spec generation holds: otherwise the
    next sync would find that tick in the past and start at once.
    """
    due = due_since(s)
    if cond.since(s.previous.conditions, cond.SUSPENDED):
        due = max(due, s.now)
    start = window_start(s.spec.schedule, s.spec.timeZone, due)
    recorded = recorded_time(s.previous.nextBuildTime)
    same_plan = (
        s.previous.state == State.SCHEDULED and s.previous.observedGeneration == s.world.meta.generation
    )
    if recorded is not None and same_plan and recorded > start:
        return recorded
    return start


def next_build(s: Situation, current: Image) -> datetime | None:
    """While an AMI is current: when its successor is planned to start (expiry or soaked base, windowed)."""
    if s.spec.suspend:
        return None
    due = current.expires_at(s.expires_in)
    soaking = s.base_check.soaking_until if s.base_check is not None else None
    if soaking is not None:
        due = min(due, soaking)
    return window_start(s.spec.schedule, s.spec.timeZone, due)
