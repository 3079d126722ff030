"""The AWS regions botocore knows, in every partition: a typo in a region is a spec error, not an endless
temporary AWSError from an endpoint that does not exist."""

import difflib
from functools import cache

import botocore.session


@cache
def known_regions() -> frozenset[str]:
    """Every region of every partition in the botocore data this image ships (aws, aws-cn, aws-us-gov, ...)."""
    endpoints = botocore.session.get_session().get_data("endpoints")
    return frozenset(region for partition in endpoints["partitions"] for region in partition["regions"])


def known_region(name: str) -> str:
    """`name` if botocore knows it; else ValueError naming the nearest known region."""
    regions = known_regions()
    if name in regions:
        return name
    nearest = difflib.get_close_matches(name, sorted(regions), n=1, cutoff=0.6)
    hint = f"; did you mean {nearest[0]}?" if nearest else ""
    raise ValueError(f"{name!r} is not an AWS region this hook knows{hint}")
