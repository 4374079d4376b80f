"""The developers' hand-off on real RabbitMQ and PostgreSQL, with a local HTTP receiver standing in
for the tracker: retries with backoff, one defect only, and the signed webhook coming back."""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services.escalation.bootstrap import build
from services.escalation.trackers import sign_delivery
from tests.helpers import Probe, running, ticket_ref, token, wait_for
from tests.integration.test_escalation_flow import API, Harness, kinds, place, requested

pytestmark = pytest.mark.integration
SECRET = "tracker-s3cret"
DEV_CONTACTS = {"members": [{"name": "Nikolai Orlov", "email": "nikolai.orlov@example.com", "chat": "@nikolai",
                             "timezone": "Europe/Moscow", "language": "ru"}],
                "manager": {"name": "Alex Brown", "email": "dev-lead@example.com", "chat": "@alex", "timezone": None,
                            "language": "en"},
                "on_call": None}


class Receiver:
    """A tracker on 127.0.0.1: fails the first `fail_first` requests with 500, then creates one
    defect per Idempotency-Key (as a tracker honouring the key does)."""

    def __init__(self, fail_first: int = 0):
        self.fail_first = fail_first
        self.requests: list[tuple[str, dict, bytes]] = []
        self.created: dict[str, str] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.requests.append((self.path, dict(self.headers), body))
                    if len(receiver.requests) <= receiver.fail_first:
                        return self._answer(500, {"error": "database on fire"})
                    key = self.headers.get("Idempotency-Key")
                    defect = receiver.created.setdefault(key, str(100 + len(receiver.created)))
                url = f"http://tracker.test/issues/{defect}"
                self._answer(201, {"id": defect, "url": url, "iid": int(defect), "web_url": url})

            def _answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/defects"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver(fail_first=2)
    yield r
    r.close()


@pytest.fixture
def make(settings, pg_schema, amqp_bus):
    """Build the service with the given trackers (real clock: backoff and webhook times are real)."""
    started = []

    def make_(trackers: list[dict] | None):
        conf = settings(database_url=pg_schema("escalation"), public_url="https://tierline.example.com")
        domain = {**conf.domain, "tracker_retry": {"poll_seconds": 0.1, "backoff_seconds": 0.05,
                                                   "max_backoff_seconds": 0.2}}
        if trackers is not None:
            domain["trackers"] = trackers
        conf = dataclasses.replace(conf, domain=domain)
        service = build(conf, bus=amqp_bus)
        probe = Probe(amqp_bus, keys=("escalation.#",))
        ctx = running(amqp_bus, service)
        ctx.__enter__()
        started.append(ctx)
        return Harness(service, probe, amqp_bus, conf)

    yield make_
    for ctx in started:
        ctx.__exit__(None, None, None)


def hand_off(h: Harness, receiver: Receiver) -> tuple[dict, dict]:
    """A ticket at L1 (assignee Ivan) escalated to DEV; returns (ticket ref, defect_linked payload)."""
    ref = place(h, ticket_ref(priority="P2", category="bug", title="CRM loses orders"), assignee="Ivan Petrov")
    out = h.feed(requested(ref, "DEV", "agent", reason="reproducible bug in the CRM"))
    # routed at once; defect_linked follows when the tracker has answered (maybe already)
    assert kinds(out)[0] == ("escalation.routed", "manual", "Developers")
    [linked] = h.probe.wait("escalation.defect_linked", timeout=15)
    return ref, linked.payload


def post_webhook(h: Harness, body: dict, *, secret: str = SECRET, timestamp: float | None = None,
                 signature: str | None = None, tracker: str = "default"):
    raw = json.dumps(body).encode()
    stamp = str(int(timestamp if timestamp is not None else time.time()))
    headers = {"Content-Type": "application/json", "X-Tierline-Timestamp": stamp,
               "X-Tierline-Signature": signature or sign_delivery(secret, stamp, raw)}
    return h.client.post(f"{API}/trackers/{tracker}/webhook", data=raw, headers=headers)


def test_developer_hand_off_retries_a_failing_tracker_and_creates_one_defect(make, receiver):
    h = make([{"name": "default", "kind": "webhook", "url": receiver.url, "secret": SECRET}])
    ref, linked = hand_off(h, receiver)

    assert linked == {"key": ref["key"], "tracker": "default", "defect_id": "100",
                      "url": "http://tracker.test/issues/100", "group": "Developers", "contacts": DEV_CONTACTS}
    assert len(receiver.requests) == 3 and len(receiver.created) == 1  # 500, 500, created
    keys = {headers["Idempotency-Key"] for _, headers, _ in receiver.requests}
    bodies = [json.loads(body) for _, _, body in receiver.requests]
    assert len(keys) == 1 and {b["idempotency_key"] for b in bodies} == keys
    for _, headers, body in receiver.requests:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Tierline-Signature"] == expected
    sent = bodies[-1]
    link = f"https://tierline.example.com/api/v1/tickets/{ref['id']}"
    assert sent["ticket"] == {"id": ref["id"], "key": ref["key"], "title": "CRM loses orders", "priority": "P2",
                              "url": link}
    assert sent["link"] == link and sent["summary"] == f"{ref['key']}: CRM loses orders"
    assert sent["reason"] == "reproducible bug in the CRM (upward)" and sent["description"] == "details"
    assert [line.split(" UTC ")[1] for line in sent["history"]] == [
        "initial: - -> Service Desk (applied) by tierline: default group",
        "manual: Service Desk -> Developers (routed) by Ivan Petrov: reproducible bug in the CRM (upward)"]

    # the job is done: nothing more is sent, and redelivering the request opens no second job
    [defect] = h.client.get(f"{API}/defects?ticket_id={ref['id']}", headers=h.staff).get_json()
    assert (defect["status"], defect["attempts"], defect["defect_id"], defect["last_error"]) == ("linked", 3, "100", None)
    assert defect["id"] in keys
    assert h.feed() == []
    assert len(h.probe.of("escalation.defect_linked")) == 1 and len(receiver.requests) == 3
    records = h.client.get(f"{API}/tickets/{ref['id']}", headers=h.staff).get_json()["records"]
    assert [(r["trigger"], r["outcome"], r["who"]) for r in records] == [
        ("initial", "applied", "tierline"), ("manual", "routed", "Ivan Petrov"), ("defect", "linked", "tracker:default")]
    # only who sees the ticket (shared/visibility.py), now at DEV, sees its history and its defect
    placed = h.client.get(f"{API}/tickets/{ref['id']}", headers=token(h.conf, "lead")).get_json()["ticket"]
    assert (placed["tier"], placed["group"]) == ("DEV", "Developers")
    for outsider in (token(h.conf, "agent", tier="L1"), token(h.conf, "agent", tier="L3", groups=["Platform Engineering"])):
        assert h.client.get(f"{API}/defects", headers=outsider).get_json() == []
        assert h.client.get(f"{API}/tickets/{ref['id']}", headers=outsider).status_code == 404
    for who in (token(h.conf, "agent", tier="DEV"), token(h.conf, "agent", tier="L3", groups=["Developers"]),
                token(h.conf, "lead")):
        assert [d["id"] for d in h.client.get(f"{API}/defects", headers=who).get_json()] == [defect["id"]]
        assert h.client.get(f"{API}/tickets/{ref['id']}", headers=who).status_code == 200


def test_tracker_webhook_sends_the_ticket_back_to_its_l1_owner(make, receiver):
    receiver.fail_first = 0
    h = make([{"name": "default", "kind": "webhook", "url": receiver.url, "secret": SECRET}])
    ref, linked = hand_off(h, receiver)
    fixed = {"delivery_id": "d-2", "defect_id": linked["defect_id"], "status": "fixed", "comment": "patched in 4.2.1"}

    # not from the tracker: no signature, a wrong one, another secret, a stale timestamp
    assert h.client.post(f"{API}/trackers/default/webhook", json=fixed).status_code == 401
    assert post_webhook(h, fixed, signature="sha256=" + "0" * 64).status_code == 401
    assert post_webhook(h, fixed, secret="guessed").status_code == 401
    stale = post_webhook(h, fixed, timestamp=time.time() - 301)
    assert stale.status_code == 401 and "seconds away" in stale.get_json()["error"]["message"]
    assert post_webhook(h, {"defect_id": "999", "status": "fixed"}).status_code == 404
    bad = post_webhook(h, {"defect_id": linked["defect_id"], "status": "x" * 41})
    assert bad.status_code == 422 and "status" in bad.get_json()["error"]["fields"]

    # progress is noted without moving the ticket
    answer = post_webhook(h, {"delivery_id": "d-1", "defect_id": linked["defect_id"], "status": "in_progress"})
    assert answer.status_code == 200 and answer.get_json()["status"] == "updated"
    assert h.feed() == []

    answer = post_webhook(h, fixed)
    assert answer.status_code == 200 and answer.get_json() == {"status": "resolved", "defect_id": linked["defect_id"]}
    [resolved] = h.probe.wait("escalation.defect_resolved")
    assert resolved.payload == {
        "key": ref["key"], "tracker": "default", "defect_id": linked["defect_id"], "url": linked["url"],
        "resolution": "fixed", "comment": "patched in 4.2.1", "escalation_id": resolved.payload["escalation_id"],
        "return_to": {"tier": "L1", "group": "Service Desk", "assignee": "Ivan Petrov"}}
    assert resolved.correlation_id == ref["id"]

    # the same delivery again (the tracker retrying it): answered, no effect
    again = post_webhook(h, fixed)
    assert again.status_code == 200 and again.get_json()["status"] == "duplicate"
    assert h.feed() == [] and len(h.probe.of("escalation.defect_resolved")) == 1

    body = h.client.get(f"{API}/tickets/{ref['id']}", headers=h.staff).get_json()
    last = body["records"][-1]
    assert (last["trigger"], last["outcome"], last["from"], last["to"], last["who"]) == (
        "defect_resolved", "returned", {"tier": "DEV", "group": "Developers"}, {"tier": "L1", "group": "Service Desk"},
        "tracker:default")
    assert (body["ticket"]["tier"], body["ticket"]["group"], body["ticket"]["assignee"]) == ("L1", "Service Desk", "Ivan Petrov")
    assert [(d["status"], d["tracker_status"], d["resolution"]) for d in body["defects"]] == [("resolved", "fixed", "fixed")]


def test_gitlab_tracker_and_its_native_webhook(make, receiver):
    receiver.fail_first = 0
    base = receiver.url.rsplit("/", 1)[0]
    h = make([{"name": "default", "kind": "gitlab", "url": base, "project": "team/crm", "token": "glpat-x",
               "secret": "hook-token"}])
    ref, linked = hand_off(h, receiver)
    path, headers, body = receiver.requests[-1]
    assert path == "/api/v4/projects/team%2Fcrm/issues" and headers["PRIVATE-TOKEN"] == "glpat-x"
    assert json.loads(body)["labels"] == "priority::P2,tierline"

    hook = {"object_kind": "issue", "object_attributes": {"iid": int(linked["defect_id"]), "state": "closed",
                                                          "updated_at": "2026-11-23 10:00:00 UTC"}}
    assert h.client.post(f"{API}/trackers/default/webhook", json=hook,
                         headers={"X-Gitlab-Token": "wrong"}).status_code == 401
    answer = h.client.post(f"{API}/trackers/default/webhook", json=hook, headers={"X-Gitlab-Token": "hook-token"})
    assert answer.status_code == 200 and answer.get_json()["status"] == "resolved"
    [resolved] = h.probe.wait("escalation.defect_resolved")
    assert resolved.payload["return_to"] == {"tier": "L1", "group": "Service Desk", "assignee": "Ivan Petrov"}
    other = {"object_kind": "note", "object_attributes": {"iid": 1}}
    assert h.client.post(f"{API}/trackers/default/webhook", json=other,
                         headers={"X-Gitlab-Token": "hook-token"}).get_json()["status"] == "ignored"
    assert "glpat-x" not in h.client.get(f"{API}/trackers", headers=h.staff).get_data(as_text=True)


def test_without_a_tracker_the_ticket_still_reaches_dev_and_the_defect_waits(make):
    h = make(None)  # the shipped defaults: "default" tracker with no URL
    ref = place(h, ticket_ref(category="bug"))
    out = h.feed(requested(ref, "DEV", "agent"))
    assert kinds(out) == [("escalation.routed", "manual", "Developers")]

    def waiting():
        found = h.client.get(f"{API}/defects?status=pending", headers=h.staff).get_json()
        return found if found and found[0]["last_error"] else None
    [defect] = wait_for(waiting)
    assert "not configured" in defect["last_error"] and defect["attempts"] >= 1
    assert h.client.get(f"{API}/trackers", headers=h.staff).get_json() == [
        {"name": "default", "kind": "webhook", "url": None, "project": None, "configured": False, "pending_defects": 1}]
    assert h.client.post(f"{API}/defects/{defect['id']}/retry", headers=token(h.conf, "agent")).status_code == 403
    retried = h.client.post(f"{API}/defects/{defect['id']}/retry", headers=token(h.conf, "lead"))
    assert retried.status_code == 202 and retried.get_json()["status"] == "pending"
    assert h.feed() == [] and h.probe.of("escalation.defect_linked") == []
