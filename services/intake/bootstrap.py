"""Wires the intake service: database, migrations, HTTP app, event handlers, upkeep job."""
from __future__ import annotations

from services.intake import api, handlers, housekeeping, reports
from services.intake.commands import Intake
from shared.auth import TokenStore
from shared.clock import SystemClock
from shared.config import Settings
from shared.db import Database, migrate
from shared.http import create_service_app
from shared.service import Service

PREFIX = "/api/v1/tickets"
REPORTS_PREFIX = "/api/v1/reports"
HOUSEKEEPING_SECONDS = 300
# Used when the configuration file has no `priorities:` section (the shipped one has).
DEFAULT_PRIORITIES = {
    "levels": ["P1", "P2", "P3", "P4"], "impact": ["high", "medium", "low"], "urgency": ["high", "medium", "low"],
    "matrix": {"high": {"high": "P1", "medium": "P2", "low": "P3"},
               "medium": {"high": "P2", "medium": "P3", "low": "P4"},
               "low": {"high": "P3", "medium": "P4", "low": "P4"}},
    "default": "P3",
}


def build(settings: Settings, *, bus, clock=None) -> Service:
    clock = clock or SystemClock()
    db = Database(settings.database_for("intake"), name="tierline-intake")
    migrate(db, "services.intake")
    # Intake seeds no tables: its only defaults (the priority matrix) are read from the config.
    service = Service(name="intake", settings=settings, db=db, bus=bus, clock=clock)
    deps = Intake(db=db, clock=clock, priorities=dict(settings.domain.get("priorities") or DEFAULT_PRIORITIES),
                  reopen_window_days=settings.reopen_window_days)
    service.app = create_service_app(
        service="intake", title="Tierline intake", prefix=PREFIX, blueprints=[api.blp, reports.blp],
        tokens=TokenStore(settings.tokens_path()), max_body_bytes=settings.max_body_bytes, ready=service.ready,
        dependencies=deps, extra_prefixes=(REPORTS_PREFIX,))
    service.extras["prefixes"] = (PREFIX, REPORTS_PREFIX)
    service.extras["deps"] = deps
    service.consume("events", handlers.table(clock))
    service.every(HOUSEKEEPING_SECONDS, lambda: housekeeping.run(deps), "housekeeping")
    return service
