"""helm/packer-builder: lint, render and validate the chart the way `helm install` would see it."""

import json
import re
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from app.model.settings import Settings
from tests.deploy.manifests import (
    ALL_ON_VALUES,
    CHART,
    COMPOSITE_CONTROLLER_FILE,
    CRD_FILE,
    FIXTURES,
    Manifest,
    load_all,
    load_json,
    load_yaml,
    run_helm,
    schema_errors,
    validation_errors,
)

ROOT = CHART.parents[1]
# The chart's defaults plus the one value an install must set (image.repository has no default).
REQUIRED_VALUES = CHART / "ci" / "required-values.yaml"
VALUES_FILES = {"defaults": ["-f", str(REQUIRED_VALUES)], "all-on": ["-f", str(ALL_ON_VALUES)]}
REPOSITORY = "111122223333.dkr.ecr.us-west-2.amazonaws.com/packer-builder-hook"


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-home")


def render(
    helm_home: Path, *args: str, release: str = "packer-builder", namespace: str = "packer-builder"
) -> list[Manifest]:
    """`helm template` with the required values (later `-f`/`--set` arguments win over them)."""
    result = run_helm(
        helm_home, "template", release, str(CHART), "--namespace", namespace, *VALUES_FILES["defaults"], *args
    )
    assert result.returncode == 0, result.stderr
    return load_all(result.stdout)


def by_kind(objects: list[Manifest]) -> dict[str, Manifest]:
    """Objects by kind; those of another component than the hook's as `Kind/component` (Pod/test)."""
    kinds: dict[str, Manifest] = {}
    for obj in objects:
        component = obj["metadata"].get("labels", {}).get("app.kubernetes.io/component", "hook")
        key = obj["kind"] if component == "hook" else f"{obj['kind']}/{component}"
        assert key not in kinds, f"two {key} objects"
        kinds[key] = obj
    return kinds


_SCHEMA_FIXTURES = {"PrometheusRule": "prometheusrule.schema.json"}


def object_errors(obj: Manifest) -> list[str]:
    """validation_errors, and the Prometheus Operator's PrometheusRule against its fixture schema."""
    if obj.get("apiVersion") == "monitoring.coreos.com/v1" and obj.get("kind") in _SCHEMA_FIXTURES:
        return schema_errors(load_json(FIXTURES / _SCHEMA_FIXTURES[obj["kind"]]), obj)
    return validation_errors(obj)


@pytest.fixture(scope="module")
def defaults(helm_home: Path) -> dict[str, Manifest]:
    return by_kind(render(helm_home))


@pytest.fixture(scope="module")
def all_on(helm_home: Path) -> dict[str, Manifest]:
    return by_kind(render(helm_home, *VALUES_FILES["all-on"], release="ops", namespace="ami-hooks"))


@pytest.mark.parametrize("values", sorted(VALUES_FILES))
def test_helm_lint_strict(helm_home: Path, values: str) -> None:
    result = run_helm(helm_home, "lint", "--strict", str(CHART), *VALUES_FILES[values])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


@pytest.mark.parametrize("values", sorted(VALUES_FILES))
def test_every_rendered_object_validates(helm_home: Path, values: str) -> None:
    objects = render(helm_home, "--include-crds", *VALUES_FILES[values])
    assert objects
    errors = {f"{obj['kind']}/{obj['metadata']['name']}": object_errors(obj) for obj in objects}
    assert {name: found for name, found in errors.items() if found} == {}


def test_default_render_has_exactly_the_expected_objects(defaults: dict[str, Manifest]) -> None:
    """No ServiceMonitor, PrometheusRule or dashboard unless asked for; the `helm test` Pod is a hook."""
    assert set(defaults) == {
        "Deployment",
        "Service",
        "ServiceAccount",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "CompositeController",
        "ConfigMap",
        "Pod/test",
    }


def test_all_on_render_adds_the_monitoring_objects(all_on: dict[str, Manifest]) -> None:
    assert {"ServiceMonitor", "PrometheusRule/monitoring", "ConfigMap/monitoring", "Pod/test"} <= set(all_on)


def test_all_on_render_adds_the_service_monitor(all_on: dict[str, Manifest]) -> None:
    monitor = all_on["ServiceMonitor"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "15s", "scrapeTimeout": "5s", "honorLabels": True}
    ]
    assert monitor["spec"]["selector"]["matchLabels"] == all_on["Service"]["spec"]["selector"]


def test_crd_is_shipped_in_crds_dir(helm_home: Path) -> None:
    objects = render(helm_home, "--include-crds")
    (crd,) = [obj for obj in objects if obj["kind"] == "CustomResourceDefinition"]
    assert crd == load_yaml(CRD_FILE)


def _container(deployment: Manifest) -> Manifest:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def test_deployment_is_hardened(defaults: dict[str, Manifest]) -> None:
    deployment = defaults["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    security = _container(deployment)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] is True
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    resources = _container(deployment)["resources"]
    assert resources["requests"]["cpu"]
    assert resources["requests"]["memory"]
    assert resources["limits"]["memory"]


def test_probes_hit_healthz_and_readyz(defaults: dict[str, Manifest]) -> None:
    container = _container(defaults["Deployment"])
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_readiness_waits_for_the_index_fill_without_delaying_or_restarting_the_pod(
    defaults: dict[str, Manifest],
) -> None:
    """/readyz alone decides when a pod is ready (it is 503 until the index's first fill was tried).

    No initial delay is needed on top of it, a short period lets a pod in soon after its fill, and the fill is
    not on the startup probe, whose failures restart the container: a slow EC2 must never keep a pod down.
    """
    container = _container(defaults["Deployment"])
    readiness = container["readinessProbe"]
    assert readiness.get("initialDelaySeconds", 0) == 0
    assert readiness["periodSeconds"] <= 5
    assert readiness["periodSeconds"] * readiness["failureThreshold"] >= 30
    assert container["startupProbe"]["httpGet"]["path"] != "/readyz"


def _env(container: Manifest) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def test_settings_reach_the_container_as_env(
    defaults: dict[str, Manifest], all_on: dict[str, Manifest]
) -> None:
    container = _container(defaults["Deployment"])
    env = _env(container)
    assert env == {
        # The boot check runs in the hook's own image, whatever names it (repository, tag or digest).
        "HOOK_IMAGE": container["image"],
        "PORT": "8080",
        "WEB_CONCURRENCY": "1",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "ACCESS_LOG": "false",
        "BASE_IMAGE_CACHE_SECONDS": "300",
        "INDEX_REFRESH_SECONDS": "60",
        "INDEX_STALE_AFTER_SECONDS": "300",
        "PUBLISH_PARAMETER_PREFIX": "/platform/ami/",
        "NOTIFY_TIMEOUT_SECONDS": "3",
        "NOTIFY_DEDUPE_SECONDS": "86400",
        "NOTIFY_QUEUE_SIZE": "1000",
    }
    env = _env(_container(all_on["Deployment"]))
    assert env["PORT"] == "9090"
    assert env["WEB_CONCURRENCY"] == "1"
    assert (env["LOG_FORMAT"], env["ACCESS_LOG"]) == ("text", "true")
    assert env["AWS_REGION"] == "us-west-2"
    assert env["PUBLISH_PARAMETER_PREFIX"] == "/teams/platform/amis/"
    assert env["SLACK_API_URL"] == "https://slack.example.com/api/"
    assert env["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["SLACK_BOT_TOKEN"] == {"secretKeyRef": {"name": "slack-bot", "key": "bot-token"}}
    assert (env["NOTIFY_TIMEOUT_SECONDS"], env["NOTIFY_DEDUPE_SECONDS"], env["NOTIFY_QUEUE_SIZE"]) == (
        "5",
        "3600",
        "500",
    )
    assert _container(all_on["Deployment"])["ports"][0]["containerPort"] == 9090


def test_index_settings_reach_the_container_as_env(helm_home: Path) -> None:
    objects = by_kind(
        render(
            helm_home,
            "--set",
            "hook.indexRefreshSeconds=30",
            "--set",
            "hook.indexStaleAfterSeconds=120",
            "--set",
            "hook.baseImageCacheSeconds=600",
            # --set splits on commas: the one inside the list is escaped, as values.yaml says.
            "--set",
            "hook.indexRegions=us-west-2\\,eu-west-1",
        )
    )
    env = _env(_container(objects["Deployment"]))
    assert env["INDEX_REFRESH_SECONDS"] == "30"
    assert env["INDEX_STALE_AFTER_SECONDS"] == "120"
    assert env["BASE_IMAGE_CACHE_SECONDS"] == "600"
    assert env["INDEX_REGIONS"] == "us-west-2,eu-west-1"


def test_chart_defaults_are_the_hook_defaults() -> None:
    """An unset chart value and an unset environment variable mean the same thing, except the log format:
    the hook writes text for a terminal, the chart asks for JSON lines for a log pipeline."""
    hook = load_yaml(CHART / "values.yaml")["hook"]
    settings = Settings()
    assert (hook["logFormat"], settings.log_format) == ("json", "text")
    assert hook["accessLog"] is settings.access_log is False
    assert hook["baseImageCacheSeconds"] == settings.base_image_cache_seconds
    assert hook["indexRefreshSeconds"] == settings.index_refresh_seconds
    assert hook["indexStaleAfterSeconds"] == settings.index_stale_after_seconds
    # Empty: INDEX_REGIONS is not set and the hook falls back to AWS_REGION.
    assert hook["indexRegions"] == ""


def test_stale_limit_below_twice_the_refresh_period_fails_at_install_time(helm_home: Path) -> None:
    args = ["--set", "hook.indexRefreshSeconds=200", "--set", "hook.indexStaleAfterSeconds=300"]
    result = run_helm(helm_home, "template", "x", str(CHART), *args)
    assert result.returncode != 0, "accepted a stale limit below twice the refresh period"
    assert "hook.indexStaleAfterSeconds (300) must be at least twice hook.indexRefreshSeconds (200)" in (
        result.stderr
    )
    ok = ["--set", "hook.indexRefreshSeconds=150", "--set", "hook.indexStaleAfterSeconds=300"]
    assert run_helm(helm_home, "template", "x", str(CHART), *VALUES_FILES["defaults"], *ok).returncode == 0


def test_image_defaults_to_app_version_and_digest_wins(
    defaults: dict[str, Manifest], all_on: dict[str, Manifest]
) -> None:
    app_version = load_yaml(CHART / "Chart.yaml")["appVersion"]
    assert _container(defaults["Deployment"])["image"] == f"{REPOSITORY}:{app_version}"
    assert _container(all_on["Deployment"])["image"].endswith("@sha256:" + "0123456789abcdef" * 4)


def test_app_version_is_the_project_version() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert version is not None
    assert load_yaml(CHART / "Chart.yaml")["appVersion"] == version.group(1)


def test_service_account_irsa_annotation(defaults: dict[str, Manifest], all_on: dict[str, Manifest]) -> None:
    assert "annotations" not in defaults["ServiceAccount"]["metadata"]
    account = all_on["ServiceAccount"]
    assert account["metadata"]["name"] == "ami-packer-hook-sa"
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == (
        "arn:aws:iam::111122223333:role/packer-builder-hook"
    )
    assert all_on["Deployment"]["spec"]["template"]["spec"]["serviceAccountName"] == "ami-packer-hook-sa"


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_network_policy_admits_only_metacontroller_and_the_test_pod(
    defaults: dict[str, Manifest], all_on: dict[str, Manifest]
) -> None:
    policy = defaults["NetworkPolicy"]["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["podSelector"]["matchLabels"] == defaults["Deployment"]["spec"]["selector"]["matchLabels"]
    rule, test = policy["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "metacontroller"}}}
    ]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    # `helm test`: a podSelector alone admits only pods of the release namespace, and only the test Pod.
    ((selector,),) = [test["from"]]
    assert set(selector) == {"podSelector"}
    assert _matches(selector["podSelector"]["matchLabels"], defaults["Pod/test"]["metadata"]["labels"])
    hook_pod = defaults["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert not _matches(selector["podSelector"]["matchLabels"], hook_pod)
    assert test["ports"] == [{"port": "http", "protocol": "TCP"}]
    first, _, monitoring = all_on["NetworkPolicy"]["spec"]["ingress"]
    assert first["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "platform-metacontroller"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "metacontroller"}},
        }
    ]
    assert monitoring["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]


def test_pdb_selects_the_hook_pods(defaults: dict[str, Manifest]) -> None:
    pdb = defaults["PodDisruptionBudget"]["spec"]
    assert pdb["minAvailable"] == 1
    assert pdb["selector"]["matchLabels"] == defaults["Deployment"]["spec"]["selector"]["matchLabels"]


def test_service_routes_to_the_hook_port(defaults: dict[str, Manifest]) -> None:
    service = defaults["Service"]["spec"]
    assert service["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert service["selector"] == defaults["Deployment"]["spec"]["selector"]["matchLabels"]


def test_composite_controller_is_wired_to_the_release_service(all_on: dict[str, Manifest]) -> None:
    service = all_on["Service"]
    for hook in ("sync", "customize", "finalize"):
        webhook = all_on["CompositeController"]["spec"]["hooks"][hook]["webhook"]
        assert webhook["service"] == {
            "name": service["metadata"]["name"],
            "namespace": "ami-hooks",
            "port": service["spec"]["ports"][0]["port"],
        }
        assert webhook["path"] == f"/{hook}"
        assert webhook["timeout"] == "8s"
    assert all_on["CompositeController"]["spec"]["resyncPeriodSeconds"] == 300


def test_chart_controller_equals_the_standalone_manifest(defaults: dict[str, Manifest]) -> None:
    """`helm install packer-builder -n packer-builder` and `kubectl apply -f metacontroller/` agree."""
    rendered = defaults["CompositeController"]
    standalone = load_yaml(COMPOSITE_CONTROLLER_FILE)
    assert rendered["spec"] == standalone["spec"]
    assert rendered["metadata"]["name"] == standalone["metadata"]["name"]


HOOK_POLICY = CHART / "iam" / "hook-policy.json"
DEFAULT_PUBLISH_ARN = "arn:aws:ssm:*:*:parameter/platform/ami/*"


def _rendered_policy(objects: dict[str, Manifest]) -> str:
    config_map = objects["ConfigMap"]
    assert set(config_map["data"]) == {"hook-policy.json"}
    text = config_map["data"]["hook-policy.json"]
    assert isinstance(text, str)
    return text


def test_chart_renders_the_hook_policy_file_as_is_by_default(defaults: dict[str, Manifest]) -> None:
    assert defaults["ConfigMap"]["metadata"]["name"] == "packer-builder-iam-policy"
    assert _rendered_policy(defaults) == HOOK_POLICY.read_text()


def test_chart_renders_the_hook_policy_with_the_publish_prefix(all_on: dict[str, Manifest]) -> None:
    """What the user attaches: the file, with the publish prefix substituted, and nothing else changed."""
    assert all_on["ConfigMap"]["metadata"]["name"] == "ami-packer-hook-iam-policy"
    text = _rendered_policy(all_on)
    assert DEFAULT_PUBLISH_ARN in HOOK_POLICY.read_text()
    prefixed = "arn:aws:ssm:*:*:parameter/teams/platform/amis/*"
    assert text == HOOK_POLICY.read_text().replace(DEFAULT_PUBLISH_ARN, prefixed)
    policy = json.loads(text)
    (publishing,) = [s for s in policy["Statement"] if "ssm:PutParameter" in s["Action"]]
    assert publishing["Resource"] == [prefixed]


def test_a_namespace_segment_in_the_prefix_reaches_the_hook_as_is_and_the_policy_as_any_segment(
    helm_home: Path,
) -> None:
    objects = by_kind(render(helm_home, "--set", "hook.publishParameterPrefix=/platform/ami/{namespace}/"))
    assert _env(_container(objects["Deployment"]))["PUBLISH_PARAMETER_PREFIX"] == "/platform/ami/{namespace}/"
    policy = json.loads(_rendered_policy(objects))
    (publishing,) = [s for s in policy["Statement"] if "ssm:PutParameter" in s["Action"]]
    assert publishing["Resource"] == ["arn:aws:ssm:*:*:parameter/platform/ami/*/*"]


def test_chart_policy_name_fits_a_long_release_name(helm_home: Path) -> None:
    fullname = "x" * 51 + "-" + "y" * 11
    objects = by_kind(render(helm_home, "--set", f"fullnameOverride={fullname}"))
    assert objects["Deployment"]["metadata"]["name"] == fullname
    assert objects["ConfigMap"]["metadata"]["name"] == "x" * 51 + "-iam-policy"


WRONG_VALUES = {
    "replicas not a number": "replicaCount=two",
    "zero replicas": "replicaCount=0",
    "unknown key": "replicas=2",
    "pull policy": "image.pullPolicy=Sometimes",
    "log level": "hook.logLevel=verbose",
    "role arn": "serviceAccount.roleArn=packer-role",
    "hook timeout": "metacontroller.hookTimeout=10",
    "metacontroller namespace": "metacontroller.namespace=Meta_Controller",
    "service port": "service.port=70000",
    "privileged port": "hook.port=80",
    "region": "hook.awsRegion=Oregon",
    "root user": "runAsUser=0",
    "scrape interval": "serviceMonitor.interval=often",
    "slack token secret name": "hook.slackBotToken.secretName=Slack_Token",
    "notify queue": "hook.notify.queueSize=0",
    "publish prefix without leading slash": "hook.publishParameterPrefix=platform/ami/",
    "publish prefix without trailing slash": "hook.publishParameterPrefix=/platform/ami",
    "publish prefix of every parameter": "hook.publishParameterPrefix=/",
    "publish prefix with a space": "hook.publishParameterPrefix=/platform ami/",
    "publish prefix with another placeholder": "hook.publishParameterPrefix=/platform/{name}/",
    "base cache of zero": "hook.baseImageCacheSeconds=0",
    "index refresh of zero": "hook.indexRefreshSeconds=0",
    "negative index refresh": "hook.indexRefreshSeconds=-60",
    "index refresh not a number": "hook.indexRefreshSeconds=often",
    "index refresh over an hour": "hook.indexRefreshSeconds=7200",
    "stale limit of zero": "hook.indexStaleAfterSeconds=0",
    "stale limit not a number": "hook.indexStaleAfterSeconds=5m",
    "index region not a region": "hook.indexRegions=Oregon",
    "index regions separated by semicolons": "hook.indexRegions=us-west-2;eu-west-1",
    "index regions ending in a comma": "hook.indexRegions=us-west-2\\,",
    "more than one worker": "hook.workers=2",
    "log format": "hook.logFormat=yaml",
    "access log not a boolean": "hook.accessLog=sometimes",
    "image repository with a tag": "image.repository=registry.example.com/hook:1.0",
    "runbook url with its own anchor": "monitoring.alerts.runbookUrl=docs/operations.md#alerts",
    "ami max age of zero": "monitoring.alerts.amiMaxAgeHours=0",
    "not-ready minutes not a number": "monitoring.alerts.notReadyMinutes=3h",
    "dashboard label with a space": "monitoring.dashboard.label=grafana dashboard",
    "dashboard namespace": "monitoring.dashboard.namespace=Monitoring",
    "test image with a tag in the repository": "helmTest.image.repository=busybox:1.37.0",
    "prometheus rule toggle": "monitoring.prometheusRule.enabled=yes",
}


@pytest.mark.parametrize("case", sorted(WRONG_VALUES))
def test_wrong_values_fail_at_install_time(helm_home: Path, case: str) -> None:
    result = run_helm(helm_home, "template", "x", str(CHART), "--set", WRONG_VALUES[case])
    assert result.returncode != 0, f"accepted {WRONG_VALUES[case]}"
    assert "values don't meet the specifications of the schema" in result.stderr


def test_values_schema_describes_every_default_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"])
    assert set(schema["required"]) <= set(values)


def test_values_yaml_is_documented_line_by_line() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^\s*[A-Za-z][\w.-]*:", line):
            above = lines[number - 1].strip() if number else ""
            assert above.startswith("#"), f"values.yaml:{number + 1} `{line.strip()}` has no comment above it"


# -- what an install must say, and what the chart pins -----------------------------------------------------------


def test_image_repository_is_required_with_a_message(helm_home: Path) -> None:
    """No image of the hook is published: an unset repository fails the install, not the pods' image pulls."""
    assert load_yaml(CHART / "values.yaml")["image"]["repository"] == ""
    result = run_helm(helm_home, "template", "x", str(CHART))
    assert result.returncode != 0, "rendered without image.repository"
    assert "image.repository is required" in result.stderr
    assert "--set image.repository=" in result.stderr
    assert "docs/install.md" in result.stderr
    for required in (REQUIRED_VALUES, ALL_ON_VALUES):
        assert load_yaml(required)["image"]["repository"], required.name


def test_one_uvicorn_worker_always(helm_home: Path, all_on: dict[str, Manifest]) -> None:
    """The AMI index, notification dedupe and metrics are per process: no value or extraEnv makes two."""
    assert "workers" not in load_yaml(CHART / "values.yaml")["hook"]
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert "workers" not in schema["properties"]["hook"]["properties"]
    assert _env(_container(all_on["Deployment"]))["WEB_CONCURRENCY"] == "1"
    args = ["--set", "hook.extraEnv[0].name=WEB_CONCURRENCY", "--set-string", "hook.extraEnv[0].value=4"]
    result = run_helm(helm_home, "template", "x", str(CHART), *VALUES_FILES["defaults"], *args)
    assert result.returncode != 0, "extraEnv overrode WEB_CONCURRENCY"
    assert "hook.extraEnv must not set WEB_CONCURRENCY" in result.stderr


def test_values_and_docs_say_why_there_is_one_worker() -> None:
    values = (CHART / "values.yaml").read_text()
    assert "ONE uvicorn worker per pod (env WEB_CONCURRENCY=1)" in values
    assert "per process" in values.split("ONE uvicorn worker", 1)[1].split("\n\n", 1)[0]


def test_service_keeps_one_metacontroller_pod_on_one_replica(
    defaults: dict[str, Manifest], all_on: dict[str, Manifest]
) -> None:
    """Notification exactly-once is per process: ClientIP affinity sends one Metacontroller pod's syncs to one
    replica while the others stand by."""
    for objects in (defaults, all_on):
        assert objects["Service"]["spec"]["sessionAffinity"] == "ClientIP"
    assert all_on["Deployment"]["spec"]["replicas"] == 3


# -- `helm test` -----------------------------------------------------------------------------------------------


def test_helm_test_pod_asks_the_service_for_readyz(defaults: dict[str, Manifest]) -> None:
    pod = defaults["Pod/test"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    assert container["image"] == "busybox:1.37.0"
    script = container["command"][-1]
    service = defaults["Service"]
    port = service["spec"]["ports"][0]["port"]
    assert f'url="http://{service["metadata"]["name"]}.packer-builder.svc:{port}/readyz"' in script


def test_helm_test_pod_follows_the_chart_security_conventions(defaults: dict[str, Manifest]) -> None:
    hook = defaults["Deployment"]["spec"]["template"]["spec"]
    pod = defaults["Pod/test"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == hook["securityContext"]["seccompProfile"]
    (container,) = pod["containers"]
    assert container["securityContext"] == _container(defaults["Deployment"])["securityContext"]
    assert container["resources"]["limits"]["memory"]


def test_helm_test_pod_is_never_taken_for_a_hook_pod(defaults: dict[str, Manifest]) -> None:
    """The Service, the PodDisruptionBudget and the NetworkPolicy select hook pods; none selects the test."""
    labels = defaults["Pod/test"]["metadata"]["labels"]
    assert not _matches(defaults["Service"]["spec"]["selector"], labels)
    assert not _matches(defaults["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"], labels)
    assert not _matches(defaults["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"], labels)


def test_helm_test_can_be_turned_off(helm_home: Path) -> None:
    objects = by_kind(render(helm_home, "--set", "helmTest.enabled=false"))
    assert "Pod/test" not in objects
    assert len(objects["NetworkPolicy"]["spec"]["ingress"]) == 1


class _Readyz(BaseHTTPRequestHandler):
    """503 for the first two requests, then 200: a pod that is still filling its AMI index."""

    answers: ClassVar[list[int]] = []

    def do_GET(self) -> None:
        self.answers.append(503 if len(self.answers) < 2 else 200)
        body = b'{"status":"ready"}' if self.answers[-1] == 200 else b'{"status":"warming"}'
        self.send_response(self.answers[-1])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


def test_helm_test_script_retries_until_readyz_answers(defaults: dict[str, Manifest], tmp_path: Path) -> None:
    """The Pod's script, run by busybox (the test image's shell and wget) against a local /readyz."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed (scripts/test.sh installs it)")
    (container,) = defaults["Pod/test"]["spec"]["containers"]
    script = container["command"][-1].replace("sleep 3", "sleep 0.1")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Readyz)
    _Readyz.answers = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/readyz"
        script = re.sub(r'url="[^"]+"', f'url="{url}"', script)
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "wget").symlink_to(busybox)
        for applet in ("sleep", "timeout"):
            (bin_dir / applet).symlink_to(busybox)
        env = {"PATH": str(bin_dir)}
        result = subprocess.run(
            [busybox, "sh", "-c", script], capture_output=True, text=True, env=env, timeout=30, check=False
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    assert _Readyz.answers == [503, 503, 200]
    assert '{"status":"ready"}' in result.stdout
    assert "answered (try 3)" in result.stdout


# -- NOTES.txt ---------------------------------------------------------------------------------------------------

IRSA_DOCS = "https://docs.aws.amazon.com/eks/latest/userguide/iam-roles-for-service-accounts.html"


def notes(helm_home: Path, tmp_path: Path, *args: str) -> str:
    """NOTES.txt as `helm install` prints it: rendered through a copy of the chart, as an ordinary template."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    text = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "_notes_under_test.tpl").write_text(
        '{{- define "notes-under-test" -}}\n' + text + "{{- end }}\n"
    )
    (chart / "templates" / "notes-under-test.yaml").write_text(
        'notes: {{ include "notes-under-test" . | toJson }}\n'
    )
    result = run_helm(
        helm_home,
        "template",
        "packer-builder",
        str(chart),
        "-n",
        "packer-builder",
        *VALUES_FILES["defaults"],
        *args,
        "--show-only",
        "templates/notes-under-test.yaml",
    )
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)["notes"]
    assert isinstance(rendered, str)
    return rendered


def test_notes_warn_without_an_irsa_role_and_link_aws_docs(helm_home: Path, tmp_path: Path) -> None:
    text = notes(helm_home, tmp_path)
    assert "WARNING: no IAM role for the hook" in text
    assert IRSA_DOCS in text
    assert "--set serviceAccount.roleArn=" in text
    assert "helm test packer-builder -n packer-builder" in text


@pytest.mark.parametrize(
    "role",
    [
        "serviceAccount.roleArn=arn:aws:iam::111122223333:role/packer-builder-hook",
        "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::111122223333:role/hook",
    ],
)
def test_notes_are_quiet_once_a_role_is_set(helm_home: Path, tmp_path: Path, role: str) -> None:
    text = notes(helm_home, tmp_path, "--set", role)
    assert "WARNING" not in text
    assert "docs.aws.amazon.com" not in text


def test_notes_remind_an_existing_service_account_of_the_role(helm_home: Path, tmp_path: Path) -> None:
    text = notes(
        helm_home, tmp_path, "--set", "serviceAccount.create=false", "--set", "serviceAccount.name=hook"
    )
    assert "existing ServiceAccount hook" in text
    assert IRSA_DOCS in text
