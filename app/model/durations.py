"""Go-style durations (`48h`, `1h30m`, `90s`, `2d`) as used by the PackerBuilder spec."""

import re
from datetime import timedelta
from functools import cache

DURATION_PATTERN = r"^([0-9]+(d|h|m|s))+$"
_PART = re.compile(r"([0-9]+)(d|h|m|s)")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
# Ten years: EC2's own limit for a deprecation time, and far inside datetime's range once added to a date.
MAX_DURATION = timedelta(days=3650)


@cache  # the same few spec strings, several times per sync
def parse_duration(text: str, *, allow_zero: bool = False) -> timedelta:
    """Parse `48h`-style durations; raise ValueError with a readable message otherwise."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration such as 48h, 90m, 1h30m or 2d")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))
    if seconds <= 0 and not allow_zero:
        raise ValueError(f"{text!r} must be longer than zero")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{text!r} is longer than {MAX_DURATION.days}d")
    return timedelta(seconds=seconds)
