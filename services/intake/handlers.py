"""Event handlers: intake applies what escalation decided and flags what sla measured.

Each runs in the inbox transaction (redeliveries are skipped there). An event for a ticket intake
does not know is logged and dropped: intake creates tickets, so there is nothing to build from it.
`clock` is bound in bootstrap.
"""
from __future__ import annotations

import logging

from sqlalchemy import select

from services.intake import domain, store
from services.intake.models import Defect, SlaClock, Ticket
from shared.clock import as_utc
from shared.events import Event

log = logging.getLogger(__name__)
ESCALATION = ("escalation", "system")
SLA = ("sla", "system")


def _ticket(session, event: Event) -> Ticket | None:
    ticket = store.find(session, event.ticket_id or "", lock=True)
    if ticket is None:
        log.warning("%s %s for unknown ticket %s: ignored", event.type, event.id, event.ticket_id)
    return ticket


def _place(session, ticket: Ticket, event: Event, now, *, tier, group, assignee, trigger, reason,
           escalation_id=None, contacts=None) -> None:
    """Apply a placement; announce it with ticket.assigned (and the status change it implies)."""
    previous = {"tier": ticket.tier, "group": ticket.group, "assignee": ticket.assignee}
    if assignee is None and ticket.group in (None, group):
        assignee = ticket.assignee  # a group-level routing keeps a person already on the ticket
    if (tier, group, assignee) == (ticket.tier, ticket.group, ticket.assignee):
        store.record(session, ticket, "placement_unchanged", actor=ESCALATION, now=now, public=False,
                     reason=reason, trigger=trigger, tier=tier, group=group)
        return
    if domain.counts_as_reassignment(ticket.group, group):
        ticket.reassignments += 1
    ticket.tier, ticket.group, ticket.assignee = tier, group, assignee
    if tier and tier not in (ticket.tiers_reached or []):
        ticket.tiers_reached = [*(ticket.tiers_reached or []), tier]
    if tier == "L1":  # the first line owns the conversation; defects come back here
        ticket.l1_tier, ticket.l1_group, ticket.l1_assignee = tier, group, assignee
    previous_status = ticket.status
    ticket.status = domain.placement_status(previous_status)  # so ticket.assigned shows it already
    store.touch(ticket, now)
    store.record(session, ticket, "assigned", actor=ESCALATION, now=now, public=False, reason=reason,
                 trigger=trigger, previous=previous, tier=tier, group=group, assignee=assignee)
    store.emit(session, ticket, "ticket.assigned", now, cause=event, previous=previous, trigger=trigger,
               reason=reason, escalation_id=escalation_id, contacts=contacts or {})
    if ticket.status != previous_status:
        store.set_status(session, ticket, ticket.status, now, reason or f"assigned to {group}", actor=ESCALATION,
                         person=None, cause=event, previous=previous_status)


def on_routed(session, event: Event, *, clock) -> None:
    ticket = _ticket(session, event)
    if ticket is None:
        return
    p, now = event.payload, clock.now()
    if not domain.is_open(ticket.status):
        store.record(session, ticket, "routing_ignored", actor=ESCALATION, now=now, public=False,
                     reason=f"the ticket is {ticket.status}", trigger=p["trigger"], tier=p["tier"], group=p["group"])
        return
    _place(session, ticket, event, now, tier=p["tier"], group=p["group"], assignee=p.get("assignee"),
           trigger=p["trigger"], reason=p.get("reason", ""), escalation_id=p["escalation_id"],
           contacts=p.get("contacts") or {})


def _defect(session, ticket: Ticket, p: dict, now) -> Defect:
    defect = session.execute(select(Defect).where(
        Defect.ticket_id == ticket.id, Defect.tracker == p["tracker"], Defect.defect_id == p["defect_id"])
    ).scalar_one_or_none()
    if defect is None:  # resolved may overtake linked: create the link either way
        defect = Defect(ticket_id=ticket.id, tracker=p["tracker"], defect_id=p["defect_id"], status="open",
                        linked_at=now)
        session.add(defect)
    defect.url = p.get("url") or defect.url
    return defect


def on_defect_linked(session, event: Event, *, clock) -> None:
    ticket = _ticket(session, event)
    if ticket is None:
        return
    p, now = event.payload, clock.now()
    _defect(session, ticket, p, now)
    store.touch(ticket, now, bump=False)
    store.record(session, ticket, "defect_linked", actor=ESCALATION, now=now, public=False,
                 tracker=p["tracker"], defect_id=p["defect_id"], url=p.get("url"))


def on_defect_resolved(session, event: Event, *, clock) -> None:
    """The fix is in: the ticket goes back to its L1 owner, who confirms with the reporter."""
    ticket = _ticket(session, event)
    if ticket is None:
        return
    p, now = event.payload, clock.now()
    defect = _defect(session, ticket, p, now)
    defect.status, defect.resolved_at = "resolved", now
    reason = f"defect {p['tracker']}:{p['defect_id']} resolved ({p.get('resolution', 'fixed')})"
    store.record(session, ticket, "defect_resolved", actor=ESCALATION, now=now, public=True, reason=reason,
                 tracker=p["tracker"], defect_id=p["defect_id"], resolution=p.get("resolution", "fixed"))
    if not domain.is_open(ticket.status):
        store.touch(ticket, now, bump=False)
        return
    back = p.get("return_to") or {}
    group = back.get("group") or ticket.l1_group
    if group is None:
        log.warning("defect resolved on %s but no L1 owner is known: placement kept", ticket.key)
        store.touch(ticket, now, bump=False)
    else:
        assignee = back.get("assignee") if back.get("group") else ticket.l1_assignee
        _place(session, ticket, event, now, tier=back.get("tier") or ticket.l1_tier or "L1", group=group,
               assignee=assignee, trigger="defect_resolved", reason=reason)
    if ticket.status == "pending":  # it was waiting on the developers
        store.set_status(session, ticket, "in_progress", now, reason, actor=ESCALATION, person=None, cause=event)


def on_manager_notified(session, event: Event, *, clock) -> None:
    ticket = _ticket(session, event)
    if ticket is None:
        return
    p = event.payload
    store.record(session, ticket, "manager_notified", actor=ESCALATION, now=clock.now(), public=False,
                 reason=p["reason"], manager=p["manager"].get("name"), tier=p["tier"], group=p["group"],
                 trigger=p["trigger"])


SLA_STATES = {"sla.warning": "warning", "sla.breached": "breached", "sla.met": "met"}


def on_sla(session, event: Event, *, clock) -> None:
    """Keep each clock's latest state (older events never overwrite newer ones); a breach is
    remembered for good (KPI), at_risk is 'some clock of an open ticket is in warning'."""
    ticket = _ticket(session, event)
    if ticket is None:
        return
    p, now, state = event.payload, clock.now(), SLA_STATES[event.type]
    row = session.get(SlaClock, (ticket.id, p["clock"]))
    if row is None:
        row = SlaClock(ticket_id=ticket.id, clock=p["clock"], state=state, event_at=event.occurred_at)
        session.add(row)
    if as_utc(row.event_at) <= event.occurred_at:
        row.state, row.event_at, row.due_at, row.percent = state, event.occurred_at, p.get("due_at"), p.get("percent")
    if state == "breached":
        ticket.breached = True
        if p["clock"] not in (ticket.breached_clocks or []):
            ticket.breached_clocks = [*(ticket.breached_clocks or []), p["clock"]]
    session.flush()
    states = session.execute(select(SlaClock.state).where(SlaClock.ticket_id == ticket.id)).scalars().all()
    ticket.at_risk = domain.is_open(ticket.status) and "warning" in states
    store.touch(ticket, now, bump=False)
    store.record(session, ticket, f"sla_{state}", actor=SLA, now=now, public=False, clock=p["clock"],
                 tier=p.get("tier"), due_at=p.get("due_at"), percent=p.get("percent"))


def table(clock) -> dict:
    """Event type -> handler(session, event), with the clock bound."""
    def bind(handler):
        def handle(session, event):
            handler(session, event, clock=clock)
        handle.__name__ = handler.__name__
        return handle

    return {"escalation.routed": bind(on_routed), "escalation.defect_linked": bind(on_defect_linked),
            "escalation.defect_resolved": bind(on_defect_resolved),
            "escalation.manager_notified": bind(on_manager_notified),
            "sla.warning": bind(on_sla), "sla.breached": bind(on_sla), "sla.met": bind(on_sla)}
