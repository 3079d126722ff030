"""Values read once on first use and then kept fresh in the background, so requests never wait on AWS.

A `Refreshed` cache holds one value per key (a region's managed AMIs, a base-image lookup, a parameter).
The first `get` of a key loads it, once, however many requests ask at the same time (they all wait for
that one bounded call and share its answer or its failure). After that `get` never calls AWS: a background
loop calls `refresh_due`, which reloads every value older than the period. A reload that fails keeps the
last good value and records why, so callers can tell how old (`age`) and how healthy their answer is.

The hook's own writes go through `update` at once (write-through). A write that lands while a reload of
the same key is in flight is applied again on top of the reloaded value: the reload may have read EC2
before the write, and must not undo it.
"""

import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass
class _Entry(Generic[V]):
    value: V
    loaded_at: float
    loaded_wall: float
    """The same moment on the wall clock, for messages (the same on every sync until the next load)."""
    error: str = ""
    """Why the last reload failed; empty once one succeeds."""
    reloading: bool = False
    writes: list[Callable[[V], V]] = field(default_factory=list)
    """Writes made while a reload is in flight, replayed on top of its result."""


class NotInMemory(LookupError):
    """The answer needs AWS, and the caller asked for memory only (a sync in the event loop)."""


class Refreshed(Generic[K, V]):
    def __init__(
        self,
        load: Callable[[K], V],
        *,
        period: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        max_keys: int = 10_000,
    ) -> None:
        self._wall = wall
        self._load = load
        self._period = period
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._entries: dict[K, _Entry[V]] = {}
        self._cold: dict[K, Future[V]] = {}

    def get(self, key: K, *, load: bool = True) -> V:
        """The value for `key`: from memory once loaded, else loaded now (one call shared by all waiters).

        With `load=False` a value not loaded yet raises NotInMemory instead.
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                return entry.value
            if not load:
                raise NotInMemory(key)
            pending = self._cold.get(key)
            owner = pending is None
            if pending is None:
                pending = self._cold[key] = Future()
        if not owner:
            return pending.result()
        try:
            value = self._load(key)
        except BaseException as exc:
            with self._lock:
                del self._cold[key]
            pending.set_exception(exc)
            raise
        with self._lock:
            del self._cold[key]
            if len(self._entries) < self._max_keys:
                self._entries[key] = _Entry(value, self._clock(), self._wall())
        pending.set_result(value)
        return value

    def put(self, key: K, value: V) -> None:
        """Write-through of a value the caller just read or wrote itself: it is as fresh as a reload."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                if len(self._entries) < self._max_keys:
                    self._entries[key] = _Entry(value, self._clock(), self._wall())
                return
            entry.value, entry.loaded_at, entry.loaded_wall, entry.error = (
                value,
                self._clock(),
                self._wall(),
                "",
            )
            if entry.reloading:
                entry.writes.append(lambda _: value)

    def update(self, key: K, change: Callable[[V], V]) -> None:
        """Write-through of a change the hook made in AWS; a key never loaded is left to its first load."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            entry.value = change(entry.value)
            if entry.reloading:
                entry.writes.append(change)

    def age(self, key: K) -> float | None:
        """Seconds since the value was last known good; None if never loaded."""
        with self._lock:
            entry = self._entries.get(key)
            return None if entry is None else self._clock() - entry.loaded_at

    def loaded_wall(self, key: K) -> float | None:
        """Wall-clock time (epoch seconds) the value was last known good; None if never loaded."""
        with self._lock:
            entry = self._entries.get(key)
            return None if entry is None else entry.loaded_wall

    def error(self, key: K) -> str:
        with self._lock:
            entry = self._entries.get(key)
            return entry.error if entry is not None else ""

    def keys(self) -> list[K]:
        with self._lock:
            return list(self._entries)

    def refresh_due(self) -> int:
        """Reload every value older than the period; returns how many reloads failed."""
        failures = 0
        for key in self._due():
            try:
                value = self._load(key)
            except Exception as exc:  # any failure keeps the last good value
                failures += 1
                self._failed(key, f"{type(exc).__name__}: {exc}")
            else:
                self._reloaded(key, value)
        return failures

    def _due(self) -> list[K]:
        """The keys to reload now, marked so that writes meanwhile are replayed on the reloaded value."""
        now = self._clock()
        with self._lock:
            due = [
                k for k, e in self._entries.items() if not e.reloading and now - e.loaded_at >= self._period
            ]
            for key in due:
                self._entries[key].reloading = True
        return due

    def _failed(self, key: K, error: str) -> None:
        with self._lock:
            entry = self._entries[key]
            entry.reloading, entry.writes, entry.error = False, [], error

    def _reloaded(self, key: K, value: V) -> None:
        with self._lock:
            entry = self._entries[key]
            for change in entry.writes:
                value = change(value)
            entry.value, entry.loaded_at, entry.loaded_wall, entry.error = (
                value,
                self._clock(),
                self._wall(),
                "",
            )
            entry.reloading, entry.writes = False, []
