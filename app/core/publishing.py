"""Publishing, the pure half (docs/retention.md, "Publishing"): which SSM parameters name which AMIs, in every
region and for every architecture, who may write them, and what the hook may not write (a condition, not an
effect). `publish.ssmParameter` and each release channel (app.core.release) are published by the same rules.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from app.core import conditions as cond
from app.core.conditions import Wanted
from app.core.effects import Effect, Publish, Unpublish
from app.model.tags import Image, Owner

Current = tuple[str, Image]
"""An AMI to publish and its region."""


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


@dataclass(frozen=True)
class Publications:
    """What to write and delete for one parameter name (in every region), and what the hook may not write."""

    writes: tuple[Effect, ...] = ()
    deletions: tuple[Effect, ...] = ()
    owned: tuple[str, ...] = ()
    """Parameters another builder (or no builder) owns, each with the AMI it would get."""
    outside: tuple[str, ...] = ()
    """Parameters outside the prefix the hook may write."""


def publications(
    name: str,
    current: Sequence[Current],
    views: Mapping[str, Sequence[Image]],
    published: Published,
    owner: Owner,
    revoked: frozenset[str] = frozenset(),
) -> Publications:
    """What to write and delete so that `name` (and its per-architecture names) names `current` in every
    region, and what the hook may not write: outside its prefix, or a parameter another builder owns.

    A per-architecture name, once written, follows its architecture's AMI even when that is the only
    architecture left; when the architecture has none any more it is deleted, if it is the builder's to
    delete (a value someone else wrote there is left alone). The name itself is deleted only when it names a
    `revoked` AMI and there is nothing to put there instead: a launch that fails beats one from a revoked AMI.
    """
    writes: list[Effect] = []
    deletions: list[Effect] = []
    outside: list[str] = []
    owned: list[str] = []
    for region in sorted({r for r, _ in current} | {r for r, _ in published.values}):
        here = {image.architecture: image for r, image in current if r == region}
        ours = {image.image_id for image in views.get(region, ())}
        wanted = parameter_names(name, list(here))
        value = published.values.get((region, name))
        if not here and value in revoked and published.mine(region, name, ours):
            deletions.append(Unpublish(region, name, value))
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
                writes.append(Publish(region, parameter, image_id, record, create=value is None))
    return Publications(tuple(writes), tuple(deletions), tuple(owned), tuple(outside))


def in_order(all_names: Sequence[Publications]) -> tuple[list[Effect], list[Wanted]]:
    """Every name's writes, then every name's deletions (the consumers of the others see the new AMIs first),
    and the one PublishFailed condition for what the hook may not write."""
    effects = [e for p in all_names for e in p.writes] + [e for p in all_names for e in p.deletions]
    owned = [item for p in all_names for item in p.owned]
    outside = [item for p in all_names for item in p.outside]
    refusals = []
    if owned:
        refusals.append(
            cond.true(cond.PUBLISH_FAILED, "Could not publish " + "; ".join(owned), "ParameterOwned")
        )
    elif outside:
        refusals.append(
            cond.true(cond.PUBLISH_FAILED, "Could not publish " + "; ".join(outside), "OutsidePrefix")
        )
    return effects, refusals
