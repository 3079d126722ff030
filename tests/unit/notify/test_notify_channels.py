"""The registry drives every per-channel step: a channel in CHANNELS has its spec section, is resolved, asked a
Secret for, sent to and counted, with no other list of channels to keep in step."""

from typing import Any, cast

from prometheus_client import CollectorRegistry

from app.model.settings import Settings
from app.model.spec import Notifier
from app.notify.channels import CHANNELS, configured, resolve, secret_names
from app.notify.dispatch import dispatcher_from
from app.notify.metrics import Counters
from tests.builders import NAMESPACE
from tests.unit.notify.test_notify_targets import ALL, SECRETS


def test_every_registered_channel_is_wired_everywhere() -> None:
    names = [channel.name for channel in CHANNELS]
    # The spec's sections, in the spec's order (the order of targets and of the NotifierReady message).
    assert names == list(Notifier.model_fields)
    assert not configured(Notifier())

    senders = dispatcher_from(Settings())._senders
    registry = CollectorRegistry()
    registry.register(Counters())
    for channel in CHANNELS:
        assert channel.name in ALL, f"add an example {channel.name} section to ALL in test_notify_targets.py"
        raw = cast(dict[str, Any], ALL[channel.name])
        alone = Notifier.model_validate({channel.name: raw})
        assert [c.name for c in CHANNELS if c.configured(alone)] == [channel.name]
        assert configured(alone)

        resolved = resolve(alone, NAMESPACE, "us-west-2", SECRETS, "")
        assert resolved.problems == ()
        assert resolved.targets
        assert {target.channel_name for target in resolved.targets} == {channel.name}
        assert secret_names(alone) == ([raw["secret"]] if "secret" in raw else [])

        assert channel.name in senders
        sample = registry.get_sample_value(
            "packer_builder_notifications_total", {"channel": channel.name, "outcome": "sent"}
        )
        assert sample == 0
    assert sorted(senders) == sorted(names)
