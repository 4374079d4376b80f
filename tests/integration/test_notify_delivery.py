"""notify on real PostgreSQL and RabbitMQ, with a real SMTP server (aiosmtpd) and a local HTTP
receiver standing in for Slack, Telegram and webhook endpoints."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import hashlib
import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from services.notify.bootstrap import build
from shared.clock import FrozenClock
from shared.events import new_event
from tests.helpers import Probe, running, ticket_event, ticket_ref, token, wait_for
from tests.servers import free_port

pytestmark = pytest.mark.integration
API = "/api/v1/notify"
KATE = {"name": "Kate Reporter", "email": "kate@example.com"}
IVAN = {"name": "Ivan Petrov", "email": "ivan.petrov@example.com", "language": "ru", "timezone": "Europe/Moscow"}
ANNA = {"name": "Anna Smith", "email": "anna.smith@example.com", "language": "en"}
OLGA = {"name": "Olga Ivanova", "email": "sd-manager@example.com", "language": "ru"}
OUTCOMES = ("notify.delivered", "notify.failed")


# --- a real SMTP server -----------------------------------------------------------------------
@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list
    raw: bytes
    msg: email.message.EmailMessage

    @property
    def text(self) -> str:
        return self.msg.get_body(("plain",)).get_content()

    @property
    def html(self) -> str:
        return self.msg.get_body(("html",)).get_content()


class SmtpServer:
    """aiosmtpd on a free port; records every message; can answer 451 or be stopped (down)."""

    def __init__(self):
        self.mails: list[Mail] = []
        self.refuse_next = 0   # answer "451 try later" to this many messages
        self.refused = 0
        self.lock = threading.Lock()
        self.port = free_port()
        self.controller = None

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            if self.refuse_next > 0:
                self.refuse_next -= 1
                self.refused += 1
                return "451 4.3.0 Try again later"
            raw = envelope.original_content or envelope.content
            self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), raw,
                                   email.message_from_bytes(raw, policy=email.policy.default)))
        return "250 OK"

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self):
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def to(self, address: str) -> list[Mail]:
        with self.lock:
            return [m for m in self.mails if address in m.rcpt_tos]


@pytest.fixture
def smtp():
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


# --- a local HTTP receiver for chat endpoints -------------------------------------------------
class Receiver:
    def __init__(self):
        self.requests: list[dict] = []
        self.status: dict[str, int] = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    status = outer.status.get(self.path, 200)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def to(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def notify(settings, pg_schema, amqp_bus, smtp):
    """Factory: the notify service on a fresh schema, mailing the test SMTP server."""
    def make(clock=None, **overrides):
        values = dict(database_url=pg_schema("notify"), smtp_url=smtp.url, mail_from="Tierline Desk <desk@example.com>",
                      public_url="https://desk.example.com", notify_retry_seconds=0.1, notify_backoff_base=0.1,
                      notify_max_attempts=3, notify_give_up_seconds=0)
        values.update(overrides)
        svc = build(settings(**values), bus=amqp_bus, clock=clock)
        svc.extras["admin"] = token(svc.settings, "admin", email="admin@example.com")
        return svc
    return make


def deliveries(svc, **query) -> list[dict]:
    response = svc.app.test_client().get(f"{API}/deliveries", query_string={"limit": 200, **query},
                                         headers=svc.extras["admin"])
    assert response.status_code == 200, response.json
    return response.json["items"]


def assigned(ref, members, manager=OLGA, group="Service Desk"):
    ref = {**ref, "status": "assigned", "tier": "L1", "group": group}
    return ticket_event("ticket.assigned", ref, previous={"tier": None, "group": None}, trigger="initial",
                        contacts={"members": members, "manager": manager})


def sla(type_, ref, **extra):
    payload = {"key": ref["key"], "priority": ref["priority"], "clock": "resolution", "tier": "L1",
               "due_at": "2026-11-23T12:00:00+00:00", "target_seconds": 28800, "elapsed_seconds": 21600, **extra}
    return new_event(type_, payload, producer="sla", ticket_id=ref["id"])


def subjects(mails):
    return [m.msg["Subject"] for m in mails]


# --- the right message reaches the right recipient, for every event ----------------------------
def test_each_event_reaches_the_right_people(notify, amqp_bus, smtp):
    svc = notify()
    probe = Probe(amqp_bus, keys=OUTCOMES)
    ref = ticket_ref(key="INC-101", title="VPN is down", reporter=KATE)
    placed = {**ref, "status": "assigned", "tier": "L1", "group": "Service Desk", "assignee": "Anna Smith"}
    defect_contacts = {"members": [{"name": "Nikolai Orlov", "email": "nikolai.orlov@example.com", "language": "ru"}]}
    events = [
        ticket_event("ticket.created", ref),
        assigned(placed, [IVAN, ANNA]),
        ticket_event("ticket.commented", {**placed, "status": "in_progress"}, comment_id="c1", public=True,
                     body="Please restart the client.", author={"name": "Anna Smith", "email": ANNA["email"]},
                     author_role="agent"),
        ticket_event("ticket.commented", placed, comment_id="c2", public=False, body="internal note",
                     author={"name": "Anna Smith", "email": ANNA["email"]}, author_role="agent"),
        ticket_event("ticket.status_changed", {**placed, "status": "pending"}, previous_status="in_progress",
                     status="pending", reason="Which office are you in?"),
        ticket_event("ticket.status_changed", {**placed, "status": "in_progress"}, previous_status="pending",
                     status="in_progress"),
        sla("sla.warning", ref, percent=75),
        sla("sla.breached", ref),
        new_event("escalation.manager_notified", {
            "key": ref["key"], "tier": "L2", "group": "Infrastructure", "reason": "resolution breached",
            "trigger": "ladder", "escalation_id": "e1",
            "manager": {"name": "Pavel Sidorov", "email": "infra-manager@example.com", "language": "ru"}},
            producer="escalation", ticket_id=ref["id"]),
        new_event("escalation.defect_linked", {"key": ref["key"], "tracker": "jira", "defect_id": "DEV-7",
                                               "url": "https://jira.example.com/DEV-7", "contacts": defect_contacts},
                  producer="escalation", ticket_id=ref["id"]),
        new_event("escalation.defect_resolved", {"key": ref["key"], "tracker": "jira", "defect_id": "DEV-7",
                                                 "return_to": {"tier": "L1", "group": "Service Desk"}},
                  producer="escalation", ticket_id=ref["id"]),
        ticket_event("ticket.status_changed", {**placed, "status": "resolved"}, previous_status="in_progress",
                     status="resolved", reason="VPN profile renewed"),
    ]
    with running(amqp_bus, svc):
        for event in events:
            amqp_bus.publish(event)
        delivered = probe.wait("notify.delivered", count=11, timeout=20)

    expected = {
        "kate@example.com": ["[INC-101] We received your request: VPN is down",
                             "[INC-101] New reply: VPN is down",
                             "[INC-101] We need your input: VPN is down",
                             "[INC-101] Update on your request: VPN is down",
                             "[INC-101] Resolved: VPN is down"],
        "ivan.petrov@example.com": ["[INC-101] Назначено группе Service Desk: VPN is down"],
        "anna.smith@example.com": ["[INC-101] Assigned to Service Desk: VPN is down",
                                   "[INC-101] SLA warning 75% (resolution): VPN is down"],
        "sd-manager@example.com": ["[INC-101] Нарушен SLA (решение): VPN is down"],
        "infra-manager@example.com": ["[INC-101] Эскалация: VPN is down"],
        "nikolai.orlov@example.com": ["[INC-101] Связан дефект DEV-7: VPN is down"],
    }
    assert {to: subjects(smtp.to(to)) for to in expected} == expected
    assert len(smtp.mails) == 11 and all(len(m.rcpt_tos) == 1 for m in smtp.mails)
    assert all(m.mail_from == "desk@example.com" and m.msg["From"] == "Tierline Desk <desk@example.com>"
               for m in smtp.mails)
    # one thread per ticket; one stable Message-ID per delivery
    assert {m.msg["References"] for m in smtp.mails} == {"<INC-101@tierline>"}
    rows = {r["id"]: r for r in deliveries(svc, ticket_key="INC-101")}
    assert {m.msg["Message-ID"] for m in smtp.mails} == {f"<{i}@tierline>" for i in rows}
    pending, reply, resolved = (smtp.to("kate@example.com")[i] for i in (2, 1, 4))
    assert "Which office are you in?" in pending.text and "Please restart the client." in reply.text
    assert f"https://desk.example.com/api/v1/tickets/{ref['id']}/feedback" in resolved.text
    assert 'href="https://jira.example.com/DEV-7"' in smtp.to("nikolai.orlov@example.com")[0].html
    # the outcome events tell the flow what happened
    assert {e.payload["source_event_id"] for e in delivered} == {r["source_event_id"] for r in rows.values()}
    assert all(e.correlation_id == ref["id"] and e.causation_id == e.payload["source_event_id"]
               and e.payload["attempts"] == 1 for e in delivered)
    assert probe.of("notify.failed") == []


# --- retries ----------------------------------------------------------------------------------
def test_smtp_refusing_then_accepting_delivers_exactly_once(notify, amqp_bus, smtp):
    svc = notify()
    probe = Probe(amqp_bus, keys=OUTCOMES)
    smtp.refuse_next = 2
    ref = ticket_ref(reporter=KATE)
    with running(amqp_bus, svc):
        amqp_bus.publish(ticket_event("ticket.created", ref))
        [event] = probe.wait("notify.delivered")
        time.sleep(0.5)  # several more sender ticks: nothing else may go out
        assert len(smtp.mails) == 1 and smtp.refused == 2
    assert event.payload["attempts"] == 3 and probe.of("notify.failed") == []
    [row] = deliveries(svc, ticket_id=ref["id"])
    assert row["status"] == "sent" and row["attempts"] == 3 and row["last_error"] is None


def test_smtp_down_for_a_while_is_retried_then_delivered_once(notify, amqp_bus, smtp):
    svc = notify(notify_max_attempts=8, notify_backoff_base=0.2)
    probe = Probe(amqp_bus, keys=OUTCOMES)
    smtp.stop()
    ref = ticket_ref(reporter=KATE)
    with running(amqp_bus, svc):
        amqp_bus.publish(ticket_event("ticket.created", ref))
        retrying = wait_for(lambda: [r for r in deliveries(svc, ticket_id=ref["id"])
                                     if r["status"] == "retrying" and r["attempts"] >= 2])
        assert retrying and "SMTP" in retrying[0]["last_error"]
        smtp.start()
        probe.wait("notify.delivered")
        time.sleep(0.3)
    assert len(smtp.to("kate@example.com")) == 1 and probe.of("notify.failed") == []
    [row] = deliveries(svc, ticket_id=ref["id"])
    assert row["status"] == "sent" and row["attempts"] >= 3


def test_last_channel_keeps_retrying_past_the_attempts_until_delivered(notify, amqp_bus, smtp):
    """Email is the only channel: an SMTP outage longer than the bounded attempts loses nothing."""
    svc = notify(notify_max_attempts=2, notify_give_up_seconds=3600)
    probe = Probe(amqp_bus, keys=OUTCOMES)
    smtp.stop()
    ref = ticket_ref(reporter=KATE)
    with running(amqp_bus, svc):
        amqp_bus.publish(ticket_event("ticket.created", ref))
        past = wait_for(lambda: [r for r in deliveries(svc, ticket_id=ref["id"])
                                 if r["status"] == "retrying" and r["attempts"] >= 4], timeout=30)
        assert past, deliveries(svc, ticket_id=ref["id"])
        smtp.start()
        probe.wait("notify.delivered")
        time.sleep(0.3)
    assert len(smtp.to("kate@example.com")) == 1 and probe.of("notify.failed") == []
    [row] = deliveries(svc, ticket_id=ref["id"])
    assert row["status"] == "sent" and row["attempts"] >= 5


def test_dead_delivery_retried_by_an_admin_gets_delivered(notify, amqp_bus, smtp, settings):
    svc = notify()
    client = svc.app.test_client()
    probe = Probe(amqp_bus, keys=OUTCOMES)
    smtp.stop()
    ref = ticket_ref(reporter=KATE)
    with running(amqp_bus, svc):
        amqp_bus.publish(ticket_event("ticket.created", ref))
        [failed] = probe.wait("notify.failed")
        [row] = deliveries(svc, ticket_id=ref["id"])
        assert row["status"] == "dead" and row["attempts"] == 3 and failed.payload["attempts"] == 3
        assert deliveries(svc, status="dead") == [row]
        agent = token(svc.settings, "agent", tier="L1", groups=["Service Desk"])
        assert client.post(f"{API}/deliveries/{row['id']}/retry", headers=agent).status_code == 403
        smtp.start()
        response = client.post(f"{API}/deliveries/{row['id']}/retry", headers=svc.extras["admin"])
        assert response.status_code == 202 and response.json["status"] == "queued" and response.json["attempts"] == 0
        [delivered] = probe.wait("notify.delivered")
        again = client.post(f"{API}/deliveries/{row['id']}/retry", headers=svc.extras["admin"])
        assert again.status_code == 409 and again.json["error"]["fields"] == {"status": ["sent"]}
    assert delivered.payload["delivery_id"] == row["id"] and delivered.payload["attempts"] == 1
    assert len(smtp.to("kate@example.com")) == 1


# --- chat channels and fallback ---------------------------------------------------------------
def test_chat_endpoint_failing_falls_back_to_email(notify, amqp_bus, smtp, receiver):
    svc = notify()
    receiver.status["/hooks/kate"] = 500
    put = svc.app.test_client().put(f"{API}/recipients/kate@example.com", headers=svc.extras["admin"], json={
        "channels": [{"type": "slack", "url": f"{receiver.url}/hooks/kate"}, {"type": "email"}]})
    assert put.status_code == 200, put.json
    probe = Probe(amqp_bus, keys=OUTCOMES)
    ref = ticket_ref(reporter=KATE, key="INC-202")
    with running(amqp_bus, svc):
        amqp_bus.publish(ticket_event("ticket.created", ref))
        [delivered] = probe.wait("notify.delivered")
    [failed] = probe.of("notify.failed")
    assert (failed.payload["channel"], failed.payload["attempts"], failed.payload["error"]) == ("slack", 3, f"HTTP 500 from 127.0.0.1")
    assert delivered.payload["channel"] == "email"
    hooks = receiver.to("/hooks/kate")
    assert len(hooks) == 3 and all(json.loads(h["body"])["text"].startswith("[INC-202] We received your request")
                                   for h in hooks)
    assert subjects(smtp.to("kate@example.com")) == ["[INC-202] We received your request: VPN is down"]
    rows = {r["channel"]: r for r in deliveries(svc, ticket_key="INC-202")}
    assert rows["slack"]["status"] == "dead" and rows["email"]["status"] == "sent"
    assert rows["email"]["fallback_of"] == rows["slack"]["id"]


def test_telegram_and_signed_webhook_and_secrets_kept_secret(notify, amqp_bus, smtp, receiver, caplog):
    caplog.set_level(logging.DEBUG)
    svc = notify()
    client = svc.app.test_client()
    bot_token, secret = "123456:ABCDEFGHIJKLMNOPQRSTUVWXYZabc", "webhook-secret-0123456789"
    for address, channel in (("ivan.petrov@example.com", {"type": "telegram", "bot_token": bot_token,
                                                          "chat_id": "-100200", "base_url": receiver.url}),
                             ("anna.smith@example.com", {"type": "webhook", "url": f"{receiver.url}/wh",
                                                         "secret": secret})):
        response = client.put(f"{API}/recipients/{address}", headers=svc.extras["admin"],
                              json={"channels": [channel, {"type": "email"}]})
        assert response.status_code == 200 and bot_token not in response.text and secret not in response.text
    probe = Probe(amqp_bus, keys=OUTCOMES)
    ref = ticket_ref(key="INC-303", title="Принтер не печатает")
    with running(amqp_bus, svc):
        amqp_bus.publish(assigned(ref, [IVAN, ANNA]))
        probe.wait("notify.delivered", count=2)
    [telegram] = receiver.to(f"/bot{bot_token}/sendMessage")
    sent = json.loads(telegram["body"])
    assert sent["chat_id"] == "-100200" and sent["text"].startswith("[INC-303] Назначено группе Service Desk: Принтер не печатает")
    [hook] = receiver.to("/wh")
    expected = "sha256=" + hmac.new(secret.encode(), hook["body"], hashlib.sha256).hexdigest()
    assert hook["headers"]["X-Tierline-Signature"] == expected
    body = json.loads(hook["body"])
    assert body["ticket"] == {"id": ref["id"], "key": "INC-303"} and body["event_type"] == "ticket.assigned"
    assert hook["headers"]["X-Tierline-Delivery"] == body["delivery_id"]
    assert smtp.mails == []  # the first channel worked: no email
    listed = client.get(f"{API}/recipients", headers=svc.extras["admin"])
    assert listed.status_code == 200 and bot_token not in listed.text and secret not in listed.text
    assert bot_token not in caplog.text and secret not in caplog.text
    assert {e.payload["channel"] for e in probe.of("notify.delivered")} == {"telegram", "webhook"}


# --- exactly once, and harmless content -------------------------------------------------------
def test_redelivered_event_sends_nothing_twice(notify, amqp_bus, smtp):
    svc = notify()
    probe = Probe(amqp_bus, keys=OUTCOMES)
    event = ticket_event("ticket.created", ticket_ref(reporter=KATE))
    marker = ticket_event("ticket.created", ticket_ref(reporter={"name": "Marker", "email": "marker@example.com"}))
    with running(amqp_bus, svc):
        amqp_bus.publish(event)
        amqp_bus.publish(event)
        amqp_bus.publish(marker)  # one queue, one consumer: once it is mailed, both copies were handled
        assert wait_for(lambda: smtp.to("marker@example.com"))
        probe.wait("notify.delivered", count=2)
        time.sleep(0.3)
    assert len(smtp.to("kate@example.com")) == 1
    assert len(probe.of("notify.delivered", source_event_id=event.id)) == 1
    assert len(deliveries(svc, ticket_id=event.ticket_id)) == 1
    # even without the inbox (a second consumer of the same event), the delivery key holds
    planner = svc.extras["planner"]
    with svc.db.transaction() as session:
        planner.on_event(session, event)
    assert len(deliveries(svc, ticket_id=event.ticket_id)) == 1


def test_hostile_title_arrives_harmless(notify, amqp_bus, smtp):
    svc = notify()
    probe = Probe(amqp_bus, keys=OUTCOMES)
    title = "Printer\r\nBcc: evil@example.com\r\n{{ 7*7 }} <script>alert(1)</script>"
    ref = ticket_ref(reporter=KATE, key="INC-404", title=title)
    with running(amqp_bus, svc):
        amqp_bus.publish(ticket_event("ticket.created", ref))
        probe.wait("notify.delivered")
    [mail] = smtp.mails
    assert mail.rcpt_tos == ["kate@example.com"]
    assert mail.msg["Bcc"] is None and b"\nBcc:" not in mail.raw.split(b"\r\n\r\n", 1)[0]
    assert mail.msg["Subject"] == "[INC-404] We received your request: Printer Bcc: evil@example.com {{ 7*7 }} <script>alert(1)</script>"
    assert "{{ 7*7 }}" in mail.text and "49" not in mail.text
    assert "<script>" not in mail.html and "{{ 7*7 }} &lt;script&gt;" in mail.html


def test_russian_arrives_intact(notify, amqp_bus, smtp):
    svc = notify()
    probe = Probe(amqp_bus, keys=OUTCOMES)
    ref = ticket_ref(key="INC-505", title="Не работает VPN в офисе «Север»", language="ru",
                     reporter={"name": "Екатерина Смирнова", "email": "ekaterina@example.com"})
    with running(amqp_bus, svc):
        amqp_bus.publish(ticket_event("ticket.created", ref))
        probe.wait("notify.delivered")
    [mail] = smtp.mails
    assert b"=?utf-8?" in mail.raw.split(b"\r\n\r\n", 1)[0].lower()  # encoded on the wire
    assert mail.msg["Subject"] == "[INC-505] Ваше обращение зарегистрировано: Не работает VPN в офисе «Север»"
    assert mail.msg["To"].addresses[0].display_name == "Екатерина Смирнова"
    assert mail.text.startswith("Здравствуйте, Екатерина Смирнова!")
    assert "Тема:      Не работает VPN в офисе «Север»" in mail.text
    assert "Не работает VPN в офисе «Север»" in mail.html and 'lang="ru"' in mail.html


# --- quiet hours ------------------------------------------------------------------------------
def test_quiet_hours_defer_routine_news_but_not_breaches(notify, amqp_bus, smtp):
    clock = FrozenClock(dt.datetime(2026, 11, 23, 23, 0, tzinfo=dt.timezone.utc))
    svc = notify(clock=clock)
    client = svc.app.test_client()
    night = {"channels": [{"type": "email"}], "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "UTC"}}
    for who in (ANNA, OLGA):
        assert client.put(f"{API}/recipients/{who['email']}", headers=svc.extras["admin"], json=night).status_code == 200
    probe = Probe(amqp_bus, keys=OUTCOMES)
    ref = ticket_ref(key="INC-606", priority="P3")
    with running(amqp_bus, svc):
        amqp_bus.publish(assigned(ref, [ANNA], manager=OLGA))
        amqp_bus.publish(sla("sla.breached", ref))
        [breach] = probe.wait("notify.delivered")
        time.sleep(0.4)  # ticks pass; the routine one stays queued
        assert breach.payload["recipient"] == OLGA["email"] and smtp.to(ANNA["email"]) == []
        [waiting] = deliveries(svc, recipient=ANNA["email"])
        assert waiting["status"] == "queued" and waiting["next_attempt_at"] == "2026-11-24T07:00:00+00:00"
        clock.set(dt.datetime(2026, 11, 24, 7, 0, tzinfo=dt.timezone.utc))
        probe.wait("notify.delivered", count=2)
    assert subjects(smtp.to(ANNA["email"])) == ["[INC-606] Assigned to Service Desk: VPN is down"]
