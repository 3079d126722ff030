"""Typed views of the Jobs and Pods Metacontroller hands us, read defensively (they are someone's live objects)."""

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from app.core.build import (
    ANNOTATION_BASE_AMI,
    ANNOTATION_COMMAND,
    ANNOTATION_REPLACES,
    LABEL_ATTEMPT,
    LABEL_BUILD_ID,
    LABEL_GENERATION,
    LABEL_JOB_ID,
    LABEL_STEP,
    PACKER_CONTAINER,
    STEP_BUILD,
    STEP_VALIDATE,
)
from app.model.tags import parse_timestamp

# A Job without a creation time (never from the API server) sorts before every other of its generation.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Phase(StrEnum):
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


@dataclass(frozen=True)
class ObservedJob:
    name: str
    raw: dict[str, Any]
    phase: Phase
    deleting: bool
    build_id: str
    job_id: str
    attempt: int
    generation: int
    base_ami: str
    replaces_ami: str
    command: str
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    failure: str
    step: str = STEP_BUILD
    """A build, or a build's validation (a Job without the label is a build: older hooks made only those)."""

    @property
    def validates(self) -> bool:
        return self.step == STEP_VALIDATE

    @property
    def order(self) -> tuple[int, datetime, int, str]:
        """Which of two builds is later: spec generation, then creation, then attempt, then name (a stable
        tie-break). Creation before attempt: a rebuild cycle starts again at attempt 0, after the last cycle's
        retries."""
        return (self.generation, self.created_at or _EPOCH, self.attempt, self.name)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


def _phase(status: dict[str, Any]) -> tuple[Phase, datetime | None, str]:
    """Terminal state from the Job's conditions; a Job without a terminal condition is still running."""
    for item in _list(status.get("conditions")):
        condition = _dict(item)
        if condition.get("status") != "True":
            continue
        when = _time(condition.get("lastTransitionTime"))
        if condition.get("type") == "Complete":
            return Phase.succeeded, _time(status.get("completionTime")) or when, ""
        if condition.get("type") == "Failed":
            reason = str(condition.get("reason") or "Failed")
            message = str(condition.get("message") or "")
            return Phase.failed, when, f"{reason}: {message}" if message else reason
    return Phase.running, None, ""


def observe_job(raw: dict[str, Any]) -> ObservedJob:
    metadata = _dict(raw.get("metadata"))
    labels = {str(k): str(v) for k, v in _dict(metadata.get("labels")).items()}
    annotations = {str(k): str(v) for k, v in _dict(metadata.get("annotations")).items()}
    status = _dict(raw.get("status"))
    phase, finished_at, failure = _phase(status)
    return ObservedJob(
        name=str(metadata.get("name") or ""),
        raw=raw,
        phase=phase,
        deleting=bool(metadata.get("deletionTimestamp")),
        build_id=labels.get(LABEL_BUILD_ID, ""),
        job_id=labels.get(LABEL_JOB_ID, ""),
        attempt=_int(labels.get(LABEL_ATTEMPT)),
        generation=_int(labels.get(LABEL_GENERATION)),
        base_ami=annotations.get(ANNOTATION_BASE_AMI, ""),
        replaces_ami=annotations.get(ANNOTATION_REPLACES, ""),
        command=annotations.get(ANNOTATION_COMMAND, ""),
        created_at=_time(metadata.get("creationTimestamp")),
        started_at=_time(status.get("startTime")),
        finished_at=finished_at,
        failure=failure,
        step=labels.get(LABEL_STEP, STEP_BUILD),
    )


@dataclass(frozen=True)
class BuildReport:
    """What the Packer container said when it ended: exit code and termination message."""

    exit_code: int
    message: str


def build_reports(
    pods: list[dict[str, Any]], container_name: str = PACKER_CONTAINER
) -> dict[str, BuildReport]:
    """Terminated containers of one name (the Packer container, or the validation container) keyed by build
    id; a successful report wins over a failed retry's."""
    reports: dict[str, BuildReport] = {}
    for pod in sorted(pods, key=lambda p: str(_dict(p.get("metadata")).get("name", ""))):
        metadata = _dict(pod.get("metadata"))
        build_id = str(_dict(metadata.get("labels")).get(LABEL_BUILD_ID, ""))
        if not build_id:
            continue
        for item in _list(_dict(pod.get("status")).get("containerStatuses")):
            container = _dict(item)
            if container.get("name") != container_name:
                continue
            terminated = _dict(_dict(container.get("state")).get("terminated"))
            if not terminated:
                continue
            report = BuildReport(
                _int(terminated.get("exitCode")), str(terminated.get("message") or "").strip()
            )
            previous = reports.get(build_id)
            if previous is None or (previous.exit_code != 0 and report.exit_code == 0):
                reports[build_id] = report
    return reports
