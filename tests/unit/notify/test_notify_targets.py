"""Where notifications go: Secrets asked for and decoded, targets resolved, NotifierReady in the status."""

import base64
import copy
import json
from datetime import timedelta
from typing import Any

import pytest

from app.core.decision import Decision
from app.http import reconcile
from app.http.reconcile import world_of
from app.model.hooks import HookRequest
from app.model.spec import Notifier, PackerBuilderStatus
from app.notify.announce import NOTIFIER_READY, Announcement
from app.notify.aws import SesTarget, SnsTarget
from app.notify.channels import resolve, secret_rule
from app.notify.discord import DiscordTarget
from app.notify.slack import SlackTarget
from app.notify.targets import read_secrets
from tests.builders import NAMESPACE, T0, parent, request
from tests.seed import SEED_SPEC

TOKEN = "xoxb-1111-2222-s3cr3t"
WEBHOOK = "https://discord.com/api/webhooks/1/s3cr3t"
TOPIC = "arn:aws:sns:us-west-2:123456789012:ami-builds"


def secret(name: str, data: dict[str, str], namespace: str = NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def notifier(**raw: Any) -> Notifier:
    return Notifier.model_validate(raw)


ALL = {
    "slack": {"channelIDs": ["C01", "C02", "C01"], "secret": "slack-token"},
    "sns": {"topicARN": TOPIC},
    "ses": {"from": "ami@example.com", "to": ["ops@example.com", "sec@example.com"]},
    "discord": {"secret": "discord-hook"},
}
SECRETS = {"slack-token": {"token": TOKEN}, "discord-hook": {"webhookURL": WEBHOOK}}


def test_every_channel_resolves_to_its_targets() -> None:
    resolved = resolve(notifier(**ALL), NAMESPACE, "us-west-2", SECRETS, "")
    assert resolved.problems == ()
    assert resolved.targets == (
        SlackTarget("C01", TOKEN),
        SlackTarget("C02", TOKEN),
        SnsTarget(TOPIC),
        SesTarget("ami@example.com", ("ops@example.com", "sec@example.com"), "us-west-2"),
        DiscordTarget(WEBHOOK),
    )


def test_ses_region_can_differ_from_the_builders() -> None:
    raw = {"ses": {"from": "a@example.com", "to": ["b@example.com"], "region": "eu-west-1"}}
    (target,) = resolve(notifier(**raw), NAMESPACE, "us-west-2", {}, "").targets
    assert isinstance(target, SesTarget)
    assert target.region == "eu-west-1"


@pytest.mark.parametrize(
    ("secrets", "fallback", "channels", "reason", "message"),
    [
        ({}, "", [], "SecretNotFound", "Secret slack-token not found in namespace ami-builds; Slack is off"),
        (
            {},
            "xoxb-fallback",
            ["C01"],
            "SecretNotFound",
            "Secret slack-token not found in namespace ami-builds; the service's SLACK_BOT_TOKEN is used",
        ),
        (
            {"slack-token": {"password": "x"}},
            "",
            [],
            "SecretInvalid",
            "Secret slack-token has no key `token`; Slack is off",
        ),
    ],
    ids=["missing, no fallback", "missing, fallback", "wrong key"],
)
def test_a_missing_slack_secret_is_a_problem_not_a_crash(
    secrets: dict[str, dict[str, str]], fallback: str, channels: list[str], reason: str, message: str
) -> None:
    resolved = resolve(
        notifier(slack={"channelIDs": ["C01"], "secret": "slack-token"}),
        NAMESPACE,
        "us-west-2",
        secrets,
        fallback,
    )
    assert [t.channel for t in resolved.targets if isinstance(t, SlackTarget)] == channels
    (problem,) = resolved.problems
    assert (problem.reason, problem.message) == (reason, message)


def test_without_a_named_secret_the_service_token_is_used() -> None:
    resolved = resolve(notifier(slack={"channelIDs": ["C01"]}), NAMESPACE, "us-west-2", {}, "xoxb-fallback")
    assert resolved.targets == (SlackTarget("C01", "xoxb-fallback"),)
    assert resolved.problems == ()
    nothing = resolve(notifier(slack={"channelIDs": ["C01"]}), NAMESPACE, "us-west-2", {}, "")
    assert nothing.targets == ()
    assert [p.reason for p in nothing.problems] == ["NoSlackToken"]


@pytest.mark.parametrize("url", ["file:///etc/passwd", "not a url", ""])
def test_a_discord_secret_must_hold_a_web_url(url: str) -> None:
    secrets = {"discord-hook": {"webhookURL": url}}
    resolved = resolve(notifier(discord={"secret": "discord-hook"}), NAMESPACE, "us-west-2", secrets, "")
    assert resolved.targets == ()
    (problem,) = resolved.problems
    assert problem.reason == "SecretInvalid"
    assert "discord-hook" in problem.message
    if url:
        assert url not in problem.message


def test_targets_never_show_their_secret_in_repr() -> None:
    shown = repr(resolve(notifier(**ALL), NAMESPACE, "us-west-2", SECRETS, "").targets)
    assert TOKEN not in shown
    assert WEBHOOK not in shown


def test_secrets_are_decoded_and_only_from_the_parents_namespace() -> None:
    objects = [
        secret("slack-token", {"token": TOKEN + "\n"}),
        secret("elsewhere", {"token": "x"}, namespace="other"),
        {"metadata": {"name": "broken", "namespace": NAMESPACE}, "data": {"token": "%%%not base64"}},
        "garbage",
    ]
    assert read_secrets(objects, NAMESPACE) == {"slack-token": {"token": TOKEN}, "broken": {}}


def test_customize_asks_for_the_named_secrets_in_the_parents_namespace() -> None:
    spec = copy.deepcopy(SEED_SPEC) | {"notifier": ALL}
    rule = secret_rule(NAMESPACE, spec)
    assert rule is not None
    assert rule.model_dump(exclude_none=True) == {
        "apiVersion": "v1",
        "resource": "secrets",
        "namespace": NAMESPACE,
        "names": ["discord-hook", "slack-token"],
    }


def test_customize_asks_for_no_secrets_when_none_is_named() -> None:
    assert secret_rule(NAMESPACE, {**SEED_SPEC, "notifier": {"sns": {"topicARN": TOPIC}}}) is None
    assert secret_rule(NAMESPACE, {"notifier": "nonsense"}) is None


def test_an_otherwise_invalid_spec_still_asks_for_its_notifier_secrets() -> None:
    broken = {**SEED_SPEC, "region": "mars"}
    rule = secret_rule(NAMESPACE, broken)
    assert rule is not None
    assert rule.names == ["slack-token"]


# -- NotifierReady ----------------------------------------------------------------------------------------------


def notifier_ready(status: PackerBuilderStatus) -> dict[str, Any]:
    (found,) = [c for c in status.model_dump(mode="json")["conditions"] if c["type"] == NOTIFIER_READY]
    return dict(found)


def announced(body: dict[str, Any], now: Any = T0, fallback: str = "") -> Announcement:
    """What the shell adds after decide(); here decide's status is taken to be the recorded one."""
    req = HookRequest.model_validate(body)
    decision = Decision(children=(), status=world_of(req).status, resync_seconds=60)
    answered, result = reconcile.announce(req, reconcile.world_of(req), decision, now, fallback)
    assert answered.status == result.status
    return result


def with_secrets(body: dict[str, Any], *objects: dict[str, Any]) -> dict[str, Any]:
    body["related"]["Secret.v1"] = {o["metadata"]["name"]: o for o in objects}
    return body


def test_notifier_ready_names_the_missing_secret_and_never_a_value() -> None:
    result = announced(request(parent()))
    condition = notifier_ready(result.status)
    assert condition["status"] == "False"
    assert condition["reason"] == "SecretNotFound"
    assert "slack-token" in condition["message"]
    assert result.targets == ()


def test_notifier_ready_is_true_when_every_channel_has_what_it_needs() -> None:
    spec = {**SEED_SPEC, "notifier": ALL}
    body = with_secrets(
        request(parent(spec)),
        secret("slack-token", {"token": TOKEN}),
        secret("discord-hook", {"webhookURL": WEBHOOK}),
    )
    result = announced(body)
    condition = notifier_ready(result.status)
    assert (condition["status"], condition["reason"]) == ("True", "Configured")
    assert condition["message"] == "Notifying slack (2), sns, ses, discord"
    dumped = json.dumps(result.status.model_dump(mode="json"))
    assert TOKEN not in dumped
    assert WEBHOOK not in dumped


def test_notifier_ready_keeps_its_transition_time_while_it_holds() -> None:
    first = announced(request(parent()))
    later = announced(
        request(parent(status=first.status.model_dump(mode="json"))), now=T0 + timedelta(hours=2)
    )
    assert notifier_ready(later.status) == notifier_ready(first.status)
    fixed = with_secrets(
        request(parent(status=later.status.model_dump(mode="json"))), secret("slack-token", {"token": TOKEN})
    )
    recovered = announced(fixed, now=T0 + timedelta(hours=3))
    assert notifier_ready(recovered.status)["status"] == "True"
    assert notifier_ready(recovered.status)["lastTransitionTime"] == "2026-11-20T15:00:00Z"


def test_a_builder_without_notifiers_gets_no_condition() -> None:
    spec = {k: v for k, v in SEED_SPEC.items() if k != "notifier"}
    result = announced(request(parent(spec)))
    assert all(c.type != NOTIFIER_READY for c in result.status.conditions)
    assert result.events == ()


def test_a_replayed_first_sync_gets_the_same_condition() -> None:
    first = announced(request(parent()), now=T0)
    replayed = announced(request(parent()), now=T0 + timedelta(seconds=7))
    assert notifier_ready(replayed.status) == notifier_ready(first.status)
    assert notifier_ready(first.status)["lastTransitionTime"] == parent()["metadata"]["creationTimestamp"]
