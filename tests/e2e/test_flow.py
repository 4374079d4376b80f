"""The whole system, end to end, as separate processes and as the embedded single process.

A P1 ticket is created over HTTP, routed to L1 (its group is mailed), its OLA clocks breach and
it climbs to L2 and L3 (each group and the managers are mailed), an L3 agent hands it to the
developers (a defect is created in the tracker), the tracker's signed webhook resolves it, the
ticket returns to L1, the reporter is told, the ticket is resolved and the reporter rates it.
Every step is checked through the public APIs and the mails actually received.
"""
from __future__ import annotations

import json
import time

import pytest

from services.escalation.trackers import sign_delivery
from tests.e2e.system import embedded, fast_config, multi_process
from tests.helpers import wait_for
from tests.servers import HttpReceiver, SmtpSink

pytestmark = [pytest.mark.e2e]
SECRET = "tracker-secret-for-e2e"


def _ticket(system, ticket_id, who="lead"):
    resp = system.call("GET", f"/api/v1/tickets/{ticket_id}", who)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _wait_ticket(system, ticket_id, predicate, what, timeout=40):
    def check():
        t = _ticket(system, ticket_id)
        return t if predicate(t) else None
    found = wait_for(check, timeout, 0.2)
    assert found, f"ticket never reached: {what}; now {_ticket(system, ticket_id)}"
    return found


def _wait_mail(system, address, key, timeout=30, count=1):
    def check():
        found = [m for m in system.mails_to(address) if key in (m["Subject"] or "")]
        return found if len(found) >= count else None
    mails = wait_for(check, timeout, 0.2)
    assert mails, f"no mail to {address} about {key}; got {[m['Subject'] for m in system.mails_to(address)]}"
    return mails


def play_flow(system, tracker: HttpReceiver) -> None:
    # 1. A reporter logs an incident over HTTP.
    resp = system.call("POST", "/api/v1/tickets", "reporter", json={
        "title": "VPN down for the whole Kazan office", "description": "Nobody can connect since 9:00",
        "channel": "web", "category": "network", "service": "vpn", "impact": "high", "urgency": "high"})
    assert resp.status_code == 201, resp.text
    created = resp.json()
    ticket_id, key = created["id"], created["key"]
    assert created["priority"] == "P1" and key.startswith("INC-")

    # 2. Routed to L1; the group is mailed, the reporter gets an acknowledgement.
    t = _wait_ticket(system, ticket_id, lambda t: t["tier"] == "L1", "routed to L1")
    assert t["group"] == "Service Desk" and t["status"] == "assigned"
    _wait_mail(system, "ivan.petrov@example.com", key)
    _wait_mail(system, "anna.smith@example.com", key)
    _wait_mail(system, "kate@example.com", key)

    # 3. The L1 OLA clock (3 s) breaches: the ladder moves it to the L2 group handling network.
    t = _wait_ticket(system, ticket_id, lambda t: t["tier"] == "L2", "escalated to L2")
    assert t["group"] == "Infrastructure" and t["breached"] is True
    _wait_mail(system, "dmitry.volkov@example.com", key)
    _wait_mail(system, "sd-manager@example.com", key)  # the L1 manager hears of the breach
    sla = system.call("GET", f"/api/v1/sla/tickets/{ticket_id}", "lead").json()
    clocks = {c["name"]: c for c in sla["clocks"]}
    assert clocks["ola:L1"]["state"] == "breached" and clocks["resolution"]["state"] == "running"

    # 4. The L2 OLA breaches too: L3.
    t = _wait_ticket(system, ticket_id, lambda t: t["tier"] == "L3", "escalated to L3")
    assert t["group"] == "Platform Engineering"
    _wait_mail(system, "elena.sokolova@example.com", key)
    _wait_mail(system, "infra-manager@example.com", key)

    # 5. An L3 agent hands it to the developers: one defect is created in the tracker.
    resp = system.call("POST", f"/api/v1/tickets/{ticket_id}/escalations", "agent3",
                       json={"to_tier": "DEV", "reason": "bug in the VPN concentrator firmware"})
    assert resp.status_code == 202, resp.text
    t = _wait_ticket(system, ticket_id, lambda t: t["tier"] == "DEV" and t["defects"], "with the developers")
    assert t["group"] == "Developers"
    defect = t["defects"][0]
    created_defects = tracker.received("/tracker")
    assert len(created_defects) == 1 and tracker.valid_signature(created_defects[0])
    assert key in json.dumps(created_defects[0]["body"])
    assert defect["defect_id"] == "BUG-1"
    _wait_mail(system, "nikolai.orlov@example.com", key)

    # 6. The tracker says the defect is fixed (signed webhook); the ticket returns to L1.
    body = json.dumps({"delivery_id": "d-1", "defect_id": "BUG-1", "status": "fixed",
                       "comment": "firmware 2.4.1 deployed"}).encode()
    stamp = str(int(time.time()))
    import requests
    bad = requests.post(system.url("/api/v1/escalation/trackers/default/webhook"), data=body, timeout=10,
                        headers={"Content-Type": "application/json", "X-Tierline-Timestamp": stamp,
                                 "X-Tierline-Signature": "sha256=" + "0" * 64})
    assert bad.status_code == 401
    good = requests.post(system.url("/api/v1/escalation/trackers/default/webhook"), data=body, timeout=10,
                         headers={"Content-Type": "application/json", "X-Tierline-Timestamp": stamp,
                                  "X-Tierline-Signature": sign_delivery(SECRET, stamp, body)})
    assert good.status_code == 200, good.text
    t = _wait_ticket(system, ticket_id, lambda t: t["tier"] == "L1", "back at L1")
    assert t["group"] == "Service Desk"
    _wait_mail(system, "kate@example.com", key, count=2)

    # 7. L1 confirms with the reporter and resolves; the reporter rates it, once.
    for status in ("in_progress", "resolved"):
        resp = system.call("POST", f"/api/v1/tickets/{ticket_id}/status", "agent1",
                           json={"status": status, "reason": "fix confirmed by the reporter"})
        assert resp.status_code == 200, resp.text
    resp = system.call("POST", f"/api/v1/tickets/{ticket_id}/feedback", "reporter",
                       json={"csat": 5, "nps": 9, "comment": "quick once it reached the right people"})
    assert resp.status_code in (200, 201), resp.text
    assert system.call("POST", f"/api/v1/tickets/{ticket_id}/feedback", "reporter",
                       json={"csat": 1}).status_code == 409

    # 8. The record: why each move happened, and the KPI report counts it.
    history = system.call("GET", f"/api/v1/escalation/tickets/{ticket_id}", "lead").json()
    triggers = [r["trigger"] for r in history["records"]]
    assert triggers[0] == "initial" and "ladder" in triggers and "manual" in triggers
    kpi = system.call("GET", "/api/v1/reports/kpi", "lead").json()
    assert kpi["tickets"] >= 1 and kpi["resolved"] >= 1
    # No mail was sent twice to one person for one event (stable Message-IDs are unique).
    ids = [m["Message-ID"] for addr in ("kate@example.com", "ivan.petrov@example.com") for m in system.mails_to(addr)]
    assert len(ids) == len(set(ids))


@pytest.fixture
def tracker():
    receiver = HttpReceiver(secret=SECRET).start()
    yield receiver
    receiver.stop()


@pytest.mark.integration
def test_multi_process_flow(tmp_path, amqp_url, bus_prefix, pg_schema, tracker):
    smtp = SmtpSink().start()
    urls = {name: pg_schema(name) for name in ("intake", "sla", "escalation", "notify")}
    system = multi_process(tmp_path, amqp_url=amqp_url, bus_prefix=bus_prefix, database_urls=urls, smtp=smtp,
                           tracker_url=tracker.url("/tracker/issues"), tracker_secret=SECRET,
                           config_file=fast_config(tmp_path / "tierline.yaml"))
    try:
        play_flow(system, tracker)
    except BaseException:
        for name in system.procs:
            print(f"----- {name} -----\n{system.tail(name)}")
        raise
    finally:
        system.stop()
        smtp.stop()
        from shared.bus import connect
        from shared.topology import TOPOLOGY
        connect(amqp_url, prefix=bus_prefix).delete_topology(TOPOLOGY)


def test_embedded_flow(tmp_path, tracker):
    system = embedded(tmp_path, config_file=fast_config(tmp_path / "tierline.yaml"),
                      tracker_url=tracker.url("/tracker/issues"), tracker_secret=SECRET)
    try:
        play_flow(system, tracker)
        # Ctrl-C stops it cleanly and a restart keeps every ticket and clock.
        system.stop()
        assert system.procs["tierline"].returncode == 0, system.tail("tierline")
        system.start("tierline", system.procs["tierline"].args, system.envs["tierline"])
        system.wait_ready()
        tickets = system.call("GET", "/api/v1/tickets", "lead").json()["items"]
        assert len(tickets) == 1 and tickets[0]["status"] == "resolved"
        clocks = system.call("GET", f"/api/v1/sla/tickets/{tickets[0]['id']}", "lead").json()["clocks"]
        assert {c["name"] for c in clocks} >= {"first_response", "resolution", "ola:L1"}
    except BaseException:
        print(system.tail("tierline", 120))
        raise
    finally:
        system.stop()
