"""Configuration API: support groups and routing rules (and the default group).

Staff read, admins write. Views are thin: schemas validate, registry converts.
"""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from services.escalation import registry
from services.escalation.models import Option, RoutingRule, SupportGroup
from services.escalation.schemas import GroupSchema, RoutingSchema, RuleSchema
from shared.auth import STAFF, roles
from shared.http import ApiError, deps

PREFIX = "/api/v1/escalation"
blp = Blueprint("escalation_config", __name__, url_prefix=PREFIX,
                description="Support groups and routing rules")


def now():
    return deps().clock.now()


# --- groups ---------------------------------------------------------------------------------
def _check_tracker(data: dict) -> None:
    if data.get("tracker") and data["tracker"] not in deps().trackers:
        raise ApiError(422, "invalid fields: tracker", {"tracker": [f"no tracker named {data['tracker']!r} is configured"]})


@blp.route("/groups")
class Groups(MethodView):
    @roles(*STAFF)
    @blp.response(200, GroupSchema(many=True))
    def get(self):
        """Support groups"""
        with deps().db.transaction() as session:
            return [registry.group_dump(g) for g in session.scalars(select(SupportGroup).order_by(SupportGroup.name))]

    @roles("admin")
    @blp.arguments(GroupSchema)
    @blp.response(201, GroupSchema)
    def post(self, data):
        """Create a support group"""
        _check_tracker(data)
        with deps().db.transaction() as session:
            if session.get(SupportGroup, data["name"]) is not None:
                raise ApiError(409, f"group {data['name']!r} exists", {"name": ["already taken"]})
            row = registry.fill_group(SupportGroup(name=data["name"]), data, now())
            session.add(row)
            return registry.group_dump(row)


@blp.route("/groups/<name>")
class GroupByName(MethodView):
    @roles(*STAFF)
    @blp.response(200, GroupSchema)
    def get(self, name):
        """One support group"""
        with deps().db.transaction() as session:
            return registry.group_dump(_group(session, name))

    @roles("admin")
    @blp.arguments(GroupSchema)
    @blp.response(200, GroupSchema)
    def put(self, data, name):
        """Replace a support group (its name stays: tickets and rules refer to it)"""
        if data["name"] != name:
            raise ApiError(422, "invalid fields: name", {"name": ["renaming is not supported; create a new group"]})
        _check_tracker(data)
        with deps().db.transaction() as session:
            row = registry.fill_group(_group(session, name), data, now())
            return registry.group_dump(row)

    @roles("admin")
    @blp.response(204)
    def delete(self, name):
        """Delete a support group no routing rule or default refers to"""
        with deps().db.transaction() as session:
            row = _group(session, name)
            used = session.scalars(select(RoutingRule.id).where(RoutingRule.group == name)).all()
            if used:
                raise ApiError(409, f"routing rules {', '.join(used)} send tickets to {name!r}")
            if registry.default_group(session) == name:
                raise ApiError(409, f"{name!r} is the default group; choose another first")
            session.delete(row)


def _group(session, name: str) -> SupportGroup:
    row = session.get(SupportGroup, name)
    if row is None:
        raise ApiError(404, f"no group named {name!r}")
    return row


# --- routing rules --------------------------------------------------------------------------
def _rule_dump(row: RoutingRule) -> dict:
    return {"id": row.id, "position": row.position, "match": row.match, "group": row.group}


def _check_group(session, name: str, field: str = "group") -> None:
    if session.get(SupportGroup, name) is None:
        raise ApiError(422, f"invalid fields: {field}", {field: [f"no group named {name!r}"]})


@blp.route("/rules")
class Rules(MethodView):
    @roles(*STAFF)
    @blp.response(200, RuleSchema(many=True))
    def get(self):
        """Routing rules, in the order they are tried (first match wins)"""
        with deps().db.transaction() as session:
            return [_rule_dump(r) for r in session.scalars(select(RoutingRule).order_by(RoutingRule.position, RoutingRule.id))]

    @roles("admin")
    @blp.arguments(RuleSchema)
    @blp.response(201, RuleSchema)
    def post(self, data):
        """Add a routing rule"""
        with deps().db.transaction() as session:
            _check_group(session, data["group"])
            row = registry.new_rule(session, data, now())
            session.add(row)
            return _rule_dump(row)


@blp.route("/rules/<rule_id>")
class RuleById(MethodView):
    @roles(*STAFF)
    @blp.response(200, RuleSchema)
    def get(self, rule_id):
        """One routing rule"""
        with deps().db.transaction() as session:
            return _rule_dump(_rule(session, rule_id))

    @roles("admin")
    @blp.arguments(RuleSchema)
    @blp.response(200, RuleSchema)
    def put(self, data, rule_id):
        """Replace a routing rule"""
        with deps().db.transaction() as session:
            row = _rule(session, rule_id)
            _check_group(session, data["group"])
            fresh = registry.new_rule(session, {**data, "position": row.position if data.get("position") is None
                                                else data["position"]}, now())
            row.position, row.match, row.group, row.updated_at = fresh.position, fresh.match, fresh.group, fresh.updated_at
            return _rule_dump(row)

    @roles("admin")
    @blp.response(204)
    def delete(self, rule_id):
        """Delete a routing rule"""
        with deps().db.transaction() as session:
            session.delete(_rule(session, rule_id))


def _rule(session, rule_id: str) -> RoutingRule:
    row = session.get(RoutingRule, rule_id)
    if row is None:
        raise ApiError(404, f"no routing rule {rule_id!r}")
    return row


@blp.route("/routing")
class Routing(MethodView):
    @roles(*STAFF)
    @blp.response(200, RoutingSchema)
    def get(self):
        """The default group: where a ticket no rule matches goes"""
        with deps().db.transaction() as session:
            return {"default_group": registry.default_group(session)}

    @roles("admin")
    @blp.arguments(RoutingSchema)
    @blp.response(200, RoutingSchema)
    def put(self, data):
        """Set the default group"""
        with deps().db.transaction() as session:
            _check_group(session, data["default_group"], "default_group")
            option = session.get(Option, registry.DEFAULT_GROUP) or Option(key=registry.DEFAULT_GROUP)
            option.value = data["default_group"]
            session.add(option)
            return data
