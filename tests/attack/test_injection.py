"""Injection and malformed input: SQL metacharacters, CR/LF in everything that reaches a mail
header, Jinja syntax in everything that reaches a template, NUL characters, oversize and deeply
nested bodies, wrong types, invalid UTF-8.

Every answer is 2xx or 4xx, never 5xx; what is stored comes back literally; mails carry no
injected header and no evaluated template syntax.
"""
from __future__ import annotations

import email
import email.policy
import json
from urllib.parse import quote

import pytest

from tests.helpers import wait_for

pytestmark = pytest.mark.attack

SQL = ["' OR '1'='1", "'; DROP TABLE tickets; --", '" OR ""="', "\\", "%", "_", "%' --", "1) OR (1=1",
       "Robert'); DROP TABLE students;--", "$$; SELECT pg_sleep(5); $$", "`id`", "\\'; --"]
CRLF = "\r\nBcc: spy@evil.example\r\nX-Injected: yes"
JINJA = "J{{ 6*7 }}J {% for c in 'ab' %}[{{ c }}]{% endfor %} {{ config }} {{ ''.__class__.__mro__ }}"
EVALUATED = ("J42J", "[a][b]", "<class", "Config")  # what the payload would become if rendered
MAIL_HEADERS = {"subject", "from", "to", "date", "message-id", "in-reply-to", "references", "auto-submitted",
                "mime-version", "content-type", "content-transfer-encoding"}
SERVICES = {  # one JSON endpoint per service, as admin
    "intake": ("POST", "/api/v1/tickets"),
    "sla": ("POST", "/api/v1/sla/calendars"),
    "escalation": ("POST", "/api/v1/escalation/groups"),
    "notify": ("PUT", "/api/v1/notify/recipients/someone@example.com"),
}


def text_of(resp) -> str:
    return resp.get_data(as_text=True)[:400]


def assert_4xx(resp, *codes):
    assert 400 <= resp.status_code < 500, f"{resp.status_code}: {text_of(resp)}"
    if codes:
        assert resp.status_code in codes, f"{resp.status_code}: {text_of(resp)}"
    assert resp.get_json()["error"]["code"]


# --- SQL metacharacters ------------------------------------------------------------------------
@pytest.mark.parametrize("payload", SQL)
def test_sql_metacharacters_in_ticket_fields_are_stored_literally(system, payload):
    body = {"title": f"t {payload}", "description": payload, "category": payload[:100], "service": payload[:100],
            "dedup_key": payload, "reporter": {"name": payload, "email": "sql@example.com"}}
    resp = system.call("POST", "/api/v1/tickets", "admin", json_body=body)
    assert resp.status_code == 201, text_of(resp)
    ticket = system.ticket(resp.get_json()["id"])
    assert (ticket["title"], ticket["description"], ticket["category"], ticket["service"], ticket["dedup_key"],
            ticket["reporter"]["name"]) == (f"t {payload}", payload, payload[:100], payload[:100], payload, payload)
    patched = system.call("PATCH", f"/api/v1/tickets/{ticket['id']}", "admin", json_body={"assignee": payload})
    assert patched.status_code == 200 and patched.get_json()["assignee"] == payload
    comment = system.call("POST", f"/api/v1/tickets/{ticket['id']}/comments", "admin", json_body={"body": payload})
    assert comment.status_code == 201 and comment.get_json()["body"] == payload
    status = system.call("POST", f"/api/v1/tickets/{ticket['id']}/status", "admin",
                         json_body={"status": "pending", "reason": payload})
    assert status.status_code == 200
    reasons = [h["reason"] for h in system.call("GET", f"/api/v1/tickets/{ticket['id']}/history", "admin")
               .get_json()["items"]]
    assert payload in reasons
    # as a filter it matches exactly that value, never everything
    found = system.call("GET", f"/api/v1/tickets?limit=100&assignee={quote(payload)}", "admin").get_json()["items"]
    assert [t["id"] for t in found] == [ticket["id"]]


@pytest.mark.parametrize("payload", SQL)
def test_sql_metacharacters_in_query_filters_match_nothing(system, payload):
    system.routed("reporter", title="something to find")
    q = quote(payload)
    for path in (f"/api/v1/tickets?group={q}", f"/api/v1/tickets?reporter={q}", f"/api/v1/tickets?assignee={q}x",
                 f"/api/v1/notify/deliveries?ticket_key={q}", f"/api/v1/notify/deliveries?recipient={q}",
                 f"/api/v1/notify/deliveries?ticket_id={q}", f"/api/v1/escalation/defects?ticket_id={q}",
                 f"/api/v1/escalation/defects?tracker={q}"):
        resp = system.call("GET", path, "admin")
        assert resp.status_code == 200, f"{path}: {text_of(resp)}"
        body = resp.get_json()
        assert (body["items"] if isinstance(body, dict) else body) == [], path
    for path in (f"/api/v1/tickets/{q}", f"/api/v1/sla/tickets/{q}", f"/api/v1/escalation/tickets/{q}",
                 f"/api/v1/escalation/groups/{q}", f"/api/v1/escalation/rules/{q}", f"/api/v1/escalation/ladders/{q}",
                 f"/api/v1/sla/calendars/{q}", f"/api/v1/notify/deliveries/{q}"):
        resp = system.call("GET", path, "admin")
        assert resp.status_code in (404, 405), f"{path}: {resp.status_code} {text_of(resp)}"
    for path in (f"/api/v1/tickets?cursor={q}", f"/api/v1/notify/deliveries?cursor={q}",
                 f"/api/v1/notify/recipients/{q}", f"/api/v1/reports/kpi?from={q}"):
        assert_4xx(system.call("GET", path, "admin"))
    # the tables are all still there
    assert system.call("GET", "/api/v1/tickets?limit=1", "admin").get_json()["items"]


@pytest.mark.parametrize("payload", SQL[:6])
def test_sql_metacharacters_in_configuration_are_stored_literally(system, payload):
    name = f"G {payload}"[:100]
    group = {"name": name, "tier": "L2", "members": [{"name": payload, "email": "m@example.com"}],
             "handles": {"categories": [payload], "services": []}}
    resp = system.call("POST", "/api/v1/escalation/groups", "admin", json_body=group)
    assert resp.status_code == 201, text_of(resp)
    got = system.call("GET", f"/api/v1/escalation/groups/{quote(name, safe='')}", "admin")
    assert got.status_code == 200 and got.get_json()["members"][0]["name"] == payload
    rule = system.call("POST", "/api/v1/escalation/rules", "admin",
                       json_body={"match": {"category": payload}, "group": name, "position": 999_000})
    assert rule.status_code == 201 and rule.get_json()["match"]["category"] == payload
    assert system.call("DELETE", f"/api/v1/escalation/rules/{rule.get_json()['id']}", "admin").status_code == 204
    policy = system.call("POST", "/api/v1/sla/policies", "admin", json_body={
        "name": f"P {payload}", "match": {"priority": "P4", "category": payload}, "calendar": "24x7",
        "first_response": 60, "resolution": 120, "position": 999_000})
    assert policy.status_code == 201, text_of(policy)
    assert policy.get_json()["match"]["category"] == payload
    assert system.call("DELETE", f"/api/v1/sla/policies/{policy.get_json()['id']}", "admin").status_code == 204
    prefs = system.call("PUT", "/api/v1/notify/recipients/sql-prefs@example.com", "admin", json_body={"name": payload})
    assert prefs.status_code == 200 and prefs.get_json()["name"] == payload
    # calendar names are restricted to letters, digits, '.', '_' and '-'
    assert_4xx(system.call("POST", "/api/v1/sla/calendars", "admin",
                           json_body={"name": payload, "timezone": "UTC", "always_on": True}), 422)


# --- mail headers ------------------------------------------------------------------------------
def assert_clean_mail(raw: bytes, to_address: str) -> email.message.EmailMessage:
    head = raw.split(b"\r\n\r\n", 1)[0]
    names = [line.split(b":", 1)[0].decode().lower() for line in head.split(b"\r\n")
             if line and line[:1] not in (b" ", b"\t")]
    assert set(names) <= MAIL_HEADERS, names
    assert len(names) == len(set(names)), names
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    for name, value in msg.items():
        assert "\r" not in str(value) and "\n" not in str(value), (name, value)
    assert [a.addr_spec for a in msg["To"].addresses] == [to_address]  # the payload stays display text
    assert len(msg["From"].addresses) == 1
    return msg


def delivered_mail(system, ticket_id: str, recipient: str, event_type: str):
    delivery = wait_for(lambda: next((d for d in system.deliveries(ticket_id=ticket_id, recipient=recipient)
                                      if d["source_event_type"] == event_type and d["status"] == "sent"), None),
                        15, 0.05)
    assert delivery, f"no sent {event_type} to {recipient}: {system.deliveries(ticket_id=ticket_id)}"
    detail = system.call("GET", f"/api/v1/notify/deliveries/{delivery['id']}", "admin").get_json()
    raw, msg = system.mail_of(delivery["id"])
    return detail, raw, msg


@pytest.fixture(scope="module")
def hostile_group(system):
    """An L2 group whose name, member and manager names carry CR/LF and Jinja, and the tickets it
    receives (category `hostile`)."""
    name = f"Night {JINJA}"[:60] + " Shift" + CRLF
    group = {"name": name[:100], "tier": "L2", "handles": {"categories": ["hostile"], "services": []},
             "members": [{"name": "Mal" + CRLF, "email": "mal@example.com"}],
             "manager": {"name": "Boss " + JINJA + CRLF, "email": "boss@example.com"}}
    resp = system.call("POST", "/api/v1/escalation/groups", "admin", json_body=group)
    assert resp.status_code == 201, text_of(resp)
    return resp.get_json()


def test_crlf_in_ticket_title_and_reporter_name_never_makes_a_header(system):
    for n, variant in enumerate((CRLF, "\nBcc: spy@evil.example", "\rBcc: spy@evil.example",
                                 "\u2028Bcc: spy@evil.example", "\x85Bcc: spy@evil.example",
                                 "\u202eBcc: spy@evil.example")):
        address = f"eve{n}@example.com"
        resp = system.call("POST", "/api/v1/tickets", "admin", json_body={
            "title": "Help" + variant, "reporter": {"name": "Eve" + variant, "email": address}})
        assert resp.status_code == 201, text_of(resp)
        ticket = resp.get_json()
        assert ticket["title"] == "Help" + variant  # stored as given; only the mail header is cleaned
        detail, raw, msg = delivered_mail(system, ticket["id"], address, "ticket.created")
        msg = assert_clean_mail(raw, address)
        assert str(msg["Subject"]).strip().startswith(f"[{ticket['key']}]") and "Help" in msg["Subject"]
        assert msg["To"].addresses[0].display_name.startswith("Eve")


def test_crlf_in_group_member_and_manager_names_never_makes_a_header(system, hostile_group):
    created = system.routed("reporter", title="night shift ticket", category="hostile")
    resp = system.call("POST", f"/api/v1/tickets/{created['id']}/escalations", "lead",
                       json_body={"to_tier": "L2", "reason": "to the night shift " + JINJA})
    assert resp.status_code == 202
    ticket = system.wait_ticket(created["id"], lambda t: t["tier"] == "L2", "at the hostile group")
    assert ticket["group"] == hostile_group["name"]
    detail, raw, msg = delivered_mail(system, ticket["id"], "mal@example.com", "ticket.assigned")
    msg = assert_clean_mail(raw, "mal@example.com")
    assert "Night" in msg["Subject"] and msg["To"].addresses[0].display_name.startswith("Mal")
    # a refused request (no such group) tells the current group's manager
    resp = system.call("POST", f"/api/v1/tickets/{ticket['id']}/escalations", "lead",
                       json_body={"to_tier": "L2", "to_group": "No Such Group", "reason": JINJA})
    assert resp.status_code == 202
    detail, raw, msg = delivered_mail(system, ticket["id"], "boss@example.com", "escalation.manager_notified")
    msg = assert_clean_mail(raw, "boss@example.com")
    assert msg["To"].addresses[0].display_name.startswith("Boss")


# --- templates ---------------------------------------------------------------------------------
def assert_literal(detail: dict, msg, *, in_body: bool = True, in_subject: bool = False):
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    for part in (detail["subject"], detail["body_text"], text, html):
        for evaluated in EVALUATED:
            assert evaluated not in part, (evaluated, part)
    if in_body:
        assert "J{{ 6*7 }}J" in detail["body_text"] and "J{{ 6*7 }}J" in text and "J{{ 6*7 }}J" in html
        assert "{% for c in" in detail["body_text"]
    if in_subject:
        assert "J{{ 6*7 }}J" in detail["subject"] and "J{{ 6*7 }}J" in str(msg["Subject"])


def test_jinja_in_title_and_reporter_name_arrives_literally(system):
    resp = system.call("POST", "/api/v1/tickets", "admin", json_body={
        "title": JINJA[:200], "reporter": {"name": JINJA, "email": "jinja@example.com"}})
    assert resp.status_code == 201
    detail, raw, msg = delivered_mail(system, resp.get_json()["id"], "jinja@example.com", "ticket.created")
    assert_literal(detail, msg, in_subject=True)
    assert detail["body_text"].startswith("Hello " + JINJA)


def test_jinja_in_comment_body_and_status_reason_arrives_literally(system):
    ticket = system.routed("reporter", title="plain title")
    assert system.call("POST", f"/api/v1/tickets/{ticket['id']}/comments", "agent1",
                       json_body={"body": "reply " + JINJA}).status_code == 201
    detail, _, msg = delivered_mail(system, ticket["id"], "kate@example.com", "ticket.commented")
    assert_literal(detail, msg)
    assert system.call("POST", f"/api/v1/tickets/{ticket['id']}/status", "agent1",
                       json_body={"status": "pending", "reason": "need " + JINJA}).status_code == 200
    detail, _, msg = delivered_mail(system, ticket["id"], "kate@example.com", "ticket.status_changed")
    assert_literal(detail, msg)


def test_jinja_in_group_names_and_escalation_reasons_arrives_literally(system, hostile_group):
    created = system.routed("reporter", title="jinja routing", category="hostile")
    assert system.call("POST", f"/api/v1/tickets/{created['id']}/escalations", "lead",
                       json_body={"to_tier": "L2", "reason": "because " + JINJA}).status_code == 202
    system.wait_ticket(created["id"], lambda t: t["tier"] == "L2", "at the hostile group")
    detail, _, msg = delivered_mail(system, created["id"], "mal@example.com", "ticket.assigned")
    assert_literal(detail, msg, in_subject=True)  # the group name is in the subject, the reason in the body
    assert "because J{{ 6*7 }}J" in detail["body_text"]
    assert system.call("POST", f"/api/v1/tickets/{created['id']}/escalations", "lead",
                       json_body={"to_tier": "L2", "to_group": "Nowhere", "reason": "again " + JINJA}).status_code == 202
    detail, _, msg = delivered_mail(system, created["id"], "boss@example.com", "escalation.manager_notified")
    assert_literal(detail, msg)
    assert detail["body_text"].startswith("Hello Boss J{{ 6*7 }}J")


# --- NUL -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("service", list(SERVICES))
def test_nul_characters_are_refused_everywhere(system, service):
    """Regression: PostgreSQL text cannot hold U+0000, so a NUL in any field, filter, path or
    header reached a query and answered 500 (SQLite stored it, so only production broke)."""
    method, path = SERVICES[service]
    assert_4xx(system.call(method, path, "admin", json_body={"name": "a\u0000b", "title": "a\u0000b"}), 400)
    assert_4xx(system.call(method, path, "admin", json_body={"nested": [{"k\u0000": 1}]}), 400)
    assert_4xx(system.call("GET", f"{path}/x%00y", "admin"), 400)
    assert_4xx(system.call("GET", f"{path}?q=%00", "admin"), 400)
    assert_4xx(system.call("GET", "/api/v1/tickets", "admin", headers={"Idempotency-Key": "a\x00"}), 400)
    # a literal backslash-u text is not a NUL
    resp = system.call("POST", "/api/v1/tickets", "admin", json_body={"title": "C:\\u0000 is a path"})
    assert resp.status_code == 201 and resp.get_json()["title"] == "C:\\u0000 is a path"


# --- size, depth, types, encoding --------------------------------------------------------------------
@pytest.mark.parametrize("service", list(SERVICES))
def test_oversize_body_gets_413(system, service):
    method, path = SERVICES[service]
    limit = system.settings.max_body_bytes
    body = json.dumps({"name": "x" * (limit + 10), "title": "x"}).encode()
    resp = system.call(method, path, "admin", data=body, headers={"Content-Type": "application/json"})
    assert_4xx(resp, 413)
    # the webhook too (signature checked after the size)
    assert_4xx(system.webhook(body), 413)


@pytest.mark.parametrize("service", list(SERVICES))
@pytest.mark.parametrize("depth", [50, 5000, 100_000])
def test_deeply_nested_json_gets_400_or_422(system, service, depth):
    method, path = SERVICES[service]
    for body in ("[" * depth + "]" * depth, '{"name": ' + '{"a": ' * depth + "1" + "}" * depth + "}"):
        resp = system.call(method, path, "admin", data=body.encode(), headers={"Content-Type": "application/json"})
        assert_4xx(resp, 400, 422)


WRONG_TYPES = [
    ("POST", "/api/v1/tickets", {"title": 5}, "title"),
    ("POST", "/api/v1/tickets", {"title": "x", "reporter": "kate"}, "reporter"),
    ("POST", "/api/v1/tickets", {"title": ["x"]}, "title"),
    ("POST", "/api/v1/tickets", {"title": "x", "channel": 7}, "channel"),
    ("PATCH", "/api/v1/tickets/{A}", {"priority": 1}, "priority"),
    ("POST", "/api/v1/tickets/{A}/comments", {"body": "x", "public": "yes please"}, "public"),
    ("POST", "/api/v1/tickets/{A}/status", {"status": None}, "status"),
    ("POST", "/api/v1/tickets/{A}/feedback", {"csat": "5"}, "csat"),
    ("POST", "/api/v1/tickets/{A}/escalations", {"to_tier": 2, "reason": "x"}, "to_tier"),
    ("GET", "/api/v1/tickets?limit=many", None, "limit"),
    ("GET", "/api/v1/tickets?breached=perhaps", None, "breached"),
    ("GET", "/api/v1/reports/kpi?from=yesterday", None, "from"),
    ("POST", "/api/v1/sla/policies", {"name": "p", "match": {"priority": "P1"}, "calendar": "24x7",
                                      "first_response": "900", "resolution": 1}, "first_response"),
    ("POST", "/api/v1/sla/calendars", {"name": "c", "timezone": "UTC", "always_on": "maybe"}, "always_on"),
    ("GET", "/api/v1/sla/tickets/{A}/preview?priority=9", None, "priority"),
    ("POST", "/api/v1/escalation/groups", {"name": "g", "tier": 3}, "tier"),
    ("POST", "/api/v1/escalation/groups", {"name": "g", "tier": "L1", "members": "everyone"}, "members"),
    ("POST", "/api/v1/escalation/rules", {"group": "Service Desk", "position": "first"}, "position"),
    ("POST", "/api/v1/escalation/ladders", {"name": "l", "priorities": "P1"}, "priorities"),
    ("PUT", "/api/v1/escalation/routing", {"default_group": ["Service Desk"]}, "default_group"),
    ("PUT", "/api/v1/notify/recipients/kate@example.com", {"channels": {"type": "email"}}, "channels"),
    ("PUT", "/api/v1/notify/recipients/kate@example.com", {"quiet_hours": "22-07"}, "quiet_hours"),
    ("GET", "/api/v1/notify/deliveries?limit=-1", None, "limit"),
]


@pytest.mark.parametrize("method,path,body,field", WRONG_TYPES, ids=[f"{m} {p} {f}" for m, p, _, f in WRONG_TYPES])
def test_wrong_types_get_422_naming_the_field(system, method, path, body, field):
    if "{A}" in path:
        path = path.replace("{A}", system.routed("reporter", title="types")["id"])
    resp = system.call(method, path, "admin", json_body=body)
    assert_4xx(resp, 422)
    assert field in resp.get_json()["error"]["fields"], text_of(resp)


@pytest.mark.parametrize("service", list(SERVICES))
def test_invalid_utf8_gets_400(system, service):
    method, path = SERVICES[service]
    for raw in (b'{"name": "\xff\xfe", "title": "\xc3\x28"}', b'{"title": "\xed\xa0\x80"}', b"\x80\x81"):
        assert_4xx(system.call(method, path, "admin", data=raw, headers={"Content-Type": "application/json"}), 400)
    assert_4xx(system.webhook(b'{"defect_id": "\xff", "status": "fixed"}'), 400)
    # in a query string or path Werkzeug replaces bad bytes: an ordinary answer, never a 5xx
    for url in ("/api/v1/tickets?group=%ff%fe", "/api/v1/tickets/%ff%fe", "/api/v1/escalation/groups/%c3%28",
                "/api/v1/notify/deliveries?recipient=%ed%a0%80"):
        assert system.call("GET", url, "admin").status_code in (200, 404), url


@pytest.mark.parametrize("path", ["/api/v1/tickets?cursor=bjo5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OQ",
                                  "/api/v1/sla/policies/99999999999999999999999",
                                  "/api/v1/sla/policies/9223372036854775808",
                                  "/api/v1/reports/kpi?from=0001-01-01T00:00:00%2B14:00",
                                  "/api/v1/reports/kpi?to=9999-12-31T23:59:59-14:00",
                                  "/api/v1/tickets/INC-99999999999999999999"])
def test_numbers_and_instants_beyond_range_are_4xx(system, path):
    """Regression: a cursor or policy id beyond 64 bits, or an instant at the edge of the
    calendar, raised OverflowError in the driver or in datetime arithmetic (500)."""
    assert_4xx(system.call("GET", path, "admin"), 404, 422)


def test_escalation_group_names_fit_intake(system):
    """Regression: escalation accepted group names of up to 200 characters, but intake stores a
    ticket's group in 100 (and filters by at most 100): on PostgreSQL routing a ticket to such a
    group failed in intake's consumer, over and over, until the event was dead-lettered."""
    resp = system.call("POST", "/api/v1/escalation/groups", "admin", json_body={"name": "G" * 101, "tier": "L2"})
    assert_4xx(resp, 422)
    assert "name" in resp.get_json()["error"]["fields"]
    assert system.call("POST", "/api/v1/escalation/groups", "admin",
                       json_body={"name": "G" * 100, "tier": "L2"}).status_code == 201


def test_error_messages_mixing_list_items_and_the_schema_answer_422(system):
    """Regression: marshmallow reports errors of list items by index (int keys) next to
    "_schema" (str): Flask sorted the keys to serialize them and answered 500."""
    resp = system.call("PUT", "/api/v1/notify/recipients/kate@example.com", "admin", json_body={
        "channels": [{"type": "email"}, {"type": "slack", "base_url": "x"}, {"type": "slack"}]})
    assert_4xx(resp, 422)
    assert "channels" in resp.get_json()["error"]["fields"]
