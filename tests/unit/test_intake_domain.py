"""Intake's pure rules: the status machine, priority, escalation direction, visibility, cursors."""
from __future__ import annotations

import datetime as dt

import pytest

from services.intake import domain
from services.intake.bootstrap import DEFAULT_PRIORITIES
from shared.events import STATUSES
from shared.http import ApiError

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.timezone.utc)


def move(current, target, role="agent", reason="because", resolved_at=None, window=14):
    domain.check_transition(current, target, role=role, reason=reason, resolved_at=resolved_at, now=NOW,
                            reopen_window_days=window)


def refused(fn, *args, **kwargs) -> ApiError:
    with pytest.raises(ApiError) as caught:
        fn(*args, **kwargs)
    return caught.value


LEGAL = {("new", "in_progress"), ("new", "pending"), ("new", "resolved"), ("new", "cancelled"),
         ("assigned", "in_progress"), ("assigned", "pending"), ("assigned", "resolved"), ("assigned", "cancelled"),
         ("in_progress", "pending"), ("in_progress", "resolved"), ("in_progress", "cancelled"),
         ("pending", "in_progress"), ("pending", "resolved"), ("pending", "cancelled"),
         ("reopened", "in_progress"), ("reopened", "pending"), ("reopened", "resolved"), ("reopened", "cancelled"),
         ("resolved", "closed"), ("resolved", "reopened")}


@pytest.mark.parametrize("current", STATUSES)
@pytest.mark.parametrize("target", STATUSES)
def test_staff_transitions_are_exactly_the_legal_ones(current, target):
    if (current, target) in LEGAL:
        move(current, target, resolved_at=NOW - dt.timedelta(days=1))
    else:
        error = refused(move, current, target)
        assert error.status == 409 and "status" in error.fields


def test_reporter_may_only_close_reopen_or_cancel():
    move("resolved", "closed", role="reporter")
    move("resolved", "reopened", role="reporter", resolved_at=NOW)
    move("in_progress", "cancelled", role="reporter")
    for target in ("in_progress", "pending", "resolved"):
        error = refused(move, "assigned", target, role="reporter")
        assert error.status == 403 and "status" in error.fields
    assert refused(move, "closed", "reopened", role="reporter").status == 409


def test_reopen_only_within_the_window():
    move("resolved", "reopened", resolved_at=NOW - dt.timedelta(days=7), window=7)
    error = refused(move, "resolved", "reopened", resolved_at=NOW - dt.timedelta(days=7, seconds=1), window=7)
    assert error.status == 409 and "window" in error.message


@pytest.mark.parametrize("target", ["cancelled", "reopened"])
def test_cancel_and_reopen_need_a_reason(target):
    current = "resolved" if target == "reopened" else "in_progress"
    error = refused(move, current, target, reason="  ", resolved_at=NOW)
    assert error.status == 422 and error.fields == {"reason": ["required for " + target]}


def test_placement_takes_a_new_ticket_and_keeps_other_statuses():
    assert domain.placement_status("new") == "assigned"
    for status in ("assigned", "in_progress", "pending", "reopened"):
        assert domain.placement_status(status) == status


def test_reassignment_is_a_change_of_group_after_the_first_routing():
    assert not domain.counts_as_reassignment(None, "Service Desk")
    assert not domain.counts_as_reassignment("Service Desk", "Service Desk")
    assert domain.counts_as_reassignment("Service Desk", "Infrastructure")


@pytest.mark.parametrize("impact,urgency,priority", [
    ("high", "high", "P1"), ("high", "medium", "P2"), ("high", "low", "P3"),
    ("medium", "high", "P2"), ("medium", "medium", "P3"), ("medium", "low", "P4"),
    ("low", "high", "P3"), ("low", "medium", "P4"), ("low", "low", "P4")])
def test_itil_matrix(impact, urgency, priority):
    assert domain.priority_for(DEFAULT_PRIORITIES, impact, urgency) == priority


def test_missing_impact_or_urgency_takes_the_middle_level_and_bad_ones_are_named():
    assert domain.impact_urgency(DEFAULT_PRIORITIES, None, "high") == ("medium", "high")
    assert domain.impact_urgency(DEFAULT_PRIORITIES, None, None) == ("medium", "medium")
    error = refused(domain.impact_urgency, DEFAULT_PRIORITIES, "huge", "soon")
    assert error.status == 422 and set(error.fields) == {"impact", "urgency"}


def test_a_configured_matrix_wins():
    cfg = {"impact": ["wide", "narrow"], "urgency": ["now", "later"], "default": "P4",
           "matrix": {"wide": {"now": "P1"}}}
    assert domain.priority_for(cfg, "wide", "now") == "P1"
    assert domain.priority_for(cfg, "narrow", "later") == "P4"  # missing cell: the default


def escalate(role="agent", tier="L1", group="Service Desk", to_tier="L2", to_group=None, status="in_progress"):
    domain.check_escalation(status=status, current_tier=tier, current_group=group, to_tier=to_tier,
                            to_group=to_group, role=role)


def test_agents_escalate_upwards_only():
    escalate(to_tier="L2")
    escalate(tier="L2", to_tier="DEV")
    escalate(tier=None, to_tier="L2")
    for tier, to_tier in (("L2", "L2"), ("L2", "L1"), ("DEV", "L3")):
        error = refused(escalate, tier=tier, to_tier=to_tier)
        assert error.status == 409 and "to_tier" in error.fields


def test_leads_may_move_any_way_but_not_onto_the_same_place():
    escalate(role="lead", tier="L3", to_tier="L1")
    escalate(role="admin", tier="L2", group="Applications", to_tier="L2", to_group="Infrastructure")
    assert refused(escalate, role="lead", tier="L2", to_tier="L2").status == 409


def test_closed_tickets_are_not_escalated():
    assert refused(escalate, status="resolved").status == 409


def test_feedback_rules():
    domain.check_feedback(status="resolved", is_reporter=True, already_given=False)
    domain.check_feedback(status="closed", is_reporter=True, already_given=False)
    assert refused(domain.check_feedback, status="resolved", is_reporter=False, already_given=False).status == 403
    assert refused(domain.check_feedback, status="in_progress", is_reporter=True, already_given=False).status == 409
    assert refused(domain.check_feedback, status="closed", is_reporter=True, already_given=True).status == 409


def test_nps_buckets():
    assert [domain.nps_bucket(s) for s in (0, 6, 7, 8, 9, 10)] == [
        "detractor", "detractor", "passive", "passive", "promoter", "promoter"]


def test_cursor_round_trip_and_garbage():
    assert domain.decode_cursor(domain.encode_cursor(1234)) == 1234
    for junk in ("", "!!!", "bm90LWEtY3Vyc29y", domain.encode_cursor(5)[:-1] + "A"):
        error = refused(domain.decode_cursor, junk)
        assert error.status == 422 and "cursor" in error.fields
