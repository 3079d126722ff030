"""Where a builder's base AMI comes from: EC2 DescribeImages filters or an SSM parameter, chosen once.

The rest of the hook sees a `BaseSource` (what to ask) and a lookup result (`Image` or `BaseImageMissing`
saying why there is none); only `base_source()` reads the spec fields that choose the source.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

from app.model.spec import AmiFilter, PackerBuilderSpec
from app.model.tags import Image

# The value of a base-image parameter: exactly one AMI id.
AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")

CanonicalFilters = tuple[tuple[str, tuple[str, ...]], ...]


def canonical_filters(filters: Sequence[AmiFilter]) -> CanonicalFilters:
    """The selector as EC2 reads it: filters are ANDed and values ORed, so order does not matter."""
    return tuple(sorted((f.name, tuple(sorted(set(f.values)))) for f in filters))


@dataclass(frozen=True)
class FilterSource:
    """The newest AMI matching DescribeImages filters (`spec.amiFilters`)."""

    filters: CanonicalFilters
    revoked: tuple[str, ...] = ()
    """AMIs never to pick (`spec.release.revokeBase`): the newest match not among them is the base."""

    def describe(self) -> str:
        return "; ".join(f"{name}={','.join(values)}" for name, values in self.filters)


@dataclass(frozen=True)
class ParameterSource:
    """The AMI named by an SSM parameter (`spec.baseImage.ssmParameter`)."""

    name: str

    def describe(self) -> str:
        return f"SSM parameter {self.name}"


BaseSource = FilterSource | ParameterSource


def base_source(spec: PackerBuilderSpec) -> BaseSource | None:
    """The spec's base-image source; None for a self-contained Packer project."""
    if spec.baseImage is not None:
        return ParameterSource(spec.baseImage.ssmParameter)
    if spec.amiFilters:
        return FilterSource(canonical_filters(spec.amiFilters), tuple(sorted(set(spec.release.revokeBase))))
    return None


def filter_source(filters: Sequence[AmiFilter]) -> FilterSource:
    return FilterSource(canonical_filters(filters))


@dataclass(frozen=True)
class BaseImageMissing:
    """The source answered, but names no usable AMI; `reason` says why, naming the source."""

    reason: str


BaseLookup = Image | BaseImageMissing
