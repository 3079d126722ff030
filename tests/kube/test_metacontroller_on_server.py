"""PackerBuilders under the real Metacontroller (v4.17.2) on a real API server: the contract as it runs.

The parts: the session's control plane (etcd, kube-apiserver, kube-controller-manager: the Job controller and
the garbage collector are real), Metacontroller built from its source and run as its production manifest
runs it (tests/kube/real_metacontroller.py), metacontroller/compositecontroller.yaml applied as it ships but
for its hook URLs, and the hook over real HTTP with its real AMI index against moto, every call recorded
(tests/kube/recorded_hook.py). There is no kubelet: the test plays it (tests/kube/kubelet.py), doing in moto
what `packer build` does and ending the Packer container with the AMI in its termination message.

Every wait is for something observable (a watch on the object, a hook call), under a deadline; none sleeps.
The retry backoff (60 s) is passed by moving the hook's clock, not by waiting: what is real is that the hook
asks for a resync and Metacontroller comes back by itself when it is due.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from app.hooks import JOB_GROUP, POD_GROUP
from app.settings import Settings
from app.spec import parse_spec
from app.tags import Owner, format_timestamp, parse_timestamp
from app.timing import RETRY_BACKOFF
from tests.aws import REGION, ec2_client, free_port, register_built_ami, tags_of
from tests.deploy.manifests import COMPOSITE_CONTROLLER_FILE, CRD_FILE, load_yaml
from tests.fakes.slack import FakeSlack, fake_slack
from tests.kube import real_metacontroller
from tests.kube.cluster import ControlPlane, JsonObject, KubeApiError, Process
from tests.kube.kubelet import finish_as_kubelet, job_finished
from tests.kube.objects import builder, builders, condition, pod_of, until_empty, until_gone
from tests.kube.recorded_hook import Call, Clock, HookServer

EXAMPLES = CRD_FILE.parent / "examples"
SEED = "packerbuilder.yaml"
WAIT = 120.0
CONTROLLER = load_yaml(COMPOSITE_CONTROLLER_FILE)
FINALIZER = f"metacontroller.io/compositecontroller-{CONTROLLER['metadata']['name']}"
PARAMETER_PREFIX = "/platform/ami/"  # the chart's hook.publishParameterPrefix
# What is left of the retry backoff when the test lets the hook's clock jump: enough for Metacontroller to
# call once in between on a busy machine, short enough not to slow the suite.
BACKOFF_LEFT = timedelta(seconds=6)


# -- fixtures -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hook_port() -> int:
    """The hook's port for the module: the CompositeController points there, whichever app serves it."""
    return free_port()


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    with fake_slack() as server:
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hook(ec2_env: str, hook_port: int, clock: Clock, slack: FakeSlack) -> Iterator[HookServer]:
    """The hook with the chart's settings (the index of its own region, the publish prefix), Slack faked."""
    settings = Settings(
        index_regions=(REGION,), publish_parameter_prefix=PARAMETER_PREFIX, slack_api_url=slack.url
    )
    with HookServer(hook_port, settings, clock) as server:
        yield server


@pytest.fixture
def hook_version() -> str | None:
    """The hooks' `version` (None: as the file ships, Metacontroller's v1)."""
    return None


@pytest.fixture(scope="module")
def composite_controller(kube: ControlPlane, metacontroller: Process) -> Iterator[str]:
    """The CompositeController's name; deleted after the module (Metacontroller stops its controller)."""
    name: str = CONTROLLER["metadata"]["name"]
    yield name
    real_metacontroller.delete(kube, name)


@pytest.fixture
def controller(
    kube: ControlPlane, composite_controller: str, hook: HookServer, hook_version: str | None
) -> JsonObject:
    """metacontroller/compositecontroller.yaml, its hooks at the test's uvicorn, running in Metacontroller."""
    return real_metacontroller.apply(kube, real_metacontroller.hooked(CONTROLLER, hook.url, hook_version))


@dataclass
class Builder:
    """One PackerBuilder of a test, with what the test reads of it."""

    kube: ControlPlane
    namespace: str
    name: str
    hook: HookServer

    @property
    def path(self) -> str:
        return builder(self.namespace, self.name)

    @property
    def jobs_path(self) -> str:
        return f"/apis/batch/v1/namespaces/{self.namespace}/jobs"

    def get(self) -> JsonObject:
        return self.kube.api.get(self.path)

    def until(self, predicate: Callable[[JsonObject], Any], what: str) -> JsonObject:
        """The builder once `predicate` holds for it."""
        return self.kube.api.wait_for(
            builders(self.namespace),
            predicate,
            params={"fieldSelector": f"metadata.name={self.name}"},
            timeout=WAIT,
            what=f"{self.name}: {what}",
        )

    def job(
        self, predicate: Callable[[JsonObject], bool] = lambda _: True, what: str = "a Job"
    ) -> JsonObject:
        return self.kube.api.wait_for(self.jobs_path, predicate, timeout=WAIT, what=f"{self.name}: {what}")

    def jobs(self) -> list[str]:
        return sorted(j["metadata"]["name"] for j in self.kube.api.get(self.jobs_path).get("items") or [])

    def calls(self, path: str = "/sync") -> list[Call]:
        return [c for c in self.hook.calls.all() if c.path == path and c.of(self.namespace, self.name)]

    def call(self, predicate: Callable[[Call], bool], what: str, path: str = "/sync", after: int = 0) -> Call:
        return self.hook.calls.wait(
            lambda c: c.path == path and c.of(self.namespace, self.name) and predicate(c),
            timeout=WAIT,
            what=f"{path} of {self.name}: {what}",
            after=after,
        )

    def delete(self, *flags: str) -> None:
        self.kube.kubectl("delete", "packerbuilder", self.name, "-n", self.namespace, "--wait=false", *flags)

    def gone(self) -> None:
        until_gone(self.kube, builders(self.namespace), self.name, f"PackerBuilder {self.name}")


@pytest.fixture
def example() -> str:
    """The example PackerBuilder the test creates (metacontroller/examples/)."""
    return SEED


@pytest.fixture
def pb(
    kube: ControlPlane, namespace: str, controller: JsonObject, hook: HookServer, example: str
) -> Iterator[Builder]:
    """The example PackerBuilder and the Secrets it names, created in the namespace. Afterwards it is deleted
    and Metacontroller's finalizer taken off, so no test leaves a builder waiting for a hook that is gone."""
    for secret in ("secret-git-sync.yaml", "secret-aws-creds.yaml", "secret-slack-token.yaml"):
        kube.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / secret))
    kube.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / example))
    made = Builder(kube, namespace, load_yaml(EXAMPLES / example)["metadata"]["name"], hook)
    try:
        yield made
    finally:
        try:
            kube.api.delete(made.path)
            kube.api.patch(made.path, {"metadata": {"finalizers": None}})
        except KubeApiError as error:
            if error.code != 404:
                raise


def ready(obj: JsonObject) -> bool:
    return condition(obj, "Ready") == "True"


def running(job: JsonObject) -> Callable[[JsonObject], Any]:
    name = job["metadata"]["name"]
    return lambda p: (
        (p.get("status") or {}).get("jobName") == name and p["status"].get("jobStatus") == "running"
    )


def _container(container: JsonObject) -> JsonObject:
    return {key: container.get(key) for key in ("name", "image", "command", "args", "env")}


def names(answer: JsonObject) -> list[str]:
    return sorted(child["metadata"]["name"] for child in answer.get("children") or [])


# -- the tests ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hook_version", [None, "v2"], ids=["v1", "v2"])
def test_the_seed_from_creation_to_a_tagged_ami_and_through_deletion(
    kube: ControlPlane, namespace: str, pb: Builder, ec2_env: str, hook_version: str | None
) -> None:
    # Creation: Metacontroller adds its finalizer and creates the one Job the hook asks for, as its child.
    job = pb.job()
    parent = pb.until(running(job), "JobRunning")
    assert FINALIZER in parent["metadata"]["finalizers"]
    assert parent["status"]["observedGeneration"] == parent["metadata"]["generation"]
    (owner,) = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"], owner["blockOwnerDeletion"]) == (
        "PackerBuilder",
        pb.name,
        parent["metadata"]["uid"],
        True,
        True,
    )
    assert job["metadata"]["labels"]["controller-uid"] == parent["metadata"]["uid"]
    asked = pb.call(lambda c: names(c.answer) == [job["metadata"]["name"]], "the Job asked for")
    (desired,) = asked.answer["children"]
    assert desired["metadata"]["labels"].items() <= job["metadata"]["labels"].items()
    assert [_container(c) for c in job["spec"]["template"]["spec"]["containers"]] == [
        _container(c) for c in desired["spec"]["template"]["spec"]["containers"]
    ]
    pod = pod_of(kube, namespace, job)

    # Packer builds: the AMI in EC2, the container ends with it in its termination message.
    ec2 = ec2_client(ec2_env)
    ami = register_built_ami(ec2, "opsy-generic-fips-1")
    finish_as_kubelet(kube, pod, 0, f"{REGION}:{ami}")
    done = job_finished(kube, namespace, job)
    status = pb.until(ready, "Ready=True")["status"]
    assert status["lastRunBuiltImageID"] == ami
    assert (status["jobStatus"], status["state"]) == ("completed", "AMICreated")
    tags = tags_of(ec2, ami)
    assert (tags["status"], tags["created-by"], tags["build-id"]) == ("active", pb.name, status["buildID"])
    assert parse_timestamp(tags["create-timestamp"]) == parse_timestamp(done["status"]["completionTime"])
    # The finished Job stays as history (successfulJobsHistoryLimit 1); no second build was ever asked for.
    assert pb.jobs() == [job["metadata"]["name"]]
    assert {name for c in pb.calls() for name in names(c.answer)} == {job["metadata"]["name"]}

    # The hook version is the one the CompositeController names: keys `name` (v1) or `namespace/name` (v2).
    seen = next(
        c
        for c in pb.calls()
        if (c.request["children"] or {}).get(JOB_GROUP) and (c.request["related"] or {}).get(POD_GROUP)
    )
    key = job["metadata"]["name"] if hook_version is None else f"{namespace}/{job['metadata']['name']}"
    assert list(seen.request["children"][JOB_GROUP]) == [key]
    pod_key = pod["metadata"]["name"] if hook_version is None else f"{namespace}/{pod['metadata']['name']}"
    assert list(seen.request["related"][POD_GROUP]) == [pod_key]

    # Deletion: the finalize hook lets it go at once (nothing runs), the garbage collector takes its Jobs
    # and their Pods; the AMI stays (fleets launch from it).
    pb.delete()
    pb.gone()
    assert pb.calls("/finalize")[-1].answer["finalized"] is True
    until_empty(kube, pb.jobs_path, "the builder's Jobs collected")
    until_empty(kube, f"/api/v1/namespaces/{namespace}/pods", "their Pods collected")
    assert tags_of(ec2, ami)["status"] == "active"


def test_a_failed_build_is_retried_when_metacontroller_comes_back_after_the_backoff(
    kube: ControlPlane, namespace: str, pb: Builder, clock: Clock
) -> None:
    first = pb.job()
    pb.until(running(first), "JobRunning")
    finish_as_kubelet(kube, pod_of(kube, namespace, first), 1, "")
    failed = job_finished(kube, namespace, first, "Failed")
    holding = pb.until(lambda p: p["status"].get("state") == "JobFailed", "JobFailed")
    assert holding["status"]["failedJobCount"] == 1
    assert pb.jobs() == [first["metadata"]["name"]]

    # For the hook, the backoff (60 s after the failure) is now BACKOFF_LEFT away; a change of the builder's
    # annotations makes Metacontroller sync, and the hook asks to be called again when the backoff ends.
    failed_at = next(
        parse_timestamp(c["lastTransitionTime"])
        for c in failed["status"]["conditions"]
        if c["type"] == "Failed"
    )
    clock.jump_to(failed_at + RETRY_BACKOFF - BACKOFF_LEFT)
    mark = len(pb.hook.calls.all())
    kube.api.patch(pb.path, {"metadata": {"annotations": {"test/nudge": "1"}}})
    nudged = pb.call(
        lambda c: "test/nudge" in (c.parent["metadata"].get("annotations") or {}),
        "after the nudge",
        after=mark,
    )
    resync = nudged.answer["resyncAfterSeconds"]
    assert 0 < resync <= BACKOFF_LEFT.total_seconds(), nudged.answer
    assert names(nudged.answer) == [first["metadata"]["name"]]

    # Nothing else happens; Metacontroller calls again when the resync is due, and the retry starts.
    retried = pb.call(lambda c: len(names(c.answer)) == 2, "the retry", after=mark)
    assert retried.at - nudged.at >= resync - 0.5
    second = pb.job(lambda j: j["metadata"]["name"] != first["metadata"]["name"], "the retry Job")
    assert second["metadata"]["labels"]["ami.refresh.ops/attempt"] == "1"
    assert pb.jobs() == sorted([first["metadata"]["name"], second["metadata"]["name"]])


def test_a_spec_change_mid_build_changes_nothing_until_the_build_ends(
    kube: ControlPlane, namespace: str, pb: Builder, ec2_env: str
) -> None:
    job = pb.job()
    before = pb.until(running(job), "JobRunning")
    kube.api.patch(pb.path, {"spec": {"timeOuts": {"buildTimeout": "3h"}}})
    generation = before["metadata"]["generation"] + 1

    changed = pb.until(
        lambda p: p["status"].get("observedGeneration") == generation, "the new generation observed"
    )
    assert changed["status"]["jobName"] == job["metadata"]["name"]
    assert changed["status"]["jobStatus"] == "running"
    answered = pb.call(lambda c: c.parent["metadata"]["generation"] == generation, "of the new generation")
    assert names(answered.answer) == [job["metadata"]["name"]]
    unchanged = kube.api.get(f"{pb.jobs_path}/{job['metadata']['name']}")
    assert unchanged["metadata"]["uid"] == job["metadata"]["uid"]
    assert unchanged["spec"] == job["spec"]
    assert pb.jobs() == [job["metadata"]["name"]]

    ec2 = ec2_client(ec2_env)
    ami = register_built_ami(ec2, "opsy-generic-fips-1")
    finish_as_kubelet(kube, pod_of(kube, namespace, job), 0, f"{REGION}:{ami}")
    status = pb.until(ready, "Ready=True")["status"]
    assert status["lastRunBuiltImageID"] == ami
    assert status["observedGeneration"] == generation
    assert tags_of(ec2, ami)["status"] == "active"
    # The new build timeout changes how a build runs, not what it makes: the fresh AMI stands, no rebuild.
    assert pb.jobs() == [job["metadata"]["name"]]


def test_the_hook_restarted_mid_build_picks_up_where_the_last_one_was(
    kube: ControlPlane, namespace: str, pb: Builder, ec2_env: str
) -> None:
    job = pb.job()
    pb.until(running(job), "JobRunning")
    pod = pod_of(kube, namespace, job)
    ec2 = ec2_client(ec2_env)
    ami = register_built_ami(ec2, "opsy-generic-fips-1")

    with pb.hook.down():
        # The build ends while no hook answers: Metacontroller's sync fails, it says so, and retries.
        finish_as_kubelet(kube, pod, 0, f"{REGION}:{ami}")
        job_finished(kube, namespace, job)
        kube.api.wait_for(
            f"/api/v1/namespaces/{namespace}/events",
            lambda event: "sync hook failed" in event.get("message", ""),
            params={"fieldSelector": f"involvedObject.name={pb.name},reason=SyncError"},
            timeout=WAIT,
            what="Metacontroller's SyncError event",
        )

    status = pb.until(ready, "Ready=True")["status"]
    assert status["lastRunBuiltImageID"] == ami
    assert tags_of(ec2, ami)["status"] == "active"
    assert pb.jobs() == [job["metadata"]["name"]]


def test_deleting_a_builder_mid_build_waits_tags_the_ami_then_lets_go(
    kube: ControlPlane, namespace: str, pb: Builder, ec2_env: str
) -> None:
    job = pb.job()
    pb.until(running(job), "JobRunning")
    pod = pod_of(kube, namespace, job)

    pb.delete()
    waiting = pb.until(lambda p: p["status"].get("state") == "Finalizing", "Finalizing")
    assert FINALIZER in waiting["metadata"]["finalizers"]
    assert waiting["status"]["lastRunMessage"].startswith(
        f"Waiting for running build {job['metadata']['name']}"
    )
    assert pb.calls("/finalize")[-1].answer["finalized"] is False
    assert pb.jobs() == [job["metadata"]["name"]]

    ec2 = ec2_client(ec2_env)
    ami = register_built_ami(ec2, "opsy-generic-fips-1")
    finish_as_kubelet(kube, pod, 0, f"{REGION}:{ami}")
    pb.gone()
    assert pb.calls("/finalize")[-1].answer["finalized"] is True
    tags = tags_of(ec2, ami)
    assert (tags["status"], tags["created-by"]) == ("active", pb.name)
    until_empty(kube, pb.jobs_path, "the builder's Jobs collected")


def test_foreground_deletion_mid_build_lets_the_garbage_collector_stop_the_build(
    kube: ControlPlane, namespace: str, pb: Builder
) -> None:
    """`--cascade=foreground`: the garbage collector deletes the running Job before the builder; the hook
    takes a Job being deleted as gone, never asks for it again, and lets the builder go."""
    job = pb.job()
    pb.until(running(job), "JobRunning")
    pod_of(kube, namespace, job)

    pb.delete("--cascade=foreground")
    pb.gone()
    until_empty(kube, pb.jobs_path, "the builder's Jobs")
    finals = pb.calls("/finalize")
    assert finals[-1].answer["finalized"] is True
    # Never asked for again: a finalize answer names only Jobs it observed and that are not being deleted
    # (whether the hook saw the Job being deleted or already gone depends on the garbage collector's pace).
    for c in finals:
        alive = {
            observed["metadata"]["name"]
            for observed in ((c.request["children"] or {}).get(JOB_GROUP) or {}).values()
            if not observed["metadata"].get("deletionTimestamp")
        }
        assert set(names(c.answer)) <= alive, c.answer
    assert {name for c in [*pb.calls(), *finals] for name in names(c.answer)} == {job["metadata"]["name"]}


RETENTION = "packerbuilder-retention.yaml"


@pytest.fixture
def older_amis(ec2_env: str, namespace: str) -> list[str]:
    """Four deprecated AMIs of the retention example's builder, 3 to 6 days old, there before its hook starts."""
    raw = load_yaml(EXAMPLES / RETENTION)
    mine = Owner.of(namespace, raw["metadata"]["name"], parse_spec(raw["spec"])).tags
    now = datetime.now(UTC)
    return [
        register_built_ami(
            ec2_client(ec2_env),
            f"older-{days}",
            tags={
                **mine,
                "status": "deprecated",
                "create-timestamp": format_timestamp(now - timedelta(days=days)),
            },
        )
        for days in (3, 4, 5, 6)
    ]


@pytest.mark.parametrize("example", [RETENTION])
def test_retention_and_publish_under_metacontroller(
    older_amis: list[str], kube: ControlPlane, namespace: str, pb: Builder, ec2_env: str
) -> None:
    ec2 = ec2_client(ec2_env)
    job = pb.job()
    ami = register_built_ami(ec2, "opsy-new")
    finish_as_kubelet(kube, pod_of(kube, namespace, job), 0, f"{REGION}:{ami}")

    status = pb.until(ready, "Ready=True")["status"]
    assert status["images"] == [{"region": REGION, "architecture": "x86_64", "imageID": ami}]
    # keep 3: the new AMI and the two newest older ones stay; the other two are deregistered.
    kept = [
        bool(ec2.describe_images(Filters=[{"Name": "image-id", "Values": [i]}])["Images"]) for i in older_amis
    ]
    assert kept == [True, True, False, False]
    parameter = load_yaml(EXAMPLES / RETENTION)["spec"]["publish"]["ssmParameter"]
    ssm = boto3.session.Session().client("ssm", region_name=REGION, endpoint_url=ec2_env)
    assert ssm.get_parameter(Name=parameter)["Parameter"]["Value"] == ami
