"""In-process notification counters, exposed in the Prometheus text format. Labels never carry a target."""

import threading
from collections import Counter

from app.notify.targets import CHANNELS

OUTCOMES = ("sent", "failed", "dropped")


class Counters:
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

    def prometheus(self) -> str:
        with self._lock:
            lines = [
                "# HELP packer_builder_notifications_total Notifications by channel and outcome "
                "(dropped: the send queue was full).",
                "# TYPE packer_builder_notifications_total counter",
            ]
            lines += [
                f'packer_builder_notifications_total{{channel="{channel}",outcome="{outcome}"}} '
                f"{self._counts[(channel, outcome)]}"
                for channel in CHANNELS
                for outcome in OUTCOMES
            ]
            lines += [
                "# HELP packer_builder_notification_repeats_suppressed_total Transitions seen again and "
                "not announced twice.",
                "# TYPE packer_builder_notification_repeats_suppressed_total counter",
                f"packer_builder_notification_repeats_suppressed_total {self._suppressed}",
            ]
        return "\n".join(lines) + "\n"
