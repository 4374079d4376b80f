"""Shared set-up of the sla integration tests (no tests here): the service on real PostgreSQL
and RabbitMQ with policies measured in seconds, a FrozenClock, a Probe on sla.* events."""
from __future__ import annotations

import datetime as dt
import time
from contextlib import ExitStack

import pytest

from services.sla.bootstrap import build
from shared.clock import FrozenClock
from shared.events import Event, new_event
from tests.helpers import Probe, running, token, wait_for

UTC = dt.timezone.utc
MONDAY_9 = dt.datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CONFIG = """
calendars:
  - {name: 24x7, timezone: UTC, always_on: true}
  - name: office
    timezone: UTC
    windows: {mon: [["09:00", "18:00"]], tue: [["09:00", "18:00"]], wed: [["09:00", "18:00"]],
              thu: [["09:00", "18:00"]], fri: [["09:00", "18:00"]]}
policies:
  - name: P1 fast
    match: {priority: P1}
    calendar: 24x7
    first_response: 10
    resolution: 40
    warnings: [50, 75]
    ola: {L1: 20, L2: 30}
  - name: P3 office
    match: {priority: P3}
    calendar: office
    first_response: 100
    resolution: 400
    warnings: [50]
    ola: {L1: 200}
"""


class Sla:
    """One running sla service and the means to drive and observe it."""

    def __init__(self, service, bus, settings, clock, probe):
        self.service, self.bus, self.settings, self.clock, self.probe = service, bus, settings, clock, probe
        self.engine = service.extras["engine"]
        self.client = service.app.test_client()
        self.staff = token(settings, "agent", tier="L1")
        self.admin = token(settings, "admin")

    def send(self, type_: str, ref: dict, **payload) -> Event:
        """Publish a ticket.* event as intake would, stamped with the test's clock."""
        event = new_event(type_, {"ticket": ref, **payload}, producer="intake", ticket_id=ref["id"],
                          occurred_at=self.clock.now())
        self.bus.publish(event)
        return event

    def view(self, ticket_id: str) -> dict | None:
        """As an admin (who sees every ticket): the tests observe state, not visibility."""
        response = self.client.get(f"/api/v1/sla/tickets/{ticket_id}", headers=self.admin)
        return response.get_json() if response.status_code == 200 else None

    def wait_view(self, ticket_id: str, check=lambda v: True, timeout: float = 10.0) -> dict:
        """The ticket's clocks once `check(view)` holds (the consumer is asynchronous)."""
        found = wait_for(lambda: (v := self.view(ticket_id)) is not None and check(v) and v, timeout)
        assert found, f"sla never showed the expected state of {ticket_id}: {self.view(ticket_id)}"
        return found

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def tick(self) -> int:
        return self.engine.tick()

    def emitted(self, settle: float = 0.3) -> list[tuple[str, str | None, int | None]]:
        """(type, clock, percent) of every sla event seen, once the relay had time to publish."""
        self.service.relay.flush()
        time.sleep(settle)
        return [(e.type, e.payload.get("clock"), e.payload.get("percent")) for e in self.probe.events]


def clock_of(view: dict, name: str) -> dict:
    found = [c for c in view["clocks"] if c["name"] == name]
    assert found, f"no clock {name} in {view}"
    return found[-1]


def iso(value: dt.datetime) -> str:
    return value.isoformat()


@pytest.fixture
def sla_env(settings, pg_schema, amqp_bus, tmp_path):
    """Factory: sla_env(config=..., clock=...) -> Sla, running until the test ends."""
    stack = ExitStack()

    def start(config: str = CONFIG, clock=None, database_url: str | None = None, **overrides) -> Sla:
        path = tmp_path / "sla.yaml"
        path.write_text(config)
        config_settings = settings(config_file=str(path), database_url=database_url or pg_schema("sla"), **overrides)
        clock = clock or FrozenClock(MONDAY_9)
        service = build(config_settings, bus=amqp_bus, clock=clock)
        probe = Probe(amqp_bus, keys=("sla.#",))
        stack.enter_context(running(amqp_bus, service))
        return Sla(service, amqp_bus, config_settings, clock, probe)

    with stack:
        yield start
