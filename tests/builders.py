"""Builders for hook requests and the Kubernetes objects in them, shaped like what Metacontroller sends.

They add only what the API server would add to a Job we asked for (uid, status, generated labels), so a test
reads as "the Job from the last response, now running / succeeded / failed".
"""

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from app.core.build import LABEL_BUILD_ID, PACKER_CONTAINER
from app.core.decision import Decision
from app.core.effects import TagImages
from app.model.spec import PackerBuilderSpec, parse_spec
from app.model.tags import Image, Owner, format_timestamp
from tests.seed import SEED_SPEC

UID = "6f1c2b9e-3f39-4a53-9d55-0d4c2f8f2a11"
NAME = "packer-builder-local"
NAMESPACE = "ami-builds"
T0 = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)


class Clock:
    """The hook's wall clock in a test: `create_app(..., clock=clock)`, moved by setting `now`."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def parent(
    spec: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    generation: int = 1,
    name: str = NAME,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "ami.refresh.ops/v1alpha1",
        "kind": "PackerBuilder",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": UID,
            "generation": generation,
            "creationTimestamp": "2026-11-01T00:00:00Z",
        },
        "spec": copy.deepcopy(SEED_SPEC if spec is None else spec),
    }
    if status is not None:
        body["status"] = status
    return body


def request(
    parent_obj: dict[str, Any],
    jobs: list[dict[str, Any]] | None = None,
    pods: list[dict[str, Any]] | None = None,
    v2_keys: bool = False,
) -> dict[str, Any]:
    def key(obj: dict[str, Any]) -> str:
        meta = obj["metadata"]
        return f"{meta.get('namespace', NAMESPACE)}/{meta['name']}" if v2_keys else str(meta["name"])

    return {
        "controller": {"metadata": {"name": "packerbuilder-controller"}},
        "parent": parent_obj,
        "children": {"Job.batch/v1": {key(j): j for j in jobs or []}},
        "related": {"Pod.v1": {key(p): p for p in pods or []}},
        "finalizing": False,
    }


def observed(desired: dict[str, Any], created: datetime = T0) -> dict[str, Any]:
    """A desired Job as the API server returns it right after creation."""
    job = copy.deepcopy(desired)
    uid = "job-uid-" + job["metadata"]["name"]
    meta = job["metadata"]
    meta |= {"uid": uid, "resourceVersion": "101", "creationTimestamp": format_timestamp(created)}
    meta["labels"] |= {
        "controller-uid": uid,
        "job-name": meta["name"],
        "batch.kubernetes.io/job-name": meta["name"],
    }
    meta["ownerReferences"] = [
        {
            "apiVersion": "ami.refresh.ops/v1alpha1",
            "kind": "PackerBuilder",
            "name": NAME,
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    job["spec"]["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    job["spec"]["template"]["metadata"]["labels"] |= {
        "controller-uid": uid,
        "batch.kubernetes.io/job-name": meta["name"],
    }
    job["status"] = {}
    return job


def running(desired: dict[str, Any], started: datetime = T0) -> dict[str, Any]:
    job = observed(desired, started)
    job["status"] = {"active": 1, "startTime": format_timestamp(started), "ready": 1}
    return job


def succeeded(
    desired: dict[str, Any], started: datetime = T0, finished: datetime | None = None
) -> dict[str, Any]:
    finished = finished or started + timedelta(minutes=25)
    job = observed(desired, started)
    job["status"] = {
        "startTime": format_timestamp(started),
        "completionTime": format_timestamp(finished),
        "succeeded": 1,
        "conditions": [
            {
                "type": "SuccessCriteriaMet",
                "status": "True",
                "lastTransitionTime": format_timestamp(finished),
            },
            {"type": "Complete", "status": "True", "lastTransitionTime": format_timestamp(finished)},
        ],
    }
    return job


def failed(
    desired: dict[str, Any],
    started: datetime = T0,
    finished: datetime | None = None,
    reason: str = "BackoffLimitExceeded",
) -> dict[str, Any]:
    finished = finished or started + timedelta(minutes=5)
    job = observed(desired, started)
    job["status"] = {
        "startTime": format_timestamp(started),
        "failed": 1,
        "conditions": [
            {
                "type": "Failed",
                "status": "True",
                "reason": reason,
                "message": "Job has reached the specified backoff limit",
                "lastTransitionTime": format_timestamp(finished),
            },
        ],
    }
    return job


def deleting(job: dict[str, Any]) -> dict[str, Any]:
    job = copy.deepcopy(job)
    job["metadata"]["deletionTimestamp"] = "2026-11-20T12:30:00Z"
    return job


def build_pod(
    job: dict[str, Any], message: str, exit_code: int = 0, container: str = PACKER_CONTAINER
) -> dict[str, Any]:
    """The Job's pod after its container (the Packer one, or a validation Job's) ended with this termination
    message."""
    name = job["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{name}-x7k2p",
            "namespace": NAMESPACE,
            "labels": {**job["spec"]["template"]["metadata"]["labels"], "job-name": name},
        },
        "status": {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "containerStatuses": [
                {
                    "name": container,
                    "state": {
                        "terminated": {"exitCode": exit_code, "reason": "Completed", "message": message}
                    },
                }
            ],
        },
    }


def build_id_of(job: dict[str, Any]) -> str:
    return str(job["metadata"]["labels"][LABEL_BUILD_ID])


def base_image(image_id: str = "ami-0base0000000000001", created: datetime = T0 - timedelta(days=3)) -> Image:
    return Image(image_id, "available", created, "amazon-eks-node-al2023-x86_64-standard-1.30-v20261101")


def managed_image(
    image_id: str,
    created: datetime,
    status: str = "active",
    spec: dict[str, Any] | None = None,
    state: str = "available",
    extra: dict[str, str] | None = None,
) -> Image:
    tags = {
        **Owner.of(NAMESPACE, NAME, parse_spec(spec or SEED_SPEC)).tags,
        "status": status,
        "create-timestamp": format_timestamp(created),
        **(extra or {}),
    }
    return Image(image_id, state, created, "opsy-built", tags)


def make_spec(builder: dict[str, Any] | None = None, **top: Any) -> PackerBuilderSpec:
    """A minimal valid spec (public repo, no filters), with `builder` fields and top-level fields overridden."""
    raw: dict[str, Any] = {
        "region": "us-west-2",
        "builder": {"repoURL": "https://example.com/org/images.git", "image": "hashicorp/packer:1.11"},
    }
    raw["builder"].update(builder or {})
    raw.update(top)
    return parse_spec(raw)


def fail_each_build(
    answer: dict[str, Any],
    times: int,
    resync: Callable[[dict[str, Any], list[dict[str, Any]]], dict[str, Any]],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fails the new build Job of each answer `times` times, resyncing with (status, observed Jobs) after each.

    The failures lie hours back, so the retry backoff has passed and each retry starts in the next sync.
    Returns the last answer and the failed Jobs.
    """
    now = datetime.now(UTC)
    jobs: list[dict[str, Any]] = []
    for _ in range(times):
        seen = {job["metadata"]["name"] for job in jobs}
        (job,) = [c for c in answer["children"] if c["metadata"]["name"] not in seen]
        jobs.append(failed(job, now - timedelta(hours=3), now - timedelta(hours=2)))
        answer = resync(answer["status"], jobs)
    return answer, jobs


def tagging(decision: Decision) -> list[TagImages]:
    """The tagging effects of a decision, in order."""
    return [effect for effect in decision.effects if isinstance(effect, TagImages)]


def empties(value: Any, path: str = "status") -> list[str]:
    """The paths where a value is null or an empty string, list or map (rule 6): none in anything emitted."""
    if value is None or value in ("", [], {}):
        return [path]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in empties(item, f"{path}.{key}")]
    if isinstance(value, list):
        return [p for n, item in enumerate(value) for p in empties(item, f"{path}[{n}]")]
    return []
