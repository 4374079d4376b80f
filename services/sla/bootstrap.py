"""Wires the sla service: database, seed, API, ticket consumers and the timer engine."""
from __future__ import annotations

from dataclasses import dataclass

from services.sla import store
from services.sla.api import PREFIX, blp
from services.sla.engine import Engine
from services.sla.handlers import TicketHandlers
from shared.auth import TokenStore
from shared.clock import SystemClock
from shared.config import Settings
from shared.db import Database, migrate
from shared.http import create_service_app
from shared.service import Service


@dataclass
class Sla:
    """What the views reach through shared.http.deps()."""
    db: Database
    clock: object
    calendars: store.Calendars
    engine: Engine


def build(settings: Settings, *, bus, clock=None) -> Service:
    clock = clock or SystemClock()
    db = Database(settings.database_for("sla"), name="tierline-sla")
    migrate(db, "services.sla")
    store.seed(db, settings.domain, clock.now())
    calendars = store.Calendars()
    engine = Engine(db, clock, calendars)
    service = Service(name="sla", settings=settings, db=db, bus=bus, clock=clock)
    service.app = create_service_app(
        service="sla", title="Tierline SLA", prefix=PREFIX, blueprints=[blp],
        tokens=TokenStore(settings.tokens_path()), max_body_bytes=settings.max_body_bytes,
        ready=service.ready, dependencies=Sla(db=db, clock=clock, calendars=calendars, engine=engine))
    service.extras["prefixes"] = (PREFIX,)
    service.extras["engine"] = engine
    service.consume("tickets", TicketHandlers(clock, calendars).routes())
    # One interval job scans the clocks table; never a job per ticket (DESIGN.md, reliability).
    service.every(settings.sla_tick_seconds, engine.tick, "timer")
    return service
