"""Removal in stages over real HTTP (uvicorn) against a real moto EC2 and SSM, time moved by a clock.

moto implements DisableImage and EnableImage (the AMI's state becomes `disabled`); it has neither
lastLaunchedTime nor deregistration protection, so EC2's answers to those are given on the wire, at the
last moment before botocore would send the request.
"""

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest

from app.aws.ec2 import Ec2
from app.aws.image_index import IndexedImages
from app.main import create_app
from app.model.settings import Settings
from app.model.tags import format_timestamp
from tests.aws import REGION, ec2_client, ec2_response, register_built_ami, tags_of
from tests.builders import Clock, build_pod, parent, request, succeeded
from tests.http import serve
from tests.integration.test_retention import (
    PARAMETER,
    conditions,
    exists,
    mine,
    parameters_of,
    snapshot_exists,
    snapshots,
    spec,
    sync,
)

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

WEEK = timedelta(hours=168)
# Long enough that no rebuild is due while the clock moves on: these tests are about the older AMIs.
EXPIRES = {"expiresIn": "2160h", "controllerTimer": "5m"}


def state(client: "EC2Client", image_id: str) -> str:
    (image,) = client.describe_images(ImageIds=[image_id])["Images"]
    return image["State"]


def older(client: "EC2Client", raw: dict[str, Any], name: str, created: datetime, **tags: str) -> str:
    fields = {"status": "deprecated", "create-timestamp": format_timestamp(created), **tags}
    return register_built_ami(client, name, tags=mine(raw, **fields))


class Builder:
    """One PackerBuilder's syncs against one hook: its status carried from answer to answer."""

    def __init__(self, raw: dict[str, Any], clock: Clock) -> None:
        self.raw = raw
        self.clock = clock
        self.status: dict[str, Any] = {}
        self.jobs: list[dict[str, Any]] = []
        self.pods: list[dict[str, Any]] = []

    def build(self, url: str, client: "EC2Client", name: str) -> dict[str, Any]:
        """Ask for a build, let Packer make `name`, and sync once more: the answer recording it."""
        first = sync(url, request(parent(self.raw, status=self.status)))
        (job,) = [c for c in first["children"] if c["metadata"]["name"] not in self._names()]
        built = register_built_ami(client, name)
        done = succeeded(job, self.clock.now - timedelta(minutes=20), self.clock.now - timedelta(minutes=1))
        self.status, self.jobs, self.pods = first["status"], [done], [build_pod(done, f"{REGION}:{built}")]
        return self.sync(url)

    def sync(self, url: str) -> dict[str, Any]:
        answer = sync(url, request(parent(self.raw, status=self.status), self.jobs, self.pods))
        self.status = answer["status"]
        return answer

    def _names(self) -> set[str]:
        return {j["metadata"]["name"] for j in self.jobs}


def indexed() -> IndexedImages:
    """The hook's production source: the shared index, exact reads before acting, writes through."""
    return IndexedImages(Ec2(), period=3600, base_period=3600, stale_after=7200)


@pytest.fixture
def client(ec2_env: str) -> "EC2Client":
    return ec2_client(ec2_env)


def test_disable_for_disables_first_keeps_the_clock_across_a_restart_then_removes(
    ec2_env: str, client: "EC2Client"
) -> None:
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    raw = spec(retention={"keep": 1, "disableFor": "168h"}, timeOuts=EXPIRES)
    old = older(client, raw, "older", clock.now - timedelta(days=3))
    old_snapshots = snapshots(client, old)
    builder = Builder(raw, clock)

    with serve(create_app(Settings(), images=indexed(), clock=clock)) as url:
        built = builder.build(url, client, "opsy-new")
        assert built["status"]["lastRunBuiltImageID"] != old
        # Beyond keep 1: disabled, not removed; nothing launches from it, EnableImage would bring it back.
        assert state(client, old) == "disabled"
        disabled_at = clock.now
        assert tags_of(client, old)["disabled-at"] == format_timestamp(disabled_at)
        assert all(snapshot_exists(client, s) for s in old_snapshots)

        waiting = builder.sync(url)
        message = (
            f"Waiting: {old} in {REGION} (disabled since {format_timestamp(disabled_at)}): "
            f"removed after {format_timestamp(disabled_at + WEEK)}"
        )
        assert conditions(waiting)["RetentionPending"]["message"] == message

        clock.now += timedelta(hours=100)  # before the duration
        later = builder.sync(url)
        assert state(client, old) == "disabled"
        assert conditions(later)["RetentionPending"]["message"] == message

    # A restarted hook reads the clock from the AMI's tag: it does not start again.
    clock.now += timedelta(hours=67)
    with serve(create_app(Settings(), images=indexed(), clock=clock)) as url:
        assert conditions(builder.sync(url))["RetentionPending"]["message"] == message
        clock.now += timedelta(hours=2)  # after the duration (169 h disabled)
        after = builder.sync(url)

    assert not exists(client, old)
    assert not any(snapshot_exists(client, s) for s in old_snapshots)
    assert "RetentionPending" not in conditions(after)
    assert conditions(after)["Ready"]["status"] == "True"


def test_an_ami_disabled_by_retention_comes_back_when_it_is_needed_again(
    ec2_env: str, client: "EC2Client"
) -> None:
    """Published by hand, then within a raised keep: enabled, its clock dropped; otherwise disabled anew."""
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    raw = spec(
        retention={"keep": 1, "disableFor": "168h"}, publish={"ssmParameter": PARAMETER}, timeOuts=EXPIRES
    )
    old = older(client, raw, "older", clock.now - timedelta(days=3))
    builder = Builder(raw, clock)
    ssm = boto3.session.Session().client("ssm", region_name=REGION, endpoint_url=ec2_env)

    with serve(create_app(Settings(), images=Ec2(), clock=clock)) as url:
        built = builder.build(url, client, "opsy-new")
        new = built["status"]["lastRunBuiltImageID"]
        assert state(client, old) == "disabled"

        # A person points the parameter back at the old AMI (a rollback): it must launch.
        ssm.put_parameter(Name=PARAMETER, Value=old, Type="String", Overwrite=True)
        clock.now += timedelta(hours=1)
        builder.sync(url)
        assert state(client, old) == "available"
        assert "disabled-at" not in tags_of(client, old)
        assert parameters_of(ec2_env) == {PARAMETER: new}  # the hook's own parameter follows its current AMI

        # No longer named: beyond keep again, disabled again, with a new clock.
        clock.now += timedelta(hours=1)
        builder.sync(url)
        assert state(client, old) == "disabled"
        assert tags_of(client, old)["disabled-at"] == format_timestamp(clock.now)

        # keep raised to 2: the old AMI is among the newest 2, wanted again.
        builder.raw = spec(
            retention={"keep": 2, "disableFor": "168h"}, publish={"ssmParameter": PARAMETER}, timeOuts=EXPIRES
        )
        clock.now += timedelta(hours=1)
        answer = builder.sync(url)
        assert state(client, old) == "available"
        assert "disabled-at" not in tags_of(client, old)
        assert "RetentionPending" not in conditions(answer)


def test_without_disable_for_an_older_ami_is_removed_at_once(ec2_env: str, client: "EC2Client") -> None:
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    raw = spec(retention={"keep": 1}, timeOuts=EXPIRES)
    old = older(client, raw, "older", clock.now - timedelta(days=3))

    with serve(create_app(Settings(), images=Ec2(), clock=clock)) as url:
        Builder(raw, clock).build(url, client, "opsy-new")

    assert not exists(client, old)


# -- unusedFor: EC2's lastLaunchedTime, given on the wire -------------------------------------------------------------


class LastLaunches:
    """Answers DescribeImageAttribute (lastLaunchedTime) per AMI as EC2 would; counts what was asked."""

    def __init__(self, session: boto3.session.Session) -> None:
        self.launched: dict[str, datetime | None] = {}
        self.asked: list[str] = []
        session.events.register("before-send.ec2.DescribeImageAttribute", self._answer)

    def _answer(self, request: AWSPreparedRequest, **_: Any) -> Any:  # returned: sent instead
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        (image_id,) = parse_qs(body)["ImageId"]
        self.asked.append(image_id)
        launched = self.launched.get(image_id)
        value = f"<value>{format_timestamp(launched)}</value>" if launched is not None else ""
        return ec2_response(
            200,
            "<DescribeImageAttributeResponse><requestId>r</requestId>"
            f"<imageId>{image_id}</imageId><lastLaunchedTime>{value}</lastLaunchedTime>"
            "</DescribeImageAttributeResponse>",
        )


@pytest.fixture
def session(ec2_env: str) -> boto3.session.Session:
    return boto3.session.Session()


def test_unused_for_keeps_an_ami_launched_recently_and_removes_the_others(
    ec2_env: str, client: "EC2Client", session: boto3.session.Session
) -> None:
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    raw = spec(retention={"keep": 1, "unusedFor": "720h"}, timeOuts=EXPIRES)
    recent = older(client, raw, "launched-recently", clock.now - timedelta(days=40))
    long_ago = older(client, raw, "launched-long-ago", clock.now - timedelta(days=50))
    never = older(client, raw, "never-launched", clock.now - timedelta(days=60))
    launches = LastLaunches(session)
    launches.launched = {
        recent: clock.now - timedelta(days=2),
        long_ago: clock.now - timedelta(days=31),
        never: None,
    }

    with serve(create_app(Settings(), images=Ec2(session=session), clock=clock)) as url:
        answer = Builder(raw, clock).build(url, client, "opsy-new")

    assert sorted(launches.asked) == sorted([recent, long_ago, never])  # only AMIs about to go, once each
    assert exists(client, recent)
    assert not exists(client, long_ago)
    assert not exists(client, never)
    skipped = conditions(answer)["RetentionSkipped"]
    assert skipped["message"] == (
        f"Kept because in use {recent} in {REGION} (last launched "
        f"{format_timestamp(clock.now - timedelta(days=2))}, within retention.unusedFor)"
    )


def test_unused_for_counts_an_ami_as_used_when_its_last_launch_cannot_be_read(
    ec2_env: str, client: "EC2Client"
) -> None:
    """moto itself: it has no lastLaunchedTime and answers with a server error."""
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    raw = spec(retention={"keep": 1, "disableFor": "168h", "unusedFor": "720h"}, timeOuts=EXPIRES)
    old = older(client, raw, "older", clock.now - timedelta(days=40))

    with serve(create_app(Settings(), images=Ec2(max_attempts=1), clock=clock)) as url:
        answer = Builder(raw, clock).build(url, client, "opsy-new")

    assert state(client, old) == "available"
    assert "disabled-at" not in tags_of(client, old)
    failed = conditions(answer)["RetentionFailed"]["message"]
    assert failed.startswith(
        f"Could not disable {old} in {REGION}: could not check when it was last launched"
    )
    assert conditions(answer)["Ready"]["status"] == "True"


# -- protect: deregistration protection, given on the wire ----------------------------------------------------------


def test_protect_turns_protection_on_for_the_current_ami(
    ec2_env: str, client: "EC2Client", session: boto3.session.Session
) -> None:
    protected: list[str] = []

    def answer(request: AWSPreparedRequest, **_: Any) -> Any:  # returned: sent instead
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        protected.extend(parse_qs(body)["ImageId"])
        return ec2_response(
            200,
            "<EnableImageDeregistrationProtectionResponse><requestId>r</requestId>"
            "<return>enabled-without-cooldown</return></EnableImageDeregistrationProtectionResponse>",
        )

    session.events.register("before-send.ec2.EnableImageDeregistrationProtection", answer)
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    raw = spec(retention={"protect": True}, timeOuts=EXPIRES)

    with serve(create_app(Settings(), images=Ec2(session=session), clock=clock)) as url:
        built = Builder(raw, clock).build(url, client, "opsy-new")

    assert protected == [built["status"]["lastRunBuiltImageID"]]
    assert "ProtectionNotSet" not in conditions(built)
