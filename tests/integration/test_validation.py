"""The validation gate (issue 20, docs/validation.md) over real HTTP (uvicorn) against a real moto EC2 and SSM.

The test plays Metacontroller and the kubelet: it hands the hook the Jobs of its last answer, running or
finished, and the Pods whose containers ended with a termination message; the hook's clock is the test's.
"""

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import kubernetes_validate  # type: ignore[import-untyped]  # ships no type information
import pytest

from app.aws.ec2 import Ec2
from app.core.build import VALIDATE_CONTAINER
from app.main import create_app
from app.model.settings import Settings
from app.model.spec import parse_spec
from app.model.tags import Owner, format_timestamp
from app.validation.boot_check_env import BootCheckEnv
from tests.aws import NEWEST_EKS_130_X86, REGION, ec2_client, register_built_ami, tags_of
from tests.builders import (
    NAME,
    NAMESPACE,
    Clock,
    build_pod,
    failed,
    parent,
    request,
    running,
    succeeded,
)
from tests.http import post, serve
from tests.seed import SEED_SPEC

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ssm import SSMClient

COPY_REGION = "eu-west-1"
PARAMETER = "/platform/ami/eks-al2023"
CHECK_IMAGE = "registry.example.com/platform/ami-smoke:1.4"
HOOK_IMAGE = "ghcr.io/example/packer-builder-hook:1.2.3"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
SAID = "ssm command 2 (systemctl is-active kubelet) exited 3: inactive"

Answer = dict[str, Any]


@dataclass
class Hook:
    url: str
    clock: Clock

    def post(self, path: str, body: dict[str, Any]) -> Answer:
        code, answer = post(f"{self.url}{path}", body)
        assert code == 200, answer
        for child in answer.get("children", []):
            # Every Job the hook asks for is one the API server accepts.
            kubernetes_validate.validate(child, "1.30", strict=True)
        return dict(answer)

    def sync(
        self,
        raw: dict[str, Any],
        status: dict[str, Any] | None,
        jobs: list[dict[str, Any]] | None = None,
        pods: list[dict[str, Any]] | None = None,
        generation: int = 1,
    ) -> Answer:
        return self.post("/sync", request(parent(raw, status, generation), jobs, pods))


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def hook(ec2_env: str, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hook]:
    """The hook as the chart runs it: HOOK_IMAGE names its own image."""
    monkeypatch.setenv("HOOK_IMAGE", HOOK_IMAGE)
    with serve(create_app(Settings(), images=Ec2(), clock=clock)) as url:
        yield Hook(url, clock)


@pytest.fixture
def ec2(ec2_env: str) -> "EC2Client":
    return ec2_client(ec2_env)


@pytest.fixture
def ssm(ec2_env: str) -> "SSMClient":
    return boto3.session.Session().client("ssm", region_name=REGION, endpoint_url=ec2_env)


def spec(**fields: Any) -> dict[str, Any]:
    raw = copy.deepcopy(SEED_SPEC)
    raw["validation"] = {"image": CHECK_IMAGE, "timeout": "20m"}
    raw["publish"] = {"ssmParameter": PARAMETER}
    raw.update(fields)
    return raw


def mine(raw: dict[str, Any], **tags: str) -> dict[str, str]:
    return {**Owner.of(NAMESPACE, NAME, parse_spec(raw)).tags, **tags}


def exists(client: "EC2Client", image_id: str) -> bool:
    return bool(client.describe_images(Filters=[{"Name": "image-id", "Values": [image_id]}])["Images"])


def state_of(client: "EC2Client", image_id: str) -> str:
    (image,) = client.describe_images(Filters=[{"Name": "image-id", "Values": [image_id]}])["Images"]
    return str(image["State"])


def published(ssm: "SSMClient") -> str | None:
    found = ssm.get_parameters(Names=[PARAMETER])["Parameters"]
    return str(found[0]["Value"]) if found else None


def conditions(answer: Answer) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in answer["status"]["conditions"]}


def names(answer: Answer) -> list[str]:
    return [c["metadata"]["name"] for c in answer["children"]]


def step(job: dict[str, Any]) -> str:
    return str(job["metadata"]["labels"].get("ami.refresh.ops/step", ""))


def of_step(answer: Answer, which: str) -> list[dict[str, Any]]:
    return [c for c in answer["children"] if step(c) == which]


def env_of(job: dict[str, Any]) -> dict[str, str]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def expired_active(ec2: "EC2Client", raw: dict[str, Any], now: datetime) -> str:
    """The builder's previous AMI: active, built three days ago, so expired (expiresIn 48h): a rebuild is due."""
    stamp = format_timestamp(now - timedelta(days=3))
    return register_built_ami(
        ec2, "opsy-previous", tags=mine(raw, status="active", **{"create-timestamp": stamp})
    )


@dataclass
class Built:
    """A build that finished and the answer that saw it: its Job, Pod and AMIs, and the validation asked for."""

    answer: Answer
    asked: dict[str, Any]
    """The status of the answer that asked for the build Job."""
    job: dict[str, Any]
    pod: dict[str, Any]
    image_id: str
    validation: dict[str, Any]


def build(
    hook: Hook,
    ec2: "EC2Client",
    raw: dict[str, Any],
    status: dict[str, Any] | None,
    history: list[dict[str, Any]] | None = None,
    copy_to: "EC2Client | None" = None,
) -> Built:
    """Sync to have a build Job asked for, let it succeed with a new AMI (and a copy), and sync once more."""
    history = history or []
    seen = {j["metadata"]["name"] for j in history}
    asking = hook.sync(raw, status, history)
    (job,) = [c for c in of_step(asking, "build") if c["metadata"]["name"] not in seen]
    image_id = register_built_ami(ec2, f"opsy-{job['metadata']['name']}")
    message = f"{REGION}:{image_id}"
    if copy_to is not None:
        copied = copy_to.copy_image(SourceImageId=image_id, SourceRegion=REGION, Name=f"copy-{image_id}")
        message += f",{COPY_REGION}:{copied['ImageId']}"
    asked = hook.clock.now
    hook.clock.now += timedelta(minutes=20)
    done = succeeded(job, asked, hook.clock.now - timedelta(minutes=1))
    pod = build_pod(done, f"{message}\ncommit={COMMIT}")
    answer = hook.sync(raw, asking["status"], [*history, done], [pod])
    (validation,) = [c for c in of_step(answer, "validate") if c["metadata"]["name"] not in seen]
    return Built(answer, asking["status"], done, pod, image_id, validation)


def verdict_pod(job: dict[str, Any], message: str, exit_code: int) -> dict[str, Any]:
    return build_pod(job, message, exit_code, container=VALIDATE_CONTAINER)


# -- a pass -------------------------------------------------------------------------------------------------------


def test_a_passing_validation_holds_the_ami_back_until_it_passes(
    hook: Hook, ec2: "EC2Client", ssm: "SSMClient", ec2_env: str
) -> None:
    raw = spec(retention={"keep": 1, "skipInUse": False})
    eu = ec2_client(ec2_env, COPY_REGION)
    previous = expired_active(ec2, raw, hook.clock.now)
    built = build(hook, ec2, raw, None, copy_to=eu)
    answer, job = built.answer, built.job
    status = answer["status"]
    (copied,) = eu.describe_images(Owners=["self"])["Images"]
    copy_id = copied["ImageId"]

    # Tagged validating with everything else a build's AMIs carry; not published, the previous AMI untouched.
    tags = tags_of(ec2, built.image_id)
    assert tags == mine(
        raw,
        status="validating",
        **{
            "create-timestamp": format_timestamp(hook.clock.now - timedelta(minutes=1)),
            "build-id": job["metadata"]["labels"]["ami.refresh.ops/build-id"],
            "job-id": job["metadata"]["labels"]["ami.refresh.ops/job-id"],
            "base-ami": NEWEST_EKS_130_X86,
            "packer-repo-commit": COMMIT,
        },
    )
    assert tags_of(eu, copy_id)["status"] == "validating"
    assert published(ssm) == previous
    assert tags_of(ec2, previous)["status"] == "active"
    assert state_of(ec2, previous) == "available"
    assert status["state"] == "Validating"
    assert status.get("lastRunBuiltImageID") != built.image_id
    ready = conditions(answer)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "AMIExpired")
    assert previous in ready["message"]
    assert conditions(answer)["Validated"]["status"] == "Unknown"

    # The validation Job: next to the build Job, which stays, with the build's labels and the build's facts.
    validation = built.validation
    assert sorted(names(answer)) == sorted([job["metadata"]["name"], validation["metadata"]["name"]])
    assert validation["metadata"]["name"] == f"{job['metadata']['name']}-validate"
    labels = validation["metadata"]["labels"]
    for key in ("build-id", "job-id", "attempt", "generation", "owner-uid"):
        assert labels[f"ami.refresh.ops/{key}"] == job["metadata"]["labels"][f"ami.refresh.ops/{key}"]
    assert labels["ami.refresh.ops/step"] == "validate"
    assert step(job) == "build"
    assert validation["spec"]["activeDeadlineSeconds"] == 20 * 60
    (container,) = validation["spec"]["template"]["spec"]["containers"]
    assert container["image"] == CHECK_IMAGE
    env = env_of(validation)
    assert env["AMI_ID"] == built.image_id
    assert env["AMI_REGION"] == REGION
    assert sorted(env["AMI_IDS"].splitlines()) == [
        f"{COPY_REGION}:{copy_id}:x86_64",
        f"{REGION}:{built.image_id}:x86_64",
    ]
    assert env["BASE_AMI_ID"] == NEWEST_EKS_130_X86
    assert env["BUILD_ID"] == tags["build-id"]
    assert env["PACKER_BUILDER"] == f"{NAMESPACE}/{NAME}"
    assert env["PACKER_REPO_COMMIT"] == COMMIT
    assert status["validation"] == {
        "jobName": validation["metadata"]["name"],
        "imageID": built.image_id,
        "buildID": tags["build-id"],
        "result": "Running",
        "message": f"Job {validation['metadata']['name']} is validating {built.image_id}",
    }

    # The same request again, a stale one and a spec change: the same one validation Job, and no build.
    assert hook.sync(raw, built.asked, [job], [built.pod]) == answer
    stale = hook.sync(raw, None, [job], [built.pod])
    assert of_step(stale, "validate") == [validation]
    assert of_step(stale, "build") == [of_step(answer, "build")[0]]
    changed = dict(raw, timeOuts={"expiresIn": "48h", "controllerTimer": "10m"})
    unseen = hook.sync(changed, status, [job], [built.pod], generation=2)
    assert unseen["children"] == answer["children"]
    checking = running(validation, hook.clock.now)
    for body in (raw, changed):
        during = hook.sync(body, status, [job, checking], [built.pod], generation=2 if body is changed else 1)
        assert sorted(names(during)) == sorted(names(answer))
        assert during["status"] == (status if body is raw else {**status, "observedGeneration": 2})
        assert conditions(during)["Ready"] == ready
    assert published(ssm) == previous
    assert tags_of(ec2, built.image_id)["status"] == "validating"

    # It passes: active, published; the previous AMI retired and, beyond keep 1, removed.
    hook.clock.now += timedelta(minutes=5)
    passed = succeeded(
        validation, hook.clock.now - timedelta(minutes=4), hook.clock.now - timedelta(seconds=10)
    )
    verdict = verdict_pod(passed, f"passed: {built.image_id} booted", 0)
    done = hook.sync(raw, status, [job, passed], [built.pod, verdict])

    status = done["status"]
    assert tags_of(ec2, built.image_id)["status"] == "active"
    assert tags_of(eu, copy_id)["status"] == "active"
    assert published(ssm) == built.image_id
    assert tags_of(ec2, previous)["status"] == "deprecated"
    assert status["state"] == "AMICreated"
    assert status["lastRunBuiltImageID"] == built.image_id
    assert status["jobStatus"] == "completed"
    assert status["failedJobCount"] == 0
    assert status["validation"]["result"] == "Passed"
    validated = conditions(done)["Validated"]
    assert (validated["status"], validated["reason"]) == ("True", "Passed")
    assert validation["metadata"]["name"] in validated["message"]
    assert conditions(done)["Ready"]["status"] == "True"
    assert built.image_id in conditions(done)["Ready"]["message"]

    # The next sync, the parameter no longer naming it, removes the previous AMI (keep 1); the Jobs stay as history.
    settled = hook.sync(raw, status, [job, passed], [built.pod, verdict])
    assert not exists(ec2, previous)
    assert settled["status"]["state"] == "AMICreated"
    assert sorted(names(settled)) == sorted(names(answer))


# -- a failure, a timeout -----------------------------------------------------------------------------------------


DEADLINE = "Job was active longer than specified deadline"


def rejected_by(
    how: str, validation: dict[str, Any], clock: Clock
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The validation Job, asked for now, failed `how`: its check said why, or the Job's deadline stopped it
    (without a word from the check)."""
    asked = clock.now
    if how == "timeout":
        clock.now += timedelta(minutes=20)
        job = failed(validation, asked, clock.now - timedelta(seconds=10), "DeadlineExceeded")
        job["status"]["conditions"][0]["message"] = DEADLINE
        return job, []
    clock.now += timedelta(minutes=4)
    job = failed(validation, asked, clock.now - timedelta(seconds=10))
    return job, [verdict_pod(job, f"{SAID}\n", 1)]


@pytest.mark.parametrize("how", ["fail", "timeout"])
def test_a_failed_validation_rejects_the_ami_and_counts_as_a_failed_build(
    hook: Hook, ec2: "EC2Client", ssm: "SSMClient", how: str
) -> None:
    raw = spec(retention={"keep": 1, "skipInUse": False}, maxNumberOfJobs=2, failedJobsHistoryLimit=1)
    previous = expired_active(ec2, raw, hook.clock.now)
    built = build(hook, ec2, raw, None)
    name = built.validation["metadata"]["name"]
    verdict, pods = rejected_by(how, built.validation, hook.clock)

    answer = hook.sync(raw, built.answer["status"], [built.job, verdict], [built.pod, *pods])

    status = answer["status"]
    # keep 1: rejected, it goes at once like an AMI beyond keep; the previous active one stays, published.
    assert not exists(ec2, built.image_id)
    assert published(ssm) == previous
    assert tags_of(ec2, previous)["status"] == "active"
    assert state_of(ec2, previous) == "available"
    assert status["state"] == "JobFailed"
    assert status["failedJobCount"] == 1
    assert status["jobStatus"] == "failed"
    assert status.get("lastRunBuiltImageID") != built.image_id
    assert status["nextBuildTime"]
    assert conditions(answer)["JobFailed"]["status"] == "True"
    validated = conditions(answer)["Validated"]
    assert (validated["status"], validated["reason"]) == ("False", "ValidationFailed")
    assert name in validated["message"]
    said = SAID if how == "fail" else "DeadlineExceeded"
    assert said in validated["message"]
    assert said in status["lastRunMessage"]
    assert status["validation"]["result"] == "Failed"
    assert status["validation"]["imageID"] == built.image_id
    # Record first: the failed build and its validation stay (failedJobsHistoryLimit counts them as one).
    assert sorted(names(answer)) == sorted([built.job["metadata"]["name"], name])

    # The rejection is recorded once: the next sync still counts one failed build and waits out the backoff.
    again = hook.sync(raw, status, [built.job, verdict], [built.pod, *pods])
    assert again["status"] == status
    assert again["children"] == answer["children"]
    assert tags_of(ec2, previous)["status"] == "active"

    # The retry, once the backoff has passed: rejected again, and that is the last of maxNumberOfJobs 2.
    hook.clock.now += timedelta(minutes=10)
    history = [built.job, verdict]
    retried = build(hook, ec2, raw, again["status"], history)
    assert retried.job["metadata"]["labels"]["ami.refresh.ops/attempt"] == "1"
    second, more = rejected_by(how, retried.validation, hook.clock)
    final = hook.sync(raw, retried.answer["status"], [*history, retried.job, second], [retried.pod, *more])
    assert final["status"]["state"] == "MaxFailedJobsReached"
    assert final["status"]["failedJobCount"] == 2
    assert conditions(final)["MaxFailedJobsReached"]["status"] == "True"
    assert tags_of(ec2, previous)["status"] == "active"
    assert published(ssm) == previous
    # failedJobsHistoryLimit 1: the newest failed build stays with its validation Job.
    assert sorted(names(final)) == sorted([retried.job["metadata"]["name"], second["metadata"]["name"]])
    steady = hook.sync(raw, final["status"], [retried.job, second], [retried.pod, *more])
    assert steady["status"]["state"] == "MaxFailedJobsReached"
    assert steady["children"] == final["children"]


@pytest.mark.parametrize("retention", [{"keep": 1, "disableFor": "1h", "skipInUse": False}, {}])
def test_a_rejected_ami_is_disabled_then_removed_or_kept_tagged_without_keep(
    hook: Hook, ec2: "EC2Client", ssm: "SSMClient", retention: dict[str, Any]
) -> None:
    raw = spec(retention=retention)
    previous = expired_active(ec2, raw, hook.clock.now)
    built = build(hook, ec2, raw, None)
    verdict, pods = rejected_by("fail", built.validation, hook.clock)
    jobs, pods = [built.job, verdict], [built.pod, *pods]

    status = hook.sync(raw, built.answer["status"], jobs, pods)["status"]
    status = hook.sync(raw, status, jobs, pods)["status"]
    assert tags_of(ec2, built.image_id)["status"] == "rejected"
    assert state_of(ec2, built.image_id) == ("disabled" if retention else "available")

    hook.clock.now += timedelta(hours=1, minutes=1)
    for _ in range(2):
        status = hook.sync(raw, status, jobs, pods)["status"]
    if retention:
        assert not exists(ec2, built.image_id)
    else:
        assert tags_of(ec2, built.image_id)["status"] == "rejected"
        assert state_of(ec2, built.image_id) == "available"
    assert tags_of(ec2, previous)["status"] == "active"
    assert state_of(ec2, previous) == "available"
    assert published(ssm) == previous


# -- an interrupted run, adoption -----------------------------------------------------------------------------------


def test_an_ami_an_interrupted_run_left_validating_is_validated_again_not_adopted(
    hook: Hook, ec2: "EC2Client", ssm: "SSMClient"
) -> None:
    """The builder was re-created (empty status, no Jobs) after its last build's AMI was tagged validating."""
    raw = spec()
    now = hook.clock.now
    rejected = register_built_ami(
        ec2,
        "opsy-rejected",
        tags=mine(raw, status="rejected", **{"create-timestamp": format_timestamp(now - timedelta(hours=5))}),
    )
    left = mine(
        raw,
        status="validating",
        **{
            "create-timestamp": format_timestamp(now - timedelta(hours=2)),
            "build-id": "0b7e3c1e-5a2f-5c3e-9d1a-2f4b6c8d0e1f",
            "job-id": "5e1a9c3b",
            "base-ami": NEWEST_EKS_130_X86,
        },
    )
    waiting = register_built_ami(ec2, "opsy-interrupted", tags=left)

    answer = hook.sync(raw, None)

    status = answer["status"]
    assert status["state"] == "Validating"
    assert status.get("lastRunBuiltImageID") != waiting
    (validation,) = answer["children"]
    assert validation["metadata"]["name"] == f"{NAME}-5e1a9c3b-validate"
    assert step(validation) == "validate"
    env = env_of(validation)
    assert (env["AMI_ID"], env["BUILD_ID"]) == (waiting, left["build-id"])
    assert env["AMI_IDS"] == f"{REGION}:{waiting}:x86_64"
    assert tags_of(ec2, waiting) == left
    assert published(ssm) is None
    assert conditions(answer)["Ready"]["reason"] == "NoActiveAMI"
    # Stale, and with its Job running: the same one validation, still nothing adopted.
    assert hook.sync(raw, None)["children"] == [validation]
    checking = hook.sync(raw, status, [running(validation, now)])
    assert checking["children"] == [validation]
    assert checking["status"]["state"] == "Validating"

    hook.clock.now += timedelta(minutes=5)
    passed = succeeded(validation, now, hook.clock.now - timedelta(seconds=10))
    done = hook.sync(raw, checking["status"], [passed])
    assert tags_of(ec2, waiting)["status"] == "active"
    assert published(ssm) == waiting
    assert done["status"]["state"] == "AMICreated"
    assert done["status"]["lastRunBuiltImageID"] == waiting
    assert conditions(done)["Validated"]["status"] == "True"
    assert conditions(done)["Ready"]["status"] == "True"
    # A rejected AMI is never adopted nor published.
    assert tags_of(ec2, rejected)["status"] == "rejected"


def test_an_active_ami_with_the_builders_tags_is_adopted_without_a_validation(
    hook: Hook, ec2: "EC2Client", ssm: "SSMClient"
) -> None:
    raw = spec()
    stamp = format_timestamp(hook.clock.now - timedelta(hours=3))
    active = register_built_ami(
        ec2, "opsy-active", tags=mine(raw, status="active", **{"create-timestamp": stamp})
    )

    answer = hook.sync(raw, None)

    assert answer["children"] == []
    assert answer["status"]["state"] == "AMIAdopted"
    assert answer["status"]["lastRunBuiltImageID"] == active
    assert "Validated" not in conditions(answer)
    assert "validation" not in answer["status"]
    assert tags_of(ec2, active)["status"] == "active"
    assert published(ssm) == active


def test_without_spec_validation_an_ami_left_validating_is_answered_not_a_500(
    hook: Hook, ec2: "EC2Client", ssm: "SSMClient"
) -> None:
    """spec.validation was removed: like a build whose validation had not started, the AMI is not gated."""
    left = mine(
        spec(),
        status="validating",
        **{
            "create-timestamp": format_timestamp(hook.clock.now - timedelta(hours=2)),
            "build-id": "0b7e3c1e-5a2f-5c3e-9d1a-2f4b6c8d0e1f",
            "job-id": "5e1a9c3b",
        },
    )
    waiting = register_built_ami(ec2, "opsy-interrupted", tags=left)
    raw = {k: v for k, v in spec().items() if k != "validation"}

    answer = hook.sync(raw, None)

    assert answer["children"] == []
    assert answer["status"]["state"] == "AMICreated"
    assert tags_of(ec2, waiting)["status"] == "active"
    assert published(ssm) == waiting


# -- /finalize ------------------------------------------------------------------------------------------------------


def finalize(
    hook: Hook, raw: dict[str, Any], status: dict[str, Any], jobs: list[Any], pods: list[Any]
) -> Answer:
    body = request(parent(raw, status), jobs, pods)
    body["finalizing"] = True
    return hook.post("/finalize", body)


def test_finalize_waits_for_a_running_validation(hook: Hook, ec2: "EC2Client", ssm: "SSMClient") -> None:
    raw = spec()
    built = build(hook, ec2, raw, None)
    checking = running(built.validation, hook.clock.now)

    answer = finalize(hook, raw, built.answer["status"], [built.job, checking], [built.pod])

    assert answer["finalized"] is False
    assert answer["children"] == [built.validation]
    assert built.validation["metadata"]["name"] in answer["status"]["lastRunMessage"]
    assert tags_of(ec2, built.image_id)["status"] == "validating"
    assert published(ssm) is None


@pytest.mark.parametrize("recorded", [False, True], ids=["build-not-recorded", "validation-asked-for"])
def test_finalize_before_the_validation_ran_leaves_the_ami_validating_and_says_so(
    hook: Hook, ec2: "EC2Client", ssm: "SSMClient", recorded: bool
) -> None:
    raw = spec()
    asking = hook.sync(raw, None)
    (job,) = asking["children"]
    image_id = register_built_ami(ec2, "opsy-late")
    asked = hook.clock.now
    hook.clock.now += timedelta(minutes=20)
    done = succeeded(job, asked, hook.clock.now - timedelta(minutes=1))
    pod = build_pod(done, f"{REGION}:{image_id}")
    status = asking["status"]
    if recorded:
        status = hook.sync(raw, status, [done], [pod])["status"]
        assert status["state"] == "Validating"

    answer = finalize(hook, raw, status, [done], [pod])

    assert answer["finalized"] is True
    assert answer["children"] == []
    assert tags_of(ec2, image_id)["status"] == "validating"
    assert published(ssm) is None
    assert image_id in answer["status"]["lastRunMessage"]
    assert "validating" in answer["status"]["lastRunMessage"]
    assert answer["status"]["validation"]["imageID"] == image_id
    again = finalize(hook, raw, answer["status"], [done], [pod])
    assert again == answer


# -- the boot check -------------------------------------------------------------------------------------------------


BOOT_CHECK = {
    "subnetID": "subnet-0123456789abcdef0",
    "instanceType": "t3.small",
    "securityGroupIDs": ["sg-0123456789abcdef0"],
    "instanceProfile": "ami-boot-check",
    "ssmCommands": ["systemctl is-active kubelet", "test -s /etc/kubernetes/kubelet/config.json"],
}


def test_the_boot_check_runs_in_the_hooks_own_image_with_its_inputs(hook: Hook, ec2: "EC2Client") -> None:
    raw = spec(validation={"bootCheck": BOOT_CHECK, "timeout": "30m"})
    built = build(hook, ec2, raw, None)

    job = built.validation
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == HOOK_IMAGE
    assert container["command"] == ["python", "-m", "app.validation", "boot-check"]
    assert job["spec"]["activeDeadlineSeconds"] == 30 * 60
    env = env_of(job)
    assert env["BOOT_CHECK_SUBNET_ID"] == BOOT_CHECK["subnetID"]
    assert env["BOOT_CHECK_INSTANCE_TYPE"] == "t3.small"
    assert env["BOOT_CHECK_SECURITY_GROUP_IDS"] == "sg-0123456789abcdef0"
    assert env["BOOT_CHECK_INSTANCE_PROFILE"] == "ami-boot-check"
    assert json.loads(env["BOOT_CHECK_SSM_COMMANDS"]) == BOOT_CHECK["ssmCommands"]
    assert json.loads(env["BOOT_CHECK_TAGS"]) == mine(raw)
    assert env["BOOT_CHECK_TIMEOUT_SECONDS"] == str(29 * 60)
    # What the Job sets is what the boot check reads: its own input reader accepts all of it.
    read = BootCheckEnv.from_environ(env)
    assert (read.ami_id, read.region, read.build_id) == (built.image_id, REGION, env["BUILD_ID"])
    assert read.ssm_commands == tuple(BOOT_CHECK["ssmCommands"])
    assert read.timeout_seconds == 29 * 60
    assert read.termination_message_path == container["terminationMessagePath"]


def test_without_hook_image_a_boot_check_is_an_invalid_spec(ec2_env: str, clock: Clock) -> None:
    raw = spec(validation={"bootCheck": BOOT_CHECK})
    with serve(create_app(Settings(hook_image=""), images=Ec2(), clock=clock)) as url:
        hook = Hook(url, clock)
        first = hook.sync(spec(), None)
        (job,) = first["children"]
        answer = hook.sync(raw, first["status"], [running(job, clock.now)], generation=2)

    assert answer["status"]["state"] == "InvalidSpec"
    invalid = conditions(answer)["InvalidSpec"]
    assert invalid["status"] == "True"
    assert "spec.validation.bootCheck" in invalid["message"]
    assert "HOOK_IMAGE" in invalid["message"]
    assert answer["children"] == [job]
