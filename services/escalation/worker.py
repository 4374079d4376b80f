"""Sends defect jobs to the developers' trackers: retried with exponential backoff, never lost,
never sent by two workers at once.

A job is claimed in a short transaction (FOR UPDATE SKIP LOCKED on PostgreSQL) that sets a lease
and counts the attempt; the HTTP call runs outside any transaction; the result is written in a
second one, with escalation.defect_linked through the outbox. A worker that dies mid-call
leaves the lease to expire and the job is tried again with the same idempotency key.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import requests
from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError

from services.escalation import domain, registry, trackers
from services.escalation.models import Defect, Ticket, WebhookDelivery
from services.escalation.moves import Deps, Moves
from services.escalation.trackers import TrackerError

log = logging.getLogger(__name__)
KEEP_DELIVERIES = dt.timedelta(days=7)


@dataclass(frozen=True)
class RetryPolicy:
    poll_seconds: float = 2.0
    backoff_seconds: float = 5.0
    max_backoff_seconds: float = 600.0
    batch: int = 20

    @classmethod
    def from_config(cls, raw: dict | None) -> "RetryPolicy":
        raw = raw or {}
        return cls(**{name: type(getattr(cls, name))(raw[name]) for name in cls.__dataclass_fields__ if name in raw})

    def delay(self, attempts: int) -> float:
        return min(self.backoff_seconds * 2 ** max(attempts - 1, 0), self.max_backoff_seconds)


@dataclass(frozen=True)
class Claimed:
    id: str
    tracker: str
    request: dict
    attempts: int


class DefectWorker:
    def __init__(self, deps: Deps, policy: RetryPolicy, http: Any = None):
        self.deps, self.policy = deps, policy
        self.http = http or requests.Session()
        self._passes = 0

    def run_once(self) -> int:
        """Try every due job once; returns how many were tried."""
        tried = 0
        while tried < self.policy.batch:
            job = self._claim()
            if job is None:
                break
            self._attempt(job)
            tried += 1
        self._passes += 1
        if self._passes % 500 == 1:
            self._purge_deliveries()
        return tried

    def _claim(self) -> Claimed | None:
        now = self.deps.clock.now()
        with self.deps.db.transaction() as session:
            query = (select(Defect).where(Defect.status == "pending", Defect.next_attempt_at <= now,
                                          or_(Defect.lease_until.is_(None), Defect.lease_until < now))
                     .order_by(Defect.next_attempt_at).limit(1))
            if self.deps.db.is_postgres:
                query = query.with_for_update(skip_locked=True)
            job = session.scalar(query)
            if job is None:
                return None
            tracker = self.deps.trackers.get(job.tracker)
            job.attempts += 1
            job.lease_until = now + dt.timedelta(seconds=(tracker.timeout if tracker else 10.0) * 3 + 30)
            return Claimed(id=job.id, tracker=job.tracker, request=dict(job.request), attempts=job.attempts)

    def _attempt(self, job: Claimed) -> None:
        tracker = self.deps.trackers.get(job.tracker)
        try:
            if tracker is None:
                raise TrackerError(f"no tracker named {job.tracker!r} is configured")
            defect_id, url = trackers.create_defect(tracker, job.request, attempt=job.attempts, http=self.http)
        except TrackerError as exc:
            self._failed(job, str(exc))
            return
        try:
            self._linked(job, defect_id, url)
        except IntegrityError:
            self._failed(job, f"{job.tracker} answered defect id {defect_id}, already linked to another ticket")

    def _linked(self, job: Claimed, defect_id: str, url: str | None) -> None:
        with self.deps.db.transaction() as session:
            defect = session.get(Defect, job.id, with_for_update=True)
            if defect is None or defect.status != "pending":
                return  # another worker finished it after our lease ran out
            ticket = session.get(Ticket, defect.ticket_id, with_for_update=True)
            moves = Moves(self.deps, session, causation_id=defect.causation_id)
            defect.status, defect.defect_id, defect.url = "linked", defect_id, url
            defect.linked_at, defect.lease_until, defect.last_error = moves.now, None, None
            moves.record(ticket, "defect", outcome="linked", to=("DEV", defect.group), who=f"tracker:{job.tracker}",
                         why=f"defect {defect_id} created in {job.tracker} (attempt {job.attempts})"
                             + (f": {url}" if url else ""))
            group = registry.groups(session).get(defect.group)
            moves.emit(ticket, "escalation.defect_linked", {
                "key": defect.key, "tracker": job.tracker, "defect_id": defect_id, "url": url,
                "group": defect.group, "contacts": domain.contacts(group) if group else {}})
        log.info("defect %s for %s created in %s", defect_id, job.request["ticket"]["key"], job.tracker)

    def _failed(self, job: Claimed, error: str) -> None:
        delay = self.policy.delay(job.attempts)
        with self.deps.db.transaction() as session:
            defect = session.get(Defect, job.id, with_for_update=True)
            if defect is None or defect.status != "pending":
                return
            defect.last_error = error[:1000]
            defect.lease_until = None
            defect.next_attempt_at = self.deps.clock.now() + dt.timedelta(seconds=delay)
        log.warning("defect job %s (%s, %s): attempt %d failed, next in %.0fs: %s", job.id,
                    job.request["ticket"]["key"], job.tracker, job.attempts, delay, error)

    def _purge_deliveries(self) -> None:
        cutoff = self.deps.clock.now() - KEEP_DELIVERIES
        with self.deps.db.transaction() as session:
            session.execute(delete(WebhookDelivery).where(WebhookDelivery.received_at < cutoff))
