"""Reads: the ticket list (filters, visibility, cursor pages), one ticket, its comments and history.
Reporters never see internal notes or internal history rows."""
from __future__ import annotations

from sqlalchemy import select

from services.intake import domain, store
from services.intake.commands import Intake
from services.intake.activity import comment_dict
from services.intake.models import Comment, History, Ticket


def list_tickets(deps: Intake, principal, args: dict) -> dict:
    query = store.visible(select(Ticket), principal)
    for name, column in (("status", Ticket.status), ("tier", Ticket.tier), ("priority", Ticket.priority)):
        if args.get(name):
            query = query.where(column.in_(args[name]))
    for name, column in (("group", Ticket.group), ("assignee", Ticket.assignee), ("breached", Ticket.breached),
                         ("at_risk", Ticket.at_risk)):
        if args.get(name) is not None:
            query = query.where(column == args[name])
    if args.get("reporter"):
        query = query.where(Ticket.reporter_email == args["reporter"].lower())
    if args.get("cursor"):
        query = query.where(Ticket.number < domain.decode_cursor(args["cursor"]))
    limit = args["limit"]
    with deps.db.transaction() as session:
        rows = list(session.execute(query.order_by(Ticket.number.desc()).limit(limit + 1)).scalars())
        page, more = rows[:limit], len(rows) > limit
        defects = store.defects_of(session, [t.id for t in page])
        items = [store.to_dict(t, defects[t.id]) for t in page]
    return {"items": items, "next_cursor": domain.encode_cursor(page[-1].number) if more else None}


def get_ticket(deps: Intake, principal, ticket_ref: str) -> dict:
    with deps.db.transaction() as session:
        return store.represent(session, store.get_visible(session, ticket_ref, principal))


def list_comments(deps: Intake, principal, ticket_ref: str) -> dict:
    with deps.db.transaction() as session:
        ticket = store.get_visible(session, ticket_ref, principal)
        query = select(Comment).where(Comment.ticket_id == ticket.id).order_by(Comment.position)
        if not principal.is_staff:
            query = query.where(Comment.public.is_(True))
        first_at = ticket.first_response_at
        items = []
        for c in session.execute(query).scalars():
            first = first_at is not None and c.public and c.author_role in domain.STAFF and c.created_at == first_at
            items.append(comment_dict(c, first))
            first_at = None if first else first_at
    return {"items": items}


def history(deps: Intake, principal, ticket_ref: str) -> dict:
    with deps.db.transaction() as session:
        ticket = store.get_visible(session, ticket_ref, principal)
        query = select(History).where(History.ticket_id == ticket.id).order_by(History.id)
        if not principal.is_staff:
            query = query.where(History.public.is_(True))
        items = [{"at": store.iso(h.at), "actor": h.actor, "actor_role": h.actor_role, "action": h.action,
                  "public": h.public, "reason": h.reason, "details": h.details or {}}
                 for h in session.execute(query).scalars()]
    return {"items": items}
