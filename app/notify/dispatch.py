"""The background sender: suppress repeats, queue, deliver on a worker thread, count, never raise.

A hook only calls `submit`, which never blocks: a full queue drops the delivery (counted and logged) rather
than hold up Metacontroller. Repeats are suppressed per (builder, occurrence, event kind) for a bounded time;
the cache is this process's own, so every replica dedupes only the traffic it sees.
"""

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cachetools import TTLCache

from app.model.settings import Settings
from app.notify.channels import CHANNELS
from app.notify.events import Event
from app.notify.message import render
from app.notify.metrics import Counters
from app.notify.targets import NotifyError, Sender, Target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    event: Event
    target: Target


class Dispatcher:
    def __init__(
        self,
        senders: Mapping[str, Sender],
        *,
        queue_size: int = 1000,
        dedupe_seconds: float = 86400,
        dedupe_size: int = 10000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.counters = Counters()
        self._senders = dict(senders)
        self._queue: queue.Queue[Delivery] = queue.Queue(maxsize=queue_size)
        self._seen: TTLCache[tuple[str, str, str], bool] = TTLCache(
            maxsize=dedupe_size, ttl=dedupe_seconds, timer=clock
        )
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._worker: threading.Thread | None = None

    def submit(self, events: Sequence[Event], targets: Sequence[Target]) -> None:
        """Queue each event not seen before for every target; returns at once."""
        if not events or not targets:
            return
        for event in events:
            with self._lock:
                if event.key in self._seen:
                    fresh = False
                else:
                    self._seen[event.key] = True
                    fresh = True
            if not fresh:
                self.counters.suppress()
                log.debug("not announcing %s for %s/%s again", event.kind, event.namespace, event.builder)
                continue
            for target in targets:
                self._enqueue(Delivery(event, target))

    def flush(self, timeout: float) -> bool:
        """Wait until every queued delivery has been attempted; False when `timeout` ran out first."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._idle.wait(remaining):
                    return self._pending == 0
            return True

    def _enqueue(self, delivery: Delivery) -> None:
        channel = delivery.target.channel_name
        with self._lock:
            try:
                self._queue.put_nowait(delivery)
            except queue.Full:
                self.counters.add(channel, "dropped")
                log.warning(
                    "notification queue full: dropped %s to %s for %s/%s",
                    delivery.event.kind,
                    channel,
                    delivery.event.namespace,
                    delivery.event.builder,
                )
                return
            self._pending += 1
            if self._worker is None:
                # Started on first use so that building an app (tests, imports) starts no thread.
                self._worker = threading.Thread(target=self._run, name="notifier", daemon=True)
                self._worker.start()

    def _run(self) -> None:
        while True:
            delivery = self._queue.get()
            try:
                self._deliver(delivery)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _deliver(self, delivery: Delivery) -> None:
        event, target = delivery.event, delivery.target
        channel = target.channel_name
        who = f"{event.namespace}/{event.builder}"
        try:
            self._senders[channel].send(target, render(event))
        except NotifyError as error:
            self.counters.add(channel, "failed")
            log.warning("%s notification %s for %s failed: %s", channel, event.kind, who, error)
            return
        except Exception as error:  # a notifier outage must never kill the worker
            self.counters.add(channel, "failed")
            # Only the type: an unexpected error's text may quote a URL or header holding a secret.
            log.warning(
                "%s notification %s for %s failed: %s", channel, event.kind, who, type(error).__name__
            )
            return
        self.counters.add(channel, "sent")
        log.info("%s notification %s sent for %s", channel, event.kind, who)


def dispatcher_from(settings: Settings) -> Dispatcher:
    """The service's dispatcher: a sender for every registered channel."""
    return Dispatcher(
        {channel.name: channel.sender(settings) for channel in CHANNELS},
        queue_size=settings.notify_queue_size,
        dedupe_seconds=settings.notify_dedupe_seconds,
    )
