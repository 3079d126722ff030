"""Which Jobs stay in `children`, restated as we asked for them (DESIGN.md rules 1, 5, 6 and 7)."""

from collections.abc import Mapping, Sequence
from typing import Any

from app.core.observed import ObservedJob, Phase
from app.core.outcome import Kind, Outcome

# Labels and annotations the API server adds to Jobs; desired objects must not carry them (rule 5).
_GENERATED_LABELS = ("controller-uid", "job-name")
_GENERATED_PREFIX = "batch.kubernetes.io/"


def prune(value: Any) -> Any:
    """Drop nulls and empty strings/lists/maps (rule 6); 0 and false are values and stay.

    Written out flat, without a helper per item: every sync restates its kept Jobs through it, and a call
    per node doubled its cost.
    """
    if isinstance(value, dict):
        pruned_map = {}
        for key, item in value.items():
            if isinstance(item, dict | list):
                if item := prune(item):
                    pruned_map[key] = item
            elif item or (item is not None and item != ""):
                pruned_map[key] = item
        return pruned_map
    if isinstance(value, list):
        pruned_list = []
        for item in value:
            if isinstance(item, dict | list):
                if item := prune(item):
                    pruned_list.append(item)
            elif item or (item is not None and item != ""):
                pruned_list.append(item)
        return pruned_list
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
    pruned: dict[str, Any] = prune(desired)
    return pruned


def kept_jobs(
    live: Sequence[ObservedJob],
    outcome: Outcome | None,
    recorded_now: bool,
    successful_limit: int,
    failed_limit: int,
) -> list[ObservedJob]:
    """Rules 1 and 7 and the history limits: which of the live Jobs stay in `children`.

    Running Jobs stay. The latest finished Job (and its validation Job) stays while its outcome is not recorded
    in the status the request carries (record first, delete later), still waits for an AMI or is being
    validated. After that, like a CronJob's, the newest `successful_limit` succeeded and `failed_limit` failed
    builds stay for `kubectl logs`; a build and its validation are one entry, failed when either failed.
    """
    finished = sorted((j for j in live if j.phase is not Phase.running), key=lambda j: j.order, reverse=True)
    latest = outcome.job.build_id if outcome is not None else None
    failed: dict[str, bool] = {}  # by build, newest first
    for job in finished:
        latest_failed = outcome is not None and _build(job) == latest and outcome.kind is Kind.failed
        failed[_build(job)] = failed.get(_build(job), False) or job.phase is Phase.failed or latest_failed
    failures = [b for b, f in failed.items() if f]
    successes = [b for b, f in failed.items() if not f]
    history = set(failures[:failed_limit]) | set(successes[:successful_limit])
    return [
        j
        for j in live
        if j.phase is Phase.running or _unsettled(j, outcome, recorded_now) or _build(j) in history
    ]


def _build(job: ObservedJob) -> str:
    """Which build a Job belongs to (a Job without a build id, never ours, is one of its own)."""
    return job.build_id or job.name


def _unsettled(job: ObservedJob, outcome: Outcome | None, recorded_now: bool) -> bool:
    """Whether the latest finished Job or its validation still has something to tell: it may not go yet (rule 7)."""
    if outcome is None or _build(job) != _build(outcome.job):
        return False
    if recorded_now or outcome.kind in (Kind.waiting, Kind.validating):
        return True
    # A copy in another region still on its way: only this Job's report names it.
    return any(a.kind is Kind.waiting for a in outcome.artifacts)


def sorted_children(
    jobs: list[dict[str, Any]], extra: dict[str, Any] | None = None
) -> tuple[dict[str, Any], ...]:
    """Stable order (rule 3); `extra`, a Job about to be created, joins unless it is already there."""
    if extra is not None and all(c["metadata"]["name"] != extra["metadata"]["name"] for c in jobs):
        jobs = [*jobs, extra]
    return tuple(sorted(jobs, key=lambda c: str(c["metadata"]["name"])))
