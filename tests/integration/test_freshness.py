"""Issue 7 over real HTTP against moto: SSM base images, rebuild on a new base, windows, suspend, provenance."""

import copy
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from app.aws.ec2 import Ec2
from app.core.base_image import BaseImageMissing, ParameterSource
from app.main import create_app
from app.model.settings import Settings
from app.model.tags import Image, format_timestamp
from tests.aws import (
    NEWEST_EKS_130_X86,
    REGION,
    ec2_client,
    register_built_ami,
    tags_of,
)
from tests.builders import Clock, build_pod, parent, request, running, succeeded
from tests.http import post, serve
from tests.seed import SEED_SPEC

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

PARAMETER = "/platform/base/eks-1.30-al2023-x86_64"
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def ssm(ec2_env: str) -> "SSMClient":
    return boto3.session.Session().client("ssm", region_name=REGION, endpoint_url=ec2_env)


def put(ssm: "SSMClient", value: str, name: str = PARAMETER) -> None:
    ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)


def ssm_spec(**fields: Any) -> dict[str, Any]:
    spec = copy.deepcopy(SEED_SPEC)
    del spec["amiFilters"]
    spec["baseImage"] = {"ssmParameter": PARAMETER}
    spec.update(fields)
    return spec


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def hook(ec2_env: str, clock: Clock) -> Iterator[Callable[[dict[str, Any]], dict[str, Any]]]:
    # Direct EC2: each sync reads the parameter again, as the next one would after a background refresh.
    app = create_app(Settings(), images=Ec2(), clock=clock)
    with serve(app) as url:

        def sync(body: dict[str, Any]) -> dict[str, Any]:
            code, answer = post(f"{url}/sync", body)
            assert code == 200, answer
            return dict(answer)

        yield sync


def conditions(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in answer["status"]["conditions"]}


# -- the SSM adapter ---------------------------------------------------------------------------------------


def test_parameter_lookup_describes_the_ami_it_names(ec2_env: str, ssm: "SSMClient") -> None:
    put(ssm, NEWEST_EKS_130_X86)
    found = Ec2().base_image(REGION, ParameterSource(PARAMETER))
    assert isinstance(found, Image)
    assert found.image_id == NEWEST_EKS_130_X86
    assert found.creation_date == datetime(2024, 10, 24, 18, 5, 40, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, f"SSM parameter {PARAMETER} does not exist in {REGION}"),
        ("latest", f"SSM parameter {PARAMETER} holds 'latest', which is not an AMI id"),
        (
            "ami-0123456789abcdef0",
            f"SSM parameter {PARAMETER} names ami-0123456789abcdef0, which does not exist in {REGION}",
        ),
    ],
)
def test_parameter_without_a_usable_ami_is_missing(
    ec2_env: str, ssm: "SSMClient", value: str | None, reason: str
) -> None:
    if value is not None:
        put(ssm, value)
    assert Ec2().base_image(REGION, ParameterSource(PARAMETER)) == BaseImageMissing(reason)


# -- the hook over HTTP ------------------------------------------------------------------------------------


def test_a_builder_on_a_parameter_builds_on_the_ami_it_names(
    hook: Callable[[dict[str, Any]], dict[str, Any]], ssm: "SSMClient"
) -> None:
    put(ssm, NEWEST_EKS_130_X86)
    answer = hook(request(parent(ssm_spec())))
    (job,) = answer["children"]
    assert answer["status"]["lastRunBaseImageID"] == NEWEST_EKS_130_X86
    assert f"-var ami_id={NEWEST_EKS_130_X86} -var region={REGION}" in answer["status"]["command"]
    assert job["metadata"]["annotations"]["ami.refresh.ops/base-ami"] == NEWEST_EKS_130_X86


def test_a_missing_parameter_is_base_image_not_found_and_no_job(
    hook: Callable[[dict[str, Any]], dict[str, Any]], ec2_env: str
) -> None:
    answer = hook(request(parent(ssm_spec())))
    assert answer["children"] == []
    assert answer["status"]["state"] == "BaseImageNotFound"
    assert PARAMETER in conditions(answer)["BaseImageNotFound"]["message"]


def test_filters_and_parameter_together_are_an_invalid_spec(
    hook: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    spec = copy.deepcopy(SEED_SPEC) | {"baseImage": {"ssmParameter": PARAMETER}}
    answer = hook(request(parent(spec)))
    message = conditions(answer)["InvalidSpec"]["message"]
    assert "spec.amiFilters" in message
    assert "spec.baseImage" in message


def test_a_new_base_image_triggers_a_rebuild_after_its_soak(
    hook: Callable[[dict[str, Any]], dict[str, Any]], ssm: "SSMClient", ec2_env: str, clock: Clock
) -> None:
    """A builder whose AMI is current gets a new base in its parameter: reported, soaked, then rebuilt."""
    ec2 = ec2_client(ec2_env)
    spec = ssm_spec(rebuild={"onBaseImageChange": True, "minBaseImageAge": "24h"})
    put(ssm, NEWEST_EKS_130_X86)
    first = hook(request(parent(spec)))
    (job,) = first["children"]
    built = register_built_ami(ec2, "opsy-1")
    done = succeeded(job, clock.now - timedelta(minutes=30), clock.now - timedelta(minutes=5))
    recorded = hook(
        request(parent(spec, status=first["status"]), [done], [build_pod(done, f"{REGION}:{built}")])
    )
    assert tags_of(ec2, built)["base-ami"] == NEWEST_EKS_130_X86
    ready = hook(request(parent(spec, status=recorded["status"])))
    assert ready["children"] == []
    assert conditions(ready)["BaseImageOutdated"]["status"] == "False"

    newer = register_built_ami(ec2, "amazon-eks-node-al2023-x86_64-standard-1.30-v20261120")  # created now
    put(ssm, newer)
    soaking = hook(request(parent(spec, status=ready["status"])))
    outdated = conditions(soaking)["BaseImageOutdated"]
    assert soaking["children"] == []
    assert outdated["status"] == "True"
    assert newer in outdated["message"]
    assert "soaked" in outdated["message"]
    assert conditions(soaking)["Ready"]["status"] == "True"

    clock.now += timedelta(hours=25)
    rebuilding = hook(request(parent(spec, status=soaking["status"])))
    (rebuild,) = rebuilding["children"]
    assert rebuild["metadata"]["annotations"]["ami.refresh.ops/base-ami"] == newer
    assert rebuild["metadata"]["name"] != job["metadata"]["name"]
    assert tags_of(ec2, built)["status"] == "active"  # until the new one is tagged
    assert conditions(rebuilding)["Ready"]["status"] == "True"


def test_a_due_build_waits_for_its_window(
    hook: Callable[[dict[str, Any]], dict[str, Any]], ssm: "SSMClient", clock: Clock
) -> None:
    put(ssm, NEWEST_EKS_130_X86)
    clock.now = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)  # a Friday afternoon
    spec = ssm_spec(schedule="0 2 * * 1-5", timeZone="Europe/Berlin")
    body = parent(spec)
    body["metadata"]["creationTimestamp"] = format_timestamp(clock.now)
    waiting = hook(request(body))
    monday = "2026-11-23T01:00:00Z"  # 02:00 in Berlin
    assert waiting["children"] == []
    assert waiting["status"]["state"] == "Scheduled"
    assert waiting["status"]["nextBuildTime"] == monday
    assert monday in conditions(waiting)["Scheduled"]["message"]
    assert waiting["resyncAfterSeconds"] == 300

    body["status"] = waiting["status"]
    clock.now = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
    started = hook(request(body))
    assert len(started["children"]) == 1
    assert started["status"]["state"] == "JobCreation"


def test_suspend_keeps_the_running_build_and_starts_nothing_new(
    hook: Callable[[dict[str, Any]], dict[str, Any]], ssm: "SSMClient", clock: Clock
) -> None:
    put(ssm, NEWEST_EKS_130_X86)
    suspended = hook(request(parent(ssm_spec(suspend=True))))
    assert suspended["children"] == []
    assert suspended["status"]["state"] == "Suspended"
    assert conditions(suspended)["Suspended"]["status"] == "True"

    first = hook(request(parent(ssm_spec())))
    (job,) = first["children"]
    kept = hook(request(parent(ssm_spec(suspend=True), status=first["status"], generation=2), [running(job)]))
    assert kept["children"] == [job]

    resumed = hook(request(parent(ssm_spec(), status=suspended["status"], generation=3)))
    assert len(resumed["children"]) == 1


def test_the_commit_the_build_reports_is_tagged_on_the_ami(
    hook: Callable[[dict[str, Any]], dict[str, Any]], ssm: "SSMClient", ec2_env: str, clock: Clock
) -> None:
    ec2 = ec2_client(ec2_env)
    put(ssm, NEWEST_EKS_130_X86)
    first = hook(request(parent(ssm_spec())))
    (job,) = first["children"]
    built = register_built_ami(ec2, "opsy-2")
    done = succeeded(job, clock.now - timedelta(minutes=30), clock.now - timedelta(minutes=5))
    pod = build_pod(done, f"{REGION}:{built}\ncommit={SHA}\n")
    recorded = hook(request(parent(ssm_spec(), status=first["status"]), [done], [pod]))
    assert tags_of(ec2, built)["packer-repo-commit"] == SHA
    assert recorded["status"]["lastRunCommit"] == SHA
