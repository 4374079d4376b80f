"""Intake over HTTP on real PostgreSQL and RabbitMQ: create, validation, roles, visibility, list,
PATCH, and the exact ticket.* events each change publishes."""
from __future__ import annotations

import pytest

from tests.integration.test_intake_support import KATE, START, intake  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


def test_create_computes_priority_numbers_keys_and_announces_the_ticket(intake):
    first = intake.create(impact="high", urgency="medium", channel="email", language="ru")
    second = intake.create(title="Printer jammed", impact="low", urgency="low")
    assert first["key"] == "INC-1" and second["key"] == "INC-2"
    assert first["priority"] == "P2" and second["priority"] == "P4"
    assert {k: first[k] for k in ("status", "tier", "group", "assignee", "channel", "reporter", "occurrences",
                                  "reassignments", "at_risk", "breached", "breached_clocks", "defects",
                                  "feedback", "version", "created_at", "language")} == {
        "status": "new", "tier": None, "group": None, "assignee": None, "channel": "email", "reporter": KATE,
        "occurrences": 1, "reassignments": 0, "at_risk": False, "breached": False, "breached_clocks": [],
        "defects": [], "feedback": None, "version": 1, "created_at": START.isoformat(), "language": "ru"}
    created, _ = intake.expect("ticket.created", "ticket.created")
    assert created.correlation_id == first["id"] and created.causation_id is None
    assert created.payload == {
        "ticket": {"id": first["id"], "key": "INC-1", "title": "VPN is down", "priority": "P2", "status": "new",
                   "tier": None, "group": None, "assignee": None, "category": "network", "service": "vpn",
                   "channel": "email", "reporter": KATE, "language": "ru", "created_at": START.isoformat()},
        "description": "Cannot connect since 9:00", "impact": "high", "urgency": "medium"}


def test_create_defaults_missing_impact_or_urgency_to_medium(intake):
    ticket = intake.create(urgency="high")
    assert (ticket["impact"], ticket["urgency"], ticket["priority"]) == ("medium", "high", "P2")


def test_staff_may_set_priority_and_report_for_someone_reporters_may_not(intake):
    by_agent = intake.create(headers=intake.ivan, priority="P1", impact="low", urgency="low", channel="phone",
                             reporter={"name": "Caller", "email": "Caller@Example.com"})
    assert by_agent["priority"] == "P1" and by_agent["reporter"] == {"name": "Caller", "email": "caller@example.com"}
    response = intake.client.post("/api/v1/tickets", json={"title": "x", "priority": "P1"}, headers=intake.kate)
    assert response.status_code == 403 and "priority" in response.get_json()["error"]["fields"]
    response = intake.client.post("/api/v1/tickets", json={"title": "x", "reporter": {"name": "B", "email": "b@x.org"}},
                                  headers=intake.kate)
    assert response.status_code == 403 and "reporter" in response.get_json()["error"]["fields"]
    intake.expect("ticket.created")


BAD_CREATES = [
    ({}, "title"),
    ({"title": "   "}, "title"),
    ({"title": "x" * 201}, "title"),
    ({"title": "ok", "description": "x" * 20001}, "description"),
    ({"title": "ok", "channel": "fax"}, "channel"),
    ({"title": "ok", "impact": "catastrophic"}, "impact"),
    ({"title": "ok", "urgency": 3}, "urgency"),
    ({"title": "ok", "priority": "P9"}, "priority"),
    ({"title": "ok", "reporter": {"name": "A", "email": "not-an-email"}}, "reporter"),
    ({"title": "ok", "category": "c" * 101}, "category"),
    ({"title": "ok", "language": "english"}, "language"),
    ({"title": "ok", "dedup_key": ""}, "dedup_key"),
    ({"title": "ok", "colour": "red"}, "colour"),
]


def test_bad_fields_answer_422_naming_them_and_create_nothing(intake):
    for body, field in BAD_CREATES:  # one service for all cases: building one costs a second
        response = intake.client.post("/api/v1/tickets", json=body, headers=intake.ivan)
        assert response.status_code == 422, (body, response.get_json())
        error = response.get_json()["error"]
        assert error["code"] == "validation_error" and field in error["fields"], (body, error)
        assert field in error["message"]
    assert intake.outbox_count() == 0
    assert intake.client.get("/api/v1/tickets", headers=intake.admin).get_json()["items"] == []


def test_auth_body_size_and_json_errors(intake):
    assert intake.client.post("/api/v1/tickets", json={"title": "x"}).status_code == 401
    assert intake.client.get("/api/v1/tickets", headers={"Authorization": "Bearer nope"}).status_code == 401
    big = intake.client.post("/api/v1/tickets", data="{" + " " * 1_100_000 + "}", headers={
        **intake.kate, "Content-Type": "application/json"})
    assert big.status_code == 413 and big.get_json()["error"]["code"] == "payload_too_large"
    bad = intake.client.post("/api/v1/tickets", data="{nope", headers={**intake.kate, "Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "bad_request"
    assert intake.outbox_count() == 0
    spec = intake.client.get("/api/v1/tickets/openapi.json")
    assert spec.status_code == 200
    assert {"/api/v1/tickets", "/api/v1/tickets/{ticket_ref}/status", "/api/v1/reports/kpi"} <= set(spec.get_json()["paths"])


def test_visibility_reporter_agent_lead(intake):
    kates = intake.create()
    bobs = intake.create(headers=intake.bob, title="Laptop broken")
    intake.route(bobs, "L2", "Infrastructure")
    intake.until(bobs["id"], lambda t: t["group"] == "Infrastructure")

    def keys(headers):
        response = intake.client.get("/api/v1/tickets", headers=headers)
        assert response.status_code == 200
        return sorted(t["key"] for t in response.get_json()["items"])

    assert keys(intake.kate) == [kates["key"]]
    assert keys(intake.bob) == [bobs["key"]]
    assert keys(intake.ivan) == [kates["key"]]        # L1 sees the unrouted one
    assert keys(intake.dmitry) == [bobs["key"]]       # L2 Infrastructure
    assert keys(intake.lead) == sorted([kates["key"], bobs["key"]])
    # Someone else's ticket is "not found", exactly like a missing one.
    for headers, ticket in ((intake.kate, bobs), (intake.dmitry, kates)):
        response = intake.client.get(f"/api/v1/tickets/{ticket['id']}", headers=headers)
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"
    for missing in ("00000000-0000-0000-0000-000000000000", "INC-999", "garbage"):
        assert intake.client.get(f"/api/v1/tickets/{missing}", headers=intake.admin).status_code == 404
    by_key = intake.client.get(f"/api/v1/tickets/{kates['key']}", headers=intake.kate)
    assert by_key.status_code == 200 and by_key.get_json()["id"] == kates["id"]
    assert by_key.headers["ETag"] == '"1"'


def test_list_filters_and_cursor_pages(intake):
    made = [intake.create(title=f"t{i}", impact="high" if i % 2 else "low", urgency="high") for i in range(5)]
    intake.create(headers=intake.bob, title="bob's", impact="low", urgency="low")
    intake.status(made[0]["id"], "in_progress")

    def page(query):
        response = intake.client.get(f"/api/v1/tickets?{query}", headers=intake.lead)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    first = page("limit=2")
    second = page(f"limit=2&cursor={first['next_cursor']}")
    third = page(f"limit=2&cursor={second['next_cursor']}")
    keys = [t["key"] for p in (first, second, third) for t in p["items"]]
    assert keys == ["INC-6", "INC-5", "INC-4", "INC-3", "INC-2", "INC-1"] and third["next_cursor"] is None
    assert [t["key"] for t in page("priority=P1")["items"]] == ["INC-4", "INC-2"]
    assert [t["key"] for t in page("priority=P1&priority=P3")["items"]] == ["INC-5", "INC-4", "INC-3", "INC-2", "INC-1"]
    assert [t["key"] for t in page("status=in_progress")["items"]] == ["INC-1"]
    assert [t["key"] for t in page("reporter=BOB@example.com")["items"]] == ["INC-6"]
    assert page("breached=true")["items"] == [] and len(page("breached=false")["items"]) == 6
    for query, field in (("limit=101", "limit"), ("limit=0", "limit"), ("cursor=zzz", "cursor"),
                         ("status=open", "status"), ("breached=maybe", "breached"), ("tier=L9", "tier")):
        response = intake.client.get(f"/api/v1/tickets?{query}", headers=intake.lead)
        assert response.status_code == 422 and field in response.get_json()["error"]["fields"], query


def test_patch_changes_fields_and_announces_exactly_what_changed(intake):
    ticket = intake.create(impact="medium", urgency="medium")
    intake.expect("ticket.created")
    response = intake.client.patch(f"/api/v1/tickets/{ticket['id']}", json={"impact": "high", "category": "access"},
                                   headers={**intake.ivan, "If-Match": '"1"'})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["priority"], body["impact"], body["category"], body["version"]) == ("P2", "high", "access", 2)
    (updated,) = intake.expect("ticket.updated")
    assert updated.payload["changes"] == {"impact": {"old": "medium", "new": "high"},
                                          "priority": {"old": "P3", "new": "P2"},
                                          "category": {"old": "network", "new": "access"}}
    assert updated.payload["actor"] == {"name": "Ivan Petrov", "email": "ivan.petrov@example.com"}
    assert updated.payload["ticket"]["priority"] == "P2"

    # Stale If-Match, nothing to change, bad input, reporters: no event.
    stale = intake.client.patch(f"/api/v1/tickets/{ticket['id']}", json={"title": "New"},
                                headers={**intake.ivan, "If-Match": '"1"'})
    assert stale.status_code == 409 and "If-Match" in stale.get_json()["error"]["fields"]
    same = intake.client.patch(f"/api/v1/tickets/{ticket['id']}", json={"category": "access"}, headers=intake.ivan)
    assert same.status_code == 200 and same.get_json()["version"] == 2
    for body, field in (({}, "_schema"), ({"priority": "P0"}, "priority"), ({"title": ""}, "title"),
                        ({"status": "closed"}, "status"), ({"impact": "cosmic"}, "impact")):
        response = intake.client.patch(f"/api/v1/tickets/{ticket['id']}", json=body, headers=intake.ivan)
        assert response.status_code == 422 and field in response.get_json()["error"]["fields"], body
    assert intake.client.patch(f"/api/v1/tickets/{ticket['id']}", json={"title": "x"},
                               headers=intake.kate).status_code == 403
    assert intake.client.patch("/api/v1/tickets/INC-404", json={"title": "x"}, headers=intake.ivan).status_code == 404
    intake.expect()

    # Assigning a person to a new ticket takes it out of "new".
    assigned = intake.client.patch(f"/api/v1/tickets/{ticket['id']}", json={"assignee": "Ivan Petrov"},
                                   headers=intake.ivan).get_json()
    assert assigned["status"] == "assigned" and assigned["assignee"] == "Ivan Petrov"
    updated, moved = intake.expect("ticket.updated", "ticket.status_changed")
    assert updated.payload["changes"] == {"assignee": {"old": None, "new": "Ivan Petrov"}}
    assert (moved.payload["previous_status"], moved.payload["status"]) == ("new", "assigned")

    intake.status(ticket["id"], "cancelled", reason="duplicate of INC-7")
    intake.expect("ticket.status_changed")
    closed = intake.client.patch(f"/api/v1/tickets/{ticket['id']}", json={"title": "x"}, headers=intake.ivan)
    assert closed.status_code == 409
    intake.expect()


def test_dedup_key_counts_occurrences_while_open_then_opens_a_new_ticket(intake):
    alert = {"title": "disk /var 95% on db-1", "channel": "monitoring", "dedup_key": "db-1:/var:disk"}
    first = intake.create(headers=intake.ivan, **alert)
    again = intake.client.post("/api/v1/tickets", json=alert, headers=intake.ivan)
    assert again.status_code == 200
    assert again.get_json()["id"] == first["id"] and again.get_json()["occurrences"] == 2
    _, counted = intake.expect("ticket.created", "ticket.updated")
    assert counted.payload["changes"] == {"occurrences": {"old": 1, "new": 2}}
    # Another source with the same key gets its own ticket.
    other = intake.client.post("/api/v1/tickets", json=alert, headers=intake.kate)
    assert other.status_code == 201 and other.get_json()["id"] != first["id"]
    intake.expect("ticket.created")
    intake.status(first["id"], "resolved", reason="disk cleaned")
    intake.expect("ticket.status_changed")
    after = intake.client.post("/api/v1/tickets", json=alert, headers=intake.ivan)
    assert after.status_code == 201 and after.get_json()["id"] != first["id"]
    intake.expect("ticket.created")
    # Reopening the old one does not steal the key from the newer open ticket.
    intake.status(first["id"], "reopened", reason="full again")
    intake.expect("ticket.status_changed")
    latest = intake.client.post("/api/v1/tickets", json=alert, headers=intake.ivan)
    assert latest.status_code == 200 and latest.get_json()["id"] == after.get_json()["id"]
    intake.expect("ticket.updated")


def test_idempotency_key_replays_the_first_answer(intake):
    headers = {**intake.kate, "Idempotency-Key": "form-42"}
    body = {"title": "Mail bounces", "impact": "low"}
    first = intake.client.post("/api/v1/tickets", json=body, headers=headers)
    intake.clock.advance(60)
    retry = intake.client.post("/api/v1/tickets", json=body, headers=headers)
    assert first.status_code == retry.status_code == 201
    assert retry.get_json() == first.get_json()
    changed = intake.client.post("/api/v1/tickets", json={**body, "impact": "high"}, headers=headers)
    assert changed.status_code == 422 and "Idempotency-Key" in changed.get_json()["error"]["fields"]
    # The key belongs to its caller: someone else's identical key is a different request.
    bobs = intake.client.post("/api/v1/tickets", json=body, headers={**intake.bob, "Idempotency-Key": "form-42"})
    assert bobs.status_code == 201 and bobs.get_json()["id"] != first.get_json()["id"]
    too_long = intake.client.post("/api/v1/tickets", json=body, headers={**intake.kate, "Idempotency-Key": "k" * 256})
    assert too_long.status_code == 422 and "Idempotency-Key" in too_long.get_json()["error"]["fields"]
    intake.expect("ticket.created", "ticket.created")
