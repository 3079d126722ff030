"""docs/install.md and the IAM policies it documents: least privilege, and in step with the code."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from app import conditions, decide, tags
from app.spec import parse_spec
from tests.deploy.manifests import (
    CHART,
    EXAMPLES,
    ROOT,
    crd_schema,
    load_yaml,
    schema_errors,
    strict,
)
from tests.seed import SEED_SPEC

DOCS = ROOT / "docs" / "install.md"
FRESHNESS = ROOT / "docs" / "freshness.md"
README = ROOT / "README.md"
SSM_EXAMPLE = "metacontroller/examples/packerbuilder-ssm.yaml"
IAM = CHART / "iam"


def _policy(name: str) -> dict[str, Any]:
    policy: dict[str, Any] = json.loads((IAM / name).read_text())
    assert policy["Version"] == "2012-10-17"
    return policy


def _actions(policy: dict[str, Any]) -> set[str]:
    return {action for statement in policy["Statement"] for action in statement["Action"]}


def _operations_in_app() -> set[str]:
    """AWS API operations the hook's adapter calls, from its boto3 method and paginator names."""
    source = (ROOT / "app" / "ec2.py").read_text()
    # Client helpers that are not API operations; the paginator's operation is taken from its argument.
    helpers = {"get_paginator", "get_waiter", "can_paginate"}
    clients = {"_client": "ec2", "_ssm": "ssm"}
    calls = set(re.findall(r"self\.(_[a-z]+)\(region\)\.([a-z]+(?:_[a-z]+)+)\(", source))
    calls |= {("_client", name) for name in re.findall(r'get_paginator\("([a-z_]+)"\)', source)}
    assert {client for client, _ in calls} <= set(clients)
    return {
        f"{clients[client]}:" + "".join(part.capitalize() for part in name.split("_"))
        for client, name in calls
        if name not in helpers
    }


def test_hook_policy_allows_exactly_the_calls_the_hook_makes() -> None:
    operations = _operations_in_app()
    assert _actions(_policy("hook-policy.json")) == operations
    assert operations == {"ec2:DescribeImages", "ec2:CreateTags", "ssm:GetParameter"}


def test_hook_reads_only_public_aws_parameters_unless_users_add_their_own() -> None:
    (reading,) = [s for s in _policy("hook-policy.json")["Statement"] if "ssm:GetParameter" in s["Action"]]
    assert reading["Resource"] == ["arn:aws:ssm:*::parameter/aws/service/*"]


def test_hook_may_tag_only_images_with_its_own_tag_keys() -> None:
    (tagging,) = [s for s in _policy("hook-policy.json")["Statement"] if "ec2:CreateTags" in s["Action"]]
    assert tagging["Resource"] == "arn:aws:ec2:*::image/*"
    allowed = set(tagging["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"])
    contract = {
        tags.BROUGHT_TO_YOU_BY,
        tags.CLUSTER_NAME,
        tags.CREATED_BY,
        tags.PACKER_REPO,
        tags.PACKER_REPO_BRANCH,
        tags.STATUS,
        tags.CREATE_TIMESTAMP,
        tags.BUILD_ID,
        tags.JOB_ID,
        tags.BASE_AMI,
        tags.PACKER_REPO_COMMIT,
    }
    assert allowed == contract
    assert set(tags.management_tags("packer-builder", parse_spec(SEED_SPEC))) <= allowed


def test_notification_permissions_are_a_separate_optional_policy() -> None:
    assert _actions(_policy("hook-notifications-policy.json")) == {"sns:Publish", "ses:SendEmail"}
    for statement in _policy("hook-notifications-policy.json")["Statement"]:
        assert statement["Sid"].startswith("Optional")
        assert statement["Resource"] != "*"


def test_packer_build_policy_has_no_iam_or_wildcard_actions() -> None:
    actions = _actions(_policy("packer-build-policy.json"))
    assert {"ec2:RunInstances", "ec2:CreateImage", "ec2:RegisterImage", "ec2:TerminateInstances"} <= actions
    assert all(action.startswith("ec2:") and "*" not in action for action in actions)


@pytest.mark.parametrize(
    "name", ["hook-policy.json", "hook-notifications-policy.json", "packer-build-policy.json"]
)
def test_docs_show_each_policy_verbatim(name: str) -> None:
    blocks = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", DOCS.read_text(), re.DOTALL)]
    assert _policy(name) in blocks
    assert f"helm/packer-builder/iam/{name}" in DOCS.read_text()


def test_docs_cover_the_install_path() -> None:
    text = DOCS.read_text()
    for heading in ("# Install on a cluster", "# Debug with curl", "# IAM policies"):
        assert re.search(rf"^{re.escape(heading)}$", text, re.MULTILINE), heading
    for command in (
        "helm install metacontroller oci://ghcr.io/metacontroller/metacontroller-helm",
        "helm install packer-builder helm/packer-builder",
        "kubectl -n ami-builds apply -f metacontroller/examples/serviceaccount-irsa.yaml",
        "kubectl -n ami-builds apply -f metacontroller/examples/packerbuilder.yaml",
        "get pb -w",
        "port-forward svc/packer-builder 8080:80",
        "-d @metacontroller/examples/sync-request.json",
    ):
        assert command in text, command


@pytest.mark.parametrize("doc", [DOCS, FRESHNESS, README], ids=lambda p: p.name)
def test_every_path_the_docs_name_exists(doc: Path) -> None:
    for path in set(
        re.findall(r"(?:metacontroller|helm/packer-builder|app|scripts)/[\w./-]+\.\w+", doc.read_text())
    ):
        assert (ROOT / path).exists(), path


def test_docs_match_the_chart_defaults() -> None:
    """The commands assume the chart's Service port and Metacontroller namespace."""
    values = load_yaml(CHART / "values.yaml")
    assert values["service"]["port"] == 80
    assert values["metacontroller"]["namespace"] == "metacontroller"


def _yaml_block_after(text: str, heading: str) -> str:
    match = re.search(r"```yaml\n(.*?)```", text.split(heading, 1)[1], re.DOTALL)
    assert match is not None, f"no YAML block after {heading!r}"
    return match.group(1)


def _table_after(text: str, heading: str) -> list[str]:
    """The first cells of the Markdown table that follows `heading`, header and separator left out."""
    section = text.split(heading, 1)[1].split("\n\n|", 1)[1]
    rows = ("|" + section).split("\n\n", 1)[0].splitlines()
    return [row.split("|")[1].strip() for row in rows[2:]]


def test_readme_spec_example_is_accepted_by_the_crd_and_the_hook() -> None:
    block = _yaml_block_after(README.read_text(), "## The PackerBuilder spec")
    manifest = yaml.safe_load(block)
    assert schema_errors(strict(crd_schema()), manifest) == []
    spec = parse_spec(manifest["spec"])
    assert spec.rebuild.onBaseImageChange
    assert spec.schedule
    assert spec.timeZone != "UTC"
    # The commented-out alternative source is valid too, in place of amiFilters.
    alternative = re.sub(r"^  amiFilters:.*?(?=^  # baseImage:)", "", block, flags=re.DOTALL | re.MULTILINE)
    alternative = re.sub(r"^  # ( *(?:baseImage|ssmParameter):)", r"  \1", alternative, flags=re.MULTILINE)
    manifest = yaml.safe_load(alternative)
    assert "amiFilters" not in manifest["spec"]
    assert schema_errors(strict(crd_schema()), manifest) == []
    assert parse_spec(manifest["spec"]).baseImage is not None


def test_freshness_doc_summarises_the_ssm_example() -> None:
    example = load_yaml(EXAMPLES / "packerbuilder-ssm.yaml")["spec"]
    summary = yaml.safe_load(_yaml_block_after(FRESHNESS.read_text(), "# Freshness"))["spec"]
    assert {key: example[key] for key in summary} == summary
    for doc in (FRESHNESS, DOCS, README):
        assert SSM_EXAMPLE in doc.read_text(), doc.name


def test_freshness_doc_lists_every_state_the_hook_writes() -> None:
    states = {value for name, value in vars(decide).items() if name.startswith("STATE_")}
    documented = set()
    for cell in _table_after(FRESHNESS.read_text(), "### States"):
        documented |= set(re.findall(r"`(\w+)`", cell))
    assert documented == states


def test_freshness_doc_names_real_conditions() -> None:
    types = {value for name, value in vars(conditions).items() if name.isupper() and isinstance(value, str)}
    cells = _table_after(FRESHNESS.read_text(), "### Conditions to watch")
    documented = {cell.strip("`") for cell in cells}
    assert all(re.fullmatch(r"`\w+`", cell) for cell in cells), cells
    assert documented <= types
    assert {"BaseImageOutdated", "Scheduled", "Suspended"} <= documented
