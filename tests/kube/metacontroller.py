"""A test driver that plays Metacontroller's CompositeController for one parent, against a real API server.

The real Metacontroller (v4.17.2, tests/kube/real_metacontroller.py) runs in the same session, and
tests/kube/test_metacontroller_on_server.py covers under it what this stand-in only reads from its source:
the finalizer, claiming and creating children (`controller-uid`, owner references), customize and related
Pods, sync and finalize, v1 and v2 hook requests, status with `observedGeneration`, honouring
`resyncAfterSeconds`, retrying after a failed hook call, the hook restarted mid-build, deletion mid-build
and `--cascade=foreground`, retention and publish. This stand-in is kept for one thing the real controller
cannot show without waiting for nothing to happen: a single synchronous pass, and whether it changed anything
(tests/kube/test_lifecycle_on_server.py: a settled builder's next pass writes nothing).

It follows what Metacontroller v4 does in `pkg/controller/composite` (and DESIGN.md section 3), no more:

1. add the finalizer `metacontroller.io/compositecontroller-<name>` (the controller has a finalize hook);
2. claim the children: the Jobs in the parent's namespace that carry `controller-uid=<parent uid>` (the
   generated selector) and whose controller reference is the parent;
3. call `/customize` and list what it asks for (Pods by label selector, Secrets by name, in the namespace);
4. call `/sync`, or `/finalize` with `finalizing: true` once the parent has a deletion timestamp;
5. children: add the `controller-uid` label to each desired one; create the missing ones with the parent as
   controller owner; delete observed ones not desired (background propagation, the uid as precondition);
   leave existing ones alone (`updateStrategy: OnDelete`);
6. `finalized: true` removes the finalizer;
7. write the answer's status, with `observedGeneration` set to the parent's generation, through the status
   subresource when it differs from the stored one (a conflict is ignored: the next pass syncs again).

Each `reconcile()` is one such pass over HTTP, with no cache: what a pass observes is what the API server
has at that moment (Metacontroller's informers may lag; the hook's own tests cover that). `run_until`
passes again on every watch event of the parent, its Jobs or their Pods, and on the answer's
`resyncAfterSeconds`, until a condition holds: a level-triggered loop like Metacontroller's, bounded by a
deadline.
"""

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.model.hooks import JOB_GROUP
from tests.deploy.manifests import load_yaml
from tests.kube.cluster import ControlPlane, JsonObject, KubeApiError
from tests.kube.objects import builder, builders

CONTROLLER_UID = "controller-uid"
ROOT = Path(__file__).resolve().parents[2]
COMPOSITE_CONTROLLER = ROOT / "metacontroller" / "compositecontroller.yaml"
# Metacontroller's hook timeout (the CompositeController's `timeout: 10s`).
HOOK_TIMEOUT = 10.0
# A resync the hook asks for is honoured only this long at most: the tests wait on events, not timers.
MAX_WAIT_PER_PASS = 5.0


@dataclass
class Pass:
    """What one reconcile pass did."""

    hook: str
    answer: JsonObject
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    status_written: bool = False
    finalizer_removed: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.created or self.deleted or self.status_written or self.finalizer_removed)


class Metacontroller:
    """One CompositeController (metacontroller/compositecontroller.yaml, hooks at `hook_url`) for one parent."""

    def __init__(self, kube: ControlPlane, hook_url: str, namespace: str, name: str) -> None:
        self.kube = kube
        self.hook = httpx.Client(base_url=hook_url, timeout=HOOK_TIMEOUT, trust_env=False)
        self.namespace = namespace
        self.name = name
        self.controller = load_yaml(COMPOSITE_CONTROLLER)
        self.finalizer = f"metacontroller.io/compositecontroller-{self.controller['metadata']['name']}"
        self.parent_path = builder(namespace, name)
        self.jobs_path = f"/apis/batch/v1/namespaces/{namespace}/jobs"
        self.passes: list[Pass] = []

    def close(self) -> None:
        self.hook.close()

    # -- one pass -------------------------------------------------------------------------------------------

    def reconcile(self) -> Pass | None:
        """One pass; None once the parent is gone."""
        parent = self.parent()
        if parent is None:
            return None
        parent = self._with_finalizer(parent)
        children = self._claimed_jobs(parent)
        related = self._related(parent)
        deleting = bool(parent["metadata"].get("deletionTimestamp"))
        hook = "finalize" if deleting else "sync"
        request = {
            "controller": self.controller,
            "parent": parent,
            "children": {JOB_GROUP: {job["metadata"]["name"]: job for job in children}},
            "related": related,
            "finalizing": deleting,
        }
        answer = self._call(f"/{hook}", request)
        done = Pass(hook, answer)
        if answer.get("finalized"):
            parent = self._without_finalizer(parent)
            done.finalizer_removed = True
        self._manage_children(parent, children, answer.get("children") or [], done)
        done.status_written = self._write_status(parent, answer.get("status") or {})
        self.passes.append(done)
        return done

    def parent(self) -> JsonObject | None:
        """The parent as the API server has it now; None once it is gone."""
        try:
            return self.kube.api.get(self.parent_path)
        except KubeApiError as error:
            if error.code == 404:
                return None
            raise

    def _with_finalizer(self, parent: JsonObject) -> JsonObject:
        finalizers = parent["metadata"].get("finalizers") or []
        if self.finalizer in finalizers or parent["metadata"].get("deletionTimestamp"):
            return parent
        return self.kube.api.patch(
            self.parent_path,
            [
                {
                    "op": "test",
                    "path": "/metadata/resourceVersion",
                    "value": parent["metadata"]["resourceVersion"],
                },
                {"op": "add", "path": "/metadata/finalizers", "value": [*finalizers, self.finalizer]},
            ],
            patch_type="json",
        )

    def _without_finalizer(self, parent: JsonObject) -> JsonObject:
        kept = [f for f in parent["metadata"].get("finalizers") or [] if f != self.finalizer]
        return self.kube.api.patch(
            self.parent_path,
            [
                {"op": "test", "path": "/metadata/uid", "value": parent["metadata"]["uid"]},
                {"op": "replace", "path": "/metadata/finalizers", "value": kept},
            ],
            patch_type="json",
        )

    def _claimed_jobs(self, parent: JsonObject) -> list[JsonObject]:
        uid = parent["metadata"]["uid"]
        listed = self.kube.api.get(self.jobs_path, params={"labelSelector": f"{CONTROLLER_UID}={uid}"})
        return [job for job in listed.get("items") or [] if _controller_uid(job) == uid]

    def _related(self, parent: JsonObject) -> dict[str, dict[str, JsonObject]]:
        answer = self._call("/customize", {"controller": self.controller, "parent": parent})
        related: dict[str, dict[str, JsonObject]] = {}
        for rule in answer.get("relatedResources") or []:
            api_version, resource = rule["apiVersion"], rule["resource"]
            base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            path = f"{base}/namespaces/{rule.get('namespace') or self.namespace}/{resource}"
            params = {}
            if selector := rule.get("labelSelector"):
                params["labelSelector"] = ",".join(f"{k}={v}" for k, v in selector["matchLabels"].items())
            items = self.kube.api.get(path, params=params).get("items") or []
            if names := rule.get("names"):
                items = [item for item in items if item["metadata"]["name"] in names]
            kind = {"pods": "Pod", "secrets": "Secret"}[resource]
            group = related.setdefault(f"{kind}.{api_version}", {})
            for item in items:
                group[item["metadata"]["name"]] = {"apiVersion": api_version, "kind": kind, **item}
        return related

    def _call(self, path: str, body: JsonObject) -> JsonObject:
        response = self.hook.post(
            path, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 200, f"{path} answered {response.status_code}: {response.text}"
        answer: JsonObject = response.json()
        return answer

    def _manage_children(
        self, parent: JsonObject, observed: list[JsonObject], desired: list[JsonObject], done: Pass
    ) -> None:
        if parent["metadata"].get("deletionTimestamp") and done.hook != "finalize":
            return
        uid = parent["metadata"]["uid"]
        wanted = {child["metadata"]["name"]: child for child in desired}
        present = {job["metadata"]["name"]: job for job in observed}
        for name, child in sorted(wanted.items()):
            if name in present:
                continue  # OnDelete: an existing child is never updated
            labels = {CONTROLLER_UID: uid, **(child["metadata"].get("labels") or {})}
            owner = {
                "apiVersion": parent["apiVersion"],
                "kind": parent["kind"],
                "name": parent["metadata"]["name"],
                "uid": uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
            metadata = {
                **child["metadata"],
                "namespace": self.namespace,
                "labels": labels,
                "ownerReferences": [owner],
            }
            self.kube.api.post(self.jobs_path, {**child, "metadata": metadata})
            done.created.append(name)
        for name, job in sorted(present.items()):
            if name in wanted or job["metadata"].get("deletionTimestamp"):
                continue
            # As Metacontroller deletes: in the background, and only the very Job it observed.
            response = self.kube.api.request(
                "DELETE",
                f"{self.jobs_path}/{name}",
                body={"propagationPolicy": "Background", "preconditions": {"uid": job["metadata"]["uid"]}},
            )
            assert response.status_code in (200, 202, 404, 409), response.text
            done.deleted.append(name)

    def _write_status(self, parent: JsonObject, status: JsonObject) -> bool:
        status = {**status, "observedGeneration": parent["metadata"]["generation"]}
        if parent.get("status") == status:
            return False
        try:
            self.kube.api.put(f"{self.parent_path}/status", {**parent, "status": status})
        except KubeApiError as error:
            if error.code in (404, 409):  # gone, or changed meanwhile: the next pass syncs again
                return False
            raise
        return True

    # -- the loop ---------------------------------------------------------------------------------------------

    def run_until(self, done: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
        """Pass again on every change of the parent, its Jobs or Pods (and on resyncs) until `done()` is
        truthy; returns its value. Raises TimeoutError naming `what` and the last answer."""
        deadline = time.monotonic() + timeout
        with self._watching() as changed:
            while True:
                changed.clear()
                done_pass = self.reconcile()
                if value := done():
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    last = json.dumps(done_pass.answer)[:3000] if done_pass else "the parent is gone"
                    raise TimeoutError(f"{what} not reached within {timeout:.0f} s; last answer: {last}")
                resync = float((done_pass.answer.get("resyncAfterSeconds") or 0) if done_pass else 0)
                wait = min(remaining, MAX_WAIT_PER_PASS, resync or MAX_WAIT_PER_PASS)
                if done_pass is not None and done_pass.changed:
                    continue  # what it wrote is an event of its own: look again at once
                changed.wait(wait)

    @contextmanager
    def _watching(self) -> Iterator[threading.Event]:
        """An event set whenever the parent, a Job or a Pod in the namespace changes (one watch each)."""
        changed = threading.Event()
        stop = threading.Event()
        collections = [
            builders(self.namespace),
            self.jobs_path,
            f"/api/v1/namespaces/{self.namespace}/pods",
        ]
        threads = [
            threading.Thread(target=self._watch, args=(c, changed, stop), daemon=True, name=f"watch {c}")
            for c in collections
        ]
        for thread in threads:
            thread.start()
        try:
            yield changed
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)

    def _watch(self, collection: str, changed: threading.Event, stop: threading.Event) -> None:
        while not stop.is_set():
            version = self.kube.api.get(collection)["metadata"]["resourceVersion"]
            try:
                with self.kube.api.watch(collection, version, timeout=2) as events:
                    for _ in events:
                        changed.set()
                        if stop.is_set():
                            return
            except httpx.HTTPError:
                continue


def _controller_uid(obj: JsonObject) -> str | None:
    for owner in obj["metadata"].get("ownerReferences") or []:
        if owner.get("controller"):
            return str(owner["uid"])
    return None
