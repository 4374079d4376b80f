"""Tables of the escalation service (its own database; never another service's)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

UTC_DATETIME = DateTime(timezone=True)


class Base(DeclarativeBase):
    pass


class SupportGroup(Base):
    __tablename__ = "support_groups"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    tier: Mapped[str] = mapped_column(String(8), nullable=False)
    members: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    manager: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    on_call: Mapped[str | None] = mapped_column(String(200), nullable=True)
    handles: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    tracker: Mapped[str | None] = mapped_column(String(100), nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTC_DATETIME, nullable=False)


class RoutingRule(Base):
    __tablename__ = "routing_rules"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    match: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    group: Mapped[str] = mapped_column(String(200), nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UTC_DATETIME, nullable=False)


class Option(Base):
    """Small settings edited through the API (the default group) and the seeding marker."""
    __tablename__ = "options"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[dict | list | str | None] = mapped_column(JSON, nullable=True)


class LadderRow(Base):
    __tablename__ = "ladders"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    priorities: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    ping_pong_limit: Mapped[int] = mapped_column(Integer, nullable=False)
    steps: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    updated_at: Mapped[dt.datetime] = mapped_column(UTC_DATETIME, nullable=False)


class Ticket(Base):
    """Escalation's read model of a ticket, built from ticket.* events (intake stays the owner)."""
    __tablename__ = "tickets"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(40), nullable=False)
    title: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    priority: Mapped[str | None] = mapped_column(String(4), nullable=True)
    status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    category: Mapped[str | None] = mapped_column(String(200), nullable=True)
    service: Mapped[str | None] = mapped_column(String(200), nullable=True)
    channel: Mapped[str | None] = mapped_column(String(20), nullable=True)
    reporter: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    tier: Mapped[str | None] = mapped_column(String(8), nullable=True)
    group: Mapped[str | None] = mapped_column(String(200), nullable=True)
    assignee: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # The L1 placement that held the ticket last: where a fixed defect sends it back.
    l1_group: Mapped[str | None] = mapped_column(String(200), nullable=True)
    l1_assignee: Mapped[str | None] = mapped_column(String(200), nullable=True)
    moves: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Placed by routing rules only (no escalation or human move since): a category change re-routes.
    auto_placed: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # The latest move escalation decided: an older decision confirmed late does not undo it.
    last_escalation_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    snapshot_at: Mapped[dt.datetime] = mapped_column(UTC_DATETIME, nullable=False)
    correlation_id: Mapped[str] = mapped_column(String(64), nullable=False)


class EscalationRecord(Base):
    """One decision about a ticket and why it was taken (the escalation history)."""
    __tablename__ = "escalations"
    __table_args__ = (Index("ix_escalations_ticket", "ticket_id", "at"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    ticket_id: Mapped[str] = mapped_column(String(64), nullable=False)
    at: Mapped[dt.datetime] = mapped_column(UTC_DATETIME, nullable=False)
    seq: Mapped[int] = mapped_column(Integer, nullable=False)  # order within a ticket (same instant)
    trigger: Mapped[str] = mapped_column(String(20), nullable=False)
    from_tier: Mapped[str | None] = mapped_column(String(8), nullable=True)
    from_group: Mapped[str | None] = mapped_column(String(200), nullable=True)
    to_tier: Mapped[str | None] = mapped_column(String(8), nullable=True)
    to_group: Mapped[str | None] = mapped_column(String(200), nullable=True)
    who: Mapped[str] = mapped_column(String(200), nullable=False)
    why: Mapped[str] = mapped_column(Text, nullable=False, default="")
    clock: Mapped[str | None] = mapped_column(String(40), nullable=True)
    percent: Mapped[int | None] = mapped_column(Integer, nullable=True)
    outcome: Mapped[str] = mapped_column(String(30), nullable=False)
    applied_at: Mapped[dt.datetime | None] = mapped_column(UTC_DATETIME, nullable=True)


class FiredStep(Base):
    """A ladder step that fired for a ticket and clock: each fires at most once."""
    __tablename__ = "fired_steps"
    ticket_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    clock: Mapped[str] = mapped_column(String(40), primary_key=True)
    step: Mapped[str] = mapped_column(String(200), primary_key=True)
    fired_at: Mapped[dt.datetime] = mapped_column(UTC_DATETIME, nullable=False)
    escalation_id: Mapped[str | None] = mapped_column(String(36), nullable=True)


class Defect(Base):
    """A defect in a developers' tracker: first a job to create it (its id is the idempotency
    key), then the link, then the tracker's status as its webhook reports it."""
    __tablename__ = "defects"
    __table_args__ = (UniqueConstraint("tracker", "defect_id", name="uq_defects_tracker_defect"),
                      Index("ix_defects_due", "status", "next_attempt_at"),
                      Index("ix_defects_ticket", "ticket_id"))
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    ticket_id: Mapped[str] = mapped_column(String(64), nullable=False)
    key: Mapped[str] = mapped_column(String(40), nullable=False)
    tracker: Mapped[str] = mapped_column(String(100), nullable=False)
    group: Mapped[str] = mapped_column(String(200), nullable=False)
    escalation_id: Mapped[str] = mapped_column(String(36), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)  # pending | linked | resolved
    request: Mapped[dict] = mapped_column(JSON, nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTC_DATETIME, nullable=False)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTC_DATETIME, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    defect_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    url: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    tracker_status: Mapped[str | None] = mapped_column(String(40), nullable=True)
    resolution: Mapped[str | None] = mapped_column(String(20), nullable=True)
    correlation_id: Mapped[str] = mapped_column(String(64), nullable=False)
    causation_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTC_DATETIME, nullable=False)
    linked_at: Mapped[dt.datetime | None] = mapped_column(UTC_DATETIME, nullable=True)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTC_DATETIME, nullable=True)


class WebhookDelivery(Base):
    """Deliveries already taken from a tracker: a replay is answered without effect."""
    __tablename__ = "webhook_deliveries"
    tracker: Mapped[str] = mapped_column(String(100), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(UTC_DATETIME, nullable=False)
