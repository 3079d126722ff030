"""Smoke test of the control plane the kube tests run against: the API server stores and serves objects,
kubectl reaches it through the kubeconfig, and the controller-manager's Job controller makes a Job's Pod;
a process that dies at startup fails the start at once, with the logs, and nothing is left running."""

import json
import time
from pathlib import Path

import pytest

from tests.kube.cluster import KUBE_VERSION, STARTUP_SECONDS, ControlPlane, ControlPlaneError, KubeApiError

JOB_POD_SECONDS = 60.0


def test_server_version_is_the_pinned_one(kube: ControlPlane) -> None:
    assert kube.api.get("/version")["gitVersion"] == KUBE_VERSION
    versions = json.loads(kube.kubectl("version", "--output=json").stdout)
    assert versions["clientVersion"]["gitVersion"] == KUBE_VERSION
    assert versions["serverVersion"]["gitVersion"] == KUBE_VERSION


def test_a_config_map_is_stored_and_read_back(kube: ControlPlane, namespace: str) -> None:
    config_maps = f"/api/v1/namespaces/{namespace}/configmaps"
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings"},
        "data": {"region": "us-west-2"},
    }
    created = kube.api.post(config_maps, body)
    assert created["metadata"]["uid"]

    assert kube.api.get(f"{config_maps}/settings")["data"] == {"region": "us-west-2"}
    read_by_kubectl = json.loads(
        kube.kubectl("get", "configmap", "settings", "-n", namespace, "-o", "json").stdout
    )
    assert read_by_kubectl["metadata"]["uid"] == created["metadata"]["uid"]

    patched = kube.api.patch(f"{config_maps}/settings", {"data": {"tier": "gold"}})
    assert patched["data"] == {"region": "us-west-2", "tier": "gold"}

    with pytest.raises(KubeApiError) as conflict:
        kube.api.post(config_maps, body)
    assert (conflict.value.code, conflict.value.reason) == (409, "AlreadyExists")
    assert 'configmaps "settings" already exists' in conflict.value.message

    kube.api.delete(f"{config_maps}/settings")
    with pytest.raises(KubeApiError) as gone:
        kube.api.get(f"{config_maps}/settings")
    assert (gone.value.code, gone.value.reason) == (404, "NotFound")


def test_the_job_controller_creates_a_job_pod(kube: ControlPlane, namespace: str) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "smoke"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
                }
            },
        },
    }
    created = kube.api.post(f"/apis/batch/v1/namespaces/{namespace}/jobs", job)

    # No scheduler and no kubelet: the Pod exists (the Job controller made it) and stays Pending.
    pod = kube.api.wait_for(
        f"/api/v1/namespaces/{namespace}/pods",
        lambda pod: True,
        params={"labelSelector": "batch.kubernetes.io/job-name=smoke"},
        timeout=JOB_POD_SECONDS,
        what="the Pod of Job smoke",
    )
    [owner] = pod["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Job", "smoke", created["metadata"]["uid"])
    assert pod["status"]["phase"] == "Pending"
    assert pod["spec"]["serviceAccountName"] == "default"


def test_a_process_that_dies_at_startup_fails_fast_with_its_log(kube_bin_dir: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("etcd", "kube-controller-manager", "kubectl"):
        (bin_dir / name).symlink_to(kube_bin_dir / name)
    broken = bin_dir / "kube-apiserver"
    broken.write_text("#!/bin/sh\necho 'E0000 cannot start: no such flag'\nexit 3\n", encoding="utf-8")
    broken.chmod(0o755)
    plane = ControlPlane(tmp_path / "plane", bin_dir)

    started = time.monotonic()
    with pytest.raises(ControlPlaneError) as failed:
        plane.start()

    assert time.monotonic() - started < STARTUP_SECONDS / 2  # not the deadline: the exit is noticed
    message = str(failed.value)
    assert message.startswith("waiting for kube-apiserver to be ready (/readyz): kube-apiserver exited")
    assert "---- kube-apiserver (exit code 3)" in message
    assert "cannot start: no such flag" in message
    assert "---- etcd (exit code " in message  # every log is shown
    assert plane.running() == []  # etcd was stopped
