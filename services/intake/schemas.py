"""Request and response schemas of the intake API (marshmallow 4; unknown fields are refused)."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from shared.events import CHANNELS, PRIORITIES, STATUSES, TIERS

TITLE_MAX, BODY_MAX, REASON_MAX, NAME_MAX = 200, 20000, 2000, 200


def not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("must not be blank")


def text(max_len: int, **kwargs) -> fields.String:
    return fields.String(validate=[validate.Length(min=1, max=max_len), not_blank], **kwargs)


def optional(max_len: int, **kwargs) -> fields.String:
    return fields.String(validate=validate.Length(max=max_len), allow_none=True, **kwargs)


class PersonSchema(Schema):
    name = text(NAME_MAX, required=True)
    email = fields.Email(required=True, validate=validate.Length(max=254))


class TicketCreateSchema(Schema):
    title = text(TITLE_MAX, required=True)
    description = fields.String(load_default="", validate=validate.Length(max=BODY_MAX))
    reporter = fields.Nested(PersonSchema, load_default=None,
                             metadata={"description": "defaults to the caller; a reporter may only report for "
                                                      "themselves"})
    channel = fields.String(load_default="web", validate=validate.OneOf(CHANNELS))
    category = optional(100, load_default=None)
    service = optional(100, load_default=None)
    impact = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=20),
                           metadata={"description": "one of the configured levels (high, medium, low)"})
    urgency = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=20))
    priority = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(PRIORITIES),
                             metadata={"description": "staff only; overrides impact x urgency"})
    dedup_key = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=200))
    language = fields.String(load_default="en", validate=validate.Regexp(r"^[a-z]{2}(-[A-Za-z]{2})?$"))


class TicketPatchSchema(Schema):
    title = text(TITLE_MAX)
    priority = fields.String(validate=validate.OneOf(PRIORITIES))
    impact = fields.String(validate=validate.Length(min=1, max=20))
    urgency = fields.String(validate=validate.Length(min=1, max=20))
    category = optional(100)
    service = optional(100)
    assignee = fields.String(allow_none=True, validate=validate.Length(min=1, max=NAME_MAX))

    @validates_schema
    def not_empty(self, data, **_kwargs):
        if not data:
            raise ValidationError("at least one field to change is required", field_name="_schema")


class StatusSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    reason = fields.String(load_default="", validate=validate.Length(max=REASON_MAX))


class CommentCreateSchema(Schema):
    body = text(BODY_MAX, required=True)
    public = fields.Boolean(load_default=True)


class EscalationRequestSchema(Schema):
    to_tier = fields.String(required=True, validate=validate.OneOf(TIERS))
    to_group = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=100))
    reason = text(REASON_MAX, required=True)


class FeedbackSchema(Schema):
    csat = fields.Integer(strict=True, load_default=None, allow_none=True, validate=validate.Range(1, 5))
    nps = fields.Integer(strict=True, load_default=None, allow_none=True, validate=validate.Range(0, 10))
    comment = fields.String(load_default="", validate=validate.Length(max=REASON_MAX))

    @validates_schema
    def some_score(self, data, **_kwargs):
        if data.get("csat") is None and data.get("nps") is None:
            raise ValidationError("give csat, nps or both", field_name="csat")


class TicketListQuerySchema(Schema):
    status = fields.List(fields.String(validate=validate.OneOf(STATUSES)))
    tier = fields.List(fields.String(validate=validate.OneOf(TIERS)))
    priority = fields.List(fields.String(validate=validate.OneOf(PRIORITIES)))
    group = fields.String(validate=validate.Length(max=100))
    assignee = fields.String(validate=validate.Length(max=NAME_MAX))
    reporter = fields.String(validate=validate.Length(max=254), metadata={"description": "reporter email"})
    breached = fields.Boolean()
    at_risk = fields.Boolean()
    limit = fields.Integer(load_default=25, validate=validate.Range(1, 100))
    cursor = fields.String(validate=validate.Length(max=100))


class KpiQuerySchema(Schema):
    start = fields.DateTime(data_key="from", load_default=None, metadata={"description": "default: to - 30 days"})
    end = fields.DateTime(data_key="to", load_default=None, metadata={"description": "default: now"})
    group = fields.String(validate=validate.Length(max=100))
    priority = fields.String(validate=validate.OneOf(PRIORITIES))


# --- responses -------------------------------------------------------------------------------
Instant = fields.String  # ISO 8601 UTC strings


class DefectSchema(Schema):
    tracker = fields.String()
    defect_id = fields.String()
    url = fields.String(allow_none=True)
    status = fields.String()


class FeedbackOutSchema(Schema):
    csat = fields.Integer(allow_none=True)
    nps = fields.Integer(allow_none=True)
    comment = fields.String()
    at = Instant()


class TicketSchema(Schema):
    id = fields.String()
    key = fields.String()
    title = fields.String()
    description = fields.String()
    status = fields.String()
    priority = fields.String()
    impact = fields.String(allow_none=True)
    urgency = fields.String(allow_none=True)
    tier = fields.String(allow_none=True)
    group = fields.String(allow_none=True)
    assignee = fields.String(allow_none=True)
    category = fields.String(allow_none=True)
    service = fields.String(allow_none=True)
    channel = fields.String()
    reporter = fields.Nested(PersonSchema)
    language = fields.String()
    dedup_key = fields.String(allow_none=True)
    occurrences = fields.Integer()
    reassignments = fields.Integer()
    at_risk = fields.Boolean()
    breached = fields.Boolean()
    breached_clocks = fields.List(fields.String())
    defects = fields.List(fields.Nested(DefectSchema))
    first_response_at = Instant(allow_none=True)
    resolved_at = Instant(allow_none=True)
    closed_at = Instant(allow_none=True)
    created_at = Instant()
    updated_at = Instant()
    feedback = fields.Nested(FeedbackOutSchema, allow_none=True)
    version = fields.Integer(metadata={"description": "send as If-Match on PATCH/status to refuse stale updates"})


class TicketPageSchema(Schema):
    items = fields.List(fields.Nested(TicketSchema))
    next_cursor = fields.String(allow_none=True)


class CommentSchema(Schema):
    id = fields.String()
    ticket_id = fields.String()
    author = fields.Nested(PersonSchema)
    author_role = fields.String()
    public = fields.Boolean()
    body = fields.String()
    first_response = fields.Boolean()
    created_at = Instant()


class CommentListSchema(Schema):
    items = fields.List(fields.Nested(CommentSchema))


class HistoryEntrySchema(Schema):
    at = Instant()
    actor = fields.String()
    actor_role = fields.String()
    action = fields.String()
    public = fields.Boolean()
    reason = fields.String()
    details = fields.Dict()


class HistorySchema(Schema):
    items = fields.List(fields.Nested(HistoryEntrySchema))


class EscalationAcceptedSchema(Schema):
    status = fields.String()
    request_id = fields.String()
    ticket_id = fields.String()
    key = fields.String()
    to_tier = fields.String()
    to_group = fields.String(allow_none=True)
    reason = fields.String()
    requested_at = Instant()


class KpiSchema(Schema):
    window = fields.Dict()
    filters = fields.Dict()
    tickets = fields.Integer()
    backlog = fields.Integer()
    overdue = fields.Integer()
    resolved = fields.Integer()
    avg_first_response_seconds = fields.Float(allow_none=True)
    avg_resolution_seconds = fields.Float(allow_none=True)
    sla_compliance_percent = fields.Float(allow_none=True)
    first_contact_resolution_percent = fields.Float(allow_none=True)
    escalation_rate_percent = fields.Dict()
    reassignments = fields.Dict()
    csat = fields.Dict()
    nps = fields.Dict()
