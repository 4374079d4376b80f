"""What every service is made of once bootstrapped, and its background parts.

A service's `bootstrap.build(settings, bus=..., clock=...)` returns a Service: its database
(migrated), its Flask app, its consumers (subscribed on the bus, through the inbox), its outbox
relay and its scheduled jobs. The host (one service per process, or all four embedded) starts
and stops them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask
from sqlalchemy.orm import Session

from shared.bus import Bus
from shared.clock import SystemClock
from shared.config import Settings
from shared.db import Database
from shared.events import Event
from shared.outbox import OutboxRelay, idempotent, idempotent_batch
from shared.topology import TOPOLOGY

log = logging.getLogger(__name__)
EventHandler = Callable[[Session, Event], None]


@dataclass
class Service:
    name: str
    settings: Settings
    db: Database
    bus: Bus
    clock: Any = field(default_factory=SystemClock)
    app: Flask | None = None
    relay: OutboxRelay | None = None
    scheduler: BackgroundScheduler | None = None
    extras: dict = field(default_factory=dict)

    def __post_init__(self):
        self.relay = OutboxRelay(self.db, self.bus, service=self.name, interval=self.settings.relay_interval)
        # In-memory job store, private to this process: APScheduler job stores are never shared,
        # and jobs here are only periodic scans (SLA clocks, notify retries) safe in any replica.
        self.scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1,
                                                                           "misfire_grace_time": 30})

    def consume(self, purpose: str, handlers: dict[str, EventHandler]) -> None:
        """Subscribe `<service>.<purpose>` (bindings from the topology) with per-type handlers,
        run in one transaction with the inbox record (a prefetched backlog: one for several)."""
        queue = f"{self.name}.{purpose}"
        bindings = TOPOLOGY.queues[queue]

        def route(session: Session, event: Event) -> None:
            handler = handlers.get(event.type)
            if handler is not None:
                handler(session, event)

        self.bus.subscribe(queue, bindings, idempotent(self.db, queue, route),
                           max_attempts=self.settings.max_attempts,
                           batch_handler=idempotent_batch(self.db, queue, route))

    def every(self, seconds: float, job: Callable[[], Any], name: str) -> None:
        def safe():
            try:
                job()
            except Exception:  # a failed pass is retried by the next one
                log.exception("scheduled job %s failed", name)
        self.scheduler.add_job(safe, "interval", seconds=seconds, id=f"{self.name}.{name}", name=name)

    def ready(self) -> dict[str, bool]:
        return {"database": self.db.ping(), "bus": self.bus.ping()}

    def start_background(self) -> None:
        self.relay.start()
        self.scheduler.start()

    def stop_background(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        self.relay.stop()
