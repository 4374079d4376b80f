"""Escalation decisions as pure functions: routing, the ladder, the ping-pong guard, manual requests."""
from __future__ import annotations

import pytest

from services.escalation import domain, registry
from services.escalation.domain import Group, Ladder, Rule, Step, TicketFacts
from shared.config import load_settings

DESK = Group("Service Desk", "L1", manager={"name": "Olga", "email": "olga@example.com"},
             members=({"name": "Ivan", "email": "ivan@example.com", "language": "ru"},
                      {"name": "Anna", "email": None}), on_call="Anna")
FIELD = Group("Field Support", "L1", categories=("hardware",))
INFRA = Group("Infrastructure", "L2", categories=("network", "hardware"), services=("vpn", "wifi"))
APPS = Group("Applications", "L2", categories=("software",), services=("crm",))
PLATFORM = Group("Platform Engineering", "L3")
DEVS = Group("Developers", "DEV", tracker="default")
ALL = [DESK, FIELD, INFRA, APPS, PLATFORM, DEVS]
STANDARD = Ladder("standard", ("P1", "P2", "P3", "P4"), 3, (
    Step("sla.warning", "first_response", "notify_manager", 75),
    Step("sla.breached", "ola", "next_tier"),
    Step("sla.breached", "resolution", "notify_manager"),
    Step("sla.breached", "resolution", "next_tier"),
))


def facts(**kw):
    return TicketFacts(**{"priority": "P3", "category": None, "service": None, "channel": "web", **kw})


# --- routing --------------------------------------------------------------------------------
def test_rule_needs_every_given_criterion_and_accepts_lists():
    rule = {"category": "hardware", "channel": ["phone", "chat"]}
    assert domain.rule_matches(rule, facts(category="hardware", channel="phone"))
    assert not domain.rule_matches(rule, facts(category="hardware", channel="web"))
    assert not domain.rule_matches(rule, facts(category="network", channel="chat"))
    assert domain.rule_matches({}, facts())
    assert domain.rule_matches({"service": None, "priority": ""}, facts())


def test_initial_group_first_matching_rule_by_position_wins():
    rules = [Rule(20, {"priority": "P1"}, "Service Desk"), Rule(10, {"category": "hardware"}, "Field Support")]
    group, why = domain.initial_group(rules, "Service Desk", ALL, facts(category="hardware", priority="P1"))
    assert group.name == "Field Support" and why == "routing rule 10 (category=hardware)"


def test_initial_group_skips_rules_for_missing_groups_then_default_then_any_l1():
    rules = [Rule(1, {}, "Gone")]
    assert domain.initial_group(rules, "Service Desk", ALL, facts()) == (DESK, "default group")
    group, why = domain.initial_group([], "Gone too", [INFRA, FIELD, DESK], facts())
    assert group.name == "Field Support" and "first L1" in why  # alphabetical, deterministic
    assert domain.initial_group([], None, [INFRA], facts()) is None


# --- functional escalation ------------------------------------------------------------------
@pytest.mark.parametrize("category, service, expected", [
    ("network", "vpn", "Infrastructure"),       # both match
    ("software", None, "Applications"),         # category only
    ("other", "crm", "Applications"),           # service only
    ("other", "other", "Applications"),         # nobody handles it: first of the tier by name
])
def test_group_for_tier_prefers_the_group_that_handles_the_ticket(category, service, expected):
    assert domain.group_for_tier(ALL, "L2", category, service).name == expected


def test_specific_group_beats_catch_all_of_the_same_tier():
    catch_all = Group("A catch-all", "L2")
    assert domain.group_for_tier([catch_all, INFRA], "L2", "network", None).name == "Infrastructure"
    assert domain.group_for_tier([catch_all, INFRA], "L2", "software", None).name == "A catch-all"


def test_next_tier_goes_up_one_tier_and_skips_a_tier_without_groups():
    assert domain.next_tier_group(ALL, "L1", "network", "vpn").name == "Infrastructure"
    assert domain.next_tier_group(ALL, "L2", "network", "vpn").name == "Platform Engineering"
    assert domain.next_tier_group(ALL, "L3", None, None).name == "Developers"
    assert domain.next_tier_group(ALL, "DEV", None, None) is None
    assert domain.next_tier_group([DESK, PLATFORM], "L1", None, None).name == "Platform Engineering"


def test_contacts_carry_members_manager_and_on_call():
    contacts = domain.contacts(DESK)
    assert contacts["manager"]["name"] == "Olga" and contacts["manager"]["language"] == "en"
    assert [m["name"] for m in contacts["members"]] == ["Ivan", "Anna"]
    assert contacts["members"][0]["language"] == "ru"
    assert contacts["on_call"]["name"] == "Anna"
    assert domain.contacts(DEVS) == {"members": [], "manager": None, "on_call": None}


# --- the ladder -----------------------------------------------------------------------------
def test_ladder_by_priority():
    p1_only = Ladder("critical", ("P1",), 2)
    assert domain.ladder_for([STANDARD, p1_only], "P1") in (STANDARD, p1_only)
    assert domain.ladder_for([p1_only], "P3") is None
    assert domain.ladder_for([p1_only, STANDARD], "P3") == STANDARD


def test_warning_step_fires_from_its_percentage():
    assert domain.due_steps(STANDARD, "sla.warning", "first_response", 50, "L1") == []
    assert domain.due_steps(STANDARD, "sla.warning", "first_response", 75, "L1") == [STANDARD.steps[0]]
    assert domain.due_steps(STANDARD, "sla.warning", "first_response", 90, "L1") == [STANDARD.steps[0]]
    assert domain.due_steps(STANDARD, "sla.warning", "resolution", 90, "L1") == []


def test_ola_step_matches_only_the_current_tiers_clock():
    assert domain.due_steps(STANDARD, "sla.breached", "ola:L1", None, "L1") == [STANDARD.steps[1]]
    assert domain.due_steps(STANDARD, "sla.breached", "ola:L1", None, "L2") == []  # late, tier left behind
    pinned = Ladder("x", ("P1",), 3, (Step("sla.breached", "ola:L2", "next_tier"),))
    assert domain.due_steps(pinned, "sla.breached", "ola:L2", None, "L2") == list(pinned.steps)
    assert domain.due_steps(pinned, "sla.breached", "ola:L1", None, "L1") == []


def test_resolution_breach_runs_both_of_its_steps_in_order():
    assert domain.due_steps(STANDARD, "sla.breached", "resolution", None, "L2") == list(STANDARD.steps[2:])


def test_step_key_is_its_content():
    assert Step("sla.breached", "ola", "next_tier").key == "sla.breached|ola|0|next_tier"
    assert Step("sla.warning", "first_response", "notify_manager", 75).key != STANDARD.steps[2].key


def test_ping_pong_allows_limit_moves_then_stops():
    assert not domain.ping_pong_blocked(0, 3)
    assert not domain.ping_pong_blocked(2, 3)
    assert domain.ping_pong_blocked(3, 3)
    assert not domain.ping_pong_blocked(50, None)


# --- manual requests ------------------------------------------------------------------------
def test_upward_and_sideways_are_allowed_for_agents():
    assert domain.manual_decision("L1", "Service Desk", INFRA, "L2", "agent").allowed
    assert domain.manual_decision(None, None, DESK, "L1", "agent").allowed
    sideways = domain.manual_decision("L2", "Infrastructure", APPS, "L2", "agent")
    assert sideways.allowed and "transfer" in sideways.why


def test_downward_needs_a_lead_or_admin():
    refused = domain.manual_decision("L2", "Infrastructure", DESK, "L1", "agent")
    assert not refused.allowed and "needs a lead" in refused.why
    assert domain.manual_decision("L2", "Infrastructure", DESK, "L1", "lead").allowed
    assert domain.manual_decision("DEV", "Developers", DESK, "L1", "admin").allowed


def test_requests_that_cannot_be_met_are_refused():
    assert not domain.manual_decision("L1", "Service Desk", None, "L2", "agent").allowed
    assert not domain.manual_decision("L2", "Infrastructure", INFRA, "L2", "lead").allowed
    mismatch = domain.manual_decision("L1", "Service Desk", PLATFORM, "L2", "agent")
    assert not mismatch.allowed and "is tier L3" in mismatch.why


@pytest.mark.parametrize("status, resolution", [
    ("fixed", "fixed"), ("Closed", "fixed"), ("resolved", "fixed"), ("wontfix", "wontfix"),
    ("duplicate", "duplicate"), ("in_progress", None), ("reopened", None), ("", None)])
def test_tracker_statuses(status, resolution):
    assert domain.defect_resolution(status) == resolution


def test_shipped_defaults_load_including_yaml_on_keys():
    """The shipped file writes `on:` unquoted, which YAML 1.1 reads as True."""
    doc = load_settings(env={}).domain
    ladders = registry._load_all(registry.LadderSchema(), [registry._yaml_on(x) for x in doc["ladders"]], "ladders")
    assert ladders[0]["steps"][0] == {"on": "sla.warning", "clock": "first_response", "min_percent": 75,
                                      "action": "notify_manager"}
    groups = registry._load_all(registry.GroupSchema(), doc["groups"], "groups")
    assert {g["tier"] for g in groups} == {"L1", "L2", "L3", "DEV"}
