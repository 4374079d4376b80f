"""GET /api/v1/reports/kpi against a fixture of tickets whose numbers were worked out by hand.

Window: Monday 2026-11-02 00:00 UTC to Monday 2026-11-09 00:00 UTC; the report runs on 11-10.
  F  created 10-30 09:00 (before), L1, resolved 11-02 12:00 (270000 s)          resolved, FCR, compliant
  A  created 11-02 09:00 P1, L1, reply +600 s, resolved +7200 s, CSAT 5 NPS 10    FCR, compliant
  B  created 11-02 10:00 P2, L1->L2 (1 reassignment), reply +1800 s, resolution breached,
     resolved +36000 s, CSAT 2 NPS 3                                            not FCR, not compliant
  C  created 11-03 09:00 P3, L1->L2->L3->DEV (3), reply +3600 s, OLA breached, in progress   overdue
  D  created 11-04 12:00 P4, L1, cancelled
  E  created 11-05 08:00 P3, L1, reply +7200 s, first response breached, resolved +86400 s,
     CSAT 4 NPS 9                                                               FCR, not compliant
  G  created 11-06 09:00 P1, L1, at risk, open
  H  created 11-10 09:00 P1 (after), unrouted, resolution breached, open         overdue
"""
from __future__ import annotations

import datetime as dt

import pytest

from tests.integration.test_intake_support import intake  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration
UTC = dt.timezone.utc


def at(day: int, hour: int, month: int = 11) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, 0, tzinfo=UTC)


class Desk:
    """Plays one ticket's life with the clock set by hand."""

    def __init__(self, intake):
        self.intake = intake

    def open(self, when, impact, urgency, title):
        self.intake.clock.set(when)
        return self.intake.create(title=title, impact=impact, urgency=urgency)

    def route(self, ticket, tier, group):
        self.intake.route(ticket, tier, group, escalation_id=f"esc-{ticket['key']}-{tier}")
        self.intake.until(ticket["id"], lambda t: t["tier"] == tier)

    def reply(self, ticket, when):
        self.intake.clock.set(when)
        response = self.intake.client.post(f"/api/v1/tickets/{ticket['id']}/comments", json={"body": "On it"},
                                           headers=self.intake.lead)
        assert response.get_json()["first_response"] is True

    def status(self, ticket, status, when, reason="done"):
        self.intake.clock.set(when)
        self.intake.status(ticket["id"], status, headers=self.intake.lead, reason=reason)

    def feedback(self, ticket, when, csat, nps):
        self.intake.clock.set(when)
        response = self.intake.client.post(f"/api/v1/tickets/{ticket['id']}/feedback", json={"csat": csat, "nps": nps},
                                           headers=self.intake.kate)
        assert response.status_code == 201

    def sla(self, ticket, type_, clock, **extra):
        self.intake.publish(type_, ticket["id"], producer="sla", key=ticket["key"], priority=ticket["priority"],
                            clock=clock, due_at=ticket["created_at"], target_seconds=60, elapsed_seconds=60, **extra)
        flag = "at_risk" if type_ == "sla.warning" else "breached"
        self.intake.until(ticket["id"], lambda t: t[flag])


def play_the_week(intake) -> None:
    desk = Desk(intake)
    f = desk.open(at(30, 9, month=10), "high", "medium", "F")
    desk.route(f, "L1", "Service Desk")
    desk.reply(f, at(30, 10, month=10))
    desk.status(f, "resolved", at(2, 12))

    a = desk.open(at(2, 9), "high", "high", "A")
    desk.route(a, "L1", "Service Desk")
    desk.reply(a, at(2, 9) + dt.timedelta(seconds=600))
    desk.status(a, "resolved", at(2, 11))
    desk.feedback(a, at(2, 12), 5, 10)

    b = desk.open(at(2, 10), "high", "medium", "B")
    desk.route(b, "L1", "Service Desk")
    desk.reply(b, at(2, 10) + dt.timedelta(seconds=1800))
    desk.route(b, "L2", "Infrastructure")
    desk.sla(b, "sla.breached", "resolution")
    desk.status(b, "resolved", at(2, 20))
    desk.feedback(b, at(2, 21), 2, 3)

    c = desk.open(at(3, 9), "medium", "medium", "C")
    desk.route(c, "L1", "Service Desk")
    desk.reply(c, at(3, 10))
    for tier, group in (("L2", "Applications"), ("L3", "Platform Engineering"), ("DEV", "Developers")):
        desk.route(c, tier, group)
    desk.status(c, "in_progress", at(3, 12))
    desk.sla(c, "sla.breached", "ola:L1", tier="L1")

    d = desk.open(at(4, 12), "low", "low", "D")
    desk.route(d, "L1", "Service Desk")
    desk.status(d, "cancelled", at(4, 13), reason="duplicate")

    e = desk.open(at(5, 8), "medium", "medium", "E")
    desk.route(e, "L1", "Service Desk")
    desk.reply(e, at(5, 10))
    desk.sla(e, "sla.breached", "first_response")
    desk.status(e, "resolved", at(6, 8))
    desk.feedback(e, at(6, 9), 4, 9)

    g = desk.open(at(6, 9), "high", "high", "G")
    desk.route(g, "L1", "Service Desk")
    desk.sla(g, "sla.warning", "resolution", percent=75)

    h = desk.open(at(10, 9), "high", "high", "H")
    desk.sla(h, "sla.breached", "resolution")
    intake.clock.set(at(10, 12))


def kpi(intake, query="from=2026-11-02T00:00:00Z&to=2026-11-09T00:00:00Z", headers=None):
    response = intake.client.get(f"/api/v1/reports/kpi?{query}", headers=headers or intake.lead)
    return response.status_code, response.get_json()


def test_kpi_report_matches_the_hand_computed_week(intake):
    play_the_week(intake)
    status, report = kpi(intake)
    assert status == 200, report
    assert report == {
        "window": {"from": "2026-11-02T00:00:00+00:00", "to": "2026-11-09T00:00:00+00:00"},
        "filters": {"group": None, "priority": None},
        "tickets": 6,                                   # A B C D E G
        "backlog": 3,                                   # C G H, open now
        "overdue": 2,                                   # C H
        "resolved": 4,                                  # F A B E
        "avg_first_response_seconds": 3300.0,           # (600 + 1800 + 3600 + 7200) / 4
        "avg_resolution_seconds": 99900.0,              # (270000 + 7200 + 36000 + 86400) / 4
        "sla_compliance_percent": 50.0,                 # F A of F A B E
        "first_contact_resolution_percent": 75.0,       # F A E of F A B E
        "escalation_rate_percent": {"L2": 33.33, "L3": 16.67, "DEV": 16.67},  # B C / C / C of 6
        "reassignments": {"total": 4, "average": 0.67},  # B 1 + C 3 over 6
        "csat": {"average": 3.67, "responses": 3},       # (5 + 2 + 4) / 3
        "nps": {"score": 33.33, "responses": 3, "promoters": 2, "passives": 0, "detractors": 1},
    }

    status, desk = kpi(intake, "from=2026-11-02T00:00:00Z&to=2026-11-09T00:00:00Z&group=Service%20Desk")
    assert status == 200
    assert (desk["tickets"], desk["backlog"], desk["overdue"], desk["resolved"]) == (4, 1, 0, 3)  # A D E G; G; -; F A E
    assert desk["sla_compliance_percent"] == 66.67 and desk["first_contact_resolution_percent"] == 100.0
    assert desk["avg_resolution_seconds"] == 121200.0  # (270000 + 7200 + 86400) / 3

    status, urgent = kpi(intake, "from=2026-11-02T00:00:00Z&to=2026-11-09T00:00:00Z&priority=P1")
    assert (urgent["tickets"], urgent["backlog"], urgent["overdue"]) == (2, 2, 1)  # A G; G H; H

    status, default_window = kpi(intake, "")  # the last 30 days up to now (11-10 12:00)
    assert status == 200 and default_window["tickets"] == 8
    assert default_window["window"]["to"] == "2026-11-10T12:00:00+00:00"


def test_kpi_access_and_input(intake):
    assert kpi(intake, headers=intake.ivan)[0] == 403
    assert kpi(intake, headers=intake.kate)[0] == 403
    assert kpi(intake, headers=intake.admin)[0] == 200
    for query, field in (("from=2026-11-09T00:00:00Z&to=2026-11-02T00:00:00Z", "from"), ("from=yesterday", "from"),
                         ("priority=P7", "priority"), ("to=2026-13-01T00:00:00Z", "to")):
        status, body = kpi(intake, query)
        assert status == 422 and field in body["error"]["fields"], (query, body)
