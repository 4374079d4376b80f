"""What ticket changes do to one ticket's clocks, inside the caller's transaction.

`TicketClocks` applies the domain rules (services.sla.domain) to the ticket's rows and returns
the events to announce; the handlers write them to the outbox in the same transaction.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from services.sla import domain
from services.sla.domain import FIRST_RESPONSE, OLA, RESOLUTION, RUNNING, PAUSED, STOPPED
from services.sla.models import Clock, Ticket
from services.sla.policies import Policy, select_policy
from services.sla.store import CalendarSet

log = logging.getLogger(__name__)
DEFAULT_CALENDAR = "24x7"


def clock_payload(key: str, priority: str, clock, cal, now: dt.datetime, percent: int | None = None) -> dict:
    """The sla.warning / sla.breached / sla.met payload (shared.events.SlaClockEvent)."""
    payload = {"key": key, "priority": priority, "clock": clock.name, "tier": clock.tier,
               "due_at": domain.report_due(clock, cal).isoformat(), "target_seconds": clock.target_seconds,
               "elapsed_seconds": domain.elapsed(clock, cal, now)}
    if percent is not None:
        payload["percent"] = percent
    return payload


def fired_event(percent: int) -> str:
    return "sla.breached" if percent == domain.BREACH else "sla.warning"


@dataclass
class TicketClocks:
    session: Session
    ticket: Ticket
    clocks: list[Clock]
    policies: list[Policy]
    calendars: CalendarSet
    now: dt.datetime
    out: list[tuple[str, dict]] = field(default_factory=list)  # (event type, payload) to announce

    # --- lookups -------------------------------------------------------------------------------
    @property
    def policy(self) -> Policy | None:
        return next((p for p in self.policies if p.name == self.ticket.policy), None)

    def cal(self, clock):
        return self.calendars.get(clock.calendar)

    def named(self, name: str) -> Clock | None:
        found = [c for c in self.clocks if c.name == name]
        return max(found, key=lambda c: c.seq) if found else None

    def _add(self, clock: domain.Clock) -> Clock:
        row = Clock.from_domain(clock)
        self.session.add(row)
        self.clocks.append(row)
        return row

    def _status_mode(self) -> str:
        if self.ticket.status in domain.PAUSE_STATUSES:
            return PAUSED
        if self.ticket.status in domain.DONE_STATUSES or self.ticket.status == "cancelled":
            return STOPPED
        return RUNNING

    def _announce(self, clock, result: str | None, at: dt.datetime) -> None:
        if result is not None:
            self.out.append((f"sla.{result}", clock_payload(self.ticket.key, self.ticket.priority, clock,
                                                            self.cal(clock), at)))

    # --- changes -------------------------------------------------------------------------------
    def arm(self, start: dt.datetime) -> None:
        """First response and resolution clocks from the ticket's start (nothing if no policy fits)."""
        policy = select_policy(self.policies, priority=self.ticket.priority, category=self.ticket.category,
                               service=self.ticket.service, channel=self.ticket.channel)
        if policy is None:
            log.warning("no SLA policy matches %s (%s); it gets no clocks", self.ticket.key, self.ticket.priority)
            return
        self.ticket.policy = policy.name
        for name in (FIRST_RESPONSE, RESOLUTION):
            if self.named(name) is None:
                target, calendar = policy.target(name)
                self._add(domain.new_clock(self.ticket.id, name, calendar=calendar, cal=self.calendars.get(calendar),
                                           target=target, warnings=policy.warnings, at=start))

    def assign(self, tier: str | None, at: dt.datetime) -> None:
        """A hand-off stops the old tier's OLA clock and starts the new tier's own, from zero."""
        current = self.named(OLA + self.ticket.tier) if self.ticket.tier else None
        if tier == self.ticket.tier and (tier is None or current is not None):
            return
        if current is not None and current.status != STOPPED:
            self._announce(current, domain.stop(current, self.cal(current), at), at)
        self.ticket.tier = tier
        if tier is None:
            return
        name = domain.ola_name(tier)
        previous = self.named(name)
        policy = self.policy
        target, calendar = policy.target(name) if policy else (None, DEFAULT_CALENDAR)
        self._add(domain.new_clock(self.ticket.id, name, calendar=calendar, cal=self.calendars.get(calendar),
                                   target=target, warnings=policy.warnings if policy else (), at=at, tier=tier,
                                   seq=previous.seq + 1 if previous else 1, status=self._status_mode()))

    def set_status(self, status: str, at: dt.datetime) -> None:
        resumed, paused = [], []
        for action in domain.status_actions(self.ticket.status, status):
            if action in ("stop", "cancel"):
                for clock in self.clocks:
                    self._announce(clock, domain.stop(clock, self.cal(clock), at, cancel=action == "cancel"), at)
            elif action == "reopen":
                # The resolution clock and the current tier's clock go on; first response is done.
                again = [self.named(RESOLUTION), self.named(OLA + self.ticket.tier) if self.ticket.tier else None]
                resumed += [c.name for c in again if c is not None and domain.reopen(c, self.cal(c), at)]
            elif action == "pause":
                paused += [c.name for c in self.clocks if domain.pause(c, self.cal(c), at)]
            elif action == "resume":
                resumed += [c.name for c in self.clocks if domain.resume(c, self.cal(c), at)]
        self.ticket.status = status
        if resumed:
            self.out.append(("sla.resumed", {"key": self.ticket.key, "clocks": resumed, "status": status}))
        if paused:
            self.out.append(("sla.paused", {"key": self.ticket.key, "clocks": paused, "status": status}))

    def first_response(self, at: dt.datetime) -> None:
        clock = self.named(FIRST_RESPONSE)
        if clock is not None:
            self._announce(clock, domain.stop(clock, self.cal(clock), at), at)

    def reselect(self, at: dt.datetime) -> None:
        """After a priority/category/service/channel change: recount every clock under the policy
        that now matches, from the original start, elapsed and paused time kept."""
        policy = select_policy(self.policies, priority=self.ticket.priority, category=self.ticket.category,
                               service=self.ticket.service, channel=self.ticket.channel)
        if policy is None:
            log.warning("no SLA policy matches %s any more; keeping its targets", self.ticket.key)
            return
        self.retarget(policy, at)

    def retarget(self, policy: Policy, at: dt.datetime) -> None:
        self.ticket.policy = policy.name
        if self.named(FIRST_RESPONSE) is None:
            self.arm(domain.utc(self.ticket.created_at))
        for clock in self.clocks:
            target, calendar = policy.target(clock.name)
            domain.retarget(clock, target=target, warnings=policy.warnings, calendar=calendar,
                            cal=self.calendars.get(calendar), at=at)

    def settle(self) -> None:
        """Fire what is already due (a shorter target, a late-seen ticket) in this transaction."""
        for clock in self.clocks:
            if clock.next_fire_at is not None and domain.utc(clock.next_fire_at) <= self.now:
                cal = self.cal(clock)
                for percent in domain.fire(clock, cal, self.now):
                    self.out.append((fired_event(percent), clock_payload(
                        self.ticket.key, self.ticket.priority, clock, cal, self.now,
                        None if percent == domain.BREACH else percent)))
