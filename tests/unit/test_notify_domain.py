"""Notify's pure rules: audience, language, urgency, quiet hours, backoff, header text, secrets."""
from __future__ import annotations

import datetime as dt

import pytest

from services.notify import domain

UTC = dt.timezone.utc
MEMBERS = [{"name": "Ivan Petrov", "email": "Ivan.Petrov@example.com", "language": "ru", "timezone": "Europe/Moscow"},
           {"name": "Anna Smith", "email": "anna.smith@example.com", "language": "en"}]
MANAGER = {"name": "Olga Ivanova", "email": "sd-manager@example.com", "language": "ru"}
TICKET = {"id": "t1", "key": "INC-1", "priority": "P3", "language": "en", "assignee": None,
          "reporter": {"name": "Kate", "email": "kate@example.com"},
          "contacts": {"members": MEMBERS, "manager": MANAGER, "on_call": None}, "developers": []}


def emails(people):
    return [p.email for p in people]


# --- header text and addresses ----------------------------------------------------------------
@pytest.mark.parametrize("raw, expected", [
    ("VPN is down", "VPN is down"),
    ("a\r\nBcc: evil@example.com", "a Bcc: evil@example.com"),
    ("tab\there\x00nul\x7fdel\x85nel", "tab here nul del nel"),
    ("line\u2028sep\u2029para", "line sep para"),
    ("\u202eevil", "evil"),
    ("  many    spaces  ", "many spaces"),
    ("Не работает VPN", "Не работает VPN"),
    (None, ""),
])
def test_header_text_removes_every_control_character(raw, expected):
    assert domain.header_text(raw) == expected


def test_header_text_truncates():
    assert domain.header_text("x" * 300, 10) == "x" * 9 + "…"


@pytest.mark.parametrize("raw, expected", [
    ("Kate@Example.COM", "kate@example.com"),
    (" kate@example.com ", "kate@example.com"),
    ("kate@example.com\r\nBcc: x@y.z", None),
    ("Kate <kate@example.com>", None),
    ("no-at-sign", None),
    ("a@b@c", None),
    (None, None),
    (42, None),
    ("x" * 250 + "@example.com", None),
])
def test_normalise_address(raw, expected):
    assert domain.normalise_address(raw) == expected


def test_message_id_part_keeps_only_safe_characters():
    assert domain.message_id_part("INC-42") == "INC-42"
    assert domain.message_id_part("INC 42>\r\n<x") == "INC42x"
    assert domain.message_id_part("") == "ticket"


# --- who hears what ---------------------------------------------------------------------------
def test_reporter_hears_of_created_in_the_ticket_language():
    people = domain.audience("ticket.created", {}, {**TICKET, "language": "ru"}, ("reporter",))
    assert [(p.role, p.email, p.language) for p in people] == [("reporter", "kate@example.com", "ru")]


def test_group_members_from_the_event_not_the_read_model():
    other = [{"name": "Dmitry", "email": "dmitry@example.com"}]
    people = domain.audience("ticket.assigned", {"contacts": {"members": other}}, TICKET, ("group",))
    assert emails(people) == ["dmitry@example.com"]


def test_group_without_members_falls_back_to_on_call():
    on_call = {"name": "Night", "email": "night@example.com"}
    people = domain.audience("ticket.assigned", {"contacts": {"members": [], "on_call": on_call}}, TICKET, ("group",))
    assert emails(people) == ["night@example.com"]


def test_assignee_matched_by_name_or_email_else_on_call_else_members():
    assert emails(domain.audience("sla.warning", {}, {**TICKET, "assignee": "Anna Smith"}, ("assignee",))) == [
        "anna.smith@example.com"]
    assert emails(domain.audience("sla.warning", {}, {**TICKET, "assignee": "ivan.petrov@example.com"}, ("assignee",))) == [
        "ivan.petrov@example.com"]
    assert emails(domain.audience("sla.warning", {}, {**TICKET, "assignee": "stranger@example.com"}, ("assignee",))) == [
        "stranger@example.com"]
    with_on_call = {**TICKET, "contacts": {**TICKET["contacts"], "on_call": {"name": "N", "email": "n@example.com"}}}
    assert emails(domain.audience("sla.warning", {}, with_on_call, ("assignee",))) == ["n@example.com"]
    assert emails(domain.audience("sla.warning", {}, TICKET, ("assignee",))) == [
        "ivan.petrov@example.com", "anna.smith@example.com"]


def test_manager_from_payload_for_manager_notified_else_from_contacts():
    boss = {"name": "Boss", "email": "boss@example.com"}
    assert emails(domain.audience("escalation.manager_notified", {"manager": boss}, TICKET, ("manager",))) == [
        "boss@example.com"]
    assert emails(domain.audience("sla.breached", {}, TICKET, ("manager",))) == ["sd-manager@example.com"]
    assert domain.audience("sla.breached", {}, {}, ("manager",)) == []


def test_developers_from_defect_linked_contacts():
    devs = {"members": [{"name": "Nikolai", "email": "nikolai@example.com", "language": "ru"}]}
    people = domain.audience("escalation.defect_linked", {"contacts": devs}, TICKET, ("developers",))
    assert [(p.email, p.language) for p in people] == [("nikolai@example.com", "ru")]


def test_private_comments_and_other_statuses_are_not_told():
    public = {"public": True, "author": {"name": "Agent", "email": "agent@example.com"}}
    assert emails(domain.audience("ticket.commented", public, TICKET, ("reporter",))) == ["kate@example.com"]
    assert domain.audience("ticket.commented", {**public, "public": False}, TICKET, ("reporter",)) == []
    for status, told in (("pending", True), ("resolved", True), ("in_progress", False), ("closed", False)):
        payload = {"status": status, "previous_status": "assigned"}
        assert bool(domain.audience("ticket.status_changed", payload, TICKET, ("reporter",))) is told


def test_nobody_is_told_what_they_did_themselves():
    own = {"public": True, "author": {"name": "Kate", "email": "KATE@example.com"}}
    assert domain.audience("ticket.commented", own, TICKET, ("reporter",)) == []
    resolved_by_kate = {"status": "resolved", "previous_status": "in_progress", "actor": {"name": "K", "email": "kate@example.com"}}
    assert domain.audience("ticket.status_changed", resolved_by_kate, TICKET, ("reporter",)) == []


def test_everyone_once_and_contacts_without_a_valid_address_are_skipped():
    members = [*MEMBERS, {"name": "No Mail"}, {"name": "Bad", "email": "bad\r\n@x"}, MEMBERS[0]]
    ticket = {**TICKET, "assignee": "Anna Smith", "contacts": {"members": members, "manager": MANAGER}}
    people = domain.audience("ticket.assigned", {"contacts": {"members": members}}, ticket, ("group", "assignee", "reporter"))
    assert emails(people) == ["ivan.petrov@example.com", "anna.smith@example.com", "kate@example.com"]


def test_check_rules_names_the_bad_rule():
    assert domain.check_rules({"ticket.created": ["reporter"]}) == {"ticket.created": ("reporter",)}
    with pytest.raises(ValueError, match="notifications.rules.ticket.created"):
        domain.check_rules({"ticket.created": ["boss"]})


def test_language_preference_order():
    assert domain.choose_language("ru", "en", "en", "en") == "ru"
    assert domain.choose_language(None, "ru", "en", "en") == "ru"
    assert domain.choose_language(None, None, "ru", "en") == "ru"
    assert domain.choose_language(None, "de", None, "ru") == "ru"
    assert domain.choose_language(None, None, None, None) == "en"


def test_urgent_is_p1_or_a_breach_or_hierarchical_escalation():
    assert domain.is_urgent("ticket.created", "P1")
    assert domain.is_urgent("sla.breached", "P4")
    assert domain.is_urgent("escalation.manager_notified", None)
    assert not domain.is_urgent("sla.warning", "P2")


# --- quiet hours ------------------------------------------------------------------------------
def at(hour, minute=0, day=23):
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize("now, expected", [
    (at(21, 59), None),
    (at(22, 0), at(7, 0, day=24)),
    (at(23, 30), at(7, 0, day=24)),
    (at(3, 0), at(7, 0)),
    (at(6, 59), at(7, 0)),
    (at(7, 0), None),
    (at(12, 0), None),
])
def test_quiet_hours_over_midnight_in_utc(now, expected):
    assert domain.quiet_until(now, {"start": "22:00", "end": "07:00", "timezone": "UTC"}) == expected


def test_quiet_hours_within_one_day():
    hours = {"start": "12:00", "end": "13:30"}
    assert domain.quiet_until(at(12, 15), hours) == at(13, 30)
    assert domain.quiet_until(at(13, 30), hours) is None
    assert domain.quiet_until(at(11, 0), hours) is None


def test_quiet_hours_in_the_recipients_zone():
    hours = {"start": "22:00", "end": "07:00", "timezone": "Europe/Moscow"}  # UTC+3
    assert domain.quiet_until(at(20, 0), hours) == at(4, 0, day=24)  # 23:00 in Moscow
    assert domain.quiet_until(at(18, 0), hours) is None               # 21:00 in Moscow
    # no zone in the window: the recipient's own zone is used
    assert domain.quiet_until(at(20, 0), {"start": "22:00", "end": "07:00"}, "Europe/Moscow") == at(4, 0, day=24)


def test_quiet_hours_across_a_dst_change():
    hours = {"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"}
    # night of 28/29 March 2026: clocks go from CET (+1) to CEST (+2)
    now = dt.datetime(2026, 3, 28, 22, 30, tzinfo=UTC)  # 23:30 CET
    assert domain.quiet_until(now, hours) == dt.datetime(2026, 3, 29, 5, 0, tzinfo=UTC)  # 07:00 CEST


def test_no_or_empty_quiet_hours():
    assert domain.quiet_until(at(23), None) is None
    assert domain.quiet_until(at(23), {"start": "22:00", "end": "22:00"}) is None


# --- backoff ----------------------------------------------------------------------------------
def test_backoff_grows_exponentially_within_jitter_bounds():
    for attempt, full in ((1, 2.0), (2, 4.0), (3, 8.0), (6, 64.0)):
        assert domain.backoff_seconds(attempt, 2.0, rand=lambda: 0.0) == full / 2
        assert domain.backoff_seconds(attempt, 2.0, rand=lambda: 1.0) == full
        assert full / 2 <= domain.backoff_seconds(attempt, 2.0) <= full


def test_backoff_is_capped():
    assert domain.backoff_seconds(40, 2.0, rand=lambda: 1.0) == domain.BACKOFF_CAP
    assert domain.backoff_seconds(5, 2.0, cap=10, rand=lambda: 1.0) == 10


# --- channels and secrets ---------------------------------------------------------------------
def test_secrets_are_masked():
    assert domain.redact_channel({"type": "telegram", "bot_token": "123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ", "chat_id": "1"}) == {
        "type": "telegram", "bot_token": "****WXYZ", "chat_id": "1"}
    assert domain.redact_channel({"type": "webhook", "url": "https://hooks.example/x", "secret": "s" * 20}) == {
        "type": "webhook", "url": "https://hooks.example/x", "secret": "****ssss"}
    assert domain.redact_channel({"type": "slack", "url": "https://hooks.slack.com/services/T0/B0/abc"}) == {
        "type": "slack", "url": "https://hooks.slack.com/****"}
    assert domain.mask("short") == "****"


def test_next_channel_skips_what_was_tried():
    channels = [{"type": "slack", "url": "u"}, {"type": "telegram"}, {"type": "email"}]
    assert domain.next_channel(channels, set()) == (0, channels[0])
    assert domain.next_channel(channels, {"slack"}) == (1, channels[1])
    assert domain.next_channel(channels, {"slack", "telegram", "email"}) is None


def test_known_people_are_everyone_the_event_names_once():
    payload = {"contacts": {"members": [*MEMBERS, {"name": "No Mail"}], "manager": MANAGER, "on_call": MEMBERS[1]},
               "manager": {"name": "Boss", "email": "boss@example.com"}}
    assert emails(domain.known_people(payload, TICKET)) == [
        "kate@example.com", "ivan.petrov@example.com", "anna.smith@example.com", "sd-manager@example.com",
        "boss@example.com"]
    assert domain.known_people({}, {}) == []
