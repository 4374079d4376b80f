"""JSON logs that carry the correlation id of the ticket flow being handled."""
from __future__ import annotations

import contextvars
import logging
import sys
from contextlib import contextmanager

from pythonjsonlogger.json import JsonFormatter

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)


class _CorrelationFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation_id.get()
        return True


@contextmanager
def correlated(value: str | None):
    token = correlation_id.set(value)
    try:
        yield
    finally:
        correlation_id.reset(token)


def setup_logging(level: str = "INFO", json_format: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_CorrelationFilter())
    if json_format:
        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(correlation_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)-7s %(name)s [%(correlation_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("pika", "apscheduler", "waitress.queue", "kombu", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
