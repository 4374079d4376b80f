"""Rendering notifications from the Jinja2 files in templates/<lang>/<event type>.{subject,txt,html}.j2.

The environment is sandboxed, HTML is autoescaped (text and subject are not: they are not HTML),
and undefined names render empty. Ticket content only ever enters as data in the context, never
as template source, so a title like "{{ 7*7 }}" arrives literally.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from jinja2 import ChainableUndefined, FileSystemLoader, TemplateNotFound, pass_context, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from services.notify.domain import header_text, zone

TEMPLATES_DIR = Path(__file__).parent / "templates"
FALLBACK_LANGUAGE = "en"


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@pass_context
def _localtime(context, value) -> str:
    """An ISO instant shown in the recipient's zone: "2026-11-23 12:00 MSK"."""
    if not value:
        return ""
    try:
        when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    local = when.astimezone(zone(context.get("timezone")))
    return local.strftime("%Y-%m-%d %H:%M ") + (local.tzname() or "")


def _duration(seconds) -> str:
    try:
        total = int(seconds)
    except (TypeError, ValueError):
        return ""
    hours, minutes = divmod(max(total, 0) // 60, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


class Renderer:
    def __init__(self, directory: Path = TEMPLATES_DIR):
        self.env = SandboxedEnvironment(
            loader=FileSystemLoader(str(directory)),
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False, default=False),
            undefined=ChainableUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False,
        )
        self.env.filters["localtime"] = _localtime
        self.env.filters["duration"] = _duration

    def _template(self, language: str, event_type: str, part: str):
        for lang in dict.fromkeys((language, FALLBACK_LANGUAGE)):
            try:
                return self.env.get_template(f"{lang}/{event_type}.{part}.j2")
            except TemplateNotFound:
                continue
        return self.env.get_template(f"{FALLBACK_LANGUAGE}/_generic.{part}.j2")

    def render(self, event_type: str, language: str, context: dict) -> Rendered:
        """Subject (one clean line, "[KEY] ..."), plain text and HTML for one recipient."""
        subject = header_text(self._template(language, event_type, "subject").render(context), 180)
        key = header_text((context.get("ticket") or {}).get("key"), 40)
        if key:
            subject = f"[{key}] {subject}"
        text = self._template(language, event_type, "txt").render(context).strip() + "\n"
        html = self._template(language, event_type, "html").render(context)
        return Rendered(subject=subject, text=text, html=html)
