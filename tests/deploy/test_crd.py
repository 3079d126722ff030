"""The PackerBuilder CRD: generated from app/model/spec.py, structural, and as strict as the hook (no stricter)."""

import copy
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import celpy
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from celpy.adapter import json_to_cel

from app.model.spec import PackerBuilderSpec, SpecError, parse_spec
from scripts import gen_crd
from tests.deploy.manifests import (
    CHART_CRD_FILE,
    CRD_FILE,
    EXAMPLES,
    KUBERNETES_VERSION,
    ROOT,
    apply_defaults,
    crd_schema,
    load_json,
    load_yaml,
    schema_errors,
    strict,
    walk_schema,
)
from tests.seed import SEED_SPEC

Spec = dict[str, Any]


def test_committed_crd_matches_the_models() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen_crd.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"CRD drifted from app/model/spec.py:\n{result.stderr}"


def test_chart_crd_is_byte_identical_to_the_metacontroller_one() -> None:
    assert CHART_CRD_FILE.read_bytes() == CRD_FILE.read_bytes()


def test_check_fails_on_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "crd.yaml"
    stale.write_text(gen_crd.render().replace("maxLength: 256", "maxLength: 257"))
    monkeypatch.setattr(gen_crd, "ROOT", tmp_path)
    monkeypatch.setattr(gen_crd, "OUTPUTS", (stale,))
    assert gen_crd.main(["--check"]) == 1
    assert gen_crd.main([]) == 0
    assert gen_crd.main(["--check"]) == 0


def test_crd_passes_kubernetes_validate_strict() -> None:
    assert kubernetes_validate.validate(load_yaml(CRD_FILE), KUBERNETES_VERSION, strict=True)


def test_crd_identity() -> None:
    crd = load_yaml(CRD_FILE)
    assert crd["metadata"]["name"] == "packerbuilders.ami.refresh.ops"
    spec = crd["spec"]
    assert spec["group"] == "ami.refresh.ops"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "PackerBuilder"
    assert spec["names"]["plural"] == "packerbuilders"
    assert spec["names"]["shortNames"] == ["pb"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1"
    assert version["served"]
    assert version["storage"]
    assert version["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    (version,) = load_yaml(CRD_FILE)["spec"]["versions"]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["State"] == ".status.state"
    # The Ready condition's status, right after State, as kubectl shows Deployments' and Nodes'.
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert list(columns)[:2] == ["State", "Ready"]
    assert columns["Base AMI"] == ".status.lastRunBaseImageID"
    assert columns["Built AMI"] == ".status.lastRunBuiltImageID"
    assert columns["Job Status"] == ".status.jobStatus"
    assert columns["Age"] == ".metadata.creationTimestamp"
    assert columns["Suspended"] == ".spec.suspend"
    assert columns["Next Build"] == ".status.nextBuildTime"
    # -o wide only: the AMI the last release channel (e.g. production's) holds.
    assert columns["Last Channel AMI"] == ".status.channels[-1:].imageID"
    wide_only = {c["name"] for c in version["additionalPrinterColumns"] if c.get("priority")}
    assert "Last Channel AMI" in wide_only
    status_fields = crd_schema()["properties"]["status"]["properties"]
    for path in columns.values():
        if path.startswith(".status."):
            assert re.split(r"[.\[]", path.removeprefix(".status."))[0] in status_fields, path


# JSONSchemaProps keywords this CRD may use; Kubernetes rejects $ref, propertyNames, patternProperties,
# and a schema with combinators or untyped nodes is not structural.
K8S_KEYWORDS = {
    "type", "format", "description", "default", "enum", "pattern", "minLength", "maxLength", "minimum",
    "maximum", "minItems", "maxItems", "required", "properties", "additionalProperties", "items",
    "x-kubernetes-validations",
}  # fmt: skip


def test_schema_is_structural() -> None:
    for path, node in walk_schema(crd_schema()):
        assert "type" in node, f"{path or '<root>'} has no type"
        assert set(node) <= K8S_KEYWORDS, f"{path}: {sorted(set(node) - K8S_KEYWORDS)}"
        assert not ("properties" in node and "additionalProperties" in node), path


def test_status_has_observed_generation_and_no_defaults() -> None:
    status = crd_schema()["properties"]["status"]
    assert status["properties"]["observedGeneration"]["type"] == "integer"
    for path, node in walk_schema(status):
        assert "default" not in node, f"status{path}: the hook writes status whole, no server defaults"


def test_spec_requires_what_the_model_requires() -> None:
    spec = crd_schema()["properties"]["spec"]
    required = {name for name, field in PackerBuilderSpec.model_fields.items() if field.is_required()}
    assert set(spec["required"]) == required
    assert set(spec["properties"]) == set(PackerBuilderSpec.model_fields)


def test_enums_and_patterns_come_from_the_models() -> None:
    spec = crd_schema()["properties"]["spec"]["properties"]
    command = spec["builder"]["properties"]["commands"]["items"]["properties"]
    assert command["onError"]["enum"] == ["cleanup", "abort", "run-cleanup-provisioner"]
    assert command["subCommand"]["enum"] == ["init", "validate", "build"]
    for name in ("expiresIn", "controllerTimer", "buildTimeout"):
        assert spec["timeOuts"]["properties"][name]["pattern"] == r"^([0-9]+(d|h|m|s))+$"


# --- the examples --------------------------------------------------------------------------------


def _packerbuilder_examples() -> list[str]:
    return sorted(
        path.name for path in EXAMPLES.glob("*.yaml") if load_yaml(path).get("kind") == "PackerBuilder"
    )


@pytest.mark.parametrize("name", _packerbuilder_examples())
def test_example_validates_against_the_crd_and_the_hook(name: str) -> None:
    example = load_yaml(EXAMPLES / name)
    assert schema_errors(strict(crd_schema()), example) == []
    parse_spec(example["spec"])


def test_there_are_public_and_private_examples() -> None:
    assert {"packerbuilder.yaml", "packerbuilder-private.yaml"} <= set(_packerbuilder_examples())


def test_seed_example_is_the_seed_verbatim() -> None:
    assert load_yaml(EXAMPLES / "packerbuilder.yaml")["spec"] == SEED_SPEC


def test_server_defaults_equal_the_hook_defaults() -> None:
    """What the API server stores after defaulting parses to the same spec as the raw manifest."""
    minimal = {"region": "us-west-2", "builder": {"repoURL": "https://example.com/r.git", "image": "p:1"}}
    for raw in (minimal, SEED_SPEC, load_yaml(EXAMPLES / "packerbuilder-private.yaml")["spec"]):
        defaulted = apply_defaults(crd_schema()["properties"]["spec"], raw)
        assert schema_errors(crd_schema()["properties"]["spec"], defaulted) == []
        assert parse_spec(defaulted) == parse_spec(raw)
    defaulted = apply_defaults(crd_schema()["properties"]["spec"], minimal)
    assert defaulted["timeOuts"] == {"expiresIn": "48h", "controllerTimer": "5m", "buildTimeout": "2h"}
    assert defaulted["gitSync"]["name"] == "git-sync"
    assert defaulted["maxNumberOfJobs"] == 3


def test_saved_sync_request_carries_the_seed_as_the_api_server_stores_it() -> None:
    seed = load_yaml(EXAMPLES / "packerbuilder.yaml")
    request = load_json(EXAMPLES / "sync-request.json")
    parent = request["parent"]
    assert parent["spec"] == apply_defaults(crd_schema()["properties"]["spec"], seed["spec"])
    assert schema_errors(strict(crd_schema()), parent) == []
    assert load_json(EXAMPLES / "customize-request.json")["parent"] == parent


# --- invalid specs: the API server refuses them, and so would the hook ----------------------------


def _set(path: str, value: Any) -> Callable[[Spec], None]:
    def mutate(spec: Spec) -> None:
        *parents, last = path.split(".")
        node: Any = spec
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        if value is _DELETE:
            del node[last]
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


_DELETE = object()
CHECK_IMAGE = "registry.example.com/platform/ami-smoke:1.4"


def _both(*changes: Callable[[Spec], None]) -> Callable[[Spec], None]:
    def mutate(spec: Spec) -> None:
        for change in changes:
            change(spec)

    return mutate


def _publish(*channels: Spec) -> Spec:
    return {"ssmParameter": "/p/web", "channels": list(channels)}


INVALID: dict[str, Callable[[Spec], None]] = {
    "region missing": _set("region", _DELETE),
    "builder missing": _set("builder", _DELETE),
    "repoURL missing": _set("builder.repoURL", _DELETE),
    "packer image missing": _set("builder.image", _DELETE),
    "packer image empty": _set("builder.image", ""),
    "region upper case": _set("region", "US-WEST-2"),
    "region without number": _set("region", "us-west"),
    "expiresIn with a space": _set("timeOuts.expiresIn", "2 days"),
    "controllerTimer without unit": _set("timeOuts.controllerTimer", "5"),
    "buildTimeout in go fractions": _set("timeOuts.buildTimeout", "1.5h"),
    "onError ask": _set("builder.commands.0.onError", "ask"),
    "subCommand unknown": _set("builder.commands.0.subCommand", "apply"),
    "subCommand missing": _set("builder.commands.0.subCommand", _DELETE),
    "maxNumberOfJobs zero": _set("maxNumberOfJobs", 0),
    "maxNumberOfJobs over 100": _set("maxNumberOfJobs", 101),
    "ami filter without values": _set("amiFilters.0.values", []),
    "ami filter with empty name": _set("amiFilters.0.name", ""),
    "ami filter value empty": _set("amiFilters.0.values", [""]),
    "repoURL file scheme": _set("builder.repoURL", "file:///etc/passwd"),
    "repoURL option injection": _set("builder.repoURL", "--upload-pack=touch /tmp/x"),
    "branch with shell": _set("builder.branch", "main; rm -rf /"),
    "gitSync secret not a name": _set("gitSync.secret", "Git_Sync"),
    "gitSync container name upper case": _set("gitSync.name", "Git-Sync"),
    "gitSync container name too long": _set("gitSync.name", "g" * 64),
    "builder secret too long": _set("builder.secret", "a" * 254),
    "serviceAccountName not a name": _set("builder.serviceAccountName", "packer build"),
    "slack secret not a name": _set("notifier.slack.secret", "-slack"),
    "slack channel empty": _set("notifier.slack.channelIDs", [""]),
    "clusterName too long": _set("clusterName", "c" * 257),
    "variablesFile empty": _set("builder.commands.0.variablesFile", ""),
    # Without amiFilters, so that only the parameter itself is wrong (not the CEL rule on the pair).
    "ssmParameter with a space": _both(
        _set("amiFilters", _DELETE), _set("baseImage", {"ssmParameter": "/aws/service/eks ami"})
    ),
    "ssmParameter missing": _both(_set("amiFilters", _DELETE), _set("baseImage", {})),
    "minBaseImageAge without unit": _set("rebuild.minBaseImageAge", "24"),
    "onBaseImageChange not a boolean": _set("rebuild.onBaseImageChange", "yes"),
    "schedule with four fields": _set("schedule", "0 2 * *"),
    "schedule with six fields": _set("schedule", "0 0 2 * * 1"),
    "timeZone with a space": _set("timeZone", "Europe/New York"),
    "suspend not a boolean": _set("suspend", "true"),
    "validation image empty": _set("validation", {"image": ""}),
    "validation timeout without unit": _set("validation", {"image": CHECK_IMAGE, "timeout": "30"}),
    "validation env name with a space": _set(
        "validation", {"image": CHECK_IMAGE, "env": [{"name": "SUBNET ID", "value": "x"}]}
    ),
    "bootCheck subnet not a subnet id": _set("validation", {"bootCheck": {"subnetID": "subnet-12"}}),
    "bootCheck without a subnet": _set("validation", {"bootCheck": {"instanceType": "t3.small"}}),
    "channel name upper case": _set("publish", _publish({"name": "Canary", "ssmParameter": "/p/web-canary"})),
    "channel without ssmParameter": _set("publish", _publish({"name": "canary"})),
    "channel parameter with a space": _set("publish", _publish({"name": "canary", "ssmParameter": "/p/a b"})),
    "channel after without unit": _set(
        "publish", _publish({"name": "canary", "ssmParameter": "/p/web-canary", "after": "72"})
    ),
    "eleven channels": _set(
        "publish", _publish(*({"name": f"c{n}", "ssmParameter": f"/p/web-{n}"} for n in range(11)))
    ),
    "pin not an AMI id": _set("release", {"pin": {"stable": "ami-xyz"}}),
    "revoke not an AMI id": _set("release", {"revoke": ["i-0123456789abcdef0"]}),
    "revokeBase not an AMI id": _set("release", {"revokeBase": ["ami-0123456789ABCDEF0"]}),
    "revoke over 100 AMIs": _set("release", {"revoke": [f"ami-{n:08x}" for n in range(101)]}),
    "rebuild token over 253 characters": _set("release", {"rebuild": "r" * 254}),
    "rebuild token not a string": _set("release", {"rebuild": 2}),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_spec_is_rejected_by_the_crd_and_the_hook(case: str) -> None:
    spec = copy.deepcopy(SEED_SPEC)
    INVALID[case](spec)
    assert schema_errors(crd_schema()["properties"]["spec"], spec), f"CRD accepted: {case}"
    with pytest.raises(SpecError):
        parse_spec(spec)


# Checks a structural schema cannot express; the hook answers these with an InvalidSpec condition.
HOOK_ONLY: dict[str, Callable[[Spec], None]] = {
    "variable name with a dot": _set("builder.commands.0.variables", {"a.b": "x"}),
    "absolute variables file": _set("builder.commands.0.variablesFile", "/etc/passwd"),
    "variables file outside the checkout": _set("builder.commands.0.variablesFiles", ["../x.hcl"]),
    "zero duration": _set("timeOuts.expiresIn", "0s"),
    "git-sync container named like the packer one": _set("gitSync.name", "packer"),
    "schedule minute out of range": _set("schedule", "61 2 * * *"),
    "schedule with an unknown weekday": _set("schedule", "0 2 * * FUN"),
    "unknown time zone": _set("timeZone", "Mars/Olympus_Mons"),
    "validation timeout under 2m": _set("validation", {"image": CHECK_IMAGE, "timeout": "1m"}),
    "validation env redefining AMI_ID": _set(
        "validation", {"image": CHECK_IMAGE, "env": [{"name": "AMI_ID", "value": "ami-0123456789abcdef0"}]}
    ),
    "validation env with neither value nor valueFrom": _set(
        "validation", {"image": CHECK_IMAGE, "env": [{"name": "SUBNET_ID"}]}
    ),
    "bootCheck with a command": _set(
        "validation", {"bootCheck": {"subnetID": "subnet-0123456789abcdef0"}, "command": ["/smoke"]}
    ),
    "bootCheck ssmCommands without instanceProfile": _set(
        "validation", {"bootCheck": {"subnetID": "subnet-0123456789abcdef0", "ssmCommands": ["true"]}}
    ),
    "two channels with one name": _set(
        "publish",
        _publish({"name": "canary", "ssmParameter": "/p/a"}, {"name": "canary", "ssmParameter": "/p/b"}),
    ),
    "a channel on publish.ssmParameter": _set(
        "publish", _publish({"name": "canary", "ssmParameter": "/p/web"})
    ),
}


@pytest.mark.parametrize("case", sorted(HOOK_ONLY))
def test_hook_only_checks_are_known(case: str) -> None:
    spec = copy.deepcopy(SEED_SPEC)
    HOOK_ONLY[case](spec)
    assert schema_errors(crd_schema()["properties"]["spec"], spec) == [], (
        f"the CRD now rejects {case!r}: move it to INVALID"
    )
    with pytest.raises(SpecError):
        parse_spec(spec)


# --- CEL rules: what the API server checks beyond the structural schema ------------------------------


def _cel_rules() -> list[tuple[str, str]]:
    spec = crd_schema()["properties"]["spec"]
    return [(rule["rule"], rule["message"]) for rule in spec.get("x-kubernetes-validations", [])]


def _cel_allows(rule: str, spec: Spec) -> bool:
    env = celpy.Environment()
    return bool(env.program(env.compile(rule)).evaluate({"self": json_to_cel(spec)}))


BASE_IMAGE = {
    "ssmParameter": "/aws/service/eks/optimized-ami/1.30/amazon-linux-2023/x86_64/standard/recommended/image_id"
}


@pytest.mark.parametrize(
    ("change", "allowed"),
    [
        ({}, True),
        ({"baseImage": BASE_IMAGE, "amiFilters": _DELETE}, True),
        ({"baseImage": BASE_IMAGE, "amiFilters": []}, True),
        ({"baseImage": BASE_IMAGE}, False),
    ],
    ids=["filters only", "parameter only", "parameter and empty filters", "both"],
)
def test_cel_rule_rejects_filters_together_with_a_base_image_parameter(change: Spec, allowed: bool) -> None:
    spec = copy.deepcopy(SEED_SPEC)
    for key, value in change.items():
        _set(key, value)(spec)
    ((rule, message),) = _cel_rules()
    assert _cel_allows(rule, spec) is allowed
    if allowed:
        parse_spec(spec)
    else:
        assert "spec.amiFilters and spec.baseImage" in message
        with pytest.raises(SpecError, match=r"spec\.baseImage: spec\.amiFilters and spec\.baseImage"):
            parse_spec(spec)
