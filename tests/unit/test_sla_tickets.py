"""What ticket changes do to a ticket's clocks (services.sla.tickets) with a fake session:
OLA hand-offs, pauses, reopen, priority change, policy selection, the API read models."""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from services.sla import domain, reports
from services.sla.calendar import Calendar
from services.sla.policies import Policy, select_policy
from services.sla.store import CalendarSet
from services.sla.tickets import TicketClocks
from shared.clock import FrozenClock

UTC = dt.timezone.utc
START = dt.datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CALS = CalendarSet({"24x7": Calendar.twenty_four_seven()})
P1 = Policy(name="p1", priority="P1", calendar="24x7", first_response=60, resolution=600,
            warnings=(50,), ola={"L1": 100, "L2": 300}, position=10)
P3 = Policy(name="p3", priority="P3", calendar="24x7", first_response=600, resolution=6000,
            warnings=(50,), ola={"L1": 1000}, position=30)


class FakeSession:
    def __init__(self):
        self.added = []

    def add(self, row):
        self.added.append(row)


@pytest.fixture
def clock():
    return FrozenClock(START)


def flow_for(clock, priority="P1", clocks=None, ticket=None):
    ticket = ticket or SimpleNamespace(id="t1", key="INC-1", priority=priority, category=None, service=None,
                                       channel="web", status="new", tier=None, policy=None, created_at=START)
    return TicketClocks(FakeSession(), ticket, clocks if clocks is not None else [], [P1, P3], CALS, clock.now())


def again(flow, clock):
    """The same ticket and rows in a later transaction."""
    return TicketClocks(flow.session, flow.ticket, flow.clocks, flow.policies, CALS, clock.now())


def by_name(flow):
    return {(c.name, c.seq): c for c in flow.clocks}


def test_arm_starts_first_response_and_resolution_from_the_ticket_start(clock):
    flow = flow_for(clock)
    flow.arm(START)
    assert flow.ticket.policy == "p1"
    assert {(c.name, c.target_seconds, c.due_at) for c in flow.clocks} == {
        ("first_response", 60, START + dt.timedelta(seconds=60)),
        ("resolution", 600, START + dt.timedelta(seconds=600))}
    assert len(flow.session.added) == 2


def test_hand_off_stops_the_old_tier_and_gives_the_new_one_its_own_clock(clock):
    flow = flow_for(clock)
    flow.arm(START)
    flow.assign("L1", START)
    clock.advance(150)  # L1 overran its 100 s OLA ...
    flow = again(flow, clock)
    flow.settle()
    assert [t for t, p in flow.out if p["clock"] == "ola:L1"] == ["sla.warning", "sla.breached"]
    flow = again(flow, clock)
    flow.assign("L2", clock.now())
    l1, l2 = by_name(flow)[("ola:L1", 1)], by_name(flow)[("ola:L2", 1)]
    assert l1.status == domain.STOPPED and domain.state(l1) == domain.BREACHED
    # ... but L2 starts from zero: a hand-off never arrives breached.
    assert l2.status == domain.RUNNING and l2.target_seconds == 300
    assert l2.due_at == clock.now() + dt.timedelta(seconds=300)
    assert flow.out == []  # a breached clock is not announced again when it stops
    clock.advance(100)
    flow = again(flow, clock)
    flow.assign("L1", clock.now())  # back to L1: a new L1 stint, L2 met its OLA
    assert [(t, p["clock"], p["elapsed_seconds"]) for t, p in flow.out] == [("sla.met", "ola:L2", 100)]
    assert by_name(flow)[("ola:L1", 2)].due_at == clock.now() + dt.timedelta(seconds=100)
    clock.advance(30)
    view = reports.ticket_view(flow.ticket, flow.clocks, CALS, clock.now())
    assert view["tiers"] == [{"tier": "L1", "consumed_seconds": 180}, {"tier": "L2", "consumed_seconds": 100}]
    assert view["tier"] == "L1"


def test_assigning_the_same_tier_changes_nothing(clock):
    flow = flow_for(clock)
    flow.arm(START)
    flow.assign("L1", START)
    flow.assign("L1", START + dt.timedelta(seconds=5))
    assert [c.name for c in flow.clocks] == ["first_response", "resolution", "ola:L1"]


def test_tier_without_ola_target_is_counted_but_never_fires(clock):
    flow = flow_for(clock)
    flow.arm(START)
    flow.assign("DEV", START)
    dev = flow.named("ola:DEV")
    assert dev.target_seconds is None and dev.next_fire_at is None
    clock.advance(40)
    assert reports.ticket_view(flow.ticket, flow.clocks, CALS, clock.now())["tiers"] == [
        {"tier": "DEV", "consumed_seconds": 40}]


def test_pending_pauses_every_running_clock_and_resume_restarts_them(clock):
    flow = flow_for(clock)
    flow.arm(START)
    flow.assign("L1", START)
    clock.advance(20)
    flow.set_status("pending", clock.now())
    assert flow.out == [("sla.paused", {"key": "INC-1", "clocks": ["first_response", "resolution", "ola:L1"],
                                        "status": "pending"})]
    clock.advance(1000)
    flow = again(flow, clock)
    flow.set_status("in_progress", clock.now())
    assert flow.out[0][0] == "sla.resumed"
    assert flow.named("first_response").due_at == clock.now() + dt.timedelta(seconds=40)
    assert flow.named("resolution").paused_seconds == 1000


def test_resolved_stops_resolution_ola_and_first_response_reopen_resumes_two(clock):
    flow = flow_for(clock)
    flow.arm(START)
    flow.assign("L1", START)
    clock.advance(30)
    flow.set_status("resolved", clock.now())
    assert sorted((t, p["clock"]) for t, p in flow.out) == [
        ("sla.met", "first_response"), ("sla.met", "ola:L1"), ("sla.met", "resolution")]
    clock.advance(5000)
    flow = again(flow, clock)
    flow.set_status("reopened", clock.now())
    assert flow.out == [("sla.resumed", {"key": "INC-1", "clocks": ["resolution", "ola:L1"], "status": "reopened"})]
    assert flow.named("first_response").status == domain.STOPPED
    assert domain.elapsed(flow.named("resolution"), CALS.get("24x7"), clock.now()) == 30
    assert flow.named("resolution").due_at == clock.now() + dt.timedelta(seconds=570)


def test_cancel_stops_everything_silently(clock):
    flow = flow_for(clock)
    flow.arm(START)
    flow.set_status("cancelled", clock.now())
    assert flow.out == [] and all(c.status == domain.STOPPED for c in flow.clocks)


def test_first_public_reply_meets_the_first_response_clock(clock):
    flow = flow_for(clock)
    flow.arm(START)
    clock.advance(45)
    flow.first_response(clock.now())
    assert [(t, p["clock"], p["elapsed_seconds"], p["target_seconds"]) for t, p in flow.out] == [
        ("sla.met", "first_response", 45, 60)]


def test_priority_change_recomputes_deadlines_and_fires_what_is_now_due(clock):
    flow = flow_for(clock, priority="P3")
    flow.arm(START)
    flow.assign("L1", START)
    clock.advance(100)
    flow.set_status("pending", clock.now())
    clock.advance(500)
    flow = again(flow, clock)
    flow.set_status("in_progress", clock.now())
    clock.advance(100)  # 200 s ran, 500 s paused
    flow = again(flow, clock)
    flow.ticket.priority = "P1"
    flow.reselect(clock.now())
    flow.settle()
    assert flow.ticket.policy == "p1"
    fired = [(t, p["clock"], p.get("percent")) for t, p in flow.out]
    assert fired == [("sla.warning", "first_response", 50), ("sla.breached", "first_response", None),
                     ("sla.warning", "ola:L1", 50), ("sla.breached", "ola:L1", None)]
    resolution = flow.named("resolution")
    assert resolution.target_seconds == 600 and resolution.paused_seconds == 500
    assert resolution.due_at == clock.now() + dt.timedelta(seconds=400)


def test_preview_shows_other_priority_deadlines_without_changing_anything(clock):
    flow = flow_for(clock, priority="P3")
    flow.arm(START)
    clock.advance(120)
    before = [(c.target_seconds, c.due_at) for c in flow.clocks]
    view = reports.preview(flow.ticket, flow.clocks, [P1, P3], CALS, "P1", clock.now())
    assert view["policy"] == "p1" and view["preview_priority"] == "P1"
    clocks = {c["name"]: c for c in view["clocks"]}
    assert clocks["resolution"]["due_at"] == START + dt.timedelta(seconds=600)
    assert clocks["resolution"]["remaining_seconds"] == 480
    assert clocks["first_response"]["state"] == "breached"
    assert [(c.target_seconds, c.due_at) for c in flow.clocks] == before


def test_policy_selection_first_match_with_optional_attributes():
    vip = Policy(name="vip vpn", priority="P2", calendar="24x7", first_response=1, resolution=2,
                 service="VPN", channel="phone", position=5)
    general = Policy(name="p2", priority="P2", calendar="24x7", first_response=3, resolution=4, position=20)
    email = Policy(name="p2 email", priority="P2", calendar="24x7", first_response=5, resolution=6,
                   channel="email", position=30)
    policies = [general, email, vip]
    assert select_policy(policies, priority="P2", service="vpn", channel="phone").name == "vip vpn"
    assert select_policy(policies, priority="P2", service="vpn", channel="web").name == "p2"
    assert select_policy(policies, priority="P2", channel="email").name == "p2"  # general comes first
    assert select_policy(policies, priority="P4") is None
    assert vip.target("resolution") == (2, "24x7") and vip.target("ola:L1") == (None, "24x7")
