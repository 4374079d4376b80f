"""The conversation around a ticket: comments, escalation requests and the reporter's feedback."""
from __future__ import annotations

import uuid

from sqlalchemy import func, select

from services.intake import domain, store
from services.intake.commands import Intake, actor_of
from services.intake.models import Comment
from shared.http import ApiError


def comment_dict(comment: Comment, first_response: bool = False) -> dict:
    return {"id": comment.id, "ticket_id": comment.ticket_id,
            "author": {"name": comment.author_name, "email": comment.author_email},
            "author_role": comment.author_role, "public": comment.public, "body": comment.body,
            "first_response": first_response, "created_at": store.iso(comment.created_at)}


def add_comment(deps: Intake, principal, ticket_ref: str, data: dict) -> dict:
    """A public reply or an internal note. The first public reply by staff is the first response;
    a reporter's reply to a ticket pending on them puts it back in progress (the SLA resumes)."""
    now = deps.clock.now()
    with deps.db.transaction() as session:
        ticket = store.get_visible(session, ticket_ref, principal, lock=True)
        if ticket.status in ("closed", "cancelled"):
            raise ApiError(409, f"a {ticket.status} ticket takes no more comments", {"status": [ticket.status]})
        public = data["public"]
        if not public and not principal.is_staff:
            raise ApiError(403, "internal notes are for staff only", {"public": ["reporters post public replies"]})
        first = principal.is_staff and public and ticket.first_response_at is None
        position = session.execute(select(func.count()).select_from(Comment)
                                   .where(Comment.ticket_id == ticket.id)).scalar_one() + 1
        comment = Comment(id=str(uuid.uuid4()), ticket_id=ticket.id, position=position, author_name=principal.name,
                          author_email=principal.email, author_role=principal.role, public=public,
                          body=data["body"], created_at=now)
        session.add(comment)
        if first:
            ticket.first_response_at = now
        store.touch(ticket, now)
        store.record(session, ticket, "commented" if public else "internal_note", actor=actor_of(principal),
                     now=now, public=public, comment_id=comment.id, first_response=first)
        store.emit(session, ticket, "ticket.commented", now, comment_id=comment.id, public=public,
                   body=comment.body, author=store.person(principal), author_role=principal.role,
                   first_response=first)
        if principal.role == "reporter" and ticket.status == "pending":
            store.set_status(session, ticket, "in_progress", now, "the reporter replied",
                             actor=actor_of(principal), person=store.person(principal))
        return comment_dict(comment, first)


def request_escalation(deps: Intake, principal, ticket_ref: str, data: dict) -> dict:
    """Intake only asks: escalation decides and answers with escalation.routed."""
    now = deps.clock.now()
    with deps.db.transaction() as session:
        ticket = store.get_visible(session, ticket_ref, principal, lock=True)
        domain.check_escalation(status=ticket.status, current_tier=ticket.tier, current_group=ticket.group,
                                to_tier=data["to_tier"], to_group=data["to_group"], role=principal.role)
        store.record(session, ticket, "escalation_requested", actor=actor_of(principal), now=now, public=False,
                     reason=data["reason"], to_tier=data["to_tier"], to_group=data["to_group"])
        event = store.emit(session, ticket, "ticket.escalation_requested", now, to_tier=data["to_tier"],
                           to_group=data["to_group"], reason=data["reason"],
                           requested_by=store.person(principal), requested_by_role=principal.role)
        return {"status": "requested", "request_id": event.id, "ticket_id": ticket.id, "key": ticket.key,
                "to_tier": data["to_tier"], "to_group": data["to_group"], "reason": data["reason"],
                "requested_at": store.iso(now)}


def give_feedback(deps: Intake, principal, ticket_ref: str, data: dict) -> dict:
    now = deps.clock.now()
    with deps.db.transaction() as session:
        ticket = store.get_visible(session, ticket_ref, principal, lock=True)
        is_reporter = bool(principal.email) and principal.email.lower() == ticket.reporter_email
        domain.check_feedback(status=ticket.status, is_reporter=is_reporter,
                              already_given=ticket.feedback_at is not None)
        ticket.csat, ticket.nps, ticket.feedback_comment = data["csat"], data["nps"], data["comment"]
        ticket.feedback_at = now
        store.touch(ticket, now)
        store.record(session, ticket, "feedback", actor=actor_of(principal), now=now, csat=data["csat"],
                     nps=data["nps"])
        store.emit(session, ticket, "ticket.feedback_received", now, csat=data["csat"], nps=data["nps"],
                   comment=data["comment"])
        return {"csat": ticket.csat, "nps": ticket.nps, "comment": ticket.feedback_comment,
                "at": store.iso(now)}
