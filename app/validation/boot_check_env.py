"""The boot check's inputs: the environment the validation Job sets, read and checked once, before any AWS call.

Every problem names its variable, and all of them are reported together: a wrong input costs a whole build
before the boot check runs again, so one fix per round trip would be slow.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from app.model.tags import BROUGHT_TO_YOU_BY, OPERATOR_NAME

# What every validation Job carries (docs/validation.md, "The flow").
AMI_ID = "AMI_ID"
AMI_REGION = "AMI_REGION"
AMI_IDS = "AMI_IDS"
BASE_AMI_ID = "BASE_AMI_ID"
BUILD_ID = "BUILD_ID"
PACKER_BUILDER = "PACKER_BUILDER"
PACKER_REPO_COMMIT = "PACKER_REPO_COMMIT"
# spec.validation.bootCheck, as the validation Job passes it.
SUBNET_ID = "BOOT_CHECK_SUBNET_ID"
INSTANCE_TYPE = "BOOT_CHECK_INSTANCE_TYPE"
SECURITY_GROUP_IDS = "BOOT_CHECK_SECURITY_GROUP_IDS"
INSTANCE_PROFILE = "BOOT_CHECK_INSTANCE_PROFILE"
SSM_COMMANDS = "BOOT_CHECK_SSM_COMMANDS"
TAGS = "BOOT_CHECK_TAGS"
# How long the check may take and how often it looks.
TIMEOUT_SECONDS = "BOOT_CHECK_TIMEOUT_SECONDS"
POLL_SECONDS = "BOOT_CHECK_POLL_SECONDS"
TERMINATION_MESSAGE_PATH = "TERMINATION_MESSAGE_PATH"

REQUIRED = (AMI_ID, AMI_REGION, AMI_IDS, BUILD_ID, SUBNET_ID)
OPTIONAL = (
    BASE_AMI_ID,
    PACKER_BUILDER,
    PACKER_REPO_COMMIT,
    INSTANCE_TYPE,
    SECURITY_GROUP_IDS,
    INSTANCE_PROFILE,
    SSM_COMMANDS,
    TAGS,
    TIMEOUT_SECONDS,
    POLL_SECONDS,
    TERMINATION_MESSAGE_PATH,
)

VALIDATION_TAG = "ami.refresh.ops/validation"
"""On every instance the boot check launches, valued with the build id: what its IAM policy keys on."""
NAME_TAG = "Name"
DEFAULT_TIMEOUT_SECONDS = 1500.0
"""25 minutes: inside the default 30 m validation timeout, so the check reports its own timeout."""
DEFAULT_POLL_SECONDS = 10.0
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
MAX_TAGS = 50
"""EC2's limit per resource."""

_AMI = re.compile(r"ami-[0-9a-f]{8}(?:[0-9a-f]{9})?")
_REGION = re.compile(r"[a-z]{2}(?:-[a-z0-9]+)+-\d+")
_ARCHITECTURE = re.compile(r"[a-z0-9_]+")
_SUBNET = re.compile(r"subnet-[0-9a-f]{8}(?:[0-9a-f]{9})?")
_SECURITY_GROUP = re.compile(r"sg-[0-9a-f]{8}(?:[0-9a-f]{9})?")
_INSTANCE_TYPE = re.compile(r"[a-z0-9][a-z0-9-]*\.[a-z0-9-]+")
_PROFILE_NAME = re.compile(r"[\w+=,.@-]{1,128}")
_PROFILE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:instance-profile/[\w+=,.@/-]{1,510}")
_BUILDER = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?")
_COMMIT = re.compile(r"[0-9a-f]{7,64}")
# EC2 tags: letters, digits, spaces and `_ . : / = + - @`, keys up to 128 characters, values up to 256.
_TAG_TEXT = re.compile(r"[\w .:/=+\-@]*")
_SHOWN_CHARS = 80

T = TypeVar("T")


class InvalidInput(ValueError):
    """One or more inputs are wrong; the message names each variable, on one line."""


@dataclass(frozen=True, order=True)
class Artifact:
    """One AMI the build made: a line `region:ami-id:architecture` of AMI_IDS."""

    region: str
    image_id: str
    architecture: str = ""
    """Empty when the line leaves it out; EC2's own answer is checked either way."""


_NO_ARTIFACTS: tuple[Artifact, ...] = ()


@dataclass(frozen=True)
class BootCheckEnv:
    ami_id: str
    region: str
    artifacts: tuple[Artifact, ...]
    build_id: str
    subnet_id: str
    base_ami_id: str = ""
    packer_builder: str = ""
    packer_repo_commit: str = ""
    instance_type: str = ""
    """Empty: the default for the AMI's architecture."""
    security_group_ids: tuple[str, ...] = ()
    instance_profile: str = ""
    """A name or an ARN; empty for none."""
    ssm_commands: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    """The management tags the Job passes, in its order."""
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    poll_seconds: float = DEFAULT_POLL_SECONDS
    termination_message_path: str = DEFAULT_TERMINATION_MESSAGE_PATH

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> BootCheckEnv:
        """Read and check every input; InvalidInput names all that are wrong."""
        return _Reader(environ).env()

    @property
    def instance_tags(self) -> dict[str, str]:
        """What the instance and its volumes are tagged with from birth: the management tags, ours always
        among them (the IAM policy's conditions key on them), the validation tag, and a Name for people."""
        return {
            NAME_TAG: f"ami-boot-check {self.ami_id}",
            **dict(self.tags),
            BROUGHT_TO_YOU_BY: OPERATOR_NAME,
            VALIDATION_TAG: self.build_id,
        }


def _shown(value: str) -> str:
    return repr(value if len(value) <= _SHOWN_CHARS else value[:_SHOWN_CHARS] + "…")


class _Reader:
    """Reads the environment, collecting one complaint per wrong variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._problems: list[str] = []

    def _raw(self, name: str) -> str:
        return self._environ.get(name, "").strip()

    def _complain(self, name: str, problem: str) -> None:
        self._problems.append(f"{name} {problem}")

    def _read(self, name: str, parse: Callable[[str], T], default: T) -> T:
        """`parse` of the variable's value, `default` when it is unset or empty (or wrong: then complain)."""
        raw = self._raw(name)
        if not raw:
            if name in REQUIRED:
                self._complain(name, "is not set")
            return default
        try:
            return parse(raw)
        except ValueError as problem:
            self._complain(name, str(problem))
            return default

    def env(self) -> BootCheckEnv:
        ami_id = self._read(AMI_ID, _matching(_AMI, "an AMI id (ami-…)"), "")
        region = self._read(AMI_REGION, _matching(_REGION, "an AWS region"), "")
        artifacts = self._read(AMI_IDS, _artifacts, _NO_ARTIFACTS)
        if (
            ami_id
            and region
            and artifacts
            and not any((a.region, a.image_id) == (region, ami_id) for a in artifacts)
        ):
            self._complain(AMI_IDS, f"has no line for AMI_ID {ami_id} in AMI_REGION {region}")
        env = BootCheckEnv(
            ami_id=ami_id,
            region=region,
            artifacts=artifacts,
            build_id=self._read(BUILD_ID, _tag_value, ""),
            subnet_id=self._read(SUBNET_ID, _matching(_SUBNET, "a subnet id (subnet-…)"), ""),
            base_ami_id=self._read(BASE_AMI_ID, _matching(_AMI, "an AMI id (ami-…)"), ""),
            packer_builder=self._read(PACKER_BUILDER, _matching(_BUILDER, "namespace/name"), ""),
            packer_repo_commit=self._read(PACKER_REPO_COMMIT, _matching(_COMMIT, "a git commit"), ""),
            instance_type=self._read(INSTANCE_TYPE, _matching(_INSTANCE_TYPE, "an instance type"), ""),
            security_group_ids=self._read(SECURITY_GROUP_IDS, _security_groups, ()),
            instance_profile=self._read(INSTANCE_PROFILE, _instance_profile, ""),
            ssm_commands=self._read(SSM_COMMANDS, _commands, ()),
            tags=self._read(TAGS, _tags, ()),
            timeout_seconds=self._read(TIMEOUT_SECONDS, _seconds, DEFAULT_TIMEOUT_SECONDS),
            poll_seconds=self._read(POLL_SECONDS, _seconds, DEFAULT_POLL_SECONDS),
            termination_message_path=self._raw(TERMINATION_MESSAGE_PATH) or DEFAULT_TERMINATION_MESSAGE_PATH,
        )
        if len(env.instance_tags) > MAX_TAGS:
            self._complain(TAGS, f"has too many tags: with the check's own, more than EC2's {MAX_TAGS}")
        if self._problems:
            raise InvalidInput("; ".join(self._problems))
        return env


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{_shown(value)} is not {what}")
        return value

    return parse


def _artifacts(value: str) -> tuple[Artifact, ...]:
    artifacts = set()
    for number, line in enumerate(value.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(":")
        if not (
            len(parts) in (2, 3)
            and _REGION.fullmatch(parts[0])
            and _AMI.fullmatch(parts[1])
            and (len(parts) == 2 or _ARCHITECTURE.fullmatch(parts[2]))
        ):
            raise ValueError(f"line {number} {_shown(line)} is not region:ami-id:architecture")
        artifacts.add(Artifact(*parts))
    return tuple(sorted(artifacts))


def _tag_value(value: str) -> str:
    if len(value) > 256 or not _TAG_TEXT.fullmatch(value):
        raise ValueError(f"{_shown(value)} cannot be an EC2 tag value")
    return value


def _security_groups(value: str) -> tuple[str, ...]:
    groups = [group.strip() for group in value.split(",") if group.strip()]
    wrong = [group for group in groups if not _SECURITY_GROUP.fullmatch(group)]
    if wrong:
        raise ValueError(f"{_shown(wrong[0])} is not a security group id (sg-…)")
    return tuple(dict.fromkeys(groups))


def _instance_profile(value: str) -> str:
    if not (_PROFILE_ARN.fullmatch(value) if value.startswith("arn:") else _PROFILE_NAME.fullmatch(value)):
        raise ValueError(f"{_shown(value)} is not an instance profile name or ARN")
    return value


def _json(value: str, what: str) -> object:
    try:
        parsed: object = json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(f"is not JSON ({error.msg} at character {error.pos}); expected {what}") from None
    return parsed


def _commands(value: str) -> tuple[str, ...]:
    commands = _json(value, "a list of strings")
    if not isinstance(commands, list) or not all(isinstance(c, str) and c.strip() for c in commands):
        raise ValueError("is not a JSON list of non-empty strings")
    return tuple(commands)


def _tags(value: str) -> tuple[tuple[str, str], ...]:
    tags = _json(value, "an object of strings")
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise ValueError("is not a JSON object of strings")
    for key, tag_value in tags.items():
        if not 0 < len(key) <= 128 or not _TAG_TEXT.fullmatch(key) or key.lower().startswith("aws:"):
            raise ValueError(f"key {_shown(key)} cannot be an EC2 tag key")
        if key == VALIDATION_TAG:
            raise ValueError(f"sets {VALIDATION_TAG}, which the check sets to BUILD_ID itself")
        if key == BROUGHT_TO_YOU_BY and tag_value != OPERATOR_NAME:
            raise ValueError(f"sets {BROUGHT_TO_YOU_BY} to {_shown(tag_value)}, not {OPERATOR_NAME}")
        _tag_value(tag_value)
    return tuple(tags.items())


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{_shown(value)} is not a positive number of seconds")
    return seconds
