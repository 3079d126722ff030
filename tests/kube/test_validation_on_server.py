"""Issue 20: a validating PackerBuilder under the real Metacontroller (v4.17.2) on a real API server.

The parts are those of tests/kube/test_metacontroller_on_server.py, whose fixtures this module shares: the
session's control plane (the Job controller is real), the real Metacontroller running
metacontroller/compositecontroller.yaml, the hook over real HTTP against moto, every call recorded. The test
plays the kubelet for both Jobs: the build's Packer container ends with a moto AMI in its termination message,
then the validation Job's `validate` container ends with the check's verdict in its own.

Every wait is for something observable (a watch on the object, a hook call), under a deadline; none sleeps.
"""

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from app.core.build import LABEL_STEP, STEP_BUILD, STEP_VALIDATE, VALIDATE_CONTAINER
from tests.aws import REGION, ec2_client, register_built_ami, tags_of
from tests.deploy.manifests import load_yaml
from tests.kube import test_metacontroller_on_server as shared
from tests.kube.cluster import ControlPlane, JsonObject
from tests.kube.kubelet import finish_as_kubelet, job_finished
from tests.kube.objects import condition, pod_of
from tests.kube.recorded_hook import HookServer
from tests.kube.test_crd_on_server import _table
from tests.kube.test_metacontroller_on_server import (
    EXAMPLES,
    RETENTION,
    SEED,
    Builder,
    _container,
    created,
    names,
    ready,
    running,
)

# The fixtures of tests/kube/test_metacontroller_on_server.py, under the names pytest looks them up by.
hook_port = shared.hook_port
slack = shared.slack
clock = shared.clock
hook = shared.hook
hook_version = shared.hook_version
composite_controller = shared.composite_controller
controller = shared.controller

# A check of the team's own (spec.validation.image); the test plays its container.
CHECK_IMAGE = "registry.example.com/platform/ami-smoke:1.4"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def with_validation(example: str) -> JsonObject:
    """The example PackerBuilder with a check of its own as spec.validation."""
    body = load_yaml(EXAMPLES / example)
    body["spec"]["validation"] = {"image": CHECK_IMAGE, "args": ["--suite", "eks"], "timeout": "20m"}
    if "retention" in body["spec"]:
        # No EC2 deprecation time: moto has no EnableImageDeprecation, it would fail on every sync.
        body["spec"]["retention"]["deprecate"] = False
    return body


@pytest.fixture
def example() -> str:
    return SEED


@pytest.fixture
def pb(
    kube: ControlPlane, namespace: str, controller: JsonObject, hook: HookServer, example: str
) -> Iterator[Builder]:
    """The example PackerBuilder with spec.validation, created in the namespace."""
    with created(kube, namespace, with_validation(example), hook) as made:
        yield made


def step(job: JsonObject) -> str:
    return str(job["metadata"]["labels"].get(LABEL_STEP, ""))


def env_of(job: JsonObject) -> dict[str, str]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container.get("env") or []}


def validated(reason: str) -> Callable[[JsonObject], bool]:
    """The builder's Validated condition has `reason` (Validating, Passed, ValidationFailed)."""
    return lambda p: any(
        c["type"] == "Validated" and c["reason"] == reason
        for c in (p.get("status") or {}).get("conditions") or []
    )


def condition_of(obj: JsonObject, kind: str) -> JsonObject:
    (found,) = [c for c in obj["status"]["conditions"] if c["type"] == kind]
    return dict(found)


def get_pb(pb: Builder) -> dict[str, str]:
    """The builder's row of `kubectl get pb -o wide`, by column header."""
    _, rows = _table(pb.kube.kubectl("get", "pb", pb.name, "-n", pb.namespace, "-o", "wide").stdout)
    (row,) = rows
    return row


def built_and_checked(pb: Builder, ec2: Any, name: str, message: str) -> tuple[JsonObject, JsonObject, str]:
    """The build Job run by the test as the kubelet (an AMI registered in moto, reported with `message`
    after its line) and the validation Job Metacontroller then creates, as the hook asked for it."""
    build = pb.job(lambda j: step(j) == STEP_BUILD, "the build Job")
    pb.until(running(build), "JobRunning")
    ami = register_built_ami(ec2, name)
    finish_as_kubelet(pb.kube, pod_of(pb.kube, pb.namespace, build), 0, f"{REGION}:{ami}{message}")
    job_finished(pb.kube, pb.namespace, build)

    check = pb.job(lambda j: step(j) == STEP_VALIDATE, "the validation Job")
    asked = pb.call(lambda c: check["metadata"]["name"] in names(c.answer), "the validation Job asked for")
    (desired,) = [c for c in asked.answer["children"] if c["metadata"]["name"] == check["metadata"]["name"]]
    # What Metacontroller created is what the hook asked for, to the value (rule 6: no empty values that the
    # API server would drop), as the build Job's child of the same builder.
    assert [_container(c) for c in check["spec"]["template"]["spec"]["containers"]] == [
        _container(c) for c in desired["spec"]["template"]["spec"]["containers"]
    ]
    assert check["metadata"]["name"] == f"{build['metadata']['name']}-validate"
    assert check["metadata"]["labels"] == {**build["metadata"]["labels"], LABEL_STEP: STEP_VALIDATE}
    assert check["metadata"]["ownerReferences"] == build["metadata"]["ownerReferences"]
    return build, check, ami


@pytest.mark.parametrize("example", [RETENTION])
def test_a_validated_build_becomes_active_and_is_published_only_once_its_check_passes(
    kube: ControlPlane, namespace: str, pb: Builder, ec2_env: str
) -> None:
    ec2 = ec2_client(ec2_env)
    ssm = boto3.session.Session().client("ssm", region_name=REGION, endpoint_url=ec2_env)
    parameter = load_yaml(EXAMPLES / RETENTION)["spec"]["publish"]["ssmParameter"]
    build, check, ami = built_and_checked(pb, ec2, "opsy-validated", f"\ncommit={COMMIT}")
    build_name, check_name = build["metadata"]["name"], check["metadata"]["name"]

    # The validation Job: the team's check, told which AMIs to check and where they came from.
    (container,) = check["spec"]["template"]["spec"]["containers"]
    assert (container["name"], container["image"], container["args"]) == (
        VALIDATE_CONTAINER,
        CHECK_IMAGE,
        ["--suite", "eks"],
    )
    assert check["spec"]["activeDeadlineSeconds"] == 20 * 60
    env = env_of(check)
    labels = build["metadata"]["labels"]
    assert (env["AMI_ID"], env["AMI_REGION"], env["AMI_IDS"]) == (ami, REGION, f"{REGION}:{ami}:x86_64")
    assert (env["BUILD_ID"], env["PACKER_BUILDER"]) == (
        labels["ami.refresh.ops/build-id"],
        f"{namespace}/{pb.name}",
    )
    assert env["PACKER_REPO_COMMIT"] == COMMIT

    # While it runs: the builder says so, the AMI is `validating`, nothing is published.
    status = pb.until(validated("Validating"), "Validating")["status"]
    assert (status["state"], status["jobName"], status["jobStatus"]) == (
        "Validating",
        build_name,
        "validating",
    )
    assert status["validation"] == {
        "jobName": check_name,
        "imageID": ami,
        "buildID": labels["ami.refresh.ops/build-id"],
        "result": "Running",
        "message": f"Job {check_name} is validating {ami}",
    }
    assert "lastRunBuiltImageID" not in status
    assert condition_of(pb.get(), "Ready")["reason"] == "NoActiveAMI"
    row = get_pb(pb)
    assert (row["STATE"], row["READY"], row["JOB STATUS"], row["BUILT AMI"], row["JOB"]) == (
        "Validating",
        "False",
        "validating",
        "",
        build_name,
    )
    assert tags_of(ec2, ami)["status"] == "validating"
    with pytest.raises(ssm.exceptions.ParameterNotFound):
        ssm.get_parameter(Name=parameter)

    # It passes: the AMI becomes the builder's active one and is published.
    finish_as_kubelet(kube, pod_of(kube, namespace, check), 0, f"passed: {ami} ok", VALIDATE_CONTAINER)
    job_finished(kube, namespace, check)
    done = pb.until(lambda p: ready(p) and validated("Passed")(p), "Ready and Validated")
    status = done["status"]
    assert (status["state"], status["jobStatus"], status["lastRunBuiltImageID"]) == (
        "AMICreated",
        "completed",
        ami,
    )
    assert status["images"] == [{"region": REGION, "architecture": "x86_64", "imageID": ami}]
    assert (status["validation"]["result"], status["validation"]["jobName"]) == ("Passed", check_name)
    assert condition_of(done, "Validated")["status"] == "True"
    assert check_name in condition_of(done, "Validated")["message"]
    assert tags_of(ec2, ami)["status"] == "active"
    assert ssm.get_parameter(Name=parameter)["Parameter"]["Value"] == ami
    row = get_pb(pb)
    assert (row["STATE"], row["READY"], row["JOB STATUS"], row["BUILT AMI"]) == (
        "AMICreated",
        "True",
        "completed",
        ami,
    )
    # Both Jobs stay as the one successful build's history; no second build or validation was asked for.
    assert pb.jobs() == sorted([build_name, check_name])
    assert {name for c in pb.calls() for name in names(c.answer)} == {build_name, check_name}


def test_a_failed_check_rejects_the_ami_and_fails_the_build(
    kube: ControlPlane, namespace: str, pb: Builder, ec2_env: str
) -> None:
    """The seed has no retention: the rejected AMI is kept, tagged. Its build had no commit to report."""
    ec2 = ec2_client(ec2_env)
    build, check, ami = built_and_checked(pb, ec2, "opsy-rejected", "")
    build_name, check_name = build["metadata"]["name"], check["metadata"]["name"]
    assert env_of(check)["PACKER_REPO_COMMIT"] == ""
    pb.until(validated("Validating"), "Validating")

    said = "kubelet config missing: /etc/kubernetes/kubelet/config.json"
    finish_as_kubelet(kube, pod_of(kube, namespace, check), 1, said, VALIDATE_CONTAINER)
    job_finished(kube, namespace, check, "Failed")
    rejected = pb.until(validated("ValidationFailed"), "Validated=False")
    status = rejected["status"]
    verdict = condition_of(rejected, "Validated")
    assert verdict["status"] == "False"
    assert check_name in verdict["message"]
    assert said in verdict["message"]
    assert (status["validation"]["result"], status["validation"]["imageID"]) == ("Failed", ami)
    assert (status["state"], status["jobStatus"], status["failedJobCount"]) == ("JobFailed", "failed", 1)
    assert "lastRunBuiltImageID" not in status
    assert condition(rejected, "Ready") == "False"
    assert tags_of(ec2, ami)["status"] == "rejected"
    # Both Jobs stay as the failed build's history; the retry waits for its backoff.
    assert pb.jobs() == sorted([build_name, check_name])
    assert {name for c in pb.calls() for name in names(c.answer)} == {build_name, check_name}
