"""When things happen: retry backoff, base-image soak, build windows and resync delays.

Pure functions of facts and a given `now`; each has its own table of cases in tests/unit/test_timing.py.
Expiry itself is part of the AMI tag contract (`app.model.tags.Image.expires_at`).
"""

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim

from app.model.tags import Image

RETRY_BACKOFF = timedelta(seconds=60)
RETRY_BACKOFF_CAP = timedelta(hours=1)
_SECOND = timedelta(seconds=1)


def retry_at(failed_at: datetime, failures: int) -> datetime:
    """When the next attempt may start after `failures` failed builds: 1, 2, 4... minutes, capped at 1 h."""
    # Bounded exponent: maxNumberOfJobs allows 100 failures, and 2**99 minutes overflows a timedelta.
    doublings = min(max(failures - 1, 0), 16)
    return failed_at + min(RETRY_BACKOFF * (1 << doublings), RETRY_BACKOFF_CAP)


def soak_ends(base: Image, min_age: timedelta) -> datetime:
    """A newer base AMI may trigger a rebuild once it is `min_age` old, by its EC2 CreationDate."""
    return base.creation_date + min_age


def window_start(schedule: str | None, time_zone: str, due: datetime) -> datetime:
    """The first tick of `schedule` at or after `due` (in `time_zone`, DST-aware); `due` without a schedule.

    cronsim follows Debian cron across DST changes: a tick in a skipped hour runs at the first minute
    that exists, a tick in a repeated hour runs once.
    """
    if not schedule:
        return due
    zone = ZoneInfo(time_zone)
    # CronSim yields ticks strictly after its start; one second earlier makes `due` itself count.
    start = (due - _SECOND).astimezone(zone).replace(microsecond=0)
    return next(CronSim(schedule, start)).astimezone(UTC)


def ceil_seconds(delta: timedelta) -> int:
    """Whole seconds, rounded up, at least 1 (Metacontroller ignores resyncAfterSeconds of 0)."""
    return max(1, math.ceil(delta.total_seconds()))


def wake_after(now: datetime, cap_seconds: int, *moments: datetime | None) -> int:
    """resyncAfterSeconds: the earliest future moment, but never later than the controller timer."""
    future = [ceil_seconds(m - now) for m in moments if m is not None and m > now]
    return min([cap_seconds, *future])
