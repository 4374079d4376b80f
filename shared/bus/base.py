"""The bus port: publish events, subscribe handlers to queues, run, stop.

Both adapters share the delivery rules written here once:
- a handler returns -> ack;
- it raises PoisonMessage, or the message is not a valid envelope -> dead-letter at once;
- it raises a transient error (database or broker unreachable) -> wait with backoff and try
  the same message again, without counting an attempt (an outage must not dead-letter work);
- it raises anything else -> the message goes back to the queue with an attempt counted, and
  after `max_attempts` to the dead-letter queue `<queue>.dlq`. The service keeps consuming.

Deliveries already prefetched are handed to the subscription's batch handler together (one
database transaction for all, instead of one each); if the batch fails for any reason it is
rolled back and every event is handled on its own under the rules above, so a bad event costs
only itself.
"""
from __future__ import annotations

import contextlib
import enum
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Iterable

from sqlalchemy import exc as sa_exc

from shared import metrics
from shared.events import Event, PoisonMessage
from shared.logs import correlated

log = logging.getLogger(__name__)

Handler = Callable[[Event], None]
BatchHandler = Callable[[list[Event]], None]
ATTEMPTS_HEADER = "x-tierline-attempts"
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError, ConnectionError, TimeoutError)
TRANSIENT_WAIT_LIMIT = 30.0  # seconds a message is held in-process before it is handed back


class PublishError(Exception):
    """The broker did not confirm the message (nacked, unreachable)."""


class Outcome(enum.Enum):
    ACK = "ack"
    RETRY = "retry"      # back to the queue, one attempt counted
    REQUEUE = "requeue"  # back to the queue, no attempt counted (transient outage)
    DEAD = "dead"


@dataclass
class Subscription:
    queue: str          # logical name, e.g. "sla.tickets"; adapters add the prefix
    bindings: tuple[str, ...]
    handler: Handler
    max_attempts: int = 5
    batch_handler: BatchHandler | None = None  # the same effects as `handler` on each, in one go


@dataclass
class Topology:
    """Every consuming queue of the system with its bindings, declared by every process at start,
    so no event is published before the queues that must receive it exist."""
    queues: dict[str, tuple[str, ...]] = field(default_factory=dict)


class Bus(ABC):
    def __init__(self, url: str, *, prefix: str = "", prefetch: int = 20, batch: int = 20):
        self.url = url
        self.prefix = prefix
        self.prefetch = prefetch
        self.batch_size = max(1, min(batch, prefetch))  # a batch is what is already prefetched
        self.exchange = f"{prefix}tierline.events"
        self.dead_letter_exchange = f"{prefix}tierline.dlx"
        self.subscriptions: list[Subscription] = []
        self.stopping = False

    def name(self, queue: str) -> str:
        return f"{self.prefix}{queue}"

    def subscribe(self, queue: str, bindings: Iterable[str], handler: Handler, *, max_attempts: int = 5,
                  batch_handler: BatchHandler | None = None) -> None:
        self.subscriptions.append(Subscription(queue, tuple(bindings), handler, max_attempts, batch_handler))

    def dispatch_many(self, sub: Subscription, deliveries: list[tuple[bytes, int]]) -> list[Outcome]:
        """Outcomes for deliveries (body, attempts: 1 = first) in their order; valid events go to
        the batch handler together when there are several, else (or if that fails) one by one."""
        outcomes: list[Outcome | None] = [None] * len(deliveries)
        events: list[tuple[int, Event]] = []
        for i, (body, _attempts) in enumerate(deliveries):
            try:
                events.append((i, Event.from_json(body)))
            except PoisonMessage as exc:
                log.error("dead-lettering a malformed message on %s: %s", sub.queue, exc)
                outcomes[i] = Outcome.DEAD
        if len(events) > 1 and sub.batch_handler is not None and self._run_batch(sub, [e for _, e in events]):
            for i, _event in events:
                outcomes[i] = Outcome.ACK
        else:
            for i, event in events:
                with correlated(event.correlation_id):
                    outcomes[i] = self._run_handler(sub, event, deliveries[i][1])
        for outcome in outcomes:
            metrics.consumed(sub.queue, outcome.value)
        return outcomes

    def _run_batch(self, sub: Subscription, events: list[Event]) -> bool:
        try:
            sub.batch_handler(events)
            return True
        except Exception as exc:  # rolled back: each event is tried alone, with its own counting
            log.info("batch of %d on %s failed (%r); handling them one by one", len(events), sub.queue, exc)
            return False

    def _run_handler(self, sub: Subscription, event: Event, attempts: int) -> Outcome:
        waited, delay = 0.0, 0.2
        while True:
            try:
                sub.handler(event)
                return Outcome.ACK
            except PoisonMessage as exc:
                log.error("dead-lettering %s %s: %s", event.type, event.id, exc)
                return Outcome.DEAD
            except TRANSIENT_ERRORS as exc:
                if self.stopping or waited >= TRANSIENT_WAIT_LIMIT:
                    log.warning("giving %s %s back to the queue after %.0fs: %s", event.type, event.id, waited, exc)
                    return Outcome.REQUEUE
                log.warning("transient failure on %s %s, retrying in %.1fs: %s", event.type, event.id, delay, exc)
                time.sleep(delay)
                waited += delay
                delay = min(delay * 2, 5.0)
            except Exception:
                log.exception("handler failed on %s %s (attempt %d of %d)", event.type, event.id, attempts, sub.max_attempts)
                return Outcome.DEAD if attempts >= sub.max_attempts else Outcome.RETRY

    # --- adapter API -------------------------------------------------------------------------
    @abstractmethod
    def declare(self, topology: Topology) -> None:
        """Declare the exchange, every queue, its bindings and its dead-letter queue."""

    @abstractmethod
    def publish(self, event: Event) -> None:
        """Publish and return once the broker has it; raise PublishError otherwise."""

    def batch(self):
        """A block of publishes confirmed together (the outbox relay's batch): an adapter may send
        them without waiting for each confirm and wait for all at the end of the block, raising
        PublishError there. By default every publish is confirmed on its own."""
        return contextlib.nullcontext()

    @abstractmethod
    def publish_raw(self, routing_key: str, body: bytes, headers: dict | None = None) -> None:
        """Publish bytes as they are (replaying dead letters, tests injecting poison)."""

    def publish_stored(self, event_type: str, event_id: str, body: bytes) -> None:
        """Publish an event serialised and validated when it was stored (the outbox relay):
        re-validating it was a quarter of the relay's time."""
        self.publish_raw(event_type, body)

    @abstractmethod
    def start(self) -> None:
        """Start consuming every subscription in background threads."""

    @abstractmethod
    def stop(self, timeout: float = 10.0) -> None:
        """Stop consuming; in-flight handlers finish and are acked first."""

    @abstractmethod
    def ping(self) -> bool:
        """Is the broker reachable?"""

    @abstractmethod
    def take_dead_letters(self, queue: str, limit: int = 1000) -> list[bytes]:
        """Remove and return up to `limit` messages from `<queue>.dlq` (operations, tests)."""

    @abstractmethod
    def depth(self, queue: str) -> int:
        """Messages ready in a queue (logical name; '.dlq' suffix allowed)."""

    def delete_topology(self, topology: Topology) -> None:
        """Tests: remove this prefix's queues and exchanges."""
