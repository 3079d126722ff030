"""spec.validation, the gate a build's AMIs pass before they become active, and status.validation, what the last
gate said (docs/validation.md)."""

from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator

from app.model.durations import parse_duration
from app.model.fields import Duration, Model, SecretName, matching, schema_pattern

# What every validation Job sets; a user's env may not redefine them (docs/validation.md, "The flow").
RESERVED_ENV = (
    "AMI_ID",
    "AMI_REGION",
    "AMI_IDS",
    "BASE_AMI_ID",
    "BUILD_ID",
    "PACKER_BUILDER",
    "PACKER_REPO_COMMIT",
)
DEFAULT_TIMEOUT = "30m"
# The boot check reports its own timeout a minute before the Job's deadline stops it.
MIN_TIMEOUT_SECONDS = 120
EXCLUSIVE_CHECKS = "exactly one of spec.validation.image and spec.validation.bootCheck must be set"
EXCLUSIVE_CHECKS_RULE = "has(self.image) != has(self.bootCheck)"

_ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
_SUBNET_ID = r"^subnet-[0-9a-f]{8}([0-9a-f]{9})?$"
_SECURITY_GROUP_ID = r"^sg-[0-9a-f]{8}([0-9a-f]{9})?$"
_INSTANCE_PROFILE = r"^([\w+=,.@-]{1,128}|arn:aws[a-z-]*:iam::[0-9]{12}:instance-profile/[\w+=,.@/-]{1,510})$"
_INSTANCE_TYPE = r"^[a-z0-9][a-z0-9-]*\.[a-z0-9-]+$"
EnvName = Annotated[
    str, AfterValidator(matching(_ENV_NAME, "an environment variable name")), schema_pattern(_ENV_NAME, 256)
]
SubnetID = Annotated[
    str,
    AfterValidator(matching(_SUBNET_ID, "a subnet id such as subnet-0123456789abcdef0")),
    schema_pattern(_SUBNET_ID, None),
]
SecurityGroupID = Annotated[
    str,
    AfterValidator(matching(_SECURITY_GROUP_ID, "a security group id such as sg-0123456789abcdef0")),
    schema_pattern(_SECURITY_GROUP_ID, None),
]
InstanceType = Annotated[
    str,
    AfterValidator(matching(_INSTANCE_TYPE, "an EC2 instance type such as t3.small")),
    schema_pattern(_INSTANCE_TYPE, 64),
]
InstanceProfile = Annotated[
    str,
    AfterValidator(matching(_INSTANCE_PROFILE, "an instance profile name or ARN")),
    schema_pattern(_INSTANCE_PROFILE, 600),
]


class SecretKeySelector(Model):
    name: SecretName
    key: str = Field(min_length=1, max_length=253)
    optional: bool = False


class EnvVarSource(Model):
    secretKeyRef: SecretKeySelector


class EnvVar(Model):
    """A Kubernetes EnvVar: a value, or a key of a Secret (never copied into the Job spec)."""

    name: EnvName
    value: str | None = Field(default=None, max_length=32768)
    valueFrom: EnvVarSource | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "EnvVar":
        if (self.value is None) == (self.valueFrom is None):
            raise ValueError(f"env {self.name}: set exactly one of value and valueFrom.secretKeyRef")
        if self.name in RESERVED_ENV:
            raise ValueError(
                f"env {self.name} is set by the validation Job itself ({', '.join(RESERVED_ENV)})"
            )
        return self


class BootCheck(Model):
    """The built-in check: launch the AMI, wait for EC2's status checks, run commands through SSM."""

    subnetID: SubnetID = Field(description="Subnet the test instance is launched in.")
    instanceType: InstanceType | None = Field(
        default=None, description="Instance type; default t3.small (t4g.small for arm64)."
    )
    securityGroupIDs: list[SecurityGroupID] = Field(
        default_factory=list, max_length=5, description="Security groups; default the VPC's default group."
    )
    instanceProfile: InstanceProfile | None = Field(
        default=None, description="Instance profile (name or ARN) for the instance; needed for ssmCommands."
    )
    ssmCommands: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        default_factory=list,
        max_length=50,
        description="Shell lines run on the instance through SSM Run Command; every one must exit 0.",
    )

    @model_validator(mode="after")
    def _profile_for_ssm(self) -> "BootCheck":
        if self.ssmCommands and not self.instanceProfile:
            raise ValueError(
                "ssmCommands need instanceProfile: an instance without one never registers with SSM"
            )
        return self


class Validation(Model):
    """A check the build's AMIs pass before they become active: a container of your own, or the boot check."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": EXCLUSIVE_CHECKS_RULE, "message": EXCLUSIVE_CHECKS}]
        }
    )

    timeout: Duration = Field(
        default=DEFAULT_TIMEOUT, description="The validation Job's activeDeadlineSeconds; at least 2m."
    )
    image: str | None = Field(default=None, min_length=1, max_length=1024, description="Your check's image.")
    command: list[str] = Field(
        default_factory=list, description="Its command (the image's entrypoint if empty)."
    )
    args: list[str] = Field(default_factory=list, description="Its arguments.")
    serviceAccountName: SecretName | None = Field(
        default=None, description="Service account of the validation Job (IRSA); default the builder's."
    )
    env: list[EnvVar] = Field(
        default_factory=list, max_length=100, description="Extra environment variables."
    )
    bootCheck: BootCheck | None = Field(
        default=None, description="The built-in boot check, instead of image."
    )

    @field_validator("timeout")
    @classmethod
    def _long_enough(cls, timeout: str) -> str:
        if parse_duration(timeout).total_seconds() < MIN_TIMEOUT_SECONDS:
            raise ValueError(f"{timeout!r} is shorter than 2m")
        return timeout

    @model_validator(mode="after")
    def _one_check(self) -> "Validation":
        if (self.image is None) == (self.bootCheck is None):
            raise ValueError(EXCLUSIVE_CHECKS)
        if self.bootCheck is not None and (self.command or self.args):
            raise ValueError("command and args belong to image; the boot check takes none")
        names = [e.name for e in self.env]
        if len(set(names)) != len(names):
            raise ValueError("env names a variable twice")
        return self

    @property
    def timeout_seconds(self) -> int:
        return int(parse_duration(self.timeout).total_seconds())


class Result(StrEnum):
    running = "Running"
    passed = "Passed"
    failed = "Failed"


class ValidationStatus(Model):
    """What the last validation said: which Job, which AMI, which build, and its result."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    jobName: str = ""
    imageID: str = Field(default="", description="The AMI under test (in spec.region).")
    buildID: str = ""
    result: Result | None = None
    message: str = ""
