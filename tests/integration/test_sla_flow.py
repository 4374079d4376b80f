"""Tickets driven through ticket.* events on real RabbitMQ and PostgreSQL; the sla events and
the API's clocks observed. Policies in seconds, a FrozenClock moved by hand, engine ticks
called directly (the scheduler ticks too: both are safe together)."""
from __future__ import annotations

import datetime as dt

import pytest

from tests.helpers import ticket_ref
from tests.integration.test_sla_harness import MONDAY_9, clock_of, iso, sla_env  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration
S = dt.timedelta(seconds=1)


def new_ticket(sla, priority="P1", **overrides):
    ref = ticket_ref(priority=priority, created_at=iso(sla.clock.now()), **overrides)
    created = sla.send("ticket.created", ref)
    sla.wait_view(ref["id"])
    return ref, created


def test_warnings_then_breach_fire_at_policy_percents(sla_env):
    sla = sla_env()
    ref, created = new_ticket(sla)
    view = sla.view(ref["id"])
    assert view["policy"] == "P1 fast" and view["key"] == ref["key"]
    assert clock_of(view, "first_response")["due_at"] == iso(MONDAY_9 + 10 * S)
    assert clock_of(view, "resolution")["due_at"] == iso(MONDAY_9 + 40 * S)

    sla.advance(4)
    assert sla.tick() == 0
    sla.advance(1)  # 5 s: 50 % of the 10 s first response
    assert sla.tick() == 1
    warning = sla.probe.wait("sla.warning", clock="first_response", percent=50)[0]
    assert warning.payload == {"key": ref["key"], "priority": "P1", "clock": "first_response", "tier": None,
                               "due_at": iso(MONDAY_9 + 10 * S), "target_seconds": 10, "elapsed_seconds": 5,
                               "percent": 50}
    assert warning.ticket_id == ref["id"] and warning.correlation_id == created.correlation_id
    assert warning.producer == "sla"
    sla.advance(15)  # 20 s: first response 75 % and breach, resolution 50 %
    sla.tick()
    breach = sla.probe.wait("sla.breached", clock="first_response")[0]
    assert breach.payload["elapsed_seconds"] == 20 and breach.payload["due_at"] == iso(MONDAY_9 + 10 * S)
    sla.probe.wait("sla.warning", clock="resolution", percent=50)
    assert sla.emitted() == [("sla.warning", "first_response", 50), ("sla.warning", "first_response", 75),
                             ("sla.breached", "first_response", None), ("sla.warning", "resolution", 50)]
    view = sla.view(ref["id"])
    first = clock_of(view, "first_response")
    assert first["state"] == "breached" and first["remaining_seconds"] == -10 and first["warnings_fired"] == [50, 75]
    assert first["breached_at"] == iso(MONDAY_9 + 10 * S)
    sla.advance(100)
    sla.tick()
    sla.probe.wait("sla.breached", clock="resolution")
    assert [e for e in sla.emitted() if e[1] == "first_response"] == [
        ("sla.warning", "first_response", 50), ("sla.warning", "first_response", 75),
        ("sla.breached", "first_response", None)]  # a breached clock never fires again


def test_pending_pauses_every_clock_and_resume_keeps_elapsed(sla_env):
    sla = sla_env()
    ref, _ = new_ticket(sla)
    sla.advance(4)
    sla.send("ticket.status_changed", {**ref, "status": "pending"}, previous_status="new", status="pending")
    paused = sla.probe.wait("sla.paused")[0]
    assert paused.payload == {"key": ref["key"], "clocks": ["first_response", "resolution"], "status": "pending"}
    sla.advance(500)
    assert sla.tick() == 0  # nothing runs while pending
    view = sla.view(ref["id"])
    first = clock_of(view, "first_response")
    assert (first["state"], first["elapsed_seconds"], first["paused_seconds"], first["due_at"]) == ("paused", 4, 500, None)
    sla.send("ticket.status_changed", {**ref, "status": "in_progress"}, previous_status="pending", status="in_progress")
    resumed = sla.probe.wait("sla.resumed")[0]
    assert resumed.payload["clocks"] == ["first_response", "resolution"]
    view = sla.wait_view(ref["id"], lambda v: clock_of(v, "first_response")["state"] == "running")
    first = clock_of(view, "first_response")
    assert first["due_at"] == iso(sla.clock.now() + 6 * S)
    assert first["paused_seconds"] == 500 and first["remaining_seconds"] == 6
    sla.advance(1)
    sla.tick()
    assert sla.probe.wait("sla.warning", clock="first_response")[0].payload["elapsed_seconds"] == 5


def test_priority_change_recomputes_from_original_start_keeping_elapsed_and_paused(sla_env):
    sla = sla_env()
    ref, _ = new_ticket(sla, priority="P3")  # office calendar, Monday 09:00: counting
    sla.advance(20)
    sla.send("ticket.status_changed", {**ref, "status": "pending"}, previous_status="new", status="pending")
    sla.probe.wait("sla.paused")
    sla.advance(50)
    sla.send("ticket.status_changed", {**ref, "status": "assigned"}, previous_status="pending", status="assigned")
    sla.probe.wait("sla.resumed")
    sla.advance(10)  # 30 s ran, 50 s paused
    assert sla.tick() == 0
    p1 = {**ref, "priority": "P1", "status": "assigned"}
    sla.send("ticket.updated", p1, changes={"priority": {"old": "P3", "new": "P1"}})
    # First response (10 s) is long gone: fired at once, not on a restart of the clock.
    sla.probe.wait("sla.breached", clock="first_response")
    sla.probe.wait("sla.warning", clock="resolution", percent=75)
    view = sla.view(ref["id"])
    assert view["priority"] == "P1" and view["policy"] == "P1 fast"
    resolution = clock_of(view, "resolution")
    assert resolution["target_seconds"] == 40 and resolution["elapsed_seconds"] == 30
    assert resolution["paused_seconds"] == 50 and resolution["calendar"] == "24x7"
    assert resolution["due_at"] == iso(sla.clock.now() + 10 * S)
    breach = sla.probe.of("sla.breached", clock="first_response")[0]
    assert breach.payload["due_at"] == iso(MONDAY_9 + 10 * S) and breach.payload["priority"] == "P1"
    assert sla.emitted() == [("sla.paused", None, None), ("sla.resumed", None, None),
                             ("sla.warning", "first_response", 50), ("sla.warning", "first_response", 75),
                             ("sla.breached", "first_response", None),
                             ("sla.warning", "resolution", 50), ("sla.warning", "resolution", 75)]


def test_first_reply_meets_first_response_resolve_meets_reopen_continues(sla_env):
    sla = sla_env()
    ref, _ = new_ticket(sla)
    sla.advance(3)
    sla.send("ticket.commented", {**ref, "status": "in_progress"}, comment_id="c1", public=True, body="On it",
             author={"name": "Ivan"}, author_role="agent", first_response=True)
    met = sla.probe.wait("sla.met", clock="first_response")[0]
    assert (met.payload["elapsed_seconds"], met.payload["target_seconds"]) == (3, 10)
    sla.advance(9)
    sla.send("ticket.status_changed", {**ref, "status": "resolved"}, previous_status="in_progress", status="resolved")
    resolved = sla.probe.wait("sla.met", clock="resolution")[0]
    assert resolved.payload["elapsed_seconds"] == 12
    sla.advance(3600)  # resolved for an hour: not counted
    sla.send("ticket.status_changed", {**ref, "status": "reopened"}, previous_status="resolved", status="reopened")
    assert sla.probe.wait("sla.resumed")[0].payload["clocks"] == ["resolution"]
    view = sla.wait_view(ref["id"], lambda v: clock_of(v, "resolution")["state"] == "running")
    assert clock_of(view, "resolution")["elapsed_seconds"] == 12
    assert clock_of(view, "resolution")["due_at"] == iso(sla.clock.now() + 28 * S)
    assert clock_of(view, "first_response")["state"] == "met"
    sla.advance(28)
    sla.tick()
    breach = sla.probe.wait("sla.breached", clock="resolution")[0]
    assert breach.payload["elapsed_seconds"] == 40
    assert sla.emitted() == [("sla.met", "first_response", None), ("sla.met", "resolution", None),
                             ("sla.resumed", None, None), ("sla.warning", "resolution", 50),
                             ("sla.warning", "resolution", 75), ("sla.breached", "resolution", None)]


def test_each_tier_gets_its_own_ola_clock_and_consumed_time(sla_env):
    sla = sla_env()
    ref, _ = new_ticket(sla)
    l1 = {**ref, "tier": "L1", "group": "Service Desk", "status": "assigned"}
    sla.send("ticket.assigned", l1, previous={}, trigger="initial")
    sla.wait_view(ref["id"], lambda v: v["tier"] == "L1")
    sla.advance(25)  # L1's 20 s OLA runs out
    sla.tick()
    ola = sla.probe.wait("sla.breached", clock="ola:L1")[0]
    assert ola.payload["tier"] == "L1" and ola.payload["target_seconds"] == 20
    l2 = {**ref, "tier": "L2", "group": "Infrastructure", "status": "assigned"}
    sla.send("ticket.assigned", l2, previous={"tier": "L1", "group": "Service Desk"}, trigger="ladder")
    view = sla.wait_view(ref["id"], lambda v: v["tier"] == "L2")
    l2_clock = clock_of(view, "ola:L2")
    # The hand-off arrives fresh: L2 has its whole 30 s, not what L1 left over.
    assert (l2_clock["state"], l2_clock["remaining_seconds"], l2_clock["due_at"]) == (
        "running", 30, iso(sla.clock.now() + 30 * S))
    assert clock_of(view, "ola:L1")["state"] == "breached"
    sla.advance(12)
    sla.send("ticket.status_changed", {**l2, "status": "resolved"}, previous_status="assigned", status="resolved")
    met = sla.probe.wait("sla.met", clock="ola:L2")[0]
    assert (met.payload["tier"], met.payload["elapsed_seconds"]) == ("L2", 12)
    view = sla.wait_view(ref["id"], lambda v: v["status"] == "resolved")
    assert view["tiers"] == [{"tier": "L1", "consumed_seconds": 25}, {"tier": "L2", "consumed_seconds": 12}]
    assert sorted(e for e in sla.emitted() if e[1] == "ola:L2") == [("sla.met", "ola:L2", None)]


def test_first_event_of_an_unknown_ticket_arms_it_and_fires_what_is_due(sla_env):
    sla = sla_env()
    sla.advance(100)
    # intake created it 15 s ago but sla never saw ticket.created: the assignment comes first.
    ref = ticket_ref(priority="P1", status="assigned", tier="L1", created_at=iso(sla.clock.now() - 15 * S))
    sla.send("ticket.assigned", ref, previous={}, trigger="initial")
    sla.probe.wait("sla.breached", clock="first_response")
    view = sla.view(ref["id"])
    assert clock_of(view, "first_response")["elapsed_seconds"] == 15
    assert clock_of(view, "ola:L1")["elapsed_seconds"] == 0
    # ticket.created arriving late changes nothing.
    sla.send("ticket.created", {**ref, "status": "new", "tier": None})
    sla.advance(1)
    sla.tick()
    assert sla.emitted() == [("sla.warning", "first_response", 50), ("sla.warning", "first_response", 75),
                             ("sla.breached", "first_response", None)]
    assert [c["name"] for c in sla.view(ref["id"])["clocks"]] == ["first_response", "resolution", "ola:L1"]


def test_redelivered_event_changes_nothing_and_cancel_is_silent(sla_env):
    sla = sla_env()
    ref, _ = new_ticket(sla)
    sla.advance(2)
    pending = sla.send("ticket.status_changed", {**ref, "status": "pending"}, previous_status="new", status="pending")
    sla.probe.wait("sla.paused")
    sla.bus.publish(pending)  # the same event id again
    sla.advance(2)
    sla.send("ticket.status_changed", {**ref, "status": "cancelled"}, previous_status="pending", status="cancelled")
    view = sla.wait_view(ref["id"], lambda v: v["status"] == "cancelled")
    assert {c["state"] for c in view["clocks"]} == {"stopped"}
    assert clock_of(view, "resolution")["paused_seconds"] == 2
    sla.advance(1000)
    assert sla.tick() == 0
    assert sla.emitted() == [("sla.paused", None, None)]
