"""Release channels and their levers, the pure half (docs/release.md): which AMIs are revoked, and which build each
channel holds after this sync's promotions and pins.

A channel holds a build: its AMI(s) in spec.region and, in every other region, the copies with the same
`build-id`. When an AMI enters a channel the hook tags it `ami.refresh.ops/channel/<name>=<time>`; that tag is
the channel's memory across restarts. What a channel holds is the launchable AMI with the latest entry, so a
revoked AMI leaving a channel falls back, with no memory of its own, to the one the channel held before it.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from itertools import pairwise

from app.core import conditions as cond
from app.core.conditions import Wanted
from app.core.effects import Deprecate, Disable, Effect, TagImages
from app.core.outcome import newest, primary_order
from app.core.removal import State as RemovalState
from app.core.removal import state_of
from app.model.durations import parse_duration
from app.model.release import Channel, ChannelStatus, Release
from app.model.spec import PackerBuilderSpec
from app.model.tags import (
    ACTIVE,
    ACTIVE_SINCE,
    BASE_AMI,
    BUILD_ID,
    CREATE_TIMESTAMP,
    DEPRECATED,
    REJECTED,
    REVOKED,
    STATUS,
    VALIDATING,
    Image,
    format_timestamp,
    parse_timestamp,
)

# A condition names this many revoked AMIs, then counts the rest.
_SHOWN = 5
CHANNEL_TAG_PREFIX = "ami.refresh.ops/channel/"


def channel_tag(name: str) -> str:
    return CHANNEL_TAG_PREFIX + name


def _time(text: str) -> datetime | None:
    try:
        return parse_timestamp(text) if text else None
    except ValueError:
        return None


def build_of(image: Image) -> str:
    """The build an AMI belongs to: its copies share it (an AMI without the tag is a build of its own)."""
    return image.tags.get(BUILD_ID) or image.image_id


def launchable(image: Image) -> bool:
    """An AMI a channel may hold (or a parameter fall back to): neither revoked, rejected nor still being
    validated, and available or disabled by retention: wanted again, retention enables it before anything
    publishes it (app.core.removal). One disabled by someone else stays theirs."""
    usable = image.state == "available" or state_of(image) is RemovalState.disabled
    return usable and image.tags.get(STATUS) not in (REVOKED, REJECTED, VALIDATING)


def active_since(image: Image) -> datetime:
    return (
        _time(image.tags.get(ACTIVE_SINCE, ""))
        or _time(image.tags.get(CREATE_TIMESTAMP, ""))
        or image.created_at
    )


# -- revocation -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Revocation:
    views: dict[str, list[Image]]
    """Each region's AMIs with the revoked ones tagged so."""
    tagging: tuple[Effect, ...]
    """Tag the newly revoked AMIs `status=revoked`: before anything is published."""
    stopping: tuple[Effect, ...]
    """Set their EC2 deprecation time to now and disable them: after the parameters have moved off them."""
    revoked: frozenset[tuple[str, str]]
    """(region, AMI id) of every revoked AMI of the builder."""
    newly: tuple[str, ...] = ()
    """The AMIs in `home` this sync revokes (tags revoked), sorted: what the notifier announces."""


def revoke(views: Mapping[str, Sequence[Image]], release: Release, home: str, now: datetime) -> Revocation:
    """Every AMI in `release.revoke` (spec.region ids, their copies by build id) or built on a base in
    `release.revokeBase`, plus those tagged revoked before: tagged, deprecated now and disabled.

    An id dropped from the lists later stays revoked: "never used again" is not undone by an edit.
    """
    named = set(release.revoke)
    builds = {build_of(i) for i in views.get(home, ()) if i.image_id in named}
    bases = set(release.revokeBase)
    revoked: set[tuple[str, str]] = set()
    tagging: list[Effect] = []
    stopping: list[Effect] = []
    out: dict[str, list[Image]] = {}
    newly: tuple[str, ...] = ()
    deprecate_at = (now + timedelta(seconds=59)).replace(second=0, microsecond=0) + timedelta(minutes=1)
    for region, view in sorted(views.items()):
        new: list[str] = []
        out[region] = []
        for image in view:
            wanted = (
                image.tags.get(STATUS) == REVOKED
                or build_of(image) in builds
                or (region == home and image.image_id in named)
                or image.tags.get(BASE_AMI, "") in bases
            )
            if not wanted:
                out[region].append(image)
                continue
            revoked.add((region, image.image_id))
            if image.tags.get(STATUS) != REVOKED:
                new.append(image.image_id)
            if image.state == "available":
                if image.deprecation_time is None or image.deprecation_time > deprecate_at:
                    stopping.append(Deprecate(region, image.image_id, deprecate_at))
                reason = "revoked (spec.release)"
                stopping.append(Disable(region, image.image_id, now, reason, False, None))
            out[region].append(replace(image, tags={**image.tags, STATUS: REVOKED}))
        if new:
            tagging.append(TagImages(region, tuple(sorted(new)), ((STATUS, REVOKED),)))
        if region == home:
            newly = tuple(sorted(new))
    return Revocation(out, tuple(tagging), tuple(stopping), frozenset(revoked), newly)


# -- channels ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Held:
    """What one channel holds after this sync."""

    channel: Channel
    build: str
    image: Image
    """Its primary AMI in spec.region."""
    entered: datetime
    pinned: bool

    def status(self) -> ChannelStatus:
        return ChannelStatus(
            name=self.channel.name,
            imageID=self.image.image_id,
            enteredAt=format_timestamp(self.entered),
            pinned=self.pinned,
        )


@dataclass(frozen=True)
class Channels:
    held: tuple[Held, ...] = ()
    """Channels that hold an AMI, in spec order."""
    statuses: tuple[ChannelStatus, ...] = ()
    """status.channels: every channel, holding an AMI or not yet."""
    effects: tuple[Effect, ...] = ()
    """The entry tags of this sync's promotions and pins."""
    promoted: tuple[tuple[str, str], ...] = ()
    """(channel, AMI id) promoted in this sync."""
    invalid: tuple[str, ...] = ()
    """What in spec.release.pin could not be followed, each naming the field."""
    builds: dict[str, str] = field(default_factory=dict)
    """Channel name -> the build it holds."""
    next_promotion: datetime | None = None
    """When the next AMI may enter a channel, as far as this sync knows (the hook looks again then)."""
    soaking: frozenset[str] = frozenset()
    """Builds that entered a channel and may still enter the next one: newer than what that one holds, and not
    in the channel before it for `after` yet (even if that channel has moved on since)."""

    def kept(self, views: Mapping[str, Sequence[Image]]) -> set[tuple[str, str]]:
        """(region, AMI id) retention must leave alone: the held builds' and those still soaking, everywhere.
        Without the soaking ones, `keep` would remove a build before it had its chance to enter the next
        channel, and a rebuild cadence shorter than `after` would starve that channel."""
        builds = {*self.builds.values(), *self.soaking}
        return {(region, i.image_id) for region, view in views.items() for i in view if build_of(i) in builds}

    def images(self, views: Mapping[str, Sequence[Image]]) -> dict[str, list[tuple[str, Image]]]:
        """Channel name -> its AMIs in every region: the held build's launchable AMIs."""
        out: dict[str, list[tuple[str, Image]]] = {}
        for held in self.held:
            out[held.channel.name] = [
                (region, image)
                for region, view in sorted(views.items())
                for image in view
                if build_of(image) == held.build and launchable(image)
            ]
        return out


def promote(
    channels: Sequence[Channel], pins: Mapping[str, str], home_view: Sequence[Image], home: str, now: datetime
) -> Channels:
    """Each channel in order: its pin, else the newest AMI that soaked long enough in the stage before (for the
    first: active long enough), unless it holds a newer one already. A channel never moves back by promotion."""
    names = {c.name for c in channels}
    invalid = [
        f"release.pin.{name}: there is no channel {name!r} in spec.publish.channels"
        for name in sorted(pins)
        if name not in names
    ]
    usable = [i for i in home_view if launchable(i)]
    by_id = {i.image_id: i for i in home_view}
    entries = _entries(channels, usable)  # this sync's promotions are added as they happen
    held_all: list[Held] = []
    statuses: list[ChannelStatus] = []
    effects: list[Effect] = []
    promoted: list[tuple[str, str]] = []
    previous: Channel | None = None
    waits: list[datetime] = []
    for channel in channels:
        mine = entries[channel.name]
        primary = {b: _primary(usable, b) for b in mine}
        current = max(mine, key=lambda b: (mine[b], primary[b].created_at)) if mine else None
        target, pinned = current, False
        pin = pins.get(channel.name)
        pinned_image = by_id.get(pin) if pin is not None else None
        if pin is None:
            newer = [
                (at, i)
                for at, i in _eligible(channel, previous, usable, entries)
                if current is None or i.created_at > primary[current].created_at
            ]
            best = newest(i for at, i in newer if at <= now)
            if best is not None:
                target = build_of(best)
            waits += [at for at, i in newer if at > now and (best is None or i.created_at > best.created_at)]
        elif problem := _pin_problem(pinned_image, pin, home):
            invalid.append(f"release.pin.{channel.name}: {problem}; the channel stays where it is")
        elif pinned_image is not None:
            target, pinned = build_of(pinned_image), True
        if target is not None:
            image = _primary(usable, target)
            entered = mine.get(target)
            if target != current or entered is None:
                entered = now
                mine[target] = now
                ids = tuple(sorted(i.image_id for i in usable if build_of(i) == target))
                effects.append(TagImages(home, ids, ((channel_tag(channel.name), format_timestamp(now)),)))
                promoted.append((channel.name, image.image_id))
            held = Held(channel, target, image, entered, pinned)
            held_all.append(held)
            statuses.append(held.status())
        else:
            statuses.append(ChannelStatus(name=channel.name))
        previous = channel
    builds = {h.channel.name: h.build for h in held_all}
    return Channels(
        tuple(held_all),
        tuple(statuses),
        tuple(effects),
        tuple(promoted),
        tuple(invalid),
        builds,
        min(waits, default=None),
        _soaking(channels, entries, builds, usable, now),
    )


def _entries(channels: Sequence[Channel], usable: Sequence[Image]) -> dict[str, dict[str, datetime]]:
    """Channel -> build -> when it entered the channel, from the AMIs' entry tags (the latest, should the build's
    AMIs disagree)."""
    entries: dict[str, dict[str, datetime]] = {}
    for channel in channels:
        tag = channel_tag(channel.name)
        entries[channel.name] = {}
        for image in usable:
            at = _time(image.tags.get(tag, ""))
            if at is not None:
                known = entries[channel.name].get(build_of(image))
                entries[channel.name][build_of(image)] = at if known is None else max(known, at)
    return entries


def _soaking(
    channels: Sequence[Channel],
    entries: Mapping[str, Mapping[str, datetime]],
    holds: Mapping[str, str],
    usable: Sequence[Image],
    now: datetime,
) -> frozenset[str]:
    """The builds that may still enter a channel after the first: in the channel before for less than `after`
    yet, and newer than the build the channel holds (it never moves back by promotion)."""
    soaking: set[str] = set()
    for previous, channel in pairwise(channels):
        after = parse_duration(channel.after, allow_zero=True)
        held = holds.get(channel.name)
        floor = _primary(usable, held).created_at if held is not None else None
        soaking |= {
            build
            for build, entered in entries[previous.name].items()
            if now < entered + after and (floor is None or _primary(usable, build).created_at > floor)
        }
    return frozenset(soaking)


def _primary(images: Sequence[Image], build: str) -> Image:
    return min((i for i in images if build_of(i) == build), key=primary_order)


def _pin_problem(image: Image | None, pin: str, home: str) -> str:
    if image is None:
        return f"{pin} is not an AMI of this builder in {home} (or it is gone)"
    status = image.tags.get(STATUS)
    if status == REVOKED:
        return f"{pin} is revoked"
    if status == REJECTED:
        return f"{pin} failed its validation"
    if status == VALIDATING:
        return f"{pin} has not passed its validation yet"
    if not launchable(image):
        by = (
            " by someone else (the hook enables only what retention disabled)"
            if image.state == "disabled"
            else ""
        )
        return f"{pin} is {image.state}{by}"
    return ""


def _eligible(
    channel: Channel,
    previous: Channel | None,
    usable: Sequence[Image],
    entries: Mapping[str, Mapping[str, datetime]],
) -> list[tuple[datetime, Image]]:
    """The AMIs that may enter `channel`, each with the moment it may: the first channel's once they became
    active `after` ago (even if a newer one has replaced them since: a rebuild cadence shorter than `after`
    must not starve the first channel either), a later channel's once they have been in the channel before
    for `after`."""
    after = parse_duration(channel.after, allow_zero=True)
    if previous is None:
        return [(active_since(i) + after, i) for i in usable if i.tags.get(STATUS) in (ACTIVE, DEPRECATED)]
    before = entries[previous.name]
    return [(before[build_of(i)] + after, i) for i in usable if build_of(i) in before]


def left_empty(
    channels: Channels, revocation: Revocation, spec: PackerBuilderSpec, unpublished: bool
) -> list[str]:
    """The parameters a revocation left with nothing to fall back to (deleted), while revoked AMIs of the builder
    exist in spec.region: the revoked AMIs stay until this is empty (retention keeps them), so the Revoked
    condition that says why those parameters are gone stays with them.

    A channel counts only if a revoked AMI entered it: one still waiting for its first AMI (soaking in the
    channel before) lost nothing to a revocation.
    """
    if spec.publish is None or not any(region == spec.region for region, _ in revocation.revoked):
        return []
    empty = [spec.publish.ssmParameter] if unpublished else []
    held = {h.channel.name for h in channels.held}
    revoked = [i for i in revocation.views.get(spec.region, ()) if i.tags.get(STATUS) == REVOKED]
    entered = {key for image in revoked for key in image.tags}
    return empty + [
        c.ssmParameter for c in spec.publish.channels if c.name not in held and channel_tag(c.name) in entered
    ]


def release_conditions(
    channels: Channels, revocation: Revocation, spec: PackerBuilderSpec, unpublished: bool
) -> list[Wanted]:
    """ReleaseInvalid for what spec.release.pin could not follow; Revoked while revoked AMIs of the builder
    exist, saying which parameters had nothing to fall back to (they are deleted: a launch that fails beats a
    launch from a revoked AMI). `unpublished`: publish.ssmParameter names nothing in spec.region."""
    wanted = []
    if channels.invalid:
        wanted.append(cond.true(cond.RELEASE_INVALID, "; ".join(channels.invalid)))
    home = sorted(image_id for region, image_id in revocation.revoked if region == spec.region)
    if not home:
        return wanted
    shown = ", ".join(home[:_SHOWN]) + (f" and {len(home) - _SHOWN} more" if len(home) > _SHOWN else "")
    empty = left_empty(channels, revocation, spec, unpublished)
    if empty:
        message = (
            f"Revoked: {shown}. Nothing left to fall back to for {', '.join(empty)}: deleted (a launch that "
            "fails beats a launch from a revoked AMI) until a new AMI is published there"
        )
        wanted.append(cond.true(cond.REVOKED, message, reason="NothingToFallBackTo"))
    else:
        wanted.append(cond.true(cond.REVOKED, f"Revoked: {shown}; never used again"))
    return wanted
