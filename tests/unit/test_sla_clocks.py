"""The SLA clock rules (services.sla.domain), pure: instants come from a FrozenClock."""
from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from services.sla import domain
from services.sla.calendar import Calendar
from services.sla.domain import BREACH, BREACHED, MET, PAUSED, RUNNING, STOPPED
from services.sla.models import DOMAIN_FIELDS, Clock as ClockRow
from shared.clock import FrozenClock

UTC = dt.timezone.utc
ALWAYS = Calendar.twenty_four_seven()
# Monday-Friday 09:00-18:00 UTC, no holidays: easy to reason about by hand.
OFFICE = Calendar.from_dict({"name": "office", "timezone": "UTC",
                             "windows": {d: [["09:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}})
MONDAY_9 = dt.datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock():
    return FrozenClock(MONDAY_9)


def new(clock, target=100, warnings=(50, 75, 90), cal=ALWAYS, **kw):
    return domain.new_clock("t1", kw.pop("name", "resolution"), calendar=cal.name, cal=cal, target=target,
                            warnings=warnings, at=clock.now(), **kw)


def at(clock, seconds):
    return clock.now() + dt.timedelta(seconds=seconds)


def test_a_new_clock_plans_its_first_warning_and_its_deadline(clock):
    c = new(clock)
    assert c.status == RUNNING and c.elapsed_before == 0
    assert c.due_at == at(clock, 100)
    assert c.next_fire_at == at(clock, 50)


def test_warnings_fire_once_each_in_order_then_the_breach(clock):
    c = new(clock)
    assert domain.fire(c, ALWAYS, at(clock, 49)) == []
    assert domain.fire(c, ALWAYS, at(clock, 50)) == [50]
    assert c.next_fire_at == at(clock, 75)
    assert domain.fire(c, ALWAYS, at(clock, 50)) == []  # never twice
    # Came due while nobody looked: every threshold passed fires once, breach last.
    assert domain.fire(c, ALWAYS, at(clock, 500)) == [75, 90, BREACH]
    assert c.outcome == BREACHED and c.breached_at == at(clock, 100)
    assert c.next_fire_at is None
    assert domain.fire(c, ALWAYS, at(clock, 900)) == []
    # After the breach it keeps counting, reported as overdue.
    assert domain.elapsed(c, ALWAYS, at(clock, 130)) == 130
    assert domain.remaining(c, ALWAYS, at(clock, 130)) == -30
    assert domain.state(c) == BREACHED


def test_warning_thresholds_round_up_and_are_in_business_time(clock):
    c = new(clock, target=3 * 3600, warnings=(50,), cal=OFFICE)  # Monday 09:00 + 3 business hours
    assert c.next_fire_at == MONDAY_9 + dt.timedelta(hours=1, minutes=30)
    assert domain.threshold_seconds(3, 50) == 2
    friday_17 = MONDAY_9 + dt.timedelta(days=4, hours=8)
    c = domain.new_clock("t1", "resolution", calendar="office", cal=OFFICE, target=2 * 3600, warnings=(50,), at=friday_17)
    assert c.next_fire_at == friday_17 + dt.timedelta(hours=1)           # Friday 18:00
    assert c.due_at == MONDAY_9 + dt.timedelta(days=7, hours=1)           # next Monday 10:00


def test_pause_keeps_elapsed_time_and_counts_paused_wall_time(clock):
    c = new(clock)
    clock.advance(30)
    assert domain.pause(c, ALWAYS, clock.now())
    assert not domain.pause(c, ALWAYS, clock.now())  # already paused
    assert c.status == PAUSED and c.elapsed_before == 30
    assert c.due_at is None and c.next_fire_at is None
    clock.advance(70)
    assert domain.paused_total(c, clock.now()) == 70
    assert domain.elapsed(c, ALWAYS, clock.now()) == 30
    assert domain.resume(c, ALWAYS, clock.now())
    assert c.paused_seconds == 70
    assert c.next_fire_at == at(clock, 20) and c.due_at == at(clock, 70)
    assert domain.state(c) == RUNNING


def test_stop_in_time_is_met_late_is_breached_once(clock):
    c = new(clock)
    assert domain.stop(c, ALWAYS, at(clock, 40)) == MET
    assert c.status == STOPPED and domain.state(c) == MET and c.elapsed_before == 40
    assert domain.stop(c, ALWAYS, at(clock, 50)) is None

    late = new(clock)
    # Stopped past the deadline before the engine fired it: announced as breached, once.
    assert domain.stop(late, ALWAYS, at(clock, 120)) == BREACHED
    assert late.breached_at == at(clock, 100)

    fired = new(clock)
    domain.fire(fired, ALWAYS, at(clock, 100))
    assert domain.stop(fired, ALWAYS, at(clock, 120)) is None  # the breach was announced already
    assert domain.state(fired) == BREACHED


def test_stop_while_paused_ends_the_pause(clock):
    c = new(clock)
    domain.pause(c, ALWAYS, at(clock, 10))
    assert domain.stop(c, ALWAYS, at(clock, 60)) == MET
    assert c.paused_seconds == 50 and c.paused_at is None and c.elapsed_before == 10


def test_cancel_stops_without_outcome_to_announce(clock):
    c = new(clock)
    assert domain.stop(c, ALWAYS, at(clock, 10), cancel=True) is None
    assert domain.state(c) == "stopped" and c.outcome == domain.CANCELLED


def test_reopen_continues_with_elapsed_time_kept(clock):
    c = new(clock)
    domain.stop(c, ALWAYS, at(clock, 40))
    assert domain.reopen(c, ALWAYS, at(clock, 1000))  # the 960 s it was resolved do not count
    assert c.status == RUNNING and c.outcome is None
    assert domain.elapsed(c, ALWAYS, at(clock, 1010)) == 50
    assert c.due_at == at(clock, 1060)
    assert c.next_fire_at == at(clock, 1010)  # 50 % is still to fire
    assert not domain.reopen(c, ALWAYS, at(clock, 1020))


def test_a_breach_survives_reopen_and_never_fires_again(clock):
    c = new(clock, warnings=())
    domain.fire(c, ALWAYS, at(clock, 100))
    domain.stop(c, ALWAYS, at(clock, 150))
    domain.reopen(c, ALWAYS, at(clock, 200))
    assert domain.state(c) == BREACHED and c.next_fire_at is None
    assert domain.fire(c, ALWAYS, at(clock, 10_000)) == []


def test_priority_change_counts_from_the_original_start_keeping_pauses(clock):
    c = new(clock, target=3600)
    domain.pause(c, ALWAYS, at(clock, 600))
    domain.resume(c, ALWAYS, at(clock, 1800))      # 20 min paused
    now = at(clock, 2000)                          # 800 s ran
    domain.retarget(c, target=900, warnings=(50, 75, 90), calendar="24x7", cal=ALWAYS, at=now)
    assert domain.elapsed(c, ALWAYS, now) == 800 and c.paused_seconds == 1200
    assert c.due_at == at(clock, 2100)             # 100 s left of the new 900 s target
    assert c.started_at == clock.now()
    assert domain.fire(c, ALWAYS, now) == [50, 75]  # thresholds the new target puts behind us
    # A shorter target already exceeded fires the breach at once.
    domain.retarget(c, target=600, warnings=(50, 75, 90), calendar="24x7", cal=ALWAYS, at=now)
    assert domain.fire(c, ALWAYS, now) == [90, BREACH]


def test_calendar_change_recounts_the_real_running_spans(clock):
    friday_17 = MONDAY_9 + dt.timedelta(days=4, hours=8)
    c = domain.new_clock("t1", "resolution", calendar="office", cal=OFFICE, target=4 * 3600, warnings=(), at=friday_17)
    monday_10 = friday_17 + dt.timedelta(days=2, hours=17)
    assert domain.elapsed(c, OFFICE, monday_10) == 2 * 3600   # Fri 17-18, Mon 9-10
    # Upgraded to a 24x7 priority: the weekend counts now, from the original start.
    domain.retarget(c, target=4 * 3600, warnings=(), calendar="24x7", cal=ALWAYS, at=monday_10)
    assert domain.elapsed(c, ALWAYS, monday_10) == 65 * 3600
    assert domain.fire(c, ALWAYS, monday_10) == [BREACH]
    assert c.breached_at == friday_17 + dt.timedelta(hours=4)


def test_retarget_of_a_paused_clock_waits_for_resume(clock):
    c = new(clock, target=1000)
    domain.pause(c, ALWAYS, at(clock, 300))
    domain.retarget(c, target=200, warnings=(), calendar="24x7", cal=ALWAYS, at=at(clock, 400))
    assert c.next_fire_at is None and c.due_at is None
    assert domain.remaining(c, ALWAYS, at(clock, 500)) == -100
    domain.resume(c, ALWAYS, at(clock, 600))
    # Overdue: the deadline it passed (while it ran) is due, so the next pass fires it.
    assert c.next_fire_at == c.due_at == at(clock, 200)
    assert domain.fire(c, ALWAYS, at(clock, 600)) == [BREACH]


def test_untargeted_ola_stint_only_counts(clock):
    c = new(clock, target=None, warnings=(50,), name="ola:DEV", tier="DEV")
    assert c.next_fire_at is None and c.due_at is None
    assert domain.fire(c, ALWAYS, at(clock, 10_000)) == []
    assert domain.stop(c, ALWAYS, at(clock, 70)) is None
    assert c.elapsed_before == 70 and domain.state(c) == "stopped"
    assert domain.remaining(c, ALWAYS, at(clock, 80)) is None


def test_clocks_armed_paused_or_stopped(clock):
    paused = new(clock, status=PAUSED)
    assert paused.next_fire_at is None and paused.paused_at == clock.now()
    domain.resume(paused, ALWAYS, at(clock, 50))
    assert paused.paused_seconds == 50 and paused.due_at == at(clock, 150)
    stopped = new(clock, status=STOPPED)
    assert domain.reopen(stopped, ALWAYS, at(clock, 20)) and stopped.due_at == at(clock, 120)


def test_report_due_of_paused_and_stopped_clocks(clock):
    c = new(clock)
    domain.pause(c, ALWAYS, at(clock, 30))
    assert domain.report_due(c, ALWAYS) == at(clock, 100)  # as if it ran on from the pause
    running = new(clock)
    assert domain.report_due(running, ALWAYS) == at(clock, 100)


@pytest.mark.parametrize("old,new,actions", [
    ("new", "assigned", []),
    ("assigned", "pending", ["pause"]),
    ("pending", "in_progress", ["resume"]),
    ("pending", "resolved", ["stop"]),
    ("in_progress", "closed", ["stop"]),
    ("resolved", "reopened", ["reopen"]),
    ("closed", "pending", ["reopen", "pause"]),
    ("pending", "cancelled", ["cancel"]),
    ("pending", "pending", []),
])
def test_status_actions(old, new, actions):
    assert domain.status_actions(old, new) == actions


def test_the_orm_row_has_exactly_the_domain_attributes():
    assert set(DOMAIN_FIELDS) == {f.name for f in dataclasses.fields(domain.Clock)}
    assert set(DOMAIN_FIELDS) <= set(ClockRow.__table__.columns.keys())
