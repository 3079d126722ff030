"""The AMI tag contract shared with the original operator: which AMIs are ours, and when they expire."""

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import MAXYEAR, UTC, datetime, timedelta
from enum import StrEnum

from app.model.spec import PackerBuilderSpec

BROUGHT_TO_YOU_BY = "brought-to-you-by"
OPERATOR_NAME = "opsy-the-ami-operator"
CLUSTER_NAME = "cluster-name"
CREATED_BY = "created-by"
PACKER_REPO = "packer-repo"
PACKER_REPO_BRANCH = "packer-repo-branch"
# The five management tags, in the order the index keys owners by (the original operator's identity).
MANAGEMENT_KEYS = (BROUGHT_TO_YOU_BY, CLUSTER_NAME, CREATED_BY, PACKER_REPO, PACKER_REPO_BRANCH)
# Completes the owner: the five name a builder, not its namespace. An AMI without it is legacy.
CREATED_BY_NAMESPACE = "created-by-namespace"

STATUS = "status"
CREATE_TIMESTAMP = "create-timestamp"
BUILD_ID = "build-id"
JOB_ID = "job-id"
BASE_AMI = "base-ami"
# The git commit of the Packer project the AMI was built from (provenance).
PACKER_REPO_COMMIT = "packer-repo-commit"
# When a validated AMI became active (its validation passed): a release channel's soak counts from it.
ACTIVE_SINCE = "active-since"
# When retention disabled the AMI (RFC 3339): its removal clock, kept in EC2 so a restart does not reset it.
DISABLED_AT = "disabled-at"

ACTIVE = "active"
DEPRECATED = "deprecated"
VALIDATING = "validating"
"""Built, waiting for its validation Job: never current, published or removed."""
REJECTED = "rejected"
"""Failed its validation: never adopted or published; removed first when retention is on."""
REVOKED = "revoked"
"""In spec.release.revoke (or built on a revoked base): disabled, in no channel, removed first."""

# The span of time the hook computes with. A time read outside it (a tag "pinning" an AMI at 9999-12-31, a
# clock gone wrong) counts as its nearest end: far beyond any real build, and far enough from the ends of
# Python's calendar (years 1 and 9999) that adding any duration a spec allows (MAX_DURATION, 3650 days), a
# cron window or a retry backoff to it stays a date.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Image:
    """What the hook needs to know about one AMI."""

    image_id: str
    state: str
    creation_date: datetime
    name: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    architecture: str = ""
    snapshot_ids: tuple[str, ...] = ()
    """The EBS snapshots behind the AMI's block device mappings, deleted after the AMI is deregistered."""
    deprecation_time: datetime | None = None
    """EC2's own deprecation time (EnableImageDeprecation), if set."""
    protected: bool = False
    """EC2's deregistration protection is on: DeregisterImage fails until it is turned off."""
    last_launched: datetime | None = None
    """When EC2 last reported an instance launched from the AMI (up to a day late); None: not reported."""

    @property
    def created_at(self) -> datetime:
        """The build time the expiry clock counts from: our tag, else EC2's CreationDate."""
        stamp = self.tags.get(CREATE_TIMESTAMP)
        if stamp:
            try:
                return parse_timestamp(stamp)
            except ValueError:
                pass
        return self.creation_date

    def expires_at(self, expires_in: timedelta) -> datetime:
        return self.created_at + expires_in

    @property
    def is_active(self) -> bool:
        return self.tags.get(STATUS) == ACTIVE and self.state == "available"


class Standing(StrEnum):
    """What an AMI carrying a builder's five management tags is to that builder."""

    own = "own"
    """Its `created-by-namespace` is the builder's namespace."""
    legacy = "legacy"
    """No `created-by-namespace` (the original operator, earlier versions): adoptable, then claimed."""
    foreign = "foreign"
    """Another namespace's builder of the same name, cluster, repository and branch: never touched."""


@dataclass(frozen=True)
class Owner:
    """Whose AMIs these are: the builder (namespace and name) and what it builds (cluster, repository,
    branch). Built once from the parent; every tag that says "this builder's" comes from here."""

    namespace: str
    name: str
    cluster: str
    repository: str
    branch: str

    @classmethod
    def of(cls, namespace: str, name: str, spec: PackerBuilderSpec) -> "Owner":
        return cls(namespace, name, spec.clusterName, spec.builder.repoURL, spec.builder.branch)

    @property
    def management(self) -> dict[str, str]:
        """The five tags of the original operator: what a query for the builder's AMIs selects on."""
        return dict(
            zip(
                MANAGEMENT_KEYS,
                (OPERATOR_NAME, self.cluster, self.name, self.repository, self.branch),
                strict=True,
            )
        )

    @property
    def tags(self) -> dict[str, str]:
        """The six tags every AMI the builder tags carries: the five and its namespace."""
        return {**self.management, CREATED_BY_NAMESPACE: self.namespace}

    @property
    def parameter_tags(self) -> dict[str, str]:
        """What a parameter the hook creates records of its owner."""
        return {BROUGHT_TO_YOU_BY: OPERATOR_NAME, CREATED_BY: self.name, CREATED_BY_NAMESPACE: self.namespace}

    def standing(self, image: "Image") -> Standing:
        """Own, legacy or foreign; only meaningful for an AMI that carries the five management tags."""
        namespace = image.tags.get(CREATED_BY_NAMESPACE)
        if namespace is None:
            return Standing.legacy
        return Standing.own if namespace == self.namespace else Standing.foreign

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def parameter_owner(tags: Mapping[str, str]) -> str:
    """`namespace/name` of the builder a parameter's tags say it belongs to, "" when they say none."""
    if tags.get(BROUGHT_TO_YOU_BY) != OPERATOR_NAME or not tags.get(CREATED_BY):
        return ""
    return f"{tags.get(CREATED_BY_NAMESPACE, '')}/{tags[CREATED_BY]}"


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with second precision, the form Kubernetes uses (`2024-09-01T18:05:40Z`)."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


# Every sync reads the same few timestamps again (its AMIs' tags, its Jobs' times): parse each once.
@functools.lru_cache(maxsize=8192)
def parse_timestamp(text: str) -> datetime:
    """Parse RFC 3339 (`Z` or an offset, optional fractions) into an aware UTC datetime within
    [EARLIEST, LATEST]; what is not such a time raises ValueError.

    Every time the hook reads, from AWS tags, Kubernetes objects or its own status, comes through here.
    """
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    try:
        utc = moment.astimezone(UTC)
    except (
        OverflowError
    ):  # 9999-12-31T23:59:59-01:00 is in year 10000 in UTC, 0001-01-01T00:00+01:00 in year 0
        return LATEST if moment.year == MAXYEAR else EARLIEST
    return min(max(utc, EARLIEST), LATEST)
