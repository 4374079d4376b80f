"""The event envelope and the catalogue of event types (one payload schema and version each).

Every event on the bus is an Envelope; its payload is checked against the catalogue both when it
is created and when it is consumed. Unknown types or versions and bad payloads raise
PoisonMessage: the bus dead-letters those at once instead of retrying them.
Payload schemas accept extra keys (forward compatibility) but consumers rely only on the
declared ones.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from shared.clock import utcnow

TIERS = ("L1", "L2", "L3", "DEV")
PRIORITIES = ("P1", "P2", "P3", "P4")
CHANNELS = ("web", "email", "phone", "chat", "social", "api", "monitoring")
STATUSES = ("new", "assigned", "in_progress", "pending", "resolved", "closed", "reopened", "cancelled")


class PoisonMessage(Exception):
    """A message that can never be handled: it goes to the dead-letter queue, not back."""


class _Open(Schema):
    class Meta:
        unknown = INCLUDE


class Person(_Open):
    name = fields.String(required=True)
    email = fields.String(load_default=None, allow_none=True)


class Contact(_Open):
    """Someone notify can reach: a group member, a manager, a reporter."""
    name = fields.String(required=True)
    email = fields.String(load_default=None, allow_none=True)
    chat = fields.String(load_default=None, allow_none=True)
    timezone = fields.String(load_default=None, allow_none=True)
    language = fields.String(load_default="en")


class Contacts(_Open):
    members = fields.List(fields.Nested(Contact), load_default=list)
    manager = fields.Nested(Contact, load_default=None, allow_none=True)
    on_call = fields.Nested(Contact, load_default=None, allow_none=True)


class TicketRef(_Open):
    """A snapshot of the ticket as intake sees it, carried in every ticket.* event."""
    id = fields.String(required=True)
    key = fields.String(required=True)
    title = fields.String(required=True)
    priority = fields.String(required=True, validate=validate.OneOf(PRIORITIES))
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    tier = fields.String(load_default=None, allow_none=True)
    group = fields.String(load_default=None, allow_none=True)
    assignee = fields.String(load_default=None, allow_none=True)
    category = fields.String(load_default=None, allow_none=True)
    service = fields.String(load_default=None, allow_none=True)
    channel = fields.String(load_default="api")
    reporter = fields.Nested(Person, required=True)
    language = fields.String(load_default="en")
    created_at = fields.String(required=True)


class Placement(_Open):
    tier = fields.String(load_default=None, allow_none=True)
    group = fields.String(load_default=None, allow_none=True)
    assignee = fields.String(load_default=None, allow_none=True)


# --- ticket.* (intake) ---------------------------------------------------------------------
class TicketCreated(_Open):
    ticket = fields.Nested(TicketRef, required=True)
    description = fields.String(load_default="")
    impact = fields.String(load_default=None, allow_none=True)
    urgency = fields.String(load_default=None, allow_none=True)


class TicketUpdated(_Open):
    ticket = fields.Nested(TicketRef, required=True)
    # {"priority": {"old": "P3", "new": "P1"}, ...}
    changes = fields.Dict(keys=fields.String(), values=fields.Dict(), required=True)
    actor = fields.Nested(Person, load_default=None, allow_none=True)


class TicketAssigned(_Open):
    ticket = fields.Nested(TicketRef, required=True)
    previous = fields.Nested(Placement, required=True)
    trigger = fields.String(required=True)
    reason = fields.String(load_default="")
    escalation_id = fields.String(load_default=None, allow_none=True)
    contacts = fields.Nested(Contacts, load_default=dict)


class TicketStatusChanged(_Open):
    ticket = fields.Nested(TicketRef, required=True)
    previous_status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    reason = fields.String(load_default="")
    actor = fields.Nested(Person, load_default=None, allow_none=True)


class TicketCommented(_Open):
    ticket = fields.Nested(TicketRef, required=True)
    comment_id = fields.String(required=True)
    public = fields.Boolean(required=True)
    body = fields.String(required=True)
    author = fields.Nested(Person, required=True)
    author_role = fields.String(required=True)
    first_response = fields.Boolean(load_default=False)


class TicketEscalationRequested(_Open):
    ticket = fields.Nested(TicketRef, required=True)
    to_tier = fields.String(required=True, validate=validate.OneOf(TIERS))
    to_group = fields.String(load_default=None, allow_none=True)
    reason = fields.String(required=True)
    requested_by = fields.Nested(Person, required=True)
    requested_by_role = fields.String(required=True)


class TicketFeedbackReceived(_Open):
    ticket = fields.Nested(TicketRef, required=True)
    csat = fields.Integer(load_default=None, allow_none=True)
    nps = fields.Integer(load_default=None, allow_none=True)
    comment = fields.String(load_default="")


# --- sla.* -----------------------------------------------------------------------------------
class SlaClockEvent(_Open):
    key = fields.String(required=True)
    priority = fields.String(required=True)
    clock = fields.String(required=True)  # first_response | resolution | ola:L1 ...
    tier = fields.String(load_default=None, allow_none=True)
    due_at = fields.String(required=True)
    target_seconds = fields.Integer(required=True)
    elapsed_seconds = fields.Integer(required=True)


class SlaWarning(SlaClockEvent):
    percent = fields.Integer(required=True)


class SlaPauseEvent(_Open):
    key = fields.String(required=True)
    clocks = fields.List(fields.String(), required=True)
    status = fields.String(required=True)


# --- escalation.* ----------------------------------------------------------------------------
class EscalationRouted(_Open):
    key = fields.String(required=True)
    tier = fields.String(required=True, validate=validate.OneOf(TIERS))
    group = fields.String(required=True)
    assignee = fields.String(load_default=None, allow_none=True)
    trigger = fields.String(required=True)  # initial | reroute | ladder | manual | ping_pong | defect_resolved
    reason = fields.String(load_default="")
    escalation_id = fields.String(required=True)
    contacts = fields.Nested(Contacts, load_default=dict)


class EscalationManagerNotified(_Open):
    key = fields.String(required=True)
    tier = fields.String(required=True)
    group = fields.String(required=True)
    manager = fields.Nested(Contact, required=True)
    reason = fields.String(required=True)
    trigger = fields.String(required=True)
    escalation_id = fields.String(required=True)


class EscalationDefectLinked(_Open):
    key = fields.String(required=True)
    tracker = fields.String(required=True)
    defect_id = fields.String(required=True)
    url = fields.String(load_default=None, allow_none=True)
    group = fields.String(load_default=None, allow_none=True)
    contacts = fields.Nested(Contacts, load_default=dict)


class EscalationDefectResolved(_Open):
    key = fields.String(required=True)
    tracker = fields.String(required=True)
    defect_id = fields.String(required=True)
    url = fields.String(load_default=None, allow_none=True)
    resolution = fields.String(load_default="fixed")
    return_to = fields.Nested(Placement, required=True)


# --- notify.* --------------------------------------------------------------------------------
class NotifyOutcome(_Open):
    delivery_id = fields.String(required=True)
    channel = fields.String(required=True)
    recipient = fields.String(required=True)
    source_event_id = fields.String(required=True)
    source_event_type = fields.String(required=True)
    attempts = fields.Integer(required=True)
    error = fields.String(load_default=None, allow_none=True)


# type -> {version: payload schema}
CATALOGUE: dict[str, dict[int, Schema]] = {
    "ticket.created": {1: TicketCreated()},
    "ticket.updated": {1: TicketUpdated()},
    "ticket.assigned": {1: TicketAssigned()},
    "ticket.status_changed": {1: TicketStatusChanged()},
    "ticket.commented": {1: TicketCommented()},
    "ticket.escalation_requested": {1: TicketEscalationRequested()},
    "ticket.feedback_received": {1: TicketFeedbackReceived()},
    "sla.warning": {1: SlaWarning()},
    "sla.breached": {1: SlaClockEvent()},
    "sla.met": {1: SlaClockEvent()},
    "sla.paused": {1: SlaPauseEvent()},
    "sla.resumed": {1: SlaPauseEvent()},
    "escalation.routed": {1: EscalationRouted()},
    "escalation.manager_notified": {1: EscalationManagerNotified()},
    "escalation.defect_linked": {1: EscalationDefectLinked()},
    "escalation.defect_resolved": {1: EscalationDefectResolved()},
    "notify.delivered": {1: NotifyOutcome()},
    "notify.failed": {1: NotifyOutcome()},
}
CURRENT_VERSION = {name: max(versions) for name, versions in CATALOGUE.items()}


class EnvelopeSchema(Schema):
    id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    type = fields.String(required=True)
    version = fields.Integer(required=True, strict=True)
    occurred_at = fields.AwareDateTime(required=True, format="iso")
    producer = fields.String(required=True)
    correlation_id = fields.String(required=True)
    causation_id = fields.String(load_default=None, allow_none=True)
    ticket_id = fields.String(load_default=None, allow_none=True)
    payload = fields.Dict(required=True)


_ENVELOPE = EnvelopeSchema()


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    version: int
    occurred_at: dt.datetime
    producer: str
    correlation_id: str
    causation_id: str | None
    ticket_id: str | None
    payload: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"id": self.id, "type": self.type, "version": self.version,
                "occurred_at": self.occurred_at.isoformat(), "producer": self.producer,
                "correlation_id": self.correlation_id, "causation_id": self.causation_id,
                "ticket_id": self.ticket_id, "payload": self.payload}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, body: bytes | str) -> "Event":
        try:
            raw = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PoisonMessage(f"not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise PoisonMessage("envelope is not an object")
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict) -> "Event":
        try:
            env = _ENVELOPE.load(raw)
        except ValidationError as exc:
            raise PoisonMessage(f"bad envelope: {exc.messages}") from None
        env["payload"] = validate_payload(env["type"], env["version"], env["payload"])
        return cls(**env)

    def caused(self, type: str, payload: dict, *, producer: str, ticket_id: str | None = None,
               occurred_at: dt.datetime | None = None) -> "Event":
        """A new event caused by this one: same correlation (flow), causation = this id."""
        return new_event(type, payload, producer=producer,
                         ticket_id=ticket_id if ticket_id is not None else self.ticket_id,
                         correlation_id=self.correlation_id, causation_id=self.id,
                         occurred_at=occurred_at)


def validate_payload(type: str, version: int, payload: dict) -> dict:
    versions = CATALOGUE.get(type)
    if versions is None:
        raise PoisonMessage(f"unknown event type {type!r}")
    schema = versions.get(version)
    if schema is None:
        raise PoisonMessage(f"unknown version {version} of {type!r}")
    try:
        schema.load(payload)
    except ValidationError as exc:
        raise PoisonMessage(f"bad {type} payload: {exc.messages}") from None
    return payload


def new_event(type: str, payload: dict, *, producer: str, ticket_id: str | None = None,
              correlation_id: str | None = None, causation_id: str | None = None,
              occurred_at: dt.datetime | None = None) -> Event:
    """Create a validated event; payload must be JSON-ready (strings, numbers, lists, dicts)."""
    version = CURRENT_VERSION.get(type)
    if version is None:
        raise ValueError(f"unknown event type {type!r}")
    try:
        validate_payload(type, version, payload)
    except PoisonMessage as exc:
        raise ValueError(str(exc)) from None
    event_id = str(uuid.uuid4())
    return Event(id=event_id, type=type, version=version, occurred_at=occurred_at or utcnow(),
                 producer=producer, correlation_id=correlation_id or ticket_id or event_id,
                 causation_id=causation_id, ticket_id=ticket_id, payload=payload)
