"""The sla service's tables (created by migrations/versions/0001_initial.py)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.sla.policies import Policy

Stamp = DateTime(timezone=True)
BigId = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    pass


class CalendarRow(Base):
    __tablename__ = "calendars"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    spec: Mapped[dict] = mapped_column(JSON)            # services.sla.calendar.Calendar.to_dict()
    version: Mapped[int] = mapped_column(Integer, default=1)  # bumped on change: caches reparse
    created_at: Mapped[dt.datetime] = mapped_column(Stamp)
    updated_at: Mapped[dt.datetime] = mapped_column(Stamp)


class PolicyRow(Base):
    __tablename__ = "policies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    position: Mapped[int] = mapped_column(Integer)
    priority: Mapped[str] = mapped_column(String(8))
    category: Mapped[str | None] = mapped_column(String(100))
    service: Mapped[str | None] = mapped_column(String(100))
    channel: Mapped[str | None] = mapped_column(String(20))
    calendar: Mapped[str] = mapped_column(String(64))
    resolution_calendar: Mapped[str | None] = mapped_column(String(64))
    first_response: Mapped[int] = mapped_column(Integer)
    resolution: Mapped[int] = mapped_column(Integer)
    warnings: Mapped[list] = mapped_column(JSON)
    ola: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(Stamp)
    updated_at: Mapped[dt.datetime] = mapped_column(Stamp)

    def to_policy(self) -> Policy:
        return Policy(name=self.name, priority=self.priority, category=self.category, service=self.service,
                      channel=self.channel, calendar=self.calendar, resolution_calendar=self.resolution_calendar,
                      first_response=self.first_response, resolution=self.resolution,
                      warnings=tuple(self.warnings or ()), ola=dict(self.ola or {}), position=self.position)


class Ticket(Base):
    """What sla knows of a ticket: enough to choose its policy, name it in events and show its
    clocks only to who may see the ticket."""
    __tablename__ = "tickets"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(8))
    category: Mapped[str | None] = mapped_column(String(100))
    service: Mapped[str | None] = mapped_column(String(100))
    channel: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    tier: Mapped[str | None] = mapped_column(String(8))
    # Placement and reporter from the latest ticket.* snapshot: who may see the clocks.
    group_name: Mapped[str | None] = mapped_column(String(200))
    assignee: Mapped[str | None] = mapped_column(String(200))
    reporter_email: Mapped[str | None] = mapped_column(String(254))
    policy: Mapped[str | None] = mapped_column(String(100))
    correlation_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(Stamp)
    updated_at: Mapped[dt.datetime] = mapped_column(Stamp)

    __table_args__ = (Index("ix_tickets_key", "key"),)


class Clock(Base):
    """One SLA/OLA clock; the columns are the attributes of services.sla.domain.Clock."""
    __tablename__ = "clocks"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(String(64), ForeignKey("tickets.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(40))
    tier: Mapped[str | None] = mapped_column(String(8))
    seq: Mapped[int] = mapped_column(Integer, default=1)
    calendar: Mapped[str] = mapped_column(String(64))
    target_seconds: Mapped[int | None] = mapped_column(Integer)
    warnings: Mapped[list] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10))
    outcome: Mapped[str | None] = mapped_column(String(10))
    started_at: Mapped[dt.datetime] = mapped_column(Stamp)
    segment_started_at: Mapped[dt.datetime | None] = mapped_column(Stamp)
    segments: Mapped[list] = mapped_column(JSON)
    elapsed_before: Mapped[int] = mapped_column(Integer, default=0)
    paused_at: Mapped[dt.datetime | None] = mapped_column(Stamp)
    paused_seconds: Mapped[int] = mapped_column(Integer, default=0)
    warned: Mapped[int] = mapped_column(Integer, default=0)
    breached_at: Mapped[dt.datetime | None] = mapped_column(Stamp)
    stopped_at: Mapped[dt.datetime | None] = mapped_column(Stamp)
    due_at: Mapped[dt.datetime | None] = mapped_column(Stamp)
    next_fire_at: Mapped[dt.datetime | None] = mapped_column(Stamp)

    __table_args__ = (
        UniqueConstraint("ticket_id", "name", "seq", name="uq_clocks_ticket_name_seq"),
        Index("ix_clocks_ticket", "ticket_id"),
        Index("ix_clocks_next_fire", "next_fire_at", postgresql_where=text("next_fire_at IS NOT NULL"),
              sqlite_where=text("next_fire_at IS NOT NULL")),
    )

    @classmethod
    def from_domain(cls, clock) -> "Clock":
        return cls(**{name: getattr(clock, name) for name in DOMAIN_FIELDS})


DOMAIN_FIELDS = ("ticket_id", "name", "tier", "seq", "calendar", "target_seconds", "warnings", "status",
                 "outcome", "started_at", "segment_started_at", "segments", "elapsed_before", "paused_at",
                 "paused_seconds", "warned", "breached_at", "stopped_at", "due_at", "next_fire_at")
