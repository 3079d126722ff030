"""The real Metacontroller (v4.17.2) beside the tests' control plane, and the CompositeControllers it runs.

scripts/install-metacontroller.sh builds it into .tools/ from the upstream source, with the release's CRDs.
`start(kube)` installs those CRDs and the PackerBuilder CRD first (Metacontroller rediscovers resources only
every `--discovery-interval`: a CRD that exists before it starts needs no wait), then runs the binary as the
release's manifests/production/metacontroller.yaml does: `--zap-log-level=4 --discovery-interval=20s`, the
apply strategy (`dynamic-apply`) and the cache flush interval (30 min) left at their defaults. Only what a Pod
gets from its cluster is given otherwise: the API server through a kubeconfig (the session's admin
certificate, where the manifest's ServiceAccount has cluster-wide RBAC), and its metrics and health endpoints
on free loopback ports instead of :9999 and :8081 on every interface.

`hooked()` is a CompositeController as it ships (metacontroller/compositecontroller.yaml, or the one the
chart renders) with only its hooks' `webhook.service` and `path` replaced by a `url` (the test's uvicorn);
`apply()` applies it and, when that changed its spec, waits until Metacontroller has restarted that
controller (its `Started` Event counted once more), so nothing the test does next meets the old hooks.
"""

import copy
import json
import time
from pathlib import Path

import httpx

from tests.aws import free_port
from tests.deploy.manifests import load_all
from tests.kube.cluster import ControlPlane, JsonObject, KubeApiError, Process
from tests.kube.objects import CRD_ESTABLISHED_SECONDS, CRDS, established, install_crd

VERSION = "v4.17.2"
ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / ".tools" / f"metacontroller-{VERSION}"
BINARY = HOME / "bin" / "metacontroller"
CRDS_FILE = HOME / "metacontroller-crds-v1.yaml"
# The args of the release's manifests/production/metacontroller.yaml.
PRODUCTION_FLAGS = ("--zap-log-level=4", "--discovery-interval=20s")
COMPOSITE_CONTROLLERS = "/apis/metacontroller.k8s.io/v1alpha1/compositecontrollers"
# Its health endpoint answers within a second or two on an idle machine; generous for a busy two-core one.
READY_SECONDS = 60.0
# A changed CompositeController's controller restarts within a second on an idle machine.
RESTART_SECONDS = 60.0
FIELD_MANAGER = "kube-tests"


def crds() -> list[JsonObject]:
    """The release's CRDs: CompositeController, ControllerRevision, DecoratorController."""
    return [doc for doc in load_all(CRDS_FILE.read_text(encoding="utf-8")) if doc]


def install_crds(kube: ControlPlane) -> list[str]:
    """Apply the release's CRDs (server-side: idempotent, no last-applied annotation) and return their names
    once established."""
    kube.kubectl(
        "apply",
        "--server-side",
        f"--field-manager={FIELD_MANAGER}",
        "--force-conflicts",
        "-f",
        str(CRDS_FILE),
    )
    names = [crd["metadata"]["name"] for crd in crds()]
    for name in names:
        kube.api.wait_for(
            CRDS,
            established,
            params={"fieldSelector": f"metadata.name={name}"},
            timeout=CRD_ESTABLISHED_SECONDS,
            what=f"CRD {name} Established and NamesAccepted",
        )
    return names


def start(kube: ControlPlane) -> Process:
    """The CRDs installed, then Metacontroller running and answering its readiness probe."""
    install_crds(kube)
    install_crd(kube)
    health = f"127.0.0.1:{free_port()}"
    process = kube.run(
        "metacontroller",
        BINARY,
        *PRODUCTION_FLAGS,
        f"--metrics-address=127.0.0.1:{free_port()}",
        f"--health-probe-bind-address={health}",
        env={"KUBECONFIG": str(kube.kubeconfig)},
    )
    deadline = time.monotonic() + READY_SECONDS
    with httpx.Client(trust_env=False, timeout=2.0) as plain:
        while not _ready(plain, f"http://{health}/readyz"):
            if process.popen.poll() is not None or time.monotonic() > deadline:
                process.stop()
                why = (
                    f"exited {process.popen.returncode}" if process.popen.poll() is not None else "timed out"
                )
                raise RuntimeError(f"Metacontroller not ready ({why}):\n{process.tail()}")
            time.sleep(0.2)
    return process


def _ready(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def hooked(controller: JsonObject, url: str, version: str | None = None) -> JsonObject:
    """`controller` with each hook's webhook at `url` + its path (instead of its Service), and each hook's
    `version` set when given; nothing else changed."""
    changed = copy.deepcopy(controller)
    for hook in changed["spec"]["hooks"].values():
        webhook = hook["webhook"]
        del webhook["service"]
        webhook["url"] = url + webhook.pop("path")
        if version is not None:
            hook["version"] = version
    return changed


def _started(kube: ControlPlane, name: str) -> dict[str, int]:
    """Metacontroller's `Started` Events of the CompositeController `name`: each Event's count by its name
    (repeated Events are aggregated into one whose count grows)."""
    listed = kube.api.get(
        "/api/v1/namespaces/default/events",
        params={"fieldSelector": f"involvedObject.name={name},reason=Started"},
    )
    return {e["metadata"]["name"]: int(e.get("count") or 1) for e in listed.get("items") or []}


def apply(kube: ControlPlane, controller: JsonObject) -> JsonObject:
    """Apply the CompositeController; when that made it or changed its spec, return once Metacontroller
    has (re)started its controller (a `Started` Event more for it)."""
    name = controller["metadata"]["name"]
    before = _current(kube, name)
    counted = _started(kube, name)
    kube.kubectl(
        "apply",
        "--server-side",
        f"--field-manager={FIELD_MANAGER}",
        "--force-conflicts",
        "-f",
        "-",
        input=json.dumps(controller),
    )
    after = _current(kube, name)
    assert after is not None
    uid = after["metadata"]["uid"]
    unchanged = before is not None and (before["metadata"]["uid"], before["metadata"]["generation"]) == (
        uid,
        after["metadata"]["generation"],
    )
    if unchanged:
        return after
    kube.api.wait_for(
        "/api/v1/namespaces/default/events",
        lambda event: (
            event["involvedObject"].get("uid") == uid
            and int(event.get("count") or 1) > counted.get(event["metadata"]["name"], 0)
        ),
        params={"fieldSelector": f"involvedObject.name={name},reason=Started"},
        timeout=RESTART_SECONDS,
        what=f"Metacontroller (re)starting CompositeController {name}",
    )
    return after


def delete(kube: ControlPlane, name: str) -> None:
    """Delete the CompositeController (Metacontroller stops its controller); gone already is fine."""
    try:
        kube.api.delete(f"{COMPOSITE_CONTROLLERS}/{name}")
    except KubeApiError as error:
        if error.code != 404:
            raise


def _current(kube: ControlPlane, name: str) -> JsonObject | None:
    try:
        return kube.api.get(f"{COMPOSITE_CONTROLLERS}/{name}")
    except KubeApiError as error:
        if error.code == 404:
            return None
        raise
