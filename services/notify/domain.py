"""Notify's pure rules, no I/O: who hears an event, in which language, when (quiet hours,
backoff), and what may go into a mail header."""
from __future__ import annotations

import datetime as dt
import random
import re
import unicodedata
from dataclasses import dataclass
from typing import Callable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

STATES = ("queued", "sending", "sent", "retrying", "dead")
CHANNEL_TYPES = ("email", "slack", "telegram", "webhook")
LANGUAGES = ("en", "ru")
ROLES = ("reporter", "group", "assignee", "manager", "developers")
DEFAULT_CHANNELS = ({"type": "email"},)
# Breaches and hierarchical escalations cannot wait for the morning; P1 tickets neither.
URGENT_EVENTS = frozenset({"sla.breached", "escalation.manager_notified"})
# A status change the reporter must hear of: a question for them, or the work is done.
REPORTED_STATUSES = frozenset({"pending", "resolved"})
BACKOFF_CAP = 3600.0

_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
# Bidi overrides can make a subject read differently from what it is.
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@dataclass(frozen=True)
class Person:
    """Someone an event should reach, as the events describe them."""
    role: str
    email: str
    name: str
    language: str | None = None
    timezone: str | None = None
    chat: str | None = None


# --- headers and addresses --------------------------------------------------------------------
def header_text(value, limit: int = 200) -> str:
    """One line of text safe for a mail header: no control characters at all (CR/LF included),
    whitespace collapsed, at most `limit` characters."""
    kept = []
    for ch in str(value if value is not None else ""):
        category = unicodedata.category(ch)
        if category in ("Cc", "Zl", "Zp") or ch in _BIDI:
            kept.append(" ")
        else:
            kept.append(ch)
    text = " ".join("".join(kept).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def normalise_address(value) -> str | None:
    """A plain, lower-cased mailbox address, or None if it is not one (never raises)."""
    if not isinstance(value, str):
        return None
    address = value.strip().lower()
    if len(address) > 254 or not _EMAIL.match(address):
        return None
    return address


def message_id_part(value: str) -> str:
    """What may stand left of '@' in a Message-ID built from a ticket key."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "", value or "")[:64]
    return cleaned or "ticket"


# --- who hears what ---------------------------------------------------------------------------
def worth_telling(event_type: str, payload: Mapping) -> bool:
    """Events of a bound type that nobody should be told about (private notes, other statuses)."""
    if event_type == "ticket.commented":
        return payload.get("public") is True
    if event_type == "ticket.status_changed":
        return payload.get("status") in REPORTED_STATUSES and payload.get("status") != payload.get("previous_status")
    return True


def actor_email(event_type: str, payload: Mapping) -> str | None:
    """Who caused the event: people are not told about what they did themselves."""
    who = payload.get("author") if event_type == "ticket.commented" else payload.get("actor")
    return normalise_address((who or {}).get("email")) if isinstance(who, Mapping) else None


def _person(role: str, contact, default_language: str | None = None) -> Person | None:
    if not isinstance(contact, Mapping):
        return None
    email = normalise_address(contact.get("email"))
    if email is None:
        return None
    return Person(role=role, email=email, name=header_text(contact.get("name") or email, 200),
                  language=contact.get("language") or default_language,
                  timezone=contact.get("timezone"), chat=contact.get("chat"))


def _matches(contact, who: str) -> bool:
    if not isinstance(contact, Mapping):
        return False
    who = who.strip().lower()
    return who in {str(contact.get("email") or "").strip().lower(), str(contact.get("name") or "").strip().lower()}


def _contacts_for(role: str, event_type: str, payload: Mapping, ticket: Mapping) -> list:
    # The event's own contacts describe the group it is about (an old assignment arriving late
    # still tells the group it was meant for); the read model is for events that carry none.
    own = payload.get("contacts") if isinstance(payload.get("contacts"), Mapping) else None
    current = ticket.get("contacts") or {}
    if role == "reporter":
        return [dict(ticket.get("reporter") or {})]
    if role == "manager":
        if event_type == "escalation.manager_notified":
            return [payload.get("manager")]
        return [(own or current).get("manager")]
    if role == "developers":
        if event_type == "escalation.defect_linked":
            return list((own or {}).get("members") or [])
        return list(ticket.get("developers") or [])
    contacts = own or current
    members = list(contacts.get("members") or [])
    if role == "group":
        return members or [contacts.get("on_call")]
    if role == "assignee":
        assignee = ticket.get("assignee")
        if assignee:
            for contact in [*members, contacts.get("on_call"), contacts.get("manager")]:
                if _matches(contact, assignee):
                    return [contact]
            if normalise_address(assignee):
                return [{"name": assignee, "email": assignee}]
        if contacts.get("on_call"):
            return [contacts.get("on_call")]
        return members
    raise ValueError(f"unknown recipient role {role!r}")


def audience(event_type: str, payload: Mapping, ticket: Mapping, roles) -> list[Person]:
    """Everyone to tell about one event, once each, in rule order; the actor is left out."""
    if not worth_telling(event_type, payload):
        return []
    actor = actor_email(event_type, payload)
    seen, people = set(), []
    for role in roles:
        for contact in _contacts_for(role, event_type, payload, ticket):
            person = _person(role, contact, ticket.get("language") if role == "reporter" else None)
            if person is None or person.email in seen or person.email == actor:
                continue
            seen.add(person.email)
            people.append(person)
    return people


def known_people(payload: Mapping, ticket: Mapping) -> list[Person]:
    """Everyone an event names as reachable (reporter, group contacts, manager), told or not:
    notify remembers them all so preferences can be set before their first notification."""
    contacts = payload.get("contacts") if isinstance(payload.get("contacts"), Mapping) else {}
    named = [ticket.get("reporter"), *(contacts.get("members") or []), contacts.get("manager"),
             contacts.get("on_call"), payload.get("manager")]
    people, seen = [], set()
    for contact in named:
        person = _person("contact", contact)
        if person is not None and person.email not in seen:
            seen.add(person.email)
            people.append(person)
    return people


def check_rules(rules) -> dict[str, tuple[str, ...]]:
    """notifications.rules from the config: {event type: [roles]}; raises ValueError naming the bad one."""
    if not isinstance(rules, Mapping):
        raise ValueError("notifications.rules: expected a mapping of event type to roles")
    checked = {}
    for event_type, roles in rules.items():
        if not isinstance(roles, (list, tuple)) or any(r not in ROLES for r in roles):
            raise ValueError(f"notifications.rules.{event_type}: roles must be a list of {', '.join(ROLES)}")
        checked[str(event_type)] = tuple(roles)
    return checked


def choose_language(*candidates) -> str:
    """The first supported one of: recipient preference, contact's, ticket's, the default."""
    for language in candidates:
        if language in LANGUAGES:
            return language
    return LANGUAGES[0]


def is_urgent(event_type: str, priority: str | None) -> bool:
    return priority == "P1" or event_type in URGENT_EVENTS


# --- when -------------------------------------------------------------------------------------
def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
        return True
    except (ZoneInfoNotFoundError, ValueError):
        return False


def parse_hhmm(value: str) -> dt.time:
    match = _HHMM.match(value or "")
    if not match:
        raise ValueError(f"expected HH:MM, got {value!r}")
    return dt.time(int(match.group(1)), int(match.group(2)))


def quiet_until(now: dt.datetime, quiet_hours: Mapping | None, default_timezone: str | None = None) -> dt.datetime | None:
    """If `now` falls in the quiet hours (local time of their zone), the UTC instant they end;
    else None. A window whose start is after its end runs over midnight (22:00-07:00)."""
    if not quiet_hours:
        return None
    start, end = parse_hhmm(quiet_hours["start"]), parse_hhmm(quiet_hours["end"])
    if start == end:
        return None
    tz = zone(quiet_hours.get("timezone") or default_timezone)
    local = now.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    if start < end:
        inside, end_day = start <= t < end, local.date()
    else:
        inside = t >= start or t < end
        end_day = local.date() + dt.timedelta(days=1) if t >= start else local.date()
    if not inside:
        return None
    return dt.datetime.combine(end_day, end, tzinfo=tz).astimezone(dt.timezone.utc)


def backoff_seconds(attempt: int, base: float, *, cap: float = BACKOFF_CAP,
                    rand: Callable[[], float] = random.random) -> float:
    """Delay before attempt `attempt + 1`: exponential (base * 2^(attempt-1), capped) with
    "equal jitter" (between half and all of it), so retries of many deliveries spread out."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    return delay / 2 + rand() * delay / 2


# --- channels ---------------------------------------------------------------------------------
SECRET_KEYS = {"slack": ("url",), "telegram": ("bot_token",), "webhook": ("secret",)}


def mask(secret: str | None, kind: str = "token") -> str | None:
    """What the API shows of a secret: never the whole of it."""
    if not secret:
        return secret
    if kind == "url":
        scheme, _, rest = secret.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0]}/****"
    return "****" + secret[-4:] if len(secret) >= 16 else "****"


def redact_channel(channel: Mapping) -> dict:
    shown = dict(channel)
    for key in SECRET_KEYS.get(channel.get("type"), ()):
        if shown.get(key):
            shown[key] = mask(shown[key], "url" if key == "url" else "token")
    return shown


def is_masked(value) -> bool:
    return isinstance(value, str) and ("****" in value)


def next_channel(channels, tried_types) -> tuple[int, dict] | None:
    """The first channel in preference order whose type has not been tried for this message."""
    for index, channel in enumerate(channels):
        if channel.get("type") not in tried_types:
            return index, dict(channel)
    return None
