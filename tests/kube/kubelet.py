"""What the test does in place of a kubelet (there is none): end a build or validation Pod's containers, as the
kubelet would report them, and wait for the Job controller to finish the Job from that Pod."""

from datetime import UTC, datetime
from typing import Any

from app.core.build import PACKER_CONTAINER
from tests.kube.cluster import ControlPlane, JsonObject
from tests.kube.objects import condition

# The Job controller finishes a Job within a second or two of its Pod ending on an idle machine.
JOB_FINISHED_SECONDS = 120.0


def finish_as_kubelet(
    kube: ControlPlane, pod: JsonObject, exit_code: int, message: str, container: str = PACKER_CONTAINER
) -> None:
    """What the kubelet writes when the Pod's containers have run: each one terminated, with `exit_code`, and
    `container` (a build's Packer container, a validation's `validate`) with the termination message."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    spec = pod["spec"]

    def terminated(container: JsonObject, code: int, text: str = "") -> JsonObject:
        state: dict[str, Any] = {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}
        state |= {"startedAt": now, "finishedAt": now} | ({"message": text} if text else {})
        return {
            "name": container["name"],
            "image": container["image"],
            "imageID": "",
            "ready": False,
            "restartCount": 0,
            "state": {"terminated": state},
        }

    status = {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "startTime": now,
        "initContainerStatuses": [terminated(c, 0) for c in spec.get("initContainers") or []],
        "containerStatuses": [
            terminated(c, exit_code, message if c["name"] == container else "") for c in spec["containers"]
        ],
    }
    path = f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods/{pod['metadata']['name']}/status"
    kube.api.put(path, {**pod, "status": status})


def job_finished(kube: ControlPlane, namespace: str, job: JsonObject, kind: str = "Complete") -> JsonObject:
    """The Job once the Job controller has counted its Pod and set its `kind` condition (Complete, Failed)."""
    return kube.api.wait_for(
        f"/apis/batch/v1/namespaces/{namespace}/jobs",
        lambda found: condition(found, kind) == "True",
        params={"fieldSelector": f"metadata.name={job['metadata']['name']}"},
        timeout=JOB_FINISHED_SECONDS,
        what=f"Job {job['metadata']['name']} {kind}",
    )
