"""Which Jobs stay in `children`, restated as we asked for them (DESIGN.md rules 1, 5, 6 and 7)."""

from collections.abc import Mapping
from typing import Any

from app.observed import ObservedJob, Phase
from app.outcome import Kind, Outcome
from app.spec import JobStatus, PackerBuilderStatus
from app.tags import BUILD_ID

# Labels and annotations the API server adds to Jobs; desired objects must not carry them (rule 5).
_GENERATED_LABELS = ("controller-uid", "job-name")
_GENERATED_PREFIX = "batch.kubernetes.io/"


def _prune(value: Any) -> Any:
    """Drop nulls and empty strings/lists/maps (rule 6)."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        items = [_prune(v) for v in value]
        return [v for v in items if v not in (None, "", [], {})]
    return value


def _without_generated(mapping: Any) -> dict[str, Any]:
    if not isinstance(mapping, dict):
        return {}
    return {
        k: v
        for k, v in mapping.items()
        if k not in _GENERATED_LABELS and not str(k).startswith(_GENERATED_PREFIX)
    }


def as_desired(raw: Mapping[str, Any]) -> dict[str, Any]:
    """An observed Job restated as a desired child: what we asked for, none of what the API server added."""
    metadata = raw.get("metadata") or {}
    spec = dict(raw.get("spec") or {})
    spec.pop("selector", None)
    template = dict(spec.get("template") or {})
    template_meta = dict(template.get("metadata") or {})
    template_meta["labels"] = _without_generated(template_meta.get("labels"))
    template_meta.pop("creationTimestamp", None)
    template["metadata"] = template_meta
    spec["template"] = template
    desired = {
        "apiVersion": raw.get("apiVersion", "batch/v1"),
        "kind": raw.get("kind", "Job"),
        "metadata": {
            "name": metadata.get("name"),
            "namespace": metadata.get("namespace"),
            "labels": _without_generated(metadata.get("labels")),
            "annotations": _without_generated(metadata.get("annotations")),
        },
        "spec": spec,
    }
    pruned: dict[str, Any] = _prune(desired)
    return pruned


def keeps(job: ObservedJob, outcome: Outcome | None, recorded_now: bool, status: PackerBuilderStatus) -> bool:
    """Rule 7: a finished Job leaves `children` only once the status the request carries records it."""
    if job.phase is Phase.running:
        return True
    is_latest = outcome is not None and outcome.job.name == job.name
    if is_latest and recorded_now:
        return True  # recorded in this response; dropped on a later sync
    if is_latest and outcome is not None and outcome.kind is Kind.waiting:
        return True
    if is_latest and outcome is not None and outcome.kind is Kind.built:
        tagged = outcome.image is not None and outcome.image.tags.get(BUILD_ID) == job.build_id
        recorded = status.jobName == job.name and status.jobStatus == JobStatus.completed
        return not (tagged and recorded)
    if job.phase is Phase.failed or (is_latest and outcome is not None and outcome.kind is Kind.failed):
        # Failed builds stay for `kubectl logs` until the spec changes or a later build succeeds.
        superseded = status.observedGeneration > job.generation or (
            status.lastRunStatus == JobStatus.completed and status.jobName != job.name
        )
        return not superseded
    # A succeeded Job that is not the latest: its AMI was recorded when a later build was planned.
    return False


def sorted_children(
    jobs: list[dict[str, Any]], extra: dict[str, Any] | None = None
) -> tuple[dict[str, Any], ...]:
    """Stable order (rule 3); `extra`, a Job about to be created, joins unless it is already there."""
    if extra is not None and all(c["metadata"]["name"] != extra["metadata"]["name"] for c in jobs):
        jobs = [*jobs, extra]
    return tuple(sorted(jobs, key=lambda c: str(c["metadata"]["name"])))
