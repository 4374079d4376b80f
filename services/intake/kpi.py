"""The KPI report, computed from ticket facts (pure; reports.py loads the facts).

Populations, for a window [start, end):
- created: tickets created in the window -> tickets, first response, escalation rates, reassignments;
- resolved: tickets whose (latest) resolution falls in the window -> resolution time, SLA
  compliance, first-contact resolution;
- feedback given in the window -> CSAT, NPS;
- backlog and overdue are the state now (open tickets, and those among them with a breach).
Times are wall-clock seconds; business time is the sla service's.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from services.intake.domain import OPEN_STATUSES, nps_bucket

SLA_CLOCKS = {"first_response", "resolution"}  # customer-facing; OLA clocks are internal targets
ESCALATION_TIERS = ("L2", "L3", "DEV")


@dataclass(frozen=True)
class Facts:
    created_at: dt.datetime
    status: str
    first_response_at: dt.datetime | None = None
    resolved_at: dt.datetime | None = None
    breached: bool = False
    breached_clocks: tuple[str, ...] = ()
    tiers_reached: tuple[str, ...] = ()
    reassignments: int = 0
    csat: int | None = None
    nps: int | None = None
    feedback_at: dt.datetime | None = None


@dataclass(frozen=True)
class Window:
    start: dt.datetime
    end: dt.datetime

    def __contains__(self, when: dt.datetime | None) -> bool:
        return when is not None and self.start <= when < self.end


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def compute(facts: list[Facts], window: Window) -> dict:
    created = [f for f in facts if f.created_at in window]
    resolved = [f for f in facts if f.status in ("resolved", "closed") and f.resolved_at in window]
    backlog = [f for f in facts if f.status in OPEN_STATUSES]
    feedback = [f for f in facts if f.feedback_at in window]
    compliant = [f for f in resolved if not SLA_CLOCKS & set(f.breached_clocks)]
    first_contact = [f for f in resolved if set(f.tiers_reached) <= {"L1"}]
    nps_scores = [f.nps for f in feedback if f.nps is not None]
    buckets = [nps_bucket(s) for s in nps_scores]
    promoters, detractors = buckets.count("promoter"), buckets.count("detractor")
    csat = [f.csat for f in feedback if f.csat is not None]
    reassignments = sum(f.reassignments for f in created)
    return {
        "tickets": len(created),
        "backlog": len(backlog),
        "overdue": sum(1 for f in backlog if f.breached),
        "resolved": len(resolved),
        "avg_first_response_seconds": _mean([(f.first_response_at - f.created_at).total_seconds()
                                             for f in created if f.first_response_at is not None]),
        "avg_resolution_seconds": _mean([(f.resolved_at - f.created_at).total_seconds() for f in resolved]),
        "sla_compliance_percent": _pct(len(compliant), len(resolved)),
        "first_contact_resolution_percent": _pct(len(first_contact), len(resolved)),
        "escalation_rate_percent": {tier: _pct(sum(1 for f in created if tier in f.tiers_reached), len(created))
                                    for tier in ESCALATION_TIERS},
        "reassignments": {"total": reassignments,
                          "average": round(reassignments / len(created), 2) if created else None},
        "csat": {"average": _mean([float(c) for c in csat]), "responses": len(csat)},
        "nps": {"score": _pct(promoters - detractors, len(nps_scores)),
                "responses": len(nps_scores), "promoters": promoters,
                "passives": buckets.count("passive"), "detractors": detractors},
    }
