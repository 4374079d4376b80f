"""SLA clocks as pure rules: no I/O, no wall clock (every instant is passed in).

A clock counts business seconds of its calendar while it runs. It keeps its finished running
segments (wall instants), so a priority, policy or calendar change can recount the elapsed time
from the original start under the new calendar, plus the start of the current segment.
`elapsed_before` caches the business seconds of the finished segments under the clock's
calendar, so the timer engine only does arithmetic from the current segment's start.

The functions below work on any object with the attributes of `Clock` (the ORM row in
services.sla.models has the same ones), so they are tested here on the plain dataclass.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from services.sla.calendar import Calendar, add_business_seconds, business_seconds_between
from shared.clock import as_utc

RUNNING, PAUSED, STOPPED = "running", "paused", "stopped"
MET, BREACHED, CANCELLED = "met", "breached", "cancelled"
FIRST_RESPONSE, RESOLUTION, OLA = "first_response", "resolution", "ola:"
BREACH = 100  # the threshold percent that means "due"
PAUSE_STATUSES = frozenset({"pending"})
DONE_STATUSES = frozenset({"resolved", "closed"})


@dataclass
class Clock:
    ticket_id: str
    name: str                       # first_response | resolution | ola:L1 ...
    calendar: str
    target_seconds: int | None      # None: an OLA stint of a tier without a target (only counts)
    started_at: dt.datetime
    tier: str | None = None
    seq: int = 1                    # OLA stints of one tier are numbered
    warnings: list = field(default_factory=list)
    status: str = RUNNING
    outcome: str | None = None      # met | breached | cancelled; breached also while it runs on
    segment_started_at: dt.datetime | None = None
    segments: list = field(default_factory=list)  # finished running spans [[iso, iso], ...]
    elapsed_before: int = 0
    paused_at: dt.datetime | None = None
    paused_seconds: int = 0         # wall seconds spent paused
    warned: int = 0                 # highest warning percent fired
    breached_at: dt.datetime | None = None
    stopped_at: dt.datetime | None = None
    due_at: dt.datetime | None = None
    next_fire_at: dt.datetime | None = None


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """Aware UTC (SQLite hands back naive values), None stays None."""
    return None if value is None else as_utc(value)


def ola_name(tier: str) -> str:
    return OLA + tier


def new_clock(ticket_id: str, name: str, *, calendar: str, cal: Calendar, target: int | None,
              warnings, at: dt.datetime, tier: str | None = None, seq: int = 1,
              status: str = RUNNING) -> Clock:
    """A clock started at `at`; `status` PAUSED or STOPPED arms it without running it yet."""
    clock = Clock(ticket_id=ticket_id, name=name, calendar=calendar, target_seconds=target,
                  started_at=at, tier=tier, seq=seq, warnings=sorted(set(warnings or ())))
    clock.status = status
    if status == RUNNING:
        clock.segment_started_at = at
    elif status == PAUSED:
        clock.paused_at = at
    else:
        clock.stopped_at = at
    plan(clock, cal)
    return clock


def elapsed(clock, cal: Calendar, now: dt.datetime) -> int:
    """Business seconds the clock has run, up to `now`."""
    total = clock.elapsed_before
    if clock.status == RUNNING:
        total += business_seconds_between(cal, utc(clock.segment_started_at), now)
    return total


def remaining(clock, cal: Calendar, now: dt.datetime) -> int | None:
    """Business seconds left (negative once overdue); None without a target."""
    if clock.target_seconds is None:
        return None
    return clock.target_seconds - elapsed(clock, cal, now)


def paused_total(clock, now: dt.datetime) -> int:
    extra = 0
    if clock.status == PAUSED and clock.paused_at is not None:
        extra = max(0, int((now - utc(clock.paused_at)).total_seconds()))
    return clock.paused_seconds + extra


def threshold_seconds(target: int, percent: int) -> int:
    """Business seconds at which `percent` of `target` is used (rounded up)."""
    return -(-target * percent // 100)


def _pending_percents(clock) -> list[int]:
    if clock.target_seconds is None or clock.outcome == BREACHED:
        return []
    return [p for p in clock.warnings if clock.warned < p < BREACH] + [BREACH]


def _instant(clock, cal: Calendar, seconds: int) -> dt.datetime:
    """When a running clock reaches (or reached) `seconds` of elapsed business time."""
    start = utc(clock.segment_started_at)
    if seconds > clock.elapsed_before:
        return add_business_seconds(cal, start, seconds - clock.elapsed_before)
    # Already behind us (a shorter target, another calendar): find it in the finished spans,
    # so the deadline reported is the real one counted from the original start.
    counted = 0
    for a, b in clock.segments:
        a, b = dt.datetime.fromisoformat(a), dt.datetime.fromisoformat(b)
        span = business_seconds_between(cal, a, b)
        if counted + span >= seconds:
            return add_business_seconds(cal, a, seconds - counted)
        counted += span
    return start


def plan(clock, cal: Calendar) -> None:
    """Recompute due_at and next_fire_at (the next unfired warning or the breach)."""
    if clock.status != RUNNING or clock.target_seconds is None:
        clock.next_fire_at = None
        if clock.status == PAUSED or clock.target_seconds is None:
            clock.due_at = None  # unknown until it runs again
        return
    clock.due_at = _instant(clock, cal, clock.target_seconds)
    pending = _pending_percents(clock)
    if not pending:
        clock.next_fire_at = None
    elif pending[0] == BREACH:
        clock.next_fire_at = clock.due_at
    else:
        clock.next_fire_at = _instant(clock, cal, threshold_seconds(clock.target_seconds, pending[0]))


def fire(clock, cal: Calendar, now: dt.datetime) -> list[int]:
    """Thresholds reached by `now`, in order (BREACH last); marks them fired, replans.

    A clock that came due while nobody was looking fires every threshold it passed, once each,
    so that every step an escalation ladder hangs on a warning still happens."""
    fired: list[int] = []
    if clock.status == RUNNING:
        for percent in _pending_percents(clock):
            seconds = clock.target_seconds if percent == BREACH else threshold_seconds(clock.target_seconds, percent)
            instant = _instant(clock, cal, seconds)
            if instant > now:
                break
            fired.append(percent)
            if percent == BREACH:
                clock.outcome, clock.breached_at = BREACHED, instant
            else:
                clock.warned = percent
    plan(clock, cal)
    return fired


def _close_segment(clock, cal: Calendar | None, at: dt.datetime) -> dt.datetime:
    start = utc(clock.segment_started_at)
    at = max(at, start)
    if at > start:
        clock.segments = [*clock.segments, [start.isoformat(), at.isoformat()]]
    if cal is not None:
        clock.elapsed_before += business_seconds_between(cal, start, at)
    clock.segment_started_at = None
    return at


def pause(clock, cal: Calendar, at: dt.datetime) -> bool:
    if clock.status != RUNNING:
        return False
    at = _close_segment(clock, cal, at)
    clock.status, clock.paused_at = PAUSED, at
    plan(clock, cal)
    return True


def _end_pause(clock, at: dt.datetime) -> dt.datetime:
    since = utc(clock.paused_at)
    at = max(at, since)
    clock.paused_seconds += int((at - since).total_seconds())
    clock.paused_at = None
    return at


def resume(clock, cal: Calendar, at: dt.datetime) -> bool:
    if clock.status != PAUSED:
        return False
    clock.segment_started_at = _end_pause(clock, at)
    clock.status = RUNNING
    plan(clock, cal)
    return True


def stop(clock, cal: Calendar, at: dt.datetime, *, cancel: bool = False) -> str | None:
    """Stop the clock; returns MET or BREACHED when that must be announced, else None.

    A clock stopped past its target whose breach the engine had not fired yet (the stop came
    within one tick of the deadline) is announced as breached, so compliance counts it."""
    if clock.status == STOPPED:
        return None
    if clock.status == RUNNING:
        at = _close_segment(clock, cal, at)
    else:
        at = _end_pause(clock, at)
    clock.status, clock.stopped_at, clock.next_fire_at = STOPPED, at, None
    if cancel:
        clock.outcome = clock.outcome or CANCELLED
        return None
    if clock.target_seconds is None or clock.outcome == BREACHED:
        return None
    if clock.elapsed_before < clock.target_seconds:
        clock.outcome = MET
        return MET
    clock.outcome = BREACHED
    due = utc(clock.due_at)
    clock.breached_at = due if due is not None and due <= at else at
    return BREACHED


def reopen(clock, cal: Calendar, at: dt.datetime) -> bool:
    """Run a stopped clock again, its elapsed time kept; a breach stays a breach."""
    if clock.status != STOPPED:
        return False
    clock.segment_started_at = max(at, utc(clock.stopped_at) or at)
    clock.status, clock.stopped_at = RUNNING, None
    if clock.outcome in (MET, CANCELLED):
        clock.outcome = None
    plan(clock, cal)
    return True


def retarget(clock, *, target: int | None, warnings, calendar: str, cal: Calendar, at: dt.datetime) -> None:
    """New target/calendar/warnings, counted from the original start: the elapsed time is the
    new calendar's business time over the segments the clock really ran (pauses excluded).

    Warnings already fired and a breach already announced are never fired again; thresholds the
    clock is now past fire on the next engine tick."""
    if clock.status == RUNNING:
        at = _close_segment(clock, None, at)
        clock.segment_started_at = at
    clock.target_seconds, clock.calendar = target, calendar
    clock.warnings = sorted(set(warnings or ()))
    clock.elapsed_before = sum(business_seconds_between(cal, dt.datetime.fromisoformat(a), dt.datetime.fromisoformat(b))
                               for a, b in clock.segments)
    if clock.status == RUNNING:
        plan(clock, cal)


def report_due(clock, cal: Calendar) -> dt.datetime:
    """The deadline to name in an event: the planned one, or where it would be from the last
    instant the clock ran (paused or stopped clocks have no live deadline)."""
    if clock.due_at is not None:
        return utc(clock.due_at)
    since = utc(clock.stopped_at) or utc(clock.paused_at) or utc(clock.started_at)
    left = max(0, (clock.target_seconds or 0) - clock.elapsed_before)
    return add_business_seconds(cal, since, left)


def state(clock) -> str:
    """running | paused | met | breached | stopped, as the API shows it."""
    if clock.outcome == BREACHED:
        return BREACHED
    if clock.status == STOPPED:
        return MET if clock.outcome == MET else STOPPED
    return clock.status


def status_actions(old: str | None, new: str) -> list[str]:
    """What a ticket status change does to its clocks, in order."""
    if new == old:
        return []
    if new == "cancelled":
        return ["cancel"]
    if new in DONE_STATUSES:
        return ["stop"]
    actions = []
    if old in DONE_STATUSES or old == "cancelled":
        actions.append("reopen")
    if new in PAUSE_STATUSES:
        actions.append("pause")
    elif old in PAUSE_STATUSES:
        actions.append("resume")
    return actions
