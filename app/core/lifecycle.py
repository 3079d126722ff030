"""What becomes of a builder's AMIs once a build has produced some: the pure half of retention and
distribution (docs/retention.md).

From the latest build's outcome and the builder's AMIs in every region it computes which AMIs are current
(newest active one per region and architecture) and the effects that make EC2 agree: tag the new AMIs
active, retire the ones they replace, set EC2's deprecation time, publish the current ids, remove what is
beyond `retention.keep` (in stages: app.core.removal). The effects come out in the only safe order: nothing older is
retired, published over or removed before the new AMI is tagged, an AMI needed again is enabled before it is
published, and a current or published AMI is never disabled or removed.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
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
from app.core.outcome import Kind, Outcome, primary_order
from app.core.removal import needed, protections, removals, revivable
from app.model.durations import MAX_DURATION
from app.model.spec import ImageRef, PackerBuilderSpec
from app.model.tags import ACTIVE, DEPRECATED, DISABLED_AT, STATUS, Image, Owner

Current = tuple[str, Image]
"""A current AMI and its region."""


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

    def images(self) -> list[ImageRef]:
        return [ImageRef(region=r, architecture=i.architecture, imageID=i.image_id) for r, i in self.current]


def newest(images: Iterable[Image]) -> Image | None:
    """The newest of `images`; between AMIs of one build, x86_64 first (never the order EC2 listed them)."""
    pool = list(images)
    if not pool:
        return None
    latest = max(i.created_at for i in pool)
    return min((i for i in pool if i.created_at == latest), key=primary_order)


def deprecation_moment(image: Image, expires_in: timedelta) -> datetime:
    """An AMI's expiry as EC2 stores a deprecation time: rounded to the nearest minute."""
    moment = image.expires_at(expires_in)
    return (moment + timedelta(seconds=30)).replace(second=0, microsecond=0)


def parameter_names(parameter: str, architectures: Sequence[str]) -> dict[str, str]:
    """Where one region's current AMIs are published: architecture -> parameter name.

    The name itself always holds the region's primary AMI (x86_64 first), so it never goes stale when a
    second architecture appears; with several architectures each is also at `<name>/<architecture>`.
    Returned as (name, architecture) pairs so one AMI can sit under two names.
    """
    distinct = sorted(set(architectures), key=lambda arch: (arch != "x86_64", arch))
    if not distinct:
        return {}
    names = {parameter: distinct[0]}
    if len(distinct) > 1:
        names |= {architecture_parameter(parameter, arch): arch for arch in distinct}
    return names


# In the publish prefix (the chart's hook.publishParameterPrefix): each namespace its own subtree.
NAMESPACE_IN_PREFIX = "{namespace}"


def namespaced_prefix(prefix: str, namespace: str) -> str:
    """The parameter path a builder in `namespace` may publish under."""
    return prefix.replace(NAMESPACE_IN_PREFIX, namespace)


@dataclass(frozen=True)
class Published:
    """The parameters the builder may have published, as read this sync, and whose they are."""

    values: Mapping[tuple[str, str], str | None]
    """By (region, name): the value, None when the parameter does not exist."""
    owners: Mapping[tuple[str, str], str]
    """By (region, name), of existing parameters: `namespace/name` of the builder their tags record, or ""."""
    prefix: str
    """The only path the hook may write."""
    owner: str
    """This builder, `namespace/name`."""

    def mine(self, region: str, name: str, ours: set[str]) -> bool:
        """Whether the builder may write or delete an existing parameter: its tags record this builder, or it
        already holds one of the builder's AMIs (a parameter published before owners were recorded)."""
        recorded = self.owners.get((region, name), "")
        return recorded == self.owner or self.values.get((region, name)) in ours


def architecture_parameter(parameter: str, architecture: str) -> str:
    """Where one architecture's current AMI is published besides the name itself."""
    return f"{parameter.rstrip('/')}/{architecture}"


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
    current, claims = _current(views, regions, fresh, owner, now, expires_in)

    kept = needed(views, current, published.values)
    staged = removals(views, kept, spec.retention, owner.tags, now)
    effects: list[Effect] = [*claims, *tagging, *retiring, *staged.enables]
    effects += _deprecations(current, spec, now, expires_in)
    publications, refusals = _publications(current, views, published, spec, owner)
    effects += publications
    effects += protections(views, kept, spec.retention)
    effects += staged.steps
    failures = tuple(
        f"{a.image_id} in {a.region}: {a.reason}"
        for a in (outcome.artifacts if outcome is not None and outcome.kind is Kind.built else ())
        if a.kind is Kind.failed
    )
    return Plan(tuple(current), tuple(effects), failures, tuple(refusals), staged.waiting)


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


def _publications(
    current: Sequence[Current],
    views: Mapping[str, Sequence[Image]],
    published: Published,
    spec: PackerBuilderSpec,
    owner: Owner,
) -> tuple[list[Effect], list[Wanted]]:
    """What to write and delete so that every parameter of the builder names a current AMI, and what the
    hook may not write: outside its prefix, or a parameter another builder owns. A refusal is a condition,
    not an effect: it cannot succeed until the spec, the setting or the other builder changes.

    A per-architecture name, once written, follows its architecture's current AMI even when that is the only
    architecture left; when the architecture has no current AMI any more it is deleted, if it is the
    builder's to delete (a value someone else wrote there is left alone).
    """
    if spec.publish is None:
        return [], []
    name = spec.publish.ssmParameter
    effects: list[Effect] = []
    deletions: list[Effect] = []
    outside: list[str] = []
    owned: list[str] = []
    for region in sorted({r for r, _ in current} | {r for r, _ in published.values}):
        here = {image.architecture: image for r, image in current if r == region}
        ours = {image.image_id for image in views.get(region, ())}
        wanted = parameter_names(name, list(here))
        for arch in sorted({image.architecture for image in views.get(region, ())} | set(here)):
            parameter = architecture_parameter(name, arch)
            value = published.values.get((region, parameter))
            if value is None or parameter in wanted:
                continue
            if arch in here:
                wanted[parameter] = arch
            elif published.mine(region, parameter, ours):
                deletions.append(Unpublish(region, parameter, value))
        for parameter, arch in sorted(wanted.items()):
            image_id = here[arch].image_id
            value = published.values.get((region, parameter))
            recorded = published.owners.get((region, parameter), "")
            if not parameter.startswith(published.prefix):
                outside.append(
                    f"{image_id} to {parameter} in {region}: outside {published.prefix}, the only path the "
                    "hook may write (hook.publishParameterPrefix)"
                )
            elif value is not None and not published.mine(region, parameter, ours):
                holder = f"builder {recorded}" if recorded else "no builder (the hook did not create it)"
                owned.append(f"{image_id} to {parameter} in {region}: it belongs to {holder}")
            elif value != image_id or not recorded:
                record = () if recorded else tuple(sorted(owner.parameter_tags.items()))
                effects.append(Publish(region, parameter, image_id, record, create=value is None))
    refusals = []
    if owned:
        refusals.append(
            cond.true(cond.PUBLISH_FAILED, "Could not publish " + "; ".join(owned), "ParameterOwned")
        )
    elif outside:
        refusals.append(
            cond.true(cond.PUBLISH_FAILED, "Could not publish " + "; ".join(outside), "OutsidePrefix")
        )
    # Names are deleted after every write: the consumers of the others see the new AMIs first.
    return effects + deletions, refusals


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
