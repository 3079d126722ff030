"""What becomes of a builder's AMIs once a build has produced some: the pure half of retention and
distribution (docs/retention.md, docs/release.md).

From the latest build's outcome and the builder's AMIs in every region it computes which AMIs are current
(newest active one per region and architecture) and the effects that make EC2 agree: tag the new AMIs
active, retire the ones they replace, revoke what spec.release revokes, set EC2's deprecation time, promote
the release channels (app.core.release), publish the current ids and the channels' (app.core.publishing),
remove what is beyond `retention.keep` (in stages: app.core.removal). The effects come out in the only safe order: nothing older is
retired, published over or removed before the new AMI is tagged, an AMI needed again is enabled before it is
published, and a current or published AMI is never disabled or removed.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from app.core import conditions as cond
from app.core.conditions import Wanted
from app.core.effects import (
    Claim,
    Deprecate,
    Deregister,
    Disable,
    Effect,
    Enable,
    Protect,
    Publish,
    Report,
    Result,
    TagImages,
    Unpublish,
)
from app.core.facts import RegionImages
from app.core.outcome import Kind, Outcome, newest
from app.core.publishing import Current, Published, architecture_parameter, in_order, publications
from app.core.release import Channels, launchable, left_empty, promote, release_conditions, revoke
from app.core.removal import needed, protections, removals, revivable
from app.model.durations import MAX_DURATION
from app.model.spec import ImageRef, PackerBuilderSpec
from app.model.tags import ACTIVE, DEPRECATED, DISABLED_AT, STATUS, Image, Owner


@dataclass(frozen=True)
class Plan:
    current: tuple[Current, ...]
    """The newest active AMI per region and architecture, after the effects; sorted."""
    effects: tuple[Effect, ...]
    copy_failures: tuple[str, ...] = ()
    """Reported AMIs that never appeared or failed, each naming its region."""
    refusals: tuple[Wanted, ...] = ()
    """Publications the hook may not make (outside its prefix, another's parameter): conditions, not effects."""
    waiting: str = ""
    """AMIs whose next removal step waits, and until when (app.core.removal); "" when none does."""
    channels: Channels = field(default_factory=Channels)
    """What each release channel holds after this answer's promotions (app.core.release)."""
    revoked: frozenset[tuple[str, str]] = frozenset()
    """(region, AMI id) of the builder's revoked AMIs."""
    newly_revoked: tuple[str, ...] = ()
    """The AMIs in spec.region this answer revokes (tags revoked)."""

    def images(self) -> list[ImageRef]:
        return [ImageRef(region=r, architecture=i.architecture, imageID=i.image_id) for r, i in self.current]


def deprecation_moment(image: Image, expires_in: timedelta) -> datetime:
    """An AMI's expiry as EC2 stores a deprecation time: rounded to the nearest minute."""
    moment = image.expires_at(expires_in)
    return (moment + timedelta(seconds=30)).replace(second=0, microsecond=0)


def plan(
    outcome: Outcome | None,
    wanted_tags: Mapping[str, str],
    regions: Mapping[str, RegionImages],
    published: Published,
    spec: PackerBuilderSpec,
    owner: Owner,
    now: datetime,
    expires_in: timedelta,
) -> Plan:
    """The current AMIs and the effects due in every region; `wanted_tags` are the new AMIs' tags."""
    fresh: dict[str, list[Image]] = {}
    for artifact in outcome.usable if outcome is not None else ():
        if artifact.image is not None:
            fresh.setdefault(artifact.region, []).append(artifact.image)
    views, tagging, retiring = _tagged(regions, fresh, wanted_tags)
    revocation = revoke(views, spec.release, spec.region, now)
    views = revocation.views
    current, claims = _current(views, regions, fresh, owner, now, expires_in)
    channels = promote(
        spec.publish.channels if spec.publish is not None else (),
        spec.release.pin,
        views.get(spec.region, []),
        spec.region,
        now,
    )
    held = channels.images(views)
    main = [*current, *_fallbacks(current, views, published, spec, revocation.revoked)]
    unpublished = not any(region == spec.region for region, _ in main)
    # publish.ssmParameter's fallbacks are wanted like current AMIs: retention enables one it had disabled.
    kept = needed(views, main, published.values)
    kept |= channels.kept(views)
    kept |= {(spec.region, image_id) for image_id in spec.release.pin.values()}
    # Revoked AMIs are disabled already; removed, they would take the Revoked condition that says why a
    # parameter is deleted with them, while it still is.
    if left_empty(channels, revocation, spec, unpublished):
        kept |= revocation.revoked
    staged = removals(views, kept, spec.retention, owner.tags, now)
    effects: list[Effect] = [*claims, *tagging, *retiring, *revocation.tagging, *staged.enables]
    effects += _deprecations(current, spec, now, expires_in)
    effects += channels.effects
    writes, refusals = _publish(main, held, views, published, spec, owner, revocation.revoked)
    # Off the parameters first, then disabled: nothing published names an AMI that cannot launch.
    effects += [*writes, *revocation.stopping]
    effects += protections(views, kept, spec.retention)
    effects += staged.steps
    failures = tuple(
        f"{a.image_id} in {a.region}: {a.reason}"
        for a in (outcome.artifacts if outcome is not None and outcome.kind is Kind.built else ())
        if a.kind is Kind.failed
    )
    refusals += release_conditions(channels, revocation, spec, unpublished)
    return Plan(
        tuple(current),
        tuple(effects),
        failures,
        tuple(refusals),
        staged.waiting,
        channels,
        revocation.revoked,
        revocation.newly,
    )


def _publish(
    main: Sequence[Current],
    held: Mapping[str, list[Current]],
    views: Mapping[str, Sequence[Image]],
    published: Published,
    spec: PackerBuilderSpec,
    owner: Owner,
    revoked: frozenset[tuple[str, str]],
) -> tuple[list[Effect], list[Wanted]]:
    """publish.ssmParameter names `main` (the current AMIs, and where the current one was revoked the one before
    it that is not); each channel's parameter names the build the channel holds."""
    if spec.publish is None:
        return [], []
    ids = frozenset(image_id for _, image_id in revoked)
    names = [publications(spec.publish.ssmParameter, main, views, published, owner, ids)]
    names += [
        publications(c.ssmParameter, held.get(c.name, []), views, published, owner, ids)
        for c in spec.publish.channels
    ]
    return in_order(names)


def _fallbacks(
    current: Sequence[Current],
    views: Mapping[str, Sequence[Image]],
    published: Published,
    spec: PackerBuilderSpec,
    revoked_images: frozenset[tuple[str, str]],
) -> list[Current]:
    """Where publish.ssmParameter names a revoked AMI and its architecture has no current one: the newest AMI
    that was current before it (retired, launchable), if any."""
    if spec.publish is None:
        return []
    name = spec.publish.ssmParameter
    revoked = {image_id for _, image_id in revoked_images}
    out: list[Current] = []
    for region, view in sorted(views.items()):
        have = {image.architecture for r, image in current if r == region}
        names = {name, *(architecture_parameter(name, i.architecture) for i in view)}
        if not any(published.values.get((region, n)) in revoked for n in names):
            continue
        by_arch: dict[str, list[Image]] = {}
        for image in view:
            if image.tags.get(STATUS) == DEPRECATED and launchable(image) and image.architecture not in have:
                by_arch.setdefault(image.architecture, []).append(image)
        out += [(region, chosen) for arch in sorted(by_arch) if (chosen := newest(by_arch[arch])) is not None]
    return out


def _tagged(
    regions: Mapping[str, RegionImages], fresh: Mapping[str, list[Image]], wanted_tags: Mapping[str, str]
) -> tuple[dict[str, list[Image]], list[Effect], list[Effect]]:
    """Each region's own AMIs as they are once the new ones are tagged active and those they replace retired,
    and the tagging and retiring effects that make them so."""
    tagging: list[Effect] = []
    retiring: list[Effect] = []
    views: dict[str, list[Image]] = {}
    for region in sorted(set(regions) | set(fresh)):
        managed = {i.image_id: i for i in regions.get(region, RegionImages()).managed}
        new = sorted(fresh.get(region, []), key=lambda i: i.image_id)
        untagged = [i.image_id for i in new if any(i.tags.get(k) != v for k, v in wanted_tags.items())]
        if untagged:
            tagging.append(TagImages(region, tuple(untagged), tuple(sorted(wanted_tags.items()))))
        for image in new:
            managed[image.image_id] = replace(image, tags={**image.tags, **wanted_tags})
        # Only an active AMI replaces others: one validating or rejected leaves the current ones as they are.
        if new and wanted_tags.get(STATUS) == ACTIVE:
            new_ids = {i.image_id for i in new}
            stale = sorted(i for i, image in managed.items() if image.is_active and i not in new_ids)
            if stale:
                retiring.append(TagImages(region, tuple(stale), ((STATUS, DEPRECATED),)))
            for image_id in stale:
                managed[image_id] = replace(
                    managed[image_id], tags={**managed[image_id].tags, STATUS: DEPRECATED}
                )
        views[region] = sorted(managed.values(), key=lambda i: i.image_id)
    return views, tagging, retiring


def _current(
    views: dict[str, list[Image]],
    regions: Mapping[str, RegionImages],
    fresh: Mapping[str, list[Image]],
    owner: Owner,
    now: datetime,
    expires_in: timedelta,
) -> tuple[list[Current], list[Effect]]:
    """The newest active AMI per region and architecture, and the claims of the legacy ones among them
    (claimed AMIs join `views`, as the builder's own)."""
    current: list[Current] = []
    claims: list[Effect] = []
    for region, view in list(views.items()):
        # A legacy AMI the seed's rule would adopt (active, unexpired) competes where nothing was just built.
        adoptable = [] if region in fresh else _adoptable(regions[region].legacy, now, expires_in)
        claimed: list[Image] = []
        by_arch: dict[str, list[Image]] = {}
        for image in (*view, *adoptable):
            # An active AMI retention disabled is current again once enabled (app.core.removal enables it).
            if image.is_active or revivable(image):
                by_arch.setdefault(image.architecture, []).append(image)
        for arch in sorted(by_arch):
            chosen = newest(by_arch[arch])
            if chosen is not None and chosen in adoptable:
                chosen = replace(chosen, tags={**chosen.tags, **owner.tags})
                claimed.append(chosen)
            if chosen is not None:
                current.append((region, _enabled(chosen) if revivable(chosen) else chosen))
        if claimed:
            claims.append(Claim(region, tuple(sorted(i.image_id for i in claimed)), owner.namespace))
            views[region] = sorted([*view, *claimed], key=lambda i: i.image_id)
    return current, claims


def _adoptable(legacy: Sequence[Image], now: datetime, expires_in: timedelta) -> list[Image]:
    return [i for i in legacy if i.is_active and now <= i.expires_at(expires_in)]


def _enabled(image: Image) -> Image:
    """The AMI as it is once enabled again."""
    return replace(image, state="available", tags={k: v for k, v in image.tags.items() if k != DISABLED_AT})


def _deprecations(
    current: Sequence[Current], spec: PackerBuilderSpec, now: datetime, expires_in: timedelta
) -> list[Effect]:
    if not spec.retention.deprecate:
        return []
    effects: list[Effect] = []
    for region, image in current:
        at = deprecation_moment(image, expires_in)
        # EC2 refuses a deprecation time in the past (an expired AMI is replaced soon anyway) and one more
        # than ten years ahead (an AMI whose create-timestamp pins it in the far future).
        if now < at <= now + MAX_DURATION and image.deprecation_time != at:
            effects.append(Deprecate(region, image.image_id, at))
    return effects


def report_conditions(reports: Sequence[Report]) -> list[Wanted]:
    """Conditions for the effects that did not happen; each clears once a later sync carries it out."""
    wanted = []
    groups: dict[str, list[str]] = {}
    for report in reports:
        effect = report.effect
        if report.result is Result.skipped and isinstance(effect, Disable | Deregister):
            groups.setdefault(cond.RETENTION_SKIPPED, []).append(
                f"{effect.image_id} in {effect.region} ({report.detail})"
            )
        elif report.result is Result.failed:
            kind = {
                Deprecate: cond.DEPRECATION_NOT_SET,
                Publish: cond.PUBLISH_FAILED,
                Unpublish: cond.PUBLISH_FAILED,
                Enable: cond.RETENTION_FAILED,
                Disable: cond.RETENTION_FAILED,
                Deregister: cond.RETENTION_FAILED,
                Protect: cond.PROTECTION_NOT_SET,
            }.get(type(effect))
            if kind is not None:
                groups.setdefault(kind, []).append(f"{_subject(effect)}: {report.detail}")
    leads = {
        cond.RETENTION_SKIPPED: "Kept because in use",
        cond.DEPRECATION_NOT_SET: "Could not set EC2's deprecation time of",
        cond.PUBLISH_FAILED: "Could not publish",
        cond.RETENTION_FAILED: "Could not",
        cond.PROTECTION_NOT_SET: "Could not turn deregistration protection",
    }
    reasons = {cond.RETENTION_SKIPPED: "InUse"}
    for kind, items in sorted(groups.items()):
        wanted.append(cond.true(kind, f"{leads[kind]} " + "; ".join(items), reason=reasons.get(kind)))
    return wanted


def _subject(effect: Effect) -> str:
    if isinstance(effect, Publish):
        return f"{effect.image_id} to {effect.parameter} in {effect.region}"
    if isinstance(effect, Unpublish):
        return f"{effect.parameter} in {effect.region} (deleting it: it names {effect.image_id}, no longer current)"
    if isinstance(effect, TagImages | Claim):
        return f"{', '.join(effect.image_ids)} in {effect.region}"
    if isinstance(effect, Protect):
        return f"{'on' if effect.enabled else 'off'} for {effect.image_id} in {effect.region}"
    if isinstance(effect, Enable):
        return f"enable {effect.image_id} in {effect.region} again ({effect.reason})"
    if isinstance(effect, Disable) and effect.already_disabled:
        return f"record when {effect.image_id} in {effect.region} was disabled"
    if isinstance(effect, Disable):
        return f"disable {effect.image_id} in {effect.region}"
    if isinstance(effect, Deregister):
        return f"remove {effect.image_id} in {effect.region}"
    return f"{effect.image_id} in {effect.region}"
