"""Fault suite: a steady load of tickets through the four services as processes while the
broker drops every connection, each service is SIGKILLed and restarted, the SMTP server refuses
mail for a while, PostgreSQL restarts, events are redelivered (duplicates) and poison messages
are injected. Then everything drains and is counted, Jepsen-style: every request is classified
ok / failed / unknown (unknowns are retried with the same Idempotency-Key until they resolve).

Short form by default (CI); TIERLINE_FAULT_LONG=1 runs the long form (longer load, SMTP down a
whole minute, the broker restarted with stop_app/start_app). Figures: docs/reliability.md.
"""
from __future__ import annotations

import collections
import json
import os
import random
import re
import subprocess
import threading
import time
import uuid

import pytest
import requests

from shared.bus import PublishError, connect
from shared.events import new_event
from shared.topology import TOPOLOGY
from tests.e2e.system import fast_config, multi_process
from tests.helpers import Probe, wait_for
from tests.servers import HttpReceiver, SmtpSink

pytestmark = [pytest.mark.fault, pytest.mark.integration]
LONG = os.environ.get("TIERLINE_FAULT_LONG") == "1"
LOAD_SECONDS = 150 if LONG else 45
SMTP_DOWN_SECONDS = 60 if LONG else 8
RATE = 3.0  # tickets per second
L1_MEMBERS = ("ivan.petrov@example.com", "anna.smith@example.com")


class Load:
    """Creates tickets at a steady rate; classifies every request."""

    def __init__(self, system):
        self.system = system
        self.outcomes: dict[str, str] = {}      # idempotency key -> ok | failed | unknown
        self.tickets: dict[str, dict] = {}      # idempotency key -> ticket (ok only)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _attempt(self, key: str) -> None:
        try:
            resp = self.system.call("POST", "/api/v1/tickets", "reporter", json={
                "title": f"Cannot reach the file share ({key[:8]})", "description": "since the morning",
                "category": "network", "service": "vpn", "impact": "low", "urgency": "low", "channel": "web"},
                headers={"Idempotency-Key": key}, timeout=10)
        except requests.RequestException:
            self.outcomes[key] = "unknown"
            return
        if resp.status_code in (200, 201):
            self.outcomes[key] = "ok"
            self.tickets[key] = resp.json()
        elif 400 <= resp.status_code < 500 and resp.status_code != 409:
            self.outcomes[key] = "failed"
        else:  # 5xx (database restarting) or 409 (same key still in flight): not known yet
            self.outcomes[key] = "unknown"

    def _run(self) -> None:
        while not self.stop.is_set():
            self._attempt(str(uuid.uuid4()))
            time.sleep(1 / RATE)

    def resolve_unknowns(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pending = [k for k, v in self.outcomes.items() if v == "unknown"]
            if not pending:
                return
            for key in pending:
                self._attempt(key)
            time.sleep(1)


def _chaos(system, sink, bus, log: list[str]) -> None:
    """The faults, spread over the load."""
    def note(text):
        log.append(f"{time.strftime('%H:%M:%S')} {text}")

    time.sleep(4)
    note("broker: close_all_connections")
    subprocess.run(["rabbitmqctl", "close_all_connections", "fault suite"], capture_output=True, timeout=60)
    for name in random.sample(["intake", "sla", "escalation", "notify"], 4):
        time.sleep(random.uniform(2, 4))
        note(f"SIGKILL {name}, restart")
        system.restart(name)
    note(f"SMTP refuses mail for {SMTP_DOWN_SECONDS}s")
    sink.refuse = True
    time.sleep(SMTP_DOWN_SECONDS)
    sink.refuse = False
    note("poison: bad JSON, unknown version, missing fields")
    good = new_event("ticket.created", {"ticket": {"id": "x", "key": "INC-0", "title": "x", "priority": "P4",
                     "status": "new", "reporter": {"name": "x"}, "created_at": "2026-01-01T00:00:00+00:00"}},
                     producer="fault").to_dict()
    bus.publish_raw("ticket.created", b"{not json")
    bus.publish_raw("ticket.created", json.dumps({**good, "version": 42}).encode())
    bus.publish_raw("ticket.created", json.dumps({**good, "payload": {}}).encode())
    time.sleep(2)
    note("postgresql: restart")
    version = os.listdir("/etc/postgresql")[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
                   capture_output=True, timeout=120)
    if LONG:
        time.sleep(5)
        note("broker: stop_app / start_app")
        subprocess.run(["rabbitmqctl", "stop_app"], capture_output=True, timeout=120)
        time.sleep(5)
        subprocess.run(["rabbitmqctl", "start_app"], capture_output=True, timeout=120)


@pytest.mark.timeout(900)
def test_nothing_lost_nothing_doubled(tmp_path, amqp_url, bus_prefix, pg_schema, capsys):
    sink = SmtpSink().start()
    tracker = HttpReceiver(secret="s").start()
    urls = {name: pg_schema(name) for name in ("intake", "sla", "escalation", "notify")}
    config = fast_config(tmp_path / "tierline.yaml")
    _short_p4_ola(config)
    system = multi_process(tmp_path, amqp_url=amqp_url, bus_prefix=bus_prefix, database_urls=urls, smtp=sink,
                           tracker_url=tracker.url("/tracker"), tracker_secret="s", config_file=config)
    bus = connect(amqp_url, prefix=bus_prefix)
    probe = Probe(bus, keys=("ticket.created", "sla.breached", "escalation.routed"), name="fault.probe")
    bus.start()
    load, chaos_log = Load(system), []
    try:
        load.thread.start()
        chaos = threading.Thread(target=_chaos, args=(system, sink, bus, chaos_log))
        chaos.start()
        # Duplicates: redeliver a sample of real events while the load runs.
        redelivered = 0
        deadline = time.monotonic() + LOAD_SECONDS
        while time.monotonic() < deadline:
            time.sleep(3)
            for event in random.sample(probe.events, min(5, len(probe.events))):
                _publish_patiently(bus, event)
                redelivered += 1
        load.stop.set()
        load.thread.join()
        chaos.join()
        for name, proc in system.procs.items():  # every service is running again
            assert proc.poll() is None, f"{name} died:\n{system.tail(name)}"
        load.resolve_unknowns()
        counts = _drain_and_count(system, sink, bus, probe, load)
        counts["redelivered_on_purpose"] = redelivered
        with capsys.disabled():
            print("\nfault run:", json.dumps(counts, ensure_ascii=False), "\n  " + "\n  ".join(chaos_log))
        assert counts["unknown"] == 0
        assert counts["lost"] == 0 and counts["duplicated"] == 0, counts
        assert counts["dead_lettered_other"] == 0 and counts["dead_lettered_poison"] == 9, counts
    except BaseException:
        for name in system.procs:
            print(f"----- {name} -----\n{system.tail(name, 40)}")
        raise
    finally:
        system.stop()
        bus.stop()
        sink.stop()
        tracker.stop()
        bus.delete_topology(TOPOLOGY)


def _publish_patiently(bus, event, timeout: float = 120) -> None:
    """The suite's own duplicates go out whatever the broker is doing (it may be stopped)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return bus.publish(event)
        except PublishError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _short_p4_ola(config_path) -> None:
    import yaml
    doc = yaml.safe_load(config_path.read_text())
    for policy in doc["policies"]:
        if policy["match"]["priority"] == "P4":
            policy.update(calendar="24x7", first_response=3600, resolution=7200, warnings=[],
                          ola={"L1": 20, "L2": 3600})
            policy.pop("resolution_calendar", None)
    config_path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def _drain_and_count(system, sink, bus, probe, load) -> dict:
    ok = {k: t for k, t in load.tickets.items()}
    keys = {t["key"] for t in ok.values()}
    # Every acknowledged ticket exists once; its L1 OLA (20 s) breached once; it moved to L2 once.
    def listing(query=""):
        items, cursor = [], ""
        while True:
            page = system.call("GET", f"/api/v1/tickets?limit=100{query}{cursor}", "admin").json()
            items += page["items"]
            if not page.get("next_cursor"):
                return items
            cursor = f"&cursor={page['next_cursor']}"

    def settled():
        items = listing("&tier=L2")
        return {t["key"] for t in items} >= keys and items
    at_l2 = wait_for(settled, timeout=180, interval=1)
    assert at_l2, "not every acknowledged ticket reached L2 after its OLA breach"

    def mail_keys(addresses):  # (address, ticket key, Message-ID) of every mail received
        seen = collections.Counter()
        for address in addresses:
            for m in sink.to(address):
                found = re.search(r"\[(INC-\d+)\]", m["Subject"] or "")  # each header parsed once
                if found and found.group(1) in keys:
                    seen[(address, found.group(1), m["Message-ID"])] += 1
        return seen

    def mails_missing():
        per = collections.Counter((a, k) for (a, k, _) in mail_keys(L1_MEMBERS + ("dmitry.volkov@example.com",)))
        return sorted((a, k) for a in L1_MEMBERS + ("dmitry.volkov@example.com",) for k in keys if not per[(a, k)])
    assert wait_for(lambda: not mails_missing(), timeout=180, interval=1), \
        f"not every expected mail was delivered: {len(mails_missing())} missing, e.g. {mails_missing()[:5]}"
    time.sleep(3)  # anything doubled would show up now

    all_tickets = listing()
    created = collections.Counter(e.payload["ticket"]["key"] for e in {e.id: e for e in probe.of("ticket.created")}.values())
    breaches = collections.Counter(e.payload["key"] for e in {e.id: e for e in probe.of("sla.breached")}.values()
                                   if e.payload["clock"] == "ola:L1")
    to_l2 = collections.Counter(e.payload["key"] for e in {e.id: e for e in probe.of("escalation.routed")}.values()
                                if e.payload["tier"] == "L2")
    # One mail per (recipient, ticket, event): the L1 group's assignment mail and the L2 one.
    group_mails = collections.Counter()
    for address in L1_MEMBERS + ("dmitry.volkov@example.com",):
        for m in sink.to(address):
            group_mails[(address, m["Subject"])] += 1
    dead = {q: bus.take_dead_letters(q) for q in TOPOLOGY.queues}
    poison_markers = (b"{not json", b'"version": 42', b'"payload": {}')
    poison = sum(1 for bodies in dead.values() for b in bodies if any(p in b for p in poison_markers))
    other = sum(len(b) for b in dead.values()) - poison
    counts = {
        "sent": len(load.outcomes), "acknowledged": len(ok),
        "failed": sum(1 for v in load.outcomes.values() if v == "failed"),
        "unknown": sum(1 for v in load.outcomes.values() if v == "unknown"),
        "lost": len(keys - {t["key"] for t in at_l2}) + sum(1 for k in keys if created[k] == 0),
        "duplicated_by_kind": {
            "tickets": max(0, len(all_tickets) - len(ok)),
            "ticket.created": sum(c - 1 for c in created.values() if c > 1),
            "sla.breached": sum(c - 1 for c in breaches.values() if c > 1),
            "moves to L2": sum(c - 1 for c in to_l2.values() if c > 1),
            "group mails": {f"{a} {subj}": c for (a, subj), c in group_mails.items() if c > 1}},
        "sla_breaches": sum(breaches.values()), "moves_to_l2": sum(to_l2.values()),
        "group_mails": sum(group_mails.values()),
        "dead_lettered_poison": poison, "dead_lettered_other": other,
    }
    kinds = counts["duplicated_by_kind"]
    counts["duplicated"] = sum(v for v in kinds.values() if isinstance(v, int)) + sum(
        c - 1 for c in kinds["group mails"].values())
    return counts
