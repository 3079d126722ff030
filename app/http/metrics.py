"""Prometheus metrics (prometheus_client), one registry per app, served on /metrics.

Names are a contract: dashboards and the chart's alerts (helm/packer-builder/monitoring/) use them.
Label values are bounded and never carry a secret or a URL: outcomes and AWS operation names come from
fixed sets, builders are identified by namespace and name only.

The chart runs one uvicorn worker per pod (WEB_CONCURRENCY=1, not a value): the AMI index, the
notification dedupe and these metrics are per process, so replicas scale the hook, never workers, and
prometheus_client's multiprocess mode is not needed.
"""

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from app.core import conditions as cond
from app.core.decision import Decision
from app.core.states import State
from app.model.spec import ConditionStatus
from app.model.validation import Result, ValidationStatus
from app.notify.events import Event, Kind

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Keyed by the status's state string (State members are those strings).
_OUTCOMES: dict[str, str] = {
    State.AMI_CREATED: "ready",
    State.AMI_ADOPTED: "ready",
    State.JOB_CREATION: "building",
    State.JOB_RUNNING: "building",
    State.JOB_FAILED: "failed",
    State.MAX_FAILED: "failed",
    State.BASE_IMAGE_NOT_FOUND: "failed",
    State.INVALID_SPEC: "invalid",
}
# A build whose AMIs failed their validation is a failed build (it counts towards maxNumberOfJobs too).
BUILD_RESULTS = {
    Kind.started: "started",
    Kind.succeeded: "succeeded",
    Kind.failed: "failed",
    Kind.rejected: "failed",
}
VALIDATION_RESULTS = {Result.passed: "passed", Result.failed: "failed"}
_THROTTLING = frozenset(
    {"RequestLimitExceeded", "Throttling", "ThrottlingException", "TooManyRequestsException"}
)


def outcome_of(decision: Decision) -> str:
    """The `outcome` label of a sync: ready, building, waiting, failed, invalid or aws_error."""
    if any(c.type == cond.AWS_ERROR and c.status == ConditionStatus.true for c in decision.status.conditions):
        return "aws_error"
    return _OUTCOMES.get(decision.status.state, "waiting")


@dataclass
class AwsCalls:
    """The AWS calls one request made, for its log line."""

    count: int = 0
    by_operation: dict[str, int] = field(default_factory=dict)


_calls: ContextVar[AwsCalls | None] = ContextVar("aws_calls", default=None)


@contextmanager
def counting_aws_calls() -> Iterator[AwsCalls]:
    """Count the AWS calls made in this context (the request's thread) while it is open."""
    calls = AwsCalls()
    token = _calls.set(calls)
    try:
        yield calls
    finally:
        _calls.reset(token)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sync_duration = Histogram(
            "packer_builder_sync_duration_seconds", "Sync hook answers by outcome.", ["outcome"], registry=r
        )
        self.finalize_duration = Histogram(
            "packer_builder_finalize_duration_seconds", "Finalize hook answers.", registry=r
        )
        self.aws_requests = Counter(
            "packer_builder_aws_requests_total",
            "AWS API calls by service, operation and outcome (ok, throttled, client_error, server_error, "
            "network_error).",
            ["service", "operation", "outcome"],
            registry=r,
        )
        self.aws_duration = Histogram(
            "packer_builder_aws_request_duration_seconds",
            "AWS API call duration, retries included.",
            ["service", "operation"],
            registry=r,
        )
        self.builds = Counter(
            "packer_builder_builds_total",
            "Builds started, succeeded and failed (a build whose validation failed failed).",
            ["result"],
            registry=r,
        )
        builder = ["namespace", "name"]
        self.validations = Counter(
            "packer_builder_validations_total",
            "Validations of a build's AMIs that ended, by builder and result (passed, failed).",
            [*builder, "result"],
            registry=r,
        )
        self.promotions = Counter(
            "packer_builder_promotions_total",
            "AMIs that entered a builder's release channel: promoted, pinned, or fallen back to after a revocation.",
            [*builder, "channel"],
            registry=r,
        )
        # Each builder's channels with a promotions series, so that a channel dropped from the spec, or a
        # deleted builder, loses its series (the label values are not in the spec any more by then).
        self._channels: dict[tuple[str, str], frozenset[str]] = {}
        self.ami_age = Gauge(
            "packer_builder_ami_age_seconds",
            "Age of the builder's current AMI, from its create-timestamp tag.",
            builder,
            registry=r,
        )
        self.failed_builds = Gauge(
            "packer_builder_failed_builds",
            "Failed builds counted against maxNumberOfJobs.",
            builder,
            registry=r,
        )
        self.ready = Gauge(
            "packer_builder_ready", "1 when the builder's Ready condition is True.", builder, registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- builders ----------------------------------------------------------------------------------------------

    def builder(self, namespace: str, name: str, decision: Decision, now: datetime) -> None:
        """The per-builder series after a sync; finalized builders lose theirs."""
        if decision.finalized:
            for gauge in (self.ami_age, self.failed_builds, self.ready):
                with suppress(KeyError):
                    gauge.remove(namespace, name)
            for result in VALIDATION_RESULTS.values():
                with suppress(KeyError):
                    self.validations.remove(namespace, name, result)
            self._keep_channels(namespace, name, ())
            return
        if decision.finalized is not None:
            return  # a finalize still waiting: the builder's last sync values stand
        ready = any(
            c.type == cond.READY and c.status == ConditionStatus.true for c in decision.status.conditions
        )
        self.ready.labels(namespace, name).set(1 if ready else 0)
        self.failed_builds.labels(namespace, name).set(decision.status.failedJobCount)
        if decision.ami_created_at is not None:
            self.ami_age.labels(namespace, name).set(max((now - decision.ami_created_at).total_seconds(), 0))
        else:
            with suppress(KeyError):
                self.ami_age.remove(namespace, name)

    def transitions(
        self,
        namespace: str,
        name: str,
        events: Sequence[Event],
        validates: bool,
        verdict: ValidationStatus | None,
        channels: Sequence[str] | None = None,
    ) -> None:
        """Count what a sync's transitions (old status to new) ended: builds, a validation's verdict, the AMIs
        that entered a release channel (`channels`: the spec's; None leaves the series as they are: an invalid spec).

        Like the notifications, a transition counts when the status Metacontroller sent does not show it yet; a
        request retried or replayed with a stale status counts it again (the notifier's repeat cache is for
        messages only). A builder that validates has both of its validation series, at 0, from its first sync,
        and each channel its promotions series: a counter first scraped at 1 is no increase to Prometheus, and
        the alert would miss the first failure, the dashboard the first promotion.
        """
        if channels is not None:
            self._keep_channels(namespace, name, channels)
        for event in events:
            if event.kind in BUILD_RESULTS:
                self.builds.labels(BUILD_RESULTS[event.kind]).inc()
            elif event.kind is Kind.promoted:
                self.promotions.labels(namespace, name, event.channel).inc()
        if validates or verdict is not None:
            for result in VALIDATION_RESULTS.values():
                self.validations.labels(namespace, name, result)
        if verdict is not None and verdict.result in VALIDATION_RESULTS:
            self.validations.labels(namespace, name, VALIDATION_RESULTS[verdict.result]).inc()

    def _keep_channels(self, namespace: str, name: str, channels: Sequence[str]) -> None:
        """The builder's promotions series: one per channel of its spec, at 0 until its first promotion."""
        wanted = frozenset(channels)
        for gone in self._channels.pop((namespace, name), frozenset()) - wanted:
            with suppress(KeyError):
                self.promotions.remove(namespace, name, gone)
        for channel in wanted:
            self.promotions.labels(namespace, name, channel)
        if wanted:
            self._channels[(namespace, name)] = wanted

    # -- AWS calls (botocore events on each client's session) ------------------------------------------------------

    def instrument(self, events: Any) -> None:
        """Observe every AWS call made through a botocore session's event system."""
        events.register("before-call", self._before_call)
        events.register("after-call", self._after_call)
        events.register("after-call-error", self._after_error)

    def _before_call(self, context: dict[str, Any], **_: Any) -> None:
        context["packer_builder_started"] = time.monotonic()

    def _after_call(
        self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], event_name: str, **_: Any
    ) -> None:
        status = int(getattr(http_response, "status_code", 0) or 0)
        code = str(parsed.get("Error", {}).get("Code", "")) if status >= 300 else ""
        if code in _THROTTLING:
            outcome = "throttled"
        elif status >= 500:
            outcome = "server_error"
        elif status >= 300:
            outcome = "client_error"
        else:
            outcome = "ok"
        self._record(event_name, context, outcome)

    def _after_error(self, exception: Exception, context: dict[str, Any], event_name: str, **_: Any) -> None:
        self._record(
            event_name, context, "client_error" if isinstance(exception, ClientError) else "network_error"
        )

    def _record(self, event_name: str, context: dict[str, Any], outcome: str) -> None:
        # `after-call.<service>.<Operation>`: both from botocore's own models, a fixed set.
        _, service, operation = event_name.split(".", 2)
        self.aws_requests.labels(service, operation, outcome).inc()
        started = context.get("packer_builder_started")
        if isinstance(started, float):
            self.aws_duration.labels(service, operation).observe(time.monotonic() - started)
        calls = _calls.get()
        if calls is not None:
            calls.count += 1
            key = f"{service}:{operation}"
            calls.by_operation[key] = calls.by_operation.get(key, 0) + 1
