"""The built-in boot check: every AMI of the build is available, and the primary one boots and passes checks.

    python -m app.validation boot-check

Steps (docs/validation.md, "The boot check"): every AMI in AMI_IDS is `available` in its region; one
instance is launched from AMI_ID in the given subnet, tagged from birth; both EC2 status checks (system and
instance) must become `ok`; the SSM commands, when given, must each exit 0. The instance is terminated on
every path: success, failure, timeout, an exception, SIGTERM from the Job's deadline.

Exit 0 when it passed, 1 when a check failed (or the instance could not be terminated), 2 for bad input,
143 after SIGTERM. One line saying what happened goes to the termination message; progress goes to stderr.
"""

from __future__ import annotations

import logging
import math
import signal
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from app.aws.aws_clients import PerRegion, bounded_config
from app.validation.boot_check_env import (
    DEFAULT_TERMINATION_MESSAGE_PATH,
    TERMINATION_MESSAGE_PATH,
    BootCheckEnv,
    InvalidInput,
)

if TYPE_CHECKING:
    from types import FrameType

    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import (
        FilterTypeDef,
        ImageTypeDef,
        RunInstancesRequestTypeDef,
        TagSpecificationTypeDef,
        TagTypeDef,
    )
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_ssm.type_defs import GetCommandInvocationResultTypeDef

PASSED = 0
FAILED = 1
BAD_INPUT = 2
STOPPED = 128 + signal.SIGTERM

DEFAULT_INSTANCE_TYPES = {"x86_64": "t3.small", "arm64": "t4g.small"}
RUN_SHELL_SCRIPT = "AWS-RunShellScript"
# GetCommandInvocation's final states; Pending, InProgress, Delayed and Cancelling are still on their way.
_COMMAND_DONE = frozenset({"Success", "Failed", "TimedOut", "Cancelled"})
# Instance states from which no status check will ever become ok.
_GONE = frozenset({"shutting-down", "terminated", "stopping", "stopped"})
# SendCommand's own delivery timeout has this floor.
_MIN_DELIVERY_SECONDS = 30
# A termination message is at most 4096 bytes, and it ends up in a status condition and a notification.
_MESSAGE_CHARS = 1000
_COMMAND_CHARS = 60
_OUTPUT_CHARS = 200
_LOGGED_OUTPUT_CHARS = 2000
# Patient where the hook is not: a Job has minutes, and a throttled TerminateInstances must still get through.
_AWS_CONFIG = bounded_config(connect_timeout=5, read_timeout=30, max_attempts=5)

log = logging.getLogger("boot-check")


class CheckFailed(Exception):
    """The AMI (or its launch) failed a check; the message is the termination message."""


class Stopped(BaseException):
    """SIGTERM arrived (the Job's activeDeadlineSeconds): unwind at once to the cleanup.

    A BaseException, so that no `except Exception` on the way can swallow it."""


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _aws_error(error: BotoCoreError | ClientError) -> str:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', 'Error')}: {details.get('Message', '')}".rstrip(": ")
    return str(error)


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


class BootCheck:
    """One run of the check. `run` raises CheckFailed (or an AWS error, or Stopped); `clean_up` always follows."""

    def __init__(self, env: BootCheckEnv, session: boto3.session.Session) -> None:
        self.env = env
        self._ec2: PerRegion[EC2Client] = PerRegion(
            lambda region: session.client("ec2", region_name=region, config=_AWS_CONFIG)
        )
        self._ssm: SSMClient = session.client("ssm", region_name=env.region, config=_AWS_CONFIG)
        self._deadline = time.monotonic() + env.timeout_seconds
        self._instance_type = env.instance_type
        self.instance_id = ""
        self.doing = "starting"
        """What the check is doing now: the context of an AWS error or of SIGTERM."""

    # -- the steps ------------------------------------------------------------------------------------------

    def run(self) -> str:
        """Every step in order; what passed, as one line."""
        self._check_images()
        leftovers = self._ours_still_up()
        if leftovers:  # an earlier Pod of this Job was killed outright (its node lost) mid-check
            log.warning("terminating instances an earlier attempt left: %s", ", ".join(leftovers))
            self.doing = f"terminating instances an earlier attempt left ({', '.join(leftovers)})"
            self._ec2(self.env.region).terminate_instances(InstanceIds=leftovers)
        self._launch()
        self._wait_for_status_checks()
        for number, command in enumerate(self.env.ssm_commands, 1):
            self._run_command(number, command)
        commands = len(self.env.ssm_commands)
        return (
            f"passed: {self.env.ami_id} booted on {self._instance_type} ({self.instance_id}), status checks ok"
            + (f", {commands} ssm command{'s' * (commands != 1)} exited 0" if commands else "")
        )

    def _check_images(self) -> None:
        described: dict[tuple[str, str], ImageTypeDef] = {}
        for artifact in self.env.artifacts:
            where = f"AMI {artifact.image_id} in {artifact.region}"
            self.doing = f"checking {where}"
            image = self._describe_image(artifact.region, artifact.image_id)
            if image is None:
                self._fail(f"{where} does not exist")
            state = image.get("State", "unknown")
            if state != "available":
                reason = image.get("StateReason", {}).get("Message", "")
                self._fail(f"{where} is {state}, not available" + (f": {reason}" if reason else ""))
            architecture = image.get("Architecture", "")
            if artifact.architecture and architecture != artifact.architecture:
                self._fail(f"{where} is {architecture} in EC2, not {artifact.architecture} as AMI_IDS says")
            log.info("%s is available (%s)", where, architecture)
            described[artifact.region, artifact.image_id] = image
        if not self._instance_type:
            # The environment's checks make AMI_ID one of AMI_IDS, so it was described above.
            architecture = described[self.env.region, self.env.ami_id].get("Architecture", "")
            if architecture not in DEFAULT_INSTANCE_TYPES:
                self._fail(
                    f"AMI {self.env.ami_id} is {architecture or 'of no architecture'}, which has no default "
                    "instance type: set bootCheck.instanceType"
                )
            self._instance_type = DEFAULT_INSTANCE_TYPES[architecture]

    def _describe_image(self, region: str, image_id: str) -> ImageTypeDef | None:
        try:
            images = self._ec2(region).describe_images(
                ImageIds=[image_id], IncludeDeprecated=True, IncludeDisabled=True
            )["Images"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in (
                "InvalidAMIID.NotFound",
                "InvalidAMIID.Unavailable",
            ):
                return None
            raise
        return next((image for image in images if image.get("ImageId") == image_id), None)

    def _launch(self) -> None:
        env = self.env
        self.doing = f"launching {env.ami_id} on {self._instance_type} in {env.subnet_id}"
        tags: list[TagTypeDef] = [{"Key": key, "Value": value} for key, value in env.instance_tags.items()]
        tagged: list[TagSpecificationTypeDef] = [
            {"ResourceType": "instance", "Tags": tags},
            {"ResourceType": "volume", "Tags": tags},
        ]
        request: RunInstancesRequestTypeDef = {
            "ImageId": env.ami_id,
            "InstanceType": self._instance_type,  # type: ignore[typeddict-item]  # any type EC2 offers
            "MinCount": 1,
            "MaxCount": 1,
            "SubnetId": env.subnet_id,
            "TagSpecifications": tagged,
            # botocore retries a throttled or timed-out call; the token makes a retry return the same
            # instance instead of launching a second one.
            "ClientToken": str(uuid.uuid4()),
            # Should the image power itself off, the instance goes away instead of waiting, stopped.
            "InstanceInitiatedShutdownBehavior": "terminate",
        }
        if env.security_group_ids:
            request["SecurityGroupIds"] = list(env.security_group_ids)
        if env.instance_profile:
            key = "Arn" if env.instance_profile.startswith("arn:") else "Name"
            request["IamInstanceProfile"] = {key: env.instance_profile}  # type: ignore[misc]
        log.info("%s", self.doing)
        # SIGTERM waits until the instance id is known, so that the cleanup knows what to terminate.
        with _sigterm_deferred():
            reservation = self._ec2(env.region).run_instances(**request)
            self.instance_id = reservation["Instances"][0]["InstanceId"]
        log.info("launched %s", self.instance_id)

    def _wait_for_status_checks(self) -> None:
        instance = self.instance_id
        self.doing = f"asking for the status checks of {instance}"
        seen = "no status yet"
        while True:
            statuses = self._ec2(self.env.region).describe_instance_status(
                InstanceIds=[instance], IncludeAllInstances=True
            )["InstanceStatuses"]
            # Right after the launch EC2 may not list the instance yet: that is "no status yet".
            if statuses:
                status = statuses[0]
                state = status.get("InstanceState", {}).get("Name", "pending")
                if state in _GONE:
                    self._fail(
                        f"instance {instance} is {state} before its status checks were ok{self._why_gone()}"
                    )
                system = status.get("SystemStatus", {})
                own = status.get("InstanceStatus", {})
                checks = {"system": system.get("Status", "?"), "instance": own.get("Status", "?")}
                seen = ", ".join(f"{name} {value}" for name, value in checks.items())
                impaired = [
                    f"{name} impaired{_failed_details(summary)}"
                    for name, summary in (("system", system), ("instance", own))
                    if summary.get("Status") == "impaired"
                ]
                if impaired:
                    self._fail(f"instance {instance} status checks: {', '.join(impaired)}")
                if set(checks.values()) == {"ok"}:
                    log.info("instance %s status checks ok", instance)
                    return
            log.info("instance %s: %s", instance, seen)
            self.doing = f"waiting for the status checks of {instance} ({seen})"
            self._wait_or_fail(f"instance {instance} status checks not ok within {self._budget()}: {seen}")

    def _why_gone(self) -> str:
        """EC2's reason for an instance ending early (an unusable encrypted snapshot, a capacity error...)."""
        reservations = self._ec2(self.env.region).describe_instances(InstanceIds=[self.instance_id])
        for reservation in reservations["Reservations"]:
            for instance in reservation.get("Instances", []):
                reason = instance.get("StateReason", {}).get("Message", "")
                if reason:
                    return f": {reason}"
        return ""

    def _run_command(self, number: int, command: str) -> None:
        label = f"ssm command {number} ({_one_line(command, _COMMAND_CHARS)})"
        self.doing = f"sending {label} to {self.instance_id}"
        command_id = self._send(label, command)
        log.info("sent %s as %s", label, command_id)
        result = self._await(label, command_id)
        output = result.get("StandardOutputContent", "")
        errors = result.get("StandardErrorContent", "")
        if output or errors:
            log.info("%s output: %s", label, (output + errors)[-_LOGGED_OUTPUT_CHARS:])
        status = result.get("Status", "")
        if status == "Success":
            log.info("%s exited 0", label)
            return
        tail = _one_line(_last_line(errors) or _last_line(output), _OUTPUT_CHARS)
        if status == "Failed":
            self._fail(f"{label} exited {result.get('ResponseCode', '?')}" + (f": {tail}" if tail else ""))
        details = result.get("StatusDetails", "")
        self._fail(f"{label} {status}" + (f" ({details})" if details and details != status else ""))

    def _send(self, label: str, command: str) -> str:
        """SendCommand, again while the instance's SSM agent has not registered yet (InvalidInstanceId)."""
        while True:
            remaining = max(1, math.ceil(self._remaining()))
            try:
                sent = self._ssm.send_command(
                    InstanceIds=[self.instance_id],
                    DocumentName=RUN_SHELL_SCRIPT,
                    Parameters={"commands": [command], "executionTimeout": [str(remaining)]},
                    TimeoutSeconds=max(_MIN_DELIVERY_SECONDS, remaining),
                    Comment=_one_line(f"ami boot check {self.env.build_id}", 100),
                )
                return sent["Command"]["CommandId"]
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "InvalidInstanceId":
                    raise
            self.doing = f"waiting for the SSM agent of {self.instance_id} to register, to send {label}"
            self._wait_or_fail(
                f"{label} was never delivered: the SSM agent of {self.instance_id} did not register within "
                f"{self._budget()} (the instance profile needs AmazonSSMManagedInstanceCore, the subnet a way "
                "to the SSM endpoints)"
            )

    def _await(self, label: str, command_id: str) -> GetCommandInvocationResultTypeDef:
        while True:
            self.doing = f"waiting for {label} on {self.instance_id}"
            try:
                result = self._ssm.get_command_invocation(CommandId=command_id, InstanceId=self.instance_id)
            except ClientError as error:  # for a moment after SendCommand the invocation is not there yet
                if error.response.get("Error", {}).get("Code") != "InvocationDoesNotExist":
                    raise
                status = "Pending"
            else:
                status = result.get("Status", "Pending")
                if status in _COMMAND_DONE:
                    return result
            self._wait_or_fail(f"{label} did not finish within {self._budget()}: {status}")

    # -- time -----------------------------------------------------------------------------------------------

    def _remaining(self) -> float:
        return self._deadline - time.monotonic()

    def _budget(self) -> str:
        return f"{self.env.timeout_seconds:g}s"

    def _wait_or_fail(self, message: str) -> None:
        """Sleep one poll interval, or fail with `message` when the check's time is up."""
        remaining = self._remaining()
        if remaining <= 0:
            self._fail(message)
        time.sleep(min(self.env.poll_seconds, remaining))

    def _fail(self, message: str) -> NoReturn:
        raise CheckFailed(message)

    # -- cleanup --------------------------------------------------------------------------------------------

    def _ours_still_up(self) -> list[str]:
        """Instances of this check for this build that are not on their way out yet, by their tags."""
        self.doing = "looking for instances of this check"
        filters: list[FilterTypeDef] = [
            {"Name": f"tag:{key}", "Values": [value]} for key, value in self.env.instance_tags.items()
        ]
        filters.append(
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}
        )
        paginator = self._ec2(self.env.region).get_paginator("describe_instances")
        return sorted(
            instance["InstanceId"]
            for page in paginator.paginate(Filters=filters)
            for reservation in page.get("Reservations", [])
            for instance in reservation.get("Instances", [])
        )

    def clean_up(self) -> str:
        """Terminate the check's instance and any other of this build still up; "" or what went wrong.

        Looked up by tags as well as by id: SIGTERM or a lost answer may come after EC2 launched the
        instance but before its id was known here."""
        doomed = {self.instance_id} if self.instance_id else set()
        problems = []
        try:
            doomed |= set(self._ours_still_up())
        except (BotoCoreError, ClientError) as error:
            problems.append(f"could not look for instances of this check: {_aws_error(error)}")
        if doomed:
            instances = sorted(doomed)
            try:
                self._ec2(self.env.region).terminate_instances(InstanceIds=instances)
                log.info("terminated %s", ", ".join(instances))
            except (BotoCoreError, ClientError) as error:
                problems.append(
                    f"could not terminate {', '.join(instances)}: {_aws_error(error)}; terminate by hand"
                )
        return "; ".join(problems)


def _failed_details(summary: Mapping[str, Any]) -> str:
    failed = [d.get("Name", "?") for d in summary.get("Details", []) if d.get("Status") == "failed"]
    return f" ({', '.join(failed)} failed)" if failed else ""


# -- signals -------------------------------------------------------------------------------------------------


class _SigtermStops:
    """SIGTERM raises Stopped while the check is armed (its steps run) and is only recorded otherwise, so
    nothing but the steps is cut short: never the cleanup, and never the handling of a failure."""

    def __init__(self) -> None:
        self.armed = False
        self.requested = False

    def __call__(self, _signum: int, _frame: FrameType | None) -> None:
        self.requested = True
        if self.armed:
            self.armed = False
            raise Stopped

    def arm(self) -> None:
        self.armed = True
        if self.requested:  # it came before the steps began
            self.armed = False
            raise Stopped

    @contextmanager
    def installed(self) -> Iterator[None]:
        previous = signal.signal(signal.SIGTERM, self)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)


@contextmanager
def _sigterm_deferred() -> Iterator[None]:
    """SIGTERM is held back inside, and delivered (raising Stopped) on the way out."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


# -- the program -------------------------------------------------------------------------------------------


def _report(path: str, message: str) -> None:
    """The one line Kubernetes keeps as the container's termination message."""
    line = _one_line(message, _MESSAGE_CHARS)
    try:
        with open(path, "w", encoding="utf-8") as sink:
            sink.write(line + "\n")
    except OSError as error:
        log.error("could not write the termination message to %s: %s", path, error)


def _attempt(check: BootCheck, stops: _SigtermStops) -> tuple[int, str]:
    """Run the steps; the exit code and the line to report. Whatever happens inside, it returns."""
    try:
        try:
            stops.arm()
            return PASSED, check.run()
        except CheckFailed as failure:
            return FAILED, str(failure)
        except (BotoCoreError, ClientError) as error:
            return FAILED, f"{check.doing}: {_aws_error(error)}"
        except Exception as error:  # a bug here must not leave an instance behind either
            log.exception("the boot check broke")
            return FAILED, f"{check.doing}: {type(error).__name__}: {error}"
        finally:
            stops.armed = False
    # Around the handlers and the finally too: SIGTERM may come while they run, and until the finally has
    # disarmed the handler it raises.
    except Stopped:
        return STOPPED, f"stopped by SIGTERM (the Job's deadline) while {check.doing}"


def main(environ: Mapping[str, str]) -> int:
    """Run the boot check with the given environment; the exit code. Logs to the `boot-check` logger."""
    try:
        env = BootCheckEnv.from_environ(environ)
    except InvalidInput as error:
        message = f"bad input: {error}"
        log.error("%s", message)
        _report(environ.get(TERMINATION_MESSAGE_PATH) or DEFAULT_TERMINATION_MESSAGE_PATH, message)
        return BAD_INPUT
    log.info(
        "boot check of %s in %s for build %s of %s (base %s, commit %s), %d AMI(s), within %gs",
        env.ami_id,
        env.region,
        env.build_id,
        env.packer_builder or "?",
        env.base_ami_id or "?",
        env.packer_repo_commit or "?",
        len(env.artifacts),
        env.timeout_seconds,
    )
    check = BootCheck(env, boto3.session.Session())
    stops = _SigtermStops()
    with stops.installed():
        code, message = _attempt(check, stops)
        leftover = check.clean_up()
    if leftover:
        code = FAILED if code == PASSED else code
        message = f"{message}; {leftover}"
    (log.info if code == PASSED else log.error)("%s", message)
    _report(env.termination_message_path, message)
    return code
