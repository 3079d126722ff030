"""Notification counters, collected into the app's Prometheus registry. Labels never carry a target."""

import threading
from collections import Counter
from collections.abc import Iterator

from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from app.notify.channels import CHANNELS

OUTCOMES = ("sent", "failed", "dropped")


class Counters(Collector):
    """Per dispatcher; `app.main` registers it with the app's registry next to the hook's own metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._suppressed = 0

    def add(self, channel: str, outcome: str) -> None:
        with self._lock:
            self._counts[(channel, outcome)] += 1

    def suppress(self) -> None:
        with self._lock:
            self._suppressed += 1

    def get(self, channel: str, outcome: str) -> int:
        with self._lock:
            return self._counts[(channel, outcome)]

    @property
    def suppressed(self) -> int:
        with self._lock:
            return self._suppressed

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            sent = CounterMetricFamily(
                "packer_builder_notifications",
                "Notifications by channel and outcome (dropped: the send queue was full).",
                labels=["channel", "outcome"],
            )
            # Every registered channel from the start: dashboards and alerts see zeros, not missing series.
            for channel in CHANNELS:
                for outcome in OUTCOMES:
                    sent.add_metric([channel.name, outcome], self._counts[(channel.name, outcome)])
            repeats = CounterMetricFamily(
                "packer_builder_notification_repeats_suppressed",
                "Transitions seen again and not announced twice.",
                value=self._suppressed,
            )
        yield sent
        yield repeats
