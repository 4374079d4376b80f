"""An injectable clock: services ask it for the time so tests can move time by hand."""
from __future__ import annotations

import datetime as dt
import threading


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class SystemClock:
    def now(self) -> dt.datetime:
        return utcnow()


class FrozenClock:
    """A clock that only moves when told to (unit and integration tests)."""

    def __init__(self, start: dt.datetime | None = None):
        self._now = start or utcnow()
        if self._now.tzinfo is None:
            raise ValueError("FrozenClock needs a timezone-aware start")
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float = 0, **delta) -> dt.datetime:
        with self._lock:
            self._now += dt.timedelta(seconds=seconds, **delta)
            return self._now

    def set(self, when: dt.datetime) -> None:
        with self._lock:
            self._now = when


def as_utc(value: dt.datetime) -> dt.datetime:
    """Normalise an aware datetime to UTC; naive values are taken as UTC (SQLite returns them)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)
