"""metacontroller/: the CompositeController and the example objects a platform engineer applies."""

from pathlib import Path
from typing import Any

import pytest

from app.model.hooks import CustomizeRequest, HookRequest
from tests.deploy.manifests import (
    COMPOSITE_CONTROLLER_FILE,
    EXAMPLES,
    FIXTURES,
    example_files,
    load_json,
    load_yaml,
    schema_errors,
    validation_errors,
)


def _controller() -> dict[str, Any]:
    return load_yaml(COMPOSITE_CONTROLLER_FILE)


def test_composite_controller_matches_metacontrollers_schema() -> None:
    assert validation_errors(_controller()) == []


def test_fixture_schema_rejects_what_metacontroller_would() -> None:
    """The fixture is only useful if it fails: an unknown field and a bad strategy must be caught."""
    schema = load_json(FIXTURES / "compositecontroller.schema.json")
    typo = _controller()
    typo["spec"]["generateSelectors"] = True
    assert schema_errors(schema, typo)
    bad_method = _controller()
    bad_method["spec"]["childResources"][0]["updateStrategy"]["method"] = "Always"
    assert schema_errors(schema, bad_method)
    no_parent = _controller()
    del no_parent["spec"]["parentResource"]
    assert schema_errors(schema, no_parent)
    string_port = _controller()
    string_port["spec"]["hooks"]["sync"]["webhook"]["service"]["port"] = "80"
    assert schema_errors(schema, string_port)


def test_parent_and_child_resources() -> None:
    spec = _controller()["spec"]
    assert spec["parentResource"] == {"apiVersion": "ami.refresh.ops/v1alpha1", "resource": "packerbuilders"}
    assert spec["childResources"] == [
        {"apiVersion": "batch/v1", "resource": "jobs", "updateStrategy": {"method": "OnDelete"}}
    ]
    assert spec["generateSelector"] is True
    assert 60 <= spec["resyncPeriodSeconds"] <= 3600


@pytest.mark.parametrize("hook", ["sync", "customize", "finalize"])
def test_hooks_point_at_the_service_with_a_timeout(hook: str) -> None:
    webhook = _controller()["spec"]["hooks"][hook]["webhook"]
    assert webhook["path"] == f"/{hook}"
    assert webhook["service"] == {"name": "packer-builder", "namespace": "packer-builder", "port": 80}
    # Metacontroller aborts a call after `timeout`; the hook is built to answer well inside 10 s.
    assert webhook["timeout"] == "10s"


@pytest.mark.parametrize("path", list(example_files()), ids=lambda p: Path(p).name)
def test_every_example_object_validates(path: Path) -> None:
    assert validation_errors(load_yaml(path)) == []


def test_examples_leave_the_namespace_to_kubectl() -> None:
    for path in example_files():
        assert "namespace" not in load_yaml(path)["metadata"], f"{path.name}: apply with -n instead"


def test_irsa_service_account() -> None:
    account = load_yaml(EXAMPLES / "serviceaccount-irsa.yaml")
    assert account["kind"] == "ServiceAccount"
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    private = load_yaml(EXAMPLES / "packerbuilder-private.yaml")
    assert private["spec"]["builder"]["serviceAccountName"] == account["metadata"]["name"]


def test_secrets_the_seed_refers_to_exist_with_their_keys() -> None:
    secrets = {
        doc["metadata"]["name"]: doc for doc in map(load_yaml, example_files()) if doc["kind"] == "Secret"
    }
    seed = load_yaml(EXAMPLES / "packerbuilder.yaml")["spec"]
    assert set(secrets[seed["gitSync"]["secret"]]["stringData"]) == {"username", "token"}
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(
        secrets[seed["builder"]["secret"]]["stringData"]
    )
    assert set(secrets[seed["notifier"]["slack"]["secret"]]["stringData"]) == {"token"}
    for secret in secrets.values():
        for value in secret["stringData"].values():
            assert value.startswith("REPLACE_WITH_"), "examples hold placeholders, never credentials"


def test_private_example_uses_the_git_credentials_secret() -> None:
    private = load_yaml(EXAMPLES / "packerbuilder-private.yaml")["spec"]
    git_secret = load_yaml(EXAMPLES / "secret-git-sync.yaml")["metadata"]["name"]
    assert private["gitSync"]["secret"] == git_secret


def test_saved_requests_are_hook_requests() -> None:
    sync = HookRequest.model_validate(load_json(EXAMPLES / "sync-request.json"))
    assert sync.parent.metadata.name == "packer-builder"
    assert sync.jobs() == []
    customize = CustomizeRequest.model_validate(load_json(EXAMPLES / "customize-request.json"))
    assert customize.parent == sync.parent
    # The saved controller is the one this project ships, as Metacontroller would send it.
    assert load_json(EXAMPLES / "sync-request.json")["controller"]["spec"] == _controller()["spec"]
