"""Wires the escalation service: database, defaults, trackers, handlers, API, defect worker."""
from __future__ import annotations

import logging

from services.escalation import api, api_ladders, api_tickets, handlers, registry
from services.escalation.moves import Deps
from services.escalation.trackers import load_trackers
from services.escalation.worker import DefectWorker, RetryPolicy
from shared.auth import TokenStore
from shared.bus import Bus
from shared.clock import SystemClock, utcnow
from shared.config import ConfigError, Settings
from shared.db import Database, migrate
from shared.http import create_service_app
from shared.service import Service

log = logging.getLogger(__name__)
NAME = "escalation"
WORKER_JOB = "defect-jobs"


def build(settings: Settings, *, bus: Bus, clock=None, http=None) -> Service:
    """`http`: the trackers' HTTP client (a requests.Session by default; tests may pass a fake)."""
    clock = clock or SystemClock()
    db = Database(settings.database_for(NAME), name=f"tierline-{NAME}")
    migrate(db, f"services.{NAME}")
    registry.seed(db, dict(settings.domain), clock.now())
    try:
        policy = RetryPolicy.from_config(settings.domain.get("tracker_retry"))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"tracker_retry: {exc}") from None

    service = Service(name=NAME, settings=settings, db=db, bus=bus, clock=clock)
    deps = Deps(db=db, clock=clock, trackers=load_trackers(settings), public_url=settings.public_url)
    worker = DefectWorker(deps, policy, http=http)

    def wake_worker() -> None:
        """Run the worker now rather than at its next interval (a new or retried defect job)."""
        job = service.scheduler.get_job(f"{NAME}.{WORKER_JOB}")
        if job is not None and service.scheduler.running:
            job.modify(next_run_time=utcnow())  # APScheduler runs on wall time, not the test clock

    def after_commit(session) -> None:
        if session.info.pop("defect_job", False):
            wake_worker()

    deps.wake_worker = wake_worker
    db.on_commit(after_commit)

    service.app = create_service_app(
        service=NAME, title="Tierline escalation", prefix=api.PREFIX, blueprints=[api.blp, api_ladders.blp, api_tickets.blp],
        tokens=TokenStore(settings.tokens_path()), max_body_bytes=settings.max_body_bytes, ready=service.ready,
        dependencies=deps, public_endpoints=(api_tickets.WEBHOOK_ENDPOINT,))
    service.extras["prefixes"] = (api.PREFIX,)
    service.extras["worker"] = worker
    service.consume("events", handlers.table(deps))
    service.every(policy.poll_seconds, worker.run_once, WORKER_JOB)
    for tracker in deps.trackers.values():
        log.info("tracker %s (%s) %s", tracker.name, tracker.kind,
                 tracker.public_url if tracker.configured else "not configured: defect jobs wait")
    return service
