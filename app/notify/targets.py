"""What every channel shares: the Target, Sender and Channel contracts, and the channel-independent steps of
resolving a notifier (reading its spec section and the Secrets Metacontroller handed over, naming problems).

Pure. Secret values live only inside targets (never in their repr) and are never copied into a problem
message: a problem names the Secret and the key, not what is in it. Nothing here knows a channel: each
channel module fills in a `Channel`, and app.notify.channels lists them.
"""

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from app.model.settings import Settings
from app.model.spec import Notifier
from app.notify.message import Message

# Where Metacontroller puts related Secrets: a name, not a secret.
SECRET_GROUP = "Secret.v1"  # noqa: S105
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")

SecretData = Mapping[str, Mapping[str, str]]


class Target(Protocol):
    """Where one notification goes; `channel_name` picks the sender that delivers it and labels its metrics."""

    @property
    def channel_name(self) -> str: ...


class NotifyError(Exception):
    """A delivery that failed; its message is safe to log (no token, webhook URL or other Secret value)."""


class Sender(Protocol):
    def send(self, target: Target, message: Message) -> None:
        """Deliver or raise NotifyError; bounded in time by the sender's own timeouts and retries."""


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


@dataclass(frozen=True)
class Resolved:
    targets: tuple[Target, ...] = ()
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class Lookup:
    """What resolving a section may need besides the section: the builder's namespace and region, the
    Secrets handed over, and the service's own Slack token (for sections that name no Secret)."""

    namespace: str
    region: str
    secrets: SecretData
    fallback_slack_token: str


Section = TypeVar("Section", bound=BaseModel)


def _no_secret(section: BaseModel) -> None:
    return None


@dataclass(frozen=True)
class Channel(Generic[Section]):
    """One channel, defined next to its sender so that everything about it is in one module.

    `section` finds the channel's part of a Notifier (None: not configured); `resolve` turns that part into
    targets and problems; `secret` is the Secret it names, which the customize hook asks Metacontroller for;
    `sender` builds the channel's sender from the service settings.
    """

    name: str
    section: Callable[[Notifier], Section | None]
    resolve: Callable[[Section, Lookup], Resolved]
    sender: Callable[[Settings], Sender]
    secret: Callable[[Section], str | None] = _no_secret

    def configured(self, notifier: Notifier) -> bool:
        return self.section(notifier) is not None

    def resolved(self, notifier: Notifier, lookup: Lookup) -> Resolved:
        section = self.section(notifier)
        return Resolved() if section is None else self.resolve(section, lookup)

    def secret_name(self, notifier: Notifier) -> str | None:
        section = self.section(notifier)
        return None if section is None else self.secret(section)


def notifier_of(raw_spec: Any) -> tuple[Notifier, str] | None:
    """The notifier and region of a raw spec, read on their own so an otherwise invalid spec still notifies."""
    if not isinstance(raw_spec, dict):
        return None
    try:
        notifier = Notifier.model_validate(raw_spec.get("notifier") or {})
    except ValidationError:
        return None
    region = raw_spec.get("region")
    return notifier, region if isinstance(region, str) and _REGION.fullmatch(region) else ""


def read_secrets(objects: Iterable[Any], namespace: str) -> dict[str, dict[str, str]]:
    """Secrets by name with their `data` base64-decoded; undecodable values are left out."""
    found: dict[str, dict[str, str]] = {}
    for obj in objects:
        if not isinstance(obj, dict):
            continue
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        if not isinstance(name, str) or meta.get("namespace", namespace) != namespace:
            continue
        data = obj.get("data") or {}
        decoded: dict[str, str] = {}
        for key, value in data.items() if isinstance(data, dict) else ():
            try:
                decoded[str(key)] = base64.b64decode(str(value), validate=True).decode().strip()
            except (binascii.Error, UnicodeDecodeError):
                continue
        found[name] = decoded
    return found


def secret_value(lookup: Lookup, name: str, key: str) -> tuple[str, Problem | None]:
    """One key of a handed-over Secret, or the problem that names what is missing (never a value)."""
    data = lookup.secrets.get(name)
    if data is None:
        return "", Problem("SecretNotFound", f"Secret {name} not found in namespace {lookup.namespace}")
    value = data.get(key, "")
    if not value:
        return "", Problem("SecretInvalid", f"Secret {name} has no key `{key}`")
    return value, None
