"""Every Job the hook emits is accepted by a real API server (v1.31) and run by its Job controller.

One row per stage of a builder's life, each Job taken exactly as the hook's pure core answers it (the
`sync` of tests/unit/core/test_decide.py: decide() and the response the service writes):

- `seed`: a new builder, the seed's spec (git-sync credentials and static AWS keys from Secrets);
- `retry`: the second attempt after a failed build, once the backoff has passed;
- `spec-change`: a new generation whose spec no longer matches the current AMI (another branch): a build
  that replaces that AMI;
- `private`: metacontroller/examples/packerbuilder-private.yaml (git-sync over HTTPS with the `git-sync`
  Secret, IRSA service account, variables and variable files), with the CRD's defaults as the server
  stores them;
- `private-ssh`: the same repository over ssh (the key and known_hosts projected from the Secret);
- `irsa`: the seed with the static keys replaced by `spec.builder.serviceAccountName`
  (metacontroller/examples/serviceaccount-irsa.yaml);
- `restated-running`: the seed's Job as the hook restates it while it runs (app/core/children.py `as_desired`
  of the Job the server stored, defaults included), created again after someone deleted it.

Each Job is created in a fresh namespace that enforces the `restricted` Pod Security Standard, with strict
field validation (an unknown field is an error, not a silent drop), after the Secrets and ServiceAccount it
refers to (from metacontroller/examples/). The server must answer 201 without warnings, store everything
the hook asked for (the hook's Job is a subset of the stored one: the server only adds defaults), and the
controller-manager's Job controller must create its Pod with the template's containers, env (names and
secretKeyRefs), volumes, service account and security contexts.

Then the Job as the hook restates it while it runs (app/core/children.py `as_desired`, fed the Job the server
stored) is applied back the ways Metacontroller or a person would: a PUT of the restatement merged onto
the stored Job (Metacontroller's update; the child's OnDelete strategy means it does not send one today),
a strategic-merge patch, `kubectl apply --dry-run=server` and a server-side apply (dry run). Each is
accepted and changes nothing (same generation, template and selector): a restatement that touched an
immutable field (the template, the selector) would be refused, as the last test shows by changing one.
"""

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from app.core.build import LABEL_ATTEMPT, LABEL_GENERATION
from app.core.children import as_desired
from app.core.facts import AmiFacts
from app.core.job import ANNOTATION_BUILDER
from app.model.tags import parse_timestamp
from tests.builders import T0, parent, request, succeeded
from tests.deploy.manifests import EXAMPLES, apply_defaults, crd_schema, load_yaml
from tests.kube.cluster import ControlPlane, JsonObject, KubeApiError
from tests.kube.objects import JOB_POD_SECONDS, pod_of
from tests.seed import SEED_SPEC
from tests.unit.core.test_decide import BASE, FACTS, built_image, fail_once, first_build, succeeded_sync, sync

# Generous for a busy two-core machine: the Job controller makes the Pod within a second on an idle one.
CONFLICT_RETRIES = 5
PSS_LEVEL = "restricted"


@dataclass(frozen=True)
class Stage:
    """A Job the hook asked for, with what it needs to make sense and to be synced again."""

    job: JsonObject
    parent: JsonObject  # the parent as the next sync sees it: the spec and the status of the answer
    facts: AmiFacts
    objects: tuple[JsonObject, ...]  # Secrets and ServiceAccounts the Job refers to, created first


def _examples(*names: str) -> tuple[JsonObject, ...]:
    return tuple(load_yaml(EXAMPLES / name) for name in names)


def _only_new(answer: JsonObject, *old: JsonObject) -> JsonObject:
    known = {job["metadata"]["name"] for job in old}
    (new,) = [child for child in answer["children"] if child["metadata"]["name"] not in known]
    return dict(new)


def seed_stage() -> Stage:
    body, job = first_build()
    return Stage(
        job,
        parent(status=body["status"]),
        FACTS,
        _examples("secret-git-sync.yaml", "secret-aws-creds.yaml"),
    )


def retry_stage() -> Stage:
    body, job = first_build()
    failed_at = T0 + timedelta(minutes=5)
    recorded = fail_once(body["status"], job, failed_at + timedelta(seconds=1))
    retried = fail_once(recorded["status"], job, failed_at + timedelta(seconds=61))
    new = _only_new(retried, job)
    assert new["metadata"]["labels"][LABEL_ATTEMPT] == "1"
    return Stage(
        new,
        parent(status=retried["status"]),
        FACTS,
        _examples("secret-git-sync.yaml", "secret-aws-creds.yaml"),
    )


def spec_change_stage() -> Stage:
    body, job = first_build()
    recorded, _ = succeeded_sync(body["status"], job, built_image(job))
    spec = copy.deepcopy(SEED_SPEC)
    spec["builder"]["branch"] = "release/2027"  # another branch: the current AMI is not this spec's
    changed = parent(spec, status=recorded["status"], generation=2)
    answer, _ = sync(
        request(changed, [succeeded(job)]), AmiFacts(base_image=BASE), now=T0 + timedelta(hours=1)
    )
    new = _only_new(answer, job)
    assert new["metadata"]["labels"][LABEL_GENERATION] == "2"
    return Stage(
        new,
        parent(spec, status=answer["status"], generation=2),
        AmiFacts(base_image=BASE),
        _examples("secret-git-sync.yaml", "secret-aws-creds.yaml"),
    )


def _private_spec() -> JsonObject:
    manifest = load_yaml(EXAMPLES / "packerbuilder-private.yaml")
    spec: JsonObject = apply_defaults(crd_schema()["properties"]["spec"], manifest["spec"])
    return spec


def _first_build_of(spec: JsonObject, name: str, objects: tuple[JsonObject, ...]) -> Stage:
    body, _ = sync(request(parent(spec, name=name)))
    (job,) = body["children"]
    return Stage(job, parent(spec, status=body["status"], name=name), FACTS, objects)


def private_stage() -> Stage:
    return _first_build_of(
        _private_spec(),
        "eks-al2023-private",
        _examples("secret-git-sync.yaml", "serviceaccount-irsa.yaml"),
    )


def private_ssh_stage() -> Stage:
    spec = _private_spec()
    spec["builder"]["repoURL"] = "ssh://git@git.example.com/platform/packer-templates.git"
    ssh_secret: JsonObject = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "git-sync"},
        "type": "Opaque",
        "stringData": {
            "ssh": "REPLACE_WITH_A_READ_ONLY_DEPLOY_KEY",
            "known_hosts": "git.example.com ssh-ed25519 REPLACE_WITH_THE_HOST_KEY",
        },
    }
    return _first_build_of(spec, "eks-al2023-ssh", (ssh_secret, *_examples("serviceaccount-irsa.yaml")))


def irsa_stage() -> Stage:
    spec = copy.deepcopy(SEED_SPEC)
    del spec["builder"]["secret"]
    spec["builder"]["serviceAccountName"] = "packer-build"
    return _first_build_of(
        spec, "packer-builder-irsa", _examples("secret-git-sync.yaml", "serviceaccount-irsa.yaml")
    )


STAGES: dict[str, Callable[[], Stage]] = {
    "seed": seed_stage,
    "retry": retry_stage,
    "spec-change": spec_change_stage,
    "private": private_stage,
    "private-ssh": private_ssh_stage,
    "irsa": irsa_stage,
}

_COLLECTIONS = {("v1", "Secret"): "secrets", ("v1", "ServiceAccount"): "serviceaccounts"}


# -- helpers --------------------------------------------------------------------------------------------------


def _jobs(namespace: str) -> str:
    return f"/apis/batch/v1/namespaces/{namespace}/jobs"


def differences(asked: Any, stored: Any, path: str = "") -> list[str]:
    """Where `stored` lacks or changed something of `asked` (maps: every key of asked; lists: same length,
    item by item); what the server added is fine."""
    if isinstance(asked, dict) and isinstance(stored, dict):
        found: list[str] = []
        for key, value in asked.items():
            if key not in stored:
                found.append(f"{path}.{key}: missing")
            else:
                found += differences(value, stored[key], f"{path}.{key}")
        return found
    if isinstance(asked, list) and isinstance(stored, list):
        if len(asked) != len(stored):
            return [f"{path}: {len(asked)} items asked, {len(stored)} stored"]
        return [
            item
            for i, (a, s) in enumerate(zip(asked, stored, strict=True))
            for item in differences(a, s, f"{path}[{i}]")
        ]
    if asked != stored:
        return [f"{path}: asked {json.dumps(asked)[:200]}, stored {json.dumps(stored)[:200]}"]
    return []


def restricted_namespace(kube: ControlPlane, namespace: str) -> None:
    """Enforce (and warn about) the `restricted` Pod Security Standard in the namespace."""
    labels = {f"pod-security.kubernetes.io/{mode}": PSS_LEVEL for mode in ("enforce", "warn", "audit")} | {
        "pod-security.kubernetes.io/enforce-version": "latest"
    }
    kube.api.patch(f"/api/v1/namespaces/{namespace}", {"metadata": {"labels": labels}})


def create_strictly(kube: ControlPlane, collection: str, body: JsonObject) -> JsonObject:
    """POST with strict field validation; fail with the server's answer on an error or any warning."""
    response = kube.api.request("POST", collection, params={"fieldValidation": "Strict"}, body=body)
    name = body["metadata"]["name"]
    assert response.status_code == 201, f"{collection}/{name}: {response.status_code} {response.text}"
    warnings = response.headers.get_list("warning")
    assert warnings == [], f"{collection}/{name}: the server warned: {warnings}"
    created: JsonObject = response.json()
    return created


def in_namespace(manifest: JsonObject, namespace: str) -> JsonObject:
    placed = copy.deepcopy(manifest)
    placed["metadata"]["namespace"] = namespace
    return placed


def create_job(kube: ControlPlane, namespace: str, stage: Stage) -> JsonObject:
    """The stage's Secrets/ServiceAccounts, then its Job, in the (restricted) namespace; the stored Job."""
    restricted_namespace(kube, namespace)
    for obj in stage.objects:
        collection = _COLLECTIONS[(obj["apiVersion"], obj["kind"])]
        create_strictly(kube, f"/api/v1/namespaces/{namespace}/{collection}", in_namespace(obj, namespace))
    return create_strictly(kube, _jobs(namespace), in_namespace(stage.job, namespace))


def running_job(kube: ControlPlane, namespace: str, name: str) -> JsonObject:
    """The stored Job, read whole (a list's items lack apiVersion and kind), once its controller counts
    its Pod as active: what Metacontroller sends the hook about a running build."""
    kube.api.wait_for(
        _jobs(namespace),
        lambda job: int((job.get("status") or {}).get("active") or 0) >= 1,
        params={"fieldSelector": f"metadata.name={name}"},
        timeout=JOB_POD_SECONDS,
        what=f"Job {name} with an active Pod",
    )
    return kube.api.get(f"{_jobs(namespace)}/{name}")


def _env_shape(container: JsonObject) -> list[tuple[str, Any]]:
    """Each env var's name and, for a Secret's key, its secretKeyRef: never a value."""
    return [
        (var["name"], (var.get("valueFrom") or {}).get("secretKeyRef")) for var in container.get("env") or []
    ]


def restated_by_the_hook(stage: Stage, stored: JsonObject) -> JsonObject:
    """The hook's answer for this stored, running Job: the child of the same name."""
    started = parse_timestamp(stored["status"]["startTime"])
    answer, _ = sync(request(stage.parent, [stored]), stage.facts, now=started + timedelta(minutes=1))
    name = stored["metadata"]["name"]
    kept = [child for child in answer["children"] if child["metadata"]["name"] == name]
    assert kept, (
        f"the hook dropped the running Job {name}: {[c['metadata']['name'] for c in answer['children']]}"
    )
    return dict(kept[0])


def merged(stored: Any, desired: Any) -> Any:
    """`desired` laid over `stored`, as Metacontroller's apply does before its update: maps merged key by
    key, anything else (lists too: stricter than a merge by name) taken from `desired`."""
    if isinstance(stored, dict) and isinstance(desired, dict):
        return {**stored, **{key: merged(stored.get(key), value) for key, value in desired.items()}}
    return copy.deepcopy(desired)


def put_merged(kube: ControlPlane, namespace: str, restated: JsonObject) -> JsonObject:
    """PUT the restatement merged onto the stored Job; on a 409 (the Job controller wrote its status in the
    meantime) read the Job again and retry."""
    path = f"{_jobs(namespace)}/{restated['metadata']['name']}"
    for _ in range(CONFLICT_RETRIES):
        stored = kube.api.get(path)
        try:
            return kube.api.put(path, merged(stored, restated), params={"fieldValidation": "Strict"})
        except KubeApiError as error:
            if error.code != 409:
                raise
    pytest.fail(f"PUT {path}: still conflicting after {CONFLICT_RETRIES} tries")


def restated_running_stage(kube: ControlPlane, namespace: str) -> Stage:
    """The seed's Job as the hook restates it while it runs, after someone deleted it: Metacontroller
    creates it again from the restatement, server defaults and all. The Secrets are already there."""
    seed = seed_stage()
    created = create_job(kube, namespace, seed)
    name = created["metadata"]["name"]
    restated = restated_by_the_hook(seed, running_job(kube, namespace, name))
    # Background: the Job is gone at once, its Pod is collected later (and belongs to the old uid).
    kube.api.delete(f"{_jobs(namespace)}/{name}", propagation_policy="Background")
    return Stage(restated, seed.parent, seed.facts, ())


# -- the tests ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage_name", [*sorted(STAGES), "restated-running"])
def test_the_hooks_job_is_stored_as_asked_and_gets_its_pod(
    kube: ControlPlane, namespace: str, stage_name: str
) -> None:
    if stage_name == "restated-running":
        stage = restated_running_stage(kube, namespace)
    else:
        stage = STAGES[stage_name]()
    asked = in_namespace(stage.job, namespace)
    stored = create_job(kube, namespace, stage)

    assert differences(asked, stored) == []
    # Only what the API generates was added to the labels: the selector the server made is its own.
    assert stored["spec"]["selector"] == {
        "matchLabels": {"batch.kubernetes.io/controller-uid": stored["metadata"]["uid"]}
    }
    assert stored["metadata"]["annotations"][ANNOTATION_BUILDER] == stage.parent["metadata"]["name"]

    pod = pod_of(kube, namespace, stored)
    [owner] = pod["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"]) == ("Job", stored["metadata"]["uid"])
    template = stored["spec"]["template"]["spec"]
    asked_pod = asked["spec"]["template"]["spec"]
    spec = pod["spec"]
    for kind in ("initContainers", "containers"):
        assert [c["name"] for c in spec[kind]] == [c["name"] for c in asked_pod[kind]], kind
        for made, meant, wanted in zip(spec[kind], template[kind], asked_pod[kind], strict=True):
            what = f"{kind} {made['name']}"
            assert made["image"] == meant["image"] == wanted["image"], what
            assert made.get("command") == meant.get("command") == wanted.get("command"), what
            assert _env_shape(made) == _env_shape(meant) == _env_shape(wanted), what
            assert made.get("envFrom") == meant.get("envFrom") == wanted.get("envFrom"), what
            assert made["volumeMounts"] == meant["volumeMounts"], what
            assert differences(wanted["volumeMounts"], made["volumeMounts"]) == [], what
            assert made["securityContext"] == meant["securityContext"] == wanted["securityContext"], what
            assert made["resources"] == meant["resources"], what
    # No token volume is added: the template turns automounting off.
    assert spec["volumes"] == template["volumes"]
    assert differences(asked_pod["volumes"], spec["volumes"]) == []
    assert spec["serviceAccountName"] == asked_pod.get("serviceAccountName", "default")
    assert spec["securityContext"] == template["securityContext"] == asked_pod["securityContext"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["restartPolicy"] == "Never"


@pytest.mark.parametrize("stage_name", sorted(STAGES))
def test_the_restated_running_job_applies_back_unchanged(
    kube: ControlPlane, namespace: str, stage_name: str
) -> None:
    stage = STAGES[stage_name]()
    created = create_job(kube, namespace, stage)
    name = created["metadata"]["name"]
    stored = running_job(kube, namespace, name)
    restated = restated_by_the_hook(stage, stored)

    # What the hook restates is what it asked for, plus the server's defaults, minus what the API owns.
    assert restated == as_desired(stored)
    assert differences(in_namespace(stage.job, namespace), restated) == []
    assert differences(restated, stored) == []
    assert "selector" not in restated["spec"]
    assert set(restated) == {"apiVersion", "kind", "metadata", "spec"}

    def unchanged(answer: JsonObject, how: str) -> None:
        assert answer["metadata"]["generation"] == stored["metadata"]["generation"], how
        assert answer["spec"]["template"] == stored["spec"]["template"], how
        assert answer["spec"]["selector"] == stored["spec"]["selector"], how

    dry_run = kube.kubectl(
        "apply",
        "--dry-run=server",
        "--namespace",
        namespace,
        "--output=json",
        "-f",
        "-",
        input=json.dumps(restated),
    )
    unchanged(json.loads(dry_run.stdout), "kubectl apply --dry-run=server")

    unchanged(put_merged(kube, namespace, restated), "PUT of the restatement merged onto the stored Job")

    path = f"{_jobs(namespace)}/{name}"
    patched = kube.api.patch(path, restated, patch_type="strategic")
    unchanged(patched, "strategic-merge patch")

    applied = kube.api.patch(
        path,
        restated,
        patch_type="apply",
        params={"fieldManager": "metacontroller", "force": "true", "dryRun": "All"},
    )
    unchanged(applied, "server-side apply (dry run)")


def test_a_restatement_that_changed_the_template_would_be_refused(kube: ControlPlane, namespace: str) -> None:
    """The control for the test above: the same paths do refuse a change to the running Job's template."""
    stage = seed_stage()
    created = create_job(kube, namespace, stage)
    stored = running_job(kube, namespace, created["metadata"]["name"])
    changed = restated_by_the_hook(stage, stored)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "hashicorp/packer:1.12.0"

    with pytest.raises(KubeApiError) as refused:
        put_merged(kube, namespace, changed)
    assert (refused.value.code, refused.value.reason) == (422, "Invalid")
    assert "spec.template: Invalid value" in refused.value.message
    assert "field is immutable" in refused.value.message

    with pytest.raises(KubeApiError) as patch_refused:
        kube.api.patch(f"{_jobs(namespace)}/{created['metadata']['name']}", changed, patch_type="strategic")
    assert patch_refused.value.code == 422
    assert "field is immutable" in patch_refused.value.message
