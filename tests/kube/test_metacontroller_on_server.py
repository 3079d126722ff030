"""PackerBuilders under the real Metacontroller (v4.17.2) on a real API server: the contract as it runs.

The parts: the session's control plane (etcd, kube-apiserver, kube-controller-manager: the Job controller and
the garbage collector are real), Metacontroller built from its source and run as its production manifest
runs it (tests/kube/real_metacontroller.py), metacontroller/compositecontroller.yaml applied as it ships but
for its hook URLs, and the hook over real HTTP with its real AMI index against moto, every call recorded
(tests/kube/recorded_hook.py). There is no kubelet: the test plays it (tests/kube/kubelet.py), doing in moto
what `packer build` does and ending the Packer container with the AMI in its termination message.

Every wait is for something observable (a watch on the object, a hook call), under a deadline; none sleeps.
The retry backoff (60 s) is passed by moving the hook's clock, not by waiting: what is real is that the hook
asks for a resync and Metacontroller comes back by itself when it is due. So is an AMI's expiry (48 h) in the
two-namespace case.
"""

import contextlib
import json
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from app.core.timing import RETRY_BACKOFF
from app.model.durations import parse_duration
from app.model.hooks import JOB_GROUP, POD_GROUP
from app.model.settings import Settings
from app.model.spec import parse_spec
from app.model.tags import Owner, format_timestamp, parse_timestamp
from tests.aws import REGION, ec2_client, free_port, register_built_ami, tags_of
from tests.deploy.manifests import COMPOSITE_CONTROLLER_FILE, CRD_FILE, load_yaml
from tests.fakes.slack import FakeSlack, fake_slack
from tests.kube import real_metacontroller
from tests.kube.cluster import ControlPlane, JsonObject, KubeApiError, Process
from tests.kube.kubelet import finish_as_kubelet, job_finished
from tests.kube.objects import builder, builders, condition, pod_of, until_empty, until_gone
from tests.kube.recorded_hook import Call, Clock, HookServer

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

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


@contextlib.contextmanager
def created(kube: ControlPlane, namespace: str, body: JsonObject, hook: HookServer) -> Iterator[Builder]:
    """The PackerBuilder `body` and the Secrets the examples name, created in the namespace. Afterwards it is
    deleted and gone (`let_go`), so no test leaves a builder waiting for a hook that is gone."""
    for secret in ("secret-git-sync.yaml", "secret-aws-creds.yaml", "secret-slack-token.yaml"):
        kube.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / secret))
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    made = Builder(kube, namespace, body["metadata"]["name"], hook)
    try:
        yield made
    finally:
        let_go(made)


def let_go(made: Builder) -> None:
    """Deletes the builder, then its Jobs, and returns once Metacontroller has let it go: from its deletion on
    the hook only finalizes (it asks for no Job), and without its Jobs nothing holds the finalize hook back, a
    build the test left running included.

    Taking Metacontroller's finalizer off here instead would race its finalize: when the builder vanishes
    between the hook's `finalized: true` and Metacontroller's removal of the finalizer, v4.17.2 dereferences
    the missing parent and exits (SIGSEGV in makeSelector), and every later test of the session finds no
    Metacontroller.
    """
    try:
        uid = made.get()["metadata"]["uid"]
        made.kube.api.delete(made.path)
    except KubeApiError as error:
        if error.code == 404:
            return
        raise
    made.kube.api.delete(
        made.jobs_path, propagation_policy="Background", params={"labelSelector": f"controller-uid={uid}"}
    )
    made.gone()


@pytest.fixture
def pb(
    kube: ControlPlane, namespace: str, controller: JsonObject, hook: HookServer, example: str
) -> Iterator[Builder]:
    """The example PackerBuilder, created in the namespace (see `created`)."""
    with created(kube, namespace, load_yaml(EXAMPLES / example), hook) as made:
        yield made


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


# -- two namespaces, one builder ------------------------------------------------------------------------------


@pytest.fixture
def teams(kube: ControlPlane) -> Iterator[tuple[str, str]]:
    """Two fresh namespaces, `team-a-…` and `team-b-…`."""
    with kube.namespace("team-a-") as team_a, kube.namespace("team-b-") as team_b:
        yield team_a, team_b


@pytest.fixture
def spawn(
    kube: ControlPlane, controller: JsonObject, hook: HookServer
) -> Iterator[Callable[[str, JsonObject], Builder]]:
    """Creates a PackerBuilder in a namespace when the test says (see `created`); each deleted afterwards."""
    with contextlib.ExitStack() as stack:
        yield lambda namespace, body: stack.enter_context(created(kube, namespace, body, hook))


def observed(call: Call) -> set[str]:
    """The Jobs a hook call was shown."""
    jobs = (call.request["children"] or {}).get(JOB_GROUP) or {}
    return {job["metadata"]["name"] for job in jobs.values()}


def built(b: Builder, ec2: "EC2Client", name: str, before: Collection[str] = ()) -> str:
    """The builder's build Job (the one not named in `before`) run by the test as the kubelet: an AMI
    registered in moto and reported; returns the AMI once the builder's status records it, and after
    the next sync, which removes what the recording sync's read of the parameter still protected."""
    job = b.job(lambda j: j["metadata"]["name"] not in before, "a build Job")
    ami = register_built_ami(ec2, name)
    finish_as_kubelet(b.kube, pod_of(b.kube, b.namespace, job), 0, f"{REGION}:{ami}")
    b.until(lambda p: ready(p) and p["status"].get("lastRunBuiltImageID") == ami, f"Ready on {ami}")
    b.call(
        lambda c: (c.parent.get("status") or {}).get("lastRunBuiltImageID") == ami, f"after {ami} recorded"
    )
    return ami


def rebuild_seen(b: Builder, before: Collection[str], after: int) -> None:
    """Returns once the builder has asked for a new build Job and a sync has been shown it."""
    job = b.job(lambda j: j["metadata"]["name"] not in before, "the rebuild's Job")["metadata"]["name"]
    b.call(lambda c: job in observed(c), f"shown {job}", after=after)


def exists(ec2: "EC2Client", image_id: str) -> bool:
    return bool(ec2.describe_images(Filters=[{"Name": "image-id", "Values": [image_id]}])["Images"])


def publish_failed(b: Builder) -> tuple[str, str] | None:
    """The reason and message of the builder's PublishFailed condition, when it is True."""
    for found in b.get()["status"].get("conditions") or []:
        if found["type"] == "PublishFailed" and found["status"] == "True":
            return str(found["reason"]), str(found["message"])
    return None


def test_two_namespaces_with_one_builder_keep_to_their_own_amis_and_parameter(
    kube: ControlPlane,
    teams: tuple[str, str],
    spawn: Callable[[str, JsonObject], Builder],
    hook: HookServer,
    clock: Clock,
    ec2_env: str,
) -> None:
    """The same manifest applied to two namespaces (issue 17): one name, cluster, repository and branch,
    `keep: 1`, one parameter. Each builds and tags its own AMI; the parameter stays its first owner's."""
    team_a, team_b = teams
    body = load_yaml(EXAMPLES / RETENTION)
    # keep 1; no EC2 deprecation time: moto has no EnableImageDeprecation, it would fail on every sync.
    body["spec"]["retention"] |= {"keep": 1, "deprecate": False}
    parameter = body["spec"]["publish"]["ssmParameter"]
    ec2 = ec2_client(ec2_env)
    ssm = boto3.session.Session().client("ssm", region_name=REGION, endpoint_url=ec2_env)

    def published() -> tuple[str, dict[str, str]]:
        value = ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
        tags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=parameter)["TagList"]
        return value, {t["Key"]: t["Value"] for t in tags}

    # team-a first: its AMI carries its namespace, and the parameter it creates records it as the owner.
    a = spawn(team_a, body)
    a1 = built(a, ec2, "team-a-1")
    assert (tags_of(ec2, a1)["created-by-namespace"], tags_of(ec2, a1)["status"]) == (team_a, "active")
    value, owner = published()
    assert (value, owner["created-by"], owner["created-by-namespace"]) == (a1, a.name, team_a)

    # team-b's builder has the same five management tags as team-a's fresh AMI: it does not adopt it, it
    # builds its own, and it may not publish over team-a's parameter.
    b = spawn(team_b, body)
    first = b.call(lambda c: True, "the first")
    assert first.answer["status"]["state"] == "JobCreation"
    b1 = built(b, ec2, "team-b-1")
    assert b.get()["status"]["state"] == "AMICreated"
    assert tags_of(ec2, b1)["created-by-namespace"] == team_b
    assert tags_of(ec2, a1)["status"] == "active"  # not retired by team-b's build
    assert published()[0] == a1
    refused = publish_failed(b)
    assert refused is not None
    assert refused[0] == "ParameterOwned"
    assert f"builder {team_a}/{a.name}" in refused[1]
    assert publish_failed(a) is None

    # Both AMIs expire: the hook's clock jumps past their expiry and a change of annotations makes
    # Metacontroller sync each builder, which asks for a rebuild. Once a sync has been shown each rebuild's
    # Job, the clock goes back to real time: the new AMIs are stamped with their Jobs' real completion, and a
    # clock two days ahead would find them expired the moment they are recorded.
    expires_in = parse_duration(body["spec"]["timeOuts"]["expiresIn"])
    last_built = max(parse_timestamp(tags_of(ec2, ami)["create-timestamp"]) for ami in (a1, b1))
    clock.jump_to(last_built + expires_in + timedelta(minutes=1))
    mark = len(hook.calls.all())
    a_before, b_before = a.jobs(), b.jobs()
    for each in (a, b):
        kube.api.patch(each.path, {"metadata": {"annotations": {"test/nudge": "expired"}}})
    rebuild_seen(a, a_before, mark)
    rebuild_seen(b, b_before, mark)
    clock.offset = timedelta(0)

    # team-a's rebuild removes its own older AMI (keep 1) and moves its parameter on; team-b's stays.
    a2 = built(a, ec2, "team-a-2", a_before)
    assert not exists(ec2, a1)
    assert (exists(ec2, b1), tags_of(ec2, b1)["status"]) == (True, "active")
    assert published()[0] == a2

    # team-b's rebuild removes its own older AMI; team-a's current one and the parameter stay as they are.
    b2 = built(b, ec2, "team-b-2", b_before)
    assert not exists(ec2, b1)
    assert (tags_of(ec2, a2)["status"], tags_of(ec2, a2)["created-by-namespace"]) == ("active", team_a)
    assert (tags_of(ec2, b2)["status"], tags_of(ec2, b2)["created-by-namespace"]) == ("active", team_b)
    assert published()[0] == a2
    assert publish_failed(b) is not None
    assert publish_failed(a) is None

    # In no answer did either builder record, adopt or list the other's AMIs as its own.
    for each, theirs in ((a, {b1, b2}), (b, {a1, a2})):
        for call in each.calls():
            status = call.answer["status"]
            mine = {status.get("lastRunBuiltImageID")} | {i["imageID"] for i in status.get("images") or []}
            assert not mine & theirs, status
            assert status.get("state") != "AMIAdopted", status
