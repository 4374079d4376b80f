"""HTTP API of the sla service under /api/v1/sla: ticket clocks, preview, policies, calendars."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from services.sla import admin, reports, store
from shared.auth import STAFF, current_principal, roles
from shared.http import ApiError, deps
from shared.visibility import can_see
from services.sla.schemas import (CalendarInSchema, CalendarSchema, CalendarUpdateSchema, PolicyInSchema,
                                  PolicySchema, PreviewQuerySchema, PreviewSchema, TicketSlaSchema)

PREFIX = "/api/v1/sla"
blp = Blueprint("sla", __name__, url_prefix=PREFIX, description="SLA clocks of tickets, policies, business calendars")


def _ticket(session, ticket_id: str):
    """The ticket, or 404 when sla does not know it or the caller may not see it (same answer)."""
    ticket = store.find_ticket(session, ticket_id)
    if ticket is None or not can_see(current_principal(), tier=ticket.tier, group=ticket.group_name,
                                     assignee=ticket.assignee, reporter_email=ticket.reporter_email):
        raise ApiError(404, f"sla knows no ticket {ticket_id!r}")
    return ticket


@blp.route("/tickets/<ticket_id>")
class TicketSla(MethodView):
    @roles(*STAFF)
    @blp.response(200, TicketSlaSchema)
    def get(self, ticket_id):
        """A ticket's clocks (state, deadline, elapsed and remaining business seconds) and each
        tier's consumed time. `ticket_id` may also be the key (INC-...)."""
        sla = deps()
        with sla.db.transaction() as session:
            ticket = _ticket(session, ticket_id)
            clocks = store.ticket_clocks(session, ticket.id, lock=False)
            return reports.ticket_view(ticket, clocks, sla.calendars.all(session), sla.clock.now())


@blp.route("/tickets/<ticket_id>/preview")
class TicketPreview(MethodView):
    @roles(*STAFF)
    @blp.arguments(PreviewQuerySchema, location="query")
    @blp.response(200, PreviewSchema)
    def get(self, query, ticket_id):
        """The deadlines the ticket would get under another priority, elapsed time kept."""
        sla = deps()
        with sla.db.transaction() as session:
            ticket = _ticket(session, ticket_id)
            clocks = store.ticket_clocks(session, ticket.id, lock=False)
            return reports.preview(ticket, clocks, store.policies(session), sla.calendars.all(session),
                                   query["priority"], sla.clock.now())


@blp.route("/policies")
class Policies(MethodView):
    @roles(*STAFF)
    @blp.response(200, PolicySchema(many=True))
    def get(self):
        """Policies in match order: the first whose match fits a ticket applies."""
        with deps().db.transaction() as session:
            return [admin.policy_dict(row) for row in store.policy_rows(session)]

    @roles("admin")
    @blp.arguments(PolicyInSchema)
    @blp.response(201, PolicySchema)
    def post(self, data):
        """Add a policy (open tickets it now fits are recounted under it)."""
        sla = deps()
        with sla.db.transaction() as session:
            return admin.policy_dict(admin.save_policy(session, sla.calendars, data, sla.clock.now()))


@blp.route("/policies/<int:policy_id>")
class PolicyItem(MethodView):
    @roles(*STAFF)
    @blp.response(200, PolicySchema)
    def get(self, policy_id):
        with deps().db.transaction() as session:
            return admin.policy_dict(admin.get_policy(session, policy_id))

    @roles("admin")
    @blp.arguments(PolicyInSchema)
    @blp.response(200, PolicySchema)
    def put(self, data, policy_id):
        """Replace a policy; open tickets on it are recounted from their original start."""
        sla = deps()
        with sla.db.transaction() as session:
            row = admin.get_policy(session, policy_id)
            return admin.policy_dict(admin.save_policy(session, sla.calendars, data, sla.clock.now(), row))

    @roles("admin")
    @blp.response(204)
    def delete(self, policy_id):
        """Remove a policy; its open tickets move to the next policy that fits (or keep their targets)."""
        sla = deps()
        with sla.db.transaction() as session:
            admin.delete_policy(session, sla.calendars, admin.get_policy(session, policy_id), sla.clock.now())


@blp.route("/calendars")
class Calendars(MethodView):
    @roles(*STAFF)
    @blp.response(200, CalendarSchema(many=True))
    def get(self):
        with deps().db.transaction() as session:
            return [admin.calendar_dict(row) for row in store.calendar_rows(session)]

    @roles("admin")
    @blp.arguments(CalendarInSchema)
    @blp.response(201, CalendarSchema)
    def post(self, data):
        sla = deps()
        with sla.db.transaction() as session:
            return admin.calendar_dict(admin.create_calendar(session, data, sla.clock.now()))


@blp.route("/calendars/<name>")
class CalendarItem(MethodView):
    @roles(*STAFF)
    @blp.response(200, CalendarSchema)
    def get(self, name):
        with deps().db.transaction() as session:
            return admin.calendar_dict(admin.get_calendar(session, name))

    @roles("admin")
    @blp.arguments(CalendarUpdateSchema)
    @blp.response(200, CalendarSchema)
    def put(self, data, name):
        """Replace a calendar; running clocks that count in it get new deadlines at once."""
        sla = deps()
        with sla.db.transaction() as session:
            row = admin.get_calendar(session, name)
            return admin.calendar_dict(admin.update_calendar(session, sla.calendars, row, data, sla.clock.now()))

    @roles("admin")
    @blp.response(204)
    def delete(self, name):
        """Remove a calendar no policy and no open clock uses (409 otherwise)."""
        with deps().db.transaction() as session:
            admin.delete_calendar(session, admin.get_calendar(session, name))
