"""Timing rules, each with its own table: retry backoff, base-image soak, build windows, resync delays."""

from datetime import UTC, datetime, timedelta

import pytest

from app.core.timing import retry_at, soak_ends, wake_after, window_start
from app.model.tags import Image


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


FAILED = utc("2026-11-20T12:00:00")


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(0, 1), (1, 1), (2, 2), (3, 4), (4, 8), (6, 32), (7, 60), (50, 60)],
)
def test_retry_backoff_doubles_from_one_minute_and_stops_at_an_hour(failures: int, delay: int) -> None:
    assert retry_at(FAILED, failures) == FAILED + timedelta(minutes=delay)


@pytest.mark.parametrize(
    ("min_age", "ends"),
    [
        (timedelta(0), "2026-11-20T08:00:00"),
        (timedelta(hours=24), "2026-11-21T08:00:00"),
        (timedelta(days=7, minutes=30), "2026-11-27T08:30:00"),
    ],
)
def test_soak_counts_from_the_base_images_creation_date(min_age: timedelta, ends: str) -> None:
    base = Image("ami-0base0000000000001", "available", utc("2026-11-20T08:00:00"))
    assert soak_ends(base, min_age) == utc(ends)


@pytest.mark.parametrize(
    ("schedule", "zone", "due", "start"),
    [
        # No schedule: at once.
        (None, "UTC", "2026-11-20T15:07:00", "2026-11-20T15:07:00"),
        # The first tick at or after the due moment; a tick exactly at it counts.
        ("0 2 * * *", "UTC", "2026-11-20T15:07:00", "2026-11-21T02:00:00"),
        ("0 2 * * *", "UTC", "2026-11-21T02:00:00", "2026-11-21T02:00:00"),
        ("0 2 * * *", "UTC", "2026-11-21T02:00:01", "2026-11-22T02:00:00"),
        # Weekdays only: due on Friday afternoon, built on Monday night (2026-11-20 is a Friday).
        ("0 2 * * 1-5", "UTC", "2026-11-20T15:00:00", "2026-11-23T02:00:00"),
        # Evaluated in the time zone: 02:00 in Berlin is 01:00 UTC in winter, 00:00 UTC in summer.
        ("0 2 * * *", "Europe/Berlin", "2026-11-20T15:00:00", "2026-11-21T01:00:00"),
        ("0 2 * * *", "Europe/Berlin", "2026-07-01T15:00:00", "2026-07-02T00:00:00"),
        ("30 9 * * *", "America/New_York", "2026-11-20T00:00:00", "2026-11-20T14:30:00"),
        # Spring forward (Berlin, 2026-03-29 02:00 -> 03:00): a tick in the skipped hour runs at the
        # first minute that exists, once.
        ("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00", "2026-03-29T01:00:00"),
        # Fall back (Berlin, 2026-10-25 03:00 -> 02:00): a tick in the repeated hour runs once, the first time.
        ("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00", "2026-10-25T00:30:00"),
        ("30 2 * * *", "Europe/Berlin", "2026-10-25T00:31:00", "2026-10-26T01:30:00"),
        # Day of month and day of week both restricted: either matches (cron's OR rule).
        ("0 3 1 * 0", "UTC", "2026-11-20T00:00:00", "2026-11-22T03:00:00"),
    ],
)
def test_window_start_is_the_first_tick_at_or_after_the_due_moment(
    schedule: str | None, zone: str, due: str, start: str
) -> None:
    assert window_start(schedule, zone, utc(due)) == utc(start)


NOW = utc("2026-11-20T12:00:00")


@pytest.mark.parametrize(
    ("moments", "seconds"),
    [
        ((), 300),
        ((None,), 300),
        ((NOW + timedelta(seconds=90),), 90),
        ((NOW + timedelta(hours=2),), 300),
        ((NOW - timedelta(seconds=5),), 300),  # the past does not wake anyone
        ((NOW + timedelta(seconds=200), NOW + timedelta(seconds=40), None), 40),
        ((NOW + timedelta(milliseconds=200),), 1),
    ],
)
def test_wake_after_is_the_earliest_future_moment_capped_by_the_timer(
    moments: tuple[datetime | None, ...], seconds: int
) -> None:
    assert wake_after(NOW, 300, *moments) == seconds
