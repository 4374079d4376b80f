"""Authorization matrix: every endpoint x every role x own / other's ticket.

The world: ticket A was reported by kate (the `reporter`) and sits at L1 (Service Desk); ticket B
was reported by mallory (`reporter2`) and was moved to L2 (Infrastructure). So for kate, A is her
own and B somebody else's; for the L1 agent A is in their tier and B is not; for the L2 agent the
other way round. The expected answers are the rules of docs/intake.md, docs/sla.md (api.py),
docs/escalation.md and docs/notify.md. Requests of allowed callers are chosen so that they are
authorized but change nothing (a no-op PATCH, an illegal transition, a duplicate name, an
unknown id), so the matrix can run in any order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest

from shared.auth import TokenStore

pytestmark = pytest.mark.attack

WHO = (None, "reporter", "agent1", "agent2", "lead", "admin")
TICKETS = ("A", "B")
# Who may see which ticket (intake's visibility): everyone else gets 404, like a missing ticket.
VISIBLE = {("reporter", "A"), ("agent1", "A"), ("agent2", "B"), ("lead", "A"), ("lead", "B"),
           ("admin", "A"), ("admin", "B")}
STAFF = ("agent1", "agent2", "lead", "admin")


@pytest.fixture(scope="module")
def world(system):
    a = system.routed("reporter", title="Kate's own laptop", category="hardware")
    b = system.routed("reporter2", title="Mallory's VPN", category="network", service="vpn")
    resp = system.call("POST", f"/api/v1/tickets/{b['id']}/escalations", "lead",
                       json_body={"to_tier": "L2", "reason": "network team"})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    b = system.wait_ticket(b["id"], lambda t: t["tier"] == "L2", "at L2")
    assert (a["tier"], a["group"], b["tier"], b["group"]) == ("L1", "Service Desk", "L2", "Infrastructure")
    for t in (a, b):
        system.wait_sla(t["id"])
        system.wait_escalation(t["id"])
    delivery = system.wait_deliveries(ticket_id=a["id"])[0]
    return {"A": a, "B": b, "delivery": delivery["id"]}


# --- expected answers --------------------------------------------------------------------------
def ticket_rule(ok: int, *, reporter: int | None = None, own_reporter: int | None = None) -> Callable:
    """Per ticket: 401 without a token; `reporter`: a reporter's answer (the role is refused
    before the ticket is looked up); else 404 unless the caller sees the ticket; then `ok`, or
    `own_reporter` for a reporter on their own ticket."""
    def expect(who, ticket):
        if who is None:
            return 401
        if reporter is not None and who == "reporter":
            return reporter
        if (who, ticket) not in VISIBLE:
            return 404
        return own_reporter if own_reporter is not None and who == "reporter" else ok
    return expect


def role_rule(allowed: dict[str, int], denied: int = 403) -> Callable:
    def expect(who, _ticket):
        if who is None:
            return 401
        return allowed.get(who, denied)
    return expect


STAFF_OK = role_rule({w: 200 for w in STAFF})


def admin_only(code: int) -> Callable:
    return role_rule({"admin": code})


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # {A}/{ticket} placeholders filled from the world
    expect: Callable
    body: dict | None = None
    per_ticket: bool = False

    def label(self) -> str:
        return f"{self.method} {self.path}"


POLICY = {"name": "P1 critical", "match": {"priority": "P1"}, "calendar": "24x7", "first_response": 900,
          "resolution": 14400}
CALENDAR = {"name": "24x7", "timezone": "UTC", "always_on": True}
LADDER = {"name": "standard", "priorities": ["P1"], "steps": []}
ENDPOINTS = [
    # intake
    Endpoint("GET", "/api/v1/tickets", role_rule({w: 200 for w in WHO if w})),
    Endpoint("POST", "/api/v1/tickets", role_rule({w: 201 for w in WHO if w}), {"title": "matrix probe"}),
    Endpoint("GET", "/api/v1/tickets/{ticket}", ticket_rule(200), per_ticket=True),
    Endpoint("GET", "/api/v1/tickets/{key}", ticket_rule(200), per_ticket=True),
    Endpoint("PATCH", "/api/v1/tickets/{ticket}", ticket_rule(200, reporter=403), {"title": "{title}"}, True),
    Endpoint("PATCH", "/api/v1/tickets/{ticket}", ticket_rule(200, reporter=403), {"priority": "{priority}"}, True),
    Endpoint("POST", "/api/v1/tickets/{ticket}/status", ticket_rule(409), {"status": "closed", "reason": "x"}, True),
    Endpoint("GET", "/api/v1/tickets/{ticket}/comments", ticket_rule(200), per_ticket=True),
    Endpoint("POST", "/api/v1/tickets/{ticket}/comments", ticket_rule(201), {"body": "matrix reply"}, True),
    Endpoint("POST", "/api/v1/tickets/{ticket}/comments", ticket_rule(201, own_reporter=403),
             {"body": "matrix note", "public": False}, True),
    Endpoint("POST", "/api/v1/tickets/{ticket}/escalations", ticket_rule(409, reporter=403),
             {"to_tier": "{tier}", "reason": "matrix"}, True),
    # only the ticket's reporter (others who see it: 403), and only once resolved (A is open: 409)
    Endpoint("POST", "/api/v1/tickets/{ticket}/feedback", ticket_rule(403, own_reporter=409), {"csat": 5}, True),
    Endpoint("GET", "/api/v1/tickets/{ticket}/history", ticket_rule(200), per_ticket=True),
    Endpoint("GET", "/api/v1/reports/kpi", role_rule({"lead": 200, "admin": 200})),
    # sla: staff read (a ticket's clocks: who sees the ticket), admin writes
    Endpoint("GET", "/api/v1/sla/tickets/{ticket}", ticket_rule(200, reporter=403), per_ticket=True),
    Endpoint("GET", "/api/v1/sla/tickets/{ticket}/preview?priority=P1", ticket_rule(200, reporter=403),
             per_ticket=True),
    Endpoint("GET", "/api/v1/sla/policies", STAFF_OK),
    Endpoint("GET", "/api/v1/sla/policies/1", STAFF_OK),
    Endpoint("POST", "/api/v1/sla/policies", admin_only(409), POLICY),
    Endpoint("POST", "/api/v1/sla/policies", admin_only(422), {"bogus": True}),
    Endpoint("PUT", "/api/v1/sla/policies/999999", admin_only(404), POLICY),
    Endpoint("DELETE", "/api/v1/sla/policies/999999", admin_only(404)),
    Endpoint("GET", "/api/v1/sla/calendars", STAFF_OK),
    Endpoint("GET", "/api/v1/sla/calendars/24x7", STAFF_OK),
    Endpoint("POST", "/api/v1/sla/calendars", admin_only(409), CALENDAR),
    Endpoint("PUT", "/api/v1/sla/calendars/missing", admin_only(404), CALENDAR),
    Endpoint("PUT", "/api/v1/sla/calendars/24x7", admin_only(422), {"bogus": True}),
    Endpoint("DELETE", "/api/v1/sla/calendars/24x7", admin_only(409)),
    # escalation: staff read, admin writes, lead/admin retry defect jobs
    Endpoint("GET", "/api/v1/escalation/groups", STAFF_OK),
    Endpoint("GET", "/api/v1/escalation/groups/Service Desk", STAFF_OK),
    Endpoint("POST", "/api/v1/escalation/groups", admin_only(409), {"name": "Service Desk", "tier": "L1"}),
    Endpoint("PUT", "/api/v1/escalation/groups/Missing", admin_only(404), {"name": "Missing", "tier": "L1"}),
    Endpoint("DELETE", "/api/v1/escalation/groups/Missing", admin_only(404)),
    Endpoint("GET", "/api/v1/escalation/rules", STAFF_OK),
    Endpoint("GET", "/api/v1/escalation/rules/missing", role_rule({w: 404 for w in STAFF})),
    Endpoint("POST", "/api/v1/escalation/rules", admin_only(422), {"group": "Missing"}),
    Endpoint("PUT", "/api/v1/escalation/rules/missing", admin_only(404), {"group": "Service Desk"}),
    Endpoint("DELETE", "/api/v1/escalation/rules/missing", admin_only(404)),
    Endpoint("GET", "/api/v1/escalation/routing", STAFF_OK),
    Endpoint("PUT", "/api/v1/escalation/routing", admin_only(422), {"default_group": "Missing"}),
    Endpoint("GET", "/api/v1/escalation/ladders", STAFF_OK),
    Endpoint("GET", "/api/v1/escalation/ladders/standard", STAFF_OK),
    Endpoint("POST", "/api/v1/escalation/ladders", admin_only(409), LADDER),
    Endpoint("PUT", "/api/v1/escalation/ladders/missing", admin_only(404), {**LADDER, "name": "missing"}),
    Endpoint("DELETE", "/api/v1/escalation/ladders/missing", admin_only(404)),
    Endpoint("GET", "/api/v1/escalation/tickets/{ticket}", ticket_rule(200, reporter=403), per_ticket=True),
    Endpoint("GET", "/api/v1/escalation/defects", STAFF_OK),
    Endpoint("POST", "/api/v1/escalation/defects/missing/retry", role_rule({"lead": 404, "admin": 404})),
    Endpoint("GET", "/api/v1/escalation/trackers", STAFF_OK),
    # notify: staff read the log, admin retries and manages recipients; people manage themselves
    Endpoint("GET", "/api/v1/notify/deliveries", STAFF_OK),
    # a delivery of ticket A: only who sees A (agent2 works at L2: 404, like a missing one)
    Endpoint("GET", "/api/v1/notify/deliveries/{delivery}", role_rule({"agent1": 200, "agent2": 404, "lead": 200,
                                                                      "admin": 200})),
    Endpoint("POST", "/api/v1/notify/deliveries/{delivery}/retry", admin_only(409)),
    Endpoint("GET", "/api/v1/notify/recipients", admin_only(200)),
    Endpoint("GET", "/api/v1/notify/recipients/kate@example.com", role_rule({"admin": 200, "reporter": 200})),
    Endpoint("GET", "/api/v1/notify/recipients/ivan.petrov@example.com", role_rule({"admin": 200, "agent1": 200})),
    Endpoint("PUT", "/api/v1/notify/recipients/kate@example.com", role_rule({"admin": 200, "reporter": 200}),
             {"channels": [{"type": "email"}]}),
    # the tracker's webhook is authenticated by its signature only: a bearer token is not enough
    Endpoint("POST", "/api/v1/escalation/trackers/default/webhook", role_rule({}, denied=401),
             {"defect_id": "BUG-1", "status": "fixed"}),
    # metrics need a token (docs/operations.md); health and the API documents are public
    Endpoint("GET", "/metrics", role_rule({w: 200 for w in WHO if w})),
    Endpoint("GET", "/api/v1/tickets/metrics", role_rule({w: 200 for w in WHO if w})),
]
PUBLIC = ["/healthz", "/readyz", "/api/v1/tickets/healthz", "/api/v1/sla/readyz", "/api/v1/tickets/openapi.json",
          "/api/v1/sla/openapi.json", "/api/v1/escalation/openapi.json", "/api/v1/notify/openapi.json"]


def _cases():
    for ep in ENDPOINTS:
        for who in WHO:
            for ticket in (TICKETS if ep.per_ticket else (None,)):
                label = f"{ep.label()}{'' if ep.body is None else ' ' + ','.join(ep.body)} as {who}" + \
                        (f" on {ticket}" if ticket else "")
                yield pytest.param(ep, who, ticket, id=label)


def _fill(value, ticket: dict | None, world: dict):
    if isinstance(value, dict):
        return {k: _fill(v, ticket, world) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ticket, world) for v in value]
    if isinstance(value, str) and ticket is not None:
        value = value.replace("{ticket}", ticket["id"]).replace("{key}", ticket["key"])
        for name in ("title", "priority", "tier"):
            value = value.replace("{" + name + "}", str(ticket[name]))
    if isinstance(value, str):
        value = value.replace("{delivery}", world["delivery"])
    return value


@pytest.mark.parametrize("endpoint,who,which", list(_cases()))
def test_matrix(system, world, endpoint, who, which):
    ticket = world[which] if which else None
    path = _fill(endpoint.path, ticket, world)
    resp = system.call(endpoint.method, path, who, json_body=_fill(endpoint.body, ticket, world))
    expected = endpoint.expect(who, which)
    assert resp.status_code == expected, f"{endpoint.method} {path} as {who}: {resp.get_data(as_text=True)[:300]}"
    if expected >= 400:
        error = resp.get_json()["error"]
        assert error["code"] and error["message"]
    if expected == 401:
        assert resp.headers.get("WWW-Authenticate", "").startswith("Bearer") or "webhook" in path


@pytest.mark.parametrize("path", PUBLIC)
def test_health_and_documents_are_public(system, path):
    assert system.call("GET", path, None).status_code == 200


# --- tokens ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("header", ["", "Bearer", "Bearer ", "Bearer not-a-token", "Basic YWRtaW46YWRtaW4=",
                                    "bearer {token}", "Bearer {token}x", "Token {token}", "{token}",
                                    "Bearer \u00ff\u00fe"])
def test_malformed_or_wrong_tokens_get_401(system, header):
    secret = system.tokens["admin"]["Authorization"].split(" ", 1)[1]
    resp = system.client.open("/api/v1/tickets", headers={"Authorization": header.replace("{token}", secret)})
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "unauthorized"


def test_token_names_are_unique(system):
    """Regression: a second token under an existing name was accepted, and the name is the
    principal's identity (Idempotency-Key scope, assignee, actor): twins shared what each owned,
    e.g. one got the other's ticket back by replaying an Idempotency-Key."""
    store = TokenStore(system.settings.tokens_path())
    store.add(name="twin", role="reporter", email="twin-a@example.com")
    with pytest.raises(ValueError, match="exists"):
        store.add(name="twin", role="reporter", email="twin-b@example.com")


# --- intake: what each role may do to tickets ----------------------------------------------------
def test_reporter_may_not_set_priority_or_report_for_someone_else(system):
    resp = system.call("POST", "/api/v1/tickets", "reporter", json_body={"title": "urgent!!", "priority": "P1"})
    assert resp.status_code == 403 and "priority" in resp.get_json()["error"]["fields"]
    resp = system.call("POST", "/api/v1/tickets", "reporter",
                       json_body={"title": "framed", "reporter": {"name": "M", "email": "mallory@example.com"}})
    assert resp.status_code == 403 and "reporter" in resp.get_json()["error"]["fields"]
    mine = system.call("GET", "/api/v1/tickets?reporter=mallory@example.com", "reporter").get_json()["items"]
    assert not [t for t in mine if t["title"] == "framed"]


def test_reporter_may_only_close_reopen_or_cancel(system, world):
    a = world["A"]
    for status in ("in_progress", "pending", "resolved"):
        resp = system.call("POST", f"/api/v1/tickets/{a['id']}/status", "reporter", json_body={"status": status})
        assert resp.status_code == 403 and "status" in resp.get_json()["error"]["fields"]
    assert system.ticket(a["id"])["status"] == "assigned"


def test_reporter_cannot_escalate_or_patch_even_their_own_ticket(system, world):
    a = world["A"]
    assert system.call("POST", f"/api/v1/tickets/{a['id']}/escalations", "reporter",
                       json_body={"to_tier": "L3", "reason": "me first"}).status_code == 403
    assert system.call("PATCH", f"/api/v1/tickets/{a['id']}", "reporter",
                       json_body={"priority": "P1"}).status_code == 403
    after = system.ticket(a["id"])
    assert (after["priority"], after["tier"]) == (a["priority"], "L1")


def test_an_agent_escalates_only_upwards(system, world):
    b = world["B"]  # at L2
    resp = system.call("POST", f"/api/v1/tickets/{b['id']}/escalations", "agent2",
                       json_body={"to_tier": "L1", "reason": "not mine"})
    assert resp.status_code == 409 and "to_tier" in resp.get_json()["error"]["fields"]


def test_list_shows_each_caller_only_what_they_may_see(system, world):
    def ids(who, query=""):
        resp = system.call("GET", f"/api/v1/tickets?limit=100{query}", who)
        assert resp.status_code == 200
        return {t["id"] for t in resp.get_json()["items"]}, resp.get_json()["items"]
    a, b = world["A"]["id"], world["B"]["id"]
    seen, items = ids("reporter")
    assert a in seen and b not in seen and all(t["reporter"]["email"] == "kate@example.com" for t in items)
    seen, items = ids("agent1")
    assert a in seen and b not in seen and all(t["tier"] in ("L1", None) for t in items)
    seen, items = ids("agent2")
    assert b in seen and a not in seen
    assert {a, b} <= ids("lead")[0] and {a, b} <= ids("admin")[0]
    # filters narrow what is visible; they never widen it
    assert ids("reporter", "&reporter=mallory@example.com")[0] == set()
    assert b not in ids("agent1", "&tier=L2")[0] and b not in ids("agent1", "&group=Infrastructure")[0]
    assert a not in ids("agent2", "&group=Service%20Desk")[0]


def test_delivery_log_shows_each_agent_only_the_tickets_they_see(system, world):
    a, b = world["A"]["id"], world["B"]["id"]
    system.wait_deliveries(ticket_id=b)

    def tickets(who, query=""):
        resp = system.call("GET", f"/api/v1/notify/deliveries?limit=200{query}", who)
        assert resp.status_code == 200
        return {d["ticket_id"] for d in resp.get_json()["items"]}
    assert a in tickets("agent1") and b not in tickets("agent1")
    assert b in tickets("agent2") and a not in tickets("agent2")
    assert {a, b} <= tickets("lead") and {a, b} <= tickets("admin")
    assert tickets("agent1", f"&ticket_id={b}") == set()  # a filter narrows, never widens
    assert tickets("agent2", "&recipient=kate@example.com") <= {b}


def test_reporters_never_see_internal_notes(system, world):
    a = world["A"]
    marker = "internal-only-7f3a"
    assert system.call("POST", f"/api/v1/tickets/{a['id']}/comments", "agent1",
                       json_body={"body": f"note {marker}", "public": False}).status_code == 201
    assert system.call("POST", f"/api/v1/tickets/{a['id']}/comments", "agent1",
                       json_body={"body": "public after the note", "public": True}).status_code == 201
    comments = system.call("GET", f"/api/v1/tickets/{a['id']}/comments", "reporter").get_json()["items"]
    assert comments and all(c["public"] for c in comments) and marker not in str(comments)
    history = system.call("GET", f"/api/v1/tickets/{a['id']}/history", "reporter").get_json()["items"]
    assert history and all(h["public"] for h in history) and marker not in str(history)
    staff_view = system.call("GET", f"/api/v1/tickets/{a['id']}/comments", "agent1").get_json()["items"]
    assert marker in str(staff_view)
    # notify mails public replies only: the reply after the note arrives, the note never does
    system.wait_deliveries(ticket_id=a["id"], recipient="kate@example.com", count=2)
    kate = [d for d in system.deliveries(ticket_id=a["id"], recipient="kate@example.com")
            if d["source_event_type"] == "ticket.commented"]
    assert kate
    for d in kate:
        body = system.call("GET", f"/api/v1/notify/deliveries/{d['id']}", "admin").get_json()["body_text"]
        assert marker not in body


def test_dedup_key_never_merges_into_someone_elses_ticket(system):
    theirs = system.call("POST", "/api/v1/tickets", "reporter2", json_body={"title": "disk full", "dedup_key": "k-1"})
    mine = system.call("POST", "/api/v1/tickets", "reporter", json_body={"title": "disk full", "dedup_key": "k-1"})
    assert theirs.status_code == 201 and mine.status_code == 201
    assert mine.get_json()["id"] != theirs.get_json()["id"]
    assert mine.get_json()["reporter"]["email"] == "kate@example.com"


def test_idempotency_key_is_scoped_to_the_caller(system):
    body = {"title": "same body, same key"}
    first = system.call("POST", "/api/v1/tickets", "reporter2", json_body=body, headers={"Idempotency-Key": "shared"})
    second = system.call("POST", "/api/v1/tickets", "reporter", json_body=body, headers={"Idempotency-Key": "shared"})
    assert first.status_code == 201 and second.status_code == 201
    assert second.get_json()["id"] != first.get_json()["id"]
    assert second.get_json()["reporter"]["email"] == "kate@example.com"


# --- notify: people manage only themselves -------------------------------------------------------
def test_only_an_admin_points_notify_at_a_url(system):
    hook = {"channels": [{"type": "webhook", "url": "http://169.254.169.254/latest", "secret": "s" * 20}]}
    resp = system.call("PUT", "/api/v1/notify/recipients/kate@example.com", "reporter", json_body=hook)
    assert resp.status_code == 403
    slack = {"channels": [{"type": "slack", "url": "http://127.0.0.1:22/"}]}
    assert system.call("PUT", "/api/v1/notify/recipients/ivan.petrov@example.com", "agent1",
                       json_body=slack).status_code == 403
    telegram = {"channels": [{"type": "telegram", "bot_token": "123456:" + "A" * 30, "chat_id": "42",
                              "base_url": "http://10.0.0.1"}]}
    assert system.call("PUT", "/api/v1/notify/recipients/kate@example.com", "reporter",
                       json_body=telegram).status_code == 403
    stored = system.call("GET", "/api/v1/notify/recipients/kate@example.com", "admin").get_json()
    assert [c["type"] for c in stored["channels"]] == ["email"]


def test_secrets_never_appear_in_answers(system, world):
    from tests.attack.harness import TRACKER_SECRET
    for path in ("/api/v1/escalation/trackers", "/api/v1/escalation/defects", "/api/v1/escalation/groups",
                 f"/api/v1/escalation/tickets/{world['A']['id']}", "/api/v1/notify/recipients",
                 "/api/v1/notify/deliveries"):
        resp = system.call("GET", path, "admin")
        assert resp.status_code == 200
        assert TRACKER_SECRET not in resp.get_data(as_text=True)
    secrets = [h["Authorization"].split(" ", 1)[1] for who, h in system.tokens.items() if who]
    for path in ("/api/v1/tickets?limit=100", f"/api/v1/tickets/{world['A']['id']}/history", "/metrics"):
        text = system.call("GET", path, "admin").get_data(as_text=True)
        assert not any(secret in text for secret in secrets)


@pytest.mark.parametrize("path", ["/api/v1/tickets/../sla/policies", "/api/v1/tickets/%2e%2e/sla/policies",
                                  "/api/v1/tickets/..%2fsla%2fpolicies", "/api/v1/ticketsx/../sla/policies",
                                  "/api/v1/sla/../escalation/groups", "/API/V1/SLA/POLICIES"])
def test_path_tricks_do_not_reach_another_services_endpoint(system, path):
    """The embedded dispatcher routes by prefix: dot segments or case never reach an endpoint
    (of this or another service), for a reporter or even an admin."""
    for who in ("reporter", "admin"):
        resp = system.call("GET", path, who)
        assert resp.status_code == 404, f"{path} as {who}: {resp.status_code}"
