"""Intake's tables: tickets and everything hanging off them (migrations/versions/0001_initial.py
creates the same ones explicitly)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, ForeignKey, Integer, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

AutoId = BigInteger().with_variant(Integer, "sqlite")
Instant = DateTime(timezone=True)


class Base(DeclarativeBase):
    pass


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, unique=True)
    key: Mapped[str] = mapped_column(String(20), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), index=True)
    priority: Mapped[str] = mapped_column(String(4), index=True)
    impact: Mapped[str | None] = mapped_column(String(20))
    urgency: Mapped[str | None] = mapped_column(String(20))
    tier: Mapped[str | None] = mapped_column(String(8), index=True)
    group: Mapped[str | None] = mapped_column("group_name", String(100), index=True)
    assignee: Mapped[str | None] = mapped_column(String(200), index=True)
    category: Mapped[str | None] = mapped_column(String(100))
    service: Mapped[str | None] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(20))
    reporter_name: Mapped[str] = mapped_column(String(200))
    reporter_email: Mapped[str | None] = mapped_column(String(254), index=True)
    language: Mapped[str] = mapped_column(String(10), default="en")
    created_by: Mapped[str] = mapped_column(String(200))
    # dedup_active holds dedup_key only while the ticket is open; its unique constraint is what
    # makes two concurrent alerts land on one ticket (NULLs never collide).
    dedup_key: Mapped[str | None] = mapped_column(String(200))
    dedup_active: Mapped[str | None] = mapped_column(String(200), unique=True)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    reassignments: Mapped[int] = mapped_column(Integer, default=0)
    tiers_reached: Mapped[list] = mapped_column(JSON, default=list)
    l1_tier: Mapped[str | None] = mapped_column(String(8))
    l1_group: Mapped[str | None] = mapped_column(String(100))
    l1_assignee: Mapped[str | None] = mapped_column(String(200))
    at_risk: Mapped[bool] = mapped_column(Boolean, default=False)
    breached: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    breached_clocks: Mapped[list] = mapped_column(JSON, default=list)
    first_response_at: Mapped[dt.datetime | None] = mapped_column(Instant)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(Instant)
    closed_at: Mapped[dt.datetime | None] = mapped_column(Instant)
    created_at: Mapped[dt.datetime] = mapped_column(Instant, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(Instant)
    csat: Mapped[int | None] = mapped_column(Integer)
    nps: Mapped[int | None] = mapped_column(Integer)
    feedback_comment: Mapped[str | None] = mapped_column(Text)
    feedback_at: Mapped[dt.datetime | None] = mapped_column(Instant)
    version: Mapped[int] = mapped_column(Integer, default=1)


class Counter(Base):
    """Gap-free INC numbers: the row is locked by the UPDATE until the creating transaction ends."""
    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    principal: Mapped[str] = mapped_column(String(200), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    ticket_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[dt.datetime] = mapped_column(Instant, index=True)


class Comment(Base):
    __tablename__ = "comments"
    __table_args__ = (UniqueConstraint("ticket_id", "position", name="uq_comments_ticket_position"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per ticket (taken under the ticket's row lock)
    author_name: Mapped[str] = mapped_column(String(200))
    author_email: Mapped[str | None] = mapped_column(String(254))
    author_role: Mapped[str] = mapped_column(String(20))
    public: Mapped[bool] = mapped_column(Boolean)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(Instant)


class History(Base):
    __tablename__ = "history"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(Instant)
    actor: Mapped[str] = mapped_column(String(200))
    actor_role: Mapped[str] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(40))
    public: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict] = mapped_column(JSON, default=dict)


class Defect(Base):
    __tablename__ = "defects"
    __table_args__ = (UniqueConstraint("ticket_id", "tracker", "defect_id", name="uq_defects_ticket_defect"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id"), index=True)
    tracker: Mapped[str] = mapped_column(String(100))
    defect_id: Mapped[str] = mapped_column(String(200))
    url: Mapped[str | None] = mapped_column(String(2000))
    status: Mapped[str] = mapped_column(String(20))
    linked_at: Mapped[dt.datetime] = mapped_column(Instant)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(Instant)


class SlaClock(Base):
    """The latest SLA state intake heard of, per ticket and clock (at_risk is derived from it)."""
    __tablename__ = "sla_clocks"

    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    clock: Mapped[str] = mapped_column(String(40), primary_key=True)
    state: Mapped[str] = mapped_column(String(20))
    percent: Mapped[int | None] = mapped_column(Integer)
    due_at: Mapped[str | None] = mapped_column(String(40))
    event_at: Mapped[dt.datetime] = mapped_column(Instant)
