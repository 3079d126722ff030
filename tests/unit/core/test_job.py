"""The Packer command line and the Job manifest: what runs, in which order, and what the API server accepts."""

import copy
import json
import re
import shlex
from collections.abc import Iterator
from importlib import resources
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # ships no type information
import pytest

from app.core.build import (
    ANNOTATION_BASE_AMI,
    ANNOTATION_COMMAND,
    ANNOTATION_REPLACES,
    LABEL_ATTEMPT,
    LABEL_BUILD_ID,
    LABEL_GENERATION,
    LABEL_JOB_ID,
    LABEL_MANAGED_BY,
    LABEL_OWNER_UID,
    LABEL_STEP,
    MANAGED_BY,
    PACKER_CONTAINER,
    BuildPlan,
    plan_build,
)
from app.core.job import (
    container_script,
    packer_command,
    parse_termination_message,
    render_job,
    termination_commit,
)
from app.core.observed import observe_job
from app.core.outcome import Artifact, Kind, Outcome
from app.core.validation_job import render_validation_job
from app.model.spec import ObjectMeta, SpecError, parse_spec
from app.model.tags import Image
from tests.builders import T0, make_spec, succeeded
from tests.seed import SEED_SPEC

BASE = "ami-0123456789abcdef0"
SHA = "0123456789abcdef0123456789abcdef01234567"
UID = "0f3c7a52-9c1e-4b8e-a4a5-1b2c3d4e5f60"
FILTERS = [{"name": "owner-id", "values": ["602401143452"]}]


def argvs(command: str) -> list[list[str]]:
    """The argument vectors of an `a && b && c` command line, split the way sh would."""
    result: list[list[str]] = [[]]
    for word in shlex.split(command):
        if word == "&&":
            result.append([])
        else:
            result[-1].append(word)
    return result


def by_sub(command: str) -> dict[str, list[str]]:
    return {argv[1]: argv for argv in argvs(command)}


# -- packer_command -------------------------------------------------------------------------------------------


def test_default_command_without_filters() -> None:
    assert (
        packer_command(make_spec(), None)
        == "packer init . && packer validate . && packer build -color=false ."
    )


def test_seed_command() -> None:
    assert packer_command(parse_spec(SEED_SPEC), BASE) == (
        "packer init . && "
        f"packer validate -var ami_id={BASE} -var region=us-west-2 . && "
        f"packer build -color=false -on-error=cleanup -force -var ami_id={BASE} -var region=us-west-2 ."
    )


@pytest.mark.parametrize(
    "listed",
    [
        ["build", "validate", "init"],
        ["validate", "build", "init"],
        ["build", "init"],
        ["validate"],
        [],
    ],
    ids=lambda listed: "+".join(listed) or "none",
)
def test_always_init_validate_build(listed: list[str]) -> None:
    commands = [{"subCommand": sub, "args": [f"-marker-{sub}"]} for sub in listed]
    runs = argvs(packer_command(make_spec({"commands": commands}), None))

    assert [argv[:2] for argv in runs] == [["packer", "init"], ["packer", "validate"], ["packer", "build"]]
    for argv in runs:
        assert argv[-1] == "."
        assert (f"-marker-{argv[1]}" in argv) == (argv[1] in listed)


@pytest.mark.parametrize(
    ("base", "filters", "expect_vars"),
    [(BASE, FILTERS, True), (None, [], False), (BASE, [], True), (None, FILTERS, False)],
    ids=["filters+base", "neither", "base-from-a-parameter", "filters-without-base"],
)
def test_base_ami_vars_whenever_a_base_ami_is_known(
    base: str | None, filters: list[dict[str, Any]], expect_vars: bool
) -> None:
    runs = by_sub(packer_command(make_spec(amiFilters=filters, region="eu-central-1"), base))
    facts = ["-var", f"ami_id={base}", "-var", "region=eu-central-1"]

    assert "-var" not in runs["init"]
    for sub in ("validate", "build"):
        assert (runs[sub][-5:-1] == facts) is expect_vars
        assert ("-var" in runs[sub]) is expect_vars


@pytest.mark.parametrize(
    ("command", "sub", "present", "absent"),
    [
        ({"subCommand": "build", "color": True}, "build", [], ["-color=false"]),
        ({"subCommand": "build", "color": False}, "build", ["-color=false"], []),
        # init and validate reject -color and -on-error as undefined flags
        ({"subCommand": "validate", "color": False}, "validate", [], ["-color=false"]),
        ({"subCommand": "init", "onError": "abort"}, "init", [], ["-on-error=abort"]),
        ({"subCommand": "build", "onError": "abort"}, "build", ["-on-error=abort"], []),
        (
            {"subCommand": "build", "onError": "run-cleanup-provisioner"},
            "build",
            ["-on-error=run-cleanup-provisioner"],
            [],
        ),
        ({"subCommand": "init", "args": ["-upgrade"]}, "init", ["-upgrade"], []),
        ({"subCommand": "build", "debug": True}, "build", [], ["-debug"]),
        ({"subCommand": "validate", "debug": True}, "validate", [], ["-debug"]),
    ],
    ids=[
        "color-true",
        "color-false",
        "validate-no-color-flag",
        "init-no-on-error",
        "on-error",
        "on-error-provisioner",
        "init-args",
        "build-debug-is-not--debug",
        "validate-debug-is-not--debug",
    ],
)
def test_command_options(command: dict[str, Any], sub: str, present: list[str], absent: list[str]) -> None:
    argv = by_sub(packer_command(make_spec({"commands": [command]}), None))[sub]

    for flag in present:
        assert flag in argv
    for flag in absent:
        assert flag not in argv


def test_args_are_each_one_argument_before_the_project_dir() -> None:
    command = {"subCommand": "build", "args": ["-force", "-only=amazon-ebs.fips", "-parallel-builds=1"]}
    argv = by_sub(packer_command(make_spec({"commands": [command]}), None))["build"]

    assert argv[-4:] == ["-force", "-only=amazon-ebs.fips", "-parallel-builds=1", "."]


def test_variables_sorted_by_name_and_var_files_in_order() -> None:
    command = {
        "subCommand": "validate",
        "variables": {"zone": "b", "instance_type": "m6i.large", "name": "node ami"},
        "variablesFile": "vars/common.pkrvars.hcl",
        "variablesFiles": ["vars/fips.pkrvars.hcl", "vars/size.pkrvars.hcl"],
    }
    argv = by_sub(packer_command(make_spec({"commands": [command]}), None))["validate"]

    assert argv == [
        "packer",
        "validate",
        "-var-file=vars/common.pkrvars.hcl",
        "-var-file=vars/fips.pkrvars.hcl",
        "-var-file=vars/size.pkrvars.hcl",
        "-var",
        "instance_type=m6i.large",
        "-var",
        "name=node ami",
        "-var",
        "zone=b",
        ".",
    ]


def test_found_base_ami_wins_over_user_variables() -> None:
    command = {"subCommand": "build", "variables": {"ami_id": "ami-11111111", "region": "us-east-1"}}
    argv = by_sub(packer_command(make_spec({"commands": [command]}, amiFilters=FILTERS), BASE))["build"]

    # Packer keeps the last -var for a name
    assert argv[-5:] == ["-var", f"ami_id={BASE}", "-var", "region=us-west-2", "."]


def test_first_entry_for_a_subcommand_wins() -> None:
    commands = [{"subCommand": "build", "args": ["-first"]}, {"subCommand": "build", "args": ["-second"]}]
    argv = by_sub(packer_command(make_spec({"commands": commands}), None))["build"]

    assert "-first" in argv
    assert "-second" not in argv


def test_command_is_deterministic() -> None:
    one = make_spec({"commands": [{"subCommand": "build", "variables": {"a": "1", "b": "2", "c": "3"}}]})
    two = make_spec({"commands": [{"subCommand": "build", "variables": {"c": "3", "a": "1", "b": "2"}}]})

    assert packer_command(one, BASE) == packer_command(two, BASE) == packer_command(one, BASE)
    assert container_script(one, BASE) == container_script(two, BASE)


def test_values_are_quoted_once() -> None:
    command = {"subCommand": "build", "args": ["it's", "$(touch pwned)"], "variables": {"v": "a b"}}
    text = packer_command(make_spec({"commands": [command]}), None)

    assert by_sub(text)["build"] == [
        "packer",
        "build",
        "-color=false",
        "-var",
        "v=a b",
        "it's",
        "$(touch pwned)",
        ".",
    ]


# -- the spec keeps shell-hostile values out of the fields that are not quoted by us ---------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("branch", "main; touch pwned"),
        ("branch", "$(touch pwned)"),
        ("branch", "`touch pwned`"),
        ("branch", "it's"),
        ("branch", "two words"),
        ("branch", "main\ntouch pwned"),
        ("dir", "/etc"),
        ("dir", "../outside"),
        ("dir", "packer/../../outside"),
        ("dir", ""),
        ("repoURL", "https://example.com/x.git; touch pwned"),
        ("repoURL", "--upload-pack=touch pwned"),
        ("secret", "$(x)"),
    ],
)
def test_spec_rejects_hostile_values(field: str, value: str) -> None:
    raw = copy.deepcopy(SEED_SPEC)
    raw["builder"][field] = value

    with pytest.raises(SpecError) as error:
        parse_spec(raw)
    assert error.value.field == f"spec.builder.{field}"


# -- parse_termination_message ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("us-west-2:ami-0123456789abcdef0", [("us-west-2", "ami-0123456789abcdef0")]),
        ("us-west-2:ami-1234abcd", [("us-west-2", "ami-1234abcd")]),
        (
            "us-west-2:ami-0123456789abcdef0,us-east-1:ami-0fedcba9876543210",
            [("us-west-2", "ami-0123456789abcdef0"), ("us-east-1", "ami-0fedcba9876543210")],
        ),
        ("  us-west-2:ami-1234abcd\n", [("us-west-2", "ami-1234abcd")]),
        (
            "us-west-2:ami-1234abcd , us-gov-west-1:ami-abcdef12",
            [("us-west-2", "ami-1234abcd"), ("us-gov-west-1", "ami-abcdef12")],
        ),
        # only the first line holds AMIs; later lines are facts about the build
        (f"us-west-2:ami-1234abcd\ncommit={SHA}", [("us-west-2", "ami-1234abcd")]),
        (
            f"us-west-2:ami-1234abcd,us-east-1:ami-abcdef12\ncommit={SHA}\n",
            [("us-west-2", "ami-1234abcd"), ("us-east-1", "ami-abcdef12")],
        ),
        ("us-west-2:ami-1234abcd\nus-east-1:ami-abcdef12", [("us-west-2", "ami-1234abcd")]),
        ("us-west-2:ami-1234abcd\ngarbage", [("us-west-2", "ami-1234abcd")]),
        ("us-west-2:ami-1234abcd\r\ncommit=x", [("us-west-2", "ami-1234abcd")]),
        (f"commit={SHA}", []),
        (f"commit={SHA}\nus-west-2:ami-1234abcd", []),
        ("\nus-west-2:ami-1234abcd", []),
        ("us-west-2:ami-1234abcd,us-west-2:ami-1234abcd", [("us-west-2", "ami-1234abcd")]),
        ("", []),
        ("   \n", []),
        ("garbage", []),
        ("ami-1234abcd", []),
        ("us-west-2: ami-1234abcd", []),
        ("us-west-2:ami-1234abc", []),
        ("us-west-2:ami-0123456789abcdef01", []),
        ("us-west-2:ami-XYZ12345", []),
        ("US-WEST-2:ami-1234abcd", []),
        ("westus2:ami-1234abcd", []),
        ("us-west-2:ami-1234abcd,rm -rf /", []),
        ("Error: build failed\nus-west-2:ami-1234abcd", []),
    ],
)
def test_parse_termination_message(message: str, expected: list[tuple[str, str]]) -> None:
    assert parse_termination_message(message) == expected


# -- termination_commit -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (f"us-west-2:ami-1234abcd\ncommit={SHA}", SHA),
        (f"us-west-2:ami-1234abcd,us-east-1:ami-abcdef12\ncommit={SHA}", SHA),
        (f"us-west-2:ami-1234abcd\ncommit={SHA}\n", SHA),
        (f"us-west-2:ami-1234abcd\r\ncommit={SHA}\r\n", SHA),
        (f"us-west-2:ami-1234abcd\nbuilder=fips\ncommit={SHA}", SHA),
        # the first commit line decides
        (f"us-west-2:ami-1234abcd\ncommit={SHA}\ncommit={'b' * 40}", SHA),
        (f"us-west-2:ami-1234abcd\ncommit=abc\ncommit={SHA}", ""),
        # the older one-line message, and no message
        ("us-west-2:ami-1234abcd", ""),
        ("", ""),
        # only a line after the first
        (f"commit={SHA}", ""),
        # exactly 40 lowercase hex digits
        (f"us-west-2:ami-1234abcd\ncommit={SHA.upper()}", ""),
        (f"us-west-2:ami-1234abcd\ncommit={SHA[:-1]}", ""),
        (f"us-west-2:ami-1234abcd\ncommit={SHA}0", ""),
        (f"us-west-2:ami-1234abcd\ncommit={'0' * 64}", ""),
        (f"us-west-2:ami-1234abcd\ncommit={SHA[:-1]}g", ""),
        ("us-west-2:ami-1234abcd\ncommit=", ""),
        (f"us-west-2:ami-1234abcd\ncommit= {SHA}", ""),
        (f"us-west-2:ami-1234abcd\ncommit={SHA}; rm -rf /", ""),
        (f"us-west-2:ami-1234abcd\nCOMMIT={SHA}", ""),
        (f"us-west-2:ami-1234abcd\ncommit:{SHA}", ""),
        (f"us-west-2:ami-1234abcd\n{SHA}", ""),
    ],
)
def test_termination_commit(message: str, expected: str) -> None:
    assert termination_commit(message) == expected


# -- container_script ---------------------------------------------------------------------------------------


def _package_file(name: str) -> str:
    return (resources.files("app.core") / "container" / name).read_text(encoding="utf-8")


def test_script_is_a_header_then_the_package_files() -> None:
    """The script and the awk program ship as files; only the header depends on the spec."""
    spec = make_spec({"dir": "packer/generic-fips"}, amiFilters=FILTERS)
    script = container_script(spec, BASE)
    body = _package_file("packer-build.sh")
    header = script.removesuffix(body)

    assert header != script
    assert header.endswith("\n")
    words = shlex.split(header, comments=True)
    assert "default_checkout_dir=/workspace/git/repo" in words
    assert "default_termination_log=/dev/termination-log" in words
    assert f"awk_program={_package_file('packer-filter.awk')}" in words
    runs = argvs(packer_command(spec, BASE))
    runs[2][2:2] = ["-machine-readable"]
    assert header.splitlines()[-4:] == [
        "enter_project() { cd -- ./packer/generic-fips; }",
        f"packer_init() {{ {shlex.join(runs[0])}; }}",
        f"packer_validate() {{ {shlex.join(runs[1])}; }}",
        f"packer_build() {{ exec {shlex.join(runs[2])}; }}",
    ]
    assert container_script(spec, BASE) == script


# -- render_job ---------------------------------------------------------------------------------------------

LONG_NAME = "a-very-long-packer-builder-name-" + "x" * 200


def _seed_without(*paths: tuple[str, str]) -> dict[str, Any]:
    raw = copy.deepcopy(SEED_SPEC)
    for section, key in paths:
        del raw[section][key]
    return raw


CASES: dict[str, tuple[str, dict[str, Any], str | None, str]] = {
    # name: (parent name, raw spec, base AMI, AMI it replaces)
    "seed": ("eks-nodes", SEED_SPEC, BASE, ""),
    "seed-replacing": ("eks-nodes", SEED_SPEC, BASE, "ami-0aaaaaaaaaaaaaaaa"),
    "no-filters": (
        "standalone",
        {k: v for k, v in SEED_SPEC.items() if k != "amiFilters"},
        None,
        "",
    ),
    "no-secrets": ("public", _seed_without(("gitSync", "secret"), ("builder", "secret")), BASE, ""),
    "ssh-scp-like": (
        "private-ssh",
        {**SEED_SPEC, "builder": {**SEED_SPEC["builder"], "repoURL": "git@github.com:org/images.git"}},
        BASE,
        "",
    ),
    "ssh-url": (
        "private-ssh-url",
        {**SEED_SPEC, "builder": {**SEED_SPEC["builder"], "repoURL": "ssh://git@git.example.com:2222/org/x"}},
        BASE,
        "",
    ),
    "service-account": (
        "irsa",
        {
            **_seed_without(("builder", "secret")),
            "builder": {
                **_seed_without(("builder", "secret"))["builder"],
                "serviceAccountName": "packer-builder",
            },
        },
        BASE,
        "",
    ),
    "long-parent-name": (LONG_NAME, SEED_SPEC, BASE, "ami-0bbbbbbbbbbbbbbbb"),
    "everything": (
        "everything",
        {
            **SEED_SPEC,
            "timeOuts": {"buildTimeout": "90m"},
            "builder": {
                **SEED_SPEC["builder"],
                "serviceAccountName": "packer",
                "commands": [
                    {"subCommand": "init", "args": ["-upgrade"]},
                    {
                        "subCommand": "validate",
                        "variables": {"name": "it's $(x)"},
                        "variablesFile": "a b.hcl",
                        "variablesFiles": ["c.hcl"],
                    },
                    {"subCommand": "build", "color": True, "onError": "abort", "args": ["-timestamp-ui"]},
                ],
            },
        },
        BASE,
        "",
    ),
}


def render(case: str, attempt: int = 0, generation: int = 3) -> tuple[dict[str, Any], BuildPlan]:
    parent, raw, base, replaces = CASES[case]
    plan = plan_build(parent, UID, generation, replaces, attempt, base)
    return render_job(parent, "builds", UID, parse_spec(raw), plan), plan


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, f"{path}[{index}]")


def containers(job: dict[str, Any]) -> list[dict[str, Any]]:
    pod = job["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def packer(job: dict[str, Any]) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        c for c in job["spec"]["template"]["spec"]["containers"] if c["name"] == PACKER_CONTAINER
    ]
    assert len(found) == 1
    return found[0]


def git_sync(job: dict[str, Any]) -> dict[str, Any]:
    found: list[dict[str, Any]] = job["spec"]["template"]["spec"]["initContainers"]
    assert len(found) == 1
    return found[0]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def values_of(container: dict[str, Any]) -> dict[str, str]:
    return {name: entry["value"] for name, entry in env_of(container).items() if "value" in entry}


# Validation Jobs (app.core.validation_job) of the build Job of a CASES row: (row, spec.validation, commit,
# the build's AMIs as (region, AMI id, architecture), the first in spec.region).
BOOT_CHECK = {"subnetID": "subnet-0123456789abcdef0"}
VALIDATION_CASES: dict[str, tuple[str, dict[str, Any], str, tuple[tuple[str, str, str], ...]]] = {
    "image": (
        "seed",
        {"image": "registry.example.com/platform/ami-smoke:1.4"},
        SHA,
        (("us-west-2", "ami-0b1a2b3c4d5e6f708", "x86_64"),),
    ),
    "image-everything": (
        "everything",
        {
            "image": "registry.example.com/platform/ami-smoke:1.4",
            "timeout": "45m",
            "command": ["/smoke"],
            "args": ["--suite", "eks"],
            "serviceAccountName": "ami-validator",
            "env": [
                {"name": "SUBNET_ID", "value": "subnet-0123456789abcdef0"},
                {"name": "EMPTY", "value": ""},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "smoke", "key": "token"}}},
            ],
        },
        SHA,
        (
            ("eu-west-1", "ami-0c1a2b3c4d5e6f709", "x86_64"),
            ("us-west-2", "ami-0b1a2b3c4d5e6f708", "x86_64"),
            ("us-west-2", "ami-0d1a2b3c4d5e6f70a", "arm64"),
        ),
    ),
    "boot-check": (
        "seed-replacing",
        {
            "bootCheck": {
                **BOOT_CHECK,
                "instanceType": "t3.small",
                "securityGroupIDs": ["sg-0123456789abcdef0"],
                "instanceProfile": "ami-boot-check",
                "ssmCommands": ["systemctl is-active kubelet"],
            }
        },
        SHA,
        (("us-west-2", "ami-0b1a2b3c4d5e6f708", "x86_64"),),
    ),
    # A self-contained build that reported no commit: BASE_AMI_ID and PACKER_REPO_COMMIT are empty.
    "boot-check-no-base-no-commit": (
        "no-filters",
        {"bootCheck": BOOT_CHECK},
        "",
        (("us-west-2", "ami-0b1a2b3c4d5e6f708", "x86_64"),),
    ),
    "long-parent-name": (
        "long-parent-name",
        {"bootCheck": BOOT_CHECK},
        "",
        (("us-west-2", "ami-0b1a2b3c4d5e6f708", "x86_64"),),
    ),
}


def render_validation(case: str) -> dict[str, Any]:
    row, validation, commit, made = VALIDATION_CASES[case]
    parent, raw, base, replaces = CASES[row]
    spec = parse_spec({**raw, "validation": validation})
    plan = plan_build(parent, UID, 3, replaces, 0, base)
    build = observe_job(succeeded(render_job(parent, "builds", UID, spec, plan)))
    images = [Image(i, "available", T0, "opsy-built", {}, arch) for _, i, arch in made]
    artifacts = tuple(
        Artifact(r, image.image_id, image, Kind.built) for (r, _, _), image in zip(made, images, strict=True)
    )
    outcome = Outcome(
        build, Kind.validating, images[0], images[0].image_id, commit=commit, artifacts=artifacts
    )
    meta = ObjectMeta(name=parent, namespace="builds", uid=UID, generation=3)
    return render_validation_job(meta, spec, outcome, "ghcr.io/example/hook:1.0", {"created-by": parent})


# Every shape test runs on both kinds of Job the hook asks for.
SHAPED = [*(f"build:{case}" for case in CASES), *(f"validate:{case}" for case in VALIDATION_CASES)]


def shaped(case: str) -> dict[str, Any]:
    kind, name = case.split(":", 1)
    return render(name)[0] if kind == "build" else render_validation(name)


@pytest.mark.parametrize("case", SHAPED)
def test_job_is_valid_for_kubernetes(case: str) -> None:
    job = shaped(case)

    kubernetes_validate.validate(job, "1.30", strict=True)


@pytest.mark.parametrize("case", SHAPED)
def test_no_nulls_and_no_empty_values(case: str) -> None:
    job = shaped(case)

    for path, value in walk(job):
        assert value is not None, path
        if isinstance(value, dict | list | str):
            assert len(value) > 0, path


FORBIDDEN_METADATA = {"ownerReferences", "uid", "resourceVersion", "generateName", "creationTimestamp"}
FORBIDDEN_LABEL = re.compile(r"^(controller-uid|job-name|batch\.kubernetes\.io/.*)$")


@pytest.mark.parametrize("case", SHAPED)
def test_no_fields_that_are_not_ours_to_set(case: str) -> None:
    job = shaped(case)

    assert set(job) == {"apiVersion", "kind", "metadata", "spec"}
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert not FORBIDDEN_METADATA & set(job["metadata"])
    assert not FORBIDDEN_METADATA & set(job["spec"]["template"].get("metadata", {}))
    assert "selector" not in job["spec"]
    assert "manualSelector" not in job["spec"]
    assert "ttlSecondsAfterFinished" not in job["spec"]
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert not [key for key in labels if FORBIDDEN_LABEL.match(key)]


@pytest.mark.parametrize("case", CASES)
def test_name_labels_and_annotations(case: str) -> None:
    job, plan = render(case, attempt=2, generation=7)
    parent, _, base, replaces = CASES[case]
    meta = job["metadata"]
    expected_labels = {
        LABEL_OWNER_UID: UID,
        LABEL_BUILD_ID: plan.build_id,
        LABEL_JOB_ID: plan.job_id,
        LABEL_ATTEMPT: "2",
        LABEL_GENERATION: "7",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_STEP: "build",
    }

    assert meta["name"] == plan.job_name
    assert len(meta["name"]) <= 63
    assert meta["namespace"] == "builds"
    assert meta["labels"] == expected_labels
    assert job["spec"]["template"]["metadata"]["labels"] == expected_labels
    assert meta["annotations"].get(ANNOTATION_BASE_AMI) == base
    assert meta["annotations"].get(ANNOTATION_REPLACES) == (replaces or None)
    assert meta["annotations"][ANNOTATION_COMMAND] == packer_command(parse_spec(CASES[case][1]), base)
    assert parent in meta["annotations"].values()


@pytest.mark.parametrize("case", CASES)
def test_job_and_pod_policy(case: str) -> None:
    job, _ = render(case)
    spec, pod = job["spec"], job["spec"]["template"]["spec"]

    assert spec["backoffLimit"] == 0
    assert pod["restartPolicy"] == "Never"
    assert pod["terminationGracePeriodSeconds"] >= 300
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65533,
        "runAsGroup": 65533,
        "fsGroup": 65533,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    names = [c["name"] for c in containers(job)]
    assert len(names) == len(set(names))
    for container in containers(job):
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["readOnlyRootFilesystem"] is True
        assert set(container["resources"]["requests"]) >= {"cpu", "memory"}
        assert "memory" in container["resources"]["limits"]


@pytest.mark.parametrize(
    ("timeout", "seconds"), [(None, 7200), ("90m", 5400), ("1h30m", 5400), ("1d", 86400)]
)
def test_deadline_is_the_build_timeout(timeout: str | None, seconds: int) -> None:
    raw = copy.deepcopy(SEED_SPEC)
    if timeout:
        raw["timeOuts"]["buildTimeout"] = timeout
    plan = plan_build("p", UID, 1, "", 0, BASE)

    job = render_job("p", "ns", UID, parse_spec(raw), plan)

    assert job["spec"]["activeDeadlineSeconds"] == seconds


@pytest.mark.parametrize("case", CASES)
def test_service_account_only_when_set(case: str) -> None:
    job, _ = render(case)
    wanted = parse_spec(CASES[case][1]).builder.serviceAccountName

    assert job["spec"]["template"]["spec"].get("serviceAccountName") == wanted


@pytest.mark.parametrize("case", CASES)
def test_git_sync_uses_v4_settings(case: str) -> None:
    job, _ = render(case)
    spec = parse_spec(CASES[case][1])
    container = git_sync(job)
    values = values_of(container)

    assert container["image"] == spec.gitSync.image
    assert container["name"] == spec.gitSync.name
    assert values["GITSYNC_REPO"] == spec.builder.repoURL
    assert values["GITSYNC_REF"] == spec.builder.branch
    assert values["GITSYNC_ONE_TIME"] == "true"
    assert values["GITSYNC_DEPTH"] == "1"
    assert values["GITSYNC_ROOT"].startswith("/")
    assert values["GITSYNC_LINK"]
    # v4 ignores v3's names; a v3 name here would be a silently dropped setting
    assert all(name.startswith("GITSYNC_") or name == "HOME" for name in env_of(container))
    # the checkout is where git-sync publishes it, on the volume both containers share
    root_mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    packer_mounts = {m["mountPath"]: m["name"] for m in packer(job)["volumeMounts"]}
    (shared,) = [path for path in root_mounts if values["GITSYNC_ROOT"].startswith(path + "/")]
    assert packer_mounts[shared] == root_mounts[shared]
    assert f"{values['GITSYNC_ROOT']}/{values['GITSYNC_LINK']}" in packer(job)["command"][2]


def test_private_https_repo_credentials_come_from_the_secret() -> None:
    job, _ = render("seed")
    env = env_of(git_sync(job))

    assert env["GITSYNC_USERNAME"] == {
        "name": "GITSYNC_USERNAME",
        "valueFrom": {"secretKeyRef": {"name": "git-sync", "key": "username"}},
    }
    assert env["GITSYNC_PASSWORD"] == {
        "name": "GITSYNC_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "git-sync", "key": "token"}},
    }
    assert "GITSYNC_SSH_KEY_FILE" not in env


@pytest.mark.parametrize("case", ["ssh-scp-like", "ssh-url"])
def test_ssh_repo_key_and_known_hosts_are_mounted_files(case: str) -> None:
    job, _ = render(case)
    container = git_sync(job)
    values = values_of(container)
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if m.get("readOnly")]
    sources = volumes[mount["name"]]["projected"]["sources"]
    files = {
        f"{mount['mountPath']}/{item['path']}": (
            source["secret"]["name"],
            item["key"],
            bool(source["secret"].get("optional")),
        )
        for source in sources
        for item in source["secret"]["items"]
    }

    assert "GITSYNC_USERNAME" not in values
    assert "GITSYNC_PASSWORD" not in env_of(container)
    assert files[values["GITSYNC_SSH_KEY_FILE"]] == ("git-sync", "ssh", False)
    assert values["GITSYNC_SSH_KNOWN_HOSTS"] == "true"
    assert files[values["GITSYNC_SSH_KNOWN_HOSTS_FILE"]] == ("git-sync", "known_hosts", True)
    assert volumes[mount["name"]]["projected"]["defaultMode"] == 0o400


def test_public_repo_has_no_git_credentials() -> None:
    job, _ = render("no-secrets")
    env = env_of(git_sync(job))

    assert not {"GITSYNC_USERNAME", "GITSYNC_PASSWORD", "GITSYNC_SSH_KEY_FILE"} & set(env)
    assert "envFrom" not in packer(job)


SECRET_NAMES = re.compile(r"(PASSWORD|TOKEN|SECRET|ACCESS_KEY|USERNAME)")
SECRET_VALUES = re.compile(r"(AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{20,}|BEGIN [A-Z ]*PRIVATE KEY)")


@pytest.mark.parametrize("case", CASES)
def test_secrets_only_by_reference(case: str) -> None:
    job, _ = render(case)
    spec = parse_spec(CASES[case][1])

    for container in containers(job):
        for entry in container.get("env", []):
            if SECRET_NAMES.search(entry["name"]):
                assert set(entry) == {"name", "valueFrom"}, entry
                assert set(entry["valueFrom"]) == {"secretKeyRef"}
    for _, value in walk(job):
        if isinstance(value, str):
            assert not SECRET_VALUES.search(value)
    if spec.builder.secret:
        assert packer(job)["envFrom"] == [{"secretRef": {"name": spec.builder.secret}}]


@pytest.mark.parametrize("case", CASES)
def test_packer_container(case: str) -> None:
    job, plan = render(case)
    spec = parse_spec(CASES[case][1])
    container = packer(job)
    values = values_of(container)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    empty_dirs = {v["name"] for v in job["spec"]["template"]["spec"]["volumes"] if "emptyDir" in v}

    assert container["image"] == spec.builder.image
    assert container["command"] == ["/bin/sh", "-c", container_script(spec, plan.base_ami)]
    assert "args" not in container
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "File"
    assert values["AWS_REGION"] == values["AWS_DEFAULT_REGION"] == spec.region
    assert values["PKR_VAR_region"] == spec.region
    assert values["PKR_VAR_build_id"] == plan.build_id
    assert values["PKR_VAR_job_id"] == plan.job_id
    assert values.get("PKR_VAR_base_ami") == plan.base_ami
    assert values["CHECKPOINT_DISABLE"] == "1"
    # a read-only root filesystem: everything Packer writes lands on an emptyDir
    for name in ("HOME", "TMPDIR", "PACKER_PLUGIN_PATH", "PACKER_CACHE_DIR"):
        (volume,) = [
            v for path, v in mounts.items() if values[name] == path or values[name].startswith(path + "/")
        ]
        assert volume in empty_dirs, name


@pytest.mark.parametrize(
    ("commands", "logged"),
    [
        ([], False),
        ([{"subCommand": "build", "debug": False}], False),
        ([{"subCommand": "build", "debug": True}], True),
        ([{"subCommand": "init", "debug": True}, {"subCommand": "build"}], True),
    ],
)
def test_debug_sets_packer_log_not_debug_flag(commands: list[dict[str, Any]], logged: bool) -> None:
    spec = make_spec({"commands": commands})
    job = render_job("p", "ns", UID, spec, plan_build("p", UID, 1, "", 0, None))
    container = packer(job)

    assert ("PACKER_LOG" in values_of(container)) is logged
    if logged:
        assert values_of(container)["PACKER_LOG"] == "1"
    assert all("-debug" not in argv for argv in argvs(packer_command(spec, None)))


def test_spec_keeps_the_init_container_from_taking_the_build_containers_name() -> None:
    with pytest.raises(SpecError) as error:
        make_spec(gitSync={"name": PACKER_CONTAINER})
    assert error.value.field == "spec.gitSync.name"


def test_render_is_deterministic_and_fresh() -> None:
    first, _ = render("everything")
    second, _ = render("everything")
    first["metadata"]["labels"]["mutated"] = "yes"
    packer(first)["securityContext"]["readOnlyRootFilesystem"] = False
    third, _ = render("everything")

    assert json.dumps(second, sort_keys=False) == json.dumps(third, sort_keys=False)
    assert "mutated" not in third["spec"]["template"]["metadata"]["labels"]
    assert packer(third)["securityContext"]["readOnlyRootFilesystem"] is True
