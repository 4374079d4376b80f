"""One contract, run unchanged against both bus adapters (memory:// and amqp://)."""
from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from shared.bus.base import Topology
from shared.events import Event, new_event

TOPO = Topology(queues={"a.work": ("ticket.created", "sla.#"), "b.work": ("ticket.#",)})


def _created(n=0) -> Event:
    return new_event("ticket.created", {"ticket": {
        "id": f"t{n}", "key": f"INC-{n}", "title": "Printer on fire", "priority": "P1", "status": "new",
        "reporter": {"name": "Ann", "email": "ann@example.com"}, "created_at": "2026-11-22T10:00:00+00:00"}},
        producer="test", ticket_id=f"t{n}")


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


class Recorder:
    def __init__(self, fail_times=0, exc=RuntimeError):
        self.seen: list[Event] = []
        self.calls = 0
        self.fail_times = fail_times
        self.exc = exc
        self.lock = threading.Lock()

    def __call__(self, event: Event):
        with self.lock:
            self.calls += 1
            if self.calls <= self.fail_times:
                raise self.exc("handler failure")
            self.seen.append(event)


class FailsOn(Recorder):
    """Fails every time on one ticket's events, handles the rest."""

    def __init__(self, ticket_id: str):
        super().__init__()
        self.bad = ticket_id

    def __call__(self, event: Event):
        with self.lock:
            self.calls += 1
            if event.ticket_id == self.bad:
                raise ValueError(f"cannot handle {self.bad}")
            self.seen.append(event)


class BusContract:
    """Subclasses provide the `bus` fixture."""

    @pytest.fixture
    def bus(self):
        raise NotImplementedError

    def test_routing_by_key(self, bus):
        a, b = Recorder(), Recorder()
        bus.subscribe("a.work", TOPO.queues["a.work"], a)
        bus.subscribe("b.work", TOPO.queues["b.work"], b)
        bus.start()
        events = [_created(i) for i in range(5)]
        for e in events:
            bus.publish(e)
        bus.publish_raw("other.thing", b"{}")
        assert wait_for(lambda: len(a.seen) == 5 and len(b.seen) == 5)
        assert [e.id for e in a.seen] == [e.id for e in events]
        assert a.seen[0] == events[0]  # the envelope survives the trip intact
        assert bus.take_dead_letters("a.work") == []

    def test_redelivery_after_handler_exception(self, bus):
        rec = Recorder(fail_times=2)
        bus.subscribe("a.work", TOPO.queues["a.work"], rec, max_attempts=5)
        bus.start()
        event = _created()
        bus.publish(event)
        assert wait_for(lambda: len(rec.seen) == 1)
        assert rec.calls == 3 and rec.seen[0].id == event.id
        assert bus.take_dead_letters("a.work") == []

    def test_dead_letter_after_max_attempts_and_keeps_consuming(self, bus):
        rec = FailsOn("t1")
        bus.subscribe("a.work", TOPO.queues["a.work"], rec, max_attempts=3)
        bus.start()
        bus.publish(_created(1))
        bus.publish(_created(2))
        assert wait_for(lambda: bus.depth("a.work.dlq") == 1)
        dead = bus.take_dead_letters("a.work")
        assert len(dead) == 1 and json.loads(dead[0])["ticket_id"] == "t1"
        assert wait_for(lambda: [e.ticket_id for e in rec.seen] == ["t2"])
        assert rec.calls == 3 + 1  # three attempts at t1, one at t2

    @pytest.mark.parametrize("body", [b"not json", b"[1,2]", b'{"id": "x"}',
                                      json.dumps({**_created().to_dict(), "version": 99}).encode(),
                                      json.dumps({**_created().to_dict(), "payload": {"ticket": {}}}).encode()])
    def test_malformed_envelope_is_dead_lettered_once(self, bus, body):
        rec = Recorder()
        bus.subscribe("a.work", TOPO.queues["a.work"], rec)
        bus.start()
        bus.publish_raw("ticket.created", body)
        bus.publish(_created(7))  # a good one behind it still flows
        assert wait_for(lambda: len(rec.seen) == 1)
        assert wait_for(lambda: bus.depth("a.work.dlq") == 1)
        assert bus.take_dead_letters("a.work") == [body]
        assert rec.calls == 1

    # --- a prefetched backlog is handled as batches ------------------------------------------
    def _backlog(self, bus, events, handler, batch_handler, **kwargs):
        """Queue `events` before consuming starts, so deliveries arrive together."""
        bus.subscribe("a.work", TOPO.queues["a.work"], handler, batch_handler=batch_handler, **kwargs)
        for e in events:
            bus.publish(e)
        assert wait_for(lambda: bus.depth("a.work") == len(events))
        bus.start()

    def test_backlog_goes_to_the_batch_handler_in_order_once(self, bus):
        single, batches = Recorder(), []
        events = [_created(i) for i in range(25)]
        self._backlog(bus, events, single, lambda evs: batches.append(list(evs)))
        assert wait_for(lambda: sum(len(b) for b in batches) + len(single.seen) == 25)
        handled = [e.id for b in batches for e in b] + [e.id for e in single.seen]
        assert sorted(handled) == sorted(e.id for e in events) and len(set(handled)) == 25
        assert max(len(b) for b in batches) > 1  # several deliveries in one call
        assert all(len(b) <= bus.batch_size for b in batches)
        order = [e.id for b in batches for e in b]
        assert order == [e.id for e in events if e.id in set(order)]  # queue order kept
        assert bus.take_dead_letters("a.work") == []

    def test_failed_batch_falls_back_to_one_by_one_and_costs_only_the_bad_event(self, bus):
        def batch_handler(evs):
            raise RuntimeError("one of these is bad")

        rec = FailsOn("t3")
        events = [_created(i) for i in range(8)]
        self._backlog(bus, events, rec, batch_handler, max_attempts=2)
        assert wait_for(lambda: bus.depth("a.work.dlq") == 1)
        dead = bus.take_dead_letters("a.work")
        assert [json.loads(d)["ticket_id"] for d in dead] == ["t3"]
        assert wait_for(lambda: len(rec.seen) == 7)
        assert sorted(e.ticket_id for e in rec.seen) == sorted(f"t{i}" for i in range(8) if i != 3)

    def test_poison_in_a_backlog_is_dead_lettered_alone(self, bus):
        batches, single = [], Recorder()
        bus.subscribe("a.work", TOPO.queues["a.work"], single, batch_handler=lambda evs: batches.append(list(evs)))
        good = [_created(i) for i in range(6)]
        for e in good[:3]:
            bus.publish(e)
        bus.publish_raw("ticket.created", b"not json")
        for e in good[3:]:
            bus.publish(e)
        assert wait_for(lambda: bus.depth("a.work") == 7)
        bus.start()
        assert wait_for(lambda: sum(len(b) for b in batches) + len(single.seen) == 6)
        assert wait_for(lambda: bus.depth("a.work.dlq") == 1)
        assert bus.take_dead_letters("a.work") == [b"not json"]


class TestMemoryBus(BusContract):
    @pytest.fixture
    def bus(self, bus_prefix):
        from shared.bus import connect
        bus = connect("memory://", prefix=bus_prefix)
        bus.declare(TOPO)
        yield bus
        bus.stop()
        bus.delete_topology(TOPO)


@pytest.mark.integration
class TestAmqpBus(BusContract):
    @pytest.fixture
    def bus(self, amqp_url, bus_prefix):
        from shared.bus import connect
        bus = connect(amqp_url, prefix=bus_prefix, prefetch=10)
        bus.declare(TOPO)
        yield bus
        bus.stop()
        bus.delete_topology(TOPO)

    def test_no_confirmed_message_lost_when_connections_are_closed(self, bus):
        """`rabbitmqctl close_all_connections` under the consumer: it reconnects and gets all."""
        rec = Recorder()
        bus.subscribe("a.work", TOPO.queues["a.work"], rec)
        bus.start()
        sent = []
        for i in range(300):
            if i in (100, 200):
                subprocess.run(["rabbitmqctl", "close_all_connections", "test: broker drops everyone"],
                               check=True, capture_output=True, timeout=60)
            event = _created(i)
            while True:  # the publisher reconnects too; a publish that raised is retried
                try:
                    bus.publish(event)
                    break
                except Exception:
                    time.sleep(0.2)
            sent.append(event.id)
        assert wait_for(lambda: set(sent) <= {e.id for e in rec.seen}, timeout=60)
        assert bus.take_dead_letters("a.work") == []
