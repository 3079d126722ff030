"""EC2 off the request path: one shared, background-refreshed index of every managed AMI per region.

One `DescribeImages` (owner self, tag `brought-to-you-by=opsy-the-ami-operator`) per region fills the index
of every builder's AMIs; a builder's view is a lookup by its management tags. Base-image lookups and
published parameters are kept the same way. A background loop (`refresh_due`) reloads them before they go
stale; a request never does, except the very first for a region or source (cold start, one call shared by
all waiters). The hook's own writes update the index at once.

`IndexedImages` is the `ImageSource` a sync reads from. Its `exact()` view reads the builder's AMIs and
parameters directly from AWS (and writes what it read back into the index): a sync that is about to act
(start a build, tag, remove, publish, change its status) decides again on that view, so an index up to a
period old can never start a duplicate build or undo another replica's work. docs/performance.md says which
facts may be how old for which decision.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from app.aws.refreshed import NotInMemory, Refreshed
from app.core.base_image import BaseLookup, BaseSource
from app.model.tags import (
    BROUGHT_TO_YOU_BY,
    MANAGEMENT_KEYS,
    OPERATOR_NAME,
    Image,
    format_timestamp,
    parameter_owner,
)

if TYPE_CHECKING:
    from app.aws.ec2 import Ec2, Instruments

log = logging.getLogger(__name__)

# AMIs read by id (a finished build's) kept to add them to the index when the hook tags them.
_RECENTLY_READ = 1024

OwnerKey = tuple[str, ...]


def _owner(tags: Mapping[str, str]) -> OwnerKey:
    return tuple(tags.get(key, "") for key in MANAGEMENT_KEYS)


@dataclass(frozen=True)
class RegionIndex:
    """Every managed AMI of one region, by owner (the five management tag values)."""

    by_owner: Mapping[OwnerKey, tuple[Image, ...]]

    @classmethod
    def of(cls, images: Sequence[Image]) -> RegionIndex:
        grouped: dict[OwnerKey, list[Image]] = {}
        for image in images:
            grouped.setdefault(_owner(image.tags), []).append(image)
        return cls({owner: _newest_first(group) for owner, group in grouped.items()})

    def owned(self, tags: Mapping[str, str]) -> list[Image]:
        """The AMIs carrying exactly these management tags (and any further `tags` given), newest first."""
        return [
            image
            for image in self.by_owner.get(_owner(tags), ())
            if all(image.tags.get(k) == v for k, v in tags.items())
        ]

    def replaced(self, tags: Mapping[str, str], images: Sequence[Image]) -> RegionIndex:
        """This index with one owner's AMIs as an exact read just found them."""
        owner = _owner(tags)
        return RegionIndex({**self.by_owner, owner: _newest_first(images)})

    def changed(self, image_ids: Sequence[str], change: Callable[[Image], Image | None]) -> RegionIndex:
        """This index with `change` applied to the given AMIs (None removes one)."""
        wanted = set(image_ids)
        images = [i for group in self.by_owner.values() for i in group]
        kept = [changed for i in images if (changed := change(i) if i.image_id in wanted else i) is not None]
        return RegionIndex.of(kept)

    def with_images(self, images: Sequence[Image]) -> RegionIndex:
        present = {i.image_id for group in self.by_owner.values() for i in group}
        new = [i for i in images if i.image_id not in present]
        if not new:
            return self
        return RegionIndex.of([*(i for group in self.by_owner.values() for i in group), *new])

    def __len__(self) -> int:
        return sum(len(group) for group in self.by_owner.values())


def _newest_first(images: Sequence[Image]) -> tuple[Image, ...]:
    return tuple(sorted(images, key=lambda i: (i.created_at, i.image_id), reverse=True))


class IndexedImages:
    """An `ImageSource` whose reads come from memory; see the module docstring for the rules."""

    def __init__(
        self,
        ec2: Ec2,
        *,
        period: float,
        base_period: float,
        stale_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ec2 = ec2
        self._exact = False
        self._stale_after = stale_after
        # A base lookup is as old as its own period between refreshes: only a missed refresh is stale.
        self._base_stale_after = max(stale_after, 2 * base_period)
        self.index: Refreshed[str, RegionIndex] = Refreshed(self._load_region, period=period, clock=clock)
        self.bases: Refreshed[tuple[str, BaseSource], BaseLookup] = Refreshed(
            lambda key: ec2.base_image(*key), period=base_period, clock=clock
        )
        self.parameter_owners: Refreshed[tuple[str, str], str] = Refreshed(
            lambda key: ec2.parameter_owner(*key), period=period, clock=clock
        )
        self.parameters: Refreshed[tuple[str, str], str | None] = Refreshed(
            lambda key: ec2.parameter_value(*key), period=period, clock=clock
        )
        self._read: OrderedDict[tuple[str, str], Image] = OrderedDict()
        self._read_lock = threading.Lock()

    def exact(self) -> IndexedImages:
        """The view that reads the builder's AMIs and parameters from AWS now (and writes them back here)."""
        view = copy.copy(self)
        view._exact = True
        return view

    def in_memory(self) -> InMemory:
        """The view that answers from what memory holds and refuses anything else (see `InMemory`)."""
        return InMemory(self)

    def instrument(self, metrics: Instruments) -> None:
        self._ec2.instrument(metrics)

    def stale(self, region: str) -> str:
        """Why the region's index may be too old to trust, once it is older than `stale_after`; else ""."""
        age, wall = self.index.age(region), self.index.loaded_wall(region)
        if age is None or wall is None or age <= self._stale_after:
            return ""
        # No running age in the text: the status must not change from one sync to the next (rule 3).
        since = format_timestamp(datetime.fromtimestamp(wall, UTC))
        error = self.index.error(region)
        return (
            f"the AMI index of {region} was last refreshed at {since}, over {int(self._stale_after)} s ago"
            + (f" (last refresh: {error})" if error else "")
        )

    def _load_region(self, region: str) -> RegionIndex:
        return RegionIndex.of(self._ec2.managed_images(region, {BROUGHT_TO_YOU_BY: OPERATOR_NAME}))

    def refresh_due(self) -> int:
        """Reload what is older than its period (the background loop calls this); returns the failures."""
        return (
            self.index.refresh_due()
            + self.bases.refresh_due()
            + self.parameters.refresh_due()
            + self.parameter_owners.refresh_due()
        )

    def index_age(self, region: str) -> float | None:
        return self.index.age(region)

    # -- reads: from memory once loaded -----------------------------------------------------------------------

    def base_image(self, region: str, source: BaseSource) -> BaseLookup:
        key = (region, source)
        age = self.bases.age(key)
        if self._exact and age is not None and age > self._base_stale_after:
            # A build is not started on a base lookup that background refreshes failed to renew.
            self.bases.put(key, self._ec2.base_image(region, source))
        return self.bases.get(key)

    def managed_images(self, region: str, tags: Mapping[str, str]) -> list[Image]:
        if not self._exact:
            return self.index.get(region).owned(tags)
        images = self._ec2.managed_images(region, tags)
        self.index.update(region, lambda index: index.replaced(tags, images))
        return images

    def images_by_id(self, region: str, image_ids: Sequence[str]) -> list[Image]:
        images = self._ec2.images_by_id(region, image_ids)
        with self._read_lock:
            for image in images:
                self._read[(region, image.image_id)] = image
                self._read.move_to_end((region, image.image_id))
            while len(self._read) > _RECENTLY_READ:
                self._read.popitem(last=False)
        return images

    def parameter_value(self, region: str, name: str) -> str | None:
        if not self._exact:
            return self.parameters.get((region, name))
        value = self._ec2.parameter_value(region, name)
        self.parameters.put((region, name), value)
        return value

    def parameter_owner(self, region: str, name: str) -> str:
        if not self._exact:
            return self.parameter_owners.get((region, name))
        owner = self._ec2.parameter_owner(region, name)
        self.parameter_owners.put((region, name), owner)
        return owner

    def images_in_use(self, region: str, image_ids: Sequence[str]) -> dict[str, str]:
        return self._ec2.images_in_use(region, image_ids)

    def last_launched(self, region: str, image_id: str) -> datetime | None:
        return self._ec2.last_launched(region, image_id)

    # -- writes: to AWS, then into the index at once ---------------------------------------------------------

    def tag_images(self, region: str, image_ids: Sequence[str], tags: Mapping[str, str]) -> None:
        self._ec2.tag_images(region, image_ids, tags)
        with self._read_lock:
            fresh = [self._read[(region, i)] for i in image_ids if (region, i) in self._read]
        merged = [replace(i, tags={**i.tags, **tags}) for i in fresh]

        def apply(index: RegionIndex) -> RegionIndex:
            retagged = index.changed(image_ids, lambda i: replace(i, tags={**i.tags, **tags}))
            return retagged.with_images([i for i in merged if i.tags.get(BROUGHT_TO_YOU_BY) == OPERATOR_NAME])

        self.index.update(region, apply)

    def enable_deprecation(self, region: str, image_id: str, at: datetime) -> None:
        self._ec2.enable_deprecation(region, image_id, at)
        self.index.update(
            region, lambda index: index.changed([image_id], lambda i: replace(i, deprecation_time=at))
        )

    def untag_images(self, region: str, image_ids: Sequence[str], keys: Sequence[str]) -> None:
        self._ec2.untag_images(region, image_ids, keys)

        def untag(image: Image) -> Image:
            return replace(image, tags={k: v for k, v in image.tags.items() if k not in keys})

        self.index.update(region, lambda index: index.changed(image_ids, untag))

    def disable_image(self, region: str, image_id: str) -> None:
        self._ec2.disable_image(region, image_id)
        self.index.update(
            region, lambda index: index.changed([image_id], lambda i: replace(i, state="disabled"))
        )

    def enable_image(self, region: str, image_id: str) -> None:
        self._ec2.enable_image(region, image_id)
        self.index.update(
            region, lambda index: index.changed([image_id], lambda i: replace(i, state="available"))
        )

    def set_deregistration_protection(self, region: str, image_id: str, enabled: bool) -> None:
        self._ec2.set_deregistration_protection(region, image_id, enabled)
        self.index.update(
            region, lambda index: index.changed([image_id], lambda i: replace(i, protected=enabled))
        )

    def tag_snapshots(self, region: str, snapshot_ids: Sequence[str], tags: Mapping[str, str]) -> None:
        self._ec2.tag_snapshots(region, snapshot_ids, tags)

    def deregister_image(self, region: str, image_id: str) -> None:
        self._ec2.deregister_image(region, image_id)
        self.index.update(region, lambda index: index.changed([image_id], lambda _: None))

    def delete_snapshot(self, region: str, snapshot_id: str) -> None:
        self._ec2.delete_snapshot(region, snapshot_id)

    def put_parameter(
        self,
        region: str,
        name: str,
        image_id: str,
        *,
        owner: Mapping[str, str] | None = None,
        create: bool = False,
    ) -> None:
        self._ec2.put_parameter(region, name, image_id, owner=owner, create=create)
        self.parameters.put((region, name), image_id)
        if owner:
            self.parameter_owners.put((region, name), parameter_owner(owner))

    def delete_parameter(self, region: str, name: str) -> None:
        self._ec2.delete_parameter(region, name)
        self.parameters.put((region, name), None)
        self.parameter_owners.put((region, name), "")


class InMemory:
    """The index's reads from memory only: a value not loaded yet, an exact read, any write raise NotInMemory.

    A sync is first decided on this view in the event loop (the steady state: nothing to load, nothing to
    do), which spares it a worker thread's hop; one that needs AWS is decided again on the `IndexedImages`
    in a worker thread, so a slow EC2 never holds the loop. Nothing here writes, so giving up half way
    leaves nothing done.
    """

    def __init__(self, images: IndexedImages) -> None:
        self._images = images

    def exact(self) -> IndexedImages:
        raise NotInMemory("exact reads")

    def stale(self, region: str) -> str:
        return self._images.stale(region)

    def base_image(self, region: str, source: BaseSource) -> BaseLookup:
        return self._images.bases.get((region, source), load=False)

    def managed_images(self, region: str, tags: Mapping[str, str]) -> list[Image]:
        return self._images.index.get(region, load=False).owned(tags)

    def parameter_value(self, region: str, name: str) -> str | None:
        return self._images.parameters.get((region, name), load=False)

    def parameter_owner(self, region: str, name: str) -> str:
        return self._images.parameter_owners.get((region, name), load=False)

    def images_by_id(self, region: str, image_ids: Sequence[str]) -> list[Image]:
        raise NotInMemory(f"AMIs by id in {region}")

    def images_in_use(self, region: str, image_ids: Sequence[str]) -> dict[str, str]:
        raise NotInMemory(f"AMIs in use in {region}")

    def last_launched(self, region: str, image_id: str) -> datetime | None:
        raise NotInMemory(f"last launch of {image_id} in {region}")

    def untag_images(self, region: str, image_ids: Sequence[str], keys: Sequence[str]) -> None:
        raise NotInMemory("untagging")

    def disable_image(self, region: str, image_id: str) -> None:
        raise NotInMemory("disabling")

    def enable_image(self, region: str, image_id: str) -> None:
        raise NotInMemory("enabling")

    def set_deregistration_protection(self, region: str, image_id: str, enabled: bool) -> None:
        raise NotInMemory("deregistration protection")

    def tag_images(self, region: str, image_ids: Sequence[str], tags: Mapping[str, str]) -> None:
        raise NotInMemory("tagging")

    def enable_deprecation(self, region: str, image_id: str, at: datetime) -> None:
        raise NotInMemory("deprecation")

    def tag_snapshots(self, region: str, snapshot_ids: Sequence[str], tags: Mapping[str, str]) -> None:
        raise NotInMemory("tagging")

    def deregister_image(self, region: str, image_id: str) -> None:
        raise NotInMemory("deregistration")

    def delete_snapshot(self, region: str, snapshot_id: str) -> None:
        raise NotInMemory("snapshot deletion")

    def put_parameter(
        self,
        region: str,
        name: str,
        image_id: str,
        *,
        owner: Mapping[str, str] | None = None,
        create: bool = False,
    ) -> None:
        raise NotInMemory("publishing")

    def delete_parameter(self, region: str, name: str) -> None:
        raise NotInMemory("unpublishing")


class Refresher:
    """The background loop: fill the configured regions' index once (then `ready` is set, whether the fill
    succeeded or not), then keep every loaded value fresh. A thread, so a slow AWS never blocks requests."""

    def __init__(self, images: IndexedImages, regions: Sequence[str], tick: float) -> None:
        self._images = images
        self._regions = list(regions)
        self._tick = tick
        self._stop = threading.Event()
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ami-index-refresher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._tick + 5)

    def _run(self) -> None:
        for region in self._regions:
            try:
                self._images.index.get(region)
            except Exception as error:  # reported by the syncs that need the region
                log.warning("first fill of the AMI index of %s failed: %s", region, error)
        self.ready.set()
        while not self._stop.wait(self._tick):
            failures = self._images.refresh_due()
            if failures:
                log.warning(
                    "%d background AWS refreshes failed; answering from the last good values", failures
                )
