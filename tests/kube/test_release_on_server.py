"""Issue 21: a PackerBuilder with two release channels under the real Metacontroller (v4.17.2) on a real API
server, from its first build through a soak to the revocation of its only AMI.

The parts are those of tests/kube/test_metacontroller_on_server.py, whose fixtures this module shares: the
session's control plane (the Job controller is real), the real Metacontroller running
metacontroller/compositecontroller.yaml, the hook over real HTTP against moto (EC2 and SSM), every call
recorded. The test plays the kubelet for the build Job.

Every wait is for something observable (a watch on the object, a hook call), under a deadline; none sleeps.
stable's soak (an hour) is passed by moving the hook's clock to a few seconds before it ends: what is real is
that the hook asks to be called again when the soak ends and Metacontroller comes back by itself then.
"""

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING

import boto3
import pytest

from app.core.release import channel_tag
from app.model.tags import parse_timestamp
from tests.aws import REGION, ec2_client, register_built_ami, tags_of
from tests.deploy.manifests import load_yaml
from tests.kube import test_metacontroller_on_server as shared
from tests.kube.cluster import ControlPlane, JsonObject
from tests.kube.kubelet import finish_as_kubelet, job_finished
from tests.kube.objects import pod_of
from tests.kube.recorded_hook import Clock, HookServer
from tests.kube.test_metacontroller_on_server import (
    BACKOFF_LEFT,
    EXAMPLES,
    RETENTION,
    Builder,
    created,
    names,
    ready,
    running,
)

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ssm import SSMClient

# The fixtures of tests/kube/test_metacontroller_on_server.py, under the names pytest looks them up by.
hook_port = shared.hook_port
slack = shared.slack
clock = shared.clock
hook = shared.hook
hook_version = shared.hook_version
composite_controller = shared.composite_controller
controller = shared.controller

MAIN = load_yaml(EXAMPLES / RETENTION)["spec"]["publish"]["ssmParameter"]
CANARY = f"{MAIN}/canary"
STABLE = f"{MAIN}/stable"
SOAK = timedelta(hours=1)


def with_channels() -> JsonObject:
    """The retention example with two channels: canary as soon as an AMI is active, stable an hour later."""
    body = load_yaml(EXAMPLES / RETENTION)
    body["spec"]["publish"]["channels"] = [
        {"name": "canary", "ssmParameter": CANARY},
        {"name": "stable", "ssmParameter": STABLE, "after": "1h"},
    ]
    # No EC2 deprecation time at expiry: moto has no EnableImageDeprecation, it would fail on every sync.
    body["spec"]["retention"]["deprecate"] = False
    return body


@pytest.fixture
def pb(kube: ControlPlane, namespace: str, controller: JsonObject, hook: HookServer) -> Iterator[Builder]:
    with created(kube, namespace, with_channels(), hook) as made:
        yield made


def channels(obj: JsonObject) -> dict[str, str]:
    """Channel name -> the AMI status.channels says it holds ("" for none yet), in the status' order."""
    return {c["name"]: c.get("imageID", "") for c in (obj.get("status") or {}).get("channels") or []}


def entered(obj: JsonObject, name: str) -> str:
    (found,) = [c for c in obj["status"]["channels"] if c["name"] == name]
    return str(found["enteredAt"])


def published(ssm: "SSMClient", name: str) -> str | None:
    """What the parameter names in the builder's region, None when it does not exist."""
    try:
        return ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        return None


def remaining(ec2: "EC2Client", image_id: str) -> list[tuple[str, str]]:
    """The AMI's state and status tag, if it still exists."""
    images = ec2.describe_images(Filters=[{"Name": "image-id", "Values": [image_id]}])["Images"]
    return [(i["State"], {t["Key"]: t["Value"] for t in i.get("Tags", [])}["status"]) for i in images]


def said_revoked(obj: JsonObject) -> str:
    """The AMI the builder's Revoked condition names, having checked that it says every parameter is deleted
    for want of another AMI."""
    (found,) = [c for c in obj["status"]["conditions"] if c["type"] == "Revoked"]
    assert (found["status"], found["reason"]) == ("True", "NothingToFallBackTo"), found
    message = str(found["message"])
    assert all(parameter in message for parameter in (MAIN, CANARY, STABLE)), message
    return message.removeprefix("Revoked: ").split(".", 1)[0]


def test_an_ami_soaks_through_two_channels_and_revoking_it_empties_them_and_rebuilds_at_once(
    kube: ControlPlane, namespace: str, pb: Builder, clock: Clock, ec2_env: str
) -> None:
    ec2 = ec2_client(ec2_env)
    ssm = boto3.session.Session().client("ssm", region_name=REGION, endpoint_url=ec2_env)

    # The build succeeds: the sync that records its AMI publishes it and promotes it to canary at once.
    build = pb.job()
    pb.until(running(build), "JobRunning")
    ami = register_built_ami(ec2, "opsy-channels-1")
    finish_as_kubelet(kube, pod_of(kube, namespace, build), 0, f"{REGION}:{ami}")
    job_finished(kube, namespace, build)
    recorded = pb.call(lambda c: c.answer["status"].get("lastRunBuiltImageID") == ami, f"{ami} recorded")
    assert channels(recorded.answer) == {"canary": ami, "stable": ""}
    status = pb.until(lambda p: ready(p) and channels(p).get("canary") == ami, "Ready, canary holding it")
    assert (status["status"]["state"], status["status"]["lastRunBuiltImageID"]) == ("AMICreated", ami)
    assert channels(status) == {"canary": ami, "stable": ""}
    assert [c.get("pinned", False) for c in status["status"]["channels"]] == [False, False]
    assert (published(ssm, MAIN), published(ssm, CANARY), published(ssm, STABLE)) == (ami, ami, None)
    canary_entry = entered(status, "canary")
    canary_at = parse_timestamp(canary_entry)
    assert tags_of(ec2, ami)[channel_tag("canary")] == canary_entry
    assert channel_tag("stable") not in tags_of(ec2, ami)

    # An hour of soak in canary, bar BACKOFF_LEFT: a change of the builder's annotations makes Metacontroller
    # sync, and the hook asks to be called again when the soak ends; nothing moves before.
    clock.jump_to(canary_at + SOAK - BACKOFF_LEFT)
    mark = len(pb.hook.calls.all())
    kube.api.patch(pb.path, {"metadata": {"annotations": {"test/nudge": "soaking"}}})
    nudged = pb.call(
        lambda c: "test/nudge" in (c.parent["metadata"].get("annotations") or {}),
        "after the nudge",
        after=mark,
    )
    resync = nudged.answer["resyncAfterSeconds"]
    assert 0 < resync <= BACKOFF_LEFT.total_seconds(), nudged.answer
    assert channels(nudged.answer) == {"canary": ami, "stable": ""}

    # Metacontroller comes back by itself when the soak has ended, and stable takes the AMI.
    promoted = pb.call(lambda c: channels(c.answer).get("stable") == ami, "stable promoted", after=mark)
    assert promoted.at - nudged.at >= resync - 0.5
    status = pb.until(lambda p: channels(p).get("stable") == ami, "stable holding it")
    assert channels(status) == {"canary": ami, "stable": ami}
    assert parse_timestamp(entered(status, "stable")) >= canary_at + SOAK
    assert entered(status, "canary") == canary_entry
    assert (published(ssm, MAIN), published(ssm, CANARY), published(ssm, STABLE)) == (ami, ami, ami)
    assert tags_of(ec2, ami)[channel_tag("stable")] == entered(status, "stable")
    assert pb.jobs() == [build["metadata"]["name"]]

    # The AMI is bad: revoked by the docs' `kubectl patch`. It is the only AMI the builder ever made, so
    # nothing is left to fall back to: every parameter is deleted, and a new build starts at once.
    generation = status["metadata"]["generation"] + 1
    mark = len(pb.hook.calls.all())
    patch = {"spec": {"release": {"revoke": [ami]}}}
    kube.kubectl(
        "patch", "packerbuilder", pb.name, "-n", namespace, "--type", "merge", "-p", json.dumps(patch)
    )
    first = pb.call(
        lambda c: c.parent["metadata"]["generation"] == generation, "of the revoking spec", after=mark
    )
    rebuild = [n for n in names(first.answer) if n != build["metadata"]["name"]]
    assert len(rebuild) == 1, first.answer
    assert channels(first.answer) == {"canary": "", "stable": ""}
    assert said_revoked(first.answer) == ami

    # Metacontroller creates the rebuild's Job, and the next sync (retention on: keep 3) sees it running. The
    # revoked AMI stays, disabled: the Revoked condition still says why every parameter is gone.
    again = pb.job(lambda j: j["metadata"]["name"] == rebuild[0], "the rebuild's Job")
    assert again["metadata"]["labels"]["ami.refresh.ops/attempt"] == "0"
    status = pb.until(
        lambda p: (p["status"].get("state"), p["status"].get("jobName")) == ("JobRunning", rebuild[0]),
        "the rebuild running",
    )
    assert said_revoked(status) == ami
    assert channels(status) == {"canary": "", "stable": ""}
    assert (published(ssm, MAIN), published(ssm, CANARY), published(ssm, STABLE)) == (None, None, None)
    assert remaining(ec2, ami) == [("disabled", "revoked")]
    assert pb.jobs() == sorted([build["metadata"]["name"], rebuild[0]])
