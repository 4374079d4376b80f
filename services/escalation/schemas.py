"""Request and response schemas of the escalation API (also used to check the shipped defaults)."""
from __future__ import annotations

import functools
import zoneinfo

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates, validates_schema

from shared.events import CHANNELS, PRIORITIES, TIERS

NAME = validate.Length(min=1, max=200)
LADDER_EVENTS = ("sla.warning", "sla.breached")
LADDER_CLOCKS = ("first_response", "resolution", "ola", *(f"ola:{t}" for t in TIERS))
LADDER_ACTIONS = ("notify_manager", "next_tier")
DEFECT_STATUSES = ("pending", "linked", "resolved")


@functools.lru_cache(maxsize=1)
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class ContactSchema(Schema):
    name = fields.Str(required=True, validate=NAME)
    email = fields.Email(load_default=None, allow_none=True, validate=validate.Length(max=320))
    chat = fields.Str(load_default=None, allow_none=True, validate=validate.Length(max=200))
    timezone = fields.Str(load_default=None, allow_none=True, validate=validate.Length(max=64))
    language = fields.Str(load_default="en", validate=validate.Length(min=2, max=10))

    @validates("timezone")
    def _known_zone(self, value, **_):
        if value is not None and value not in _time_zones():
            raise ValidationError(f"unknown IANA time zone {value!r}")


class HandlesSchema(Schema):
    categories = fields.List(fields.Str(validate=NAME), load_default=list, validate=validate.Length(max=200))
    services = fields.List(fields.Str(validate=NAME), load_default=list, validate=validate.Length(max=200))


class GroupSchema(Schema):
    # 100: intake stores the group a ticket is in, and its column (and its filters) hold 100.
    name = fields.Str(required=True, validate=validate.Length(min=1, max=100))
    tier = fields.Str(required=True, validate=validate.OneOf(TIERS))
    members = fields.List(fields.Nested(ContactSchema), load_default=list, validate=validate.Length(max=500))
    manager = fields.Nested(ContactSchema, load_default=None, allow_none=True)
    on_call = fields.Str(load_default=None, allow_none=True, validate=NAME,
                         metadata={"description": "name of a member who is on call"})
    handles = fields.Nested(HandlesSchema, load_default=lambda: {"categories": [], "services": []},
                            metadata={"description": "empty lists: the group takes anything"})
    tracker = fields.Str(load_default=None, allow_none=True, validate=validate.Length(min=1, max=100),
                         metadata={"description": "DEV groups: the tracker their defects go to"})

    @validates_schema
    def _consistent(self, data, **_):
        if data.get("on_call") and data["on_call"] not in {m["name"] for m in data.get("members") or []}:
            raise ValidationError("must be the name of one of the members", "on_call")
        if data.get("tracker") and data.get("tier") != "DEV":
            raise ValidationError("only DEV groups have a tracker", "tracker")


class MatchSchema(Schema):
    category = fields.Str(load_default=None, allow_none=True, validate=NAME)
    service = fields.Str(load_default=None, allow_none=True, validate=NAME)
    priority = fields.Str(load_default=None, allow_none=True, validate=validate.OneOf(PRIORITIES))
    channel = fields.Str(load_default=None, allow_none=True, validate=validate.OneOf(CHANNELS))


class RuleSchema(Schema):
    id = fields.Str(dump_only=True)
    position = fields.Int(load_default=None, allow_none=True, validate=validate.Range(min=0, max=1_000_000),
                          metadata={"description": "evaluation order, lowest first; default: last"})
    match = fields.Nested(MatchSchema, load_default=dict,
                          metadata={"description": "every given criterion must hold; empty matches all"})
    group = fields.Str(required=True, validate=NAME)


class RoutingSchema(Schema):
    default_group = fields.Str(required=True, validate=NAME)


class StepSchema(Schema):
    on = fields.Str(required=True, validate=validate.OneOf(LADDER_EVENTS))
    clock = fields.Str(required=True, validate=validate.OneOf(LADDER_CLOCKS),
                       metadata={"description": "ola = the OLA clock of the tier holding the ticket"})
    min_percent = fields.Int(load_default=0, validate=validate.Range(min=0, max=100),
                             metadata={"description": "sla.warning steps: fire from this percentage on"})
    action = fields.Str(required=True, validate=validate.OneOf(LADDER_ACTIONS))


class LadderSchema(Schema):
    name = fields.Str(required=True, validate=validate.Length(min=1, max=100))
    priorities = fields.List(fields.Str(validate=validate.OneOf(PRIORITIES)), required=True,
                             validate=validate.Length(min=1, max=len(PRIORITIES)))
    ping_pong_limit = fields.Int(load_default=3, validate=validate.Range(min=1, max=100),
                                 metadata={"description": "moves allowed after routing; the next goes to the manager"})
    steps = fields.List(fields.Nested(StepSchema), load_default=list, validate=validate.Length(max=50))

    @validates("priorities")
    def _distinct(self, value, **_):
        if len(set(value)) != len(value):
            raise ValidationError("priorities must not repeat")


class PlaceSchema(Schema):
    tier = fields.Str(allow_none=True)
    group = fields.Str(allow_none=True)


class RecordSchema(Schema):
    id = fields.Str()
    at = fields.AwareDateTime(format="iso")
    trigger = fields.Str(metadata={"description": "initial|reroute|ladder|manual|ping_pong|defect|defect_resolved"})
    from_ = fields.Nested(PlaceSchema, data_key="from")
    to = fields.Nested(PlaceSchema)
    who = fields.Str()
    why = fields.Str()
    clock = fields.Str(allow_none=True)
    percent = fields.Int(allow_none=True)
    outcome = fields.Str(metadata={"description": "routed|applied|manager_notified|refused|blocked|skipped|linked|returned"})


class DefectSchema(Schema):
    id = fields.Str(metadata={"description": "the tracker job id, also its Idempotency-Key"})
    ticket_id = fields.Str()
    key = fields.Str()
    tracker = fields.Str()
    group = fields.Str()
    escalation_id = fields.Str()
    status = fields.Str(metadata={"description": "pending (not yet in the tracker) | linked | resolved"})
    defect_id = fields.Str(allow_none=True)
    url = fields.Str(allow_none=True)
    tracker_status = fields.Str(allow_none=True)
    resolution = fields.Str(allow_none=True)
    attempts = fields.Int()
    next_attempt_at = fields.AwareDateTime(format="iso")
    last_error = fields.Str(allow_none=True)
    created_at = fields.AwareDateTime(format="iso")
    linked_at = fields.AwareDateTime(format="iso", allow_none=True)
    resolved_at = fields.AwareDateTime(format="iso", allow_none=True)


class DefectQuerySchema(Schema):
    status = fields.Str(validate=validate.OneOf(DEFECT_STATUSES))
    ticket_id = fields.Str(validate=validate.Length(min=1, max=64))
    tracker = fields.Str(validate=validate.Length(min=1, max=100))


class TicketViewSchema(Schema):
    id = fields.Str()
    key = fields.Str()
    title = fields.Str()
    priority = fields.Str(allow_none=True)
    status = fields.Str(allow_none=True)
    tier = fields.Str(allow_none=True)
    group = fields.Str(allow_none=True)
    assignee = fields.Str(allow_none=True)
    l1_owner = fields.Dict(metadata={"description": "where a fixed defect sends the ticket back"})
    moves = fields.Int(metadata={"description": "moves between groups since routing (ping-pong guard)"})


class TicketHistorySchema(Schema):
    ticket = fields.Nested(TicketViewSchema)
    records = fields.List(fields.Nested(RecordSchema))
    defects = fields.List(fields.Nested(DefectSchema))


class TrackerSchema(Schema):
    name = fields.Str()
    kind = fields.Str(metadata={"description": "webhook | gitlab"})
    url = fields.Str(allow_none=True, metadata={"description": "without credentials"})
    project = fields.Str(allow_none=True)
    configured = fields.Bool(metadata={"description": "false: defects wait until a URL is set"})
    pending_defects = fields.Int()


class WebhookSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # trackers add fields of their own

    delivery_id = fields.Str(load_default=None, allow_none=True, validate=validate.Length(min=1, max=128))
    defect_id = fields.Str(required=True, validate=validate.Length(min=1, max=100))
    status = fields.Str(required=True, validate=validate.Length(min=1, max=40),
                        metadata={"description": "fixed|resolved|closed|wontfix|in_progress|..."})
    comment = fields.Str(load_default="", validate=validate.Length(max=20000))


class WebhookResultSchema(Schema):
    status = fields.Str(metadata={"description": "resolved | updated | duplicate | ignored"})
    defect_id = fields.Str(allow_none=True)
