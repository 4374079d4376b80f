"""Request and response schemas of the sla API (they also validate the shipped config)."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from services.sla.calendar import DAY_KEYS
from shared.events import CHANNELS, PRIORITIES, TIERS

SECONDS = validate.Range(min=1, max=10 * 366 * 86400)  # up to ten years of target
NAME = validate.Length(min=1, max=100)
CALENDAR_NAME = [validate.Length(min=1, max=64),
                 validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", error="letters, digits, '.', '_' and '-' only")]
STATES = ("running", "paused", "met", "breached", "stopped")


class MatchSchema(Schema):
    priority = fields.String(required=True, validate=validate.OneOf(PRIORITIES))
    category = fields.String(load_default=None, allow_none=True, validate=NAME)
    service = fields.String(load_default=None, allow_none=True, validate=NAME)
    channel = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(CHANNELS))


class PolicyInSchema(Schema):
    name = fields.String(required=True, validate=NAME)
    position = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=0, max=1_000_000),
                              metadata={"description": "first match wins, lowest position first; default: last"})
    match = fields.Nested(MatchSchema, required=True)
    calendar = fields.String(required=True, validate=CALENDAR_NAME)
    resolution_calendar = fields.String(load_default=None, allow_none=True, validate=CALENDAR_NAME,
                                        metadata={"description": "calendar of the resolution clock, if not `calendar`"})
    first_response = fields.Integer(required=True, strict=True, validate=SECONDS,
                                    metadata={"description": "business seconds"})
    resolution = fields.Integer(required=True, strict=True, validate=SECONDS)
    warnings = fields.List(fields.Integer(strict=True, validate=validate.Range(min=1, max=99)),
                           load_default=list, validate=validate.Length(max=10),
                           metadata={"description": "percents of each clock's target"})
    ola = fields.Dict(keys=fields.String(validate=validate.OneOf(TIERS)),
                      values=fields.Integer(strict=True, validate=SECONDS), load_default=dict,
                      metadata={"description": "per-tier OLA targets in business seconds"})


class PolicySchema(PolicyInSchema):
    id = fields.Integer(dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)


class CalendarInSchema(Schema):
    """Deeper checks (time zone, window times and overlaps, holiday dates) are the calendar's
    own (services.sla.calendar.Calendar.from_dict) and come back as 422 naming the field."""
    name = fields.String(required=True, validate=CALENDAR_NAME)
    timezone = fields.String(required=True, validate=validate.Length(min=1, max=64),
                             metadata={"description": "IANA time zone, e.g. Europe/Moscow"})
    always_on = fields.Boolean(load_default=False)
    holiday_country = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=2, max=10),
                                    metadata={"description": "public holidays of this country (holidays package), e.g. RU"})
    holidays = fields.List(fields.String(validate=validate.Length(max=10)), load_default=list,
                           validate=validate.Length(max=2000), metadata={"description": "YYYY-MM-DD dates"})
    windows = fields.Dict(keys=fields.String(validate=validate.OneOf(DAY_KEYS)),
                          values=fields.List(fields.List(fields.String(validate=validate.Length(max=5)))),
                          load_default=dict, metadata={"description": 'e.g. {"mon": [["09:00", "13:00"], ["14:00", "18:00"]]}'})

    @validates_schema
    def has_time(self, data, **_):
        if not data.get("always_on") and not any(data.get("windows", {}).values()):
            raise ValidationError("a calendar needs working windows unless always_on is true", "windows")


class CalendarUpdateSchema(CalendarInSchema):
    name = fields.String(load_default=None, allow_none=True, validate=CALENDAR_NAME,
                         metadata={"description": "the name in the path; renaming is not supported"})


class CalendarSchema(CalendarInSchema):
    version = fields.Integer(dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)


class ClockSchema(Schema):
    name = fields.String(metadata={"description": "first_response | resolution | ola:<tier>"})
    tier = fields.String(allow_none=True)
    state = fields.String(validate=validate.OneOf(STATES))
    calendar = fields.String()
    started_at = fields.DateTime()
    due_at = fields.DateTime(allow_none=True, metadata={"description": "null while paused"})
    target_seconds = fields.Integer(allow_none=True)
    elapsed_seconds = fields.Integer(metadata={"description": "business seconds"})
    remaining_seconds = fields.Integer(allow_none=True, metadata={"description": "business seconds; negative when overdue"})
    paused_seconds = fields.Integer(metadata={"description": "wall seconds spent paused"})
    warnings = fields.List(fields.Integer())
    warnings_fired = fields.List(fields.Integer())
    breached_at = fields.DateTime(allow_none=True)
    stopped_at = fields.DateTime(allow_none=True)


class TierSchema(Schema):
    tier = fields.String()
    consumed_seconds = fields.Integer(metadata={"description": "business seconds the tier held the ticket"})


class TicketSlaSchema(Schema):
    ticket_id = fields.String()
    key = fields.String()
    priority = fields.String()
    status = fields.String()
    tier = fields.String(allow_none=True)
    policy = fields.String(allow_none=True)
    clocks = fields.List(fields.Nested(ClockSchema))
    tiers = fields.List(fields.Nested(TierSchema))


class PreviewQuerySchema(Schema):
    priority = fields.String(required=True, validate=validate.OneOf(PRIORITIES))


class PreviewSchema(Schema):
    ticket_id = fields.String()
    key = fields.String()
    priority = fields.String(metadata={"description": "the ticket's current priority"})
    preview_priority = fields.String()
    policy = fields.String(allow_none=True, metadata={"description": "the policy the new priority would get"})
    clocks = fields.List(fields.Nested(ClockSchema))
