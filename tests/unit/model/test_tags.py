"""The AMI tag contract's timestamps: every time the hook reads (AWS tags, Kubernetes objects, its own status)
comes out as an aware UTC datetime the hook can compute with, or as a ValueError for what is not a time."""

from datetime import UTC, datetime, timedelta

import pytest

from app.aws.ec2 import to_image
from app.core.observed import observe_job
from app.model.durations import MAX_DURATION
from app.model.tags import EARLIEST, LATEST, Image, parse_timestamp
from tests.builders import T0, managed_image

PAST_THE_CALENDAR = "9999-12-31T23:59:59-01:00"
"""10000-01-01T00:59:59Z: valid RFC 3339, and past the end of Python's calendar once moved to UTC."""


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2026-11-20T12:00:00Z", T0),
        ("2026-11-20T13:00:00+01:00", T0),
        ("2026-11-20T12:00:00.250Z", T0 + timedelta(milliseconds=250)),
        # Beyond the span the hook computes with (a tag "pinning" an AMI, a clock gone wrong): its nearest end.
        ("9999-12-31T00:00:00Z", LATEST),
        (PAST_THE_CALENDAR, LATEST),
        ("9000-01-01T00:00:01Z", LATEST),
        ("8999-12-31T23:59:59Z", LATEST - timedelta(seconds=1)),
        ("0001-01-01T00:00:00+01:00", EARLIEST),
        ("0001-01-01T00:00:00Z", EARLIEST),
        ("1969-12-31T23:59:59Z", EARLIEST),
    ],
)
def test_a_timestamp_is_read_as_utc_within_the_span_the_hook_computes_with(
    text: str, moment: datetime
) -> None:
    parsed = parse_timestamp(text)
    assert parsed == moment
    assert parsed.tzinfo == UTC


@pytest.mark.parametrize("text", ["", "yesterday", "2026-11-20T12:00:00", "10000-01-01T00:00:00Z"])
def test_what_is_not_an_rfc3339_time_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_timestamp(text)


@pytest.mark.parametrize("stamp", ["9999-12-31T00:00:00Z", PAST_THE_CALENDAR])
def test_an_ami_tagged_in_the_far_future_expires_at_the_end_of_the_span(stamp: str) -> None:
    image = managed_image("ami-0pinned", T0, extra={"create-timestamp": stamp})
    assert image.created_at == LATEST
    assert image.expires_at(MAX_DURATION) == LATEST + MAX_DURATION


def test_far_future_ec2_dates_are_read_the_same_way() -> None:
    image = Image("ami-0x", "available", parse_timestamp(PAST_THE_CALENDAR), "x")
    assert image.created_at == LATEST


def test_a_job_with_times_past_the_calendar_is_observed() -> None:
    job = observe_job(
        {
            "metadata": {"name": "j", "creationTimestamp": PAST_THE_CALENDAR},
            "status": {
                "startTime": PAST_THE_CALENDAR,
                "completionTime": PAST_THE_CALENDAR,
                "conditions": [
                    {"type": "Complete", "status": "True", "lastTransitionTime": PAST_THE_CALENDAR}
                ],
            },
        }
    )
    assert (job.created_at, job.started_at, job.finished_at) == (LATEST, LATEST, LATEST)


@pytest.mark.parametrize(("created", "moment"), [("not a date", EARLIEST), (PAST_THE_CALENDAR, LATEST)])
def test_an_ec2_creation_date_is_read_the_same_way_and_never_fails_a_listing(
    created: str, moment: datetime
) -> None:
    image = to_image({"ImageId": "ami-0x", "State": "available", "CreationDate": created})
    assert image.creation_date == moment
