"""`amqp://`: RabbitMQ through pika. Quorum queues, publisher confirms with `mandatory`, manual
acks, prefetch, dead-lettering, reconnects with backoff.

pika connections are not thread-safe: publishers get one connection per thread, each consumer
runs its own connection in its own thread.
"""
from __future__ import annotations

import contextlib
import logging
import random
import threading
import time

import pika
from pika import exceptions as px

from shared.bus.base import ATTEMPTS_HEADER, Bus, Outcome, PublishError, Subscription, Topology
from shared.events import Event

log = logging.getLogger(__name__)
CONNECTION_ERRORS = (px.AMQPConnectionError, px.AMQPChannelError, px.StreamLostError, ConnectionError, OSError)
# Safety net for a message that kills its consumer outright (so it is never acked or counted by us).
DELIVERY_LIMIT = 50


CONFIRM_TIMEOUT = 30.0  # seconds to wait for the confirms of one batch


class _ConfirmWindow:
    """A publishing channel in confirm mode whose confirms are collected rather than awaited one
    by one. pika's BlockingChannel waits for each publish's confirm; the channel under it
    (`_impl`, pika.channel.Channel) takes a confirm callback, so a batch costs one round trip."""

    def __init__(self, conn: pika.BlockingConnection):
        self.conn = conn
        self.channel = conn.channel()
        impl = self.channel._impl
        self.unconfirmed: set[int] = set()
        self.nacked = 0
        self.next_tag = 1
        selected: list[bool] = []
        impl.add_on_return_callback(lambda *_: None)  # unroutable: no queue listens to that type
        impl.confirm_delivery(self._on_confirm, callback=lambda _frame: selected.append(True))
        deadline = time.monotonic() + CONFIRM_TIMEOUT
        while not selected:
            if time.monotonic() > deadline:
                raise px.AMQPChannelError("no Confirm.SelectOk from the broker")
            conn.process_data_events(time_limit=0.01)

    def _on_confirm(self, frame) -> None:
        method = frame.method
        done = {t for t in self.unconfirmed if t <= method.delivery_tag} if method.multiple else {method.delivery_tag}
        self.unconfirmed -= done
        if isinstance(method, pika.spec.Basic.Nack):
            self.nacked += len(done)

    def publish(self, exchange: str, routing_key: str, body: bytes, props) -> None:
        self.channel._impl.basic_publish(exchange, routing_key, body, props, mandatory=True)
        self.unconfirmed.add(self.next_tag)
        self.next_tag += 1

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.unconfirmed:
            if time.monotonic() > deadline:
                raise PublishError(f"{len(self.unconfirmed)} publishes not confirmed in {timeout:.0f}s")
            self.conn.process_data_events(time_limit=0.01)
        nacked, self.nacked = self.nacked, 0
        if nacked:
            raise PublishError(f"broker nacked {nacked} of a batch")


class AmqpBus(Bus):
    def __init__(self, url: str, *, queue_type: str = "quorum", **kwargs):
        super().__init__(url, **kwargs)
        self.queue_type = queue_type
        self.params = pika.URLParameters(url)
        self.params.heartbeat = self.params.heartbeat or 30
        self.params.blocked_connection_timeout = 30
        self._local = threading.local()
        self._threads: list[threading.Thread] = []
        self._connections: list[pika.BlockingConnection] = []
        self._lock = threading.Lock()

    # --- connections -------------------------------------------------------------------------
    def _connect(self) -> pika.BlockingConnection:
        conn = pika.BlockingConnection(self.params)
        with self._lock:
            self._connections = [c for c in self._connections if c.is_open] + [conn]
        return conn

    def _channel(self):
        """This thread's publishing channel, in confirm mode; reopened if the broker went away."""
        channel = getattr(self._local, "channel", None)
        if channel is None or not channel.is_open:
            self._close_local()
            self._local.conn = self._connect()
            channel = self._local.conn.channel()
            channel.confirm_delivery()
            self._local.channel = channel
        return channel

    def _close_local(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.channel = self._local.conn = self._local.window = None
        if conn is not None and conn.is_open:
            try:
                conn.close()
            except Exception:  # already broken: nothing to close
                pass

    # --- topology ----------------------------------------------------------------------------
    def declare(self, topology: Topology) -> None:
        ch = self._channel()
        ch.exchange_declare(self.exchange, "topic", durable=True)
        ch.exchange_declare(self.dead_letter_exchange, "direct", durable=True)
        for name, keys in topology.queues.items():
            full, dlq = self.name(name), self.name(name) + ".dlq"
            ch.queue_declare(dlq, durable=True, arguments={"x-queue-type": self.queue_type})
            ch.queue_bind(dlq, self.dead_letter_exchange, routing_key=dlq)
            arguments = {"x-queue-type": self.queue_type, "x-dead-letter-exchange": self.dead_letter_exchange,
                         "x-dead-letter-routing-key": dlq}
            if self.queue_type == "quorum":
                arguments["x-delivery-limit"] = DELIVERY_LIMIT
            ch.queue_declare(full, durable=True, arguments=arguments)
            for key in keys:
                ch.queue_bind(full, self.exchange, routing_key=key)

    def delete_topology(self, topology: Topology) -> None:
        ch = self._channel()
        for name in topology.queues:
            ch.queue_delete(self.name(name))
            ch.queue_delete(self.name(name) + ".dlq")
        ch.exchange_delete(self.exchange)
        ch.exchange_delete(self.dead_letter_exchange)

    # --- publishing --------------------------------------------------------------------------
    def publish(self, event: Event) -> None:
        self._send(self.exchange, event.type, event.to_json(), {}, event.id)

    def publish_raw(self, routing_key: str, body: bytes, headers: dict | None = None) -> None:
        self._send(self.exchange, routing_key, body, headers or {}, None)

    def publish_stored(self, event_type: str, event_id: str, body: bytes) -> None:
        self._send(self.exchange, event_type, body, {}, event_id)

    @contextlib.contextmanager
    def batch(self):
        """Publishes in the block go out on this thread's pipelining channel without waiting;
        leaving the block waits for every confirm (PublishError if one is nacked or missing)."""
        if getattr(self._local, "batching", False):
            yield
            return
        self._local.batching = True
        try:
            yield
            window = getattr(self._local, "window", None)
            if window is not None:
                try:
                    window.wait(CONFIRM_TIMEOUT)
                except CONNECTION_ERRORS as exc:
                    self._close_local()
                    raise PublishError(f"broker unreachable: {exc!r}") from None
        except BaseException:
            self._close_local()  # unconfirmed leftovers must not leak into the next batch
            raise
        finally:
            self._local.batching = False

    def _window(self) -> "_ConfirmWindow":
        window = getattr(self._local, "window", None)
        if window is None or not window.channel.is_open:
            self._channel()  # this thread's connection, (re)opened if needed
            window = self._local.window = _ConfirmWindow(self._local.conn)
        return window

    def _send(self, exchange: str, routing_key: str, body: bytes, headers: dict, message_id) -> None:
        props = pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                     message_id=message_id, headers=headers)
        if getattr(self._local, "batching", False):
            try:
                self._window().publish(exchange, routing_key, body, props)
            except CONNECTION_ERRORS as exc:
                self._close_local()
                raise PublishError(f"broker unreachable: {exc!r}") from None
            return
        for attempt in (1, 2):
            try:
                self._channel().basic_publish(exchange, routing_key, body, props, mandatory=True)
                return
            except px.UnroutableError:
                # Every consumed type has a declared queue (topology); the rest nobody listens to.
                log.debug("no queue bound for %s", routing_key)
                return
            except px.NackError as exc:
                raise PublishError(f"broker nacked {routing_key}: {exc}") from None
            except CONNECTION_ERRORS as exc:
                self._close_local()
                if attempt == 2:
                    raise PublishError(f"broker unreachable: {exc!r}") from None

    # --- consuming ---------------------------------------------------------------------------
    def start(self) -> None:
        self.stopping = False
        for sub in self.subscriptions:
            thread = threading.Thread(target=self._consume_forever, args=(sub,), name=f"bus-{sub.queue}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _consume_forever(self, sub: Subscription) -> None:
        backoff = 0.5
        while not self.stopping:
            try:
                self._consume(sub)
                backoff = 0.5
            except CONNECTION_ERRORS as exc:
                if self.stopping:
                    break
                log.warning("consumer of %s lost the broker (%r); reconnecting in %.1fs", sub.queue, exc, backoff)
                time.sleep(backoff + random.uniform(0, backoff / 2))
                backoff = min(backoff * 2, 15.0)

    def _consume(self, sub: Subscription) -> None:
        conn = self._connect()
        try:
            channel = conn.channel()
            channel.confirm_delivery()
            channel.basic_qos(prefetch_count=self.prefetch)

            # process_data_events returns once deliveries are buffered and has called on_message
            # for each of them by then: what it collected is handled as a batch.
            received: list[tuple] = []

            def on_message(_ch, method, props, body):
                received.append((method, props, body))

            tag = channel.basic_consume(self.name(sub.queue), on_message, auto_ack=False)
            log.info("consuming %s", self.name(sub.queue))
            while not self.stopping:
                conn.process_data_events(time_limit=0.2)
                while received and not self.stopping:
                    chunk, received[:] = received[:self.batch_size], received[self.batch_size:]
                    self._deliver(channel, sub, chunk)
            channel.basic_cancel(tag)
        finally:
            if conn.is_open:
                try:
                    conn.close()  # unacked prefetched messages go back to the queue
                except CONNECTION_ERRORS:
                    pass

    def _deliver(self, ch, sub: Subscription, chunk: list[tuple]) -> None:
        attempts = [int((props.headers or {}).get(ATTEMPTS_HEADER, 0)) + 1 for _m, props, _b in chunk]
        outcomes = self.dispatch_many(sub, [(body, n) for (_m, _p, body), n in zip(chunk, attempts)])
        for (method, props, body), n, outcome in zip(chunk, attempts, outcomes):
            self._settle(ch, sub, method, props, body, n, outcome)

    def _settle(self, ch, sub: Subscription, method, props, body: bytes, attempts: int, outcome: Outcome) -> None:
        headers = props.headers or {}
        if outcome is Outcome.ACK:
            ch.basic_ack(method.delivery_tag)
        elif outcome is Outcome.DEAD:
            ch.basic_reject(method.delivery_tag, requeue=False)  # the queue dead-letters it
        elif outcome is Outcome.REQUEUE:
            ch.basic_nack(method.delivery_tag, requeue=True)
        else:
            # Count the attempt in a header and put it at the back of the queue; ack the original
            # only after the broker confirmed the copy (a crash in between means a duplicate,
            # which the inbox absorbs, never a loss).
            retry = pika.BasicProperties(content_type=props.content_type, delivery_mode=2,
                                         message_id=props.message_id,
                                         headers={**headers, ATTEMPTS_HEADER: attempts})
            ch.basic_publish("", self.name(sub.queue), body, retry)
            ch.basic_ack(method.delivery_tag)

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping = True
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        self._close_local()

    def ping(self) -> bool:
        try:
            conn = pika.BlockingConnection(pika.URLParameters(self.url + ("&" if "?" in self.url else "?") + "connection_attempts=1&socket_timeout=2"))
            conn.close()
            return True
        except CONNECTION_ERRORS:
            return False

    def take_dead_letters(self, queue: str, limit: int = 1000) -> list[bytes]:
        return self._take(self.name(queue) + ".dlq", limit)

    def _take(self, full_name: str, limit: int) -> list[bytes]:
        ch = self._channel()
        out = []
        while len(out) < limit:
            method, _props, body = ch.basic_get(full_name, auto_ack=True)
            if method is None:
                break
            out.append(body)
        return out

    def depth(self, queue: str) -> int:
        ok = self._channel().queue_declare(self.name(queue), passive=True)
        return ok.method.message_count
