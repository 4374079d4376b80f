"""Harness for the intake integration tests (imported by test_intake_*.py; holds no tests itself).

`intake` builds the service on a fresh PostgreSQL schema with the real RabbitMQ bus and a
FrozenClock, records every ticket.* event it publishes, and offers small helpers: tokens per
role, creating tickets through the API, publishing events as escalation and sla would, and
`expect(...)`, which asserts the exact ticket.* events published since the previous call.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select

from services.intake.bootstrap import build
from shared.clock import FrozenClock
from shared.events import Event, new_event
from shared.outbox import outbox_table
from tests.helpers import Probe, running, token, wait_for

START = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.timezone.utc)
KATE = {"name": "Kate Reporter", "email": "kate@example.com"}


@dataclass
class Intake:
    service: object
    settings: object
    clock: FrozenClock
    bus: object
    probe: Probe
    seen: int = 0
    _headers: dict = field(default_factory=dict)

    @property
    def client(self):
        return self.service.app.test_client()

    def auth(self, role: str, name: str | None = None, **kwargs) -> dict:
        """Authorization header for a principal (cached per role+name)."""
        key = (role, name, tuple(sorted((k, str(v)) for k, v in kwargs.items())))
        if key not in self._headers:
            self._headers[key] = token(self.settings, role, name=name, **kwargs)
        return self._headers[key]

    # the usual cast
    @property
    def kate(self):
        return self.auth("reporter", "Kate Reporter", email="kate@example.com")

    @property
    def bob(self):
        return self.auth("reporter", "Bob Other", email="bob@example.com")

    @property
    def ivan(self):  # L1 agent of the Service Desk
        return self.auth("agent", "Ivan Petrov", email="ivan.petrov@example.com", tier="L1",
                         groups=["Service Desk"])

    @property
    def dmitry(self):  # L2 agent of Infrastructure
        return self.auth("agent", "Dmitry Volkov", email="dmitry.volkov@example.com", tier="L2",
                         groups=["Infrastructure"])

    @property
    def lead(self):
        return self.auth("lead", "Olga Lead", email="olga@example.com")

    @property
    def admin(self):
        return self.auth("admin", "Root Admin", email="root@example.com")

    def create(self, headers=None, **body) -> dict:
        body = {"title": "VPN is down", "description": "Cannot connect since 9:00", "category": "network",
                "service": "vpn", **body}
        response = self.client.post("/api/v1/tickets", json=body, headers=headers or self.kate)
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def get(self, ticket_id: str, headers=None) -> dict:
        response = self.client.get(f"/api/v1/tickets/{ticket_id}", headers=headers or self.admin)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def status(self, ticket_id: str, status: str, headers=None, reason: str = "", expect: int = 200) -> dict:
        response = self.client.post(f"/api/v1/tickets/{ticket_id}/status", json={"status": status, "reason": reason},
                                    headers=headers or self.ivan)
        assert response.status_code == expect, response.get_json()
        return response.get_json()

    def publish(self, type_: str, ticket_id: str, producer: str = "escalation", **payload) -> Event:
        occurred_at = payload.pop("_at", None)
        event = new_event(type_, payload, producer=producer, ticket_id=ticket_id, occurred_at=occurred_at)
        self.bus.publish(event)
        return event

    def route(self, ticket: dict, tier: str, group: str, assignee: str | None = None, trigger: str = "initial",
              **extra) -> Event:
        return self.publish("escalation.routed", ticket["id"], key=ticket["key"], tier=tier, group=group,
                            assignee=assignee, trigger=trigger, reason=extra.pop("reason", f"{trigger} routing"),
                            escalation_id=extra.pop("escalation_id", f"esc-{tier}-{group}"), **extra)

    def until(self, ticket_id: str, predicate, timeout: float = 10.0) -> dict:
        """Wait until the ticket (as an admin sees it) satisfies predicate; returns it."""
        last = {}

        def check():
            nonlocal last
            last = self.get(ticket_id)
            return predicate(last)
        assert wait_for(check, timeout), f"ticket never matched: {last}"
        return last

    def expect(self, *types: str, timeout: float = 10.0) -> list[Event]:
        """The ticket.* events published since the last call are exactly `types`, in order."""
        want = self.seen + len(types)
        wait_for(lambda: len(self.probe.events) >= want, timeout)
        time.sleep(0.15)  # let a stray extra event show itself
        new = self.probe.events[self.seen:]
        self.seen = len(self.probe.events)
        assert [e.type for e in new] == list(types), [(e.type, e.payload.get("ticket", {}).get("key")) for e in new]
        for event in new:
            assert event.producer == "intake" and event.ticket_id == event.payload["ticket"]["id"]
        return new

    def outbox_count(self) -> int:
        with self.service.db.transaction() as session:
            return session.execute(select(func.count()).select_from(outbox_table)).scalar_one()


@pytest.fixture
def intake(settings, pg_schema, amqp_bus):
    clock = FrozenClock(START)
    cfg = settings(database_url=pg_schema("intake"), reopen_window_days=7)
    service = build(cfg, bus=amqp_bus, clock=clock)
    probe = Probe(amqp_bus, keys=("ticket.#",))
    with running(amqp_bus, service):
        yield Intake(service=service, settings=cfg, clock=clock, bus=amqp_bus, probe=probe)
