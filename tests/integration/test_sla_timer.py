"""The timer engine for real: the scheduler with the system clock, two engines on one
PostgreSQL schema, and an sla process killed with clocks due and started again."""
from __future__ import annotations

import collections
import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from services.sla.bootstrap import build
from shared.clock import FrozenClock, SystemClock, utcnow
from shared.events import new_event
from tests.servers import free_port
from tests.helpers import Probe, running, ticket_ref, token, wait_for
from tests.integration.test_sla_harness import MONDAY_9, iso, sla_env  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SECONDS_CONFIG = """
calendars:
  - {name: 24x7, timezone: UTC, always_on: true}
policies:
  - name: P1 seconds
    match: {priority: P1}
    calendar: 24x7
    first_response: 2
    resolution: 4
    warnings: [50]
"""


def thresholds(events):
    """(ticket, type, clock, percent) -> distinct event ids."""
    seen = collections.defaultdict(set)
    for e in events:
        seen[(e.ticket_id, e.type, e.payload["clock"], e.payload.get("percent"))].add(e.id)
    return seen


def test_a_two_second_policy_breaches_for_real(sla_env):
    sla = sla_env(config=SECONDS_CONFIG, clock=SystemClock())
    ref = ticket_ref(priority="P1", created_at=iso(utcnow()))
    sla.send("ticket.created", ref)
    breach = sla.probe.wait("sla.breached", clock="first_response", timeout=15)[0]
    warning = sla.probe.wait("sla.warning", clock="first_response")[0]
    due = dt.datetime.fromisoformat(breach.payload["due_at"])
    assert due == dt.datetime.fromisoformat(ref["created_at"]) + dt.timedelta(seconds=2)
    assert breach.occurred_at >= due > warning.occurred_at  # never early, warning first
    assert breach.payload["elapsed_seconds"] >= 2
    sla.probe.wait("sla.breached", clock="resolution", timeout=15)
    view = sla.view(ref["id"])
    assert {c["state"] for c in view["clocks"]} == {"breached"}


def test_two_engines_on_one_database_never_fire_twice(settings, pg_schema, amqp_bus, tmp_path):
    config = tmp_path / "sla.yaml"
    config.write_text(SECONDS_CONFIG)
    url = pg_schema("sla")
    clock = FrozenClock(MONDAY_9)
    replicas = [build(settings(config_file=str(config), database_url=url), bus=amqp_bus, clock=clock)
                for _ in range(2)]
    engines = [r.extras["engine"] for r in replicas]
    for engine in engines:
        engine.batch = 25  # small passes, so both engines work on each step
    probe = Probe(amqp_bus, keys=("sla.#",))
    tickets = 150
    with running(amqp_bus, *replicas):
        for i in range(tickets):  # staggered starts: due times spread over 15 s
            ref = ticket_ref(priority="P1", created_at=iso(MONDAY_9 + dt.timedelta(seconds=i % 15)))
            amqp_bus.publish(new_event("ticket.created", {"ticket": ref}, producer="intake", ticket_id=ref["id"],
                                       occurred_at=MONDAY_9))
        def clocks() -> int:
            with replicas[0].db.engine.connect() as conn:
                return conn.exec_driver_sql("SELECT count(*) FROM clocks").scalar()
        assert wait_for(lambda: clocks() == 2 * tickets, timeout=30)
        fired = [0, 0]
        stop = threading.Event()

        def spin(n):
            while not stop.is_set():
                fired[n] += engines[n].tick()

        threads = [threading.Thread(target=spin, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        for _ in range(40):  # 20 s of frozen time in half-second steps
            clock.advance(0.5)
            time.sleep(0.02)
        expected = 4 * tickets  # first response 50 % + breach, resolution 50 % + breach
        wait_for(lambda: len(probe.events) >= expected, timeout=30)
        time.sleep(0.5)  # anything extra would show up now
        stop.set()
        for t in threads:
            t.join()
    seen = thresholds(probe.events)
    assert len(seen) == expected
    assert all(len(ids) == 1 for ids in seen.values())
    assert len(probe.events) == expected
    assert fired[0] > 0 and fired[1] > 0, fired  # both engines did part of the work


def test_killed_process_fires_every_due_event_once_after_restart(settings, pg_schema, amqp_url, amqp_bus,
                                                                 bus_prefix, tmp_path):
    config = tmp_path / "sla.yaml"
    config.write_text(SECONDS_CONFIG)
    base = settings()
    admin = token(base, "admin")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TIERLINE_BUS_URL": amqp_url, "TIERLINE_BUS_PREFIX": bus_prefix,
           "TIERLINE_SLA_DATABASE_URL": pg_schema("sla"), "TIERLINE_PORT": str(port),
           "TIERLINE_TOKENS_FILE": str(base.tokens_path()), "TIERLINE_CONFIG": str(config),
           "TIERLINE_VAR_DIR": str(tmp_path / "var"), "TIERLINE_SLA_TICK_SECONDS": "0.2",
           "TIERLINE_LOG_JSON": "false", "TIERLINE_BUS_QUEUE_TYPE": "classic"}
    log = open(tmp_path / "sla.log", "ab")
    probe = Probe(amqp_bus, keys=("sla.#",))
    amqp_bus.start()

    def start():
        proc = subprocess.Popen([sys.executable, "-m", "services.sla"], cwd=ROOT, env=env, stdout=log, stderr=log)
        ready = wait_for(lambda: _ready(port), timeout=30)
        assert ready, (tmp_path / "sla.log").read_text()[-3000:]
        return proc

    proc = start()
    try:
        refs = []
        for i in range(20):
            ref = ticket_ref(priority="P1", created_at=iso(utcnow()))
            amqp_bus.publish(new_event("ticket.created", {"ticket": ref}, producer="intake", ticket_id=ref["id"]))
            refs.append(ref)
        assert wait_for(lambda: all(requests.get(f"http://127.0.0.1:{port}/api/v1/sla/tickets/{r['id']}",
                                                 headers=admin, timeout=5).ok for r in refs), timeout=20)
        probe.wait("sla.warning", timeout=10)  # the first clocks fire ...
        proc.send_signal(signal.SIGKILL)       # ... and the process dies with the rest due soon
        proc.wait(10)
        time.sleep(0.5)                        # what it published before dying has arrived
        seen_before = len(probe.events)
        time.sleep(4)                          # everything comes due while it is down
        assert len(probe.events) == seen_before  # nobody fires for a dead engine
        expected = 4 * len(refs)
        assert len(thresholds(probe.events)) < expected  # so some came due while it was down
        proc = start()
        wait_for(lambda: len(thresholds(probe.events)) >= expected, timeout=30)
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        amqp_bus.stop()
    seen = thresholds(probe.events)
    assert len(seen) == expected, (tmp_path / "sla.log").read_text()[-3000:]
    # One event per threshold. (The relay is at-least-once: a kill between publishing and marking
    # a row sent may publish that same event id again, which consumers' inboxes absorb.)
    assert all(len(ids) == 1 for ids in seen.values())
    for ref in refs:
        assert {(k[1], k[2], k[3]) for k in seen if k[0] == ref["id"]} == {
            ("sla.warning", "first_response", 50), ("sla.breached", "first_response", None),
            ("sla.warning", "resolution", 50), ("sla.breached", "resolution", None)}


def _ready(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False
