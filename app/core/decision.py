"""What one hook request observed (World) and what the decision answers (Decision), as plain data."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.core.effects import Effect
from app.core.observed import BuildReport, ObservedJob
from app.model.spec import ObjectMeta, PackerBuilderSpec, PackerBuilderStatus, SpecError
from app.model.tags import parse_timestamp


@dataclass(frozen=True)
class World:
    """Everything observed in one hook request."""

    meta: ObjectMeta
    spec: PackerBuilderSpec | SpecError
    status: PackerBuilderStatus
    jobs: tuple[ObservedJob, ...] = ()
    reports: Mapping[str, BuildReport] = field(default_factory=dict)
    verdicts: Mapping[str, BuildReport] = field(default_factory=dict)
    """What each validation container said when it ended, by build id."""
    hook_image: str = ""
    """The hook's own image (HOOK_IMAGE): the boot check runs in it."""


@dataclass(frozen=True)
class News:
    """What an answer records, typed for the notifier, which must never parse it back out of status prose."""

    failure: str = ""
    """Why the build this answer records as failed failed."""
    expired_image_id: str = ""
    """The AMI whose expiry makes Ready False (reason AMIExpired)."""
    revoked: tuple[str, ...] = ()
    """The AMIs in spec.region this answer revokes (tags `revoked`), sorted: the sync after sees them revoked."""


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


def recorded_time(text: str | None) -> datetime | None:
    """A time the status recorded, or None when it recorded none (or something unreadable)."""
    try:
        return parse_timestamp(text) if text else None
    except ValueError:
        return None
