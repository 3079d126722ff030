"""EC2 faults injected for real under the running service: a build in flight is never lost, the hook answers
within Metacontroller's 10 s timeout, and the status names the AWS error."""

import copy
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from app.aws.ec2 import Ec2
from app.main import create_app
from app.model.settings import Settings
from app.model.tags import format_timestamp
from tests.aws import REGION, Sends, ec2_client, ec2_error, free_port, register_built_ami, tags_of
from tests.builders import build_pod, parent, request, running, succeeded
from tests.fakes.aws_proxy import AwsProxy
from tests.http import post, serve
from tests.seed import SEED_SPEC

# Production defaults: what a cluster would see.
SETTINGS = Settings()
HOOK_TIMEOUT = 10


@pytest.fixture
def first_job(ec2_env: str) -> dict[str, Any]:
    """The answer of a healthy hook to a new builder: the Job that is now running."""
    with serve(create_app(SETTINGS, images=Ec2())) as url:
        code, answer = post(f"{url}/sync", request(parent()))
    assert code == 200
    return dict(answer)


def sync_running(images: Ec2, first: dict[str, Any]) -> tuple[dict[str, Any], float]:
    job = first["children"][0]
    body = request(parent(status=first["status"]), [running(job, datetime.now(UTC) - timedelta(minutes=3))])
    with serve(create_app(SETTINGS, images=images)) as url:
        started = time.monotonic()
        code, answer = post(f"{url}/sync", body)
        elapsed = time.monotonic() - started
    assert code == 200, answer
    return dict(answer), elapsed


def aws_error(answer: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in answer["status"]["conditions"] if c["type"] == "AWSError")


def assert_build_kept(first: dict[str, Any], answer: dict[str, Any]) -> None:
    assert answer["children"] == first["children"]
    assert answer["status"]["jobName"] == first["status"]["jobName"]
    assert answer["status"]["jobStatus"] == "running"
    assert answer["resyncAfterSeconds"] <= 60


def test_unreachable_ec2(first_job: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", f"http://127.0.0.1:{free_port()}")
    answer, elapsed = sync_running(Ec2(), first_job)
    assert_build_kept(first_job, answer)
    assert aws_error(answer)["reason"] == "EndpointConnectionError"
    assert elapsed < HOOK_TIMEOUT


def test_throttled_ec2(first_job: dict[str, Any]) -> None:
    session = boto3.session.Session()
    throttle = Sends(session, "DescribeImages", ec2_error(503, "RequestLimitExceeded"))
    answer, elapsed = sync_running(Ec2(session=session), first_job)
    assert_build_kept(first_job, answer)
    assert aws_error(answer)["reason"] == "RequestLimitExceeded"
    assert throttle.count == SETTINGS.aws_max_attempts  # bounded retries, then the hook stops asking
    assert elapsed < HOOK_TIMEOUT


def test_access_denied(first_job: dict[str, Any]) -> None:
    session = boto3.session.Session()
    Sends(session, "DescribeImages", ec2_error(403, "UnauthorizedOperation"))
    answer, _ = sync_running(Ec2(session=session), first_job)
    assert_build_kept(first_job, answer)
    assert "UnauthorizedOperation" in aws_error(answer)["message"]
    assert "permanent" in aws_error(answer)["message"]


def test_slow_ec2(first_job: dict[str, Any], slow_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", slow_endpoint)
    answer, elapsed = sync_running(Ec2(), first_job)
    assert_build_kept(first_job, answer)
    assert aws_error(answer)["reason"] == "ReadTimeout"
    assert elapsed < HOOK_TIMEOUT


def test_tagging_failure_keeps_the_finished_job(ec2_env: str) -> None:
    """A failed CreateTags is not recorded as done: the Job stays and the next sync tags again."""
    session = boto3.session.Session()
    Sends(session, "CreateTags", ec2_error(503, "RequestLimitExceeded"))
    now = datetime.now(UTC)
    with serve(create_app(SETTINGS, images=Ec2(session=session))) as url:
        _, first = post(f"{url}/sync", request(parent()))
        job = first["children"][0]
        built = register_built_ami(ec2_client(ec2_env), "opsy-built")
        done = succeeded(job, now - timedelta(minutes=20), now - timedelta(minutes=1))
        code, answer = post(
            f"{url}/sync",
            request(parent(status=first["status"]), [done], [build_pod(done, f"us-west-2:{built}")]),
        )
    assert code == 200
    assert [c["metadata"]["name"] for c in answer["children"]] == [job["metadata"]["name"]]
    assert answer["status"].get("jobStatus") != "completed"
    assert aws_error(answer)["reason"] == "RequestLimitExceeded"


COPY_REGION = "eu-west-1"
PARAMETER = "/platform/ami/eks-al2023"


@pytest.fixture
def proxy(ec2_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsProxy]:
    """Every EC2 and SSM call of the hook goes through a proxy that can fail them in one region."""
    with AwsProxy(ec2_env).running() as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", running.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", running.url)
        yield running


def conditions(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in answer["status"]["conditions"]}


@pytest.mark.parametrize("operation", ["DescribeImages", "GetParameter"])
def test_an_outage_in_a_copy_region_degrades_only_that_region(
    proxy: AwsProxy, ec2_env: str, operation: str
) -> None:
    """spec.region decides builds, Ready and expiry; the copy region's tags, parameter and retention wait."""
    ec2, eu = ec2_client(ec2_env), ec2_client(ec2_env, COPY_REGION)  # straight to moto, not through the proxy
    ssm_eu = boto3.session.Session().client("ssm", region_name=COPY_REGION, endpoint_url=ec2_env)
    raw = copy.deepcopy(SEED_SPEC) | {"publish": {"ssmParameter": PARAMETER}, "retention": {"keep": 1}}
    now = datetime.now(UTC)
    with serve(create_app(SETTINGS, images=Ec2())) as url:
        _, first = post(f"{url}/sync", request(parent(raw)))
        (job,) = first["children"]
        built = register_built_ami(ec2, "opsy-new")
        copied = eu.copy_image(SourceImageId=built, SourceRegion=REGION, Name="opsy-new-copy")["ImageId"]
        done = succeeded(job, now - timedelta(minutes=20), now - timedelta(minutes=1))
        pod = build_pod(done, f"{REGION}:{built},{COPY_REGION}:{copied}")
        _, recorded = post(f"{url}/sync", request(parent(raw, status=first["status"]), [done], [pod]))
        assert tags_of(eu, copied)["status"] == "active"
        assert ssm_eu.get_parameter(Name=PARAMETER)["Parameter"]["Value"] == copied

        proxy.failing, proxy.failing_regions = frozenset({operation}), frozenset({COPY_REGION})
        expired = format_timestamp(now - timedelta(hours=49))
        ec2.create_tags(Resources=[built], Tags=[{"Key": "create-timestamp", "Value": expired}])
        code, answer = post(f"{url}/sync", request(parent(raw, status=recorded["status"]), [done], [pod]))

        assert code == 200, answer
        assert proxy.failed(operation) >= 1
        found = conditions(answer)
        assert "AWSError" not in found
        unavailable = found["RegionUnavailable"]
        assert unavailable["status"] == "True"
        assert COPY_REGION in unavailable["message"]
        assert operation in unavailable["message"]
        assert REGION not in unavailable["message"]
        # spec.region decides: its AMI expired, Ready says so, and the rebuild starts there.
        assert (found["Ready"]["status"], found["Ready"]["reason"]) == ("False", "AMIExpired")
        assert answer["status"]["state"] == "JobCreation"
        (rebuild,) = [c for c in answer["children"] if c["metadata"]["name"] != job["metadata"]["name"]]
        assert answer["status"]["jobName"] == rebuild["metadata"]["name"]
        # What the status knows of the region stays; nothing there was touched.
        assert answer["status"]["images"] == recorded["status"]["images"]
        assert tags_of(eu, copied)["status"] == "active"
        assert ssm_eu.get_parameter(Name=PARAMETER)["Parameter"]["Value"] == copied

        proxy.failing = frozenset()
        code, again = post(
            f"{url}/sync", request(parent(raw, status=answer["status"]), [done, running(rebuild)], [pod])
        )
        assert code == 200, again
        assert "RegionUnavailable" not in conditions(again)
        assert again["status"]["images"] == recorded["status"]["images"]
