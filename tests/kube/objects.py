"""PackerBuilders on the test cluster: the CRD installed once, paths, bodies, and the hook's saved stages.

`install_crd(kube)` applies metacontroller/packerbuilder-crd.yaml with `kubectl apply --server-side` and
returns the CRD once the API server reports it `Established` and `NamesAccepted`; applying it again
changes nothing, so every test module may call it (through a fixture) without caring who was first.

`stages()` is the life of the seed's builder that examples/*.json records: each saved hook request with the
answer the real service gives to it, produced in process by scripts/gen_examples.py (the same run that
wrote the files), so tests can write the statuses the hook really writes.
"""

import copy
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from scripts import gen_examples
from tests.deploy.manifests import CRD_FILE, load_yaml
from tests.kube.cluster import ControlPlane, JsonObject

GROUP = "ami.refresh.ops"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "PackerBuilder"
PLURAL = "packerbuilders"
CRD_NAME = f"{PLURAL}.{GROUP}"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
# The API server establishes a new CRD within a second or two on an idle machine.
CRD_ESTABLISHED_SECONDS = 60.0

# Metadata of a stored object that the API server owns (or that only a controller should set): a request's
# parent keeps only its name, labels and annotations when a test creates it again. Metacontroller's
# finalizer is dropped too: no controller runs to remove it, and it would keep the namespace from going.
SERVER_OWNED_METADATA = frozenset(
    {
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "generation",
        "managedFields",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "finalizers",
        "namespace",
    }
)


def builders(namespace: str) -> str:
    """The API path of the PackerBuilders of a namespace."""
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"


def builder(namespace: str, name: str, subresource: str = "") -> str:
    """The API path of one PackerBuilder, or of its subresource (`status`)."""
    path = f"{builders(namespace)}/{name}"
    return f"{path}/{subresource}" if subresource else path


def packer_builder(name: str, spec: JsonObject) -> JsonObject:
    """A PackerBuilder body as a user writes it."""
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": copy.deepcopy(spec)}


def as_created(stored: JsonObject) -> JsonObject:
    """A stored PackerBuilder (a hook request's parent) as a user would create it: without the metadata the
    server owns, and without status (the main resource ignores it: the status subresource sets it)."""
    metadata = {k: v for k, v in stored["metadata"].items() if k not in SERVER_OWNED_METADATA}
    return {
        "apiVersion": stored["apiVersion"],
        "kind": stored["kind"],
        "metadata": copy.deepcopy(metadata),
        "spec": copy.deepcopy(stored["spec"]),
    }


def condition(obj: JsonObject, kind: str) -> str | None:
    """The status ("True", "False", "Unknown") of a condition of `obj.status`, None when it is absent."""
    for found in (obj.get("status") or {}).get("conditions") or []:
        if found.get("type") == kind:
            return str(found.get("status"))
    return None


def established(crd: JsonObject) -> bool:
    """The CRD's names are accepted and the API server serves its resource."""
    return condition(crd, "Established") == "True" and condition(crd, "NamesAccepted") == "True"


def install_crd(kube: ControlPlane) -> JsonObject:
    """Apply the committed CRD (`kubectl apply --server-side`: idempotent, and no 20 kB last-applied
    annotation) and return it once it is established."""
    kube.kubectl("apply", "--server-side", "-f", str(CRD_FILE))
    return kube.api.wait_for(
        CRDS,
        established,
        params={"fieldSelector": f"metadata.name={CRD_NAME}"},
        timeout=CRD_ESTABLISHED_SECONDS,
        what=f"CRD {CRD_NAME} Established and NamesAccepted",
    )


def crd_version() -> JsonObject:
    """The committed CRD's one version (v1alpha1): schema, printer columns, subresources."""
    (version,) = load_yaml(CRD_FILE)["spec"]["versions"]
    assert version["name"] == VERSION
    return dict(version)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as the API server applies `application/merge-patch+json`: objects merge
    key by key, `None` deletes a key, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- the saved stages of a builder's life (examples/*.json) ----------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One saved hook request (examples/<name>.json) and the service's answer to it."""

    name: str
    hook: str  # /sync or /finalize
    request: JsonObject
    answer: JsonObject


Post = Callable[[str, JsonObject, datetime], JsonObject]


@functools.cache
def _stages() -> tuple[Stage, ...]:
    answers: list[tuple[str, JsonObject]] = []
    make_hook = gen_examples._hook  # the generator's own in-process service

    def recording_hook(ec2: gen_examples.Catalogue) -> tuple[Any, Post]:
        client, post = make_hook(ec2)

        def record(path: str, body: JsonObject, now: datetime) -> JsonObject:
            answer = post(path, body, now)
            answers.append((path, answer))
            return answer

        return client, record

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gen_examples, "_hook", recording_hook)
        requests = gen_examples.requests()
    assert list(requests) == list(gen_examples.STAGES)
    assert len(answers) == len(requests), "the generator posts each saved request once"
    return tuple(
        Stage(name, hook, request, answer)
        for (name, request), (hook, answer) in zip(requests.items(), answers, strict=True)
    )


def stages() -> tuple[Stage, ...]:
    """Every saved stage in the order of the builder's life (deep copies: change them freely)."""
    return copy.deepcopy(_stages())


# A Job's Pod comes within seconds on an idle machine; generous for a busy two-core one.
JOB_POD_SECONDS = 90.0


def _events(kube: ControlPlane, namespace: str, name: str) -> list[str]:
    listed = kube.api.get(
        f"/api/v1/namespaces/{namespace}/events", params={"fieldSelector": f"involvedObject.name={name}"}
    )
    return [f"{e.get('reason')}: {e.get('message')}" for e in listed.get("items") or []]


def pod_of(kube: ControlPlane, namespace: str, job: JsonObject) -> JsonObject:
    """The Pod the Job controller made for the Job; on a timeout, fail with the Job's events."""
    name, uid = job["metadata"]["name"], job["metadata"]["uid"]
    try:
        return kube.api.wait_for(
            f"/api/v1/namespaces/{namespace}/pods",
            lambda pod: True,
            params={"labelSelector": f"batch.kubernetes.io/job-name={name},controller-uid={uid}"},
            timeout=JOB_POD_SECONDS,
            what=f"the Pod of Job {name}",
        )
    except TimeoutError as error:
        pytest.fail(f"{error}\nevents of Job {name}: {_events(kube, namespace, name)}", pytrace=False)


# The garbage collector and finalizers act within seconds on an idle machine; generous for a busy one.
GONE_SECONDS = 120.0


def until_gone(kube: ControlPlane, collection: str, name: str, what: str) -> None:
    """Returns once the object `name` of `collection` is gone: listed, then watched for its deletion."""
    deadline = time.monotonic() + GONE_SECONDS
    params = {"fieldSelector": f"metadata.name={name}"}
    while (remaining := deadline - time.monotonic()) > 0:
        listed = kube.api.get(collection, params=params)
        if not listed.get("items"):
            return
        with kube.api.watch(
            collection, listed["metadata"]["resourceVersion"], timeout=remaining, params=params
        ) as events:
            for event in events:
                if event["type"] == "DELETED":
                    return
                if event["type"] == "ERROR":  # too old to watch from: list again
                    break
    raise TimeoutError(f"{what}: still there after {GONE_SECONDS:.0f} s")


def until_empty(kube: ControlPlane, collection: str, what: str) -> None:
    """Polled until the collection is empty (the garbage collector works in the background)."""
    deadline = time.monotonic() + GONE_SECONDS
    while items := kube.api.get(collection).get("items"):
        names = [item["metadata"]["name"] for item in items]
        assert time.monotonic() < deadline, f"{what}: still there after {GONE_SECONDS:.0f} s: {names}"
        time.sleep(0.2)
