"""What the decision needs to know about EC2, gathered by the shell before it decides."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from app.core.base_image import BaseLookup
from app.model.tags import Image, Owner, Standing


@dataclass(frozen=True)
class AwsFault:
    """An EC2 call that failed; `temporary` faults (throttling, timeouts) are retried sooner."""

    code: str
    message: str
    temporary: bool

    def describe(self) -> str:
        return f"AWS {self.code} ({'temporary' if self.temporary else 'permanent'}): {self.message}"


@dataclass(frozen=True)
class RegionImages:
    """The builder's AMIs in one region."""

    managed: tuple[Image, ...] = ()
    """The builder's own AMIs (its five management tags and its namespace), any status."""
    built: tuple[Image, ...] = ()
    """The AMIs finished builds reported in this region, as EC2 sees them now."""
    legacy: tuple[Image, ...] = ()
    """AMIs with the builder's five management tags and no namespace: adoptable, never touched otherwise."""

    @classmethod
    def of(cls, owner: Owner, found: Iterable[Image], built: tuple[Image, ...] = ()) -> "RegionImages":
        """The AMIs a query by the five management tags found, without those of another namespace."""
        pool = list(found)
        return cls(
            managed=tuple(i for i in pool if owner.standing(i) is Standing.own),
            built=built,
            legacy=tuple(i for i in pool if owner.standing(i) is Standing.legacy),
        )


@dataclass(frozen=True)
class AmiFacts:
    managed: tuple[Image, ...] = ()
    """The builder's own AMIs in spec.region (RegionImages.managed), any status."""
    legacy: tuple[Image, ...] = ()
    """Legacy AMIs in spec.region (RegionImages.legacy)."""
    base_image: BaseLookup | None = None
    """The base AMI the spec's source names now, or why there is none; None for a self-contained project."""
    built: tuple[Image, ...] = ()
    """The AMIs finished builds reported in spec.region, as EC2 sees them now."""
    fault: AwsFault | None = None
    """Set when an EC2 call failed; everything after it is missing, so nothing may be concluded from it."""
    elsewhere: Mapping[str, RegionImages] = field(default_factory=dict)
    """The other regions the builder has AMIs in: copies builds reported, regions its status lists."""
    parameters: Mapping[tuple[str, str], str | None] = field(default_factory=dict)
    """With spec.publish: the value of each parameter the builder may have published, by (region, name)."""
    parameter_owners: Mapping[tuple[str, str], str] = field(default_factory=dict)
    """Of each existing parameter in `parameters`: the builder (`namespace/name`) its tags record, or ""."""
    publish_prefix: str = ""
    """The only parameter path the hook may write (settings, the chart's hook.publishParameterPrefix)."""
    unavailable: Mapping[str, str] = field(default_factory=dict)
    """Regions other than spec.region whose facts AWS did not give, each with why: in neither `elsewhere`
    nor `parameters`, so nothing is known, and nothing may be done, there."""

    stale: str = ""
    """Why the managed-AMI facts may be old (the index has not been refreshed for a while); "" if fresh."""

    def regions(self, home: str) -> dict[str, RegionImages]:
        """Every region's images, spec.region's included."""
        return {**self.elsewhere, home: RegionImages(self.managed, self.built, self.legacy)}
