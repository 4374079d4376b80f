"""The sla timer's baseline: the smallest due-time poller on the same PostgreSQL and RabbitMQ.

One table (id, due_at) indexed by due time; N rows due evenly over the window. Every tick (0.5 s,
the sla default) one thread takes the due rows (`DELETE ... WHERE due_at <= now() RETURNING`, up
to 20,000 a pass), publishes each as a small JSON message with publisher confirms (pipelined: one
wait for the whole pass) into a quorum queue, then commits. A second connection consumes and
stamps arrival; lateness = arrival - due. No ORM, no calendars, no event validation, no outbox:
what a hand-written cron job would do, and so the ceiling for bench/sla_timer.py at the same N
and window.

    python -m bench.raw_timer --n 100000 --window 60
"""
from __future__ import annotations

import argparse
import json
import threading
import time

import pika
import psycopg

from bench.common import AMQP_URL, clock_lead, pg_schema_url, progress, save, summary, unique


def run(n: int, window: float, lead: float | None = None, tick: float = 0.5, batch: int = 20_000) -> dict:
    lead = clock_lead(n) if lead is None else lead
    url, drop = pg_schema_url("rawtimer")
    queue = unique("bench.rawtimer.")
    params = pika.URLParameters(AMQP_URL)
    lateness: list[float] = []
    done = threading.Event()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE raw_clocks (id bigserial PRIMARY KEY, due_at timestamptz NOT NULL)")
            t0 = time.time() + lead
            conn.execute("INSERT INTO raw_clocks (due_at) SELECT to_timestamp(%s + (g - 1) * %s) "
                         "FROM generate_series(1, %s) g", (t0, window / max(1, n - 1), n))
            conn.execute("CREATE INDEX ON raw_clocks (due_at)")
            conn.execute("ANALYZE raw_clocks")

        def consume():
            c = pika.BlockingConnection(params)
            ch = c.channel()
            ch.basic_qos(prefetch_count=2000)

            def on_message(_ch, _method, _props, body):
                lateness.append(time.time() - json.loads(body)["due"])
                if len(lateness) >= n:
                    done.set()

            ch.basic_consume(queue, on_message, auto_ack=True)
            deadline = time.monotonic() + lead + window + 300
            while not done.is_set() and time.monotonic() < deadline:
                c.process_data_events(time_limit=0.2)
            c.close()

        pub = pika.BlockingConnection(params)
        ch = pub.channel()
        ch.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        impl = ch._impl  # pipelined confirms, as the outbox relay's batch does
        acked = [0]
        selected: list[bool] = []
        impl.confirm_delivery(lambda frame: acked.__setitem__(0, max(acked[0], frame.method.delivery_tag)),
                              callback=lambda _f: selected.append(True))
        while not selected:
            pub.process_data_events(time_limit=0.01)
        consumer = threading.Thread(target=consume, daemon=True)
        consumer.start()
        tag = 0
        props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
        with psycopg.connect(url) as conn:
            while not done.is_set() and tag < n:
                started = time.monotonic()
                rows = conn.execute("DELETE FROM raw_clocks WHERE id IN (SELECT id FROM raw_clocks WHERE due_at <= now() "
                                    "ORDER BY due_at LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id, extract(epoch from due_at)",
                                    (batch,)).fetchall()
                for clock_id, due in rows:
                    impl.basic_publish("", queue, json.dumps({"id": clock_id, "due": float(due)}).encode(), props)
                    tag += 1
                while acked[0] < tag:
                    pub.process_data_events(time_limit=0.01)
                conn.commit()
                if len(rows) < batch:
                    pub.process_data_events(time_limit=max(0.0, tick - (time.monotonic() - started)))
        done.wait(lead + window + 300)
        consumer.join(5)
        ch.queue_delete(queue)
        pub.close()
    finally:
        drop()
    return {"params": {"n": n, "window_s": window, "tick_s": tick, "batch": batch},
            "events_received": len(lateness), "lateness_to_consumer_s": summary(lateness)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--tick", type=float, default=0.5)
    args = parser.parse_args()
    progress(f"raw timer: {args.n} clocks over {args.window:g} s")
    result = run(args.n, args.window, tick=args.tick)
    save(f"raw_timer_{args.n}", result)
    s = result["lateness_to_consumer_s"]
    print(f"received {result['events_received']}/{args.n}; lateness p50 {s['p50']:.3f} s  p99 {s['p99']:.3f} s  max {s['max']:.3f} s")
