"""The KPI arithmetic on a small hand-computed set of ticket facts."""
from __future__ import annotations

import datetime as dt

from services.intake.kpi import Facts, Window, compute

T0 = dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc)
WEEK = Window(T0, T0 + dt.timedelta(days=7))


def at(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


def test_kpi_by_hand():
    facts = [
        # resolved at L1 in time, happy customer
        Facts(created_at=at(1), status="closed", first_response_at=at(1.5), resolved_at=at(3),
              tiers_reached=("L1",), csat=5, nps=10, feedback_at=at(4)),
        # escalated to L2, resolution breached, unhappy
        Facts(created_at=at(2), status="resolved", first_response_at=at(3), resolved_at=at(12), breached=True,
              breached_clocks=("resolution",), tiers_reached=("L1", "L2"), reassignments=1, csat=2, nps=5,
              feedback_at=at(13)),
        # open, went to DEV, only an OLA breached: overdue but no SLA breach
        Facts(created_at=at(5), status="in_progress", first_response_at=at(6), breached=True,
              breached_clocks=("ola:L1",), tiers_reached=("L1", "L2", "L3", "DEV"), reassignments=3),
        # created before the window, resolved inside it
        Facts(created_at=at(-24), status="resolved", first_response_at=at(-23), resolved_at=at(24),
              tiers_reached=("L1",)),
        # cancelled: counted as created, never resolved
        Facts(created_at=at(30), status="cancelled", tiers_reached=("L1",)),
        # created after the window, open now
        Facts(created_at=at(200), status="new"),
    ]
    report = compute(facts, WEEK)
    assert report["tickets"] == 4
    assert report["backlog"] == 2 and report["overdue"] == 1
    assert report["resolved"] == 3
    assert report["avg_first_response_seconds"] == (1800 + 3600 + 3600) / 3
    assert report["avg_resolution_seconds"] == (7200 + 36000 + 48 * 3600) / 3
    assert report["sla_compliance_percent"] == 66.67
    assert report["first_contact_resolution_percent"] == 66.67
    assert report["escalation_rate_percent"] == {"L2": 50.0, "L3": 25.0, "DEV": 25.0}
    assert report["reassignments"] == {"total": 4, "average": 1.0}
    assert report["csat"] == {"average": 3.5, "responses": 2}
    assert report["nps"] == {"score": 0.0, "responses": 2, "promoters": 1, "passives": 0, "detractors": 1}


def test_empty_window_gives_nulls_not_errors():
    report = compute([Facts(created_at=at(-100), status="in_progress")], WEEK)
    assert report["tickets"] == 0 and report["backlog"] == 1
    assert report["avg_first_response_seconds"] is None and report["sla_compliance_percent"] is None
    assert report["escalation_rate_percent"] == {"L2": None, "L3": None, "DEV": None}
    assert report["reassignments"]["average"] is None and report["nps"]["score"] is None


def test_window_is_half_open():
    facts = [Facts(created_at=WEEK.start, status="new"), Facts(created_at=WEEK.end, status="new")]
    assert compute(facts, WEEK)["tickets"] == 1
