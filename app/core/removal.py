"""Removal in stages, the pure half (docs/retention.md, section 3): for each of a builder's AMIs, what state it
is in, what happens to it next, and when.

`NEXT` is the whole policy: a row per state, a column for "wanted" (current, published, within `keep`) and
one for each way of being beyond `keep` (with and without `disableFor`). Besides it there is only waiting: a
step beyond `keep` is due once the AMI has been disabled for `disableFor` and, when EC2 reports a launch,
`unusedFor` after that launch; an AMI whose deregistration protection someone else turned on waits for them.
app.aws.carry_out takes the due steps after its last-moment checks (in use, last launched) and decides nothing.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from app.core.effects import Deregister, Disable, Enable, Protect, Step
from app.model.durations import parse_duration
from app.model.spec import Retention
from app.model.tags import (
    ACTIVE,
    CREATE_TIMESTAMP,
    DISABLED_AT,
    REJECTED,
    REVOKED,
    STATUS,
    VALIDATING,
    Image,
    format_timestamp,
    parse_timestamp,
)

# Each step is a few AWS calls (a removal three or more); Metacontroller gives a hook 10 s.
MAX_REMOVALS_PER_SYNC = 5
# A status message names this many waiting AMIs, then counts the rest.
_SHOWN_WAITING = 10


class State(StrEnum):
    """What EC2 and the AMI's tags say, as far as removal is concerned."""

    available = "available"
    disabled = "disabled"
    """Disabled by retention: it carries a readable disabled-at tag, the start of its clock."""
    disabled_elsewhere = "disabled elsewhere"
    """Disabled, without a disabled-at tag the hook can read: by a person, or the tag was removed."""
    unusable = "unusable"
    """Failed, invalid, in error: nothing launches from it, so there is nothing to disable."""


class Action(StrEnum):
    keep = "keep"
    enable = "enable"
    disable = "disable"
    record = "record"
    """Tag disabled-at now: an AMI disabled elsewhere starts its clock."""
    deregister = "deregister"


# What happens next to an AMI of the builder, by its state: when it is wanted (current, published, within
# `keep`, or `keep` unset), and when it is beyond `keep` with and without `disableFor`.
NEXT: Mapping[State, tuple[Action, Action, Action]] = {
    #                            wanted          beyond keep, disableFor    beyond keep, no disableFor
    State.available: (Action.keep, Action.disable, Action.deregister),
    State.disabled: (Action.enable, Action.deregister, Action.deregister),
    State.disabled_elsewhere: (Action.keep, Action.record, Action.deregister),
    State.unusable: (Action.keep, Action.deregister, Action.deregister),
}


def disabled_at(image: Image) -> datetime | None:
    stamp = image.tags.get(DISABLED_AT, "")
    try:
        return parse_timestamp(stamp) if stamp else None
    except ValueError:
        return None


def state_of(image: Image) -> State:
    if image.state == "available":
        return State.available
    if image.state == "disabled":
        return State.disabled if disabled_at(image) is not None else State.disabled_elsewhere
    return State.unusable


def revivable(image: Image) -> bool:
    """Tagged active but disabled by retention: it may be current again, once enabled."""
    return image.tags.get(STATUS) == ACTIVE and state_of(image) is State.disabled


@dataclass(frozen=True)
class Removals:
    enables: tuple[Enable, ...]
    """AMIs needed again, enabled before anything is published (they share the cap with `steps`)."""
    steps: tuple[Step, ...]
    """The removal steps due, oldest AMI first; with `enables`, at most MAX_REMOVALS_PER_SYNC."""
    waiting: str
    """What waits and until when, for the RetentionPending condition; "" when nothing does."""


@dataclass(frozen=True)
class _Next:
    region: str
    image: Image
    action: Action
    stamp: datetime | None
    """The AMI's create-timestamp, by which removals go oldest first; None when unreadable (never removed)."""
    why: str
    due: datetime | None = None
    """Not before this moment (None: now)."""
    held: bool = False
    """Waits for someone else: deregistration protection the hook did not turn on and may not turn off."""
    first: bool = False
    """Revoked or rejected: removed before any AMI that is merely old."""

    def is_due(self, now: datetime) -> bool:
        return self.action is not Action.keep and not self.held and (self.due is None or self.due <= now)


def needed(
    views: Mapping[str, Sequence[Image]],
    current: Sequence[tuple[str, Image]],
    parameters: Mapping[tuple[str, str], str | None],
) -> set[tuple[str, str]]:
    """The builder's AMIs that must stay launchable and are never removed: current ones and published ones."""
    ours = {(region, image.image_id) for region, view in views.items() for image in view}
    named = {(region, value) for (region, _), value in parameters.items() if value}
    return {(r, i.image_id) for r, i in current} | (named & ours)


def removals(
    views: Mapping[str, Sequence[Image]],
    kept: set[tuple[str, str]],
    retention: Retention,
    management: Mapping[str, str],
    now: datetime,
) -> Removals:
    """Every AMI of the builder through `NEXT`: what is due now (within the cap) and what waits.

    `kept` are the AMIs that are wanted whatever their rank (`needed`).
    """
    nexts = [n for region, view in sorted(views.items()) for n in _walk(region, view, kept, retention)]
    due = [n for n in nexts if n.is_due(now)]
    enables = sorted(
        (n for n in due if n.action is Action.enable), key=lambda n: (n.region, n.image.image_id)
    )
    forward = sorted(
        (n for n in due if n.action is not Action.enable),
        key=lambda n: (not n.first, n.stamp or now, n.region, n.image.image_id),
    )
    taken = [*enables, *forward][:MAX_REMOVALS_PER_SYNC]
    return Removals(
        tuple(Enable(n.region, n.image.image_id, n.why) for n in taken if n.action is Action.enable),
        tuple(_step(n, retention, management, now) for n in taken if n.action is not Action.enable),
        _waiting([n for n in nexts if n.action is not Action.keep and not n.is_due(now)]),
    )


def _walk(
    region: str, view: Sequence[Image], kept: set[tuple[str, str]], retention: Retention
) -> list[_Next]:
    """What happens next to each AMI of one region, ranked per architecture by create-timestamp."""
    keep = retention.keep
    by_arch: dict[str, list[tuple[datetime, Image]]] = {}
    nexts = []
    for image in view:
        if image.state == "pending":
            continue  # not an AMI yet: neither counted nor touched
        stamp = _create_timestamp(image)
        if stamp is None:
            # Never counted nor removed; but what retention disabled it still undoes.
            nexts.append(_wanted(region, image, None, "its create-timestamp is unreadable"))
        else:
            by_arch.setdefault(image.architecture, []).append((stamp, image))
    for _, dated in sorted(by_arch.items()):
        # Neither an AMI awaiting its validation nor a rejected or revoked one counts towards `keep`: the first
        # is kept until its verdict, the others go first whenever retention is on.
        for stamp, image in dated:
            verdict = image.tags.get(STATUS)
            if verdict == REVOKED:
                # Never enabled again. Disabled by the revocation itself, then removed first when retention is
                # on, once nothing published names it any more.
                if keep is not None and image.state != "available" and (region, image.image_id) not in kept:
                    nexts.append(_beyond(region, image, stamp, retention, "it is revoked"))
            elif verdict == VALIDATING:
                nexts.append(_wanted(region, image, stamp, "it awaits its validation"))
            elif verdict == REJECTED and keep is None:
                nexts.append(_wanted(region, image, stamp, "retention.keep is unset"))
            elif verdict == REJECTED:
                nexts.append(_beyond(region, image, stamp, retention, "it failed its validation"))
        counted = [d for d in dated if d[1].tags.get(STATUS) not in (VALIDATING, REJECTED, REVOKED)]
        ranked = sorted(counted, key=lambda d: (d[0], d[1].image_id), reverse=True)
        for rank, (stamp, image) in enumerate(ranked):
            if (region, image.image_id) in kept:
                nexts.append(_wanted(region, image, stamp, "it is current or published"))
            elif keep is None:
                nexts.append(_wanted(region, image, stamp, "retention.keep is unset"))
            elif rank < keep:
                nexts.append(_wanted(region, image, stamp, f"it is among the newest {keep}"))
            else:
                nexts.append(_beyond(region, image, stamp, retention))
    return nexts


def _wanted(region: str, image: Image, stamp: datetime | None, why: str) -> _Next:
    return _Next(region, image, NEXT[state_of(image)][0], stamp, f"needed again: {why}")


def _beyond(region: str, image: Image, stamp: datetime, retention: Retention, why: str = "") -> _Next:
    """The step due for an AMI beyond `keep`, or one that goes first (rejected, revoked: `why` says which), and
    from when."""
    state = state_of(image)
    action = NEXT[state][1 if retention.disableFor is not None else 2]
    first = bool(why)
    why = why or (
        f"older than the newest {retention.keep} {image.architecture or 'unknown-architecture'} AMIs "
        f"(created {format_timestamp(stamp)})"
    )
    due = None
    at = disabled_at(image)
    if retention.disableFor is not None and state is State.disabled and at is not None:
        due = at + parse_duration(retention.disableFor)
        why += f", disabled since {format_timestamp(at)}"
    if retention.unusedFor is not None and image.last_launched is not None and action is not Action.record:
        launched = image.last_launched + parse_duration(retention.unusedFor)
        due = launched if due is None else max(due, launched)
    # Protection someone else turned on is theirs to turn off; with `protect` the hook turns it off first.
    held = image.protected and not retention.protect
    return _Next(region, image, action, stamp, why, due, held, first=first)


def _step(taken: _Next, retention: Retention, management: Mapping[str, str], now: datetime) -> Step:
    image, region = taken.image, taken.region
    unused_since = now - parse_duration(retention.unusedFor) if retention.unusedFor is not None else None
    if taken.action is Action.deregister:
        return Deregister(
            region,
            image.image_id,
            image.snapshot_ids,
            taken.why,
            retention.skipInUse,
            tuple(sorted(management.items())),
            unused_since,
        )
    if taken.action is Action.record:
        # Nothing changes for anyone launching: no checks, only the clock starts.
        return Disable(region, image.image_id, now, taken.why, False, None, already_disabled=True)
    return Disable(region, image.image_id, now, taken.why, retention.skipInUse, unused_since)


def _waiting(waiting: Sequence[_Next]) -> str:
    """One line per waiting AMI: what it is, what happens to it next and when; the first few, then a count."""
    items = []
    for n in sorted(waiting, key=lambda n: (n.region, n.image.image_id)):
        subject = f"{n.image.image_id} in {n.region}"
        if n.held or n.due is None:  # a step neither due nor dated is held
            items.append(
                f"{subject} has deregistration protection, turned on outside the hook: kept while it is on"
            )
            continue
        facts = []
        at = disabled_at(n.image)
        if state_of(n.image) is State.disabled and at is not None:
            facts.append(f"disabled since {format_timestamp(at)}")
        if n.image.last_launched is not None:
            facts.append(f"last launched {format_timestamp(n.image.last_launched)}")
        verb = "disabled" if n.action is Action.disable else "removed"
        items.append(f"{subject} ({', '.join(facts)}): {verb} after {format_timestamp(n.due)}")
    shown = "; ".join(items[:_SHOWN_WAITING])
    rest = len(items) - _SHOWN_WAITING
    return shown + (f"; and {rest} more" if rest > 0 else "")


def protections(
    views: Mapping[str, Sequence[Image]], keep_needed: set[tuple[str, str]], retention: Retention
) -> list[Protect]:
    """With `retention.protect`, exactly the current and published AMIs have deregistration protection."""
    if not retention.protect:
        return []
    return [
        Protect(region, image.image_id, want)
        for region, view in sorted(views.items())
        for image in sorted(view, key=lambda i: i.image_id)
        if image.protected != (want := (region, image.image_id) in keep_needed)
    ]


def _create_timestamp(image: Image) -> datetime | None:
    stamp = image.tags.get(CREATE_TIMESTAMP, "")
    try:
        return parse_timestamp(stamp) if stamp else None
    except ValueError:
        return None
