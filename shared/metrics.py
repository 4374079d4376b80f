"""Prometheus metrics, defined once for every service (label `service` tells them apart)."""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

HTTP_REQUESTS = Counter("tierline_http_requests_total", "HTTP requests", ["service", "method", "status"])
HTTP_LATENCY = Histogram("tierline_http_request_seconds", "HTTP request latency", ["service"])
EVENTS_PUBLISHED = Counter("tierline_events_published_total", "Events published by the outbox relay", ["type"])
EVENTS_CONSUMED = Counter("tierline_events_consumed_total", "Deliveries handled, by outcome", ["queue", "outcome"])
OUTBOX_BACKLOG = Gauge("tierline_outbox_backlog", "Unpublished outbox rows seen by the last relay pass", ["service"])
NOTIFICATIONS = Counter("tierline_notifications_total", "Notification attempts", ["channel", "outcome"])
SLA_EVENTS = Counter("tierline_sla_events_total", "SLA events fired by the timer engine", ["type"])


def consumed(queue: str, outcome: str) -> None:
    EVENTS_CONSUMED.labels(queue=queue, outcome=outcome).inc()


def published(event_type: str) -> None:
    EVENTS_PUBLISHED.labels(type=event_type).inc()


def exposition() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
