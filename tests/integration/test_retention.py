"""Retention and distribution over real HTTP (uvicorn) against a real moto EC2 and SSM.

moto implements everything used here except EnableImageDeprecation, which it rejects: that rejection is
part of the story (a condition, nothing else lost).
"""

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from app.aws.ec2 import Ec2
from app.main import create_app
from app.model.settings import Settings
from app.model.spec import parse_spec
from app.model.tags import Owner, format_timestamp
from tests.aws import REGION, ec2_client, register_built_ami, tags_of
from tests.builders import NAME, NAMESPACE, Clock, build_pod, parent, request, succeeded
from tests.http import post, serve
from tests.seed import SEED_SPEC

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

COPY_REGION = "eu-west-1"
PARAMETER = "/platform/ami/eks-al2023"
ARM64_EKS_130 = "ami-0a1f30a1b2c3d4e05"


@pytest.fixture
def hook(ec2_env: str) -> Iterator[str]:
    with serve(create_app(Settings(), images=Ec2())) as url:
        yield url


def sync(hook: str, body: dict[str, Any], path: str = "/sync") -> dict[str, Any]:
    code, answer = post(f"{hook}{path}", body)
    assert code == 200, answer
    return dict(answer)


def spec(**fields: Any) -> dict[str, Any]:
    raw = copy.deepcopy(SEED_SPEC)
    raw.update(fields)
    return raw


def mine(raw_spec: dict[str, Any], **tags: str) -> dict[str, str]:
    return {**Owner.of(NAMESPACE, NAME, parse_spec(raw_spec)).tags, **tags}


def exists(client: "EC2Client", image_id: str) -> bool:
    return bool(client.describe_images(Filters=[{"Name": "image-id", "Values": [image_id]}])["Images"])


def snapshots(client: "EC2Client", image_id: str) -> list[str]:
    (image,) = client.describe_images(ImageIds=[image_id])["Images"]
    return [
        m["Ebs"]["SnapshotId"]
        for m in image.get("BlockDeviceMappings", [])
        if "SnapshotId" in m.get("Ebs", {})
    ]


def snapshot_exists(client: "EC2Client", snapshot_id: str) -> bool:
    found = client.describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [snapshot_id]}])
    return bool(found["Snapshots"])


def conditions(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in answer["status"]["conditions"]}


def finish(hook: str, raw_spec: dict[str, Any], message: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A new builder's first sync, then the sync that sees its build finished with `message`."""
    first = sync(hook, request(parent(raw_spec)))
    (job,) = first["children"]
    now = datetime.now(UTC)
    done = succeeded(job, now - timedelta(minutes=20), now - timedelta(minutes=1))
    pod = build_pod(done, message)
    return sync(hook, request(parent(raw_spec, status=first["status"]), [done], [pod])), {
        "job": done,
        "pod": pod,
    }


def test_keep_two_publish_and_two_regions_end_to_end(hook: str, ec2_env: str) -> None:
    ec2 = ec2_client(ec2_env)
    eu = ec2_client(ec2_env, COPY_REGION)
    ssm = boto3.session.Session().client("ssm", region_name=REGION, endpoint_url=ec2_env)
    ssm_eu = boto3.session.Session().client("ssm", region_name=COPY_REGION, endpoint_url=ec2_env)
    raw = spec(retention={"keep": 2, "deprecate": True}, publish={"ssmParameter": PARAMETER})
    now = datetime.now(UTC)
    # Five older AMIs of this builder, 3 to 7 days old (so the newest, still active, has expired).
    olds = [
        register_built_ami(
            ec2,
            f"older-{days}",
            tags=mine(
                raw,
                status="active" if days == 3 else "deprecated",
                **{"create-timestamp": format_timestamp(now - timedelta(days=days))},
            ),
        )
        for days in (3, 4, 5, 6, 7)
    ]
    old_snapshots = {image_id: snapshots(ec2, image_id) for image_id in olds}
    in_use = olds[2]
    instance = ec2.run_instances(ImageId=in_use, MinCount=1, MaxCount=1, InstanceType="t3.micro")
    user = instance["Instances"][0]["InstanceId"]
    stamp = {"create-timestamp": format_timestamp(now - timedelta(days=30))}
    other_builder = register_built_ami(
        ec2, "other", tags={**mine(raw, status="deprecated"), **stamp, "created-by": "b"}
    )
    unmanaged = register_built_ami(ec2, "unmanaged", tags=stamp)

    # Packer built the AMI in us-west-2 and copied it to eu-west-1 (ami_regions).
    built = register_built_ami(ec2, "opsy-new")
    copied = eu.copy_image(SourceImageId=built, SourceRegion=REGION, Name="opsy-new-copy")["ImageId"]
    answer, seen = finish(hook, raw, f"{REGION}:{built},{COPY_REGION}:{copied}")

    status = answer["status"]
    assert status["lastRunBuiltImageID"] == built
    assert status["images"] == [
        {"region": COPY_REGION, "architecture": "x86_64", "imageID": copied},
        {"region": REGION, "architecture": "x86_64", "imageID": built},
    ]
    assert tags_of(ec2, built)["status"] == "active"
    assert tags_of(eu, copied)["status"] == "active"
    assert tags_of(eu, copied)["build-id"] == tags_of(ec2, built)["build-id"]
    # keep 2: the new AMI and the newest older one stay, and the one a running instance uses.
    assert [exists(ec2, i) for i in olds] == [True, False, True, False, False]
    assert tags_of(ec2, olds[0])["status"] == "deprecated"
    for image_id in (olds[1], olds[3], olds[4]):
        assert not any(snapshot_exists(ec2, s) for s in old_snapshots[image_id])
    assert all(snapshot_exists(ec2, s) for s in old_snapshots[in_use])
    assert exists(ec2, other_builder)
    assert exists(ec2, unmanaged)
    skipped = conditions(answer)["RetentionSkipped"]
    assert in_use in skipped["message"]
    assert user in skipped["message"]
    # moto rejects EnableImageDeprecation: said so, and nothing else was lost.
    assert conditions(answer)["DeprecationNotSet"]["status"] == "True"
    assert conditions(answer)["Ready"]["status"] == "True"
    assert ssm.get_parameter(Name=PARAMETER)["Parameter"]["Value"] == built
    assert ssm_eu.get_parameter(Name=PARAMETER)["Parameter"]["Value"] == copied
    # The build that made the current AMI keeps its Job for `kubectl logs`.
    assert [c["metadata"]["name"] for c in answer["children"]] == [seen["job"]["metadata"]["name"]]

    versions = (
        ssm.get_parameter(Name=PARAMETER)["Parameter"]["Version"],
        ssm_eu.get_parameter(Name=PARAMETER)["Parameter"]["Version"],
    )
    again = sync(hook, request(parent(raw, status=status), [seen["job"]], [seen["pod"]]))
    assert again["status"]["images"] == status["images"]
    assert again["children"] == answer["children"]
    assert [exists(ec2, i) for i in olds] == [True, False, True, False, False]
    assert (
        ssm.get_parameter(Name=PARAMETER)["Parameter"]["Version"],
        ssm_eu.get_parameter(Name=PARAMETER)["Parameter"]["Version"],
    ) == versions


@pytest.mark.parametrize("arm_first", [True, False])
def test_two_architectures_from_one_build_are_both_active_whatever_the_order(
    hook: str, ec2_env: str, arm_first: bool
) -> None:
    ec2 = ec2_client(ec2_env)
    x86 = register_built_ami(ec2, "opsy-x86")
    arm = register_built_ami(ec2, "opsy-arm", base_image_id=ARM64_EKS_130)
    pairs = [f"{REGION}:{arm}", f"{REGION}:{x86}"]
    message = ",".join(pairs if arm_first else reversed(pairs))
    raw = spec(publish={"ssmParameter": PARAMETER})

    answer, _ = finish(hook, raw, message)

    assert tags_of(ec2, x86)["status"] == "active"
    assert tags_of(ec2, arm)["status"] == "active"
    assert answer["status"]["lastRunBuiltImageID"] == x86
    assert answer["status"]["images"] == [
        {"region": REGION, "architecture": "arm64", "imageID": arm},
        {"region": REGION, "architecture": "x86_64", "imageID": x86},
    ]
    ssm = boto3.session.Session().client("ssm", region_name=REGION, endpoint_url=ec2_env)
    assert ssm.get_parameter(Name=f"{PARAMETER}/x86_64")["Parameter"]["Value"] == x86
    assert ssm.get_parameter(Name=f"{PARAMETER}/arm64")["Parameter"]["Value"] == arm


def test_an_ami_finished_during_deletion_is_tagged_before_finalized(hook: str, ec2_env: str) -> None:
    ec2 = ec2_client(ec2_env)
    first = sync(hook, request(parent()))
    (job,) = first["children"]
    built = register_built_ami(ec2, "opsy-late")
    now = datetime.now(UTC)
    done = succeeded(job, now - timedelta(minutes=20), now - timedelta(minutes=1))
    body = request(parent(status=first["status"]), [done], [build_pod(done, f"{REGION}:{built}")])
    body["finalizing"] = True

    answer = sync(hook, body, "/finalize")

    assert answer["finalized"] is True
    assert tags_of(ec2, built)["status"] == "active"
    assert tags_of(ec2, built)["build-id"] == first["status"]["buildID"]


def test_a_build_finished_during_deletion_is_recorded_but_deletion_removes_no_ami(
    hook: str, ec2_env: str
) -> None:
    """keep: 1 applies to a living builder: the one being deleted tags and retires, and deregisters nothing."""
    ec2 = ec2_client(ec2_env)
    raw = spec(retention={"keep": 1, "skipInUse": False}, publish={"ssmParameter": PARAMETER})
    first = sync(hook, request(parent(raw)))
    (job,) = first["children"]
    # While the build ran, older AMIs of the builder turned up (another replica, a restore, a person).
    now = datetime.now(UTC)
    olds = [
        register_built_ami(
            ec2,
            f"older-{days}",
            tags=mine(
                raw,
                status="active" if days == 3 else "deprecated",
                **{"create-timestamp": format_timestamp(now - timedelta(days=days))},
            ),
        )
        for days in (3, 4)
    ]
    old_snapshots = [s for image_id in olds for s in snapshots(ec2, image_id)]
    built = register_built_ami(ec2, "opsy-late")
    done = succeeded(job, now - timedelta(minutes=20), now - timedelta(minutes=1))
    body = request(parent(raw, status=first["status"]), [done], [build_pod(done, f"{REGION}:{built}")])
    body["finalizing"] = True

    answer = sync(hook, body, "/finalize")

    assert answer["finalized"] is True
    assert tags_of(ec2, built)["status"] == "active"
    assert [tags_of(ec2, i)["status"] for i in olds] == ["deprecated", "deprecated"]
    assert all(exists(ec2, i) for i in olds)
    assert old_snapshots
    assert all(snapshot_exists(ec2, s) for s in old_snapshots)
    ssm = boto3.session.Session().client("ssm", region_name=REGION, endpoint_url=ec2_env)
    assert ssm.get_parameter(Name=PARAMETER)["Parameter"]["Value"] == built
    assert answer["status"]["images"] == [{"region": REGION, "architecture": "x86_64", "imageID": built}]


def test_a_parameter_outside_the_allowed_prefix_is_refused_with_a_condition(ec2_env: str) -> None:
    ec2 = ec2_client(ec2_env)
    built = register_built_ami(ec2, "opsy-new")
    raw = spec(publish={"ssmParameter": "/team-b/ami"})
    settings = Settings(publish_parameter_prefix="/platform/ami/")
    with serve(create_app(settings, images=Ec2())) as url:
        answer, _ = finish(url, raw, f"{REGION}:{built}")

    failed = conditions(answer)["PublishFailed"]
    assert "/team-b/ami" in failed["message"]
    assert "/platform/ami/" in failed["message"]
    assert tags_of(ec2, built)["status"] == "active"  # everything else still happened
    ssm = boto3.session.Session().client("ssm", region_name=REGION, endpoint_url=ec2_env)
    assert ssm.describe_parameters()["Parameters"] == []


def parameters_of(ec2_env: str) -> dict[str, str]:
    ssm = boto3.session.Session().client("ssm", region_name=REGION, endpoint_url=ec2_env)
    found = ssm.get_parameters_by_path(Path="/platform/ami", Recursive=True)["Parameters"]
    return {p["Name"]: p["Value"] for p in found}


def test_a_per_architecture_parameter_follows_its_architecture_or_goes_and_protects_its_ami(
    ec2_env: str,
) -> None:
    """Issue 16, defect 1: build 1 makes x86_64 and arm64, build 2 only x86_64, keep 1."""
    ec2 = ec2_client(ec2_env)
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    raw = spec(retention={"keep": 1}, publish={"ssmParameter": PARAMETER})
    with serve(create_app(Settings(), images=Ec2(), clock=clock)) as url:
        first = sync(url, request(parent(raw)))
        (job1,) = first["children"]
        x86_1 = register_built_ami(ec2, "opsy-x86-1")
        arm_1 = register_built_ami(ec2, "opsy-arm-1", base_image_id=ARM64_EKS_130)
        done1 = succeeded(job1, clock.now - timedelta(minutes=20), clock.now - timedelta(minutes=1))
        pod1 = build_pod(done1, f"{REGION}:{x86_1},{REGION}:{arm_1}")
        built1 = sync(url, request(parent(raw, status=first["status"]), [done1], [pod1]))
        assert parameters_of(ec2_env) == {
            PARAMETER: x86_1,
            f"{PARAMETER}/x86_64": x86_1,
            f"{PARAMETER}/arm64": arm_1,
        }

        clock.now += timedelta(hours=49)  # expired: build 2, x86_64 only
        rebuilding = sync(url, request(parent(raw, status=built1["status"]), [done1], [pod1]))
        (job2,) = [c for c in rebuilding["children"] if c["metadata"]["name"] != done1["metadata"]["name"]]
        x86_2 = register_built_ami(ec2, "opsy-x86-2")
        done2 = succeeded(job2, clock.now - timedelta(minutes=20), clock.now - timedelta(minutes=1))
        pod2 = build_pod(done2, f"{REGION}:{x86_2}")
        built2 = sync(url, request(parent(raw, status=rebuilding["status"]), [done1, done2], [pod2]))

        # The per-architecture name keeps naming the current x86_64 AMI; arm64 has none, so its name goes.
        assert parameters_of(ec2_env) == {PARAMETER: x86_2, f"{PARAMETER}/x86_64": x86_2}
        assert tags_of(ec2, arm_1)["status"] == "deprecated"

        # The retired arm64 AMI is removed by hand: one architecture is left. Nothing any parameter of the
        # builder ever named is removed while it names it, and every parameter names a live AMI.
        ec2.deregister_image(ImageId=arm_1)
        status = built2["status"]
        for _ in range(3):
            status = sync(url, request(parent(raw, status=status), [done2], [pod2]))["status"]
            for value in parameters_of(ec2_env).values():
                assert exists(ec2, value), value
        assert parameters_of(ec2_env) == {PARAMETER: x86_2, f"{PARAMETER}/x86_64": x86_2}
        assert not exists(ec2, x86_1)  # keep 1, and no parameter names it any more
        assert exists(ec2, x86_2)
