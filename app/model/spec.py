"""The PackerBuilder resource: spec and status models.

These models are the single source of truth for the CRD schema (`scripts/gen_crd.py`).
Field names follow the original operator so existing manifests keep working.
"""

from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from app.model.fields import (
    Branch,
    CheckoutPath,
    CronSchedule,
    DnsLabel,
    Duration,
    EmailAddress,
    Model,
    Region,
    RepoURL,
    SecretName,
    SoakDuration,
    SsmParameterName,
    TimeZone,
    TopicArn,
    VariableName,
)
from app.model.release import MAX_CHANNELS, Channel, ChannelStatus, Release
from app.model.validation import Validation, ValidationStatus

API_GROUP = "ami.refresh.ops"
API_VERSION = f"{API_GROUP}/v1alpha1"
KIND = "PackerBuilder"

DEFAULT_GIT_SYNC_IMAGE = "registry.k8s.io/git-sync/git-sync:v4.2.3"
DEFAULT_MAX_FAILED_JOBS = 3
# repoURL, branch and clusterName become AMI tag values, which EC2 caps at 256 characters.
TAG_VALUE_MAX = 256
PACKER_CONTAINER = "packer"


class SubCommand(StrEnum):
    init = "init"
    validate = "validate"
    build = "build"


class OnError(StrEnum):
    """Packer's -on-error values; `ask` is excluded because it waits for a keyboard that a Job lacks."""

    cleanup = "cleanup"
    abort = "abort"
    run_cleanup_provisioner = "run-cleanup-provisioner"


class AmiFilter(Model):
    """One EC2 DescribeImages filter, e.g. {name: owner-id, values: ["602401143452"]}."""

    name: str = Field(min_length=1, max_length=255)
    values: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(min_length=1)


class BaseImage(Model):
    """Where the base AMI comes from when it is not found with `amiFilters`."""

    ssmParameter: SsmParameterName = Field(
        description=(
            "SSM parameter whose value is the base AMI id, read in spec.region, e.g. "
            "/aws/service/eks/optimized-ami/1.30/amazon-linux-2023/x86_64/standard/recommended/image_id."
        )
    )


class Rebuild(Model):
    onBaseImageChange: StrictBool = Field(
        default=False,
        description=(
            "Build a new AMI when the newest base AMI differs from the one the current AMI was built on, "
            "before the current one expires."
        ),
    )
    minBaseImageAge: SoakDuration = Field(
        default="0s",
        description="A newer base AMI triggers a rebuild only once it is this old (soak time), e.g. 24h.",
    )


class TimeOuts(Model):
    expiresIn: Duration = Field(
        default="48h", description="How long a built AMI stays current before a rebuild (e.g. 48h, 7d)."
    )
    controllerTimer: Duration = Field(
        default="5m", description="How often the builder is re-checked when nothing is happening."
    )
    buildTimeout: Duration = Field(
        default="2h", description="Build Job deadline (activeDeadlineSeconds); Packer is stopped after it."
    )


class SlackNotifier(Model):
    channelIDs: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    secret: SecretName | None = Field(
        default=None,
        description="Secret holding the bot token under key `token`; unset: the service's SLACK_BOT_TOKEN.",
    )


class SnsNotifier(Model):
    topicARN: TopicArn = Field(
        max_length=1024, description="SNS topic to publish to; its region is the one in the ARN."
    )


class SesNotifier(Model):
    # `from` is a Python keyword, hence the alias; manifests spell it `from`.
    sender: EmailAddress = Field(alias="from", max_length=320, description="A verified SES identity.")
    to: list[Annotated[EmailAddress, Field(max_length=320)]] = Field(min_length=1, max_length=50)
    region: Region | None = Field(default=None, description="SES region; defaults to spec.region.")


class DiscordNotifier(Model):
    secret: SecretName = Field(description="Secret holding the Discord webhook URL under key `webhookURL`.")


class Notifier(Model):
    slack: SlackNotifier | None = None
    sns: SnsNotifier | None = None
    ses: SesNotifier | None = None
    discord: DiscordNotifier | None = None


class GitSync(Model):
    image: str = Field(default=DEFAULT_GIT_SYNC_IMAGE, min_length=1, description="git-sync v4 image.")
    name: DnsLabel = Field(default="git-sync", max_length=63, description="Init container name.")
    secret: SecretName | None = Field(
        default=None, description="Secret with keys `username` and `token` for a private repository."
    )

    @field_validator("name")
    @classmethod
    def _not_the_build_container(cls, name: str) -> str:
        if name == PACKER_CONTAINER:
            raise ValueError(f"{name!r} is the name of the build container")
        return name


class Command(Model):
    subCommand: SubCommand
    args: list[str] = Field(default_factory=list, description="Extra arguments, each passed as one argument.")
    color: bool = Field(default=False, description="false adds -color=false.")
    debug: bool = Field(
        default=False,
        description=(
            "Verbose Packer logging (PACKER_LOG=1). Packer's own -debug is not used: it pauses for "
            "keyboard input between steps and would hang the Job."
        ),
    )
    onError: OnError | None = Field(
        default=None, description="Packer -on-error (build only); `ask` is not allowed."
    )
    variables: dict[VariableName, str] = Field(default_factory=dict, description="Passed as -var name=value.")
    variablesFile: CheckoutPath | None = Field(default=None, description="Passed as -var-file=.")
    variablesFiles: list[CheckoutPath] = Field(default_factory=list, description="Each passed as -var-file=.")


class Builder(Model):
    repoURL: RepoURL = Field(
        max_length=TAG_VALUE_MAX, description="https://, ssh://, git:// or git@host:path."
    )
    branch: Branch = Field(default="main", max_length=255)
    image: str = Field(min_length=1, max_length=1024, description="Packer image, e.g. hashicorp/packer:1.11.")
    dir: CheckoutPath = Field(default=".", description="Packer project directory inside the repository.")
    secret: SecretName | None = Field(
        default=None, description="Secret whose keys become the build's environment (AWS credentials)."
    )
    serviceAccountName: SecretName | None = Field(
        default=None, description="Service account of the build pod (IRSA: eks.amazonaws.com/role-arn)."
    )
    commands: list[Command] = Field(default_factory=list)


EXCLUSIVE_BASE_SOURCES = (
    "spec.amiFilters and spec.baseImage cannot be used together: choose one base image source"
)
# The same rule for the API server (a CEL rule on spec), so `kubectl apply` rejects it up front.
EXCLUSIVE_BASE_SOURCES_RULE = "!(has(self.amiFilters) && size(self.amiFilters) > 0 && has(self.baseImage))"


class Retention(Model):
    """What happens to a builder's older AMIs (see docs/retention.md)."""

    keep: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description=(
            "Per region and architecture, the newest N managed AMIs of this builder are kept (the current one "
            "always counts and is never removed); older ones are deregistered and their snapshots deleted. "
            "Unset: nothing is removed."
        ),
    )
    deprecate: StrictBool = Field(
        default=False,
        description=(
            "Set EC2's own deprecation time on each current AMI to its expiry (create-timestamp + "
            "timeOuts.expiresIn), so the console and DescribeImages show it."
        ),
    )
    skipInUse: StrictBool = Field(
        default=True,
        description=(
            "Never disable or deregister an AMI that a pending or running instance, or the default or latest "
            "version of a launch template, in its region uses; the status names it instead."
        ),
    )
    disableFor: Duration | None = Field(
        default=None,
        description=(
            "Remove in two stages: an AMI beyond keep is first disabled (DisableImage: it stays, nothing can "
            "launch it, EnableImage brings it back), and deregistered with its snapshots only once it has been "
            "disabled this long (the time is kept in its disabled-at tag). Unset: deregistered at once."
        ),
    )
    unusedFor: Duration | None = Field(
        default=None,
        description=(
            "Never disable or deregister an AMI launched within this duration (EC2's lastLaunchedTime, "
            "reported up to a day late); one EC2 says was never launched is unused, one whose last launch "
            "cannot be read counts as used."
        ),
    )
    protect: StrictBool = Field(
        default=False,
        description=(
            "Turn on EC2's deregistration protection of each current and each published AMI, and turn it off "
            "again when the AMI stops being one. False: the hook never changes protection, and keeps any AMI "
            "whose protection someone else turned on."
        ),
    )


class Publish(Model):
    """Where consumers find the current AMI."""

    ssmParameter: SsmParameterName = Field(
        description=(
            "SSM parameter that holds the current AMI id (DataType aws:ec2:image) in every region the AMI "
            "exists in; with several architectures, <ssmParameter>/<architecture> each."
        )
    )
    channels: list[Channel] = Field(
        default_factory=list,
        max_length=MAX_CHANNELS,
        description="Release channels, promoted in this order (docs/release.md).",
    )

    @model_validator(mode="after")
    def _distinct_channels(self) -> "Publish":
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise ValueError("channels: each channel needs a name of its own")
        parameters = [self.ssmParameter, *(c.ssmParameter for c in self.channels)]
        if len(set(parameters)) != len(parameters):
            raise ValueError(
                "channels: each channel needs an ssmParameter of its own, not publish.ssmParameter's"
            )
        return self


class PackerBuilderSpec(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": EXCLUSIVE_BASE_SOURCES_RULE,
                    "message": EXCLUSIVE_BASE_SOURCES,
                    "fieldPath": ".baseImage",
                }
            ]
        }
    )

    amiFilters: list[AmiFilter] = Field(
        default_factory=list,
        description="DescribeImages filters for the base AMI; empty = self-contained project.",
    )
    clusterName: str = Field(default="", max_length=256)
    timeOuts: TimeOuts = Field(default_factory=TimeOuts)
    notifier: Notifier = Field(default_factory=Notifier)
    gitSync: GitSync = Field(default_factory=GitSync)
    maxNumberOfJobs: int = Field(
        default=DEFAULT_MAX_FAILED_JOBS,
        ge=1,
        le=100,
        description="Failed builds allowed per spec generation before giving up.",
    )
    region: Region = Field(description="AWS region the AMI is built and tagged in.")
    builder: Builder
    baseImage: BaseImage | None = Field(
        default=None, description="Base AMI from an SSM parameter; not together with amiFilters."
    )
    rebuild: Rebuild = Field(default_factory=Rebuild)
    schedule: CronSchedule | None = Field(
        default=None,
        description=(
            "Build window (cron, 5 fields): a build that is due starts at the first tick at or after the "
            "moment it became due. Unset: at once. Retries of a failed build are not held back."
        ),
    )
    timeZone: TimeZone = Field(default="UTC", description="IANA time zone of schedule, e.g. Europe/Berlin.")
    suspend: StrictBool = Field(
        default=False,
        description="Start no new build (a running one finishes and is recorded), like CronJob.spec.suspend.",
    )

    successfulJobsHistoryLimit: int = Field(
        default=1,
        ge=0,
        le=100,
        description="Finished successful build Jobs kept for `kubectl logs`, like CronJob's.",
    )
    failedJobsHistoryLimit: int = Field(
        default=3,
        ge=0,
        le=100,
        description="Finished failed build Jobs kept for `kubectl logs`, like CronJob's.",
    )
    retention: Retention = Field(default_factory=Retention)
    publish: Publish | None = Field(default=None, description="Publish the current AMI id for consumers.")
    release: Release = Field(
        default_factory=Release, description="Pin, revoke, rebuild: the release levers (docs/release.md)."
    )
    validation: Validation | None = Field(
        default=None, description="A check the AMIs pass before they become active (docs/validation.md)."
    )

    @model_validator(mode="after")
    def _one_base_image_source(self) -> "PackerBuilderSpec":
        if self.amiFilters and self.baseImage is not None:
            raise ValueError(EXCLUSIVE_BASE_SOURCES)
        return self


class ConditionStatus(StrEnum):
    true = "True"
    false = "False"
    unknown = "Unknown"


class Condition(Model):
    type: str
    status: ConditionStatus
    reason: str
    message: str
    lastTransitionTime: str


class JobStatus(StrEnum):
    running = "running"
    completed = "completed"
    failed = "failed"
    validating = "validating"
    """The build succeeded; its AMIs wait for the validation Job."""


class ImageRef(Model):
    """One current AMI of the builder."""

    # Never empty: a recorded item without them (a hand-edited status) is not read back, so it is never
    # written back without them either (empty values are left out of what is written, rule 6).
    region: str = Field(min_length=1)
    architecture: str = ""
    imageID: str = Field(min_length=1)


class PackerBuilderStatus(Model):
    """Everything the hook writes. Metacontroller replaces status whole, so each field is carried forward."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    buildID: str = ""
    command: str = ""
    conditions: list[Condition] = Field(default_factory=list)
    failedJobCount: int = 0
    images: list[ImageRef] = Field(
        default_factory=list, description="The current AMI per region and architecture, sorted."
    )
    jobID: str = ""
    jobName: str = ""
    jobStatus: JobStatus | None = None
    lastRun: str = ""
    lastRunBaseImageID: str = ""
    lastRunBuiltImageID: str = ""
    lastRunCommit: str = ""
    lastRunMessage: str = ""
    lastRunStatus: JobStatus | None = None
    nextBuildTime: str = ""
    state: str = ""
    validation: ValidationStatus | None = Field(
        default=None, description="The last validation: its Job, the AMI under test, its result."
    )
    channels: list[ChannelStatus] = Field(
        default_factory=list, description="What each release channel holds, in spec.publish.channels' order."
    )
    lastRebuild: str = Field(default="", description="The spec.release.rebuild value last honoured.")
    observedGeneration: int = 0


def _whole(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1)
    namespace: str = "default"
    uid: str = ""
    # Strict: a `generation: false` coerced to 0 would silently reset the failure budget. A whole number
    # written as a float (19.0, or one too large for 64 bits, which the JSON parser reads as a float) is one.
    generation: Annotated[StrictInt, BeforeValidator(_whole)] = 0
    creationTimestamp: str = ""


class SpecError(ValueError):
    """An invalid spec, with the offending field spelled as in the manifest (`spec.builder.repoURL`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse_spec(raw: Any) -> PackerBuilderSpec:
    """Validate a raw spec; raise SpecError naming the first offending field."""
    if not isinstance(raw, dict):
        raise SpecError("spec", "must be an object")
    try:
        return PackerBuilderSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = "spec" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if message == EXCLUSIVE_BASE_SOURCES:
            path = "spec.baseImage"  # the message names both fields
        if first["type"] == "missing":
            message = "is required"
        raise SpecError(path, message) from exc


def parse_status(raw: Any) -> PackerBuilderStatus:
    """Best-effort read of the recorded status: a hand-edited or foreign status must not break a sync."""
    if not isinstance(raw, dict):
        return PackerBuilderStatus()
    try:
        return PackerBuilderStatus.model_validate(raw)
    except ValidationError:
        good = {}
        for key, value in raw.items():
            try:
                PackerBuilderStatus.model_validate({key: value})
            except ValidationError:
                continue
            good[key] = value
        return PackerBuilderStatus.model_validate(good)
