"""The field types the PackerBuilder models share: patterns, checks that name what was expected, and the
base model. The CRD schema (`scripts/gen_crd.py`) is generated from the models that use them."""

import posixpath
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from app.model.durations import DURATION_PATTERN, parse_duration
from app.model.regions import known_region

_REGION = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$"
# https://, ssh://, git:// or scp-like git@host:path; no whitespace, no option-looking values.
_REPO_URL = r"^((https|ssh|git)://[A-Za-z0-9._~@:\[\]-]+(/[^\s]*)?|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+)$"
# A git ref name as git-check-ref-format accepts it, minus the exotic corners.
_BRANCH = r"^[A-Za-z0-9._/-]+$"
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_VARIABLE_NAME = r"^[A-Za-z_][A-Za-z0-9_-]*$"
_SNS_TOPIC_ARN = r"^arn:aws[a-z-]*:sns:[a-z]{2}(-[a-z]+)+-[0-9]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$"
# Deliberately loose: SES is the judge of deliverability; this only catches obvious typos.
_EMAIL = r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$"
# SSM parameter names: letters, digits and `_.-/`, fully qualified names start with `/`. No `//`.
_SSM_PARAMETER = r"^/?[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$"
SSM_PARAMETER_MAX = 2048
# A cron expression with five fields: minute, hour, day of month, month, day of week.
_CRON = r"^\S+( +\S+){4}$"
# IANA names: `UTC`, `Europe/Berlin`, `America/Argentina/Buenos_Aires`, `Etc/GMT+5`.
_TIME_ZONE = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$"


def _relative_inside_checkout(path: str) -> str:
    normalized = posixpath.normpath(path)
    if path.startswith("/") or normalized == ".." or normalized.startswith("../"):
        raise ValueError(f"{path!r} must be a relative path inside the repository checkout")
    return path


def _valid_duration(text: str) -> str:
    parse_duration(text)
    return text


def _valid_soak(text: str) -> str:
    parse_duration(text, allow_zero=True)
    return text


def _valid_cron(text: str) -> str:
    if not re.fullmatch(_CRON, text.strip()):
        raise ValueError(f"{text!r} is not a cron expression with 5 fields such as '0 2 * * 1-5'")
    try:
        CronSim(text, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise ValueError(f"{text!r} is not a valid cron expression: {exc}") from exc
    return text


def _valid_time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{name!r} is not an IANA time zone such as UTC or Europe/Berlin") from exc
    return name


def matching(pattern: str, what: str) -> Callable[[str], str]:
    """A string check that names what was expected (pydantic's own message only quotes the regex)."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return check


def schema_pattern(pattern: str, max_length: int | None = None) -> WithJsonSchema:
    schema: dict[str, Any] = {"type": "string", "pattern": pattern}
    if max_length is not None:
        schema["maxLength"] = max_length
    return WithJsonSchema(schema)


SoakDuration = Annotated[
    str,
    AfterValidator(_valid_soak),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]
CronSchedule = Annotated[
    str, AfterValidator(_valid_cron), WithJsonSchema({"type": "string", "pattern": _CRON, "maxLength": 256})
]
TimeZone = Annotated[
    str,
    AfterValidator(_valid_time_zone),
    WithJsonSchema({"type": "string", "pattern": _TIME_ZONE, "maxLength": 64}),
]
SsmParameterName = Annotated[
    str,
    AfterValidator(matching(_SSM_PARAMETER, "an SSM parameter name such as /aws/service/eks/.../image_id")),
    schema_pattern(_SSM_PARAMETER, SSM_PARAMETER_MAX),
]
CheckoutPath = Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(_relative_inside_checkout)]
Duration = Annotated[
    str, AfterValidator(_valid_duration), WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN})
]
SecretName = Annotated[
    str,
    AfterValidator(matching(_DNS_SUBDOMAIN, "a Kubernetes object name")),
    schema_pattern(_DNS_SUBDOMAIN),
    Field(max_length=253),
]
RepoURL = Annotated[
    str,
    AfterValidator(matching(_REPO_URL, "a git URL (https://, ssh://, git:// or git@host:path)")),
    schema_pattern(_REPO_URL),
]
Branch = Annotated[
    str,
    AfterValidator(matching(_BRANCH, "a branch name (letters, digits, '.', '_', '/', '-')")),
    schema_pattern(_BRANCH),
]
Region = Annotated[
    str,
    AfterValidator(matching(_REGION, "an AWS region such as us-west-2")),
    AfterValidator(known_region),
    schema_pattern(_REGION),
]
VariableName = Annotated[
    str, AfterValidator(matching(_VARIABLE_NAME, "a Packer variable name")), schema_pattern(_VARIABLE_NAME)
]
DnsLabel = Annotated[
    str, AfterValidator(matching(_DNS_LABEL, "a DNS-1123 label")), schema_pattern(_DNS_LABEL)
]
TopicArn = Annotated[
    str, AfterValidator(matching(_SNS_TOPIC_ARN, "an SNS topic ARN")), schema_pattern(_SNS_TOPIC_ARN)
]
EmailAddress = Annotated[
    str, AfterValidator(matching(_EMAIL, "an email address such as ops@example.com")), schema_pattern(_EMAIL)
]


class Model(BaseModel):
    # Unknown fields are pruned by the API server's structural schema; ignoring them here keeps old
    # manifests reconcilable while the CRD (generated from these models) stays authoritative.
    model_config = ConfigDict(extra="ignore", use_enum_values=False, frozen=True)
