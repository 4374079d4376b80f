"""Intake consuming escalation.* and sla.* from RabbitMQ: what it applies, what it publishes in
answer, and how it copes with redeliveries, events out of order and tickets it does not know."""
from __future__ import annotations

import datetime as dt

import pytest

from tests.helpers import wait_for
from tests.integration.test_intake_support import START, intake  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration
CONTACTS = {"members": [{"name": "Ivan Petrov", "email": "ivan.petrov@example.com", "chat": "@ivan",
                         "timezone": "Europe/Moscow", "language": "ru"}],
            "manager": {"name": "Olga Ivanova", "email": "sd-manager@example.com", "chat": "@olga",
                        "timezone": None, "language": "ru"},
            "on_call": None}


def history(intake, tid):
    return intake.client.get(f"/api/v1/tickets/{tid}/history", headers=intake.admin).get_json()["items"]


def test_initial_routing_assigns_and_announces_with_the_contacts(intake):
    ticket = intake.create()
    intake.expect("ticket.created")
    routed = intake.route(ticket, "L1", "Service Desk", assignee="Ivan Petrov", contacts=CONTACTS,
                          escalation_id="esc-1", reason="default L1 group")
    after = intake.until(ticket["id"], lambda t: t["status"] == "assigned")
    assert (after["tier"], after["group"], after["assignee"], after["reassignments"]) == (
        "L1", "Service Desk", "Ivan Petrov", 0)
    assigned, moved = intake.expect("ticket.assigned", "ticket.status_changed")
    assert assigned.payload["previous"] == {"tier": None, "group": None, "assignee": None}
    assert {k: assigned.payload[k] for k in ("trigger", "reason", "escalation_id", "contacts")} == {
        "trigger": "initial", "reason": "default L1 group", "escalation_id": "esc-1", "contacts": CONTACTS}
    assert assigned.payload["ticket"]["group"] == "Service Desk" and assigned.payload["ticket"]["status"] == "assigned"
    assert assigned.causation_id == routed.id and assigned.correlation_id == routed.correlation_id
    assert (moved.payload["previous_status"], moved.payload["status"]) == ("new", "assigned")
    assert moved.causation_id == routed.id and moved.payload["actor"] is None


def test_rerouting_counts_reassignments_and_keeps_a_working_status(intake):
    ticket = intake.create()
    tid = ticket["id"]
    intake.route(ticket, "L1", "Service Desk")
    intake.until(tid, lambda t: t["tier"] == "L1")
    intake.status(tid, "in_progress")
    intake.expect("ticket.created", "ticket.assigned", "ticket.status_changed", "ticket.status_changed")
    intake.route(ticket, "L2", "Infrastructure", assignee="Dmitry Volkov", trigger="ladder", reason="OLA breached")
    after = intake.until(tid, lambda t: t["tier"] == "L2")
    assert (after["status"], after["reassignments"], after["assignee"]) == ("in_progress", 1, "Dmitry Volkov")
    (assigned,) = intake.expect("ticket.assigned")
    assert assigned.payload["previous"] == {"tier": "L1", "group": "Service Desk", "assignee": None}
    assert assigned.payload["trigger"] == "ladder"
    # The L2 agent now sees it, the L1 agent no longer does.
    assert intake.client.get(f"/api/v1/tickets/{tid}", headers=intake.dmitry).status_code == 200
    assert intake.client.get(f"/api/v1/tickets/{tid}", headers=intake.ivan).status_code == 404
    # A routing to where the ticket already is changes nothing and announces nothing.
    intake.route(ticket, "L2", "Infrastructure", assignee="Dmitry Volkov", trigger="reroute", escalation_id="esc-again")
    assert wait_for(lambda: history(intake, tid)[-1]["action"] == "placement_unchanged")
    assert intake.get(tid)["reassignments"] == 1
    intake.expect()


def test_redelivered_routing_is_applied_once(intake):
    ticket = intake.create()
    routed = intake.route(ticket, "L1", "Service Desk")
    intake.until(ticket["id"], lambda t: t["tier"] == "L1")
    intake.bus.publish(routed)  # the same event id again, as a broker redelivery would
    intake.route(ticket, "L2", "Applications")
    after = intake.until(ticket["id"], lambda t: t["tier"] == "L2")
    assert after["reassignments"] == 1
    intake.expect("ticket.created", "ticket.assigned", "ticket.status_changed", "ticket.assigned")
    assert [h["action"] for h in history(intake, ticket["id"])].count("assigned") == 2


def test_unknown_tickets_and_closed_ones_are_not_routed_and_consuming_goes_on(intake):
    ticket = intake.create()
    intake.publish("escalation.routed", "4b1d7a4e-0000-4000-8000-000000000000", key="INC-999", tier="L1",
                   group="Service Desk", trigger="initial", escalation_id="esc-x")
    intake.publish("sla.breached", "no-such-ticket", producer="sla", key="INC-998", priority="P1",
                   clock="resolution", due_at=START.isoformat(), target_seconds=60, elapsed_seconds=61)
    intake.status(ticket["id"], "cancelled", reason="wrong form")
    intake.route(ticket, "L1", "Service Desk")
    assert wait_for(lambda: history(intake, ticket["id"])[-1]["action"] == "routing_ignored")
    after = intake.get(ticket["id"])
    assert after["status"] == "cancelled" and after["group"] is None
    assert intake.bus.take_dead_letters("intake.events") == []
    intake.expect("ticket.created", "ticket.status_changed")


def test_defect_link_and_fix_bring_the_ticket_back_to_its_l1_owner(intake):
    ticket = intake.create()
    tid = ticket["id"]
    intake.route(ticket, "L1", "Service Desk", assignee="Ivan Petrov")
    intake.until(tid, lambda t: t["tier"] == "L1")
    intake.route(ticket, "DEV", "Developers", trigger="manual", reason="bug in the VPN portal")
    intake.until(tid, lambda t: t["tier"] == "DEV")
    intake.status(tid, "pending", headers=intake.lead, reason="waiting for the developers")
    intake.expect("ticket.created", "ticket.assigned", "ticket.status_changed", "ticket.assigned",
                  "ticket.status_changed")

    intake.publish("escalation.defect_linked", tid, key=ticket["key"], tracker="jira", defect_id="VPN-12",
                   url="https://jira.example.com/browse/VPN-12", group="Developers")
    linked = intake.until(tid, lambda t: t["defects"])
    assert linked["defects"] == [{"tracker": "jira", "defect_id": "VPN-12",
                                  "url": "https://jira.example.com/browse/VPN-12", "status": "open"}]
    intake.expect()  # a link is news for notify (from escalation), not a ticket.* change

    fixed = intake.publish("escalation.defect_resolved", tid, key=ticket["key"], tracker="jira", defect_id="VPN-12",
                           resolution="fixed", return_to={"tier": "L1", "group": "Service Desk",
                                                         "assignee": "Ivan Petrov"})
    after = intake.until(tid, lambda t: t["tier"] == "L1")
    assert (after["group"], after["assignee"], after["status"]) == ("Service Desk", "Ivan Petrov", "in_progress")
    assert after["defects"][0]["status"] == "resolved" and after["reassignments"] == 2
    assigned, moved = intake.expect("ticket.assigned", "ticket.status_changed")
    assert assigned.payload["trigger"] == "defect_resolved" and assigned.causation_id == fixed.id
    assert assigned.payload["previous"] == {"tier": "DEV", "group": "Developers", "assignee": None}
    assert assigned.payload["reason"] == "defect jira:VPN-12 resolved (fixed)"
    assert (moved.payload["previous_status"], moved.payload["status"]) == ("pending", "in_progress")
    actions = [h["action"] for h in history(intake, tid)]
    assert actions[-4:] == ["defect_linked", "defect_resolved", "assigned", "status_changed"]
    # The reporter is told the fix is in; the link itself stays internal.
    public = [h["action"] for h in intake.client.get(f"/api/v1/tickets/{tid}/history",
                                                     headers=intake.kate).get_json()["items"]]
    assert "defect_resolved" in public and "defect_linked" not in public


def test_defect_resolved_overtaking_its_link_and_manager_notes(intake):
    ticket = intake.create()
    tid = ticket["id"]
    intake.route(ticket, "L1", "Service Desk", assignee="Anna Smith")
    intake.until(tid, lambda t: t["tier"] == "L1")
    intake.route(ticket, "DEV", "Developers")
    intake.until(tid, lambda t: t["tier"] == "DEV")
    intake.expect("ticket.created", "ticket.assigned", "ticket.status_changed", "ticket.assigned")
    # No return_to placement given: intake remembers the L1 owner itself.
    intake.publish("escalation.defect_resolved", tid, key=ticket["key"], tracker="gitlab", defect_id="42",
                   return_to={})
    after = intake.until(tid, lambda t: t["tier"] == "L1")
    assert (after["group"], after["assignee"]) == ("Service Desk", "Anna Smith")
    assert after["defects"] == [{"tracker": "gitlab", "defect_id": "42", "url": None, "status": "resolved"}]
    intake.expect("ticket.assigned")
    intake.publish("escalation.defect_linked", tid, key=ticket["key"], tracker="gitlab", defect_id="42",
                   url="https://gitlab.example.com/i/42")
    intake.publish("escalation.manager_notified", tid, key=ticket["key"], tier="L1", group="Service Desk",
                   manager={"name": "Olga Ivanova", "email": "sd-manager@example.com"}, reason="resolution at 75%",
                   trigger="sla.warning", escalation_id="esc-9")
    assert wait_for(lambda: history(intake, tid)[-1]["action"] == "manager_notified")
    assert intake.get(tid)["defects"] == [{"tracker": "gitlab", "defect_id": "42",
                                           "url": "https://gitlab.example.com/i/42", "status": "resolved"}]
    note = history(intake, tid)[-1]
    assert note["reason"] == "resolution at 75%" and note["details"]["manager"] == "Olga Ivanova"
    intake.expect()


def sla(intake, type_, ticket, clock, at, **extra):
    payload = dict(key=ticket["key"], priority="P3", clock=clock, tier=None, due_at=START.isoformat(),
                   target_seconds=3600, elapsed_seconds=1800, **extra)
    return intake.publish(type_, ticket["id"], producer="sla", _at=at, **payload)


def test_sla_events_flag_at_risk_and_breached(intake):
    ticket = intake.create()
    other = intake.create(title="Other")
    t0 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.timezone.utc)
    sla(intake, "sla.warning", ticket, "first_response", t0, percent=75)
    flagged = intake.until(ticket["id"], lambda t: t["at_risk"])
    assert flagged["breached"] is False
    at_risk = intake.client.get("/api/v1/tickets?at_risk=true", headers=intake.lead).get_json()["items"]
    assert [t["id"] for t in at_risk] == [ticket["id"]]

    sla(intake, "sla.met", ticket, "first_response", t0 + dt.timedelta(minutes=5))
    intake.until(ticket["id"], lambda t: not t["at_risk"])
    sla(intake, "sla.breached", ticket, "resolution", t0 + dt.timedelta(hours=1))
    sla(intake, "sla.warning", ticket, "resolution", t0 + dt.timedelta(minutes=30), percent=90)  # late, older
    sla(intake, "sla.breached", ticket, "ola:L1", t0 + dt.timedelta(hours=2))
    after = intake.until(ticket["id"], lambda t: len(t["breached_clocks"]) == 2)
    assert after["breached"] is True and after["breached_clocks"] == ["resolution", "ola:L1"]
    assert after["at_risk"] is False  # the stale warning did not overwrite the breach
    breached = intake.client.get("/api/v1/tickets?breached=true", headers=intake.lead).get_json()["items"]
    assert [t["id"] for t in breached] == [ticket["id"]]
    assert intake.get(other["id"])["breached"] is False
    actions = [h["action"] for h in history(intake, ticket["id"])]
    assert actions.count("sla_breached") == 2 and "sla_met" in actions
    intake.expect("ticket.created", "ticket.created")  # flags are intake's read model: no ticket.* event
