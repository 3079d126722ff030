"""What the person on call sees: /metrics (prometheus_client) and the one log line per answer."""

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.aws.ec2 import Ec2
from app.http.logs import JsonFormatter, TextFormatter
from app.main import create_app
from app.model.settings import Settings
from tests.aws import REGION, ec2_client, register_built_ami
from tests.builders import NAME, NAMESPACE, UID, build_pod, failed, parent, request, succeeded
from tests.http import get, post, serve
from tests.seed import SEED_SPEC


@pytest.fixture
def hook(ec2_env: str) -> Iterator[str]:
    with serve(create_app(Settings(), images=Ec2())) as url:
        yield url


def samples(hook: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    code, body = get(f"{hook}/metrics")
    assert code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], metric: str, /, **labels: str
) -> float | None:
    return found.get((metric, tuple(sorted(labels.items()))))


def test_metrics_follow_a_builder_from_new_to_ready_to_finalized(hook: str, ec2_env: str) -> None:
    code, first = post(f"{hook}/sync", request(parent()))
    assert code == 200
    (job,) = first["children"]
    found = samples(hook)
    assert value(found, "packer_builder_sync_duration_seconds_count", outcome="building") == 1
    assert value(found, "packer_builder_builds_total", result="started") == 1
    assert value(found, "packer_builder_ready", namespace=NAMESPACE, name=NAME) == 0
    assert value(found, "packer_builder_failed_builds", namespace=NAMESPACE, name=NAME) == 0
    assert (
        value(
            found,
            "packer_builder_aws_requests_total",
            service="ec2",
            operation="DescribeImages",
            outcome="ok",
        )
        or 0
    ) >= 2
    assert value(
        found, "packer_builder_aws_request_duration_seconds_count", service="ec2", operation="DescribeImages"
    )

    built = register_built_ami(ec2_client(ec2_env), "opsy-built")
    now = datetime.now(UTC)
    done = succeeded(job, now - timedelta(minutes=20), now - timedelta(minutes=2))
    code, answer = post(
        f"{hook}/sync",
        request(parent(status=first["status"]), [done], [build_pod(done, f"{REGION}:{built}")]),
    )
    assert code == 200
    found = samples(hook)
    assert value(found, "packer_builder_builds_total", result="succeeded") == 1
    assert value(found, "packer_builder_ready", namespace=NAMESPACE, name=NAME) == 1
    age = value(found, "packer_builder_ami_age_seconds", namespace=NAMESPACE, name=NAME)
    assert age is not None
    assert 60 <= age < 3600  # the AMI's create-timestamp is the Job's completion, 2 minutes ago
    assert value(found, "packer_builder_sync_duration_seconds_count", outcome="ready") == 1
    assert (
        value(found, "packer_builder_aws_requests_total", service="ec2", operation="CreateTags", outcome="ok")
        or 0
    ) >= 1

    body = request(parent(status=answer["status"]))
    body["finalizing"] = True
    code, final = post(f"{hook}/finalize", body)
    assert final["finalized"] is True
    found = samples(hook)
    assert value(found, "packer_builder_finalize_duration_seconds_count") == 1
    for metric in ("packer_builder_ready", "packer_builder_failed_builds", "packer_builder_ami_age_seconds"):
        assert value(found, metric, namespace=NAMESPACE, name=NAME) is None, metric


def test_a_builder_that_validates_shows_its_validation_series_from_its_first_sync(hook: str) -> None:
    """At 0 before any verdict, so that Prometheus sees the first failed validation as an increase."""
    post(f"{hook}/sync", request(parent()))
    found = samples(hook)
    assert (
        value(found, "packer_builder_validations_total", namespace=NAMESPACE, name=NAME, result="failed")
        is None
    )
    gated = {**SEED_SPEC, "validation": {"bootCheck": {"subnetID": "subnet-0123456789abcdef0"}}}
    code, _ = post(f"{hook}/sync", request(parent(gated)))
    assert code == 200
    found = samples(hook)
    for result in ("passed", "failed"):
        assert (
            value(found, "packer_builder_validations_total", namespace=NAMESPACE, name=NAME, result=result)
            == 0
        )


@pytest.mark.parametrize("passes", [True, False], ids=["passed", "failed"])
def test_a_validated_build_counts_once_when_its_validation_ends(
    hook: str, ec2_env: str, passes: bool
) -> None:
    """Over HTTP against moto: the build Job's success counts nothing; the verdict counts one validation and
    one succeeded or failed build, and the next sync, which sees it recorded, counts nothing more."""
    gated = {**SEED_SPEC, "validation": {"image": "registry.example.com/platform/ami-smoke:1.4"}}
    _, first = post(f"{hook}/sync", request(parent(gated)))
    (job,) = first["children"]
    built = register_built_ami(ec2_client(ec2_env), "opsy-built")
    now = datetime.now(UTC)
    done = succeeded(job, now - timedelta(minutes=30), now - timedelta(minutes=12))
    pods = [build_pod(done, f"{REGION}:{built}")]
    _, validating = post(f"{hook}/sync", request(parent(gated, status=first["status"]), [done], pods))
    assert validating["status"]["state"] == "Validating"
    (check,) = [c for c in validating["children"] if c["metadata"]["name"].endswith("-validate")]
    found = samples(hook)
    assert value(found, "packer_builder_builds_total", result="succeeded") is None
    ended = (succeeded if passes else failed)(check, now - timedelta(minutes=11), now - timedelta(minutes=1))
    verdict = request(parent(gated, status=validating["status"]), [done, ended], pods)
    _, answer = post(f"{hook}/sync", verdict)
    assert answer["status"]["validation"]["result"] == ("Passed" if passes else "Failed")
    post(f"{hook}/sync", request(parent(gated, status=answer["status"]), [done, ended], pods))

    found = samples(hook)
    result = "passed" if passes else "failed"
    other = "failed" if passes else "passed"
    labels = {"namespace": NAMESPACE, "name": NAME}
    assert value(found, "packer_builder_validations_total", **labels, result=result) == 1
    assert value(found, "packer_builder_validations_total", **labels, result=other) == 0
    assert value(found, "packer_builder_builds_total", result="succeeded" if passes else "failed") == 1
    assert value(found, "packer_builder_builds_total", result="failed" if passes else "succeeded") is None


def test_a_promotion_counts_once_in_the_sync_the_ami_becomes_active(hook: str, ec2_env: str) -> None:
    """Over HTTP against moto: a builder with one channel (`after: 0s`) has its series at 0 from its first
    sync; the sync that records the build puts the AMI in the channel and counts it; the next counts nothing."""
    channel = {"name": "canary", "ssmParameter": "/platform/ami/web/canary"}
    released = {**SEED_SPEC, "publish": {"ssmParameter": "/platform/ami/web", "channels": [channel]}}
    _, first = post(f"{hook}/sync", request(parent(released)))
    (job,) = first["children"]
    labels = {"namespace": NAMESPACE, "name": NAME, "channel": "canary"}
    assert value(samples(hook), "packer_builder_promotions_total", **labels) == 0

    built = register_built_ami(ec2_client(ec2_env), "opsy-built")
    now = datetime.now(UTC)
    done = succeeded(job, now - timedelta(minutes=20), now - timedelta(minutes=2))
    pods = [build_pod(done, f"{REGION}:{built}")]
    _, answer = post(f"{hook}/sync", request(parent(released, status=first["status"]), [done], pods))
    assert answer["status"]["state"] == "AMICreated"
    assert [(c["name"], c["imageID"]) for c in answer["status"]["channels"]] == [("canary", built)]
    assert value(samples(hook), "packer_builder_promotions_total", **labels) == 1

    post(f"{hook}/sync", request(parent(released, status=answer["status"]), [done], pods))
    assert value(samples(hook), "packer_builder_promotions_total", **labels) == 1
    assert value(samples(hook), "packer_builder_builds_total", result="succeeded") == 1


def test_metric_labels_carry_no_url_or_secret(hook: str) -> None:
    post(f"{hook}/sync", request(parent()))
    _, body = get(f"{hook}/metrics")
    text = body.decode()
    assert "# TYPE packer_builder_notifications_total counter" in text
    assert "://" not in text.replace("# HELP", "")
    assert "github.com" not in text


def test_one_log_line_per_answer_with_the_decision(hook: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="app")
    post(f"{hook}/sync", request(parent()))
    (record,) = [
        r for r in caplog.records if r.name == "app" and getattr(r, "fields", {}).get("hook") == "sync"
    ]

    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "INFO"
    assert (line["namespace"], line["name"], line["uid"], line["generation"]) == (NAMESPACE, NAME, UID, 1)
    assert line["state"] == "JobCreation"
    assert len(line["jobs_created"]) == 1
    assert line["jobs_kept"] == []
    assert line["aws_calls"] >= 2
    assert line["aws_calls_by_operation"]["ec2:DescribeImages"] >= 2
    assert line["duration_ms"] > 0
    text = TextFormatter().format(record)
    assert f'name="{NAME}"' in text
    assert 'state="JobCreation"' in text


def test_json_logs_are_one_json_object_per_line(capsys: pytest.CaptureFixture[str], ec2_env: str) -> None:
    app = create_app(Settings(log_format="json"), images=Ec2())
    with serve(app) as url:
        post(f"{url}/sync", request(parent()))
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    answers = [line for line in lines if line.get("hook") == "sync"]
    assert len(answers) == 1
    assert answers[0]["name"] == NAME
    assert not any("GET /" in str(line) or "POST /" in str(line) for line in lines), "access log is off"
