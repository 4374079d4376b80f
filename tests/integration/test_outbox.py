"""Outbox and inbox on real PostgreSQL and RabbitMQ."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select

from shared import outbox
from shared.bus.base import Topology
from shared.db import Database
from shared.events import new_event
from tests.helpers import Probe, wait_for

pytestmark = pytest.mark.integration

TOPO = Topology(queues={"c.work": ("ticket.#",)})
effects_md = MetaData()
effects = Table("effects", effects_md, Column("id", Integer, primary_key=True, autoincrement=True),
                Column("event_id", String(64)), Column("note", String(100)))


def _event(n: int):
    return new_event("ticket.feedback_received", {"ticket": {
        "id": f"t{n}", "key": f"INC-{n}", "title": "x", "priority": "P3", "status": "resolved",
        "reporter": {"name": "R"}, "created_at": "2026-11-22T10:00:00+00:00"}, "csat": 5},
        producer="test", ticket_id=f"t{n}")


@pytest.fixture
def db(pg_schema):
    database = Database(pg_schema("outbox"))
    outbox.metadata.create_all(database.engine)
    effects_md.create_all(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def bus(amqp_url, bus_prefix):
    from shared.bus import connect
    bus = connect(amqp_url, prefix=bus_prefix)
    bus.declare(TOPO)
    yield bus
    bus.stop()
    bus.delete_topology(TOPO)


def test_published_if_and_only_if_committed(db, bus):
    probe = Probe(bus, keys=("ticket.#",))
    bus.start()
    relay = outbox.OutboxRelay(db, bus, service="t")
    committed = _event(1)
    with db.transaction() as s:
        s.execute(insert(effects).values(event_id=committed.id, note="kept"))
        outbox.add(s, committed)
    rolled_back = _event(2)
    with pytest.raises(RuntimeError):
        with db.transaction() as s:
            s.execute(insert(effects).values(event_id=rolled_back.id, note="lost"))
            outbox.add(s, rolled_back)
            raise RuntimeError("business rule failed after writing")
    relay.flush()
    probe.wait("ticket.feedback_received")
    assert wait_for(lambda: False, timeout=0.5) is False  # give a stray message time to show up
    assert [e.id for e in probe.events] == [committed.id]
    assert outbox.pending(db) == 0


def test_relay_killed_after_publish_before_mark_republishes_and_inbox_applies_once(db, bus, pg_schema):
    """A relay process dies (SIGKILL-like os._exit) right after the broker confirmed the first
    row and before marking it sent; a new relay publishes it again; the consumer's inbox turns
    the duplicate into one effect."""
    events = [_event(i) for i in range(3)]
    with db.transaction() as s:
        for e in events:
            outbox.add(s, e)

    script = textwrap.dedent(f"""
        import contextlib, os
        from shared.bus import connect
        from shared.db import Database
        from shared.outbox import OutboxRelay
        bus = connect({bus.url!r}, prefix={bus.prefix!r})
        bus.batch = contextlib.nullcontext  # each publish confirmed before the kill
        real = bus.publish_stored
        def publish_then_die(*args):
            real(*args)
            os._exit(9)
        bus.publish_stored = publish_then_die
        OutboxRelay(Database({db.url!r}), bus, service="t").run_once()
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=os.getcwd(), timeout=60)
    assert result.returncode == 9
    assert outbox.pending(db) == 3  # nothing was marked: the kill came before the commit

    consumer_db = Database(pg_schema("consumer"))
    outbox.metadata.create_all(consumer_db.engine)
    effects_md.create_all(consumer_db.engine)

    def apply(session, event):
        session.execute(insert(effects).values(event_id=event.id, note="applied"))

    bus.subscribe("c.work", TOPO.queues["c.work"], outbox.idempotent(consumer_db, "c.work", apply))
    bus.start()
    outbox.OutboxRelay(db, bus, service="t").flush()
    assert outbox.pending(db) == 0

    def applied():
        with consumer_db.transaction() as s:
            return s.execute(select(effects.c.event_id, func.count()).group_by(effects.c.event_id)).all()
    rows = wait_for(lambda: len(applied()) == 3 and applied(), timeout=20)
    assert sorted(r[0] for r in rows) == sorted(e.id for e in events)
    assert all(count == 1 for _, count in rows)  # the first event arrived twice, applied once
    consumer_db.dispose()


def test_two_relays_never_publish_one_row_twice(db, bus):
    probe = Probe(bus, keys=("ticket.#",))
    bus.start()
    events = [_event(i) for i in range(400)]
    for chunk in range(0, 400, 50):
        with db.transaction() as s:
            for e in events[chunk:chunk + 50]:
                outbox.add(s, e)
    relays = [outbox.OutboxRelay(db, bus, service="t", batch=20) for _ in range(2)]
    counts = [0, 0]

    def drain(i):
        while True:
            n = relays[i].run_once()
            counts[i] += n
            if n == 0:
                break

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 400 and min(counts) > 0  # both worked, no row twice
    probe.wait("ticket.feedback_received", count=400, timeout=30)
    ids = [e.id for e in probe.events]
    assert len(ids) == len(set(ids)) == 400


def test_duplicate_delivery_applies_once_even_concurrently(db):
    calls = []

    def apply(session, event):
        calls.append(event.id)
        session.execute(insert(effects).values(event_id=event.id, note="x"))

    handle = outbox.idempotent(db, "c.work", apply)
    event = _event(9)
    barrier = threading.Barrier(4)
    errors = []

    def deliver():
        barrier.wait()
        try:
            handle(event)
        except Exception as exc:  # a losing racer may raise; the bus would redeliver it
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for _ in errors:
        handle(event)  # the redelivery of a loser is a no-op
    handle(event)
    with db.transaction() as s:
        assert s.execute(select(func.count()).select_from(effects)).scalar_one() == 1


@pytest.fixture(params=["postgresql", "sqlite"])
def any_db(request, tmp_path):
    """The batch inbox on both databases the services run on."""
    url = request.getfixturevalue("pg_schema")("inbox") if request.param == "postgresql" else f"sqlite:///{tmp_path}/inbox.db"
    database = Database(url)
    outbox.metadata.create_all(database.engine)
    effects_md.create_all(database.engine)
    yield database
    database.dispose()


def _effects(db):
    with db.transaction() as s:
        return sorted(s.execute(select(effects.c.event_id, effects.c.note)).all())


def test_batch_inbox_applies_each_new_event_once_in_order(any_db):
    seen_before = []

    def apply(session, event):
        # what earlier events of the same batch did is visible, as in separate transactions
        seen_before.append(session.execute(select(func.count()).select_from(effects)).scalar_one())
        session.execute(insert(effects).values(event_id=event.id, note=event.ticket_id))

    e1, e2, e3 = _event(1), _event(2), _event(3)
    outbox.idempotent(any_db, "c.work", apply)(e2)  # already handled on its own
    outbox.idempotent_batch(any_db, "c.work", apply)([e1, e2, e1, e3])  # e2 again, e1 twice
    assert _effects(any_db) == sorted([(e1.id, "t1"), (e2.id, "t2"), (e3.id, "t3")])
    assert seen_before == [0, 1, 2]
    outbox.idempotent_batch(any_db, "c.work", apply)([e3, e1])  # a redelivered batch: nothing
    outbox.idempotent(any_db, "c.work", apply)(e1)
    assert len(_effects(any_db)) == 3


def test_failed_batch_leaves_nothing_behind(any_db):
    def apply(session, event):
        session.execute(insert(effects).values(event_id=event.id, note=event.ticket_id))
        if event.ticket_id == "t6":
            raise ValueError("bad event")

    events = [_event(5), _event(6), _event(7)]
    with pytest.raises(ValueError):
        outbox.idempotent_batch(any_db, "c.work", apply)(events)
    assert _effects(any_db) == []  # neither effects nor inbox records: each can be tried again
    outbox.idempotent(any_db, "c.work", apply)(events[0])
    assert _effects(any_db) == [(events[0].id, "t5")]
