"""What a validated build announces, derived from the statuses the real decision writes (tests/unit/core's Flow)
at each step: nothing while its AMIs wait, then one success or one rejection."""

from datetime import timedelta
from typing import Any

from app.core.decision import Decision
from app.http.reconcile import world_of
from app.model.hooks import HookRequest
from app.model.spec import PackerBuilderSpec, parse_status
from app.notify.events import Event, Kind, events, verdict
from tests.builders import T0, parent, request, succeeded
from tests.builders import failed as failed_job
from tests.unit.core.test_validation_gate import (
    AFTER_BUILD,
    AFTER_CHECK,
    BACKING_OFF,
    BUILT,
    CHECK_ENDED,
    Flow,
)

SAID = "ssm command 2 (systemctl is-active kubelet) exited 3: inactive"


def announced(
    flow: Flow, jobs: list[dict[str, Any]], tag: str | None, now: Any
) -> tuple[list[Event], Decision]:
    """The events of one sync of `flow` (its recorded status against the answer), and the answer."""
    world = world_of(HookRequest.model_validate(request(parent(flow.spec, flow.status), jobs, flow.pods)))
    body, decision = flow.sync(jobs, tag, now)
    assert isinstance(world.spec, PackerBuilderSpec)
    found = events(world.meta, world.spec, world.status, decision.status, world.jobs, decision.news)
    flow.status = body["status"]
    return found, decision


def test_the_build_jobs_success_is_not_announced_the_validations_pass_is() -> None:
    flow = Flow()
    found, decision = announced(flow, [flow.built], None, AFTER_BUILD)
    assert decision.status.state == "Validating"
    assert found == []
    (check,) = [c for c in decision.children if c["metadata"]["name"].endswith("-validate")]
    check_name = check["metadata"]["name"]

    done = succeeded(check, AFTER_BUILD, AFTER_BUILD + timedelta(minutes=10))
    flow.verdict_pod(done, "passed: booted", 0)
    before = parse_status(flow.status)
    found, decision = announced(flow, [flow.built, done], "validating", AFTER_CHECK)
    (success,) = found
    assert success.kind is Kind.succeeded
    assert (success.job_name, success.image_id) == (flow.build["metadata"]["name"], BUILT)
    assert success.detail == f"Job {check_name} validated it in 10m00s"
    ended = verdict(before, decision.status)
    assert ended is not None
    assert (ended.result, ended.jobName) == ("Passed", check_name)

    # The next sync sees the pass recorded: nothing more.
    again, _ = announced(flow, [flow.built, done], "active", AFTER_CHECK + timedelta(minutes=1))
    assert again == []


def test_a_rejection_is_announced_once_with_the_check_that_failed() -> None:
    flow = Flow()
    _, decision = announced(flow, [flow.built], None, AFTER_BUILD)
    (check,) = [c for c in decision.children if c["metadata"]["name"].endswith("-validate")]
    done = failed_job(check, AFTER_BUILD, CHECK_ENDED)
    flow.verdict_pod(done, SAID, 1)
    found, decision = announced(flow, [flow.built, done], "validating", BACKING_OFF)
    (rejection,) = found
    assert rejection.kind is Kind.rejected
    assert rejection.job_name == check["metadata"]["name"]
    assert rejection.image_id == BUILT
    assert rejection.detail == decision.status.validation.message  # type: ignore[union-attr]
    assert rejection.detail.endswith(SAID)
    assert (rejection.attempt, rejection.max_attempts) == (1, 3)
    again, _ = announced(flow, [flow.built, done], "rejected", BACKING_OFF + timedelta(seconds=10))
    assert again == []


def test_the_last_allowed_rejection_also_exhausts_the_retries() -> None:
    flow = Flow(maxNumberOfJobs=1)
    _, decision = announced(flow, [flow.built], None, AFTER_BUILD)
    (check,) = [c for c in decision.children if c["metadata"]["name"].endswith("-validate")]
    done = failed_job(check, AFTER_BUILD, CHECK_ENDED)
    found, _ = announced(flow, [flow.built, done], "validating", T0 + timedelta(days=3))
    assert [e.kind for e in found] == [Kind.rejected, Kind.exhausted]
