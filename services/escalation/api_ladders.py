"""Configuration API: escalation ladders, one per priority. Staff read, admins write."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from services.escalation import registry
from services.escalation.api import PREFIX, now
from services.escalation.models import LadderRow
from services.escalation.schemas import LadderSchema
from shared.auth import STAFF, roles
from shared.http import ApiError, deps

blp = Blueprint("escalation_ladders", __name__, url_prefix=PREFIX, description="Escalation ladders")


def _ladder_dump(row: LadderRow) -> dict:
    return {"name": row.name, "priorities": row.priorities, "ping_pong_limit": row.ping_pong_limit, "steps": row.steps}


def _check_priorities(session, name: str, priorities: list[str]) -> None:
    taken = registry.ladder_overlap(session, name, priorities)
    if taken:
        raise ApiError(409, f"priorities {', '.join(taken)} already have a ladder", {"priorities": taken})


@blp.route("/ladders")
class Ladders(MethodView):
    @roles(*STAFF)
    @blp.response(200, LadderSchema(many=True))
    def get(self):
        """Escalation ladders (one per priority)"""
        with deps().db.transaction() as session:
            return [_ladder_dump(r) for r in session.scalars(select(LadderRow).order_by(LadderRow.name))]

    @roles("admin")
    @blp.arguments(LadderSchema)
    @blp.response(201, LadderSchema)
    def post(self, data):
        """Create a ladder"""
        with deps().db.transaction() as session:
            if session.get(LadderRow, data["name"]) is not None:
                raise ApiError(409, f"ladder {data['name']!r} exists", {"name": ["already taken"]})
            _check_priorities(session, data["name"], data["priorities"])
            row = LadderRow(name=data["name"], priorities=data["priorities"], ping_pong_limit=data["ping_pong_limit"],
                            steps=data["steps"], updated_at=now())
            session.add(row)
            return _ladder_dump(row)


@blp.route("/ladders/<name>")
class LadderByName(MethodView):
    @roles(*STAFF)
    @blp.response(200, LadderSchema)
    def get(self, name):
        """One ladder"""
        with deps().db.transaction() as session:
            return _ladder_dump(_ladder(session, name))

    @roles("admin")
    @blp.arguments(LadderSchema)
    @blp.response(200, LadderSchema)
    def put(self, data, name):
        """Replace a ladder"""
        if data["name"] != name:
            raise ApiError(422, "invalid fields: name", {"name": ["renaming is not supported"]})
        with deps().db.transaction() as session:
            row = _ladder(session, name)
            _check_priorities(session, name, data["priorities"])
            row.priorities, row.ping_pong_limit, row.steps = data["priorities"], data["ping_pong_limit"], data["steps"]
            row.updated_at = now()
            return _ladder_dump(row)

    @roles("admin")
    @blp.response(204)
    def delete(self, name):
        """Delete a ladder (its priorities then escalate only by hand)"""
        with deps().db.transaction() as session:
            session.delete(_ladder(session, name))


def _ladder(session, name: str) -> LadderRow:
    row = session.get(LadderRow, name)
    if row is None:
        raise ApiError(404, f"no ladder named {name!r}")
    return row
