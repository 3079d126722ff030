"""What a sync's transitions add to /metrics: builds and validations by result, counted once per verdict."""

from prometheus_client.parser import text_string_to_metric_families

from app.core.decision import Decision
from app.http.metrics import Metrics
from app.model.spec import JobStatus, PackerBuilderStatus
from app.model.validation import Result, ValidationStatus
from app.notify.events import Event, Kind, verdict
from tests.builders import T0

NS, NAME = "ami-builds", "web"
VJOB = "web-1a2b3c4d-validate"


def status(job_status: JobStatus, result: Result | None, build: str = "build-1") -> PackerBuilderStatus:
    validation = ValidationStatus(jobName=VJOB, imageID="ami-0b1", buildID=build, result=result)
    return PackerBuilderStatus(
        buildID=build,
        jobName="web-1a2b3c4d",
        jobStatus=job_status,
        validation=validation if result is not None else None,
    )


NOT_YET = status(JobStatus.running, None)
VALIDATING = status(JobStatus.validating, Result.running)
PASSED = status(JobStatus.completed, Result.passed)
FAILED = status(JobStatus.failed, Result.failed)


def counts(metrics: Metrics) -> dict[tuple[str, ...], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name in ("packer_builder_validations_total", "packer_builder_builds_total"):
                labels = [sample.labels[k] for k in ("namespace", "name", "result") if k in sample.labels]
                found[(sample.name.removeprefix("packer_builder_"), *labels)] = sample.value
    return found


def sync(metrics: Metrics, old: PackerBuilderStatus, new: PackerBuilderStatus, *kinds: Kind) -> None:
    events = [Event(kind, NAME, NS, "uid-1", new.buildID) for kind in kinds]
    metrics.transitions(NS, NAME, events, True, verdict(old, new))


def test_a_builder_that_validates_has_both_series_at_zero_before_its_first_verdict() -> None:
    metrics = Metrics()
    sync(metrics, PackerBuilderStatus(), NOT_YET, Kind.started)
    assert counts(metrics) == {
        ("validations_total", NS, NAME, "passed"): 0,
        ("validations_total", NS, NAME, "failed"): 0,
        ("builds_total", "started"): 1,
    }


def test_a_builder_without_validation_has_no_validation_series() -> None:
    metrics = Metrics()
    metrics.transitions(NS, NAME, [], False, None)
    assert counts(metrics) == {}


def test_a_pass_counts_once_and_as_a_succeeded_build_only_then() -> None:
    metrics = Metrics()
    sync(metrics, NOT_YET, VALIDATING)  # the build Job succeeded: no success yet
    assert counts(metrics)[("validations_total", NS, NAME, "passed")] == 0
    assert ("builds_total", "succeeded") not in counts(metrics)
    sync(metrics, VALIDATING, PASSED, Kind.succeeded)
    sync(metrics, PASSED, PASSED)  # the next sync sees it recorded
    found = counts(metrics)
    assert found[("validations_total", NS, NAME, "passed")] == 1
    assert found[("validations_total", NS, NAME, "failed")] == 0
    assert found[("builds_total", "succeeded")] == 1


def test_a_failure_counts_once_and_as_a_failed_build() -> None:
    metrics = Metrics()
    sync(metrics, VALIDATING, FAILED, Kind.rejected)
    sync(metrics, FAILED, FAILED)
    found = counts(metrics)
    assert found[("validations_total", NS, NAME, "failed")] == 1
    assert found[("validations_total", NS, NAME, "passed")] == 0
    assert found[("builds_total", "failed")] == 1


def test_the_next_builds_verdict_counts_again() -> None:
    metrics = Metrics()
    sync(metrics, VALIDATING, FAILED, Kind.rejected)
    sync(metrics, FAILED, status(JobStatus.validating, Result.running, "build-2"))
    sync(metrics, FAILED, status(JobStatus.completed, Result.passed, "build-2"), Kind.succeeded)
    found = counts(metrics)
    assert found[("validations_total", NS, NAME, "failed")] == 1
    assert found[("validations_total", NS, NAME, "passed")] == 1


def test_a_deleted_builder_loses_its_validation_series() -> None:
    metrics = Metrics()
    sync(metrics, VALIDATING, FAILED, Kind.rejected)
    still_waiting = Decision((), FAILED, 30, finalized=False)
    metrics.builder(NS, NAME, still_waiting, T0)
    assert counts(metrics)[("validations_total", NS, NAME, "failed")] == 1
    metrics.builder(NS, NAME, Decision((), FAILED, 300, finalized=True), T0)
    assert counts(metrics) == {("builds_total", "failed"): 1}


# -- release channels ------------------------------------------------------------------------------------------


def promotions(metrics: Metrics) -> dict[str, float]:
    """Channel -> packer_builder_promotions_total of the builder."""
    return {
        sample.labels["channel"]: sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
        if sample.name == "packer_builder_promotions_total"
        and (sample.labels["namespace"], sample.labels["name"]) == (NS, NAME)
    }


def entered(*channels: str) -> list[Event]:
    return [Event(Kind.promoted, NAME, NS, "uid-1", f"{c} ami-0b1", channel=c) for c in channels]


def test_each_channel_has_its_promotions_series_at_zero_from_the_first_sync() -> None:
    metrics = Metrics()
    metrics.transitions(NS, NAME, [], False, None, ["canary", "stable"])
    assert promotions(metrics) == {"canary": 0, "stable": 0}


def test_an_ami_entering_a_channel_counts_once_for_that_channel() -> None:
    metrics = Metrics()
    channels = ["canary", "stable"]
    metrics.transitions(NS, NAME, entered("canary"), False, None, channels)
    metrics.transitions(NS, NAME, [], False, None, channels)  # the next sync sees it recorded
    metrics.transitions(NS, NAME, entered("canary", "stable"), False, None, channels)
    assert promotions(metrics) == {"canary": 2, "stable": 1}
    # Builds and validations are not promotions, nor the other way round.
    assert counts(metrics) == {}


def test_a_channel_dropped_from_the_spec_or_a_deleted_builder_loses_its_series() -> None:
    metrics = Metrics()
    metrics.transitions(NS, NAME, entered("canary"), False, None, ["canary", "stable"])
    metrics.transitions(NS, NAME, [], False, None, None)  # an invalid spec: no channel is known, none goes
    assert promotions(metrics) == {"canary": 1, "stable": 0}
    metrics.transitions(NS, NAME, [], False, None, ["canary"])
    assert promotions(metrics) == {"canary": 1}
    metrics.builder(NS, NAME, Decision((), PackerBuilderStatus(), 300, finalized=True), T0)
    assert promotions(metrics) == {}
