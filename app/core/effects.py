"""What a decision asks the shell to do in AWS, as data: the pure core computes effects, the shell carries
them out in order (app.aws.carry_out) and reports how each went.

Order matters and is kept by the core: the new AMI is tagged active before any older one is retired,
deprecated, unpublished or removed, an AMI needed again is enabled before it is published, and the current
AMI is never among the disabled or removed.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


@dataclass(frozen=True)
class TagImages:
    """Set these tags on these AMIs (idempotent). A failure stops every later effect."""

    region: str
    image_ids: tuple[str, ...]
    tags: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Claim:
    """Adopt legacy AMIs (no namespace tag) by tagging them with the builder's namespace, then read them back:
    of two builders claiming one AMI, the one whose tag is there is its owner. A lost claim stops every later
    effect (they were planned on the AMI being the builder's)."""

    region: str
    image_ids: tuple[str, ...]
    namespace: str


@dataclass(frozen=True)
class Deprecate:
    """Set EC2's native deprecation time of an AMI (EnableImageDeprecation)."""

    region: str
    image_id: str
    at: datetime


@dataclass(frozen=True)
class Publish:
    """Write the AMI id to an SSM parameter in the AMI's region (DataType aws:ec2:image)."""

    region: str
    parameter: str
    image_id: str
    owner: tuple[tuple[str, str], ...] = ()
    """Tags recording the builder as the parameter's owner, when it does not record one yet."""
    create: bool = False
    """The parameter does not exist: create it, and fail rather than overwrite one created meanwhile."""


@dataclass(frozen=True)
class Unpublish:
    """Delete a per-architecture parameter whose architecture no longer has a current AMI of the builder there:
    a parameter the hook wrote names a current AMI or does not exist."""

    region: str
    parameter: str
    image_id: str
    """The builder's AMI it still names (not current any more)."""


@dataclass(frozen=True)
class Enable:
    """Make an AMI retention disabled launchable again (EnableImage) and drop its disabled-at tag: it is
    needed again (current, published, within `keep`)."""

    region: str
    image_id: str
    reason: str


@dataclass(frozen=True)
class Protect:
    """Turn EC2's deregistration protection of an AMI on (a current or published one) or off."""

    region: str
    image_id: str
    enabled: bool


@dataclass(frozen=True)
class Disable:
    """The first stage of removal: tag the AMI disabled-at `at`, then disable it (DisableImage).

    With `already_disabled` (disabled by someone else) only the time is recorded: the clock starts now. The
    checks are those of Deregister, made just before.
    """

    region: str
    image_id: str
    at: datetime
    reason: str
    skip_in_use: bool
    unused_since: datetime | None = None
    """Kept when EC2 reports a launch after this moment (`retention.unusedFor`); None: not asked."""
    already_disabled: bool = False


@dataclass(frozen=True)
class Deregister:
    """Deregister an old AMI, then delete its EBS snapshots; with `skip_in_use`, not while it is used."""

    region: str
    image_id: str
    snapshot_ids: tuple[str, ...]
    reason: str
    skip_in_use: bool
    snapshot_tags: tuple[tuple[str, str], ...]
    """The management tags put on the snapshots first: the IAM policy deletes only tagged snapshots."""
    unused_since: datetime | None = None
    """Kept when EC2 reports a launch after this moment (`retention.unusedFor`); None: not asked."""


Step = Disable | Deregister
"""A removal step: checked (in use, last launched) just before it is taken."""

Effect = Claim | TagImages | Deprecate | Enable | Publish | Unpublish | Protect | Disable | Deregister


class Result(StrEnum):
    done = "done"
    skipped = "skipped"
    failed = "failed"


@dataclass(frozen=True)
class Report:
    """How one effect went; `detail` says why it was skipped or failed (an AWS error, the instance using it)."""

    effect: Effect
    result: Result
    detail: str = ""


def describe(effect: Effect) -> str:
    """One line for logs: what the effect does, to which AMI, where (ids and names only)."""
    if isinstance(effect, TagImages):
        status = dict(effect.tags).get("status", "")
        return f"tag {','.join(effect.image_ids)} {status or 'tags'} in {effect.region}"
    if isinstance(effect, Claim):
        return f"claim {','.join(effect.image_ids)} for namespace {effect.namespace} in {effect.region}"
    if isinstance(effect, Deprecate):
        return f"deprecate {effect.image_id} at {effect.at:%Y-%m-%dT%H:%M:%SZ} in {effect.region}"
    if isinstance(effect, Publish):
        return f"publish {effect.image_id} to {effect.parameter} in {effect.region}"
    if isinstance(effect, Unpublish):
        return f"unpublish {effect.parameter} ({effect.image_id}) in {effect.region}"
    if isinstance(effect, Enable):
        return f"enable {effect.image_id} in {effect.region}"
    if isinstance(effect, Protect):
        return f"protect {effect.image_id} in {effect.region}: {'on' if effect.enabled else 'off'}"
    if isinstance(effect, Disable):
        return f"disable {effect.image_id} in {effect.region}"
    return f"deregister {effect.image_id} in {effect.region}"
