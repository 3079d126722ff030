"""A recorded build stays what it was, whatever happens to its AMI or the base after it (issue 16, 2, 4, 5).

Over real HTTP against moto, with the hook's clock under the test's control.
"""

import copy
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from app.aws.ec2 import Ec2
from app.main import create_app
from app.model.settings import Settings
from tests.aws import NEWEST_EKS_130_X86, OLDEST_EKS_130_X86, REGION, ec2_client, register_built_ami
from tests.builders import Clock, build_pod, parent, request, succeeded
from tests.http import get, post, serve
from tests.seed import SEED_SPEC

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

BASE_PARAMETER = "/platform/base/eks-1.30-al2023-x86_64"

Sync = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def hook(ec2_env: str, clock: Clock) -> Iterator[tuple[Sync, str]]:
    with serve(create_app(Settings(), images=Ec2(), clock=clock)) as url:

        def sync(body: dict[str, Any]) -> dict[str, Any]:
            code, answer = post(f"{url}/sync", body)
            assert code == 200, answer
            return dict(answer)

        yield sync, url


@pytest.fixture
def ssm(ec2_env: str) -> "SSMClient":
    client = boto3.session.Session().client("ssm", region_name=REGION, endpoint_url=ec2_env)
    client.put_parameter(Name=BASE_PARAMETER, Value=NEWEST_EKS_130_X86, Type="String", Overwrite=True)
    return client


def ssm_spec(**fields: Any) -> dict[str, Any]:
    raw = copy.deepcopy(SEED_SPEC)
    del raw["amiFilters"]
    raw["baseImage"] = {"ssmParameter": BASE_PARAMETER}
    raw.update(fields)
    return raw


def conditions(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in answer["status"]["conditions"]}


def names(answer: dict[str, Any]) -> list[str]:
    return [c["metadata"]["name"] for c in answer["children"]]


def built_counter(url: str) -> float:
    code, body = get(f"{url}/metrics")
    assert code == 200
    for line in body.decode().splitlines():
        if line.startswith('packer_builder_builds_total{result="succeeded"}'):
            return float(line.split()[-1])
    return 0.0


def first_build(
    sync: Sync, raw: dict[str, Any], clock: Clock, ec2_env: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]:
    """A new builder's build, recorded: (answer, its Job, its Pod, the AMI)."""
    first = sync(request(parent(raw)))
    (job,) = first["children"]
    image_id = register_built_ami(ec2_client(ec2_env), "opsy-first")
    done = succeeded(job, clock.now - timedelta(minutes=20), clock.now - timedelta(minutes=1))
    pod = build_pod(done, f"{REGION}:{image_id}")
    answer = sync(request(parent(raw, status=first["status"]), [done], [pod]))
    assert answer["status"]["state"] == "AMICreated"
    return answer, done, pod, image_id


def test_a_current_ami_deregistered_by_hand_is_rebuilt_as_a_first_attempt(
    hook: tuple[Sync, str], clock: Clock, ec2_env: str
) -> None:
    """Defect 2: the recorded success stays a success; the vanished AMI means "no usable AMI"."""
    sync, _ = hook
    raw = copy.deepcopy(SEED_SPEC)
    raw["maxNumberOfJobs"] = 1
    recorded, job, pod, image_id = first_build(sync, raw, clock, ec2_env)
    assert names(recorded) == [job["metadata"]["name"]]  # kept as history

    ec2_client(ec2_env).deregister_image(ImageId=image_id)
    clock.now += timedelta(minutes=30)  # well past the artifact grace
    answer = sync(request(parent(raw, status=recorded["status"]), [job], [pod]))

    status = answer["status"]
    assert status["state"] == "JobCreation"
    assert status["failedJobCount"] == 0
    assert status["lastRunMessage"].endswith("(attempt 1 of 1)")
    assert "MaxFailedJobsReached" not in conditions(answer)
    assert conditions(answer)["Ready"]["reason"] == "NoActiveAMI"
    (new,) = [n for n in names(answer) if n != job["metadata"]["name"]]
    assert status["jobName"] == new

    # The next sync, with the new Job running, still counts no failure.
    again = sync(request(parent(raw, status=status), [job], [pod]))
    assert again["status"]["failedJobCount"] == 0
    assert again["status"]["jobName"] == new


def test_ready_follows_the_current_ami_while_a_rebuilds_artifact_is_awaited(
    hook: tuple[Sync, str], clock: Clock, ec2_env: str, ssm: "SSMClient"
) -> None:
    """Defect 4: a rebuild finished, its Pod not seen yet: the current AMI still makes the builder Ready."""
    sync, _ = hook
    raw = ssm_spec(rebuild={"onBaseImageChange": True, "minBaseImageAge": "0s"})
    recorded, job, pod, image_id = first_build(sync, raw, clock, ec2_env)
    ready = conditions(recorded)["Ready"]
    assert ready["status"] == "True"

    ssm.put_parameter(Name=BASE_PARAMETER, Value=OLDEST_EKS_130_X86, Type="String", Overwrite=True)
    clock.now += timedelta(minutes=5)
    rebuilding = sync(request(parent(raw, status=recorded["status"]), [job], [pod]))
    assert rebuilding["status"]["state"] == "JobCreation"
    (rebuild,) = [c for c in rebuilding["children"] if c["metadata"]["name"] != job["metadata"]["name"]]

    clock.now += timedelta(minutes=20)
    done = succeeded(rebuild, clock.now - timedelta(minutes=15), clock.now - timedelta(seconds=30))
    answer = sync(request(parent(raw, status=rebuilding["status"]), [job, done], [pod]))

    assert answer["status"]["state"] == "WaitingForImage"
    assert conditions(answer)["Ready"] == ready  # same reason, message and transition time
    assert image_id in conditions(answer)["Ready"]["message"]


def test_a_rebuild_decided_when_a_build_is_recorded_is_a_new_job_and_the_success_counts(
    hook: tuple[Sync, str], clock: Clock, ec2_env: str, ssm: "SSMClient"
) -> None:
    """Defect 5: the base moved on during the build; the recording sync starts the rebuild under a new name."""
    sync, url = hook
    raw = ssm_spec(rebuild={"onBaseImageChange": True, "minBaseImageAge": "0s"})
    first = sync(request(parent(raw)))
    (job,) = first["children"]
    ssm.put_parameter(Name=BASE_PARAMETER, Value=OLDEST_EKS_130_X86, Type="String", Overwrite=True)
    image_id = register_built_ami(ec2_client(ec2_env), "opsy-built")
    done = succeeded(job, clock.now - timedelta(minutes=20), clock.now - timedelta(minutes=1))
    pod = build_pod(done, f"{REGION}:{image_id}")
    before = built_counter(url)

    answer = sync(request(parent(raw, status=first["status"]), [done], [pod]))

    status = answer["status"]
    assert status["lastRunBuiltImageID"] == image_id
    assert status["state"] == "JobCreation"
    assert status["jobStatus"] == "running"
    assert status["jobName"] != job["metadata"]["name"]
    assert sorted(names(answer)) == sorted([job["metadata"]["name"], status["jobName"]])
    assert built_counter(url) == before + 1
