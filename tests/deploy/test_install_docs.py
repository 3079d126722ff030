"""docs/install.md and the IAM policies it documents: least privilege, and in step with the code."""

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.core import conditions, decide
from app.core.facts import AmiFacts
from app.core.states import TABLE, State
from app.http.reconcile import world_of
from app.main import _response
from app.model import tags
from app.model.hooks import HookRequest
from app.model.spec import JobStatus, parse_spec
from app.model.tags import Image, format_timestamp
from tests.builders import T0, base_image, build_pod, parent, request, running, succeeded
from tests.deploy.manifests import (
    CHART,
    CRD_FILE,
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
OPERATIONS = ROOT / "docs" / "operations.md"
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
    source = (ROOT / "app" / "aws" / "ec2.py").read_text()
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
    assert operations == {
        "ec2:DescribeImages",
        "ec2:CreateTags",
        "ec2:DescribeInstances",
        "ec2:DescribeLaunchTemplateVersions",
        "ec2:EnableImageDeprecation",
        "ec2:DeregisterImage",
        "ec2:DeleteSnapshot",
        "ec2:DescribeImageAttribute",
        "ec2:DisableImage",
        "ec2:EnableImage",
        "ec2:DeleteTags",
        "ec2:EnableImageDeregistrationProtection",
        "ec2:DisableImageDeregistrationProtection",
        "ssm:GetParameter",
        "ssm:PutParameter",
        "ssm:DeleteParameter",
        "ssm:ListTagsForResource",
        "ssm:AddTagsToResource",
    }


IMAGES = "arn:aws:ec2:*::image/*"
SNAPSHOTS = "arn:aws:ec2:*::snapshot/*"
PUBLISH_PARAMETERS = "arn:aws:ssm:*:*:parameter/platform/ami/*"
OURS = {"StringEquals": {f"aws:ResourceTag/{tags.BROUGHT_TO_YOU_BY}": tags.OPERATOR_NAME}}
FIRST_TAGGING = {"StringEquals": {f"aws:RequestTag/{tags.BROUGHT_TO_YOU_BY}": tags.OPERATOR_NAME}}


def _statements(action: str) -> list[dict[str, Any]]:
    return [s for s in _policy("hook-policy.json")["Statement"] if action in s["Action"]]


def _resources(statement: dict[str, Any]) -> list[str]:
    resource = statement["Resource"]
    return [resource] if isinstance(resource, str) else list(resource)


def test_every_hook_statement_says_what_it_is_for() -> None:
    statements = _policy("hook-policy.json")["Statement"]
    sids = [statement.get("Sid", "") for statement in statements]
    assert all(re.fullmatch(r"[A-Z][A-Za-z0-9]{8,}", sid) for sid in sids), sids
    assert len(set(sids)) == len(sids)
    assert all(statement["Effect"] == "Allow" for statement in statements)


def test_only_describe_calls_are_unscoped() -> None:
    """EC2's Describe* calls support no resource-level permissions; everything else names its resources."""
    for statement in _policy("hook-policy.json")["Statement"]:
        if "*" in _resources(statement):
            assert all(action.startswith("ec2:Describe") for action in statement["Action"]), statement["Sid"]
            assert "Condition" not in statement


@pytest.mark.parametrize(
    ("action", "resource"),
    [
        ("ec2:DeregisterImage", IMAGES),
        ("ec2:EnableImageDeprecation", IMAGES),
        ("ec2:DisableImage", IMAGES),
        ("ec2:EnableImage", IMAGES),
        ("ec2:EnableImageDeregistrationProtection", IMAGES),
        ("ec2:DisableImageDeregistrationProtection", IMAGES),
        ("ec2:DeleteSnapshot", SNAPSHOTS),
    ],
)
def test_mutating_ec2_calls_only_touch_resources_tagged_as_ours(action: str, resource: str) -> None:
    statements = _statements(action)
    assert statements
    for statement in statements:
        assert _resources(statement) == [resource]
        assert statement["Condition"] == OURS


def test_hook_tags_only_images_and_snapshots_with_its_own_tag_keys() -> None:
    statements = _statements("ec2:CreateTags")
    contract = {
        tags.BROUGHT_TO_YOU_BY,
        tags.CLUSTER_NAME,
        tags.CREATED_BY,
        tags.CREATED_BY_NAMESPACE,
        tags.PACKER_REPO,
        tags.PACKER_REPO_BRANCH,
        tags.STATUS,
        tags.CREATE_TIMESTAMP,
        tags.BUILD_ID,
        tags.JOB_ID,
        tags.BASE_AMI,
        tags.PACKER_REPO_COMMIT,
        tags.DISABLED_AT,
    }
    ownership = []
    for statement in statements:
        assert statement["Action"] == ["ec2:CreateTags"]
        assert sorted(_resources(statement)) == [IMAGES, SNAPSHOTS]
        condition = dict(statement["Condition"])
        allowed = condition.pop("ForAllValues:StringEquals")
        assert set(allowed) == {"aws:TagKeys"}
        assert set(allowed["aws:TagKeys"]) == contract
        assert condition in (OURS, FIRST_TAGGING), statement["Sid"]
        ownership.append(condition)
    # Retagging what is ours, and the first tagging of a fresh AMI or its snapshots, which sets the tag.
    assert sorted(map(json.dumps, ownership)) == sorted(map(json.dumps, [OURS, FIRST_TAGGING]))
    management = tags.Owner.of("ami-builds", "packer-builder", parse_spec(SEED_SPEC)).tags
    assert set(management) <= contract
    assert management[tags.BROUGHT_TO_YOU_BY] == tags.OPERATOR_NAME


def test_hook_deletes_only_the_disabled_at_tag_of_its_own_images() -> None:
    """Enabling an AMI again drops its removal clock; no other tag, nothing not ours, never every tag at once."""
    (statement,) = _statements("ec2:DeleteTags")
    assert statement["Action"] == ["ec2:DeleteTags"]
    assert _resources(statement) == [IMAGES]
    assert statement["Condition"] == {
        **OURS,
        "ForAllValues:StringEquals": {"aws:TagKeys": [tags.DISABLED_AT]},
        # A DeleteTags without keys deletes every tag, and ForAllValues holds for no keys at all.
        "Null": {"aws:TagKeys": "false"},
    }


def test_hook_reads_public_aws_parameters_and_its_publish_prefix() -> None:
    (base,) = [s for s in _statements("ssm:GetParameter") if s["Sid"] == "ReadBaseImageParameters"]
    assert base["Action"] == ["ssm:GetParameter"]
    assert base["Resource"] == ["arn:aws:ssm:*::parameter/aws/service/*"]
    resources = {resource for s in _statements("ssm:GetParameter") for resource in _resources(s)}
    assert resources == {"arn:aws:ssm:*::parameter/aws/service/*", PUBLISH_PARAMETERS}


def test_hook_writes_parameters_only_under_the_publish_prefix() -> None:
    (publishing,) = _statements("ssm:PutParameter")
    assert _resources(publishing) == [PUBLISH_PARAMETERS]
    assert sorted(publishing["Action"]) == [
        "ssm:AddTagsToResource",
        "ssm:DeleteParameter",
        "ssm:GetParameter",
        "ssm:ListTagsForResource",
        "ssm:PutParameter",
    ]
    default_prefix = load_yaml(CHART / "values.yaml")["hook"]["publishParameterPrefix"]
    assert f"arn:aws:ssm:*:*:parameter{default_prefix}*" == PUBLISH_PARAMETERS


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


@pytest.mark.parametrize("doc", [DOCS, FRESHNESS, README, OPERATIONS], ids=lambda p: p.name)
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


def state_table() -> str:
    """app.core.states.TABLE as docs/freshness.md shows it."""
    lines = [
        "| State | Meaning | Which facts lead to it | Ready | The hook looks again |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| `{r.state.value}` | {r.means} | {r.when} | {r.ready} | {r.again} |" for r in TABLE]
    return "\n".join(lines) + "\n"


def test_freshness_doc_shows_the_state_table_of_the_code() -> None:
    """docs/freshness.md's state table is app.core.states.TABLE, row for row, in the order classify asks."""
    assert "### States\n\n" + state_table() in FRESHNESS.read_text()


def test_freshness_doc_names_real_conditions() -> None:
    types = {value for name, value in vars(conditions).items() if name.isupper() and isinstance(value, str)}
    cells = _table_after(FRESHNESS.read_text(), "### Conditions to watch")
    documented = {cell.strip("`") for cell in cells}
    assert all(re.fullmatch(r"`\w+`", cell) for cell in cells), cells
    assert documented <= types
    assert {"BaseImageOutdated", "Scheduled", "Suspended"} <= documented


# -- item 9: the `kubectl get pb -w` sample is one the hook really produces -----------------------------------------


def _table_sample(text: str, before: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of the sample output in the code block right after `before` (a regex), cut where
    kubectl aligns the header's columns."""
    match = re.search(before + r"\n\n```\n(.*?)```", text, re.DOTALL)
    assert match is not None, f"no sample output after {before!r}"
    header, *rows = match.group(1).rstrip("\n").splitlines()
    # Names are one space apart inside, more between; found in place (`JOB` is also in `JOB STATUS`).
    found = list(re.finditer(r"\S+(?: \S+)*", header))
    names = [match.group() for match in found]
    starts = [match.start() for match in found]
    ends = [*starts[1:], None]
    cells = [{name: row[a:b].strip() for name, a, b in zip(names, starts, ends, strict=True)} for row in rows]
    return names, cells


def _watch_sample() -> tuple[list[str], list[dict[str, str]]]:
    return _table_sample(DOCS.read_text(), r"get pb -w\n```")


def test_freshness_samples_have_the_crd_printer_columns() -> None:
    """docs/freshness.md's `kubectl get pb` sample and its `-o wide` one, the last release channel's AMI
    included (empty: its builder has no channels)."""
    (version,) = load_yaml(CRD_FILE)["spec"]["versions"]
    every = [c["name"].upper() for c in version["additionalPrinterColumns"]]
    narrow = [c["name"].upper() for c in version["additionalPrinterColumns"] if not c.get("priority")]
    text = FRESHNESS.read_text()
    names, rows = _table_sample(text, r"to its rebuild in Monday's window:")
    assert names == ["NAME", *narrow]
    assert len(rows) == 6
    names, rows = _table_sample(text, r"`-o wide` adds [^`]*?\):")
    assert names == ["NAME", *every]
    ((row),) = rows
    assert row["REGION"] == "us-west-2"
    assert row["LAST CHANNEL AMI"] == ""


def test_watch_sample_has_the_crd_printer_columns() -> None:
    (version,) = load_yaml(CRD_FILE)["spec"]["versions"]
    columns = [c["name"].upper() for c in version["additionalPrinterColumns"] if not c.get("priority")]
    names, _ = _watch_sample()
    assert names == ["NAME", *columns]


def test_watch_sample_shows_states_of_a_first_build_in_order() -> None:
    states = set(State)
    _, rows = _watch_sample()
    assert all(row["STATE"] in states for row in rows), [row["STATE"] for row in rows]
    assert [row["STATE"] for row in rows] == [
        State.JOB_CREATION,
        State.JOB_RUNNING,
        State.AMI_CREATED,
    ]
    assert {row["NAME"] for row in rows} == {load_yaml(EXAMPLES / "packerbuilder.yaml")["metadata"]["name"]}


def _sync(req: dict[str, Any], facts: AmiFacts, minutes: int) -> dict[str, Any]:
    decision = decide.decide(
        world_of(HookRequest.model_validate(req)), facts, T0 + timedelta(minutes=minutes)
    )
    answer: dict[str, Any] = json.loads(json.dumps(_response(decision)))
    return answer


def _first_build_statuses() -> list[dict[str, Any]]:
    """The statuses the hook writes for a new builder: Job asked for, Job running, AMI built and recorded."""
    base = base_image()
    facts = AmiFacts(base_image=base)
    created = _sync(request(parent()), facts, 0)
    (job,) = created["children"]
    followed = _sync(request(parent(status=created["status"]), [running(job)]), facts, 1)
    done = succeeded(job)
    built = Image("ami-0b1a2b3c4d5e6f708", "available", T0 + timedelta(minutes=20), "opsy-built")
    recorded = _sync(
        request(parent(status=followed["status"]), [done], [build_pod(done, f"us-west-2:{built.image_id}")]),
        AmiFacts(base_image=base, built=(built,)),
        30,
    )
    return [created["status"], followed["status"], recorded["status"]]


def test_watch_sample_rows_are_what_the_hook_writes() -> None:
    """Each row has the state, Job status and filled or empty columns of the hook's status at that step."""
    _, rows = _watch_sample()
    statuses = _first_build_statuses()
    ami = re.compile(r"ami-[0-9a-f]{17}")
    assert len(rows) == len(statuses)
    for row, status in zip(rows, statuses, strict=True):
        assert row["STATE"] == status["state"]
        (ready,) = [c["status"] for c in status["conditions"] if c["type"] == "Ready"]
        assert row["READY"] == ready
        assert row["JOB STATUS"] == status["jobStatus"]
        assert row["JOB STATUS"] in {s.value for s in JobStatus}
        assert ami.fullmatch(row["BASE AMI"])
        assert status["lastRunBaseImageID"]
        assert bool(row["BUILT AMI"]) == bool(status.get("lastRunBuiltImageID")), row
        assert not row["BUILT AMI"] or ami.fullmatch(row["BUILT AMI"])
        assert bool(row["NEXT BUILD"]) == bool(status.get("nextBuildTime")), row
        # spec.suspend defaults to false in the CRD, so the column shows it.
        assert row["SUSPENDED"] == "false"
        assert re.fullmatch(r"\d+[smhd]", row["AGE"])
    # The same base AMI throughout, and the next build at the expiry, 48 h after the build finished (the AMI's
    # create-timestamp is the Job's completion time, as the doc says).
    assert len({row["BASE AMI"] for row in rows}) == 1
    finished = T0 + timedelta(minutes=25)  # tests.builders.succeeded
    assert statuses[-1]["nextBuildTime"] == format_timestamp(finished + timedelta(hours=48))
    assert "48 hours after the build finished" in DOCS.read_text()
    assert rows[-1]["NEXT BUILD"] == format_timestamp(tags.parse_timestamp(rows[-1]["NEXT BUILD"]))
