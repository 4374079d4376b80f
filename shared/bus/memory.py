"""`memory://`: kombu's in-memory transport, for the embedded single process and fast tests.

kombu's memory broker state is global to the process; a prefix keeps tests apart. Messages live
as long as the process does (the outbox, not the bus, is what survives a restart).
"""
from __future__ import annotations

import logging
import socket
import threading

from kombu import Connection, Consumer, Exchange, Producer, Queue, binding

from shared.bus.base import ATTEMPTS_HEADER, Bus, Outcome, Subscription, Topology
from shared.events import Event

log = logging.getLogger(__name__)
POLL = {"polling_interval": 0.005}


class MemoryBus(Bus):
    def __init__(self, url: str = "memory://", **kwargs):
        super().__init__(url, **kwargs)
        self._exchange = Exchange(self.exchange, "topic", durable=True)
        self._local = threading.local()
        self._threads: list[threading.Thread] = []
        self._declared: set[str] = set()

    def _connection(self) -> Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = Connection("memory://", transport_options=POLL)
            self._local.producer = Producer(conn.channel())
        return conn

    def _queue(self, name: str, keys: tuple[str, ...]) -> Queue:
        return Queue(self.name(name), bindings=[binding(self._exchange, routing_key=k) for k in keys], durable=True)

    def declare(self, topology: Topology) -> None:
        channel = self._connection().default_channel
        self._exchange(channel).declare()
        for name, keys in topology.queues.items():
            self._queue(name, keys)(channel).declare()
            Queue(self.name(name) + ".dlq", durable=True)(channel).declare()
            self._declared.add(name)

    def publish(self, event: Event) -> None:
        self._send(event.type, event.to_json(), {})

    def publish_raw(self, routing_key: str, body: bytes, headers: dict | None = None) -> None:
        self._send(routing_key, body, headers or {})

    def _send(self, routing_key: str, body: bytes, headers: dict, exchange=None) -> None:
        self._connection()
        self._local.producer.publish(body, exchange=self._exchange if exchange is None else exchange,
                                     routing_key=routing_key, headers=headers,
                                     content_type="application/json", content_encoding="binary")

    def start(self) -> None:
        self.stopping = False
        for sub in self.subscriptions:
            thread = threading.Thread(target=self._consume, args=(sub,), name=f"bus-{sub.queue}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _consume(self, sub: Subscription) -> None:
        with Connection("memory://", transport_options=POLL) as conn:
            queue = self._queue(sub.queue, sub.bindings)

            # on_message hands over the raw message: no decoding by kombu, so bad JSON reaches
            # dispatch_many() and is dead-lettered like on RabbitMQ. Messages waiting right behind the
            # first are taken too and handled as one batch, as the amqp adapter does.
            received: list = []
            with Consumer(conn, queues=[queue], on_message=received.append, accept=None,
                          prefetch_count=self.prefetch):
                while not self.stopping:
                    try:
                        conn.drain_events(timeout=0.1)
                        while len(received) < self.batch_size:
                            conn.drain_events(timeout=0)
                    except socket.timeout:
                        pass
                    if received:
                        chunk, received[:] = received[:], []
                        self._deliver(sub, chunk)

    def _deliver(self, sub: Subscription, chunk: list) -> None:
        attempts = [int((m.headers or {}).get(ATTEMPTS_HEADER, 0)) + 1 for m in chunk]
        outcomes = self.dispatch_many(sub, [(m.body, n) for m, n in zip(chunk, attempts)])
        for message, n, outcome in zip(chunk, attempts, outcomes):
            self._settle(sub, message, n, outcome)

    def _settle(self, sub: Subscription, message, attempts: int, outcome: Outcome) -> None:
        if outcome in (Outcome.RETRY, Outcome.REQUEUE):
            # Back of the queue, through the default exchange, with the attempt count carried.
            counted = attempts if outcome is Outcome.RETRY else attempts - 1
            self._send(self.name(sub.queue), message.body, {ATTEMPTS_HEADER: counted}, exchange="")
        elif outcome is Outcome.DEAD:
            self._send(self.name(sub.queue) + ".dlq", message.body, {ATTEMPTS_HEADER: attempts}, exchange="")
        message.ack()

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping = True
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def ping(self) -> bool:
        return True

    def take_dead_letters(self, queue: str, limit: int = 1000) -> list[bytes]:
        return self._take(self.name(queue) + ".dlq", limit)

    def _take(self, full_name: str, limit: int) -> list[bytes]:
        channel = self._connection().default_channel
        out = []
        while len(out) < limit:
            message = channel.basic_get(full_name, no_ack=True)
            if message is None:
                break
            out.append(message.body)
        return out

    def depth(self, queue: str) -> int:
        channel = self._connection().default_channel
        return channel._size(self.name(queue))

    def delete_topology(self, topology: Topology) -> None:
        channel = self._connection().default_channel
        for name in topology.queues:
            for full in (self.name(name), self.name(name) + ".dlq"):
                channel.queue_delete(full)
