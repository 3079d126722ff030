"""Shared helpers for the deploy tests: loading manifests and validating them the way a cluster would."""

import copy
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
METACONTROLLER = ROOT / "metacontroller"
EXAMPLES = METACONTROLLER / "examples"
CRD_FILE = METACONTROLLER / "packerbuilder-crd.yaml"
COMPOSITE_CONTROLLER_FILE = METACONTROLLER / "compositecontroller.yaml"
CHART = ROOT / "helm" / "packer-builder"
CHART_CRD_FILE = CHART / "crds" / "packerbuilder-crd.yaml"
ALL_ON_VALUES = CHART / "ci" / "all-on-values.yaml"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
HELM = ROOT / ".tools" / "bin" / "helm"

# The oldest Kubernetes the chart and CRD are checked against (EKS standard support at the time).
KUBERNETES_VERSION = "1.30"

Manifest = dict[str, Any]


def load_yaml(path: Path) -> Manifest:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict), f"{path} is not a YAML mapping"
    return loaded


def load_all(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def crd_schema() -> dict[str, Any]:
    """The committed CRD's openAPIV3Schema for v1alpha1."""
    (version,) = load_yaml(CRD_FILE)["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields rejected, as `kubectl apply` (field validation Strict) does.

    A CRD cannot say `additionalProperties: false` next to `properties`; the API server prunes or, with
    strict field validation, refuses unknown fields instead. jsonschema needs it spelled out.
    """
    schema = copy.deepcopy(schema)

    def tighten(node: dict[str, Any], path: str) -> None:
        if "properties" in node and path != ".metadata":
            node["additionalProperties"] = False
        for name, sub in node.get("properties", {}).items():
            tighten(sub, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            tighten(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            tighten(node["additionalProperties"], f"{path}.*")

    tighten(schema, "")
    return schema


def schema_errors(schema: dict[str, Any], instance: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    return sorted(
        f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator.iter_errors(instance)
    )


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural defaulting as the API server does it: absent fields get the schema's `default`."""
    if schema.get("type") == "object" and isinstance(value, dict):
        result = dict(value)
        for name, sub in schema.get("properties", {}).items():
            if name not in result and "default" in sub:
                result[name] = copy.deepcopy(sub["default"])
            if name in result:
                result[name] = apply_defaults(sub, result[name])
        return result
    if schema.get("type") == "array" and isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], item) for item in value]
    return value


_FIXTURE_SCHEMAS = {
    ("metacontroller.k8s.io/v1alpha1", "CompositeController"): "compositecontroller.schema.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.schema.json",
}


def validation_errors(manifest: Manifest) -> list[str]:
    """Errors of one object against its kind's schema: Kubernetes' own (strict), a CRD's, or a fixture's."""
    key = (manifest.get("apiVersion"), manifest.get("kind"))
    if key in _FIXTURE_SCHEMAS:
        return schema_errors(load_json(FIXTURES / _FIXTURE_SCHEMAS[key]), manifest)
    if key == ("ami.refresh.ops/v1alpha1", "PackerBuilder"):
        return schema_errors(strict(crd_schema()), manifest)
    try:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(str(p) for p in exc.path) or '<root>'}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [exc.message]
    return []


def example_files() -> Iterator[Path]:
    yield from sorted(EXAMPLES.glob("*.yaml"))


def walk_schema(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (path, node) of a structural schema."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk_schema(sub, f"{path}.{name}")
    for key, suffix in (("additionalProperties", ".*"), ("items", "[]")):
        if isinstance(node.get(key), dict):
            yield from walk_schema(node[key], f"{path}{suffix}")


def helm_binary() -> Path:
    if not HELM.is_file() or not os.access(HELM, os.X_OK):
        pytest.fail(
            f"helm is missing at {HELM.relative_to(ROOT)}: run `bash scripts/install-helm.sh` first",
            pytrace=False,
        )
    return HELM


def run_helm(helm_home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run helm with its config/cache/data kept out of the developer's home directory."""
    env = {
        **os.environ,
        "HELM_CONFIG_HOME": str(helm_home / "config"),
        "HELM_CACHE_HOME": str(helm_home / "cache"),
        "HELM_DATA_HOME": str(helm_home / "data"),
    }
    return subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def markdown_table(text: str, header: list[str]) -> list[list[str]]:
    """The body rows (cells stripped) of the one Markdown table in `text` with this header row."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            current.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif current:
            tables.append(current)
            current = []
    (table,) = [t for t in tables if t[0] == header]
    return table[2:]
