"""The embedded mode: sla on SQLite and the memory bus (one replica), same behaviour."""
from __future__ import annotations

import datetime as dt

import pytest

from services.sla.bootstrap import build
from shared.clock import FrozenClock
from shared.events import new_event
from tests.helpers import Probe, running, ticket_ref, token, wait_for
from tests.integration.test_sla_harness import CONFIG, MONDAY_9, iso

pytestmark = pytest.mark.integration


def test_sqlite_and_memory_bus(settings, memory_bus, tmp_path):
    config = tmp_path / "sla.yaml"
    config.write_text(CONFIG)
    clock = FrozenClock(MONDAY_9)
    sqlite_settings = settings(config_file=str(config), database_url=f"sqlite:///{tmp_path / 'sla.db'}")
    service = build(sqlite_settings, bus=memory_bus, clock=clock)
    probe = Probe(memory_bus, keys=("sla.#",))
    client, staff = service.app.test_client(), token(sqlite_settings, "lead")
    ref = ticket_ref(priority="P1", created_at=iso(MONDAY_9))

    def send(type_, **payload):
        memory_bus.publish(new_event(type_, {"ticket": ref, **payload}, producer="intake", ticket_id=ref["id"],
                                     occurred_at=clock.now()))

    def clocks():
        response = client.get(f"/api/v1/sla/tickets/{ref['id']}", headers=staff)
        return {c["name"]: c for c in response.get_json()["clocks"]} if response.status_code == 200 else {}

    with running(memory_bus, service):
        send("ticket.created")
        assert wait_for(clocks)
        clock.advance(3)
        send("ticket.status_changed", previous_status="new", status="pending")
        probe.wait("sla.paused")
        clock.advance(100)
        send("ticket.status_changed", previous_status="pending", status="in_progress")
        probe.wait("sla.resumed")
        clock.advance(2)
        service.extras["engine"].tick()
        warning = probe.wait("sla.warning", clock="first_response")[0]
        assert warning.payload["elapsed_seconds"] == 5
        clock.advance(5)
        service.extras["engine"].tick()
        breach = probe.wait("sla.breached", clock="first_response")[0]
        assert breach.payload["due_at"] == iso(MONDAY_9 + dt.timedelta(seconds=110))
        first = clocks()["first_response"]
        assert (first["state"], first["elapsed_seconds"], first["paused_seconds"]) == ("breached", 10, 100)
        assert first["started_at"] == iso(MONDAY_9)  # aware UTC, although SQLite stores it naive
