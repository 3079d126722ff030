"""carry_out against an in-memory EC2: which calls it makes and in what order, what a failure stops or
spares, the reports and logs a user sees, and the conditions those reports become."""

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import pytest

from app.aws.carry_out import carry_out
from app.aws.ec2 import AwsError, ImageSource
from app.core import conditions as cond
from app.core.base_image import BaseLookup, BaseSource
from app.core.effects import (
    Deprecate,
    Deregister,
    Disable,
    Effect,
    Enable,
    Protect,
    Publish,
    Report,
    Result,
    TagImages,
)
from app.core.lifecycle import report_conditions
from app.model.spec import ConditionStatus
from app.model.tags import Image
from tests.builders import T0

HOME, COPY = "us-west-2", "eu-west-1"
BUILDER = "web"
REASON = "older than the newest 2 x86_64 AMIs"
MANAGED = (("packer.example.com/builder", BUILDER),)

Call = tuple[str, str, str]
"""method, region, the ids it was given (joined by commas)."""


class FakeEc2:
    """Records every call in order; `fail` makes a method raise for all calls, one region or one id."""

    def exact(self) -> "FakeEc2":
        return self

    def stale(self, region: str) -> str:
        return ""

    def __init__(
        self, users: Mapping[str, str] | None = None, launched: Mapping[str, datetime] | None = None
    ) -> None:
        self.users = dict(users or {})
        self.launched = dict(launched or {})
        self.calls: list[Call] = []
        self.snapshot_tags: list[dict[str, str]] = []
        self.image_tags: list[dict[str, str]] = []
        self._failures: dict[tuple[str, str], AwsError] = {}

    def fail(self, method: str, code: str, on: str = "*", *, temporary: bool = False) -> "FakeEc2":
        self._failures[(method, on)] = AwsError(code, f"{method} refused", temporary=temporary)
        return self

    def _call(self, method: str, region: str, *ids: str) -> None:
        self.calls.append((method, region, ",".join(ids)))
        for on in ("*", region, *ids):
            if (method, on) in self._failures:
                raise self._failures[(method, on)]

    def base_image(self, region: str, source: BaseSource) -> BaseLookup:
        raise AssertionError("carry_out only writes")

    def managed_images(self, region: str, tags: Mapping[str, str]) -> list[Image]:
        raise AssertionError("carry_out only writes")

    def images_by_id(self, region: str, image_ids: Sequence[str]) -> list[Image]:
        raise AssertionError("carry_out only writes")

    def parameter_value(self, region: str, name: str) -> str | None:
        raise AssertionError("carry_out only writes")

    def parameter_owner(self, region: str, name: str) -> str:
        raise AssertionError("carry_out only writes")

    def tag_images(self, region: str, image_ids: Sequence[str], tags: Mapping[str, str]) -> None:
        self.image_tags.append(dict(tags))
        self._call("tag_images", region, *image_ids)

    def untag_images(self, region: str, image_ids: Sequence[str], keys: Sequence[str]) -> None:
        self._call("untag_images", region, *image_ids, *keys)

    def last_launched(self, region: str, image_id: str) -> datetime | None:
        self._call("last_launched", region, image_id)
        return self.launched.get(image_id)

    def disable_image(self, region: str, image_id: str) -> None:
        self._call("disable_image", region, image_id)

    def enable_image(self, region: str, image_id: str) -> None:
        self._call("enable_image", region, image_id)

    def set_deregistration_protection(self, region: str, image_id: str, enabled: bool) -> None:
        self._call("protect" if enabled else "unprotect", region, image_id)

    def enable_deprecation(self, region: str, image_id: str, at: datetime) -> None:
        self._call("enable_deprecation", region, image_id)

    def put_parameter(
        self,
        region: str,
        name: str,
        image_id: str,
        *,
        owner: Mapping[str, str] | None = None,
        create: bool = False,
    ) -> None:
        self._call("put_parameter", region, image_id)

    def delete_parameter(self, region: str, name: str) -> None:
        self._call("delete_parameter", region, name)

    def images_in_use(self, region: str, image_ids: Sequence[str]) -> dict[str, str]:
        self._call("images_in_use", region, *image_ids)
        return {i: self.users[i] for i in image_ids if i in self.users}

    def tag_snapshots(self, region: str, snapshot_ids: Sequence[str], tags: Mapping[str, str]) -> None:
        self.snapshot_tags.append(dict(tags))
        self._call("tag_snapshots", region, *snapshot_ids)

    def deregister_image(self, region: str, image_id: str) -> None:
        self._call("deregister_image", region, image_id)

    def delete_snapshot(self, region: str, snapshot_id: str) -> None:
        self._call("delete_snapshot", region, snapshot_id)


def removal(image_id: str, *snapshots: str, region: str = HOME, skip_in_use: bool = True) -> Deregister:
    return Deregister(region, image_id, snapshots, REASON, skip_in_use, MANAGED)


def run(aws: FakeEc2, *effects: Effect) -> list[Report]:
    source: ImageSource = aws
    return carry_out(source, effects, BUILDER)


def logged(caplog: pytest.LogCaptureFixture, level: int, *parts: str) -> bool:
    """Whether one record of `level` from carry_out names every part."""
    return any(
        r.name == "app.aws.carry_out" and r.levelno == level and all(p in r.getMessage() for p in parts)
        for r in caplog.records
    )


TAG = TagImages(HOME, ("ami-new",), (("Status", "active"),))
DEPRECATE = Deprecate(HOME, "ami-new", T0)
PUBLISH = Publish(HOME, "/images/web/x86_64", "ami-new")
OLD = removal("ami-old", "snap-1", "snap-2")
EVERYTHING = (TAG, DEPRECATE, PUBLISH, OLD)
ALL_CALLS = [
    ("tag_images", HOME, "ami-new"),
    ("enable_deprecation", HOME, "ami-new"),
    ("put_parameter", HOME, "ami-new"),
    ("images_in_use", HOME, "ami-old"),
    ("tag_snapshots", HOME, "snap-1,snap-2"),
    ("deregister_image", HOME, "ami-old"),
    ("delete_snapshot", HOME, "snap-1"),
    ("delete_snapshot", HOME, "snap-2"),
]


@pytest.mark.parametrize("temporary", [True, False])
def test_failed_tagging_raises_and_nothing_after_it_is_attempted(temporary: bool) -> None:
    aws = FakeEc2().fail("tag_images", "RequestLimitExceeded", temporary=temporary)
    with pytest.raises(AwsError) as raised:
        run(aws, *EVERYTHING)
    assert (raised.value.code, raised.value.temporary) == ("RequestLimitExceeded", temporary)
    assert aws.calls == [("tag_images", HOME, "ami-new")]


def test_everything_done_in_order_and_no_condition(caplog: pytest.LogCaptureFixture) -> None:
    aws = FakeEc2()
    reports = run(aws, *EVERYTHING)
    assert aws.calls == ALL_CALLS
    assert aws.snapshot_tags == [dict(MANAGED)]
    assert reports == [Report(effect, Result.done) for effect in EVERYTHING]
    assert report_conditions(reports) == []
    assert not logged(caplog, logging.WARNING)


@pytest.mark.parametrize(
    ("method", "failing", "calls", "condition", "names"),
    [
        ("enable_deprecation", DEPRECATE, ALL_CALLS, cond.DEPRECATION_NOT_SET, "ami-new in us-west-2"),
        (
            "put_parameter",
            PUBLISH,
            ALL_CALLS,
            cond.PUBLISH_FAILED,
            "ami-new to /images/web/x86_64 in us-west-2",
        ),
        ("deregister_image", OLD, ALL_CALLS[:-2], cond.RETENTION_FAILED, "ami-old in us-west-2"),
    ],
)
def test_a_later_effect_fails_alone(
    caplog: pytest.LogCaptureFixture,
    method: str,
    failing: Effect,
    calls: list[Call],
    condition: str,
    names: str,
) -> None:
    aws = FakeEc2().fail(method, "UnauthorizedOperation")
    reports = run(aws, *EVERYTHING)
    assert aws.calls == calls
    assert [r.result for r in reports] == [Result.failed if e is failing else Result.done for e in EVERYTHING]
    assert "AWS UnauthorizedOperation" in next(r.detail for r in reports if r.effect is failing)
    assert [(w.type, w.status) for w in report_conditions(reports)] == [(condition, ConditionStatus.true)]
    assert names in report_conditions(reports)[0].message
    assert logged(caplog, logging.WARNING, "UnauthorizedOperation")


def test_in_use_checked_once_per_region_before_any_removal(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    aws = FakeEc2(users={"ami-b": "instance i-0abc (running)"})
    a, b, c = removal("ami-a", "snap-a"), removal("ami-b", "snap-b"), removal("ami-c", region=COPY)
    reports = run(aws, TAG, a, b, c)
    assert aws.calls == [
        ("tag_images", HOME, "ami-new"),
        ("images_in_use", COPY, "ami-c"),
        ("images_in_use", HOME, "ami-a,ami-b"),
        ("tag_snapshots", HOME, "snap-a"),
        ("deregister_image", HOME, "ami-a"),
        ("delete_snapshot", HOME, "snap-a"),
        ("deregister_image", COPY, "ami-c"),
    ]
    assert reports[1:] == [
        Report(a, Result.done),
        Report(b, Result.skipped, "used by instance i-0abc (running)"),
        Report(c, Result.done),
    ]
    assert logged(caplog, logging.INFO, "ami-b", HOME, "i-0abc")
    [skipped] = report_conditions(reports)
    assert (skipped.type, skipped.reason) == (cond.RETENTION_SKIPPED, "InUse")
    assert "ami-b in us-west-2 (used by instance i-0abc (running))" in skipped.message


def test_unknown_use_fails_every_removal_in_that_region_only(caplog: pytest.LogCaptureFixture) -> None:
    aws = FakeEc2().fail("images_in_use", "RequestLimitExceeded", on=HOME, temporary=True)
    a, b, c = removal("ami-a", "snap-a"), removal("ami-b"), removal("ami-c", "snap-c", region=COPY)
    reports = run(aws, a, b, c)
    assert not [call for call in aws.calls if call[1] == HOME and call[0] != "images_in_use"]
    assert ("deregister_image", COPY, "ami-c") in aws.calls
    assert [r.result for r in reports] == [Result.failed, Result.failed, Result.done]
    assert all("AWS RequestLimitExceeded" in r.detail for r in reports[:2])
    assert logged(caplog, logging.WARNING, "ami-a", HOME, "RequestLimitExceeded")
    assert logged(caplog, logging.WARNING, "ami-b", HOME, "RequestLimitExceeded")
    [failed] = report_conditions(reports)
    assert failed.type == cond.RETENTION_FAILED
    assert "ami-a in us-west-2: could not check its use: AWS RequestLimitExceeded" in failed.message
    assert "ami-b in us-west-2: could not check its use: AWS RequestLimitExceeded" in failed.message


def test_without_skip_in_use_nothing_is_asked_and_a_used_ami_goes() -> None:
    aws = FakeEc2(users={"ami-old": "instance i-0abc (running)"})
    reports = run(aws, removal("ami-old", skip_in_use=False))
    assert aws.calls == [("deregister_image", HOME, "ami-old")]
    assert [r.result for r in reports] == [Result.done]


TAGGED, GONE = "tag_snapshots snap-1,snap-2", "deregister_image ami-old"
DELETED = ["delete_snapshot snap-1", "delete_snapshot snap-2"]


@pytest.mark.parametrize(
    ("method", "on", "calls", "detail"),
    [
        (None, "*", [TAGGED, GONE, *DELETED], ""),
        ("tag_snapshots", "*", [TAGGED], "AWS UnauthorizedOperation: tag_snapshots refused"),
        ("deregister_image", "*", [TAGGED, GONE], "AWS UnauthorizedOperation: deregister_image refused"),
        (
            "delete_snapshot",
            "snap-1",
            [TAGGED, GONE, *DELETED],
            "deregistered, but snapshots left to delete by hand: snap-1 (UnauthorizedOperation)",
        ),
    ],
)
def test_removal_order_per_ami(method: str | None, on: str, calls: list[str], detail: str) -> None:
    aws = FakeEc2()
    if method is not None:
        aws.fail(method, "UnauthorizedOperation", on=on)
    [report] = run(aws, removal("ami-old", "snap-1", "snap-2", skip_in_use=False))
    assert [f"{name} {ids}" for name, _, ids in aws.calls] == calls
    assert aws.snapshot_tags == [dict(MANAGED)]
    assert (report.result, report.detail) == (Result.failed if detail else Result.done, detail)


def test_removals_and_their_failures_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    aws = FakeEc2().fail("delete_snapshot", "InvalidSnapshot.InUse", on="snap-2")
    aws.fail("deregister_image", "InvalidAMIID.Unavailable", on="ami-gone")
    run(aws, removal("ami-old", "snap-1", "snap-2"), removal("ami-gone", "snap-3", region=COPY))
    assert logged(caplog, logging.INFO, "deregistered", "ami-old", HOME, REASON)
    assert logged(caplog, logging.INFO, "deleted snapshot snap-1", "ami-old", HOME)
    assert logged(caplog, logging.WARNING, "snap-2", "ami-old", HOME, "InvalidSnapshot.InUse")
    assert logged(caplog, logging.WARNING, "ami-gone", COPY, "InvalidAMIID.Unavailable")
    assert not logged(caplog, logging.INFO, "deregistered", "ami-gone")
    assert not logged(caplog, logging.INFO, "snap-3")


# -- removal in stages ------------------------------------------------------------------------------------------

SINCE = T0 - timedelta(days=30)


def disabling(image_id: str, *, unused_since: datetime | None = None, already: bool = False) -> Disable:
    return Disable(HOME, image_id, T0, REASON, not already, unused_since, already_disabled=already)


def test_disabling_records_the_time_first_then_disables() -> None:
    aws = FakeEc2()
    reports = run(aws, TAG, disabling("ami-old"))
    assert aws.calls == [
        ("tag_images", HOME, "ami-new"),
        ("images_in_use", HOME, "ami-old"),
        ("tag_images", HOME, "ami-old"),
        ("disable_image", HOME, "ami-old"),
    ]
    assert aws.image_tags[-1] == {"disabled-at": "2026-11-20T12:00:00Z"}
    assert [r.result for r in reports] == [Result.done, Result.done]


def test_an_ami_disabled_elsewhere_only_gets_its_time_and_nothing_is_checked() -> None:
    aws = FakeEc2(users={"ami-old": "instance i-0abc (running)"})
    [report] = run(aws, disabling("ami-old", already=True))
    assert aws.calls == [("tag_images", HOME, "ami-old")]
    assert report.result is Result.done


def test_a_failed_disabling_is_a_retention_failure_and_nothing_is_disabled_untimed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    aws = FakeEc2().fail("tag_images", "UnauthorizedOperation", on="ami-old")
    [report] = run(aws, disabling("ami-old"))
    assert ("disable_image", HOME, "ami-old") not in aws.calls
    [failed] = report_conditions([report])
    assert failed.type == cond.RETENTION_FAILED
    assert failed.message.startswith("Could not disable ami-old in us-west-2: AWS UnauthorizedOperation")
    assert logged(caplog, logging.WARNING, "ami-old", "UnauthorizedOperation")


def test_one_in_use_check_per_region_covers_disabling_and_removal() -> None:
    aws = FakeEc2(users={"ami-a": "instance i-0abc (running)"})
    reports = run(aws, disabling("ami-a"), removal("ami-b"))
    assert aws.calls[0] == ("images_in_use", HOME, "ami-a,ami-b")
    assert [r.result for r in reports] == [Result.skipped, Result.done]
    [skipped] = report_conditions(reports)
    assert skipped.type == cond.RETENTION_SKIPPED
    assert "ami-a in us-west-2 (used by instance i-0abc (running))" in skipped.message


@pytest.mark.parametrize(
    ("launched", "result", "detail"),
    [
        (
            SINCE + timedelta(days=1),
            Result.skipped,
            "last launched 2026-10-22T12:00:00Z, within retention.unusedFor",
        ),
        (SINCE, Result.done, ""),
        (None, Result.done, ""),
    ],
    ids=["launched-within", "launched-exactly-that-long-ago", "never-launched"],
)
def test_a_step_waits_for_unused_for_after_the_last_launch_ec2_reports(
    launched: datetime | None, result: Result, detail: str
) -> None:
    aws = FakeEc2(launched={"ami-old": launched} if launched else {})
    [report] = run(aws, disabling("ami-old", unused_since=SINCE))
    assert ("last_launched", HOME, "ami-old") in aws.calls
    assert (report.result, report.detail) == (result, detail)
    assert (("disable_image", HOME, "ami-old") in aws.calls) is (result is Result.done)


def test_an_unknown_last_launch_counts_as_used(caplog: pytest.LogCaptureFixture) -> None:
    aws = FakeEc2().fail("last_launched", "RequestLimitExceeded", temporary=True)
    step = Deregister(HOME, "ami-old", ("snap-1",), REASON, True, MANAGED, SINCE)
    [report] = run(aws, step)
    assert [name for name, _, _ in aws.calls] == ["images_in_use", "last_launched"]
    [failed] = report_conditions([report])
    assert failed.type == cond.RETENTION_FAILED
    assert (
        "remove ami-old in us-west-2: could not check when it was last launched: AWS RequestLimitExceeded"
        in (failed.message)
    )
    assert logged(caplog, logging.WARNING, "ami-old", "RequestLimitExceeded")


def test_a_used_ami_is_not_asked_about_its_last_launch() -> None:
    aws = FakeEc2(users={"ami-old": "instance i-0abc (running)"})
    run(aws, disabling("ami-old", unused_since=SINCE))
    assert [name for name, _, _ in aws.calls] == ["images_in_use"]


def test_enabling_again_drops_the_clock_and_a_failure_says_what_is_needed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    enable = Enable(HOME, "ami-back", "needed again: it is current or published")
    aws = FakeEc2()
    assert run(aws, enable) == [Report(enable, Result.done)]
    assert aws.calls == [("enable_image", HOME, "ami-back"), ("untag_images", HOME, "ami-back,disabled-at")]
    assert logged(caplog, logging.INFO, "enabled ami-back", "current or published")

    [report] = run(FakeEc2().fail("enable_image", "UnauthorizedOperation"), enable)
    [failed] = report_conditions([report])
    assert failed.type == cond.RETENTION_FAILED
    assert failed.message == (
        "Could not enable ami-back in us-west-2 again (needed again: it is current or published): "
        "AWS UnauthorizedOperation: enable_image refused"
    )


def test_protection_on_and_off_and_a_failure_is_its_own_condition() -> None:
    on, off = Protect(HOME, "ami-new", True), Protect(HOME, "ami-old", False)
    aws = FakeEc2()
    assert [r.result for r in run(aws, on, off)] == [Result.done, Result.done]
    assert aws.calls == [("protect", HOME, "ami-new"), ("unprotect", HOME, "ami-old")]

    reports = run(FakeEc2().fail("unprotect", "InvalidResponse", temporary=True), on, off)
    [failed] = report_conditions(reports)
    assert (failed.type, failed.status) == (cond.PROTECTION_NOT_SET, ConditionStatus.true)
    assert failed.message == "Could not turn deregistration protection off for ami-old in us-west-2: " + (
        "AWS InvalidResponse: unprotect refused"
    )
