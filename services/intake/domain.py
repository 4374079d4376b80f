"""Intake's rules, free of I/O: the status machine, priority, who may do what, cursors.

Rule violations are raised as shared.http.ApiError (status, message, fields) so the API can
answer them as they are; nothing here touches the database or the bus.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt

from shared.http import ApiError
from shared.visibility import MANAGERS

OPEN_STATUSES = ("new", "assigned", "in_progress", "pending", "reopened")
DONE_STATUSES = ("resolved", "closed", "cancelled")
TIER_RANK = {"L1": 1, "L2": 2, "L3": 3, "DEV": 4}
STAFF = ("agent", "lead", "admin")

# Target statuses reachable by hand (POST /{id}/status). "assigned" is reached only by
# placement (routing, or PATCH assignee on a new ticket), never typed in.
TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"in_progress", "pending", "resolved", "cancelled"}),
    "assigned": frozenset({"in_progress", "pending", "resolved", "cancelled"}),
    "in_progress": frozenset({"pending", "resolved", "cancelled"}),
    "pending": frozenset({"in_progress", "resolved", "cancelled"}),
    "reopened": frozenset({"in_progress", "pending", "resolved", "cancelled"}),
    "resolved": frozenset({"closed", "reopened"}),
    "closed": frozenset(),
    "cancelled": frozenset(),
}
REPORTER_TARGETS = frozenset({"closed", "reopened", "cancelled"})
REASON_REQUIRED = frozenset({"cancelled", "reopened"})


def is_open(status: str) -> bool:
    return status in OPEN_STATUSES


def check_transition(current: str, target: str, *, role: str, reason: str, resolved_at: dt.datetime | None,
                     now: dt.datetime, reopen_window_days: int) -> None:
    """Raise ApiError unless `role` may move a ticket from `current` to `target` now."""
    if role == "reporter" and target not in REPORTER_TARGETS:
        raise ApiError(403, f"a reporter may only close, reopen or cancel a ticket, not set {target!r}",
                       {"status": ["not allowed for reporters"]})
    if target not in TRANSITIONS.get(current, ()):
        allowed = ", ".join(sorted(TRANSITIONS.get(current, ()))) or "none"
        raise ApiError(409, f"cannot go from {current} to {target} (allowed: {allowed})",
                       {"status": [f"illegal transition from {current}"]})
    if target == "reopened" and resolved_at is not None:
        if now - resolved_at > dt.timedelta(days=reopen_window_days):
            raise ApiError(409, f"the reopen window of {reopen_window_days} days has passed; open a new ticket",
                           {"status": ["reopen window passed"]})
    if target in REASON_REQUIRED and not reason.strip():
        raise ApiError(422, f"a reason is required to set {target}", {"reason": ["required for " + target]})


def placement_status(status: str) -> str:
    """A ticket taken by a group or person leaves `new`; any other status is kept."""
    return "assigned" if status == "new" else status


def counts_as_reassignment(previous_group: str | None, new_group: str | None) -> bool:
    """The first routing is an assignment; every later change of group is a reassignment."""
    return previous_group is not None and new_group != previous_group


# --- priority --------------------------------------------------------------------------------
def middle(levels: list[str]) -> str:
    return levels[len(levels) // 2]


def impact_urgency(cfg: dict, impact: str | None, urgency: str | None) -> tuple[str, str]:
    """Validate against the configured levels; a missing one takes the middle level."""
    errors = {}
    for name, value in (("impact", impact), ("urgency", urgency)):
        if value is not None and value not in cfg[name]:
            errors[name] = [f"must be one of: {', '.join(cfg[name])}"]
    if errors:
        raise ApiError(422, "invalid fields: " + ", ".join(sorted(errors)), errors)
    return impact or middle(cfg["impact"]), urgency or middle(cfg["urgency"])


def priority_for(cfg: dict, impact: str, urgency: str) -> str:
    """ITIL: priority = matrix[impact][urgency]; the configured default if the cell is missing."""
    return (cfg.get("matrix") or {}).get(impact, {}).get(urgency) or cfg.get("default", "P3")


# --- escalation requests ---------------------------------------------------------------------
def check_escalation(*, status: str, current_tier: str | None, current_group: str | None, to_tier: str,
                     to_group: str | None, role: str) -> None:
    if not is_open(status):
        raise ApiError(409, f"a {status} ticket cannot be escalated", {"status": [status]})
    if role in MANAGERS:
        if to_tier == current_tier and (to_group is None or to_group == current_group):
            raise ApiError(409, f"the ticket is already at {to_tier}", {"to_tier": ["already there"]})
        return
    if TIER_RANK[to_tier] <= TIER_RANK.get(current_tier or "", 0):
        raise ApiError(409, f"an agent may only escalate upwards (the ticket is at {current_tier})",
                       {"to_tier": [f"must be above {current_tier}"]})


# --- feedback --------------------------------------------------------------------------------
def check_feedback(*, status: str, is_reporter: bool, already_given: bool) -> None:
    if not is_reporter:
        raise ApiError(403, "only the ticket's reporter may give feedback")
    if status not in ("resolved", "closed"):
        raise ApiError(409, f"feedback is taken once the ticket is resolved (it is {status})", {"status": [status]})
    if already_given:
        raise ApiError(409, "feedback was already given for this ticket", {"csat": ["already given"]})


def nps_bucket(score: int) -> str:
    return "promoter" if score >= 9 else "detractor" if score <= 6 else "passive"


# --- cursors ---------------------------------------------------------------------------------
def encode_cursor(number: int) -> str:
    return base64.urlsafe_b64encode(f"n:{number}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        if kind != "n" or not value.isdigit() or int(value) >= 2**63:  # beyond BIGINT the driver fails
            raise ValueError(raw)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(422, "invalid cursor", {"cursor": ["not a cursor from this API"]}) from None
