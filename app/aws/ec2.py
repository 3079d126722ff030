"""The EC2 adapter: the only module that talks to EC2 (and to SSM, for base-image parameters).

Every call is bounded (connect/read timeouts, few attempts) because it runs inside a Metacontroller hook
with a 10 s budget, and every botocore failure leaves as an AwsError that says whether retrying can help.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import boto3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    ConnectTimeoutError,
    HTTPClientError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from app.aws.aws_clients import PerRegion, bounded_config
from app.core.base_image import (
    AMI_ID,
    BaseImageMissing,
    BaseLookup,
    BaseSource,
    FilterSource,
    ParameterSource,
)
from app.model.tags import EARLIEST, Image, parameter_owner, parse_timestamp

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import FilterTypeDef, ImageTypeDef
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_ssm.type_defs import TagTypeDef as SsmTagTypeDef


# Distinct (region, selector) pairs kept; far more than a cluster's worth of PackerBuilder selectors.
_MAX_CACHED_SELECTORS = 1024
_MAX_MESSAGE_LENGTH = 300
# EC2 reads these characters in filter values as patterns, so values holding them are matched locally.
_FILTER_PATTERN_CHARS = frozenset("*?\\")
_TEMPORARY_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "TooManyRequestsException",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "Unavailable",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
_URL_USERINFO = re.compile(r"//[^/@\s\"]+@")
# A parameter value is quoted in a condition; anything longer is not an AMI id anyway.
_SHOWN_VALUE = 40
_MISSING_PARAMETER = frozenset({"ParameterNotFound", "ParameterVersionNotFound"})
# What DeregisterImage / DeleteSnapshot answer when an earlier attempt (ours or anyone's) already removed it.
_GONE_IMAGE = frozenset({"InvalidAMIID.NotFound", "InvalidAMIID.Unavailable"})
_GONE_SNAPSHOT = frozenset({"InvalidSnapshot.NotFound"})
# Instances in these states run the AMI now; a stopped one starts again from its own volumes, not the AMI.
_RUNNING_STATES = ["pending", "running"]
# Without a template id these select the latest and default versions of every launch template in the region.
_CURRENT_VERSIONS = ["$Latest", "$Default"]


class AwsError(Exception):
    """An EC2 call that failed; `temporary` says whether the same call may succeed later."""

    def __init__(self, code: str, message: str, *, temporary: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.temporary = temporary


class Instruments(Protocol):
    """What observes the adapter's AWS calls (the shell's metrics): it registers on a botocore event system."""

    def instrument(self, events: Any) -> None: ...


class ImageSource(Protocol):
    """What the hook needs from EC2; `Ec2` reads AWS directly, `app.aws.image_index.IndexedImages` from memory."""

    def exact(self) -> ImageSource:
        """The view to decide on before acting: the builder's AMIs and parameters as AWS has them now."""
        ...

    def stale(self, region: str) -> str:
        """Why the region's facts may be too old to trust ("" when they are not)."""
        ...

    def base_image(self, region: str, source: BaseSource) -> BaseLookup: ...

    def managed_images(self, region: str, tags: Mapping[str, str]) -> list[Image]: ...

    def images_by_id(self, region: str, image_ids: Sequence[str]) -> list[Image]: ...

    def tag_images(self, region: str, image_ids: Sequence[str], tags: Mapping[str, str]) -> None: ...

    def parameter_value(self, region: str, name: str) -> str | None: ...

    def enable_deprecation(self, region: str, image_id: str, at: datetime) -> None: ...

    def images_in_use(self, region: str, image_ids: Sequence[str]) -> dict[str, str]: ...

    def last_launched(self, region: str, image_id: str) -> datetime | None: ...

    def disable_image(self, region: str, image_id: str) -> None: ...

    def enable_image(self, region: str, image_id: str) -> None: ...

    def untag_images(self, region: str, image_ids: Sequence[str], keys: Sequence[str]) -> None: ...

    def set_deregistration_protection(self, region: str, image_id: str, enabled: bool) -> None: ...

    def tag_snapshots(self, region: str, snapshot_ids: Sequence[str], tags: Mapping[str, str]) -> None: ...

    def deregister_image(self, region: str, image_id: str) -> None: ...

    def delete_snapshot(self, region: str, snapshot_id: str) -> None: ...

    def parameter_owner(self, region: str, name: str) -> str:
        """`namespace/name` of the builder the hook created the parameter for; "" when it records none."""
        ...

    def put_parameter(
        self,
        region: str,
        name: str,
        image_id: str,
        *,
        owner: Mapping[str, str] | None = None,
        create: bool = False,
    ) -> None: ...

    def delete_parameter(self, region: str, name: str) -> None: ...


class Ec2:
    """EC2 and SSM through boto3, every call direct: one lazily created client per region.

    The endpoint comes from boto3 itself (AWS_ENDPOINT_URL_EC2 / AWS_ENDPOINT_URL, and AWS_ENDPOINT_URL_SSM
    for parameters), so moto and real AWS are configured the same way.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 1,
        read_timeout: float = 2,
        max_attempts: int = 2,
        session: boto3.session.Session | None = None,
    ) -> None:
        self._session = session or boto3.session.Session()
        config = bounded_config(connect_timeout, read_timeout, max_attempts)
        self._client: PerRegion[EC2Client] = PerRegion(
            lambda region: self._session.client("ec2", region_name=region, config=config)
        )
        self._ssm: PerRegion[SSMClient] = PerRegion(
            lambda region: self._session.client("ssm", region_name=region, config=config)
        )

    def exact(self) -> Ec2:
        """Every read here is exact already."""
        return self

    def instrument(self, metrics: Instruments) -> None:
        """Count and time every call of this adapter's clients (made from now on)."""
        metrics.instrument(self._session.events)

    def stale(self, region: str) -> str:
        return ""

    def base_image(self, region: str, source: BaseSource) -> BaseLookup:
        """The base AMI the source names now, or why there is none (app.aws.image_index caches it)."""
        if isinstance(source, FilterSource):
            return self._newest(region, source)
        return self._from_parameter(region, source)

    def managed_images(self, region: str, tags: Mapping[str, str]) -> list[Image]:
        """Our own AMIs carrying every one of `tags` exactly, newest first."""
        server_side: list[FilterTypeDef] = [
            {"Name": f"tag:{key}", "Values": [value]}
            for key, value in sorted(tags.items())
            if value and not _FILTER_PATTERN_CHARS & set(value)
        ]
        with _translated("DescribeImages", region):
            # Owners see their deprecated AMIs anyway; asked explicitly since retention deprecates them. EC2
            # hides disabled AMIs even from their owner unless asked: retention disables them and must see them.
            images = self._describe(
                region, Owners=["self"], Filters=server_side, IncludeDeprecated=True, IncludeDisabled=True
            )
        # EC2 filters narrow the query; exact equality (empty values, literal `*`) is checked here.
        mine = [image for image in images if all(image.tags.get(k) == v for k, v in tags.items())]
        return sorted(mine, key=lambda image: (image.created_at, image.image_id), reverse=True)

    def images_by_id(self, region: str, image_ids: Sequence[str]) -> list[Image]:
        """The given AMIs in any state, in the order asked; ids EC2 does not know are left out."""
        wanted = list(dict.fromkeys(image_ids))
        if not wanted:
            return []
        # A filter, unlike ImageIds, does not fail the whole call when one id is unknown or malformed.
        with _translated("DescribeImages", region):
            images = self._describe(
                region,
                Filters=[{"Name": "image-id", "Values": wanted}],
                IncludeDeprecated=True,
                IncludeDisabled=True,
            )
        found = {image.image_id: image for image in images}
        return [found[image_id] for image_id in wanted if image_id in found]

    def tag_images(self, region: str, image_ids: Sequence[str], tags: Mapping[str, str]) -> None:
        """Set `tags` on the AMIs; repeating the call changes nothing."""
        self._create_tags(region, image_ids, tags)

    def tag_snapshots(self, region: str, snapshot_ids: Sequence[str], tags: Mapping[str, str]) -> None:
        """Set `tags` on the snapshots behind our AMIs, so they can be told apart from anyone else's."""
        self._create_tags(region, snapshot_ids, tags)

    def parameter_value(self, region: str, name: str) -> str | None:
        """The SSM parameter's value as stored, or None when there is no such parameter (or version)."""
        try:
            with _translated("GetParameter", region, service="SSM"):
                answer = self._ssm(region).get_parameter(Name=name)
        except AwsError as error:
            if error.code in _MISSING_PARAMETER:
                return None
            raise
        return answer.get("Parameter", {}).get("Value", "")

    def parameter_owner(self, region: str, name: str) -> str:
        """The owner the parameter's tags record (`created-by-namespace`/`created-by`), "" when none."""
        try:
            with _translated("ListTagsForResource", region, service="SSM"):
                answer = self._ssm(region).list_tags_for_resource(ResourceType="Parameter", ResourceId=name)
        except AwsError as error:
            if error.code in _MISSING_PARAMETER | {"InvalidResourceId"}:
                return ""
            raise
        return parameter_owner({t["Key"]: t["Value"] for t in answer.get("TagList", [])})

    def put_parameter(
        self,
        region: str,
        name: str,
        image_id: str,
        *,
        owner: Mapping[str, str] | None = None,
        create: bool = False,
    ) -> None:
        """Publish `image_id` under `name`; `owner` tags record whose it is.

        The aws:ec2:image data type makes SSM check that the AMI exists and lets launch templates read
        the parameter (`resolve:ssm:`) in place of an AMI id. `create` never overwrites: of two builders
        creating one name, the second fails (ParameterAlreadyExists) instead of taking it over.
        """
        tags: list[SsmTagTypeDef] = [{"Key": k, "Value": v} for k, v in sorted((owner or {}).items())]
        with _translated("PutParameter", region, service="SSM"):
            if create:
                self._ssm(region).put_parameter(
                    Name=name, Value=image_id, Type="String", DataType="aws:ec2:image", Tags=tags
                )
                return
            self._ssm(region).put_parameter(
                Name=name, Value=image_id, Type="String", DataType="aws:ec2:image", Overwrite=True
            )
        if tags:
            with _translated("AddTagsToResource", region, service="SSM"):
                self._ssm(region).add_tags_to_resource(ResourceType="Parameter", ResourceId=name, Tags=tags)

    def delete_parameter(self, region: str, name: str) -> None:
        """Delete the parameter; one that is already gone counts as deleted, so a retry is harmless."""
        try:
            with _translated("DeleteParameter", region, service="SSM"):
                self._ssm(region).delete_parameter(Name=name)
        except AwsError as error:
            if error.code not in _MISSING_PARAMETER:
                raise

    def enable_deprecation(self, region: str, image_id: str, at: datetime) -> None:
        """Have EC2 itself deprecate the AMI at `at`, so consoles and DescribeImages users see it is old."""
        with _translated("EnableImageDeprecation", region):
            self._client(region).enable_image_deprecation(ImageId=image_id, DeprecateAt=at)

    def images_in_use(self, region: str, image_ids: Sequence[str]) -> dict[str, str]:
        """Which of the AMIs something may still launch from, each with the first reason found.

        An instance running (or starting) from the AMI, or the latest or default version of a launch
        template naming it: deregistering such an AMI breaks the next scale-up.
        """
        wanted = set(image_ids)
        if not wanted:
            return {}
        reasons: dict[str, str] = {}
        for image_id, instance_id in sorted(self._running_instances(region, sorted(wanted))):
            reasons.setdefault(image_id, f"instance {instance_id}")
        remaining = sorted(wanted - reasons.keys())
        if remaining:
            for image_id, template in sorted(self._current_templates(region, remaining)):
                reasons.setdefault(image_id, template)
        return reasons

    def last_launched(self, region: str, image_id: str) -> datetime | None:
        """When EC2 last saw an instance launched from the AMI (it reports launches up to a day late); None
        when EC2 says it was never launched. Asked of the AMI itself, just before retention acts on it."""
        with _translated("DescribeImageAttribute", region):
            answer = self._client(region).describe_image_attribute(
                ImageId=image_id, Attribute="lastLaunchedTime"
            )
        text = answer.get("LastLaunchedTime", {}).get("Value", "")
        if not text:
            return None
        try:
            return parse_timestamp(text)
        except ValueError:
            # Not a time EC2 would send: whatever answered may answer properly later; until then, used.
            message = _message("EC2", "DescribeImageAttribute", region, f"lastLaunchedTime {text[:40]!r}")
            raise AwsError("InvalidResponse", message, temporary=True) from None

    def disable_image(self, region: str, image_id: str) -> None:
        """Disable the AMI: it stays, but nothing can launch from it until it is enabled again. One that is
        already gone has nothing left to disable, so a retry is harmless."""
        try:
            with _translated("DisableImage", region):
                self._client(region).disable_image(ImageId=image_id)
        except AwsError as error:
            if error.code not in _GONE_IMAGE:
                raise

    def enable_image(self, region: str, image_id: str) -> None:
        """Make a disabled AMI launchable again (enabling an available one changes nothing)."""
        with _translated("EnableImage", region):
            self._client(region).enable_image(ImageId=image_id)

    def untag_images(self, region: str, image_ids: Sequence[str], keys: Sequence[str]) -> None:
        """Remove the tags with these keys, whatever their values; a tag that is not there is no error."""
        if not image_ids or not keys:
            return
        with _translated("DeleteTags", region):
            self._client(region).delete_tags(
                Resources=list(image_ids), Tags=[{"Key": key} for key in sorted(keys)]
            )

    def set_deregistration_protection(self, region: str, image_id: str, enabled: bool) -> None:
        """Turn EC2's deregistration protection of the AMI on (without the 24-hour cooldown) or off."""
        if enabled:
            with _translated("EnableImageDeregistrationProtection", region):
                self._client(region).enable_image_deregistration_protection(ImageId=image_id)
        else:
            with _translated("DisableImageDeregistrationProtection", region):
                self._client(region).disable_image_deregistration_protection(ImageId=image_id)

    def deregister_image(self, region: str, image_id: str) -> None:
        """Deregister the AMI; one that is already gone counts as deregistered, so a retry is harmless."""
        try:
            with _translated("DeregisterImage", region):
                self._client(region).deregister_image(ImageId=image_id)
        except AwsError as error:
            if error.code not in _GONE_IMAGE:
                raise

    def delete_snapshot(self, region: str, snapshot_id: str) -> None:
        """Delete the snapshot; one that is already gone counts as deleted, so a retry is harmless."""
        try:
            with _translated("DeleteSnapshot", region):
                self._client(region).delete_snapshot(SnapshotId=snapshot_id)
        except AwsError as error:
            if error.code not in _GONE_SNAPSHOT:
                raise

    def _create_tags(self, region: str, resource_ids: Sequence[str], tags: Mapping[str, str]) -> None:
        if not resource_ids or not tags:
            return
        with _translated("CreateTags", region):
            self._client(region).create_tags(
                Resources=list(resource_ids),
                Tags=[{"Key": key, "Value": value} for key, value in sorted(tags.items())],
            )

    def _running_instances(self, region: str, image_ids: list[str]) -> list[tuple[str, str]]:
        """(AMI id, instance id) of the pending or running instances launched from the AMIs."""
        with _translated("DescribeInstances", region):
            paginator = self._client(region).get_paginator("describe_instances")
            pages = paginator.paginate(
                Filters=[
                    {"Name": "image-id", "Values": image_ids},
                    {"Name": "instance-state-name", "Values": _RUNNING_STATES},
                ]
            )
            instances = [
                instance
                for page in pages
                for reservation in page.get("Reservations", [])
                for instance in reservation.get("Instances", [])
            ]
        # EC2 filters narrow the query; the match is checked here too, as for every filtered listing.
        return [
            (instance["ImageId"], instance["InstanceId"])
            for instance in instances
            if instance.get("ImageId") in image_ids
        ]

    def _current_templates(self, region: str, image_ids: list[str]) -> list[tuple[str, str]]:
        """(AMI id, description) of the latest and default launch template versions naming the AMIs."""
        with _translated("DescribeLaunchTemplateVersions", region):
            paginator = self._client(region).get_paginator("describe_launch_template_versions")
            pages = paginator.paginate(
                Versions=_CURRENT_VERSIONS, Filters=[{"Name": "image-id", "Values": image_ids}]
            )
            versions = [version for page in pages for version in page.get("LaunchTemplateVersions", [])]
        # EC2 filters narrow the query; the match is checked here too (moto, for one, ignores this filter).
        return [
            (
                version["LaunchTemplateData"]["ImageId"],
                f"launch template {version['LaunchTemplateId']} ({version['LaunchTemplateName']})"
                f" version {version['VersionNumber']}",
            )
            for version in versions
            if version.get("LaunchTemplateData", {}).get("ImageId") in image_ids
        ]

    def _newest(self, region: str, source: FilterSource) -> BaseLookup:
        if not source.filters:
            # Without a selector DescribeImages lists every public AMI in the region.
            return BaseImageMissing("no amiFilters to select a base AMI with")
        with _translated("DescribeImages", region):
            images = self._describe(
                region, Filters=[{"Name": name, "Values": list(values)} for name, values in source.filters]
            )
        if not images:
            return BaseImageMissing(f"No AMI in {region} matches {source.describe()}")
        usable = [image for image in images if image.image_id not in source.revoked]
        if not usable:
            return BaseImageMissing(
                f"Every AMI in {region} matching {source.describe()} is revoked (spec.release.revokeBase)"
            )
        return max(usable, key=lambda image: (image.creation_date, image.name, image.image_id))

    def _from_parameter(self, region: str, source: ParameterSource) -> BaseLookup:
        stored = self.parameter_value(region, source.name)
        if stored is None:
            return BaseImageMissing(f"{source.describe()} does not exist in {region}")
        value = stored.strip()
        if not AMI_ID.fullmatch(value):
            shown = value[:_SHOWN_VALUE] + ("..." if len(value) > _SHOWN_VALUE else "")
            return BaseImageMissing(f"{source.describe()} holds {shown!r}, which is not an AMI id")
        found = self.images_by_id(region, [value])
        if not found:
            return BaseImageMissing(f"{source.describe()} names {value}, which does not exist in {region}")
        return found[0]

    def _describe(self, region: str, **params: Any) -> list[Image]:
        pages = self._client(region).get_paginator("describe_images").paginate(**params)
        return [to_image(raw) for page in pages for raw in page.get("Images", [])]


def to_image(raw: ImageTypeDef) -> Image:
    return Image(
        image_id=raw["ImageId"],
        state=raw.get("State", ""),
        # Missing or unreadable (never seen from EC2, optional in its schema): sorts as the oldest image.
        creation_date=_time(raw.get("CreationDate")) or EARLIEST,
        name=raw.get("Name", ""),
        tags={tag["Key"]: tag.get("Value", "") for tag in raw.get("Tags", [])},
        architecture=raw.get("Architecture", ""),
        snapshot_ids=tuple(
            mapping["Ebs"]["SnapshotId"]
            for mapping in raw.get("BlockDeviceMappings", [])
            if mapping.get("Ebs", {}).get("SnapshotId")
        ),
        deprecation_time=_time(raw.get("DeprecationTime")),
        protected=raw.get("DeregistrationProtection", "").startswith("enabled"),
        last_launched=_time(raw.get("LastLaunchedTime")),
    )


def _time(text: str | None) -> datetime | None:
    """A time EC2 gives, or None: a value we cannot read must not fail the whole listing."""
    if not text:
        return None
    try:
        return parse_timestamp(text)
    except ValueError:
        return None


@contextmanager
def _translated(operation: str, region: str, service: str = "EC2") -> Iterator[None]:
    """Turn any botocore failure into an AwsError whose message names the call, never a credential."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code") or "Unknown"
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        temporary = code in _TEMPORARY_CODES or status >= 500
        raise AwsError(
            code, _message(service, operation, region, error.get("Message") or code), temporary=temporary
        ) from exc
    except BotoCoreError as exc:
        code, temporary = _classify(exc)
        raise AwsError(code, _message(service, operation, region, str(exc)), temporary=temporary) from exc
    except ResponseParserError as exc:
        # Not AWS talking (a proxy's error page, a cut-off body); whatever sits in between may recover.
        raise AwsError(
            "InvalidResponse", _message(service, operation, region, str(exc)), temporary=True
        ) from exc


def _classify(exc: BotoCoreError) -> tuple[str, bool]:
    if isinstance(exc, ReadTimeoutError):
        return "ReadTimeout", True
    if isinstance(exc, ConnectTimeoutError):
        return "ConnectTimeout", True
    if isinstance(exc, ConnectionError | HTTPClientError):
        return type(exc).__name__, True
    # Missing credentials or region, parameter validation: the same call fails again.
    return type(exc).__name__, False


def _message(service: str, operation: str, region: str, detail: str) -> str:
    flat = " ".join(_URL_USERINFO.sub("//", detail).split())
    text = f"{service} {operation} in {region}: {flat}"
    if len(text) > _MAX_MESSAGE_LENGTH:
        text = text[: _MAX_MESSAGE_LENGTH - 3] + "..."
    return text
