"""notify's HTTP API and read model on real PostgreSQL and RabbitMQ, mailing into the local
outbox folder (the embedded mode's transport, used when no SMTP URL is set)."""
from __future__ import annotations

import datetime as dt
import email
import email.policy

import pytest

from services.notify.bootstrap import build
from services.notify.models import Recipient
from shared.events import new_event
from tests.helpers import Probe, running, ticket_event, ticket_ref, token, wait_for

pytestmark = pytest.mark.integration
API = "/api/v1/notify"
OUTCOMES = ("notify.delivered", "notify.failed")
IVAN = {"name": "Ivan Petrov", "email": "ivan.petrov@example.com", "language": "ru", "chat": "@ivan"}
ANNA = {"name": "Anna Smith", "email": "anna.smith@example.com", "language": "en"}


@pytest.fixture
def svc(settings, pg_schema, amqp_bus):
    service = build(settings(database_url=pg_schema("notify"), smtp_url="", notify_retry_seconds=0.1,
                             notify_backoff_base=0.1, notify_max_attempts=3,
                             notify_give_up_seconds=0), bus=amqp_bus)
    service.extras["admin"] = token(service.settings, "admin", email="admin@example.com")
    return service


def assigned(ref, members, manager=None, occurred_at=None, group="Service Desk"):
    ref = {**ref, "status": "assigned", "tier": "L1", "group": group}
    return new_event("ticket.assigned", {"ticket": ref, "previous": {}, "trigger": "initial",
                                         "contacts": {"members": members, "manager": manager}},
                     producer="intake", ticket_id=ref["id"], occurred_at=occurred_at)


def eml(service, delivery_id):
    path = service.settings.outbox_dir() / f"{delivery_id}.eml"
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def test_delivery_log_filters_pagination_and_errors(svc, amqp_bus):
    client, admin = svc.app.test_client(), svc.extras["admin"]
    probe = Probe(amqp_bus, keys=OUTCOMES)
    refs = [ticket_ref(key=f"INC-{700 + i}", reporter={"name": f"R{i}", "email": f"R{i}@Example.com"})
            for i in range(3)]
    with running(amqp_bus, svc):
        for ref in refs:
            amqp_bus.publish(ticket_event("ticket.created", ref))
        amqp_bus.publish(assigned(refs[0], [IVAN, ANNA]))
        probe.wait("notify.delivered", count=5)
    # filters
    everything = client.get(f"{API}/deliveries", headers=admin).json["items"]
    assert len(everything) == 5 and all(d["status"] == "sent" and d["channel"] == "email" for d in everything)
    by_ticket = client.get(f"{API}/deliveries", query_string={"ticket_id": refs[0]["id"]}, headers=admin).json["items"]
    assert sorted(d["recipient"] for d in by_ticket) == ["anna.smith@example.com", "ivan.petrov@example.com", "r0@example.com"]
    by_key = client.get(f"{API}/deliveries", query_string={"ticket_key": "INC-701"}, headers=admin).json["items"]
    assert [d["recipient"] for d in by_key] == ["r1@example.com"]
    by_recipient = client.get(f"{API}/deliveries", query_string={"recipient": "R2@EXAMPLE.com", "status": "sent",
                                                                 "channel": "email"}, headers=admin).json["items"]
    assert [d["ticket_key"] for d in by_recipient] == ["INC-702"]
    assert client.get(f"{API}/deliveries", query_string={"status": "dead"}, headers=admin).json["items"] == []
    # cursor pagination: newest first, every row once
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"{API}/deliveries", query_string=query, headers=admin).json
        seen += [d["id"] for d in page["items"]]
        pages, cursor = pages + 1, page["next_cursor"]
        if not cursor:
            break
    assert pages == 3 and seen == [d["id"] for d in everything]
    # one delivery, with its text; and the .eml it wrote (stable Message-ID, threaded)
    one = client.get(f"{API}/deliveries/{by_key[0]['id']}", headers=admin)
    assert one.status_code == 200 and "INC-701" in one.json["body_text"]
    mail = eml(svc, by_key[0]["id"])
    assert mail["Message-ID"] == f"<{by_key[0]['id']}@tierline>" and mail["References"] == "<INC-701@tierline>"
    assert mail["Subject"] == "[INC-701] We received your request: VPN is down" and mail["To"] == "R1 <r1@example.com>"
    # errors name the field, never a 500
    bad = client.get(f"{API}/deliveries", query_string={"status": "lost", "limit": 0}, headers=admin)
    assert bad.status_code == 422 and set(bad.json["error"]["fields"]) == {"status", "limit"}
    bad = client.get(f"{API}/deliveries", query_string={"cursor": "nonsense"}, headers=admin)
    assert bad.status_code == 400 and "cursor" in bad.json["error"]["fields"]
    assert client.get(f"{API}/deliveries/nope", headers=admin).status_code == 404
    assert client.post(f"{API}/deliveries/nope/retry", headers=admin).status_code == 404
    assert client.post(f"{API}/deliveries/{by_key[0]['id']}/retry", headers=admin).status_code == 409
    reporter = token(svc.settings, "reporter", email="r1@example.com")
    assert client.get(f"{API}/deliveries", headers=reporter).status_code == 403
    assert client.get(f"{API}/deliveries").status_code == 401
    assert amqp_bus.take_dead_letters("notify.events") == []


def test_recipient_preferences_and_who_may_change_them(svc, amqp_bus):
    client, admin = svc.app.test_client(), svc.extras["admin"]
    kate = token(svc.settings, "reporter", email="Kate@example.com")
    url = f"{API}/recipients/kate@example.com"
    assert client.get(url, headers=kate).status_code == 404  # not known yet
    mine = client.put(url, headers=kate, json={"language": "ru", "timezone": "Europe/Moscow",
                                               "quiet_hours": {"start": "22:00", "end": "07:00"},
                                               "channels": [{"type": "telegram", "bot_token": "123:" + "a" * 30,
                                                             "chat_id": "@kate_chat"}, {"type": "email"}]})
    assert mine.status_code == 200, mine.json
    assert mine.json["language"] == "ru" and mine.json["preferences_set"] is True
    assert mine.json["channels"] == [{"type": "telegram", "bot_token": "****aaaa", "chat_id": "@kate_chat"},
                                     {"type": "email"}]
    assert client.get(url, headers=kate).json["quiet_hours"] == {"start": "22:00", "end": "07:00", "timezone": None}
    # someone else's preferences: admin only
    assert client.get(f"{API}/recipients/bob@example.com", headers=kate).status_code == 403
    assert client.put(f"{API}/recipients/bob@example.com", headers=kate, json={}).status_code == 403
    assert client.get(f"{API}/recipients", headers=kate).status_code == 403
    # only admins point notify at URLs
    hook = {"channels": [{"type": "webhook", "url": "http://169.254.169.254/latest", "secret": "x" * 20}]}
    denied = client.put(url, headers=kate, json=hook)
    assert denied.status_code == 403 and "channels" in denied.json["error"]["fields"]
    assert client.put(url, headers=admin, json=hook).status_code == 200
    # a secret sent back masked (as GET shows it) keeps the stored one
    shown = client.get(url, headers=admin).json
    assert shown["channels"][0]["secret"] == "****xxxx"
    again = client.put(url, headers=admin, json={"channels": shown["channels"], "language": "en"})
    assert again.status_code == 200
    with svc.db.transaction() as session:
        assert session.get(Recipient, "kate@example.com").channels[0]["secret"] == "x" * 20
    # and the recipient may send back what an admin set up for them, unchanged
    assert client.put(url, headers=kate, json={"channels": shown["channels"]}).status_code == 200
    listed = client.get(f"{API}/recipients", headers=admin).json
    assert [r["address"] for r in listed["items"]] == ["kate@example.com"] and "x" * 20 not in str(listed)
    # validation names the field
    for body, field in (({"timezone": "Mars/Olympus"}, "timezone"),
                        ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "quiet_hours"),
                        ({"language": "de"}, "language"),
                        ({"channels": []}, "channels"),
                        ({"channels": [{"type": "email"}, {"type": "email"}]}, "channels"),
                        ({"channels": [{"type": "pigeon"}]}, "channels"),
                        ({"channels": [{"type": "telegram", "bot_token": "nope", "chat_id": "1"}]}, "channels"),
                        ({"channels": [{"type": "slack", "url": "ftp://x"}]}, "channels"),
                        ({"colour": "blue"}, "colour")):
        response = client.put(url, headers=admin, json=body)
        assert response.status_code == 422 and field in response.json["error"]["fields"], (body, response.json)
    bad = client.put(f"{API}/recipients/not-an-address", headers=admin, json={})
    assert bad.status_code == 422 and "address" in bad.json["error"]["fields"]
    assert client.put(url, headers=admin, data="{", content_type="application/json").status_code == 400


def test_learned_contacts_never_overwrite_preferences(svc, amqp_bus):
    client, admin = svc.app.test_client(), svc.extras["admin"]
    assert client.put(f"{API}/recipients/ivan.petrov@example.com", headers=admin,
                      json={"language": "en", "channels": [{"type": "email"}]}).status_code == 200
    probe = Probe(amqp_bus, keys=OUTCOMES)
    ref = ticket_ref(key="INC-808")
    with running(amqp_bus, svc):
        amqp_bus.publish(assigned(ref, [IVAN, ANNA], manager={"name": "Olga Ivanova", "email": "sd-manager@example.com"}))
        probe.wait("notify.delivered", count=2)
    rows = {d["recipient"]: d for d in client.get(f"{API}/deliveries", headers=admin).json["items"]}
    assert set(rows) == {"ivan.petrov@example.com", "anna.smith@example.com"}
    # the manager and the reporter were not told, but notify knows them now
    known = [r["address"] for r in client.get(f"{API}/recipients", headers=admin).json["items"]]
    assert known == ["anna.smith@example.com", "ivan.petrov@example.com", "kate@example.com", "sd-manager@example.com"]
    assert rows["ivan.petrov@example.com"]["language"] == "en"  # his preference beats his contact's "ru"
    assert rows["ivan.petrov@example.com"]["subject"] == "[INC-808] Assigned to Service Desk: VPN is down"
    ivan = client.get(f"{API}/recipients/ivan.petrov@example.com", headers=admin).json
    assert (ivan["language"], ivan["contact_language"], ivan["chat"], ivan["name"]) == ("en", "ru", "@ivan", "Ivan Petrov")
    anna = client.get(f"{API}/recipients/anna.smith@example.com", headers=admin).json
    assert anna["preferences_set"] is False and anna["channels"] == [{"type": "email"}]


def test_events_out_of_order_or_for_unknown_tickets(svc, amqp_bus):
    client, admin = svc.app.test_client(), svc.extras["admin"]
    probe = Probe(amqp_bus, keys=OUTCOMES)
    unknown = ticket_ref(key="INC-900")
    ref = ticket_ref(key="INC-901")
    now = dt.datetime.now(dt.timezone.utc)
    old_boss = {"name": "Old Boss", "email": "old-boss@example.com"}
    new_boss = {"name": "New Boss", "email": "new-boss@example.com"}
    sla_payload = {"priority": "P2", "clock": "resolution", "due_at": now.isoformat(), "target_seconds": 60,
                   "elapsed_seconds": 60}
    with running(amqp_bus, svc):
        # nothing known about INC-900: no assignee to warn; the manager in the event is still told
        amqp_bus.publish(new_event("sla.warning", {**sla_payload, "key": "INC-900", "percent": 90},
                                   producer="sla", ticket_id=unknown["id"]))
        amqp_bus.publish(new_event("escalation.manager_notified", {
            "key": "INC-900", "tier": "L1", "group": "Service Desk", "manager": old_boss, "reason": "breach",
            "trigger": "ladder", "escalation_id": "e9"}, producer="escalation", ticket_id=unknown["id"]))
        # INC-901: the newer assignment arrives first; the late older one must not win
        amqp_bus.publish(assigned(ref, [ANNA], manager=new_boss, occurred_at=now, group="Infrastructure"))
        amqp_bus.publish(assigned(ref, [IVAN], manager=old_boss, occurred_at=now - dt.timedelta(minutes=5)))
        amqp_bus.publish(new_event("sla.breached", {**sla_payload, "key": "INC-901"}, producer="sla",
                                   ticket_id=ref["id"]))
        probe.wait("notify.delivered", count=4)
        wait_for(lambda: amqp_bus.depth("notify.events") == 0)
    rows = client.get(f"{API}/deliveries", headers=admin).json["items"]
    told = sorted((d["ticket_key"], d["source_event_type"], d["recipient"]) for d in rows)
    assert told == [("INC-900", "escalation.manager_notified", "old-boss@example.com"),
                    ("INC-901", "sla.breached", "new-boss@example.com"),
                    ("INC-901", "ticket.assigned", "anna.smith@example.com"),
                    ("INC-901", "ticket.assigned", "ivan.petrov@example.com")]
    manager_mail = next(d for d in rows if d["ticket_key"] == "INC-900")
    assert manager_mail["subject"].startswith("[INC-900] ") and manager_mail["urgent"] is True
    assert amqp_bus.take_dead_letters("notify.events") == []


def test_embedded_mode_sqlite_and_memory_bus(settings, memory_bus):
    """The same service on SQLite with the in-memory bus (what `tierline run` uses)."""
    service = build(settings(notify_retry_seconds=0.1), bus=memory_bus)
    probe = Probe(memory_bus, keys=OUTCOMES)
    ref = ticket_ref(key="INC-990", language="ru", title="Сломался ноутбук")
    with running(memory_bus, service):
        memory_bus.publish(ticket_event("ticket.created", ref))
        [delivered] = probe.wait("notify.delivered")
    mail = eml(service, delivered.payload["delivery_id"])
    assert mail["Subject"] == "[INC-990] Ваше обращение зарегистрировано: Сломался ноутбук"
    admin = token(service.settings, "admin")
    [row] = service.app.test_client().get(f"{API}/deliveries", headers=admin).json["items"]
    assert row["status"] == "sent" and row["created_at"].endswith("+00:00")


def test_bad_configuration_stops_the_service_naming_the_setting(settings, memory_bus, tmp_path):
    from shared.config import ConfigError
    config = tmp_path / "tierline.yaml"
    config.write_text("notifications:\n  rules:\n    ticket.created: [boss]\n", encoding="utf-8")
    for overrides, name in (({"smtp_url": "http://mail.example.com"}, "TIERLINE_SMTP_URL"),
                            ({"mail_from": "nobody"}, "TIERLINE_MAIL_FROM"),
                            ({"config_file": str(config)}, "notifications.rules.ticket.created")):
        with pytest.raises(ConfigError, match=name):
            build(settings(**overrides), bus=memory_bus)
