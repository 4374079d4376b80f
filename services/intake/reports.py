"""GET /api/v1/reports/kpi: loads the facts of the relevant tickets and hands them to kpi.compute."""
from __future__ import annotations

import datetime as dt

from flask_smorest import Blueprint
from sqlalchemy import or_, select

from services.intake import kpi
from services.intake.domain import OPEN_STATUSES
from services.intake.models import Ticket
from services.intake.schemas import KpiQuerySchema, KpiSchema
from shared.auth import roles
from shared.clock import as_utc
from shared.http import ApiError, deps

DEFAULT_DAYS = 30

blp = Blueprint("reports", __name__, url_prefix="/api/v1/reports", description="Service desk KPIs")


def _at(value):
    return as_utc(value) if value is not None else None


def load_facts(db, window: kpi.Window, *, group: str | None, priority: str | None) -> list[kpi.Facts]:
    query = select(Ticket).where(or_(
        Ticket.created_at.between(window.start, window.end), Ticket.resolved_at.between(window.start, window.end),
        Ticket.feedback_at.between(window.start, window.end), Ticket.status.in_(OPEN_STATUSES)))
    if group:
        query = query.where(Ticket.group == group)
    if priority:
        query = query.where(Ticket.priority == priority)
    with db.transaction() as session:
        return [kpi.Facts(created_at=_at(t.created_at), status=t.status, first_response_at=_at(t.first_response_at),
                          resolved_at=_at(t.resolved_at), breached=bool(t.breached),
                          breached_clocks=tuple(t.breached_clocks or ()), tiers_reached=tuple(t.tiers_reached or ()),
                          reassignments=t.reassignments, csat=t.csat, nps=t.nps, feedback_at=_at(t.feedback_at))
                for t in session.execute(query).scalars()]


@blp.route("/kpi", methods=["GET"])
@roles("lead", "admin")
@blp.arguments(KpiQuerySchema, location="query")
@blp.response(200, KpiSchema)
@blp.doc(responses={"403": {"description": "leads and admins only"}, "422": {"description": "invalid window"}})
def kpi_report(args):
    """Ticket count, backlog, overdue, first response and resolution times, SLA compliance,
    first-contact resolution, escalation rate by tier, reassignments, CSAT and NPS."""
    now = deps().clock.now()
    try:  # an instant at the edge of the calendar (0001-01-01T00:00+14:00) cannot be moved to UTC
        end = as_utc(args["end"]) if args["end"] else now
        start = as_utc(args["start"]) if args["start"] else end - dt.timedelta(days=DEFAULT_DAYS)
    except OverflowError:
        raise ApiError(422, "from/to out of range", {"from": ["out of range"], "to": ["out of range"]}) from None
    if start >= end:
        raise ApiError(422, "from must be before to", {"from": ["must be before to"]})
    window = kpi.Window(start, end)
    report = kpi.compute(load_facts(deps().db, window, group=args.get("group"), priority=args.get("priority")),
                         window)
    return {"window": {"from": start.isoformat(), "to": end.isoformat()},
            "filters": {"group": args.get("group"), "priority": args.get("priority")}, **report}
