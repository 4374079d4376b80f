"""Escalation rules as pure functions: routing, the ladder, the ping-pong guard, manual requests.

No I/O here: callers load groups, rules and ladders into these small value objects, ask for a
decision, and then write it (records, events, defect jobs) themselves.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

TIERS = ("L1", "L2", "L3", "DEV")
PRIVILEGED_ROLES = ("lead", "admin")  # may move a ticket down and past the ping-pong guard
MATCH_KEYS = ("category", "service", "priority", "channel")
# Tracker statuses that end the developers' part, and the resolution they stand for.
RESOLUTIONS = {"fixed": "fixed", "resolved": "fixed", "closed": "fixed", "done": "fixed",
               "wontfix": "wontfix", "won't fix": "wontfix", "rejected": "wontfix",
               "invalid": "wontfix", "duplicate": "duplicate"}


@dataclass(frozen=True)
class Group:
    name: str
    tier: str
    categories: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    members: tuple[dict, ...] = ()
    manager: dict | None = None
    on_call: str | None = None
    tracker: str | None = None


@dataclass(frozen=True)
class Rule:
    position: int
    match: dict
    group: str


@dataclass(frozen=True)
class Step:
    on: str                 # sla.warning | sla.breached
    clock: str              # first_response | resolution | ola | ola:<tier>
    action: str             # notify_manager | next_tier
    min_percent: int = 0

    @property
    def key(self) -> str:
        """Identity of a step for "fires once": its content, so reordering a ladder keeps it."""
        return f"{self.on}|{self.clock}|{self.min_percent}|{self.action}"


@dataclass(frozen=True)
class Ladder:
    name: str
    priorities: tuple[str, ...]
    ping_pong_limit: int
    steps: tuple[Step, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class TicketFacts:
    """What routing looks at."""
    priority: str | None = None
    category: str | None = None
    service: str | None = None
    channel: str | None = None


def tier_rank(tier: str | None) -> int:
    """-1 for an unplaced ticket, so any placement is "upward" from nowhere."""
    return TIERS.index(tier) if tier in TIERS else -1


# --- routing --------------------------------------------------------------------------------
def rule_matches(match: dict, ticket: TicketFacts) -> bool:
    """Every criterion given must hold; a criterion is one value or a list of values."""
    for key in MATCH_KEYS:
        wanted = match.get(key)
        if wanted in (None, "", []):
            continue
        allowed = wanted if isinstance(wanted, (list, tuple)) else [wanted]
        if getattr(ticket, key) not in allowed:
            return False
    return True


def initial_group(rules: Iterable[Rule], default_group: str | None, groups: Iterable[Group],
                  ticket: TicketFacts) -> tuple[Group, str] | None:
    """The first matching rule's group, else the default group, else any L1 group."""
    by_name = {g.name: g for g in groups}
    for rule in sorted(rules, key=lambda r: r.position):
        if rule.group in by_name and rule_matches(rule.match, ticket):
            criteria = ", ".join(f"{k}={rule.match[k]}" for k in MATCH_KEYS if rule.match.get(k) not in (None, "", []))
            return by_name[rule.group], f"routing rule {rule.position} ({criteria or 'any ticket'})"
    if default_group in by_name:
        return by_name[default_group], "default group"
    l1 = sorted((g for g in by_name.values() if g.tier == "L1"), key=lambda g: g.name)
    if l1:
        return l1[0], "default group missing: first L1 group"
    return None


def handles_score(group: Group, category: str | None, service: str | None) -> int | None:
    """How specifically a group handles a ticket: None = not at all, 0 = catch-all, higher = closer."""
    score = 0
    for listed, value in ((group.categories, category), (group.services, service)):
        if listed and value in listed:
            score += 2
    if score == 0 and (group.categories or group.services):
        return None
    return score


def group_for_tier(groups: Iterable[Group], tier: str, category: str | None, service: str | None) -> Group | None:
    """The group of `tier` that handles the ticket best; else any group of that tier (by name)."""
    candidates = sorted((g for g in groups if g.tier == tier), key=lambda g: g.name)
    if not candidates:
        return None
    scored = [(handles_score(g, category, service), g) for g in candidates]
    handling = [(s, g) for s, g in scored if s is not None]
    if handling:
        best = max(s for s, _ in handling)
        return next(g for s, g in handling if s == best)
    return candidates[0]


def next_tier_group(groups: Iterable[Group], current_tier: str | None, category: str | None,
                    service: str | None) -> Group | None:
    """Functional escalation: the nearest higher tier that has a group (a missing tier is skipped)."""
    groups = list(groups)
    for tier in TIERS[tier_rank(current_tier) + 1:]:
        group = group_for_tier(groups, tier, category, service)
        if group is not None:
            return group
    return None


def contacts(group: Group) -> dict:
    """The group's people as the catalogue's Contacts: members, manager, on-call member."""
    on_call = next((m for m in group.members if m.get("name") == group.on_call), None)
    return {"members": [_contact(m) for m in group.members],
            "manager": _contact(group.manager) if group.manager else None,
            "on_call": _contact(on_call) if on_call else None}


def _contact(person: dict) -> dict:
    return {"name": person["name"], "email": person.get("email"), "chat": person.get("chat"),
            "timezone": person.get("timezone"), "language": person.get("language") or "en"}


# --- the ladder -----------------------------------------------------------------------------
def ladder_for(ladders: Iterable[Ladder], priority: str | None) -> Ladder | None:
    return next((ladder for ladder in sorted(ladders, key=lambda x: x.name) if priority in ladder.priorities), None)


def clock_matches(step_clock: str, event_clock: str, current_tier: str | None) -> bool:
    """"ola" means the current tier's OLA clock; a late OLA event of a tier left behind is ignored."""
    if step_clock == "ola":
        return event_clock == f"ola:{current_tier}"
    if step_clock.startswith("ola:"):
        return event_clock == step_clock and step_clock == f"ola:{current_tier}"
    return step_clock == event_clock


def due_steps(ladder: Ladder, event_type: str, clock: str, percent: int | None,
              current_tier: str | None) -> list[Step]:
    """The steps an SLA event triggers, in ladder order (firing once is the caller's record)."""
    due = []
    for step in ladder.steps:
        if step.on != event_type or not clock_matches(step.clock, clock, current_tier):
            continue
        if event_type == "sla.warning" and (percent or 0) < step.min_percent:
            continue
        due.append(step)
    return due


def ping_pong_blocked(moves: int, limit: int | None) -> bool:
    """True when one more move would exceed the limit: at most `limit` moves after routing."""
    return limit is not None and moves >= limit


# --- manual requests ------------------------------------------------------------------------
@dataclass(frozen=True)
class ManualDecision:
    allowed: bool
    why: str


def manual_decision(current_tier: str | None, current_group: str | None, target: Group | None,
                    requested_tier: str, role: str) -> ManualDecision:
    """Upward always; sideways (same tier, another named group) as a transfer; down only for leads."""
    if target is None:
        return ManualDecision(False, f"no support group at tier {requested_tier}")
    if target.tier != requested_tier:
        return ManualDecision(False, f"group {target.name} is tier {target.tier}, not {requested_tier}")
    if target.name == current_group:
        return ManualDecision(False, f"already in {target.name}")
    rank, current = tier_rank(target.tier), tier_rank(current_tier)
    if rank > current:
        return ManualDecision(True, "upward")
    if rank == current:
        return ManualDecision(True, "transfer within the tier")
    if role in PRIVILEGED_ROLES:
        return ManualDecision(True, f"de-escalation by a {role}")
    return ManualDecision(False, f"moving down from {current_tier} to {target.tier} needs a lead")


def defect_resolution(status: str) -> str | None:
    """The resolution a tracker status stands for, or None while the defect is still open."""
    return RESOLUTIONS.get((status or "").strip().lower())
