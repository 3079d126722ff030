"""The notification channels, listed once; every per-channel step loops over this list.

A channel is one module that defines its Target, its sender and its `Channel` (app.notify.targets), plus its
entry here. Its section of the spec stays hand-written in app.model.spec's `Notifier`: that model is what the CRD
schema is generated from, so it is not derived from this list (tests/unit/test_notify_channels.py checks
that the two agree).

Imports go one way: channel modules import only the channel-independent contract (targets, message); this
module imports the channel modules; what needs the list (announce, dispatch, metrics) imports this module.
"""

from typing import Any

from app.model.hooks import RelatedResourceRule
from app.model.spec import Notifier
from app.notify.aws import SES, SNS
from app.notify.discord import DISCORD
from app.notify.slack import SLACK
from app.notify.targets import Channel, Lookup, Problem, Resolved, SecretData, Target, notifier_of

# In the spec's order, which is the order of targets, problems and the NotifierReady message.
CHANNELS: tuple[Channel[Any], ...] = (SLACK, SNS, SES, DISCORD)


def configured(notifier: Notifier) -> bool:
    return any(channel.configured(notifier) for channel in CHANNELS)


def resolve(
    notifier: Notifier, namespace: str, region: str, secrets: SecretData, fallback_slack_token: str
) -> Resolved:
    lookup = Lookup(namespace, region, secrets, fallback_slack_token)
    targets: list[Target] = []
    problems: list[Problem] = []
    for channel in CHANNELS:
        resolved = channel.resolved(notifier, lookup)
        targets += resolved.targets
        problems += resolved.problems
    return Resolved(tuple(targets), tuple(problems))


def secret_names(notifier: Notifier) -> list[str]:
    return sorted({name for channel in CHANNELS if (name := channel.secret_name(notifier))})


def secret_rule(namespace: str, raw_spec: Any) -> RelatedResourceRule | None:
    """The customize hook's ask for the notifier's Secrets; it depends on the spec alone (rule 12)."""
    found = notifier_of(raw_spec)
    names = secret_names(found[0]) if found else []
    if not names:
        return None
    return RelatedResourceRule(apiVersion="v1", resource="secrets", namespace=namespace, names=names)
