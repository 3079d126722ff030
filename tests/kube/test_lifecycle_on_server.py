"""The seed's PackerBuilder from creation to a tagged AMI and back to nothing, on a real API server.

The parts: the session's control plane (etcd, kube-apiserver, kube-controller-manager: the Job controller
and the garbage collector are real), the hook over real HTTP with its real AMI index against moto, and
tests.kube.metacontroller playing Metacontroller. There is no scheduler and no kubelet, so the test plays
the kubelet: it writes the build Pod's status through the status subresource (the Packer container ends
with the AMI in its termination message) after doing in moto what `packer build` does; the Job controller
then completes the Job from its Pod, as in a cluster.
"""

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from app.main import create_app
from app.settings import Settings
from app.tags import parse_timestamp
from tests.aws import REGION, ec2_client, register_built_ami, tags_of
from tests.deploy.manifests import CRD_FILE, load_yaml
from tests.http import serve
from tests.kube.cluster import ControlPlane, JsonObject
from tests.kube.metacontroller import Metacontroller
from tests.kube.objects import install_crd, pod_of

EXAMPLES = CRD_FILE.parent / "examples"
SEED = load_yaml(EXAMPLES / "packerbuilder.yaml")
NAME = SEED["metadata"]["name"]
PACKER = "packer"
WAIT = 120.0


@pytest.fixture(scope="module")
def crd(kube: ControlPlane) -> None:
    install_crd(kube)


@pytest.fixture
def hook(ec2_env: str) -> Iterator[str]:
    """The hook as the chart runs it: its AMI index filled from (moto's) EC2 in the background."""
    with serve(create_app(Settings(index_regions=(REGION,)))) as url:
        yield url


@pytest.fixture
def builder(kube: ControlPlane, crd: None, namespace: str, hook: str) -> Iterator[Metacontroller]:
    """The seed's PackerBuilder and the Secrets it names, created in the namespace; its Metacontroller."""
    for example in ("secret-git-sync.yaml", "secret-aws-creds.yaml", "secret-slack-token.yaml"):
        kube.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / example))
    kube.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "packerbuilder.yaml"))
    driver = Metacontroller(kube, hook, namespace, NAME)
    try:
        yield driver
    finally:
        driver.close()


def jobs(driver: Metacontroller) -> list[JsonObject]:
    items: list[JsonObject] = driver.kube.api.get(driver.jobs_path).get("items") or []
    return items


def condition(obj: JsonObject | None, kind: str) -> JsonObject | None:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind), None)


def ready(obj: JsonObject | None) -> bool:
    found = condition(obj, "Ready")
    return found is not None and found["status"] == "True"


def finish_as_kubelet(kube: ControlPlane, pod: JsonObject, exit_code: int, message: str) -> None:
    """What the kubelet writes when the Pod's containers have run: each one terminated, the Packer
    container with `exit_code` and its termination message."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    spec = pod["spec"]

    def terminated(container: JsonObject, code: int, text: str = "") -> JsonObject:
        state: dict[str, Any] = {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}
        state |= {"startedAt": now, "finishedAt": now} | ({"message": text} if text else {})
        return {
            "name": container["name"],
            "image": container["image"],
            "imageID": "",
            "ready": False,
            "restartCount": 0,
            "state": {"terminated": state},
        }

    status = {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "startTime": now,
        "initContainerStatuses": [terminated(c, 0) for c in spec.get("initContainers") or []],
        "containerStatuses": [
            terminated(c, exit_code, message if c["name"] == PACKER else "") for c in spec["containers"]
        ],
    }
    path = f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods/{pod['metadata']['name']}/status"
    kube.api.put(path, {**pod, "status": status})


def job_done(kube: ControlPlane, namespace: str, job: JsonObject) -> JsonObject:
    """The Job once the Job controller has counted its Pod and marked it Complete."""
    return kube.api.wait_for(
        f"/apis/batch/v1/namespaces/{namespace}/jobs",
        lambda found: condition(found, "Complete") is not None,
        params={"fieldSelector": f"metadata.name={job['metadata']['name']}"},
        timeout=WAIT,
        what=f"Job {job['metadata']['name']} Complete",
    )


def until_empty(kube: ControlPlane, collection: str, what: str) -> None:
    """Polled until the collection is empty (the garbage collector works in the background)."""
    deadline = time.monotonic() + WAIT
    while items := kube.api.get(collection).get("items"):
        names = [item["metadata"]["name"] for item in items]
        assert time.monotonic() < deadline, f"{what}: still there after {WAIT:.0f} s: {names}"
        time.sleep(0.2)


def test_the_seed_goes_from_creation_to_a_tagged_ami_and_its_deletion_collects_its_jobs(
    kube: ControlPlane, namespace: str, builder: Metacontroller, ec2_env: str
) -> None:
    # Creation: the finalizer first, then one build Job owned by the builder, its Pod made by the Job controller.
    (job,) = builder.run_until(lambda: jobs(builder), "a build Job")
    pb = builder.parent()
    assert pb is not None
    assert builder.finalizer in pb["metadata"]["finalizers"]
    (owner,) = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "PackerBuilder",
        NAME,
        pb["metadata"]["uid"],
        True,
    )
    running = builder.run_until(
        lambda: (p := builder.parent()) and p["status"].get("jobName") and p, "JobRunning"
    )
    assert running["status"]["jobName"] == job["metadata"]["name"]
    assert running["status"]["jobStatus"] == "running"
    assert running["status"]["observedGeneration"] == running["metadata"]["generation"]
    pod = pod_of(kube, namespace, job)
    assert [c["name"] for c in pod["spec"]["containers"]] == [PACKER]

    # Packer builds: an AMI appears in EC2 and the container ends with it in its termination message.
    ec2 = ec2_client(ec2_env)
    ami = register_built_ami(ec2, "opsy-generic-fips-1")
    finish_as_kubelet(kube, pod, 0, f"{REGION}:{ami}")
    done = job_done(kube, namespace, job)

    recorded = builder.run_until(lambda: (p := builder.parent()) and ready(p) and p, "Ready=True")
    status = recorded["status"]
    assert status["lastRunBuiltImageID"] == ami
    assert status["jobStatus"] == "completed"
    assert status["state"] == "AMICreated"
    tags = tags_of(ec2, ami)
    assert tags["status"] == "active"
    assert tags["created-by"] == NAME
    assert tags["build-id"] == status["buildID"]
    completed = parse_timestamp(done["status"]["completionTime"])
    assert parse_timestamp(tags["create-timestamp"]) == completed

    # Settled: nothing more to do, no second build; the finished Job stays as history (limit 1).
    settle = builder.reconcile()
    assert settle is not None
    assert not settle.changed, settle
    assert [j["metadata"]["name"] for j in jobs(builder)] == [job["metadata"]["name"]]
    assert [name for p in builder.passes for name in p.created] == [job["metadata"]["name"]]

    # Deletion: the finalize hook lets it go, Metacontroller's finalizer is removed, the garbage collector
    # deletes its Jobs and their Pods; the AMI stays (fleets launch from it).
    kube.api.delete(builder.parent_path)
    builder.run_until(lambda: builder.parent() is None, "the builder gone")
    finals = [p for p in builder.passes if p.hook == "finalize"]
    assert finals
    assert finals[-1].answer["finalized"] is True
    until_empty(kube, f"/apis/batch/v1/namespaces/{namespace}/jobs", "the builder's Jobs collected")
    until_empty(kube, f"/api/v1/namespaces/{namespace}/pods", "their Pods collected")
    assert tags_of(ec2, ami)["status"] == "active"


def test_deleting_a_builder_while_it_builds_waits_for_the_build_and_records_its_ami(
    kube: ControlPlane, namespace: str, builder: Metacontroller, ec2_env: str
) -> None:
    (job,) = builder.run_until(lambda: jobs(builder), "a build Job")
    pod = pod_of(kube, namespace, job)

    kube.api.delete(builder.parent_path)
    waiting = builder.run_until(
        lambda: (p := builder.parent()) and p["status"].get("state") == "Finalizing" and p, "state Finalizing"
    )
    assert builder.finalizer in waiting["metadata"]["finalizers"]
    assert waiting["status"]["lastRunMessage"].startswith(
        f"Waiting for running build {job['metadata']['name']}"
    )
    assert builder.passes[-1].answer["finalized"] is False
    assert [j["metadata"]["name"] for j in jobs(builder)] == [job["metadata"]["name"]]

    ec2 = ec2_client(ec2_env)
    ami = register_built_ami(ec2, "opsy-generic-fips-1")
    finish_as_kubelet(kube, pod, 0, f"{REGION}:{ami}")
    job_done(kube, namespace, job)
    builder.run_until(lambda: builder.parent() is None, "the builder gone")

    assert tags_of(ec2, ami)["status"] == "active"
    assert tags_of(ec2, ami)["created-by"] == NAME
    until_empty(kube, f"/apis/batch/v1/namespaces/{namespace}/jobs", "the builder's Jobs collected")
