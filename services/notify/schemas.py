"""Request and response schemas of the notify API (marshmallow 4)."""
from __future__ import annotations

import re

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from services.notify.domain import CHANNEL_TYPES, LANGUAGES, STATES, valid_zone

HHMM = validate.Regexp(r"^([01]\d|2[0-3]):[0-5]\d$", error="expected HH:MM (24 h)")
TELEGRAM_TOKEN = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{20,100}$")
TELEGRAM_CHAT = re.compile(r"^(-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{3,63})$")
# Which fields each channel type takes, and which of them it needs.
CHANNEL_FIELDS = {"email": ((), ()), "slack": (("url", "channel"), ("url",)),
                  "telegram": (("bot_token", "chat_id", "base_url"), ("bot_token", "chat_id")),
                  "webhook": (("url", "secret"), ("url", "secret"))}


def _zone(value):
    if value is not None and not valid_zone(value):
        raise ValidationError("unknown IANA time zone")


def _web_url(value):
    if not re.match(r"^https?://[^\s/?#]+", value or ""):
        raise ValidationError("expected an http:// or https:// URL")


class ChannelSchema(Schema):
    """One way to reach a recipient; secrets (url of a Slack hook, bot_token, secret) may be sent
    back as the masked value the API showed, meaning "keep the stored one"."""
    type = fields.Str(required=True, validate=validate.OneOf(CHANNEL_TYPES))
    url = fields.Str(validate=validate.Length(max=2000))
    channel = fields.Str(validate=validate.Length(min=1, max=80))
    bot_token = fields.Str(validate=validate.Length(max=200))
    chat_id = fields.Str(validate=validate.Length(min=1, max=64))
    base_url = fields.Str(validate=[validate.Length(max=500), _web_url])
    secret = fields.Str(validate=validate.Length(max=256))

    @validates_schema
    def fields_of_type(self, data, **_kwargs):
        allowed, _ = CHANNEL_FIELDS.get(data.get("type"), ((), ()))
        extra = {name: [f"not used by a {data.get('type')} channel"] for name in data
                 if name != "type" and name not in allowed}
        if extra:
            raise ValidationError(extra)


class QuietHoursSchema(Schema):
    start = fields.Str(required=True, validate=HHMM)
    end = fields.Str(required=True, validate=HHMM)
    timezone = fields.Str(load_default=None, allow_none=True, validate=[validate.Length(max=64), _zone])


class PreferencesSchema(Schema):
    """PUT replaces the preferences: what is left out goes back to the default."""
    name = fields.Str(validate=validate.Length(min=1, max=200))
    language = fields.Str(load_default=None, allow_none=True, validate=validate.OneOf(LANGUAGES))
    timezone = fields.Str(load_default=None, allow_none=True, validate=[validate.Length(max=64), _zone])
    channels = fields.List(fields.Nested(ChannelSchema), load_default=lambda: [{"type": "email"}],
                           validate=validate.Length(min=1, max=len(CHANNEL_TYPES)))
    quiet_hours = fields.Nested(QuietHoursSchema, load_default=None, allow_none=True)

    @validates("channels")
    def one_of_each(self, value, **_kwargs):
        # runs even when an item failed its own validation: look only at what did load
        types = [c.get("type") for c in value if isinstance(c, dict) and c.get("type")]
        if len(types) != len(set(types)):
            raise ValidationError("each channel type may appear once")


class RecipientSchema(Schema):
    address = fields.Str()
    name = fields.Str()
    chat = fields.Str(allow_none=True)
    language = fields.Str(allow_none=True, metadata={"description": "preference; null = contact's or ticket's"})
    timezone = fields.Str(allow_none=True)
    channels = fields.List(fields.Dict(), metadata={"description": "in order; secrets masked"})
    quiet_hours = fields.Dict(allow_none=True)
    preferences_set = fields.Bool()
    contact_language = fields.Str(allow_none=True)
    contact_timezone = fields.Str(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class RecipientQuery(Schema):
    limit = fields.Int(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.Str(load_default=None, validate=validate.Length(max=254))


class RecipientPage(Schema):
    items = fields.List(fields.Nested(RecipientSchema))
    next_cursor = fields.Str(allow_none=True)


class DeliveryQuery(Schema):
    ticket_id = fields.Str(validate=validate.Length(max=64))
    ticket_key = fields.Str(validate=validate.Length(max=64))
    status = fields.Str(validate=validate.OneOf(STATES))
    channel = fields.Str(validate=validate.OneOf(CHANNEL_TYPES))
    recipient = fields.Str(validate=validate.Length(max=254))
    limit = fields.Int(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.Str(load_default=None, validate=validate.Length(max=200))


class DeliverySchema(Schema):
    id = fields.Str()
    status = fields.Str(attribute="state", metadata={"description": "queued | sending | sent | retrying | dead"})
    channel = fields.Str()
    recipient = fields.Str()
    recipient_name = fields.Str()
    role = fields.Str(metadata={"description": "why they were told: reporter, group, assignee, manager, developers"})
    source_event_id = fields.Str()
    source_event_type = fields.Str()
    correlation_id = fields.Str()
    ticket_id = fields.Str(allow_none=True)
    ticket_key = fields.Str(allow_none=True)
    language = fields.Str()
    subject = fields.Str()
    urgent = fields.Bool()
    attempts = fields.Int()
    next_attempt_at = fields.DateTime()
    last_error = fields.Str(allow_none=True)
    fallback_of = fields.Str(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    sent_at = fields.DateTime(allow_none=True)


class DeliveryDetailSchema(DeliverySchema):
    body_text = fields.Str()


class DeliveryPage(Schema):
    items = fields.List(fields.Nested(DeliverySchema))
    next_cursor = fields.Str(allow_none=True)
