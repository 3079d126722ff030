"""The seed's PackerBuilder from creation to a tagged AMI and back to nothing, driven pass by pass by the
Metacontroller stand-in (tests/kube/metacontroller.py) on a real API server.

The real Metacontroller runs the same life and more (tests/kube/test_metacontroller_on_server.py). This test
stays for what only single, synchronous passes show without waiting for something not to happen: once the
AMI is recorded, one more pass writes nothing and changes no child (a status that changed on every sync
would make Metacontroller loop).

The parts: the session's control plane (etcd, kube-apiserver, kube-controller-manager: the Job controller
and the garbage collector are real), the hook over real HTTP with its real AMI index against moto, and the
stand-in. The test plays the kubelet (tests/kube/kubelet.py).
"""

from collections.abc import Iterator

import pytest

from app.main import create_app
from app.model.settings import Settings
from app.model.tags import parse_timestamp
from tests.aws import REGION, ec2_client, register_built_ami, tags_of
from tests.deploy.manifests import CRD_FILE, load_yaml
from tests.fakes.slack import fake_slack
from tests.http import serve
from tests.kube.cluster import ControlPlane, JsonObject
from tests.kube.kubelet import finish_as_kubelet, job_finished
from tests.kube.metacontroller import Metacontroller
from tests.kube.objects import install_crd, pod_of, until_empty

EXAMPLES = CRD_FILE.parent / "examples"
SEED = load_yaml(EXAMPLES / "packerbuilder.yaml")
NAME = SEED["metadata"]["name"]
PACKER = "packer"


@pytest.fixture(scope="module")
def crd(kube: ControlPlane) -> None:
    install_crd(kube)


@pytest.fixture
def hook(ec2_env: str) -> Iterator[str]:
    """The hook as the chart runs it: its AMI index filled from (moto's) EC2 in the background; Slack, which
    the seed notifies, faked on loopback."""
    with (
        fake_slack() as slack,
        serve(create_app(Settings(index_regions=(REGION,), slack_api_url=slack.url))) as url,
    ):
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
    done = job_finished(kube, namespace, job)

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
