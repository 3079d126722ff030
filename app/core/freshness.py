"""Is the current AMI built on the newest base AMI, and when may a newer base trigger a rebuild?"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from app.core import conditions as cond
from app.core.base_image import BaseLookup
from app.core.conditions import Wanted
from app.core.timing import soak_ends
from app.model.tags import BASE_AMI, Image, format_timestamp


@dataclass(frozen=True)
class BaseCheck:
    """The current AMI against the newest base AMI its builder's source names."""

    image_id: str
    built_on: str
    newest: Image
    soaked_at: datetime
    rebuild: bool
    """spec.rebuild.onBaseImageChange"""

    @property
    def outdated(self) -> bool:
        return self.built_on != self.newest.image_id

    def rebuild_due(self, now: datetime) -> bool:
        return self.rebuild and self.outdated and now >= self.soaked_at

    @property
    def soaking_until(self) -> datetime | None:
        """When a rebuild that waits for the soak time becomes due."""
        return self.soaked_at if self.rebuild and self.outdated else None

    def condition(self, now: datetime) -> Wanted:
        """BaseImageOutdated, shown whether or not rebuilds are enabled."""
        if not self.outdated:
            return cond.false(
                cond.BASE_IMAGE_OUTDATED,
                "BaseImageCurrent",
                f"AMI {self.image_id} is built on the newest base AMI {self.built_on}",
            )
        created = format_timestamp(self.newest.creation_date)
        message = (
            f"AMI {self.image_id} is built on {self.built_on}; the newest base AMI is "
            f"{self.newest.image_id} (created {created})"
        )
        if not self.rebuild:
            message += "; spec.rebuild.onBaseImageChange is off, so it is used when the AMI expires"
        elif now < self.soaked_at:
            message += f"; a rebuild is due once it has soaked, at {format_timestamp(self.soaked_at)}"
        else:
            message += "; a rebuild is due"
        return cond.true(
            cond.BASE_IMAGE_OUTDATED, message, reason="NewerBaseImage", since=self.newest.creation_date
        )


def check_base(
    current: Image | None, base: BaseLookup | None, rebuild: bool, min_age: timedelta
) -> BaseCheck | None:
    """None when there is nothing to compare: no current AMI, no base found, or an AMI without `base-ami`."""
    if current is None or not isinstance(base, Image):
        return None
    built_on = current.tags.get(BASE_AMI, "")
    if not built_on:
        return None
    return BaseCheck(current.image_id, built_on, base, soak_ends(base, min_age), rebuild)
