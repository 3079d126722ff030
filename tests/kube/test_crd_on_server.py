"""Issue 11, part 1: the PackerBuilder CRD on a real API server (kube-apiserver v1.31, kubectl v1.31).

The offline checks (tests/deploy/test_crd.py) model the server: jsonschema for the structural schema,
`apply_defaults` for defaulting, cel-python for the CEL rules. Here the server itself answers: the CRD
is established, the examples are stored with exactly the modelled defaults, every invalid spec of the
offline table is refused naming its field while the hook-only ones are accepted, every CEL rule bites both
ways, unknown fields are pruned (or refused, as kubectl asks by default), `kubectl get pb` prints the
declared columns from a real status, and the status subresource stores every status the hook writes.
"""

import copy
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml

from app.main import status_json
from app.model.release import ChannelStatus
from app.model.spec import PackerBuilderStatus
from scripts import gen_examples
from tests.deploy.manifests import CRD_FILE, EXAMPLES, apply_defaults, crd_schema, load_yaml, walk_schema
from tests.deploy.test_crd import HOOK_ONLY, INVALID
from tests.kube.cluster import ControlPlane, JsonObject, KubeApiError
from tests.kube.objects import (
    KIND,
    VERSION,
    Stage,
    as_created,
    builder,
    builders,
    crd_version,
    established,
    install_crd,
    merge_patch,
    packer_builder,
    stages,
)
from tests.seed import SEED_SPEC

# The server adds this cause when a schema error kept it from evaluating the CEL rules; it names no field.
CEL_SKIPPED = "some validation rules were not checked because the object was invalid"


@pytest.fixture(scope="module")
def crd(kube: ControlPlane) -> JsonObject:
    """The PackerBuilder CRD, applied and established (once per module; applying again changes nothing)."""
    return install_crd(kube)


def _spec_defaults(spec: JsonObject) -> JsonObject:
    """The offline model of the server's defaulting (tests/deploy/manifests.py)."""
    defaulted: JsonObject = apply_defaults(crd_schema()["properties"]["spec"], spec)
    return defaulted


def _stage(name: str) -> Stage:
    (found,) = [stage for stage in stages() if stage.name == name]
    return found


def _absent(kube: ControlPlane, path: str) -> bool:
    try:
        kube.api.get(path)
    except KubeApiError as error:
        if error.code == 404:
            return True
        raise
    return False


# --- 1. the CRD is established -------------------------------------------------------------------------


def test_crd_is_established_under_the_names_it_declares(kube: ControlPlane, crd: JsonObject) -> None:
    declared = load_yaml(CRD_FILE)["spec"]
    assert established(crd), crd.get("status")
    assert crd["status"]["acceptedNames"] == declared["names"]  # kind, plural, short name pb, category ami
    assert crd["status"]["storedVersions"] == [VERSION]
    # Applying it again (the next test module, a user) writes nothing: the same object, the same version.
    again = install_crd(kube)
    assert again["metadata"]["uid"] == crd["metadata"]["uid"]
    assert again["metadata"]["resourceVersion"] == crd["metadata"]["resourceVersion"]
    # The short name and the category resolve for kubectl.
    for resource in ("pb", "packerbuilders", "ami"):
        done = kube.kubectl("get", resource, "--all-namespaces", "-o", "name")
        assert done.stderr in ("", "No resources found\n"), (resource, done.stderr)


# --- 2. the examples are stored as sent, plus exactly the declared defaults ----------------------------


def _packerbuilder_manifests() -> dict[str, str]:
    """Every PackerBuilder example file's text, by file name, and a minimal spec."""
    texts = {
        path.name: path.read_text()
        for path in sorted(EXAMPLES.glob("*.yaml"))
        if load_yaml(path).get("kind") == KIND
    }
    minimal = packer_builder(
        "minimal",
        {"region": "us-west-2", "builder": {"repoURL": "https://example.com/r.git", "image": "p:1"}},
    )
    return {**texts, "minimal": json.dumps(minimal)}


MANIFESTS = _packerbuilder_manifests()


def test_every_packerbuilder_example_is_covered() -> None:
    assert {
        "packerbuilder.yaml",
        "packerbuilder-private.yaml",
        "packerbuilder-retention.yaml",
        "packerbuilder-ssm.yaml",
    } <= set(MANIFESTS)


@pytest.mark.parametrize("manifest", sorted(MANIFESTS))
def test_example_is_stored_with_exactly_the_declared_defaults(
    kube: ControlPlane, crd: JsonObject, namespace: str, manifest: str
) -> None:
    """`kubectl apply` of the example as the docs say; what the server stores is what the offline defaulting
    model (apply_defaults) predicts, to the byte: the saved hook requests and the docs rely on it."""
    sent = yaml.safe_load(MANIFESTS[manifest])
    name = sent["metadata"]["name"]
    done = kube.kubectl("apply", "-n", namespace, "-f", "-", input=MANIFESTS[manifest])
    assert (done.stdout, done.stderr) == (f"packerbuilder.ami.refresh.ops/{name} created\n", "")

    stored = kube.api.get(builder(namespace, name))
    assert stored["spec"] == _spec_defaults(sent["spec"])
    assert stored["spec"] != sent["spec"], "every example leaves some field to its default"
    assert "status" not in stored
    assert stored["metadata"]["generation"] == 1


def test_saved_parent_is_the_seed_as_the_server_stores_it(
    kube: ControlPlane, crd: JsonObject, namespace: str
) -> None:
    """examples/*.json carry the seed as stored: the server stores that very spec from the seed's file."""
    created = kube.api.post(builders(namespace), as_created(_stage("sync-new").request["parent"]))
    seed = load_yaml(EXAMPLES / "packerbuilder.yaml")
    assert seed["spec"] == SEED_SPEC
    kube.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "packerbuilder.yaml"))
    stored = kube.api.get(builder(namespace, seed["metadata"]["name"]))
    assert stored["spec"] == created["spec"] == _stage("sync-new").request["parent"]["spec"]


# --- 3. invalid specs: refused naming the field; the hook-only ones accepted ----------------------------


def _differences(before: Any, after: Any, path: str) -> list[str]:
    """The paths (in the API server's notation: `spec.a.b[0].c`) where two JSON values differ."""
    if isinstance(before, dict) and isinstance(after, dict):
        found: list[str] = []
        for key in sorted(set(before) | set(after)):
            if key not in before or key not in after:
                found.append(f"{path}.{key}")
            else:
                found += _differences(before[key], after[key], f"{path}.{key}")
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [
            p
            for i, (b, a) in enumerate(zip(before, after, strict=True))
            for p in _differences(b, a, f"{path}[{i}]")
        ]
    return [] if before == after else [path]


def _present(spec: Any, path: str) -> bool:
    """Whether `spec.a.b` (no list indexes) is in the spec."""
    node = {"spec": spec}
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def _within(field: str, path: str) -> bool:
    return field == path or field.startswith((f"{path}.", f"{path}["))


def _causes(error: KubeApiError) -> list[tuple[str, str]]:
    """(field, message) of each cause in the server's Status, without the 'CEL rules not checked' notice."""
    causes = (error.status.get("details") or {}).get("causes") or []
    found = [(str(cause.get("field")), str(cause.get("message"))) for cause in causes]
    return [(field, message) for field, message in found if CEL_SKIPPED not in message]


def _blamed(error: KubeApiError) -> list[str]:
    """The fields the server's Status names as causes."""
    return [field for field, _ in _causes(error)]


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_spec_is_refused_naming_the_field(
    kube: ControlPlane, crd: JsonObject, namespace: str, case: str
) -> None:
    spec = copy.deepcopy(SEED_SPEC)
    INVALID[case](spec)
    changed = _differences(SEED_SPEC, spec, "spec")
    # A case may also remove what would hide its fault (amiFilters beside a base-image parameter): the
    # field at fault is then the one it sets.
    wrong = changed if len(changed) == 1 else [path for path in changed if _present(spec, path)]
    assert len(wrong) == 1, f"{case} changes {changed}: one wrong field per case"
    (field,) = wrong

    with pytest.raises(KubeApiError) as refused:
        kube.api.post(builders(namespace), packer_builder("invalid", spec))

    assert (refused.value.code, refused.value.reason) == (422, "Invalid")
    assert field in refused.value.message
    causes = _causes(refused.value)
    assert causes, refused.value.status
    assert all(_within(blamed, field) for blamed, _ in causes), (field, refused.value.message)
    # The structural schema refuses it, not (only) a CEL rule: section 4 covers those.
    rules = [rule["message"] for _, rule in _cel_rules().values()]
    assert [blamed for blamed, message in causes if not any(rule in message for rule in rules)], (
        f"only a CEL rule refuses {case!r}: {refused.value.message}"
    )
    assert _absent(kube, builder(namespace, "invalid"))


@pytest.mark.parametrize("case", sorted(HOOK_ONLY))
def test_spec_only_the_hook_can_refuse_is_accepted_and_kept(
    kube: ControlPlane, crd: JsonObject, namespace: str, case: str
) -> None:
    """The CRD cannot express these checks: the server stores the spec as sent, for the hook to report it
    as InvalidSpec (tests/deploy/test_crd.py, HOOK_ONLY)."""
    spec = copy.deepcopy(SEED_SPEC)
    HOOK_ONLY[case](spec)
    created = kube.api.post(builders(namespace), packer_builder("hook-only", spec))
    assert created["spec"] == _spec_defaults(spec)
    assert kube.api.get(builder(namespace, "hook-only"))["spec"] == _spec_defaults(spec)


# --- 4. every CEL rule, both ways --------------------------------------------------------------------------


@dataclass(frozen=True)
class CelCases:
    """Merge patches on the seed's spec that one rule refuses, and ones it lets through."""

    refused: dict[str, JsonObject]
    accepted: dict[str, JsonObject]


BASE_IMAGE = {
    "ssmParameter": "/aws/service/eks/optimized-ami/1.30/amazon-linux-2023/x86_64/standard/recommended/image_id"
}

CHECK_IMAGE = "registry.example.com/platform/ami-smoke:1.4"
BOOT_CHECK = {"subnetID": "subnet-0123456789abcdef0"}

# Keyed by the rule's text: a new or changed rule in the CRD fails test_every_cel_rule_has_cases until its
# cases are written here.
CEL_CASES: dict[str, CelCases] = {
    "!(has(self.amiFilters) && size(self.amiFilters) > 0 && has(self.baseImage))": CelCases(
        refused={"amiFilters and baseImage": {"baseImage": BASE_IMAGE}},
        accepted={
            "amiFilters only": {},
            "baseImage only": {"amiFilters": None, "baseImage": BASE_IMAGE},
            "baseImage and empty amiFilters": {"amiFilters": [], "baseImage": BASE_IMAGE},
        },
    ),
    "has(self.image) != has(self.bootCheck)": CelCases(
        refused={
            "image and bootCheck": {"validation": {"image": CHECK_IMAGE, "bootCheck": BOOT_CHECK}},
            "neither image nor bootCheck": {"validation": {"timeout": "45m"}},
            "an empty validation": {"validation": {}},
        },
        accepted={
            "image only": {"validation": {"image": CHECK_IMAGE, "args": ["--suite", "eks"]}},
            "bootCheck only": {"validation": {"bootCheck": BOOT_CHECK, "timeout": "45m"}},
        },
    ),
}


def _cel_rules() -> dict[str, tuple[str, JsonObject]]:
    """Every CEL rule of the CRD's schema by its text: the field the server names when it fails (the
    node's path plus the rule's fieldPath) and the rule."""
    rules: dict[str, tuple[str, JsonObject]] = {}
    for path, node in walk_schema(crd_schema()):
        for rule in node.get("x-kubernetes-validations", []):
            rules[rule["rule"]] = (path.lstrip(".") + rule.get("fieldPath", ""), rule)
    return rules


def test_every_cel_rule_has_cases() -> None:
    assert set(_cel_rules()) == set(CEL_CASES)
    for rule, cases in CEL_CASES.items():
        assert cases.refused, f"no spec that {rule} refuses"
        assert cases.accepted, f"no spec that {rule} lets through"


CEL_REFUSED = [(rule, case) for rule, cases in CEL_CASES.items() for case in cases.refused]
CEL_ACCEPTED = [(rule, case) for rule, cases in CEL_CASES.items() for case in cases.accepted]


def _assert_refused_by_rule(error: KubeApiError, rule: str) -> None:
    field, declared = _cel_rules()[rule]
    assert (error.code, error.reason) == (422, "Invalid")
    assert declared["message"] in error.message
    assert _blamed(error) == [field], error.status
    assert f"{field}: Invalid value" in error.message


@pytest.mark.parametrize(("rule", "case"), CEL_REFUSED, ids=[case for _, case in CEL_REFUSED])
def test_cel_rule_refuses_on_create_and_update(
    kube: ControlPlane, crd: JsonObject, namespace: str, rule: str, case: str
) -> None:
    patch = CEL_CASES[rule].refused[case]
    with pytest.raises(KubeApiError) as created:
        kube.api.post(builders(namespace), packer_builder("cel", merge_patch(SEED_SPEC, patch)))
    _assert_refused_by_rule(created.value, rule)
    assert _absent(kube, builder(namespace, "cel"))

    # The same change to a stored builder (`kubectl apply` of an edited manifest) is refused too.
    stored = kube.api.post(builders(namespace), packer_builder("cel", SEED_SPEC))
    with pytest.raises(KubeApiError) as updated:
        kube.api.patch(builder(namespace, "cel"), {"spec": patch})
    _assert_refused_by_rule(updated.value, rule)
    assert kube.api.get(builder(namespace, "cel"))["spec"] == stored["spec"]


@pytest.mark.parametrize(("rule", "case"), CEL_ACCEPTED, ids=[case for _, case in CEL_ACCEPTED])
def test_cel_rule_accepts(kube: ControlPlane, crd: JsonObject, namespace: str, rule: str, case: str) -> None:
    spec = merge_patch(SEED_SPEC, CEL_CASES[rule].accepted[case])
    created = kube.api.post(builders(namespace), packer_builder("cel", spec))
    assert created["spec"] == _spec_defaults(spec)


# --- 5. unknown fields: pruned, warned about, or refused ------------------------------------------------


def _with_unknown_fields() -> tuple[JsonObject, set[str]]:
    """The seed with fields the CRD does not declare, at the top of spec, nested, and in a list item."""
    spec = copy.deepcopy(SEED_SPEC)
    spec["colourScheme"] = "blue"
    spec["builder"]["colour"] = "red"
    spec["builder"]["commands"][0]["colour"] = "green"
    unknown = {"spec.colourScheme", "spec.builder.colour", "spec.builder.commands[0].colour"}
    return packer_builder("unknown-fields", spec), unknown


def _warned_unknown(response: httpx.Response) -> set[str]:
    """The fields named by the answer's `Warning: 299 - "unknown field \\"...\\""` headers."""
    warnings = response.headers.get_list("warning")
    return {m for w in warnings for m in re.findall(r'unknown field \\"([^\\"]+)\\"', w)}


# fieldValidation of the request -> what the server does with unknown fields
API_FIELD_VALIDATION: dict[str, tuple[dict[str, str], str]] = {
    "unset": ({}, "warn"),  # the server's default: Warn
    "Warn": ({"fieldValidation": "Warn"}, "warn"),
    "Ignore": ({"fieldValidation": "Ignore"}, "prune silently"),
    "Strict": ({"fieldValidation": "Strict"}, "refuse"),
}


@pytest.mark.parametrize("mode", sorted(API_FIELD_VALIDATION))
def test_unknown_spec_fields_through_the_api(
    kube: ControlPlane, crd: JsonObject, namespace: str, mode: str
) -> None:
    params, outcome = API_FIELD_VALIDATION[mode]
    body, unknown = _with_unknown_fields()
    response = kube.api.request("POST", builders(namespace), params=params, body=body)
    path = builder(namespace, body["metadata"]["name"])

    if outcome == "refuse":
        assert response.status_code == 400
        status = response.json()
        assert status["reason"] == "BadRequest"
        assert "strict decoding error" in status["message"]
        for field in unknown:
            assert f'unknown field "{field}"' in status["message"]
        assert _absent(kube, path)
        return
    assert response.status_code == 201, response.text
    assert _warned_unknown(response) == (unknown if outcome == "warn" else set())
    assert kube.api.get(path)["spec"] == _spec_defaults(SEED_SPEC)


# kubectl apply flags -> what the user sees; kubectl 1.31 asks for Strict field validation by default.
KUBECTL_VALIDATE: dict[str, tuple[list[str], str]] = {
    "default": ([], "refuse"),
    "--validate=warn": (["--validate=warn"], "warn"),
    "--validate=false": (["--validate=false"], "prune silently"),
}


@pytest.mark.parametrize("mode", sorted(KUBECTL_VALIDATE))
def test_unknown_spec_fields_through_kubectl_apply(
    kube: ControlPlane, crd: JsonObject, namespace: str, mode: str
) -> None:
    flags, outcome = KUBECTL_VALIDATE[mode]
    body, unknown = _with_unknown_fields()
    name = body["metadata"]["name"]
    done = kube.kubectl("apply", "-n", namespace, "-f", "-", *flags, input=json.dumps(body), check=False)

    if outcome == "refuse":
        assert done.returncode == 1
        assert "Error from server (BadRequest): error when creating" in done.stderr
        assert "strict decoding error" in done.stderr
        for field in unknown:
            assert f'unknown field "{field}"' in done.stderr
        assert _absent(kube, builder(namespace, name))
        return
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"packerbuilder.ami.refresh.ops/{name} created\n"
    warned = set(re.findall(r'^Warning: unknown field "([^"]+)"$', done.stderr, re.MULTILINE))
    assert warned == (unknown if outcome == "warn" else set())
    if outcome != "warn":
        assert done.stderr == ""
    assert kube.api.get(builder(namespace, name))["spec"] == _spec_defaults(SEED_SPEC)


def test_unknown_status_fields_are_pruned(kube: ControlPlane, crd: JsonObject, namespace: str) -> None:
    stage = _stage("sync-succeeded")
    written = stage.answer["status"]
    created = kube.api.post(builders(namespace), as_created(stage.request["parent"]))
    odd = copy.deepcopy(written)
    odd["mood"] = "happy"
    odd["conditions"][0]["colour"] = "green"

    response = kube.api.request(
        "PUT", builder(namespace, created["metadata"]["name"], "status"), body={**created, "status": odd}
    )

    assert response.status_code == 200, response.text
    assert _warned_unknown(response) == {"status.mood", "status.conditions[0].colour"}
    assert response.json()["status"] == written
    assert kube.api.get(builder(namespace, created["metadata"]["name"]))["status"] == written


# --- 6. printer columns: `kubectl get pb` and `-o wide` -----------------------------------------------------


_STEP = re.compile(r'\.([A-Za-z]+)(?:\[\?\(@\.([A-Za-z]+)=="([^"]*)"\)\]|(\[-1:\]))?')


def _json_path(obj: JsonObject, path: str) -> Any:
    """The value at a printer column's jsonPath: `.a.b.c` steps, each optionally filtering a list by one field
    (`.conditions[?(@.type=="Ready")]`, the one match) or taking its last item (`.channels[-1:]`); the CRD has
    no other kind."""
    assert re.fullmatch(f"(?:{_STEP.pattern})+", path), f"{path}: teach _json_path this JSONPath"
    value: Any = obj
    for step in _STEP.finditer(path):
        name, key, wanted, last = step.groups()
        value = value.get(name) if isinstance(value, dict) else None
        if key is not None:
            matches = [item for item in value or [] if isinstance(item, dict) and item.get(key) == wanted]
            assert len(matches) <= 1, f"{path}: several matches, kubectl would print them all"
            value = matches[0] if matches else None
        if last is not None:
            value = value[-1] if value else None
    return value


def _table(output: str) -> tuple[list[str], list[dict[str, str]]]:
    """Header names and rows of `kubectl get` output, each row cut where the header's columns start."""
    header, *rows = output.rstrip("\n").splitlines()
    found = list(re.finditer(r"\S+(?: \S+)*", header))  # names are one space apart inside, more between
    names = [match.group() for match in found]
    starts = [match.start() for match in found]
    ends = [*starts[1:], None]
    cells = [{n: row[a:b].strip() for n, a, b in zip(names, starts, ends, strict=True)} for row in rows]
    return names, cells


AGE = re.compile(r"\d+[smhdy](\d+[smh])?")


@pytest.mark.parametrize("wide", [False, True], ids=["get pb", "get pb -o wide"])
def test_kubectl_get_shows_the_declared_columns_with_the_status_values(
    kube: ControlPlane, crd: JsonObject, namespace: str, wide: bool
) -> None:
    stage = _stage("sync-succeeded")
    body = as_created(stage.request["parent"])
    # So that every column has something to show: a build window, and release channels that hold AMIs.
    body["spec"]["schedule"] = "0 2 * * 1-5"
    body["spec"]["publish"] = {"ssmParameter": "/platform/ami/web", "channels": [CANARY, STABLE]}
    name = body["metadata"]["name"]
    created = kube.api.post(builders(namespace), body)
    status = {**stage.answer["status"], "channels": _channels(("canary", NEWER), ("stable", OLDER))}
    stored = kube.api.put(builder(namespace, name, "status"), {**created, "status": status})

    done = kube.kubectl("get", "pb", "-n", namespace, *(["-o", "wide"] if wide else []))

    columns = [c for c in crd_version()["additionalPrinterColumns"] if wide or not c.get("priority")]
    names, rows = _table(done.stdout)
    assert names == ["NAME", *(column["name"].upper() for column in columns)]
    (row,) = rows
    assert row["NAME"] == name
    for column in columns:
        cell = row[column["name"].upper()]
        value = _json_path(stored, column["jsonPath"])
        assert value is not None, f"{column['jsonPath']} is empty: the test would show nothing"
        if column["type"] == "date":
            assert AGE.fullmatch(cell), (column["name"], cell)
        elif column["type"] == "boolean":
            assert cell == str(value).lower(), column["name"]
        else:
            assert cell == str(value), column["name"]
    if not wide:
        assert (row["STATE"], row["READY"], row["JOB STATUS"]) == ("AMICreated", "True", "completed")
    else:
        assert row["LAST CHANNEL AMI"] == OLDER


CANARY = {"name": "canary", "ssmParameter": "/platform/ami/web/canary"}
STABLE = {"name": "stable", "ssmParameter": "/platform/ami/web/stable", "after": "72h"}
NEWER, OLDER = "ami-0b1a2b3c4d5e6f708", "ami-0a9b8c7d6e5f40312"


def _channels(*held: tuple[str, str]) -> list[JsonObject]:
    """status.channels as the hook writes it: each channel, holding (name, AMI) or, with "", nothing yet."""
    statuses = [
        ChannelStatus(name=name, imageID=image_id, enteredAt="2026-12-01T02:00:00Z" if image_id else "")
        for name, image_id in held
    ]
    channels: list[JsonObject] = status_json(PackerBuilderStatus(channels=statuses))["channels"]
    return channels


@pytest.mark.parametrize(
    ("channels", "shown"),
    [
        (None, ""),
        ([("canary", NEWER)], NEWER),
        ([("canary", NEWER), ("stable", OLDER)], OLDER),
        # stable has not taken an AMI yet: the column shows nothing, not canary's AMI.
        ([("canary", NEWER), ("stable", "")], ""),
        ([("canary", NEWER), ("stable", OLDER), ("fleet", "ami-0c0ffee0c0ffee001")], "ami-0c0ffee0c0ffee001"),
    ],
    ids=["no channels", "one", "two", "last holds nothing yet", "three"],
)
def test_the_wide_column_shows_the_last_channels_ami(
    kube: ControlPlane,
    crd: JsonObject,
    namespace: str,
    channels: list[tuple[str, str]] | None,
    shown: str,
) -> None:
    """`.status.channels[-1:].imageID` evaluated by the API server (it prints the table) among builders with
    other channel counts: each row shows its own last channel's AMI, an empty cell where there is none."""
    stage = _stage("sync-succeeded")
    others = [[("canary", OLDER)], [("canary", OLDER), ("stable", NEWER), ("fleet", NEWER)], None]
    rows = {}
    for number, held in enumerate([channels, *others]):
        body = as_created(stage.request["parent"])
        name = f"{body['metadata']['name']}-{number}"
        body["metadata"]["name"] = name
        created = kube.api.post(builders(namespace), body)
        status = dict(stage.answer["status"])
        if held is not None:
            status["channels"] = _channels(*held)
        kube.api.put(builder(namespace, name, "status"), {**created, "status": status})
        rows[name] = held

    _, table = _table(kube.kubectl("get", "pb", "-n", namespace, "-o", "wide").stdout)

    cells = {row["NAME"]: row["LAST CHANNEL AMI"] for row in table}
    first = next(iter(rows))
    assert cells[first] == shown
    assert [cells[name] for name in list(rows)[1:]] == [OLDER, NEWER, ""]


# --- 7. the status subresource stores what the hook writes, and keeps spec and status apart --------------


def test_saved_requests_carry_the_statuses_the_hook_answered() -> None:
    """The answers replayed here are the ones examples/*.json recorded: each saved parent's status is the
    hook's answer to the stage before."""
    lived = stages()
    for before, after in itertools.pairwise(lived):
        saved = json.loads((gen_examples.OUT / f"{after.name}.json").read_text())
        assert saved["parent"]["status"] == before.answer["status"], after.name


@pytest.mark.parametrize("stage_name", gen_examples.STAGES)
def test_status_the_hook_writes_is_stored_exactly(
    kube: ControlPlane, crd: JsonObject, namespace: str, stage_name: str
) -> None:
    stage = _stage(stage_name)
    written = stage.answer["status"]  # every answer carries the whole status (DESIGN.md, rule 2)
    created = kube.api.post(builders(namespace), as_created(stage.request["parent"]))
    path = builder(namespace, created["metadata"]["name"])

    updated = kube.api.put(f"{path}/status", {**created, "status": written})

    assert updated["status"] == written
    stored = kube.api.get(path)
    assert stored["status"] == written
    assert stored["spec"] == created["spec"]
    assert stored["metadata"]["generation"] == created["metadata"]["generation"] == 1


def test_status_write_does_not_change_the_spec(kube: ControlPlane, crd: JsonObject, namespace: str) -> None:
    stage = _stage("sync-running")
    created = kube.api.post(builders(namespace), as_created(stage.request["parent"]))
    path = builder(namespace, created["metadata"]["name"])
    edited = merge_patch(created, {"spec": {"suspend": True}, "status": stage.answer["status"]})

    kube.api.put(f"{path}/status", edited)

    stored = kube.api.get(path)
    assert stored["status"] == stage.answer["status"]
    assert stored["spec"] == created["spec"]
    assert stored["spec"]["suspend"] is False
    assert stored["metadata"]["generation"] == 1


def test_spec_change_does_not_change_the_status(kube: ControlPlane, crd: JsonObject, namespace: str) -> None:
    stage = _stage("sync-running")
    body = as_created(stage.request["parent"])
    # A status sent with the object itself is dropped: only the status subresource writes it.
    created = kube.api.post(builders(namespace), {**body, "status": stage.answer["status"]})
    assert "status" not in created
    path = builder(namespace, created["metadata"]["name"])
    written = kube.api.put(f"{path}/status", {**created, "status": stage.answer["status"]})["status"]

    patched = kube.api.patch(path, {"spec": {"suspend": True}, "status": {"state": "Tampered"}})

    assert patched["spec"]["suspend"] is True
    assert patched["metadata"]["generation"] == 2
    assert patched["status"] == written
    # The status says which generation it was computed from: the hook sees that it is behind.
    assert kube.api.get(path)["status"]["observedGeneration"] == 1
