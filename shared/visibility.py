"""Who may see a ticket: the one rule of every ticket-scoped read, in every service.

Intake owns tickets; sla, escalation and notify keep each ticket's placement (tier, group,
assignee) and reporter in their own read models and apply this same rule, so a ticket that an
agent cannot open in intake answers 404 in the other services too.

- leads and admins: every ticket;
- a reporter: the tickets they reported;
- an agent: tickets at their tier, in one of their groups, assigned to them or reported by them;
  L1 agents also see tickets not routed yet.

`principal` is anything with role, name, email, tier and groups (shared.auth.Principal). Stored
reporter emails are lower-case (intake lowers them when a ticket is created).
"""
from __future__ import annotations

from sqlalchemy import false, or_

MANAGERS = ("lead", "admin")


def can_see(principal, *, tier: str | None, group: str | None, assignee: str | None,
            reporter_email: str | None) -> bool:
    if principal.role in MANAGERS:
        return True
    own = principal.email is not None and reporter_email == principal.email.lower()
    if principal.role == "reporter":
        return own
    return (own or (tier is not None and tier == principal.tier)
            or (group is not None and group in principal.groups)
            or (assignee is not None and assignee in (principal.name, principal.email))
            or (tier is None and principal.tier == "L1"))


def visible_where(principal, *, tier, group, assignee, reporter_email):
    """`can_see` as a SQL condition over those columns; None when every ticket is visible."""
    if principal.role in MANAGERS:
        return None
    own = reporter_email == principal.email.lower() if principal.email else false()
    if principal.role == "reporter":
        return own
    conditions = [own, assignee.in_([v for v in (principal.name, principal.email) if v])]
    if principal.tier:
        conditions.append(tier == principal.tier)
    if principal.tier == "L1":
        conditions.append(tier.is_(None))
    if principal.groups:
        conditions.append(group.in_(list(principal.groups)))
    return or_(*conditions)
