"""Read models of the API: a ticket's clocks and tiers, and the preview under another priority."""
from __future__ import annotations

import datetime as dt

from services.sla import domain
from services.sla.domain import FIRST_RESPONSE, OLA, RESOLUTION, utc
from services.sla.models import DOMAIN_FIELDS
from services.sla.policies import Policy, select_policy
from services.sla.store import CalendarSet


def clock_view(clock, cal, now: dt.datetime) -> dict:
    remaining = domain.remaining(clock, cal, now)
    return {"name": clock.name, "tier": clock.tier, "state": domain.state(clock), "calendar": clock.calendar,
            "started_at": utc(clock.started_at), "due_at": utc(clock.due_at), "target_seconds": clock.target_seconds,
            "elapsed_seconds": domain.elapsed(clock, cal, now), "remaining_seconds": remaining,
            "paused_seconds": domain.paused_total(clock, now), "warnings": list(clock.warnings),
            "warnings_fired": [p for p in clock.warnings if p <= clock.warned],
            "breached_at": utc(clock.breached_at), "stopped_at": utc(clock.stopped_at)}


def ticket_view(ticket, clocks, calendars: CalendarSet, now: dt.datetime) -> dict:
    views = [clock_view(c, calendars.get(c.calendar), now) for c in clocks]
    tiers: dict[str, int] = {}
    for clock, view in zip(clocks, views):
        if clock.name.startswith(OLA):
            tiers[clock.tier] = tiers.get(clock.tier, 0) + view["elapsed_seconds"]
    return {"ticket_id": ticket.id, "key": ticket.key, "priority": ticket.priority, "status": ticket.status,
            "tier": ticket.tier, "policy": ticket.policy, "clocks": views,
            "tiers": [{"tier": tier, "consumed_seconds": seconds} for tier, seconds in tiers.items()]}


def preview(ticket, clocks, policies: list[Policy], calendars: CalendarSet, priority: str,
            now: dt.datetime) -> dict:
    """The clocks as they would be if the ticket's priority became `priority` now: same start,
    same running and paused spans, the targets and calendars of the policy that would match.
    Nothing is written."""
    policy = select_policy(policies, priority=priority, category=ticket.category, service=ticket.service,
                           channel=ticket.channel)
    copies = [domain.Clock(**{f: _copy(getattr(c, f)) for f in DOMAIN_FIELDS}) for c in clocks]
    if policy is not None:
        if not any(c.name == FIRST_RESPONSE for c in copies):  # a ticket no policy fitted so far
            for name in (FIRST_RESPONSE, RESOLUTION):
                target, calendar = policy.target(name)
                copies.append(domain.Clock(ticket_id=ticket.id, name=name, calendar=calendar, target_seconds=target,
                                           started_at=ticket.created_at, segment_started_at=ticket.created_at))
        for copy in copies:
            target, calendar = policy.target(copy.name)
            cal = calendars.get(calendar)
            domain.retarget(copy, target=target, warnings=policy.warnings, calendar=calendar, cal=cal, at=now)
            domain.fire(copy, cal, now)  # so a target already exceeded shows as breached
    views = [clock_view(c, calendars.get(c.calendar), now) for c in copies]
    return {"ticket_id": ticket.id, "key": ticket.key, "priority": ticket.priority, "preview_priority": priority,
            "policy": policy.name if policy else None, "clocks": views}


def _copy(value):
    return list(value) if isinstance(value, list) else value
