"""Escalation history of a ticket, defect jobs, trackers, and the trackers' signed webhook."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from services.escalation import domain
from services.escalation.api import PREFIX
from services.escalation.models import Defect, EscalationRecord, Ticket, WebhookDelivery
from services.escalation.moves import Moves
from services.escalation.schemas import (DefectQuerySchema, DefectSchema, TicketHistorySchema, TrackerSchema,
                                         WebhookResultSchema, WebhookSchema)
from services.escalation.trackers import (SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, Tracker,
                                          verify_delivery, verify_gitlab_token)
from shared.auth import STAFF, current_principal, roles
from shared.clock import as_utc
from shared.http import ApiError, deps
from shared.visibility import can_see, visible_where

blp = Blueprint("escalation_tickets", __name__, url_prefix=PREFIX,
                description="Escalation history, developer defects and tracker webhooks")
WEBHOOK_ENDPOINT = "escalation_tickets.tracker_webhook"  # authenticated by signature, not token


def record_dump(r: EscalationRecord) -> dict:
    return {"id": r.id, "at": as_utc(r.at), "trigger": r.trigger, "from_": {"tier": r.from_tier, "group": r.from_group},
            "to": {"tier": r.to_tier, "group": r.to_group}, "who": r.who, "why": r.why, "clock": r.clock,
            "percent": r.percent, "outcome": r.outcome}


def defect_dump(d: Defect) -> dict:
    out = {name: getattr(d, name) for name in DefectSchema().fields}
    return {k: as_utc(v) if isinstance(v, dt.datetime) else v for k, v in out.items()}  # SQLite: naive


@blp.route("/tickets/<ticket_id>")
@roles(*STAFF)
@blp.response(200, TicketHistorySchema)
def ticket_history(ticket_id):
    """Escalation history of a ticket: every decision, who took it and why"""
    with deps().db.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        if ticket is None or not can_see(current_principal(), tier=ticket.tier, group=ticket.group,
                                         assignee=ticket.assignee, reporter_email=(ticket.reporter or {}).get("email")):
            raise ApiError(404, f"escalation has not seen ticket {ticket_id!r}")
        records = session.scalars(select(EscalationRecord).where(EscalationRecord.ticket_id == ticket_id)
                                  .order_by(EscalationRecord.seq)).all()
        defects = session.scalars(select(Defect).where(Defect.ticket_id == ticket_id).order_by(Defect.created_at)).all()
        return {"ticket": {"id": ticket.id, "key": ticket.key, "title": ticket.title, "priority": ticket.priority,
                           "status": ticket.status, "tier": ticket.tier, "group": ticket.group,
                           "assignee": ticket.assignee, "moves": ticket.moves,
                           "l1_owner": {"group": ticket.l1_group, "assignee": ticket.l1_assignee}},
                "records": [record_dump(r) for r in records], "defects": [defect_dump(d) for d in defects]}


@blp.route("/defects")
@roles(*STAFF)
@blp.arguments(DefectQuerySchema, location="query")
@blp.response(200, DefectSchema(many=True))
def list_defects(query):
    """Defects and defect jobs (pending = not yet accepted by the tracker; see last_error) of the
    tickets the caller may see"""
    with deps().db.transaction() as session:
        stmt = select(Defect).order_by(Defect.created_at.desc()).limit(500)
        visible = visible_where(current_principal(), tier=Ticket.tier, group=Ticket.group, assignee=Ticket.assignee,
                                reporter_email=Ticket.reporter["email"].as_string())
        if visible is not None:
            stmt = stmt.join(Ticket, Ticket.id == Defect.ticket_id).where(visible)
        for name in ("status", "ticket_id", "tracker"):
            if query.get(name):
                stmt = stmt.where(getattr(Defect, name) == query[name])
        return [defect_dump(d) for d in session.scalars(stmt)]


@blp.route("/defects/<job_id>/retry", methods=["POST"])
@roles("lead", "admin")
@blp.response(202, DefectSchema)
def retry_defect(job_id):
    """Send a pending defect job now instead of waiting out its backoff"""
    d = deps()
    with d.db.transaction() as session:
        defect = session.get(Defect, job_id, with_for_update=True)
        if defect is None:
            raise ApiError(404, f"no defect job {job_id!r}")
        if defect.status != "pending":
            raise ApiError(409, f"defect job {job_id} is {defect.status}, not pending")
        defect.next_attempt_at = d.clock.now()
        out = defect_dump(defect)
    d.wake_worker()
    return out


@blp.route("/trackers")
class Trackers(MethodView):
    @roles(*STAFF)
    @blp.response(200, TrackerSchema(many=True))
    def get(self):
        """Configured developers' trackers (never their secrets)"""
        d = deps()
        with d.db.transaction() as session:
            pending = dict(session.execute(select(Defect.tracker, func.count()).where(Defect.status == "pending")
                                           .group_by(Defect.tracker)).all())
        return [{"name": t.name, "kind": t.kind, "url": t.public_url, "project": t.project, "configured": t.configured,
                 "pending_defects": pending.get(t.name, 0)} for t in sorted(d.trackers.values(), key=lambda t: t.name)]


# --- the webhook ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Notice:
    delivery_id: str
    defect_id: str
    status: str
    comment: str
    strict: bool  # our own format: an unknown defect is a 404; GitLab sends every issue: ignored


@blp.route("/trackers/<name>/webhook", methods=["POST"])
@blp.doc(security=[], description=(
    f"Signed with the tracker's secret: `{SIGNATURE_HEADER}: sha256=<hex HMAC-SHA256 of "
    f"'<timestamp>.<raw body>'>` and `{TIMESTAMP_HEADER}: <Unix seconds>` (at most 5 minutes old). "
    "A replayed delivery (same delivery_id, or same signature) answers 200 with status duplicate. "
    "GitLab trackers may instead send GitLab's own issue webhook with X-Gitlab-Token."),
    requestBody={"content": {"application/json": {"schema": WebhookSchema}}})
@blp.response(200, WebhookResultSchema)
def tracker_webhook(name):
    """A defect's status from the developers' tracker (fixed/closed sends the ticket back to L1)"""
    d = deps()
    tracker = d.trackers.get(name)
    if tracker is None:
        raise ApiError(404, f"no tracker named {name!r}")
    raw = request.get_data(cache=True)
    try:
        if tracker.kind == "gitlab" and "X-Gitlab-Token" in request.headers:
            notice = _gitlab_notice(tracker, raw)
        else:
            notice = _signed_notice(tracker, raw, d.clock.now().timestamp())
    except SignatureError as exc:
        raise ApiError(401, f"webhook not accepted: {exc}") from None
    if notice is None:
        return {"status": "ignored", "defect_id": None}
    try:
        return _apply(d, tracker, notice)
    except IntegrityError:  # the same delivery raced in twice; the other one took effect
        return {"status": "duplicate", "defect_id": notice.defect_id}


def _body(raw: bytes):
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "request body is not valid JSON") from None


def _signed_notice(tracker: Tracker, raw: bytes, now: float) -> Notice:
    signature = request.headers.get(SIGNATURE_HEADER)
    verify_delivery(tracker.secret, signature, request.headers.get(TIMESTAMP_HEADER), raw, now)
    body = _body(raw)
    if not isinstance(body, dict):
        raise ApiError(422, "invalid fields: _schema", {"_schema": ["expected a JSON object"]})
    try:
        data = WebhookSchema().load(body)
    except ValidationError as exc:
        raise ApiError(422, "invalid fields: " + ", ".join(sorted(exc.messages)), exc.messages) from None
    return Notice(delivery_id=data["delivery_id"] or signature.strip()[:128], defect_id=data["defect_id"],
                  status=data["status"], comment=data["comment"], strict=True)


def _gitlab_notice(tracker: Tracker, raw: bytes) -> Notice | None:
    """GitLab's issue hook: object_attributes.state closed = fixed; anything else is ignored."""
    verify_gitlab_token(tracker.secret, request.headers.get("X-Gitlab-Token"))
    body = _body(raw)
    if not isinstance(body, dict) or body.get("object_kind") != "issue":
        return None
    attrs = body.get("object_attributes") or {}
    if attrs.get("iid") is None:
        return None
    state = str(attrs.get("state") or "")
    delivery = request.headers.get("X-Gitlab-Event-UUID") or f"{attrs.get('iid')}:{attrs.get('updated_at')}:{state}"
    return Notice(delivery_id=delivery[:128], defect_id=str(attrs["iid"]),
                  status="closed" if state == "closed" else "in_progress", comment="", strict=False)


def _apply(d, tracker: Tracker, notice: Notice) -> dict:
    with d.db.transaction() as session:
        if session.get(WebhookDelivery, (tracker.name, notice.delivery_id)) is not None:
            return {"status": "duplicate", "defect_id": notice.defect_id}
        defect = session.scalar(select(Defect).where(Defect.tracker == tracker.name,
                                                     Defect.defect_id == notice.defect_id).with_for_update())
        if defect is None:
            if notice.strict:
                raise ApiError(404, f"no defect {notice.defect_id!r} of tracker {tracker.name!r} is linked to a ticket")
            return {"status": "ignored", "defect_id": notice.defect_id}
        session.add(WebhookDelivery(tracker=tracker.name, delivery_id=notice.delivery_id, received_at=d.clock.now()))
        defect.tracker_status = notice.status[:40]
        resolution = domain.defect_resolution(notice.status)
        if resolution is None or defect.status == "resolved":
            return {"status": "updated", "defect_id": notice.defect_id}
        ticket = session.get(Ticket, defect.ticket_id, with_for_update=True)
        moves = Moves(d, session)
        moves.return_from_defect(ticket, defect, status=notice.status, resolution=resolution,
                                 comment=notice.comment, who=f"tracker:{tracker.name}")
        defect.status, defect.resolution, defect.resolved_at = "resolved", resolution, moves.now
        return {"status": "resolved", "defect_id": notice.defect_id}
