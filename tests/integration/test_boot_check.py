"""The boot check against moto: each path ends with the instance terminated and one line that says why.

moto (behind tests/fakes/aws_proxy.py) launches, describes and terminates for real; tests/fakes/instance.py
plays what moto cannot: status checks that are not ok, an SSM agent and commands that are not well. Most
tests call the program's main() in-process; the SIGTERM ones run `python -m app.validation boot-check`.
Whatever the path, the `world` fixture asserts at the end that no instance is left running.
"""

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from app.model import tags
from app.validation import boot_check
from app.validation import boot_check_env as names
from tests.aws import NEWEST_EKS_130_X86, REGION, ec2_client, register_built_ami
from tests.fakes.aws_proxy import Answer, AwsProxy
from tests.fakes.instance import Outcome, SsmAgent, StatusChecks

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import InstanceTypeDef

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "helm" / "packer-builder" / "iam" / "boot-check-policy.json"
OTHER_REGION = "us-east-1"
ARM64_BASE = "ami-0a1f30a1b2c3d4e05"
BUILD = "6f1c7d2e-0b9a-5c4e-8f3d-2a1b0c9d8e7f"
MANAGEMENT = {
    tags.BROUGHT_TO_YOU_BY: tags.OPERATOR_NAME,
    tags.CLUSTER_NAME: "prod-eks",
    tags.CREATED_BY: "eks-node",
    tags.CREATED_BY_NAMESPACE: "ami-builds",
    tags.PACKER_REPO: "https://github.com/example/eks-ami.git",
    tags.PACKER_REPO_BRANCH: "main",
}
LIVE = ("pending", "running", "stopping", "stopped")
SECONDS = 60


@dataclass
class Launched:
    instance_id: str
    state: str
    instance_type: str
    subnet_id: str
    tags: dict[str, str]


def _launched(instance: "InstanceTypeDef") -> Launched:
    return Launched(
        instance["InstanceId"],
        instance["State"]["Name"],
        instance["InstanceType"],
        instance.get("SubnetId", ""),
        {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])},
    )


@dataclass
class World:
    """A VPC with a subnet and a security group, and a build's AMIs: x86_64 in REGION with its copy in
    OTHER_REGION, and an arm64 one in REGION. `env()` is what the validation Job would set."""

    moto: str
    proxy: AwsProxy
    subnet_id: str
    security_group_id: str
    primary: str
    copy: str
    arm64: str
    message_path: Path

    def ec2(self, region: str = REGION) -> "EC2Client":
        return ec2_client(self.moto, region)

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            names.AMI_ID: self.primary,
            names.AMI_REGION: REGION,
            names.AMI_IDS: f"{REGION}:{self.primary}:x86_64\n{OTHER_REGION}:{self.copy}:x86_64\n",
            names.BASE_AMI_ID: NEWEST_EKS_130_X86,
            names.BUILD_ID: BUILD,
            names.PACKER_BUILDER: "ami-builds/eks-node",
            names.PACKER_REPO_COMMIT: "0123456789abcdef0123456789abcdef01234567",
            names.SUBNET_ID: self.subnet_id,
            names.TAGS: json.dumps(MANAGEMENT),
            names.TIMEOUT_SECONDS: str(SECONDS * 2),  # never reached unless a test sets less
            names.POLL_SECONDS: "0.01",
            names.TERMINATION_MESSAGE_PATH: str(self.message_path),
        }
        env.update(overrides)
        return {name: value for name, value in env.items() if value}

    def run(self, **overrides: str) -> int:
        return boot_check.main(self.env(**overrides))

    def message(self) -> str:
        return self.message_path.read_text()

    def launched(self) -> list[Launched]:
        """Every instance in REGION with the boot check's tag, oldest first."""
        pages = (
            self.ec2()
            .get_paginator("describe_instances")
            .paginate(Filters=[{"Name": "tag-key", "Values": [names.VALIDATION_TAG]}])
        )
        instances = [i for page in pages for r in page["Reservations"] for i in r.get("Instances", [])]
        return [_launched(i) for i in sorted(instances, key=lambda i: i["LaunchTime"])]

    def running(self) -> list[str]:
        """Every instance in either region that is not terminated or on its way."""
        return [
            instance["InstanceId"]
            for region in (REGION, OTHER_REGION)
            for page in self.ec2(region)
            .get_paginator("describe_instances")
            .paginate(Filters=[{"Name": "instance-state-name", "Values": list(LIVE)}])
            for reservation in page["Reservations"]
            for instance in reservation.get("Instances", [])
        ]


@pytest.fixture
def proxy(ec2_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsProxy]:
    """Between the program and moto: its AWS calls as they reach the wire."""
    with AwsProxy(ec2_env).running() as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", proxy.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", proxy.url)
        yield proxy


@pytest.fixture
def world(ec2_env: str, proxy: AwsProxy, tmp_path: Path) -> Iterator[World]:
    ec2 = ec2_client(ec2_env)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="boot-check", Description="boot check", VpcId=vpc)["GroupId"]
    primary = register_built_ami(ec2, "eks-node-x86_64-1", tags=MANAGEMENT)
    copy = register_built_ami(ec2_client(ec2_env, OTHER_REGION), "eks-node-x86_64-1", tags=MANAGEMENT)
    arm64 = register_built_ami(ec2, "eks-node-arm64-1", tags=MANAGEMENT, base_image_id=ARM64_BASE)
    world = World(ec2_env, proxy, subnet, group, primary, copy, arm64, tmp_path / "termination-log")
    proxy.reset()
    yield world
    assert world.running() == [], "an instance was left running"


# -- passing -------------------------------------------------------------------------------------------------


def test_a_good_ami_passes_and_its_instance_is_terminated(world: World) -> None:
    assert world.run() == boot_check.PASSED

    (instance,) = world.launched()
    assert instance.state == "terminated"
    assert instance.instance_type == "t3.small"
    assert instance.subnet_id == world.subnet_id
    assert instance.tags == {
        **MANAGEMENT,
        names.VALIDATION_TAG: BUILD,
        "Name": f"ami-boot-check {world.primary}",
    }
    assert world.message() == (
        f"passed: {world.primary} booted on t3.small ({instance.instance_id}), status checks ok\n"
    )
    # Tagged from birth: the tags ride on RunInstances (instance and volumes), no CreateTags afterwards.
    (launch,) = world.proxy.forms("RunInstances")
    assert {launch[f"TagSpecification.{n}.ResourceType"][0] for n in (1, 2)} == {"instance", "volume"}
    assert launch["TagSpecification.1.Tag.1.Key"] == ["Name"]
    assert launch["InstanceInitiatedShutdownBehavior"] == ["terminate"]
    assert world.proxy.calls("CreateTags") == 0
    # Every AMI of the build was looked at, each in its own region, before the launch.
    assert world.proxy.counts()["ec2:DescribeImages"] == 2


def test_ssm_commands_all_exiting_0_pass(world: World) -> None:
    agent = SsmAgent(world.proxy, registers_after=2)
    iam = boto3.client("iam", endpoint_url=world.moto, region_name=REGION)
    iam.create_instance_profile(InstanceProfileName="ami-boot-check")
    commands = ["systemctl is-active kubelet", "test -s /etc/kubernetes/kubelet/config.json"]

    code = world.run(
        **{
            names.SSM_COMMANDS: json.dumps(commands),
            names.INSTANCE_PROFILE: "ami-boot-check",
            names.SECURITY_GROUP_IDS: world.security_group_id,
        }
    )

    assert code == boot_check.PASSED, world.message()
    (instance,) = world.launched()
    assert world.message() == (
        f"passed: {world.primary} booted on t3.small ({instance.instance_id}), status checks ok, "
        "2 ssm commands exited 0\n"
    )
    # One command per SendCommand, in order, each bounded by what is left of the check's time; sent again
    # while the agent had not registered yet.
    assert agent.commands == commands
    assert agent.refused == 2
    for sent in agent.sent:
        assert sent["DocumentName"] == boot_check.RUN_SHELL_SCRIPT
        assert sent["InstanceIds"] == [instance.instance_id]
        (execution,) = sent["Parameters"]["executionTimeout"]  # type: ignore[index]
        assert 0 < int(execution) <= SECONDS * 2
    (launch,) = world.proxy.forms("RunInstances")
    assert launch["IamInstanceProfile.Name"] == ["ami-boot-check"]
    assert launch["SecurityGroupId.1"] == [world.security_group_id]
    assert instance.state == "terminated"
    # The check's IAM policy allows what went over the wire, and nothing else; CreateTags and PassRole are
    # what RunInstances does with the tags and the instance profile.
    policy = json.loads(POLICY.read_text())
    allowed = {action for statement in policy["Statement"] for action in statement["Action"]}
    assert set(world.proxy.counts()) == allowed - {"ec2:CreateTags", "iam:PassRole"}


def test_an_arm64_ami_gets_an_arm64_instance_type_unless_one_is_set(world: World) -> None:
    arm64 = {names.AMI_ID: world.arm64, names.AMI_IDS: f"{REGION}:{world.arm64}:arm64"}
    assert world.run(**arm64) == boot_check.PASSED
    assert world.run(**arm64, **{names.INSTANCE_TYPE: "m7g.large"}) == boot_check.PASSED
    assert [i.instance_type for i in world.launched()] == ["t4g.small", "m7g.large"]


def test_instances_an_earlier_attempt_left_are_terminated_first(world: World) -> None:
    """A Pod of the validation Job killed outright (its node lost) could not clean up; the next one does."""
    earlier = _launch_like_the_check(world, BUILD)
    other_build = _launch_like_the_check(world, "another-build")

    assert world.run() == boot_check.PASSED

    states = {i.instance_id: i.state for i in world.launched()}
    assert states.pop(earlier) == "terminated"
    assert states.pop(other_build) == "running"
    assert list(states.values()) == ["terminated"]
    world.ec2().terminate_instances(InstanceIds=[other_build])


def _launch_like_the_check(world: World, build: str) -> str:
    instance_tags = {**MANAGEMENT, names.VALIDATION_TAG: build, "Name": f"ami-boot-check {world.primary}"}
    reservation = world.ec2().run_instances(
        ImageId=world.primary,
        MinCount=1,
        MaxCount=1,
        SubnetId=world.subnet_id,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in instance_tags.items()]}
        ],
    )
    return reservation["Instances"][0]["InstanceId"]


# -- the AMIs ------------------------------------------------------------------------------------------------


def test_an_ami_that_does_not_exist_fails_before_any_launch(world: World) -> None:
    missing = "ami-0123456789abcdef0"
    code = world.run(**{names.AMI_IDS: f"{REGION}:{world.primary}:x86_64\n{OTHER_REGION}:{missing}:x86_64"})

    assert code == boot_check.FAILED
    assert world.message() == f"AMI {missing} in {OTHER_REGION} does not exist\n"
    assert world.launched() == []
    assert world.proxy.calls("RunInstances") == 0


def test_an_ami_that_is_not_available_fails_before_any_launch(world: World) -> None:
    world.ec2(OTHER_REGION).disable_image(ImageId=world.copy)

    assert world.run() == boot_check.FAILED
    assert world.message() == f"AMI {world.copy} in {OTHER_REGION} is disabled, not available\n"
    assert world.launched() == []


def test_an_ami_of_another_architecture_than_ami_ids_says_fails(world: World) -> None:
    code = world.run(**{names.AMI_ID: world.arm64, names.AMI_IDS: f"{REGION}:{world.arm64}:x86_64"})

    assert code == boot_check.FAILED
    assert world.message() == f"AMI {world.arm64} in {REGION} is arm64 in EC2, not x86_64 as AMI_IDS says\n"
    assert world.launched() == []


# -- the status checks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "instance", "failed"),
    [
        ("ok", "impaired", "instance impaired (reachability failed)"),
        ("impaired", "initializing", "system impaired (reachability failed)"),
    ],
)
def test_an_impaired_status_check_fails_at_once(
    world: World, system: str, instance: str, failed: str
) -> None:
    StatusChecks(world.proxy, system=system, instance=instance)

    assert world.run() == boot_check.FAILED

    (launched,) = world.launched()
    assert world.message() == f"instance {launched.instance_id} status checks: {failed}\n"
    assert launched.state == "terminated"
    assert world.proxy.calls("DescribeInstanceStatus") == 1


def test_status_checks_not_ok_within_the_timeout_fail(world: World) -> None:
    StatusChecks(world.proxy, instance="initializing")

    assert world.run(**{names.TIMEOUT_SECONDS: "0.3"}) == boot_check.FAILED

    (launched,) = world.launched()
    assert world.message() == (
        f"instance {launched.instance_id} status checks not ok within 0.3s: system ok, instance initializing\n"
    )
    assert launched.state == "terminated"


def test_an_instance_that_goes_away_while_booting_fails_with_ec2s_reason(world: World) -> None:
    def gone_first(body: bytes, forward: Callable[[], Answer]) -> Answer:
        for instance in world.launched():
            world.ec2().terminate_instances(InstanceIds=[instance.instance_id])
        return forward()

    world.proxy.answers["DescribeInstanceStatus"] = gone_first

    assert world.run() == boot_check.FAILED

    (launched,) = world.launched()
    assert world.message() == (
        f"instance {launched.instance_id} is terminated before its status checks were ok: "
        "Client.UserInitiatedShutdown: User initiated shutdown\n"
    )


# -- the SSM commands ----------------------------------------------------------------------------------------


def test_a_failing_ssm_command_fails_with_its_exit_code_and_last_line(world: World) -> None:
    commands = ["test -x /usr/bin/kubelet", "systemctl is-active kubelet", "nvidia-smi"]
    agent = SsmAgent(world.proxy, {commands[1]: Outcome(3, stdout="checking\ninactive\n")})

    assert world.run(**{names.SSM_COMMANDS: json.dumps(commands)}) == boot_check.FAILED

    (launched,) = world.launched()
    assert world.message() == "ssm command 2 (systemctl is-active kubelet) exited 3: inactive\n"
    assert launched.state == "terminated"
    assert agent.commands == commands[:2]  # the first failure ends the check


def test_a_failing_command_reports_its_last_error_line_over_its_output(world: World) -> None:
    command = "nodeadm config check"
    SsmAgent(world.proxy, {command: Outcome(1, stdout="reading\n", stderr="bad config\nno cluster name\n")})

    assert world.run(**{names.SSM_COMMANDS: json.dumps([command])}) == boot_check.FAILED
    assert world.message() == "ssm command 1 (nodeadm config check) exited 1: no cluster name\n"


def test_a_command_that_never_finishes_fails_at_the_timeout(world: World) -> None:
    command = "sleep 3600"
    SsmAgent(world.proxy, {command: Outcome(finishes=False)})

    code = world.run(**{names.SSM_COMMANDS: json.dumps([command]), names.TIMEOUT_SECONDS: "0.3"})

    assert code == boot_check.FAILED
    assert world.message() == "ssm command 1 (sleep 3600) did not finish within 0.3s: InProgress\n"
    assert [i.state for i in world.launched()] == ["terminated"]


def test_an_agent_that_never_registers_fails_at_the_timeout_with_a_hint(world: World) -> None:
    SsmAgent(world.proxy, registers_after=None)

    code = world.run(**{names.SSM_COMMANDS: json.dumps(["true"]), names.TIMEOUT_SECONDS: "0.3"})

    assert code == boot_check.FAILED
    (launched,) = world.launched()
    assert world.message() == (
        f"ssm command 1 (true) was never delivered: the SSM agent of {launched.instance_id} did not register "
        "within 0.3s (the instance profile needs AmazonSSMManagedInstanceCore, the subnet a way to the SSM "
        "endpoints)\n"
    )
    assert launched.state == "terminated"


# -- AWS errors, bad input -----------------------------------------------------------------------------------


def test_an_aws_error_says_what_the_check_was_doing(world: World) -> None:
    missing = "subnet-0123456789abcdef0"

    assert world.run(**{names.SUBNET_ID: missing}) == boot_check.FAILED

    message = world.message()
    assert message.startswith(
        f"launching {world.primary} on t3.small in {missing}: InvalidSubnetID.NotFound: "
    )
    assert world.launched() == []


def test_an_instance_that_cannot_be_terminated_fails_the_check_and_says_so(world: World) -> None:
    """A leaked instance is a failure even after a pass: the IAM that let it leak would leak the next one."""

    def refused(_body: bytes, _forward: Callable[[], Answer]) -> Answer:
        body = (
            b"<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized"
            b"</Message></Error></Errors><RequestID>1</RequestID></Response>"
        )
        return 403, "Forbidden", [("Content-Type", "text/xml")], body

    world.proxy.answers["TerminateInstances"] = refused

    assert world.run() == boot_check.FAILED

    (launched,) = world.launched()
    assert launched.state == "running"
    assert world.message() == (
        f"passed: {world.primary} booted on t3.small ({launched.instance_id}), status checks ok; could not "
        f"terminate {launched.instance_id}: UnauthorizedOperation: You are not authorized; terminate by hand\n"
    )
    world.ec2().terminate_instances(InstanceIds=[launched.instance_id])


def test_bad_input_fails_before_any_aws_call_naming_each_variable(world: World) -> None:
    code = world.run(
        **{
            names.SUBNET_ID: "",
            names.SSM_COMMANDS: '["systemctl is-active kubelet"',
            names.TIMEOUT_SECONDS: "soon",
        }
    )

    assert code == boot_check.BAD_INPUT
    message = world.message()
    assert message.startswith("bad input: ")
    assert message.count("\n") == 1
    for name in (names.SUBNET_ID, names.SSM_COMMANDS, names.TIMEOUT_SECONDS):
        assert name in message
    assert world.proxy.calls() == 0


# -- SIGTERM (the validation Job's activeDeadlineSeconds) ----------------------------------------------------


def _start(world: World, **overrides: str) -> "subprocess.Popen[bytes]":
    return subprocess.Popen(
        [sys.executable, "-m", "app.validation", "boot-check"],
        cwd=ROOT,
        env={**os.environ, **world.env(**overrides)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _outcome(process: "subprocess.Popen[bytes]") -> int:
    """The exit code, once the program has ended (killed after a minute); it must not have crashed."""
    try:
        _, errors = process.communicate(timeout=SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert b"Traceback" not in errors, errors.decode()
    return process.returncode


def test_sigterm_while_waiting_terminates_the_instance_and_says_where_it_was(world: World) -> None:
    checks = StatusChecks(world.proxy, instance="initializing")
    process = _start(world, **{names.POLL_SECONDS: "0.05"})
    try:
        # Two answers delivered: the first one's statuses are what the check now waits with.
        assert checks.wait_for_asks(2), "the check never asked for the status checks"
        process.send_signal(signal.SIGTERM)
    finally:
        code = _outcome(process)

    assert code == boot_check.STOPPED == 143
    (launched,) = world.launched()
    assert launched.state == "terminated"
    assert world.message() == (
        "stopped by SIGTERM (the Job's deadline) while waiting for the status checks of "
        f"{launched.instance_id} (system ok, instance initializing)\n"
    )


def test_sigterm_during_the_launch_still_terminates_the_instance(world: World) -> None:
    """SIGTERM while RunInstances is on the wire: the check takes the answer before it cleans up, else its
    cleanup would look for the instance before EC2 has made it."""
    launching, swept, release = threading.Event(), threading.Event(), threading.Event()

    def held(_body: bytes, forward: Callable[[], Answer]) -> Answer:
        launching.set()
        release.wait(SECONDS)
        return forward()

    def sweeping(_body: bytes, forward: Callable[[], Answer]) -> Answer:
        if launching.is_set():
            swept.set()
        return forward()

    world.proxy.answers["RunInstances"] = held
    world.proxy.answers["DescribeInstances"] = sweeping
    process = _start(world)
    try:
        assert launching.wait(SECONDS), "the check never launched"
        process.send_signal(signal.SIGTERM)
        # Waiting for something that must not happen: a second is plenty for a check that does not wait.
        assert not swept.wait(1), "the cleanup looked for instances while RunInstances was unanswered"
    finally:
        release.set()
        code = _outcome(process)

    assert code == boot_check.STOPPED
    (launched,) = world.launched()
    assert launched.state == "terminated"
    assert world.message() == (
        f"stopped by SIGTERM (the Job's deadline) while launching {world.primary} on t3.small in "
        f"{world.subnet_id}\n"
    )
