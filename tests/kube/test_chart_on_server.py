"""Every object the Helm chart renders is accepted by a real API server (v1.31): `kubectl apply
--dry-run=server`, in a namespace other than `default`.

The chart is rendered by the real helm (tests/deploy/test_chart.py's `render`, with its value sets): its
defaults, and every option switched on (helm/packer-builder/ci/all-on-values.yaml: ServiceMonitor,
PrometheusRule, Grafana dashboard, IRSA role and annotations, publish prefix, Slack token Secret, extra env,
scheduling constraints...), plus the index settings that file leaves at their defaults, and the dashboard
sent to a second fresh namespace (the file names `monitoring`). Every rendered object, the CRD from crds/
(an unchanged update of the installed one) and the `helm test` Pod included, goes through
`kubectl apply --dry-run=server` twice, client-side and server-side apply, without `--namespace` (an object
that forgot its namespace would land in `default`, and the test sees it): kubectl's strict field validation
(an unknown field is an error), the API server's validation and its admission plugins. The release
namespace enforces the `restricted` Pod Security Standard, and kubectl must print no warning (PodSecurity
warns about a Deployment's pod template there), except client-side apply's note that the installed CRD
lacks its last-applied annotation.

What the kinds need is installed first, for real:
- the PackerBuilder CRD (tests/kube/objects.py `install_crd`; the chart's crds/ file is the same, as
  tests/deploy/test_chart.py checks);
- the Prometheus Operator's ServiceMonitor and PrometheusRule CRDs, the real ones: the YAML files of
  `example/prometheus-operator-crd/` in the Go module github.com/prometheus-operator/prometheus-operator at
  a pinned version (and module checksum), fetched from the Go module proxy with `go mod download` once and
  cached in .tools/ (git-ignored);
- Metacontroller's own CRDs (CompositeController, DecoratorController, ControllerRevision), the real ones:
  manifests/production/metacontroller-crds-v1.yaml of Metacontroller v4.17.2, installed with the
  controller itself by scripts/install-metacontroller.sh (from the source archive in ../shared/vendor/).

And the CompositeController is run: each rendered one (defaults, all-on), its hooks' Service replaced by the
URL of a real hook under uvicorn, is applied while the real Metacontroller runs (tests/kube/conftest.py's
`metacontroller`); Metacontroller reports it started it, and a PackerBuilder created then is synced through
it (Metacontroller's finalizer named after it, the hook's status written). tests/kube/
test_metacontroller_on_server.py runs a builder's whole life under it.

Not checked here: whether the other objects work once running (no kubelet, no scheduler, no Prometheus or
Grafana run here; tests/deploy/ covers what can be checked offline); the `helm test` Pod is dry-run like any
Pod, not run as a hook; admission webhooks (none are installed, and the chart needs none). The chart has no
RBAC objects (the hook never calls the Kubernetes API): the test asserts that, so any Role or binding added
later is dry-run with the rest.
"""

import contextlib
import copy
import json
import os
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.main import create_app
from app.model.settings import Settings
from tests.aws import REGION
from tests.deploy.test_chart import VALUES_FILES, render
from tests.http import serve
from tests.kube import real_metacontroller
from tests.kube.cluster import ControlPlane, JsonObject, KubeApiError, Process
from tests.kube.objects import (
    CRD_ESTABLISHED_SECONDS,
    CRDS,
    builders,
    established,
    install_crd,
    packer_builder,
)
from tests.seed import SEED_SPEC
from tests.tools import unavailable

ROOT = Path(__file__).resolve().parents[2]

PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator"
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
# The module's checksum as the Go checksum database records it: a new upload cannot change what is tested.
PROMETHEUS_OPERATOR_SUM = "h1:M5xLCLEoaW2IJfnuCwFzzpL+jSVQu3KGT84Pye+fW8s="
PROMETHEUS_OPERATOR_CRDS = (
    "monitoring.coreos.com_servicemonitors.yaml",
    "monitoring.coreos.com_prometheusrules.yaml",
)
CRD_CACHE = ROOT / ".tools" / f"prometheus-operator-{PROMETHEUS_OPERATOR_VERSION}-crds"
GO_DOWNLOAD_SECONDS = 300
# Metacontroller syncs a new parent within a second or two on an idle machine.
WAIT_SECONDS = 120.0

RBAC_KINDS = {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
CLUSTER_SCOPED = {"CustomResourceDefinition", "CompositeController", "ClusterRole", "ClusterRoleBinding"}

# The index settings all-on-values.yaml leaves at their defaults (--set splits on commas: one is escaped).
INDEX_SETTINGS = (
    "--set",
    "hook.indexRefreshSeconds=30",
    "--set",
    "hook.indexStaleAfterSeconds=120",
    "--set",
    "hook.indexRegions=us-west-2\\,eu-west-1",
)


# -- the CRDs the chart's kinds need --------------------------------------------------------------------------


def _go() -> str:
    found = shutil.which("go") or next(
        (path for path in ("/usr/local/go/bin/go",) if os.access(path, os.X_OK)), None
    )
    if found is None:
        unavailable(
            "go is not installed (it fetches the Prometheus Operator's CRDs from the Go module proxy;"
            " scripts/install-kube.sh needs it too)"
        )
    return found


def prometheus_operator_crd_files() -> list[Path]:
    """The pinned ServiceMonitor and PrometheusRule CRDs, fetched once into CRD_CACHE."""
    files = [CRD_CACHE / name for name in PROMETHEUS_OPERATOR_CRDS]
    if all(path.is_file() for path in files):
        return files
    module = f"{PROMETHEUS_OPERATOR}@{PROMETHEUS_OPERATOR_VERSION}"
    with tempfile.TemporaryDirectory() as scratch:
        env = {
            **os.environ,
            "GOMODCACHE": str(Path(scratch) / "modcache"),
            "GOFLAGS": "-mod=mod -modcacherw",  # writable, so that the scratch directory can be removed
            "GOTOOLCHAIN": "local",
        }
        done = subprocess.run(
            [_go(), "mod", "download", "-json", module],
            cwd=scratch,
            env=env,
            capture_output=True,
            text=True,
            timeout=GO_DOWNLOAD_SECONDS,
            check=False,
        )
        info = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
        if done.returncode != 0 or "Error" in info:
            unavailable(f"`go mod download {module}` failed: {info.get('Error') or done.stderr[-2000:]}")
        assert info["Sum"] == PROMETHEUS_OPERATOR_SUM, f"{module}: checksum {info['Sum']}"
        staging = CRD_CACHE.with_name(CRD_CACHE.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        with zipfile.ZipFile(info["Zip"]) as archive:
            for name in PROMETHEUS_OPERATOR_CRDS:
                member = f"{module}/example/prometheus-operator-crd/{name}"
                (staging / name).write_bytes(archive.read(member))
        shutil.rmtree(CRD_CACHE, ignore_errors=True)
        staging.rename(CRD_CACHE)
    return files


def _wait_established(kube: ControlPlane, name: str) -> JsonObject:
    return kube.api.wait_for(
        CRDS,
        established,
        params={"fieldSelector": f"metadata.name={name}"},
        timeout=CRD_ESTABLISHED_SECONDS,
        what=f"CRD {name} Established and NamesAccepted",
    )


@pytest.fixture(scope="module")
def crds(kube: ControlPlane, metacontroller: Process) -> list[str]:
    """The names of the CRDs installed for the chart's kinds (server-side apply: idempotent, and no
    last-applied annotation, which the large upstream CRDs would not fit). Metacontroller's own came with
    it (the `metacontroller` fixture)."""
    names = [install_crd(kube)["metadata"]["name"], *real_metacontroller.install_crds(kube)]
    manifests = [yaml.safe_load(path.read_text()) for path in prometheus_operator_crd_files()]
    for crd in manifests:
        kube.kubectl(
            "apply",
            "--server-side",
            "--field-manager=kube-tests",
            "--force-conflicts",
            "-f",
            "-",
            input=json.dumps(crd),
        )
        names.append(_wait_established(kube, crd["metadata"]["name"])["metadata"]["name"])
    return names


# -- namespaces and rendering ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-home")


@pytest.fixture
def second_namespace(kube: ControlPlane) -> Iterator[str]:
    """Another fresh namespace (for objects a value sends elsewhere), deleted afterwards."""
    with kube.namespace("chart-dashboards-") as name:
        yield name


def restricted(kube: ControlPlane, namespace: str) -> None:
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}
    kube.api.patch(f"/api/v1/namespaces/{namespace}", {"metadata": {"labels": labels}})


def value_sets(second: str) -> dict[str, list[str]]:
    return {
        "defaults": [],
        "all-on": [
            *VALUES_FILES["all-on"],
            *INDEX_SETTINGS,
            "--set",
            f"monitoring.dashboard.namespace={second}",
        ],
    }


def _key(obj: JsonObject) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


# kubectl's client-side apply says this of an object that exists but was not created by it (the installed
# PackerBuilder CRD: tests/kube/objects.py applies it server-side); it patches the annotation in.
_NOT_APPLIED_BY_KUBECTL = "is missing the kubectl.kubernetes.io/last-applied-configuration annotation"


def dry_run(kube: ControlPlane, objects: list[JsonObject], *how: str) -> list[JsonObject]:
    """`kubectl apply --dry-run=server [how]` of every object at once; the objects as the server would
    store them. Any warning fails, but the one above.

    No `--namespace`: an object without its own namespace would land in `default`, and the test sees it."""
    done = kube.kubectl(
        "apply",
        "--dry-run=server",
        *how,
        "--output=json",
        "-f",
        "-",
        input=yaml.safe_dump_all(objects),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if _NOT_APPLIED_BY_KUBECTL not in line]
    assert warnings == [], f"kubectl apply --dry-run=server {' '.join(how)} warned"
    answer = json.loads(done.stdout)
    items: list[JsonObject] = answer["items"] if answer.get("kind") == "List" else [answer]
    return items


# -- the tests ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", ["defaults", "all-on"])
def test_every_rendered_object_passes_server_side_dry_run(
    kube: ControlPlane,
    crds: list[str],
    helm_home: Path,
    namespace: str,
    second_namespace: str,
    values: str,
) -> None:
    restricted(kube, namespace)
    objects = render(helm_home, "--include-crds", *value_sets(second_namespace)[values], namespace=namespace)
    kinds = {obj["kind"] for obj in objects}
    assert not kinds & RBAC_KINDS, "the chart renders RBAC now: it is dry-run below, update the docstring"
    assert {"CustomResourceDefinition", "Deployment", "Service", "CompositeController", "Pod"} <= kinds

    accepted = dry_run(kube, objects)
    # Server-side apply too, as Flux (or Argo CD set to it) installs a chart: it also refuses duplicate list keys.
    applied = dry_run(kube, objects, "--server-side", "--field-manager=chart-check")

    assert sorted(map(_key, accepted)) == sorted(map(_key, objects))
    assert sorted(map(_key, applied)) == sorted(map(_key, objects))
    for obj in accepted:
        where = obj["metadata"].get("namespace")
        if obj["kind"] in CLUSTER_SCOPED:
            assert where is None, _key(obj)
        elif obj["kind"] == "ConfigMap" and obj["metadata"]["name"].endswith("-dashboard"):
            assert where == second_namespace
        else:
            assert where == namespace, _key(obj)
    # A dry run stores nothing.
    for obj in accepted:
        if obj["kind"] == "Deployment":
            with pytest.raises(KubeApiError) as absent:
                kube.api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{obj['metadata']['name']}")
            assert absent.value.code == 404
    if values == "all-on":
        assert {"ServiceMonitor", "PrometheusRule"} <= kinds


def test_the_crds_are_the_pinned_ones(kube: ControlPlane, crds: list[str]) -> None:
    """The upstream CRDs really are the Prometheus Operator's, at the pinned version."""
    for name in crds:
        crd = kube.api.get(f"{CRDS}/{name}")
        if crd["spec"]["group"] == "monitoring.coreos.com":
            annotations = crd["metadata"].get("annotations", {})
            assert annotations.get("operator.prometheus.io/version") == PROMETHEUS_OPERATOR_VERSION.lstrip(
                "v"
            )
    assert set(crds) == {
        "packerbuilders.ami.refresh.ops",
        "servicemonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
        "compositecontrollers.metacontroller.k8s.io",
        "controllerrevisions.metacontroller.k8s.io",
        "decoratorcontrollers.metacontroller.k8s.io",
    }
    annotations = kube.api.get(f"{CRDS}/compositecontrollers.metacontroller.k8s.io")["metadata"][
        "annotations"
    ]
    assert annotations["controller-gen.kubebuilder.io/version"] == "v0.21.0"  # Metacontroller v4.17.2's


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("resyncPeriod",), 600, 'unknown field "spec.resyncPeriod"'),
        (("hooks", "sync", "version"), "v3", "spec.hooks.sync.version: Unsupported value"),
        (("hooks", "sync", "webhook", "timeout"), "ten seconds", "spec.hooks.sync.webhook.timeout"),
        (("hooks", "sync", "webhook", "responseUnMarshallMode"), "lenient", "responseUnMarshallMode"),
    ],
)
def test_metacontrollers_crd_refuses_what_is_not_a_composite_controller(
    kube: ControlPlane,
    crds: list[str],
    helm_home: Path,
    namespace: str,
    path: tuple[str, ...],
    value: Any,
    expected: str,
) -> None:
    """The control for the dry run: Metacontroller's CompositeController CRD refuses a misspelt field and
    values outside its types, enums and formats, so its acceptance means something."""
    (controller,) = [
        obj for obj in render(helm_home, namespace=namespace) if obj["kind"] == "CompositeController"
    ]
    wrong = copy.deepcopy(controller)
    *parents, last = path
    node = wrong["spec"]
    for name in parents:
        node = node[name]
    node[last] = value
    done = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(wrong), check=False)
    assert done.returncode != 0
    assert expected in done.stderr


@pytest.mark.parametrize("values", ["defaults", "all-on"])
def test_metacontroller_runs_each_rendered_composite_controller(
    kube: ControlPlane,
    crds: list[str],
    helm_home: Path,
    namespace: str,
    second_namespace: str,
    ec2_env: str,
    values: str,
) -> None:
    """The chart's CompositeController, its hooks pointed at a real hook, is taken up by the real Metacontroller:
    it says it started it, and it syncs a PackerBuilder through it (its finalizer, the hook's status)."""
    (controller,) = [
        obj
        for obj in render(helm_home, *value_sets(second_namespace)[values], namespace=namespace)
        if obj["kind"] == "CompositeController"
    ]
    name = controller["metadata"]["name"]
    with serve(create_app(Settings(index_regions=(REGION,)))) as url:
        try:
            real_metacontroller.apply(kube, real_metacontroller.hooked(controller, url))
            created = kube.api.post(builders(namespace), packer_builder("chart-check", SEED_SPEC))
            synced = kube.api.wait_for(
                builders(namespace),
                lambda pb: (
                    (pb.get("status") or {}).get("observedGeneration") == created["metadata"]["generation"]
                ),
                params={"fieldSelector": "metadata.name=chart-check"},
                timeout=WAIT_SECONDS,
                what=f"a PackerBuilder synced by CompositeController {name}",
            )
            assert f"metacontroller.io/compositecontroller-{name}" in synced["metadata"]["finalizers"]
            assert synced["status"]["state"] in {"JobCreation", "JobRunning"}
        finally:
            real_metacontroller.delete(kube, name)
            with contextlib.suppress(KubeApiError):
                kube.api.delete(f"{builders(namespace)}/chart-check")
                kube.api.patch(f"{builders(namespace)}/chart-check", {"metadata": {"finalizers": None}})
