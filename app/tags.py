"""The AMI tag contract shared with the original operator: which AMIs are ours, and when they expire."""

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from app.spec import PackerBuilderSpec

BROUGHT_TO_YOU_BY = "brought-to-you-by"
OPERATOR_NAME = "opsy-the-ami-operator"
CLUSTER_NAME = "cluster-name"
CREATED_BY = "created-by"
PACKER_REPO = "packer-repo"
PACKER_REPO_BRANCH = "packer-repo-branch"

STATUS = "status"
CREATE_TIMESTAMP = "create-timestamp"
BUILD_ID = "build-id"
JOB_ID = "job-id"
BASE_AMI = "base-ami"
# The git commit of the Packer project the AMI was built from (provenance).
PACKER_REPO_COMMIT = "packer-repo-commit"

ACTIVE = "active"
DEPRECATED = "deprecated"


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


def management_tags(name: str, spec: PackerBuilderSpec) -> dict[str, str]:
    """The five tags that say "this AMI belongs to this PackerBuilder"."""
    return {
        BROUGHT_TO_YOU_BY: OPERATOR_NAME,
        CLUSTER_NAME: spec.clusterName,
        CREATED_BY: name,
        PACKER_REPO: spec.builder.repoURL,
        PACKER_REPO_BRANCH: spec.builder.branch,
    }


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with second precision, the form Kubernetes uses (`2024-09-01T18:05:40Z`)."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


# Every sync reads the same few timestamps again (its AMIs' tags, its Jobs' times): parse each once.
@functools.lru_cache(maxsize=8192)
def parse_timestamp(text: str) -> datetime:
    """Parse RFC 3339 (`Z` or an offset, optional fractions) into an aware UTC datetime."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment.astimezone(UTC)
