"""What the decision needs to know about EC2, gathered by the shell before it decides."""

from dataclasses import dataclass

from app.base_image import BaseLookup
from app.tags import Image


@dataclass(frozen=True)
class AwsFault:
    """An EC2 call that failed; `temporary` faults (throttling, timeouts) are retried sooner."""

    code: str
    message: str
    temporary: bool


@dataclass(frozen=True)
class AmiFacts:
    managed: tuple[Image, ...] = ()
    """AMIs carrying this builder's five management tags, any status."""
    base_image: BaseLookup | None = None
    """The base AMI the spec's source names now, or why there is none; None for a self-contained project."""
    built: tuple[Image, ...] = ()
    """The AMIs finished builds reported, as EC2 sees them now."""
    fault: AwsFault | None = None
    """Set when an EC2 call failed; everything after it is missing, so nothing may be concluded from it."""
