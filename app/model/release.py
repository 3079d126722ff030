"""Release channels and their levers (docs/release.md): spec.publish.channels, spec.release, and what the status
says about them (status.channels, status.lastRebuild)."""

from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field

from app.model.fields import DnsLabel, Model, SoakDuration, SsmParameterName, matching, schema_pattern

_AMI_ID = r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$"
AmiID = Annotated[
    str,
    AfterValidator(matching(_AMI_ID, "an AMI id such as ami-0123456789abcdef0")),
    schema_pattern(_AMI_ID, 21),
]
MAX_CHANNELS = 10


class Channel(Model):
    """One stage of a rollout: an SSM parameter that holds the AMI once it has soaked in the stage before."""

    name: DnsLabel = Field(max_length=63, description="The channel's name, e.g. canary or stable.")
    ssmParameter: SsmParameterName = Field(
        description="Where the channel's AMI is published, as publish.ssmParameter is (<name>/<architecture> too)."
    )
    after: SoakDuration = Field(
        default="0s",
        description=(
            "How long an AMI must have been in the previous channel (for the first: active) before it enters."
        ),
    )


class Release(Model):
    """The levers: pin a channel (rollback, freeze), revoke AMIs or everything built on a base, rebuild now."""

    pin: dict[str, AmiID] = Field(
        default_factory=dict,
        description="Channel name -> an AMI of this builder in spec.region the channel holds until unpinned.",
    )
    revoke: list[AmiID] = Field(
        default_factory=list,
        max_length=100,
        description="AMIs (spec.region ids; their copies follow) that must never be used again.",
    )
    revokeBase: list[AmiID] = Field(
        default_factory=list,
        max_length=100,
        description="Base AMIs that must never be used again, nor any AMI of this builder built on them.",
    )
    rebuild: str | None = Field(
        default=None,
        max_length=253,
        description="Any string: a new non-empty value starts one build at once (like kubectl rollout restart).",
    )


class ChannelStatus(Model):
    """What one channel holds now."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1)  # as ImageRef's region: never read back, nor written, empty
    imageID: str = Field(default="", description="The channel's AMI in spec.region (x86_64 first).")
    enteredAt: str = Field(default="", description="When that AMI entered the channel.")
    pinned: bool = False
