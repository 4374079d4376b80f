"""HTTP views of /api/v1/tickets; thin: parse, check the role, call a command or query."""
from __future__ import annotations

import json

from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint

from services.intake import activity, commands, queries
from services.intake.schemas import (CommentCreateSchema, CommentListSchema, CommentSchema, EscalationAcceptedSchema,
                                     EscalationRequestSchema, FeedbackOutSchema, FeedbackSchema, HistorySchema,
                                     StatusSchema, TicketCreateSchema, TicketListQuerySchema, TicketPageSchema,
                                     TicketPatchSchema, TicketSchema)
from shared.auth import ROLES, STAFF, current_principal, roles
from shared.http import ApiError, deps

IDEMPOTENCY_HEADER = {"in": "header", "name": "Idempotency-Key", "required": False, "schema": {"type": "string"},
                      "description": "a retried POST with the same key returns the first answer"}
IF_MATCH_HEADER = {"in": "header", "name": "If-Match", "required": False, "schema": {"type": "string"},
                   "description": "the ticket version last seen; 409 if it has changed since"}
ERRORS = {"responses": {"403": {"description": "role not allowed"},
                        "404": {"description": "no such ticket (or not visible to the caller)"},
                        "409": {"description": "illegal transition or stale update"},
                        "422": {"description": "invalid fields (named in error.fields)"}}}

blp = Blueprint("tickets", __name__, url_prefix="/api/v1/tickets",
                description="Tickets: intake, lifecycle, comments, escalation requests, feedback, history")


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key.strip()) <= 255):
        raise ApiError(422, "Idempotency-Key must be 1-255 characters", {"Idempotency-Key": ["1-255 characters"]})
    return key.strip() if key else None


@blp.route("")
class Tickets(MethodView):
    @roles(*ROLES)
    @blp.arguments(TicketListQuerySchema, location="query")
    @blp.response(200, TicketPageSchema)
    @blp.doc(**ERRORS)
    def get(self, args):
        """List the tickets the caller may see, newest first (cursor pages)."""
        return queries.list_tickets(deps(), current_principal(), args)

    @roles(*ROLES)
    @blp.arguments(TicketCreateSchema)
    @blp.response(201, TicketSchema)
    @blp.alt_response(200, schema=TicketSchema, description="an open ticket with the same dedup_key (occurrence counted)")
    @blp.doc(parameters=[IDEMPOTENCY_HEADER], **ERRORS)
    def post(self, data):
        """Open a ticket (or count an occurrence of an open one with the same dedup_key)."""
        status, body = commands.create_ticket(deps(), current_principal(), data, _idempotency_key())
        # The stored answer is replayed byte for byte, hence a ready Response.
        return Response(json.dumps(body), status=status, mimetype="application/json",
                        headers={"Location": f"/api/v1/tickets/{body['id']}"})


@blp.route("/<ticket_ref>")
class TicketById(MethodView):
    @roles(*ROLES)
    @blp.response(200, TicketSchema)
    @blp.doc(**ERRORS)
    def get(self, ticket_ref):
        """One ticket, by id or key (INC-42). ETag carries its version."""
        body = queries.get_ticket(deps(), current_principal(), ticket_ref)
        return body, 200, {"ETag": f'"{body["version"]}"'}

    @roles(*STAFF)
    @blp.arguments(TicketPatchSchema)
    @blp.response(200, TicketSchema)
    @blp.doc(parameters=[IF_MATCH_HEADER], **ERRORS)
    def patch(self, data, ticket_ref):
        """Change priority, impact/urgency, category, service, assignee or title (staff)."""
        return commands.update_ticket(deps(), current_principal(), ticket_ref, data, request.headers.get("If-Match"))


@blp.route("/<ticket_ref>/status", methods=["POST"])
@roles(*ROLES)
@blp.arguments(StatusSchema)
@blp.response(200, TicketSchema)
@blp.doc(parameters=[IF_MATCH_HEADER], **ERRORS)
def change_status(data, ticket_ref):
    """Move the ticket through its lifecycle; illegal transitions answer 409."""
    return commands.change_status(deps(), current_principal(), ticket_ref, data, request.headers.get("If-Match"))


@blp.route("/<ticket_ref>/comments")
class Comments(MethodView):
    @roles(*ROLES)
    @blp.response(200, CommentListSchema)
    @blp.doc(**ERRORS)
    def get(self, ticket_ref):
        """Comments, oldest first; reporters see public replies only."""
        return queries.list_comments(deps(), current_principal(), ticket_ref)

    @roles(*ROLES)
    @blp.arguments(CommentCreateSchema)
    @blp.response(201, CommentSchema)
    @blp.doc(**ERRORS)
    def post(self, data, ticket_ref):
        """A public reply, or (staff) an internal note."""
        return activity.add_comment(deps(), current_principal(), ticket_ref, data)


@blp.route("/<ticket_ref>/escalations", methods=["POST"])
@roles(*STAFF)
@blp.arguments(EscalationRequestSchema)
@blp.response(202, EscalationAcceptedSchema)
@blp.doc(**ERRORS)
def request_escalation(data, ticket_ref):
    """Ask escalation to move the ticket to another tier (agents: upwards only)."""
    return activity.request_escalation(deps(), current_principal(), ticket_ref, data)


@blp.route("/<ticket_ref>/feedback", methods=["POST"])
@roles(*ROLES)
@blp.arguments(FeedbackSchema)
@blp.response(201, FeedbackOutSchema)
@blp.doc(**ERRORS)
def give_feedback(data, ticket_ref):
    """CSAT 1-5 and/or NPS 0-10 from the reporter, once, after resolution."""
    return activity.give_feedback(deps(), current_principal(), ticket_ref, data)


@blp.route("/<ticket_ref>/history", methods=["GET"])
@roles(*ROLES)
@blp.response(200, HistorySchema)
@blp.doc(**ERRORS)
def history(ticket_ref):
    """The audit trail: who, when, what and why (reporters see the public part)."""
    return queries.history(deps(), current_principal(), ticket_ref)
