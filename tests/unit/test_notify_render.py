"""Templates (every event type in English and Russian, sandboxed, autoescaped) and the email
message built from them (headers, threading, encodings)."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
from pathlib import Path

import pytest

from services.notify import chat
from services.notify.domain import LANGUAGES
from services.notify.mail import DeliveryError, build_message
from services.notify.render import TEMPLATES_DIR, Renderer
from shared.topology import TOPOLOGY

EVENT_TYPES = TOPOLOGY.queues["notify.events"]
HOSTILE = "VPN\r\nBcc: evil@example.com\n{{ 7*7 }} {% raw %}<script>alert(1)</script>"

PAYLOADS = {
    "ticket.created": {},
    "ticket.assigned": {"ticket": {"group": "Service Desk", "tier": "L1"}, "reason": "routing"},
    "ticket.commented": {"body": "Please restart the router.", "author": {"name": "Anna"}, "public": True},
    "ticket.status_changed": {"status": "resolved", "previous_status": "in_progress", "reason": "fixed"},
    "sla.warning": {"clock": "resolution", "percent": 75, "due_at": "2026-11-23T12:00:00+00:00",
                    "priority": "P2", "elapsed_seconds": 5400, "target_seconds": 7200},
    "sla.breached": {"clock": "first_response", "due_at": "2026-11-23T12:00:00+00:00", "priority": "P1"},
    "escalation.manager_notified": {"group": "Service Desk", "tier": "L1", "reason": "breach"},
    "escalation.defect_linked": {"tracker": "jira", "defect_id": "DEV-7"},
    "escalation.defect_resolved": {"resolution": "fixed", "defect_id": "DEV-7"},
}


def context(event_type, title="VPN is down", language="en", **extra):
    return {"event_type": event_type, "event": PAYLOADS[event_type], "language": language, "timezone": "Europe/Moscow",
            "recipient": {"name": "Kate", "role": "reporter"},
            "ticket": {"id": "t1", "key": "INC-42", "title": title, "priority": "P2",
                       "url": "http://x/api/v1/tickets/t1", "feedback_url": "http://x/api/v1/tickets/t1/feedback"},
            **extra}


@pytest.fixture(scope="module")
def renderer():
    return Renderer()


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_event_type_has_its_own_templates_in_every_language(renderer, event_type, language):
    for part in ("subject", "txt", "html"):
        assert (TEMPLATES_DIR / language / f"{event_type}.{part}.j2").is_file()
    out = renderer.render(event_type, language, context(event_type, language=language))
    assert out.subject.startswith("[INC-42] ") and "VPN is down" in out.subject
    assert "INC-42" in out.text and "Kate" in out.text
    assert out.html.startswith("<!DOCTYPE html>") and f'lang="{language}"' in out.html


def test_subjects_say_what_happened(renderer):
    assert renderer.render("ticket.assigned", "en", context("ticket.assigned")).subject == \
        "[INC-42] Assigned to Service Desk: VPN is down"
    assert renderer.render("ticket.created", "ru", context("ticket.created", title="Не работает VPN")).subject == \
        "[INC-42] Ваше обращение зарегистрировано: Не работает VPN"
    pending = {**context("ticket.status_changed"), "event": {"status": "pending", "reason": "Which office?"}}
    out = renderer.render("ticket.status_changed", "en", pending)
    assert out.subject == "[INC-42] We need your input: VPN is down" and "Which office?" in out.text


def test_clock_names_are_readable(renderer):
    ola = {**context("sla.warning"), "event": {**PAYLOADS["sla.warning"], "clock": "ola:L2"}}
    assert renderer.render("sla.warning", "en", ola).subject == "[INC-42] SLA warning 75% (OLA L2): VPN is down"
    assert renderer.render("sla.breached", "ru", context("sla.breached")).subject == \
        "[INC-42] Нарушен SLA (первый ответ): VPN is down"


def test_resolved_mail_carries_the_feedback_link(renderer):
    out = renderer.render("ticket.status_changed", "en", context("ticket.status_changed"))
    assert "http://x/api/v1/tickets/t1/feedback" in out.text and 'href="http://x/api/v1/tickets/t1/feedback"' in out.html


def test_times_are_shown_in_the_recipients_zone(renderer):
    out = renderer.render("sla.warning", "en", context("sla.warning"))
    assert "2026-11-23 15:00 MSK" in out.text and "1h 30m of 2h 00m" in out.text


def test_ticket_content_is_data_never_template_source(renderer):
    out = renderer.render("ticket.created", "en", context("ticket.created", title=HOSTILE))
    assert "\r" not in out.subject and "\n" not in out.subject
    assert "{{ 7*7 }}" in out.subject and "49" not in out.subject
    assert "{{ 7*7 }} {% raw %}<script>" in out.text and "49" not in out.text
    assert "<script>" not in out.html and "{{ 7*7 }} {% raw %}&lt;script&gt;" in out.html
    ctx = context("ticket.commented")
    ctx["event"] = {**PAYLOADS["ticket.commented"], "body": "{{ 7*7 }} {{ ''.__class__ }} <b>bold</b>"}
    out = renderer.render("ticket.commented", "en", ctx)
    assert "{{ 7*7 }} {{ ''.__class__ }} <b>bold</b>" in out.text
    assert "&lt;b&gt;bold&lt;/b&gt;" in out.html and "<b>" not in out.html


def test_missing_values_render_empty(renderer):
    out = renderer.render("sla.breached", "en", {"ticket": {"key": "INC-1"}, "event": {}})
    assert out.subject.startswith("[INC-1] SLA breached")
    assert "Undefined" not in out.text and "None" not in out.text


def test_unknown_event_type_and_language_fall_back(renderer):
    out = renderer.render("ticket.updated", "de", {"ticket": {"key": "INC-1", "title": "T"}, "event_type": "ticket.updated"})
    assert out.subject == "[INC-1] ticket.updated: T"


def test_the_sandbox_refuses_unsafe_access(tmp_path: Path):
    (tmp_path / "en").mkdir()
    for part in ("subject", "txt", "html"):
        (tmp_path / "en" / f"x.{part}.j2").write_text("[{{ ticket.__class__.__mro__ }}]")
    (tmp_path / "en" / "y.txt.j2").write_text("{{ ticket.items.__globals__ }}{{ ticket.keys.__self__.clear() }}")
    out = Renderer(tmp_path).render("x", "en", {"ticket": {"key": "K"}})
    assert out.text == "[]\n"  # dunder attributes are undefined inside the sandbox
    from jinja2.exceptions import SecurityError
    with pytest.raises(SecurityError):
        Renderer(tmp_path).env.get_template("en/y.txt.j2").render(ticket={"key": "K"})


# --- the email message ------------------------------------------------------------------------
def message(**overrides):
    args = dict(delivery_id="d-1", mail_from="Tierline <tierline@example.com>", to_name="Kate Reporter",
                to_address="kate@example.com", subject="[INC-42] Hello", text="plain\n", html="<p>html</p>",
                ticket_key="INC-42", date=dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.timezone.utc))
    args.update(overrides)
    msg = build_message(**args)
    return email.message_from_bytes(msg.as_bytes(), policy=email.policy.default), msg.as_bytes()


def test_message_headers_thread_by_ticket():
    parsed, _ = message()
    assert parsed["Message-ID"] == "<d-1@tierline>"
    assert parsed["In-Reply-To"] == parsed["References"] == "<INC-42@tierline>"
    assert parsed["To"] == "Kate Reporter <kate@example.com>"
    assert parsed["From"] == "Tierline <tierline@example.com>"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed.get_body(("plain",)).get_content() == "plain\r\n"  # SMTP policy: CRLF
    assert parsed.get_body(("html",)).get_content().strip() == "<p>html</p>"


def test_no_header_injection_through_subject_or_name():
    parsed, raw = message(subject="Hi\r\nBcc: evil@example.com", to_name="Kate\r\nCc: evil@example.com")
    assert parsed["Bcc"] is None and parsed["Cc"] is None
    assert b"\nBcc:" not in raw and b"\nCc:" not in raw
    assert parsed["Subject"] == "Hi Bcc: evil@example.com"


def test_russian_subject_is_encoded_and_arrives_intact():
    parsed, raw = message(subject="[INC-42] Не работает VPN", text="Здравствуйте!\n", to_name="Иван Петров")
    assert b"=?utf-8?" in raw.lower()  # RFC 2047 on the wire
    assert parsed["Subject"] == "[INC-42] Не работает VPN"
    assert parsed["To"].addresses[0].display_name == "Иван Петров"
    assert parsed.get_body(("plain",)).get_content() == "Здравствуйте!\r\n"


def test_bad_recipient_address_is_a_permanent_failure():
    with pytest.raises(DeliveryError) as err:
        message(to_address="kate@example.com\r\nBcc: x@y.z")
    assert err.value.permanent


def test_chat_text_is_bounded_and_webhook_signature_is_hmac_sha256():
    assert len(chat.chat_text("s", "x" * 10000)) == chat.TEXT_LIMIT
    import hashlib
    import hmac
    assert chat.signature("k", b"body") == "sha256=" + hmac.new(b"k", b"body", hashlib.sha256).hexdigest()
