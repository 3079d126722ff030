"""The notifier's part of a sync, after decide(): its readiness condition, and what this response announces.

Pure. decide() knows nothing about notifiers, so the `NotifierReady` condition is added here, with
app.core.conditions.merge keeping its lastTransitionTime stable across syncs (rule 3).
"""

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.core import conditions as cond
from app.core.conditions import Wanted
from app.core.decision import News, World, transition_time
from app.model.spec import ConditionStatus, PackerBuilderSpec, PackerBuilderStatus
from app.notify.channels import configured, resolve
from app.notify.events import Event, events
from app.notify.targets import Resolved, SecretData, Target, notifier_of

NOTIFIER_READY = "NotifierReady"


@dataclass(frozen=True)
class Announcement:
    status: PackerBuilderStatus
    events: tuple[Event, ...] = ()
    targets: tuple[Target, ...] = ()


def announce(
    world: World,
    raw_spec: Any,
    new: PackerBuilderStatus,
    news: News,
    secrets: SecretData,
    fallback_slack_token: str,
    now: datetime,
) -> Announcement:
    spec = world.spec if isinstance(world.spec, PackerBuilderSpec) else None
    # Computed with or without a notifier: the builds_total metric counts them too.
    found_events = tuple(events(world.meta, spec, world.status, new, world.jobs, news))
    if spec is not None:
        notifier, region = spec.notifier, spec.region
    else:
        found = notifier_of(raw_spec)
        if found is None:
            return Announcement(new, found_events)
        notifier, region = found
    if not configured(notifier):
        return Announcement(new, found_events)
    resolved = resolve(notifier, world.meta.namespace, region, secrets, fallback_slack_token)
    status = _with_condition(world.status, new, _condition(resolved), transition_time(world, now))
    return Announcement(status, found_events, resolved.targets)


def _condition(resolved: Resolved) -> Wanted:
    if resolved.problems:
        message = "; ".join(problem.message for problem in resolved.problems)
        return Wanted(NOTIFIER_READY, ConditionStatus.false, resolved.problems[0].reason, message)
    counts = Counter(target.channel_name for target in resolved.targets)
    described = ", ".join(f"{name} ({n})" if n > 1 else name for name, n in counts.items())
    return Wanted(NOTIFIER_READY, ConditionStatus.true, "Configured", f"Notifying {described or 'nobody'}")


def _with_condition(
    old: PackerBuilderStatus, new: PackerBuilderStatus, wanted: Wanted, now: datetime
) -> PackerBuilderStatus:
    """`new` plus the condition; its transition time carries over from `old` while its status holds."""
    conditions = cond.upsert(new.conditions, [wanted], old.conditions, now.replace(microsecond=0))
    return new.model_copy(update={"conditions": conditions})
