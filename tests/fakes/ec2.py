"""An in-memory EC2 for hook tests that are about something else (the API, notifications)."""

from collections.abc import Mapping, Sequence
from datetime import datetime

from app.core.base_image import BaseLookup, BaseSource
from app.model.tags import Image
from tests.builders import base_image


class QuietEc2:
    """EC2 with the seed's base AMI, no built AMI, and every write accepted and forgotten."""

    def exact(self) -> "QuietEc2":
        return self

    def stale(self, region: str) -> str:
        return ""

    def base_image(self, region: str, source: BaseSource) -> BaseLookup:
        return base_image()

    def managed_images(self, region: str, tags: Mapping[str, str]) -> list[Image]:
        return []

    def images_by_id(self, region: str, image_ids: Sequence[str]) -> list[Image]:
        return []

    def parameter_value(self, region: str, name: str) -> str | None:
        return None

    def parameter_owner(self, region: str, name: str) -> str:
        return ""

    def images_in_use(self, region: str, image_ids: Sequence[str]) -> dict[str, str]:
        return {}

    def tag_images(self, region: str, image_ids: Sequence[str], tags: Mapping[str, str]) -> None:
        self.wrote("tag")

    def tag_snapshots(self, region: str, snapshot_ids: Sequence[str], tags: Mapping[str, str]) -> None:
        self.wrote("tag")

    def put_parameter(
        self,
        region: str,
        name: str,
        image_id: str,
        *,
        owner: Mapping[str, str] | None = None,
        create: bool = False,
    ) -> None:
        self.wrote("publish")

    def delete_parameter(self, region: str, name: str) -> None:
        self.wrote("unpublish")

    def enable_deprecation(self, region: str, image_id: str, at: datetime) -> None:
        self.wrote("deprecate")

    def last_launched(self, region: str, image_id: str) -> datetime | None:
        return None

    def untag_images(self, region: str, image_ids: Sequence[str], keys: Sequence[str]) -> None:
        self.wrote("untag")

    def disable_image(self, region: str, image_id: str) -> None:
        self.wrote("disable")

    def enable_image(self, region: str, image_id: str) -> None:
        self.wrote("enable")

    def set_deregistration_protection(self, region: str, image_id: str, enabled: bool) -> None:
        self.wrote("protect")

    def deregister_image(self, region: str, image_id: str) -> None:
        self.wrote("deregister")

    def delete_snapshot(self, region: str, snapshot_id: str) -> None:
        self.wrote("delete")

    def wrote(self, what: str) -> None:
        """Every write lands here: accepted and forgotten."""


class NoAmis(QuietEc2):
    """The same EC2 for tests in which nothing is built: any write is a bug."""

    def wrote(self, what: str) -> None:
        raise AssertionError(f"nothing is built, nothing to {what}")
