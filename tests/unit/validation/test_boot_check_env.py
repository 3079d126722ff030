"""The boot check's inputs: what the validation Job sets is read once, and every wrong one is named."""

import json

import pytest

from app.model import tags
from app.validation.boot_check_env import (
    AMI_ID,
    AMI_IDS,
    AMI_REGION,
    BASE_AMI_ID,
    BUILD_ID,
    INSTANCE_PROFILE,
    INSTANCE_TYPE,
    PACKER_BUILDER,
    PACKER_REPO_COMMIT,
    POLL_SECONDS,
    REQUIRED,
    SECURITY_GROUP_IDS,
    SSM_COMMANDS,
    SUBNET_ID,
    TAGS,
    TERMINATION_MESSAGE_PATH,
    TIMEOUT_SECONDS,
    VALIDATION_TAG,
    Artifact,
    BootCheckEnv,
    InvalidInput,
)

AMI = "ami-0b1a2b3c4d5e6f708"
COPY = "ami-0c1a2b3c4d5e6f709"
ARM = "ami-0d1a2b3c4d5e6f70a"
SUBNET = "subnet-0123456789abcdef0"
BUILD = "6f1c7d2e-0b9a-5c4e-8f3d-2a1b0c9d8e7f"
MINIMAL = {
    AMI_ID: AMI,
    AMI_REGION: "us-west-2",
    AMI_IDS: f"us-west-2:{AMI}:x86_64",
    BUILD_ID: BUILD,
    SUBNET_ID: SUBNET,
}


def _read(**changes: str) -> BootCheckEnv:
    return BootCheckEnv.from_environ({**MINIMAL, **changes})


def _problem(**changes: str) -> str:
    with pytest.raises(InvalidInput) as raised:
        _read(**changes)
    return str(raised.value)


def test_the_minimal_environment_takes_the_defaults() -> None:
    env = _read()
    assert env.ami_id == AMI
    assert env.region == "us-west-2"
    assert env.artifacts == (Artifact("us-west-2", AMI, "x86_64"),)
    assert (env.instance_type, env.security_group_ids, env.instance_profile, env.ssm_commands) == (
        "",
        (),
        "",
        (),
    )
    assert env.timeout_seconds == 1500
    assert env.poll_seconds == 10
    assert env.termination_message_path == "/dev/termination-log"


def test_every_input_is_read() -> None:
    env = _read(
        **{
            AMI_IDS: f"\nus-west-2:{AMI}:x86_64\r\nus-east-1:{COPY}:x86_64\nus-west-2:{ARM}:arm64\n\n",
            BASE_AMI_ID: "ami-0a1f30a1b2c3d4e03",
            PACKER_BUILDER: "ami-builds/eks-node",
            PACKER_REPO_COMMIT: "0123456789abcdef0123456789abcdef01234567",
            INSTANCE_TYPE: "m7i-flex.large",
            SECURITY_GROUP_IDS: " sg-0123456789abcdef0, sg-01234567 ,sg-0123456789abcdef0",
            INSTANCE_PROFILE: "arn:aws:iam::123456789012:instance-profile/platform/ami-boot-check",
            SSM_COMMANDS: json.dumps(["systemctl is-active kubelet", "test -s /etc/eks/release"]),
            TAGS: json.dumps({tags.CLUSTER_NAME: "prod", tags.CREATED_BY: "eks-node"}),
            TIMEOUT_SECONDS: "600",
            POLL_SECONDS: "0.5",
            TERMINATION_MESSAGE_PATH: "/tmp/message",
        }
    )
    assert env.artifacts == (
        Artifact("us-east-1", COPY, "x86_64"),
        Artifact("us-west-2", AMI, "x86_64"),
        Artifact("us-west-2", ARM, "arm64"),
    )
    assert env.security_group_ids == ("sg-0123456789abcdef0", "sg-01234567")
    assert env.ssm_commands == ("systemctl is-active kubelet", "test -s /etc/eks/release")
    assert (env.timeout_seconds, env.poll_seconds) == (600, 0.5)
    assert env.instance_profile.endswith("/platform/ami-boot-check")
    assert env.termination_message_path == "/tmp/message"


def test_an_ami_ids_line_may_leave_the_architecture_out() -> None:
    assert _read(**{AMI_IDS: f"us-west-2:{AMI}"}).artifacts == (Artifact("us-west-2", AMI),)


def test_the_instance_is_tagged_ours_with_the_build_and_the_management_tags() -> None:
    management = {tags.CLUSTER_NAME: "prod", tags.CREATED_BY: "eks-node", "Name": "node canary"}
    env = _read(**{TAGS: json.dumps(management)})
    assert env.instance_tags == {
        **management,
        tags.BROUGHT_TO_YOU_BY: tags.OPERATOR_NAME,
        VALIDATION_TAG: BUILD,
    }
    assert _read().instance_tags == {
        "Name": f"ami-boot-check {AMI}",
        tags.BROUGHT_TO_YOU_BY: tags.OPERATOR_NAME,
        VALIDATION_TAG: BUILD,
    }


@pytest.mark.parametrize("name", REQUIRED)
def test_a_missing_required_input_is_named(name: str) -> None:
    assert _problem(**{name: ""}) == f"{name} is not set"
    assert _problem(**{name: "  "}) == f"{name} is not set"


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        (AMI_ID, "ami-12", "'ami-12' is not an AMI id (ami-…)"),
        (AMI_REGION, "Oregon", "'Oregon' is not an AWS region"),
        (AMI_IDS, f"us-west-2:{AMI}:x86_64\n{COPY}", f"line 2 '{COPY}' is not region:ami-id:architecture"),
        (
            AMI_IDS,
            f"us-west-2:{AMI}:x86-64",
            f"line 1 'us-west-2:{AMI}:x86-64' is not region:ami-id:architecture",
        ),
        (AMI_IDS, f"us-east-1:{AMI}:x86_64", f"has no line for AMI_ID {AMI} in AMI_REGION us-west-2"),
        (BUILD_ID, "build\n2", "'build\\n2' cannot be an EC2 tag value"),
        (SUBNET_ID, "sg-0123456789abcdef0", "'sg-0123456789abcdef0' is not a subnet id (subnet-…)"),
        (BASE_AMI_ID, "latest", "'latest' is not an AMI id (ami-…)"),
        (PACKER_BUILDER, "eks-node", "'eks-node' is not namespace/name"),
        (PACKER_REPO_COMMIT, "main", "'main' is not a git commit"),
        (INSTANCE_TYPE, "large", "'large' is not an instance type"),
        (SECURITY_GROUP_IDS, "sg-0123456789abcdef0,default", "'default' is not a security group id (sg-…)"),
        (
            INSTANCE_PROFILE,
            "arn:aws:iam::123:role/x",
            "'arn:aws:iam::123:role/x' is not an instance profile name or ARN",
        ),
        (
            SSM_COMMANDS,
            "systemctl is-active kubelet",
            "is not JSON (Expecting value at character 0); expected a list of strings",
        ),
        (SSM_COMMANDS, '"systemctl is-active kubelet"', "is not a JSON list of non-empty strings"),
        (SSM_COMMANDS, '["true", ""]', "is not a JSON list of non-empty strings"),
        (TAGS, '["prod"]', "is not a JSON object of strings"),
        (TAGS, '{"cluster-name": 1}', "is not a JSON object of strings"),
        (
            TAGS,
            '{"aws:cloudformation:stack-name": "x"}',
            "key 'aws:cloudformation:stack-name' cannot be an EC2 tag key",
        ),
        (
            TAGS,
            json.dumps({VALIDATION_TAG: "x"}),
            f"sets {VALIDATION_TAG}, which the check sets to BUILD_ID itself",
        ),
        (TAGS, '{"brought-to-you-by": "me"}', "sets brought-to-you-by to 'me', not opsy-the-ami-operator"),
        (TAGS, json.dumps({"a": "x" * 257}), f"'{'x' * 80}…' cannot be an EC2 tag value"),
        (
            TAGS,
            json.dumps({f"k{n}": "v" for n in range(48)}),
            "has too many tags: with the check's own, more than EC2's 50",
        ),
        (TIMEOUT_SECONDS, "30m", "'30m' is not a positive number of seconds"),
        (TIMEOUT_SECONDS, "0", "'0' is not a positive number of seconds"),
        (POLL_SECONDS, "nan", "'nan' is not a positive number of seconds"),
    ],
)
def test_a_wrong_input_is_named_with_what_is_wrong(name: str, value: str, problem: str) -> None:
    assert _problem(**{name: value}) == f"{name} {problem}"


def test_every_wrong_input_is_named_at_once_on_one_line() -> None:
    message = _problem(**{AMI_ID: "ami-x", SUBNET_ID: "", SSM_COMMANDS: "[1]"})
    assert message == (
        f"{AMI_ID} 'ami-x' is not an AMI id (ami-…); {SUBNET_ID} is not set; "
        f"{SSM_COMMANDS} is not a JSON list of non-empty strings"
    )
    assert "\n" not in message


def test_a_long_value_is_cut_in_the_message() -> None:
    message = _problem(**{AMI_ID: "ami-" + "z" * 500})
    assert len(message) < 120
