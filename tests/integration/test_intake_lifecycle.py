"""The ticket lifecycle over HTTP: status machine, comments, escalation requests, feedback, history
and the automatic close, with the exact events each step publishes."""
from __future__ import annotations

import pytest

from services.intake import housekeeping
from tests.integration.test_intake_support import intake  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


def moves(events):
    return [(e.payload["previous_status"], e.payload["status"]) for e in events]


def test_full_status_path_publishes_every_transition(intake):
    ticket = intake.create()
    intake.expect("ticket.created")
    tid = ticket["id"]
    intake.route(ticket, "L1", "Service Desk")
    intake.until(tid, lambda t: t["status"] == "assigned")
    intake.expect("ticket.assigned", "ticket.status_changed")
    path = [("in_progress", ""), ("pending", "waiting for the VPN vendor"), ("in_progress", "vendor answered"),
            ("resolved", "token reissued")]
    for status, reason in path:
        intake.clock.advance(600)
        assert intake.status(tid, status, reason=reason)["status"] == status
    events = intake.expect(*["ticket.status_changed"] * 4)
    assert moves(events) == [("assigned", "in_progress"), ("in_progress", "pending"), ("pending", "in_progress"),
                             ("in_progress", "resolved")]
    assert events[1].payload["reason"] == "waiting for the VPN vendor"
    assert events[1].payload["actor"] == {"name": "Ivan Petrov", "email": "ivan.petrov@example.com"}
    resolved = intake.get(tid)
    assert resolved["resolved_at"] == intake.clock.now().isoformat() and resolved["closed_at"] is None

    intake.clock.advance(days=2)
    assert intake.status(tid, "reopened", headers=intake.kate, reason="still failing")["resolved_at"] is None
    intake.status(tid, "resolved", reason="really fixed")
    intake.status(tid, "closed", headers=intake.kate, reason="confirmed")
    events = intake.expect(*["ticket.status_changed"] * 3)
    assert moves(events) == [("resolved", "reopened"), ("reopened", "resolved"), ("resolved", "closed")]
    assert events[0].payload["actor"]["email"] == "kate@example.com"
    assert intake.get(tid)["closed_at"] == intake.clock.now().isoformat()


def test_illegal_transitions_answer_409_and_change_nothing(intake):
    ticket = intake.create()
    tid = ticket["id"]
    for status in ("closed", "reopened", "assigned", "new"):
        error = intake.status(tid, status, reason="r", expect=409)["error"]
        assert error["code"] == "conflict" and "status" in error["fields"]
    intake.status(tid, "cancelled", reason="duplicate")
    for status in ("in_progress", "reopened", "resolved", "cancelled"):
        intake.status(tid, status, reason="r", expect=409)
    after = intake.get(tid)
    assert after["status"] == "cancelled" and after["version"] == 2
    intake.expect("ticket.created", "ticket.status_changed")


def test_status_input_roles_and_reasons(intake):
    ticket = intake.create()
    tid = ticket["id"]
    assert "reason" in intake.status(tid, "cancelled", expect=422)["error"]["fields"]
    assert "status" in intake.status(tid, "done", expect=422)["error"]["fields"]
    assert "status" in intake.status(tid, "in_progress", headers=intake.kate, expect=403)["error"]["fields"]
    intake.status(tid, "in_progress", headers=intake.bob, expect=404)       # not Bob's ticket
    intake.status(tid, "in_progress", headers=intake.dmitry, expect=404)    # not L2's (yet)
    intake.status("INC-77", "in_progress", expect=404)
    stale = intake.client.post(f"/api/v1/tickets/{tid}/status", json={"status": "in_progress"},
                               headers={**intake.ivan, "If-Match": '"7"'})
    assert stale.status_code == 409 and "If-Match" in stale.get_json()["error"]["fields"]
    # A reporter may cancel their own open ticket, with a reason.
    assert intake.status(tid, "cancelled", headers=intake.kate, reason="works again")["status"] == "cancelled"
    intake.expect("ticket.created", "ticket.status_changed")


def test_reopen_window(intake):
    tid = intake.create()["id"]
    intake.status(tid, "resolved", reason="fixed")
    intake.clock.advance(days=7, seconds=1)  # the fixture's window is 7 days
    error = intake.status(tid, "reopened", headers=intake.kate, reason="broken again", expect=409)["error"]
    assert "window" in error["message"]
    assert intake.get(tid)["status"] == "resolved"
    intake.expect("ticket.created", "ticket.status_changed")


def test_resolved_tickets_close_automatically_after_the_reopen_window(intake):
    old = intake.create()["id"]
    intake.status(old, "resolved", reason="fixed")
    intake.clock.advance(days=3)
    recent = intake.create()["id"]
    intake.status(recent, "resolved", reason="fixed")
    intake.expect("ticket.created", "ticket.status_changed", "ticket.created", "ticket.status_changed")
    intake.clock.advance(days=4)
    deps = intake.service.extras["deps"]
    assert housekeeping.close_expired(deps) == 1
    assert housekeeping.close_expired(deps) == 0
    assert intake.get(old)["status"] == "closed" and intake.get(recent)["status"] == "resolved"
    (closed,) = intake.expect("ticket.status_changed")
    assert closed.payload["ticket"]["id"] == old and closed.payload["status"] == "closed"
    assert closed.payload["reason"] == "closed automatically 7 days after resolution" and closed.payload["actor"] is None


def test_comments_first_response_internal_notes_and_reporter_replies(intake):
    ticket = intake.create()
    tid = ticket["id"]
    intake.clock.advance(300)
    url = f"/api/v1/tickets/{tid}/comments"
    note = intake.client.post(url, json={"body": "probably the token", "public": False}, headers=intake.ivan)
    assert note.status_code == 201 and note.get_json()["first_response"] is False
    intake.clock.advance(300)
    reply = intake.client.post(url, json={"body": "Please send the VPN log"}, headers=intake.ivan)
    assert reply.status_code == 201 and reply.get_json()["first_response"] is True
    again = intake.client.post(url, json={"body": "Any news?"}, headers=intake.ivan)
    assert again.get_json()["first_response"] is False
    assert intake.get(tid)["first_response_at"] == intake.clock.now().isoformat()
    _, note_event, first_event, _ = intake.expect("ticket.created", "ticket.commented", "ticket.commented",
                                                  "ticket.commented")
    assert note_event.payload["public"] is False and note_event.payload["first_response"] is False
    assert {k: first_event.payload[k] for k in ("comment_id", "public", "body", "author", "author_role",
                                                 "first_response")} == {
        "comment_id": reply.get_json()["id"], "public": True, "body": "Please send the VPN log",
        "author": {"name": "Ivan Petrov", "email": "ivan.petrov@example.com"}, "author_role": "agent",
        "first_response": True}

    intake.status(tid, "pending", reason="waiting for the log")
    intake.expect("ticket.status_changed")
    mine = intake.client.post(url, json={"body": "log attached"}, headers=intake.kate)
    assert mine.status_code == 201 and mine.get_json()["first_response"] is False
    _, back = intake.expect("ticket.commented", "ticket.status_changed")
    assert moves([back]) == [("pending", "in_progress")] and back.payload["reason"] == "the reporter replied"

    secret = intake.client.post(url, json={"body": "psst", "public": False}, headers=intake.kate)
    assert secret.status_code == 403 and "public" in secret.get_json()["error"]["fields"]
    for body, field in (({}, "body"), ({"body": ""}, "body"), ({"body": "x" * 20001}, "body"),
                        ({"body": "x", "public": "maybe"}, "public")):
        response = intake.client.post(url, json=body, headers=intake.ivan)
        assert response.status_code == 422 and field in response.get_json()["error"]["fields"]
    assert intake.client.post(url, json={"body": "hi"}, headers=intake.bob).status_code == 404

    seen_by_kate = [c["body"] for c in intake.client.get(url, headers=intake.kate).get_json()["items"]]
    seen_by_ivan = [c["body"] for c in intake.client.get(url, headers=intake.ivan).get_json()["items"]]
    assert seen_by_kate == ["Please send the VPN log", "Any news?", "log attached"]
    assert seen_by_ivan == ["probably the token", "Please send the VPN log", "Any news?", "log attached"]

    intake.status(tid, "cancelled", reason="user left")
    intake.expect("ticket.status_changed")
    assert intake.client.post(url, json={"body": "late"}, headers=intake.ivan).status_code == 409
    intake.expect()


def test_escalation_requests(intake):
    ticket = intake.create()
    tid = ticket["id"]
    intake.route(ticket, "L1", "Service Desk")
    intake.until(tid, lambda t: t["tier"] == "L1")
    intake.expect("ticket.created", "ticket.assigned", "ticket.status_changed")
    url = f"/api/v1/tickets/{tid}/escalations"
    response = intake.client.post(url, json={"to_tier": "L2", "to_group": "Infrastructure",
                                             "reason": "needs a firewall change"}, headers=intake.ivan)
    assert response.status_code == 202
    body = response.get_json()
    assert {k: body[k] for k in ("status", "ticket_id", "key", "to_tier", "to_group", "reason")} == {
        "status": "requested", "ticket_id": tid, "key": ticket["key"], "to_tier": "L2",
        "to_group": "Infrastructure", "reason": "needs a firewall change"}
    (requested,) = intake.expect("ticket.escalation_requested")
    assert requested.id == body["request_id"]
    assert {k: requested.payload[k] for k in ("to_tier", "to_group", "reason", "requested_by", "requested_by_role")} == {
        "to_tier": "L2", "to_group": "Infrastructure", "reason": "needs a firewall change",
        "requested_by": {"name": "Ivan Petrov", "email": "ivan.petrov@example.com"}, "requested_by_role": "agent"}
    assert intake.get(tid)["tier"] == "L1"  # intake only asks; escalation decides and routes

    sideways = intake.client.post(url, json={"to_tier": "L1", "reason": "other desk"}, headers=intake.ivan)
    assert sideways.status_code == 409 and "to_tier" in sideways.get_json()["error"]["fields"]
    assert intake.client.post(url, json={"to_tier": "L2", "reason": "x"}, headers=intake.kate).status_code == 403
    assert intake.client.post(url, json={"to_tier": "L2", "reason": "x"}, headers=intake.dmitry).status_code == 404
    for body, field in (({"to_tier": "L9", "reason": "x"}, "to_tier"), ({"to_tier": "L2"}, "reason"),
                        ({"to_tier": "L2", "reason": " "}, "reason")):
        response = intake.client.post(url, json=body, headers=intake.ivan)
        assert response.status_code == 422 and field in response.get_json()["error"]["fields"]
    intake.expect()

    intake.route(ticket, "L3", "Platform Engineering", trigger="ladder")
    intake.until(tid, lambda t: t["tier"] == "L3")
    intake.expect("ticket.assigned")
    down = intake.client.post(url, json={"to_tier": "L1", "reason": "back to the desk"}, headers=intake.lead)
    assert down.status_code == 202  # leads may move a ticket down
    intake.expect("ticket.escalation_requested")
    intake.status(tid, "resolved", headers=intake.lead, reason="done")
    intake.expect("ticket.status_changed")
    late = intake.client.post(url, json={"to_tier": "DEV", "reason": "x"}, headers=intake.lead)
    assert late.status_code == 409
    intake.expect()


def test_feedback_once_by_the_reporter_after_resolution(intake):
    tid = intake.create()["id"]
    url = f"/api/v1/tickets/{tid}/feedback"
    early = intake.client.post(url, json={"csat": 5}, headers=intake.kate)
    assert early.status_code == 409
    intake.status(tid, "resolved", reason="fixed")
    intake.expect("ticket.created", "ticket.status_changed")
    assert intake.client.post(url, json={"csat": 5}, headers=intake.ivan).status_code == 403
    assert intake.client.post(url, json={"csat": 5}, headers=intake.bob).status_code == 404
    for body, field in (({"csat": 6}, "csat"), ({"csat": 0}, "csat"), ({"nps": 11}, "nps"), ({"csat": "5"}, "csat"),
                        ({}, "csat"), ({"csat": 5, "comment": "x" * 2001}, "comment")):
        response = intake.client.post(url, json=body, headers=intake.kate)
        assert response.status_code == 422 and field in response.get_json()["error"]["fields"], body
    given = intake.client.post(url, json={"csat": 4, "nps": 9, "comment": "quick, thanks"}, headers=intake.kate)
    assert given.status_code == 201
    assert given.get_json() == {"csat": 4, "nps": 9, "comment": "quick, thanks", "at": intake.clock.now().isoformat()}
    (event,) = intake.expect("ticket.feedback_received")
    assert {k: event.payload[k] for k in ("csat", "nps", "comment")} == {"csat": 4, "nps": 9, "comment": "quick, thanks"}
    assert intake.client.post(url, json={"csat": 1}, headers=intake.kate).status_code == 409
    assert intake.get(tid)["feedback"]["csat"] == 4
    intake.expect()


def test_history_records_who_when_what_why_and_hides_internal_rows_from_reporters(intake):
    tid = intake.create()["id"]
    intake.clock.advance(60)
    intake.client.post(f"/api/v1/tickets/{tid}/comments", json={"body": "check RADIUS", "public": False},
                       headers=intake.ivan)
    intake.client.post(f"/api/v1/tickets/{tid}/escalations", json={"to_tier": "L2", "reason": "RADIUS is L2"},
                       headers=intake.ivan)
    intake.client.patch(f"/api/v1/tickets/{tid}", json={"priority": "P1"}, headers=intake.ivan)
    intake.clock.advance(60)
    intake.status(tid, "cancelled", headers=intake.kate, reason="not needed")
    staff = intake.client.get(f"/api/v1/tickets/{tid}/history", headers=intake.ivan).get_json()["items"]
    assert [(h["action"], h["actor"], h["public"]) for h in staff] == [
        ("created", "Kate Reporter", True), ("internal_note", "Ivan Petrov", False),
        ("escalation_requested", "Ivan Petrov", False), ("updated", "Ivan Petrov", True),
        ("status_changed", "Kate Reporter", True)]
    assert staff[2]["reason"] == "RADIUS is L2" and staff[2]["details"]["to_tier"] == "L2"
    assert staff[3]["details"] == {"priority": {"old": "P3", "new": "P1"}}
    assert staff[4]["reason"] == "not needed" and staff[4]["details"] == {"from": "new", "to": "cancelled"}
    assert staff[4]["at"] == intake.clock.now().isoformat() and staff[4]["actor_role"] == "reporter"
    reporter = intake.client.get(f"/api/v1/tickets/{tid}/history", headers=intake.kate).get_json()["items"]
    assert [h["action"] for h in reporter] == ["created", "updated", "status_changed"]
    assert intake.client.get(f"/api/v1/tickets/{tid}/history", headers=intake.bob).status_code == 404
