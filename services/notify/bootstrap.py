"""Wires the notify service: database, planner (consumer), sender, API. Starts nothing."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.notify import api
from services.notify.handlers import PLANNED, Planner
from services.notify.render import Renderer
from services.notify.sender import Sender
from shared.auth import TokenStore
from shared.clock import SystemClock
from shared.config import ConfigError, Settings
from shared.db import Database, migrate
from shared.http import create_service_app
from shared.service import Service
from shared.topology import TOPOLOGY

NAME = "notify"


@dataclass
class NotifyDeps:
    """What the views reach through shared.http.deps()."""
    db: Database
    clock: Any
    sender: Sender


def build(settings: Settings, *, bus, clock=None) -> Service:
    clock = clock or SystemClock()
    db = Database(settings.database_for(NAME), name=f"tierline-{NAME}")
    migrate(db, f"services.{NAME}")
    service = Service(name=NAME, settings=settings, db=db, bus=bus, clock=clock)
    # Notify seeds no tables: who hears what is configuration (read at every start), recipients
    # are learned from the events or created through the API.
    config = settings.domain.get("notifications") or {}
    try:
        planner = Planner(rules=config.get("rules") or {}, default_language=config.get("language") or "en",
                          renderer=Renderer(), clock=clock, public_url=settings.public_url)
        sender = Sender(db, clock=clock, settings=settings)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None

    def wake_after_planning(session) -> None:
        if session.info.pop(PLANNED, False):
            sender.wake()

    db.on_commit(wake_after_planning)
    service.app = create_service_app(
        service=NAME, title="Tierline notify", prefix=api.PREFIX, blueprints=[api.blp],
        tokens=TokenStore(settings.tokens_path()), max_body_bytes=settings.max_body_bytes,
        ready=service.ready, dependencies=NotifyDeps(db=db, clock=clock, sender=sender))
    service.extras["prefixes"] = (api.PREFIX,)
    service.extras["sender"] = sender
    service.extras["planner"] = planner
    service.consume("events", planner.handlers(TOPOLOGY.queues[f"{NAME}.events"]))
    service.every(settings.notify_retry_seconds, sender.wake, "send")
    sender.attach(service.scheduler)
    return service
