"""The chart's alerts and dashboard: Prometheus' own parser and rule tester, and metric names the hook exposes.

The PrometheusRule's spec is a Prometheus rule file: `promtool check rules` (built by scripts/install-promtool.sh
from the Prometheus module at a pinned version) parses and lints it as Prometheus would load it, and
`promtool test rules` feeds each alert synthetic series to show it fires when it should and stays quiet when it
should. Every metric name in an alert or a dashboard query must be one the app really serves on /metrics.
"""

import copy
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from app.aws.ec2 import Ec2
from app.main import create_app
from app.model.settings import Settings
from tests.deploy.manifests import (
    ALL_ON_VALUES,
    CHART,
    FIXTURES,
    ROOT,
    Manifest,
    load_all,
    load_json,
    load_yaml,
    run_helm,
    schema_errors,
)
from tests.http import get, serve

PROMTOOL = ROOT / ".tools" / "bin" / "promtool"
DASHBOARD_FILE = CHART / "monitoring" / "packer-builder-dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"
REQUIRED_VALUES = CHART / "ci" / "required-values.yaml"
RELEASE = NAMESPACE = "packer-builder"  # the documented install: job="packer-builder"
ON = ["--set", "monitoring.prometheusRule.enabled=true", "--set", "monitoring.dashboard.enabled=true"]

ALERTS = {
    "PackerBuilderHookDown": "critical",
    "PackerBuilderSyncAWSErrors": "warning",
    "PackerBuilderAWSErrors": "warning",
    "PackerBuilderRetriesExhausted": "warning",
    "PackerBuilderBuildsFailing": "warning",
    "PackerBuilderValidationFailed": "warning",
    "PackerBuilderNotReady": "warning",
    "PackerBuilderAMITooOld": "warning",
}


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-home")


def render(helm_home: Path, *args: str) -> list[Manifest]:
    result = run_helm(
        helm_home,
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "-f",
        str(REQUIRED_VALUES),
        *args,
    )
    assert result.returncode == 0, result.stderr
    return load_all(result.stdout)


def one(objects: list[Manifest], kind: str, component: str = "monitoring") -> Manifest:
    (found,) = [
        obj
        for obj in objects
        if obj["kind"] == kind and obj["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    return found


@pytest.fixture(scope="module")
def enabled(helm_home: Path) -> list[Manifest]:
    return render(helm_home, *ON)


@pytest.fixture(scope="module")
def all_on(helm_home: Path) -> list[Manifest]:
    return render(helm_home, "-f", str(ALL_ON_VALUES))


@pytest.fixture(scope="module")
def rule(enabled: list[Manifest]) -> Manifest:
    return one(enabled, "PrometheusRule")


def alerts(rule: Manifest) -> dict[str, dict[str, Any]]:
    (group,) = rule["spec"]["groups"]
    return {r["alert"]: r for r in group["rules"]}


# -- promtool ------------------------------------------------------------------------------------------------------


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    if not PROMTOOL.is_file() or not os.access(PROMTOOL, os.X_OK):
        pytest.fail(
            f"promtool is missing at {PROMTOOL.relative_to(ROOT)}: run `bash scripts/install-promtool.sh` first",
            pytrace=False,
        )
    return subprocess.run(
        [str(PROMTOOL), *args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False
    )


def rule_file(rule: Manifest, path: Path) -> Path:
    """The PrometheusRule's spec as the rule file the Prometheus Operator hands to Prometheus."""
    path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    return path


@pytest.mark.parametrize("values", ["defaults", "all-on"])
def test_promtool_checks_and_lints_the_rendered_rules(
    rule: Manifest, all_on: list[Manifest], tmp_path: Path, values: str
) -> None:
    chosen = rule if values == "defaults" else one(all_on, "PrometheusRule")
    path = rule_file(chosen, tmp_path / "rules.yaml")
    result = promtool("check", "rules", "--lint=all", "--lint-fatal", path.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_refuses_a_broken_rule(rule: Manifest, tmp_path: Path) -> None:
    """The check above has teeth: the same file with one expression cut short fails."""
    broken = copy.deepcopy(rule)
    broken["spec"]["groups"][0]["rules"][0]["expr"] = "sum(rate(packer_builder_builds_total[5m])"
    path = rule_file(broken, tmp_path / "rules.yaml")
    result = promtool("check", "rules", path.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


J = f'job="{RELEASE}"'
UNIT_TESTS: dict[str, dict[str, Any]] = {
    # Every hook pod stopped answering scrapes after 10 minutes: the alert waits hookDownMinutes (5).
    "PackerBuilderHookDown": {
        "input_series": [
            {
                "series": f'up{{{J}, namespace="{NAMESPACE}", instance="10.0.0.1:8080"}}',
                "values": "1x10 0x30",
            },
            {
                "series": f'up{{{J}, namespace="{NAMESPACE}", instance="10.0.0.2:8080"}}',
                "values": "1x10 0x30",
            },
        ],
        "alert_rule_test": [
            {"eval_time": "14m", "alertname": "PackerBuilderHookDown", "exp_alerts": []},
            {
                "eval_time": "30m",
                "alertname": "PackerBuilderHookDown",
                "exp_alerts": [{"exp_labels": {"severity": "critical"}}],
            },
        ],
    },
    # One replica down is not the hook down.
    "PackerBuilderHookDown, one replica left": {
        "input_series": [
            {
                "series": f'up{{{J}, namespace="{NAMESPACE}", instance="10.0.0.1:8080"}}',
                "values": "1x10 0x30",
            },
            {"series": f'up{{{J}, namespace="{NAMESPACE}", instance="10.0.0.2:8080"}}', "values": "1x40"},
        ],
        "alert_rule_test": [{"eval_time": "30m", "alertname": "PackerBuilderHookDown", "exp_alerts": []}],
    },
    "PackerBuilderSyncAWSErrors": {
        "input_series": [
            {
                "series": f'packer_builder_sync_duration_seconds_count{{{J}, outcome="aws_error"}}',
                "values": "0+2x40",
            },
            {
                "series": f'packer_builder_sync_duration_seconds_count{{{J}, outcome="ready"}}',
                "values": "0+5x40",
            },
        ],
        "alert_rule_test": [
            {"eval_time": "10m", "alertname": "PackerBuilderSyncAWSErrors", "exp_alerts": []},
            {
                "eval_time": "30m",
                "alertname": "PackerBuilderSyncAWSErrors",
                "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
            },
        ],
    },
    # DescribeImages is denied throughout; GetParameter failed once (a first publish) and is fine since.
    "PackerBuilderAWSErrors": {
        "input_series": [
            {
                "series": f'packer_builder_aws_requests_total{{{J}, service="ec2", operation="DescribeImages", '
                'outcome="client_error"}',
                "values": "0+1x40",
            },
            {
                "series": f'packer_builder_aws_requests_total{{{J}, service="ssm", operation="GetParameter", '
                'outcome="client_error"}',
                "values": "0 1x40",
            },
            {
                "series": f'packer_builder_aws_requests_total{{{J}, service="ssm", operation="GetParameter", '
                'outcome="ok"}',
                "values": "0+3x40",
            },
        ],
        "alert_rule_test": [
            {
                "eval_time": "30m",
                "alertname": "PackerBuilderAWSErrors",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "warning",
                            "service": "ec2",
                            "operation": "DescribeImages",
                            "outcome": "client_error",
                        }
                    }
                ],
            },
        ],
    },
    # Builder eks ran out of retries (3 of 3); builder web failed once. A replica that stopped getting syncs
    # still says 0 for eks: the max over pods is what counts.
    "PackerBuilderRetriesExhausted": {
        "input_series": [
            {
                "series": f'packer_builder_failed_builds{{{J}, namespace="ami-builds", name="eks", instance="a"}}',
                "values": "1x3 2x3 3x20",
            },
            {
                "series": f'packer_builder_failed_builds{{{J}, namespace="ami-builds", name="eks", instance="b"}}',
                "values": "0x26",
            },
            {
                "series": f'packer_builder_failed_builds{{{J}, namespace="web", name="web", instance="a"}}',
                "values": "1x26",
            },
        ],
        "alert_rule_test": [
            {"eval_time": "8m", "alertname": "PackerBuilderRetriesExhausted", "exp_alerts": []},
            {
                "eval_time": "20m",
                "alertname": "PackerBuilderRetriesExhausted",
                "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "namespace": "ami-builds", "name": "eks"}}
                ],
            },
        ],
    },
    "PackerBuilderBuildsFailing": {
        "input_series": [
            {"series": f'packer_builder_builds_total{{{J}, result="started"}}', "values": "0+1x60"},
            {"series": f'packer_builder_builds_total{{{J}, result="failed"}}', "values": "0+1x60"},
        ],
        "alert_rule_test": [
            {
                "eval_time": "60m",
                "alertname": "PackerBuilderBuildsFailing",
                "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
            },
        ],
    },
    # Failures next to a success are one builder's trouble (PackerBuilderRetriesExhausted), not everyone's.
    "PackerBuilderBuildsFailing, one success": {
        "input_series": [
            {"series": f'packer_builder_builds_total{{{J}, result="failed"}}', "values": "0+1x60"},
            {"series": f'packer_builder_builds_total{{{J}, result="succeeded"}}', "values": "0 1x60"},
        ],
        "alert_rule_test": [
            {"eval_time": "60m", "alertname": "PackerBuilderBuildsFailing", "exp_alerts": []}
        ],
    },
    # eks's new AMI failed its validation at minute 10 (its series are at 0 from its first sync); web's passed.
    # The alert says which builder, and is quiet again an hour after the failure.
    "PackerBuilderValidationFailed": {
        "input_series": [
            {
                "series": f'packer_builder_validations_total{{{J}, namespace="ami-builds", name="eks", '
                'result="failed"}',
                "values": "0x10 1x100",
            },
            {
                "series": f'packer_builder_validations_total{{{J}, namespace="ami-builds", name="eks", '
                'result="passed"}',
                "values": "0x110",
            },
            {
                "series": f'packer_builder_validations_total{{{J}, namespace="web", name="web", result="passed"}}',
                "values": "0x10 1x100",
            },
            {
                "series": f'packer_builder_validations_total{{{J}, namespace="web", name="web", result="failed"}}',
                "values": "0x110",
            },
        ],
        "alert_rule_test": [
            {"eval_time": "9m", "alertname": "PackerBuilderValidationFailed", "exp_alerts": []},
            {
                "eval_time": "12m",
                "alertname": "PackerBuilderValidationFailed",
                "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "namespace": "ami-builds", "name": "eks"}}
                ],
            },
            {
                "eval_time": "65m",
                "alertname": "PackerBuilderValidationFailed",
                "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "namespace": "ami-builds", "name": "eks"}}
                ],
            },
            {"eval_time": "75m", "alertname": "PackerBuilderValidationFailed", "exp_alerts": []},
        ],
    },
    # Two hook pods each saw one of web's failed validations (a failover between them): one alert for web.
    "PackerBuilderValidationFailed, two pods": {
        "input_series": [
            {
                "series": f'packer_builder_validations_total{{{J}, namespace="web", name="web", result="failed", '
                'instance="a"}',
                "values": "0x10 1x30",
            },
            {
                "series": f'packer_builder_validations_total{{{J}, namespace="web", name="web", result="failed", '
                'instance="b"}',
                "values": "0x20 1x20",
            },
        ],
        "alert_rule_test": [
            {
                "eval_time": "30m",
                "alertname": "PackerBuilderValidationFailed",
                "exp_alerts": [{"exp_labels": {"severity": "warning", "namespace": "web", "name": "web"}}],
            },
        ],
    },
    # eks has been not Ready for over 180 minutes; web is Ready on the replica that syncs it.
    "PackerBuilderNotReady": {
        "input_series": [
            {
                "series": f'packer_builder_ready{{{J}, namespace="ami-builds", name="eks", instance="a"}}',
                "values": "0x200",
            },
            {
                "series": f'packer_builder_ready{{{J}, namespace="web", name="web", instance="a"}}',
                "values": "0x200",
            },
            {
                "series": f'packer_builder_ready{{{J}, namespace="web", name="web", instance="b"}}',
                "values": "1x200",
            },
        ],
        "alert_rule_test": [
            {"eval_time": "170m", "alertname": "PackerBuilderNotReady", "exp_alerts": []},
            {
                "eval_time": "190m",
                "alertname": "PackerBuilderNotReady",
                "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "namespace": "ami-builds", "name": "eks"}}
                ],
            },
        ],
    },
    # eks's AMI passes 60 h (216,000 s) at minute 10; web's is an hour old.
    "PackerBuilderAMITooOld": {
        "input_series": [
            {
                "series": f'packer_builder_ami_age_seconds{{{J}, namespace="ami-builds", name="eks"}}',
                "values": "215400+60x40",
            },
            {
                "series": f'packer_builder_ami_age_seconds{{{J}, namespace="web", name="web"}}',
                "values": "3600+60x40",
            },
        ],
        "alert_rule_test": [
            {"eval_time": "12m", "alertname": "PackerBuilderAMITooOld", "exp_alerts": []},
            {
                "eval_time": "20m",
                "alertname": "PackerBuilderAMITooOld",
                "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "namespace": "ami-builds", "name": "eks"}}
                ],
            },
        ],
    },
}


def test_every_alert_has_a_promtool_unit_test() -> None:
    assert {name.split(",")[0] for name in UNIT_TESTS} == set(ALERTS)


@pytest.mark.parametrize("case", sorted(UNIT_TESTS))
def test_promtool_unit_test_of_each_alert(rule: Manifest, tmp_path: Path, case: str) -> None:
    """The alert fires, with the labels an operator routes on, exactly when its runbook says it does.

    Annotations are left out here (promtool compares them verbatim); `promtool check rules` parses them.
    """
    quiet = copy.deepcopy(rule)
    for each in quiet["spec"]["groups"][0]["rules"]:
        each.pop("annotations")
    rule_file(quiet, tmp_path / "rules.yaml")
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m"} | UNIT_TESTS[case]],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# -- metric names ----------------------------------------------------------------------------------------------------

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}
_NOT_METRICS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
}


@pytest.fixture(scope="module")
def exposed() -> dict[str, str]:
    """Every series name the app's /metrics serves, with its family's type, read from a running app."""
    with serve(create_app(Settings(), images=Ec2())) as url:
        code, body = get(f"{url}/metrics")
    assert code == 200
    names = {}
    for family in text_string_to_metric_families(body.decode()):
        for suffix in _SUFFIXES[family.type]:
            names[family.name + suffix] = family.type
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL (or Grafana-templated PromQL) expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    found = set()
    for match in re.finditer(r"(?<![\w$.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        if re.match(r"\s*\(", text[match.end() :]) or match.group().lower() in _NOT_METRICS:
            continue  # a function, an aggregation or a keyword
        found.add(match.group())
    return found


def test_metric_names_are_read_from_expressions() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, outcome) (rate(packer_builder_sync_duration_seconds_bucket{job=~"$job",'
        ' outcome!="ok"}[$__rate_interval]))) > 2 unless on(job) absent(up{job="x"} == 1) or vector(0)'
    )
    assert metric_names(expr) == {"packer_builder_sync_duration_seconds_bucket", "up"}


def test_app_serves_the_metrics_the_issue_names(exposed: dict[str, str]) -> None:
    assert {
        "packer_builder_sync_duration_seconds_bucket": "histogram",
        "packer_builder_finalize_duration_seconds_count": "histogram",
        "packer_builder_aws_requests_total": "counter",
        "packer_builder_aws_request_duration_seconds_bucket": "histogram",
        "packer_builder_builds_total": "counter",
        "packer_builder_validations_total": "counter",
        "packer_builder_promotions_total": "counter",
        "packer_builder_ami_age_seconds": "gauge",
        "packer_builder_failed_builds": "gauge",
        "packer_builder_ready": "gauge",
        "packer_builder_notifications_total": "counter",
        "packer_builder_notification_repeats_suppressed_total": "counter",
    }.items() <= exposed.items()


def test_alerts_use_only_metrics_the_app_serves(rule: Manifest, exposed: dict[str, str]) -> None:
    used = {name for alert in alerts(rule).values() for name in metric_names(str(alert["expr"]))}
    assert used - {"up"} <= set(exposed), used - set(exposed)
    assert {
        "up",
        "packer_builder_ami_age_seconds",
        "packer_builder_failed_builds",
        "packer_builder_ready",
        "packer_builder_builds_total",
        "packer_builder_validations_total",
        "packer_builder_aws_requests_total",
        "packer_builder_sync_duration_seconds_count",
    } <= used


# -- what each alert says ----------------------------------------------------------------------------------------------


def github_anchor(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_sections() -> dict[str, str]:
    """docs/operations.md's sections by anchor, each with its text up to the next heading."""
    sections = {}
    parts = re.split(r"^(#{1,4} .+)$", OPERATIONS.read_text(), flags=re.MULTILINE)
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        sections[github_anchor(heading.lstrip("#"))] = body
    return sections


def test_every_alert_is_there_with_its_severity(rule: Manifest) -> None:
    assert {name: alert["labels"]["severity"] for name, alert in alerts(rule).items()} == ALERTS


def test_every_alert_has_a_summary_a_description_and_a_runbook(rule: Manifest) -> None:
    sections = runbook_sections()
    for name, alert in alerts(rule).items():
        annotations = alert["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert annotations["summary"].strip(), name
        assert len(annotations["description"]) > 80, name
        assert annotations["runbook_url"] == f"docs/operations.md#{name.lower()}"
        section = sections.get(name.lower())
        assert section is not None, f"docs/operations.md has no section {name}"
        # What it means, how to check (kubectl or the AWS CLI), how to fix.
        assert "```sh" in section, name
        assert re.search(r"\b(kubectl|aws) ", section), name
        for part in ("**What it means.**", "**Check.**", "**Fix.**"):
            assert part in section, f"{name}: {part}"


def test_runbook_thresholds_match_the_chart_defaults() -> None:
    """The runbooks quote the default thresholds; they must be the values.yaml ones."""
    defaults = load_yaml(CHART / "values.yaml")["monitoring"]["alerts"]
    sections = runbook_sections()
    assert f"{defaults['amiMaxAgeHours']} hours" in sections["packerbuilderamitooold"]
    assert f"{defaults['notReadyMinutes']} minutes" in sections["packerbuildernotready"]
    assert f"{defaults['failedBuilds']} failed builds" in sections["packerbuilderretriesexhausted"]
    assert f"{defaults['awsErrorMinutes']} minutes" in sections["packerbuilderawserrors"]
    assert f"{defaults['syncErrorMinutes']} minutes" in sections["packerbuildersyncawserrors"]
    assert f"{defaults['hookDownMinutes']} minutes" in sections["packerbuilderhookdown"]


def test_alert_values_reach_the_rules(all_on: list[Manifest]) -> None:
    values = load_yaml(ALL_ON_VALUES)["monitoring"]
    rule = one(all_on, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    found = alerts(rule)
    base = values["alerts"]["runbookUrl"]
    for name, alert in found.items():
        assert alert["labels"]["team"] == "platform", name
        assert alert["annotations"]["runbook_url"] == f"{base}#{name.lower()}"
        assert 'job="packer-builder-hook"' in alert["expr"], name
    assert found["PackerBuilderAMITooOld"]["expr"].endswith("> 170 * 3600")
    assert found["PackerBuilderRetriesExhausted"]["expr"].endswith(">= 5")
    assert found["PackerBuilderNotReady"]["for"] == "240m"
    assert found["PackerBuilderAWSErrors"]["for"] == "20m"
    assert found["PackerBuilderSyncAWSErrors"]["for"] == "10m"
    assert found["PackerBuilderHookDown"]["for"] == "3m"
    assert f'namespace="{NAMESPACE}"' in found["PackerBuilderHookDown"]["expr"]  # the release's namespace


def test_alerts_follow_the_service_monitor_job(enabled: list[Manifest]) -> None:
    """The ServiceMonitor's job label is the Service name: the alerts select that job by default."""
    service = next(obj for obj in enabled if obj["kind"] == "Service")
    for name, alert in alerts(one(enabled, "PrometheusRule")).items():
        assert f'job="{service["metadata"]["name"]}"' in alert["expr"], name


def test_prometheus_rule_matches_the_operator_schema(rule: Manifest, all_on: list[Manifest]) -> None:
    schema = load_json(FIXTURES / "prometheusrule.schema.json")
    assert schema_errors(schema, rule) == []
    assert schema_errors(schema, one(all_on, "PrometheusRule")) == []


# -- off by default ---------------------------------------------------------------------------------------------------


def test_nothing_of_monitoring_is_rendered_by_default(helm_home: Path) -> None:
    objects = render(helm_home)
    assert not [obj for obj in objects if obj["kind"] in ("PrometheusRule", "ServiceMonitor")]
    assert not [obj for obj in objects if obj["metadata"]["labels"].get("grafana_dashboard")]
    values = load_yaml(CHART / "values.yaml")
    assert values["monitoring"]["prometheusRule"]["enabled"] is False
    assert values["monitoring"]["dashboard"]["enabled"] is False


# -- the dashboard ----------------------------------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text())
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(board: dict[str, Any]) -> list[str]:
    return [str(target["expr"]) for panel in panels(board) for target in panel.get("targets", [])]


def test_dashboard_config_map_carries_the_sidecar_label(enabled: list[Manifest]) -> None:
    config_map = one(enabled, "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == NAMESPACE
    (key,) = config_map["data"]
    assert key.endswith(".json")
    assert json.loads(config_map["data"][key]) == dashboard()


def test_dashboard_label_namespace_and_annotations_are_values(all_on: list[Manifest]) -> None:
    config_map = one(all_on, "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard_packer"] == "true"
    assert "grafana_dashboard" not in config_map["metadata"]["labels"]
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Platform"}


def test_dashboard_is_grafana_json_with_a_datasource_variable() -> None:
    board = dashboard()
    assert board["uid"]
    assert board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert "job" in variables
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
            assert 'job=~"$job"' in target["expr"], panel["title"]


def test_dashboard_has_the_panels_an_operator_asks_for() -> None:
    titles = {panel["title"] for panel in panels(dashboard())}
    assert {
        "Syncs by outcome",
        "Sync and finalize latency p99",
        "AWS calls by operation and outcome",
        "Builds started, succeeded and failed",
        "Validations by result",
        "Failed validations per builder (24 h)",
        "Promotions by channel",
        "Builders not ready",
        "AMI age per builder",
        "Notifications by channel and outcome",
    } <= titles


def test_dashboard_queries_name_metrics_the_app_serves(exposed: dict[str, str]) -> None:
    used = {name for expr in queries(dashboard()) for name in metric_names(expr)}
    assert used - {"up"} <= set(exposed), used - set(exposed)
    # Every metric family the hook serves has a panel.
    families = {re.sub(r"_(total|bucket|count|sum|created)$", "", name) for name in exposed}
    shown = {re.sub(r"_(total|bucket|count|sum|created)$", "", name) for name in used}
    assert families <= shown, families - shown


def test_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    """Each query, with Grafana's variables filled in, loaded by promtool as a recording rule."""
    variables = {"$__rate_interval": "5m", "$job": ".*", "$namespace": ".*"}
    rules = []
    for number, query in enumerate(queries(dashboard())):
        expr = query
        for variable, value in variables.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{number}:test", "expr": expr})
    (tmp_path / "queries.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    result = promtool("check", "rules", "queries.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
