"""Groups, routing rules and ladders: rows <-> domain objects, and seeding the shipped defaults."""
from __future__ import annotations

import logging
import uuid

from marshmallow import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.escalation import domain
from services.escalation.models import LadderRow, Option, RoutingRule, SupportGroup
from services.escalation.schemas import GroupSchema, LadderSchema, RuleSchema
from shared.config import ConfigError
from shared.db import Database

log = logging.getLogger(__name__)
DEFAULT_GROUP = "default_group"
SEEDED = "seeded"


# --- rows -> domain -------------------------------------------------------------------------
def as_group(row: SupportGroup) -> domain.Group:
    handles = row.handles or {}
    return domain.Group(name=row.name, tier=row.tier, categories=tuple(handles.get("categories") or ()),
                        services=tuple(handles.get("services") or ()), members=tuple(row.members or ()),
                        manager=row.manager, on_call=row.on_call, tracker=row.tracker)


def groups(session: Session) -> dict[str, domain.Group]:
    return {row.name: as_group(row) for row in session.scalars(select(SupportGroup))}


def rules(session: Session) -> list[domain.Rule]:
    rows = session.scalars(select(RoutingRule).order_by(RoutingRule.position, RoutingRule.id))
    return [domain.Rule(position=r.position, match=r.match or {}, group=r.group) for r in rows]


def default_group(session: Session) -> str | None:
    option = session.get(Option, DEFAULT_GROUP)
    return option.value if option else None


def ladders(session: Session) -> list[domain.Ladder]:
    return [domain.Ladder(name=row.name, priorities=tuple(row.priorities), ping_pong_limit=row.ping_pong_limit,
                          steps=tuple(domain.Step(on=s["on"], clock=s["clock"], action=s["action"],
                                                  min_percent=s.get("min_percent") or 0) for s in row.steps))
            for row in session.scalars(select(LadderRow))]


# --- writing --------------------------------------------------------------------------------
def group_dump(row: SupportGroup) -> dict:
    return {"name": row.name, "tier": row.tier, "members": row.members, "manager": row.manager,
            "on_call": row.on_call, "handles": row.handles, "tracker": row.tracker}


def fill_group(row: SupportGroup, data: dict, now) -> SupportGroup:
    row.tier, row.members, row.manager = data["tier"], data["members"], data["manager"]
    row.on_call, row.tracker, row.updated_at = data["on_call"], data["tracker"], now
    row.handles = {"categories": data["handles"].get("categories", []),
                   "services": data["handles"].get("services", [])}
    return row


def next_position(session: Session) -> int:
    return (session.scalar(select(func.max(RoutingRule.position))) or 0) + 10


def new_rule(session: Session, data: dict, now) -> RoutingRule:
    position = data.get("position")
    return RoutingRule(id=str(uuid.uuid4()), position=next_position(session) if position is None else position,
                       match=_compact(data.get("match") or {}), group=data["group"], updated_at=now)


def _compact(match: dict) -> dict:
    return {k: v for k, v in match.items() if v not in (None, "", [])}


def ladder_overlap(session: Session, name: str, priorities: list[str]) -> list[str]:
    """Priorities another ladder already covers (a priority has one ladder)."""
    taken = set()
    for row in session.scalars(select(LadderRow).where(LadderRow.name != name)):
        taken |= set(row.priorities) & set(priorities)
    return sorted(taken)


# --- seeding --------------------------------------------------------------------------------
def seed(db: Database, domain_config: dict, now) -> bool:
    """Write the shipped groups, rules and ladders once, into an empty database.

    The marker row makes it once: deleting every rule through the API must not bring the
    defaults back at the next start, and two replicas starting together seed once.
    """
    groups_in = _load_all(GroupSchema(), domain_config.get("groups") or [], "groups")
    routing = domain_config.get("routing") or {}
    rules_in = _load_all(RuleSchema(), routing.get("rules") or [], "routing.rules")
    ladders_in = _load_all(LadderSchema(), [_yaml_on(ladder) for ladder in domain_config.get("ladders") or []],
                           "ladders")
    names = {g["name"] for g in groups_in}
    for index, rule in enumerate(rules_in):
        if rule["group"] not in names:
            raise ConfigError(f"routing.rules[{index}].group: no group named {rule['group']!r}")
    default = routing.get("default_group")
    if default is not None and default not in names:
        raise ConfigError(f"routing.default_group: no group named {default!r}")
    try:
        with db.transaction() as session:
            if session.get(Option, SEEDED) is not None:
                return False
            session.add(Option(key=SEEDED, value=True))
            session.flush()
            for data in groups_in:
                session.add(fill_group(SupportGroup(name=data["name"]), data, now))
            for position, data in enumerate(rules_in, start=1):
                session.add(new_rule(session, {**data, "position": data.get("position") or position * 10}, now))
            if default is not None:
                session.add(Option(key=DEFAULT_GROUP, value=default))
            for data in ladders_in:
                session.add(LadderRow(name=data["name"], priorities=data["priorities"],
                                      ping_pong_limit=data["ping_pong_limit"], steps=data["steps"], updated_at=now))
    except IntegrityError:  # another replica seeded first
        return False
    log.info("seeded %d groups, %d routing rules, %d ladders", len(groups_in), len(rules_in), len(ladders_in))
    return True


def _yaml_on(ladder):
    """YAML 1.1 reads an unquoted `on:` key as the boolean True; the shipped file says `on:`."""
    if not isinstance(ladder, dict) or not isinstance(ladder.get("steps"), list):
        return ladder
    steps = [{("on" if key is True else key): value for key, value in step.items()} if isinstance(step, dict) else step
             for step in ladder["steps"]]
    return {**ladder, "steps": steps}


def _load_all(schema, items: list, where: str) -> list[dict]:
    out = []
    for index, item in enumerate(items):
        try:
            out.append(schema.load(item))
        except ValidationError as exc:
            raise ConfigError(f"{where}[{index}]: {exc.messages}") from None
    return out
