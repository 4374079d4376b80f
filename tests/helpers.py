"""Helpers shared by the integration and end-to-end tests."""
from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager

from shared.auth import TokenStore
from shared.bus.base import Topology
from shared.events import Event, new_event


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02):
    """Poll until predicate() is truthy; returns its last value (assert on it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


class Probe:
    """Records every event published on the bus with one of `keys` (its own test queue)."""

    def __init__(self, bus, keys=("#",), name="test.probe"):
        self.events: list[Event] = []
        self._lock = threading.Lock()
        bus.declare(Topology(queues={name: tuple(keys)}))
        bus.subscribe(name, keys, self._record)

    def _record(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, type_: str, **payload_match) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.type == type_
                    and all(e.payload.get(k) == v for k, v in payload_match.items())]

    def wait(self, type_: str, count: int = 1, timeout: float = 10.0, **payload_match) -> list[Event]:
        found = wait_for(lambda: len(self.of(type_, **payload_match)) >= count and self.of(type_, **payload_match), timeout)
        assert found and len(found) >= count, (
            f"expected {count} {type_} {payload_match or ''}; saw {[(e.type, e.payload) for e in self.events]}")
        return found


@contextmanager
def running(bus, *services):
    """Start services' relays and schedulers and the bus; stop them all afterwards."""
    for svc in services:
        svc.start_background()
    bus.start()
    try:
        yield
    finally:
        bus.stop()
        for svc in services:
            svc.stop_background()
            svc.db.dispose()


def token(settings, role: str, name: str | None = None, **kwargs) -> dict:
    """A new token for `role`; returns the Authorization header dict."""
    secret = TokenStore(settings.tokens_path()).add(name=name or f"{role}-{uuid.uuid4().hex[:6]}", role=role, **kwargs)
    return {"Authorization": f"Bearer {secret}"}


def ticket_ref(**overrides) -> dict:
    ref = {"id": str(uuid.uuid4()), "key": f"INC-{uuid.uuid4().int % 100000}", "title": "VPN is down",
           "priority": "P2", "status": "new", "tier": None, "group": None, "assignee": None,
           "category": "network", "service": "vpn", "channel": "web",
           "reporter": {"name": "Kate Reporter", "email": "kate@example.com"}, "language": "en",
           "created_at": "2026-11-23T09:00:00+00:00"}
    ref.update(overrides)
    return ref


def ticket_event(type_: str, ref: dict | None = None, **payload) -> Event:
    """A ticket.* event as intake would publish it (for feeding other services in tests)."""
    ref = ref or ticket_ref()
    return new_event(type_, {"ticket": ref, **payload}, producer="intake", ticket_id=ref["id"])
