"""Transactional outbox and idempotent inbox, the same tables in every service's database.

- `add(session, event)` writes an event in the caller's business transaction.
- `OutboxRelay` publishes unsent rows with confirms and marks them sent. Rows are taken with
  `FOR UPDATE SKIP LOCKED` on PostgreSQL, so several relays never publish one row twice.
  A relay killed between publish and commit publishes again on restart: at-least-once, and
  the consumers' inbox turns that into exactly-once effects.
- `idempotent(db, consumer, handler)` records the event id in the same transaction as the
  handler's effect; a redelivered event is skipped.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Callable

from sqlalchemy import (BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table, Text,
                        delete, func, insert, select, text, update)
from sqlalchemy.orm import Session

from shared import metrics
from shared.bus import Bus
from shared.clock import utcnow
from shared.db import Database, insert_ignoring_duplicates, inserted_keys
from shared.events import Event
from shared.logs import correlated

log = logging.getLogger(__name__)
metadata = MetaData()

outbox_table = Table(
    "outbox", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("type", String(80), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=True),
    Index("ix_outbox_unpublished", "id", postgresql_where=Column("published_at").is_(None),
          sqlite_where=Column("published_at").is_(None)),
)

inbox_table = Table(
    "inbox", metadata,
    Column("consumer", String(80), primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("processed_at", DateTime(timezone=True), nullable=False),
)


def create_tables(op) -> None:
    """For a service's first Alembic revision."""
    op.create_table(outbox_table.name, *[c._copy() for c in outbox_table.columns])
    op.create_index("ix_outbox_unpublished", "outbox", ["id"],
                    postgresql_where=text("published_at IS NULL"), sqlite_where=text("published_at IS NULL"))
    op.create_table(inbox_table.name, *[c._copy() for c in inbox_table.columns])


def add(session: Session, event: Event) -> None:
    session.execute(insert(outbox_table).values(
        event_id=event.id, type=event.type, body=event.to_json().decode(), created_at=utcnow()))
    session.info["outbox_dirty"] = True


def add_all(session: Session, events) -> None:
    """`add` for many events in one statement (the sla timer firing hundreds of clocks a pass)."""
    now = utcnow()
    rows = [{"event_id": e.id, "type": e.type, "body": e.to_json().decode(), "created_at": now} for e in events]
    if rows:
        session.execute(insert(outbox_table), rows)
        session.info["outbox_dirty"] = True


def idempotent(db: Database, consumer: str, handler: Callable[[Session, Event], None]):
    """Wrap `handler(session, event)` so each event id takes effect once for this consumer."""

    def handle(event: Event) -> None:
        with db.transaction() as session:
            # One statement: a duplicate (even one delivered concurrently to another replica)
            # finds the key taken, waits for that transaction and is skipped.
            if not insert_ignoring_duplicates(session, inbox_table, {
                    "consumer": consumer, "event_id": event.id, "processed_at": utcnow()}):
                log.info("skipping duplicate %s %s", event.type, event.id)
                return
            handler(session, event)

    handle.__name__ = getattr(handler, "__name__", "handle")
    return handle


def idempotent_batch(db: Database, consumer: str, handler: Callable[[Session, Event], None]):
    """`idempotent` for several events in one transaction (a consumer's prefetched backlog): one
    inbox INSERT for all, the handler for each new one in order, one commit. The session is
    flushed after each event, so the next one sees its effects exactly as in a transaction of
    its own. Any failure rolls everything back (the bus then handles them one by one)."""

    def handle_all(events: list[Event]) -> None:
        with db.transaction() as session:
            now = utcnow()
            unique = sorted({e.id for e in events})  # sorted: replicas take the keys in one order
            fresh = inserted_keys(session, inbox_table, "event_id",
                                  [{"consumer": consumer, "event_id": i, "processed_at": now} for i in unique])
            for event in events:
                if event.id not in fresh:
                    log.info("skipping duplicate %s %s", event.type, event.id)
                    continue
                fresh.discard(event.id)  # a second copy in the same batch is a duplicate too
                with correlated(event.correlation_id):
                    handler(session, event)
                session.flush()

    return handle_all


class OutboxRelay:
    """Publishes unsent outbox rows; woken right after commits that wrote events, and on a timer."""

    def __init__(self, db: Database, bus: Bus, *, service: str, interval: float = 0.2, batch: int = 200,
                 keep_published: dt.timedelta = dt.timedelta(days=7)):
        self.db, self.bus, self.service = db, bus, service
        self.interval, self.batch, self.keep_published = interval, batch, keep_published
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._passes = 0
        db.on_commit(self._after_commit)

    def _after_commit(self, session: Session) -> None:
        if session.info.pop("outbox_dirty", False):
            self._wake.set()

    def run_once(self) -> int:
        """Publish one batch; returns how many rows were published."""
        with self.db.transaction() as session:
            query = (select(outbox_table.c.id, outbox_table.c.body, outbox_table.c.type, outbox_table.c.event_id)
                     .where(outbox_table.c.published_at.is_(None))
                     .order_by(outbox_table.c.id).limit(self.batch))
            if self.db.is_postgres:
                query = query.with_for_update(skip_locked=True)
            rows = session.execute(query).all()
            # One batch, confirmed together: a confirm round trip per row capped a relay at a few
            # hundred events a second (bench/results, docs/performance.md).
            with self.bus.batch():
                for row in rows:
                    self.bus.publish_stored(row.type, row.event_id, row.body.encode())
            for row in rows:
                metrics.published(row.type)
            if rows:
                session.execute(update(outbox_table).where(outbox_table.c.id.in_([r.id for r in rows]))
                                .values(published_at=utcnow()))
        metrics.OUTBOX_BACKLOG.labels(service=self.service).set(len(rows))
        return len(rows)

    def flush(self, timeout: float = 10.0) -> None:
        """Publish until nothing is left (shutdown, tests)."""
        deadline = utcnow() + dt.timedelta(seconds=timeout)
        while self.run_once() and utcnow() < deadline:
            pass

    def purge_published(self) -> None:
        cutoff = utcnow() - self.keep_published
        with self.db.transaction() as session:
            session.execute(delete(outbox_table).where(outbox_table.c.published_at < cutoff))

    def _loop(self) -> None:
        backoff = self.interval
        while not self._stop.is_set():
            self._wake.clear()  # before the pass: a commit during it wakes the next one
            try:
                published = self.run_once()
                backoff = self.interval
                self._passes += 1
                if self._passes % 3000 == 0:
                    self.purge_published()
                if published == self.batch:
                    continue  # more waiting: no sleep
            except Exception as exc:  # broker or database away: keep the rows, try again later
                log.warning("outbox relay of %s failed, retrying in %.1fs: %r", self.service, backoff, exc)
                # Commits keep signalling while the broker is away; waking on them would turn
                # the backoff into a busy loop of failed connects.
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            self._wake.wait(backoff)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"outbox-{self.service}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)
        try:
            self.flush(timeout)
        except Exception as exc:
            log.warning("outbox of %s not fully flushed at shutdown (kept for next start): %r", self.service, exc)


def pending(db: Database) -> int:
    with db.transaction() as session:
        return session.execute(select(func.count()).select_from(outbox_table)
                               .where(outbox_table.c.published_at.is_(None))).scalar_one()
