"""Bus: our AMQP adapter's confirmed publish and consume rates against raw pika, same broker.

Both sides publish into a quorum queue with publisher confirms, then consume with manual acks and
the same prefetch. Publishing is measured two ways: one message at a time, each confirm awaited
(`bus.publish` alone, as every publisher outside the relay does), and in batches of 200 whose
confirms are awaited together (`with bus.batch():`, what the outbox relay does per pass; raw pika
does the same with the channel's confirm callback).
"""
from __future__ import annotations

import argparse
import threading
import time

import pika

from bench.common import AMQP_URL, median, progress, save, unique
from shared.bus import connect
from shared.bus.base import Topology
from shared.events import new_event


def _event(i: int):
    return new_event("sla.met", {"key": f"INC-{i}", "priority": "P3", "clock": "resolution",
                                 "due_at": "2026-11-22T10:00:00+00:00", "target_seconds": 60,
                                 "elapsed_seconds": 30}, producer="bench", ticket_id=str(i))


BATCH = 200


def raw_pika_batched(n: int) -> float:
    """Raw pika, pipelined confirms: publish BATCH messages, then wait for their confirms."""
    queue = unique("bench.rawb.")
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    ch = conn.channel()
    ch.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    impl, acked, selected = ch._impl, [0], []
    impl.confirm_delivery(lambda frame: acked.__setitem__(0, max(acked[0], frame.method.delivery_tag)),
                          callback=lambda _f: selected.append(True))
    while not selected:
        conn.process_data_events(time_limit=0.01)
    body = _event(0).to_json()
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    start = time.perf_counter()
    for first in range(0, n, BATCH):
        last = min(n, first + BATCH)
        for _ in range(first, last):
            impl.basic_publish("", queue, body, props, mandatory=True)
        while acked[0] < last:
            conn.process_data_events(time_limit=0.01)
    rate = n / (time.perf_counter() - start)
    ch.queue_delete(queue)
    conn.close()
    return rate


def raw_pika(n: int, prefetch: int) -> tuple[float, float]:
    queue = unique("bench.raw.")
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    ch = conn.channel()
    ch.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    ch.confirm_delivery()
    body = _event(0).to_json()
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    start = time.perf_counter()
    for _ in range(n):
        ch.basic_publish("", queue, body, props, mandatory=True)
    publish_rate = n / (time.perf_counter() - start)
    ch.basic_qos(prefetch_count=prefetch)
    got = 0
    start = time.perf_counter()
    for method, _props, _body in ch.consume(queue, auto_ack=False):
        ch.basic_ack(method.delivery_tag)
        got += 1
        if got == n:
            break
    consume_rate = n / (time.perf_counter() - start)
    ch.cancel()
    ch.queue_delete(queue)
    conn.close()
    return publish_rate, consume_rate


def ours(n: int, prefetch: int) -> tuple[float, float, float]:
    prefix = unique("bench.") + "."
    topo = Topology(queues={"bench.work": ("sla.met",)})
    bus = connect(AMQP_URL, prefix=prefix, prefetch=prefetch)
    bus.declare(topo)
    events = [_event(i) for i in range(n)]
    start = time.perf_counter()
    for e in events:
        bus.publish(e)
    publish_rate = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for first in range(0, n, BATCH):
        with bus.batch():
            for e in events[first:first + BATCH]:
                bus.publish(e)
    batched_rate = n / (time.perf_counter() - start)
    n_total = 2 * n  # both rounds of publishing are consumed below
    done = threading.Event()
    count = [0]

    def handler(_event):
        count[0] += 1
        if count[0] == n_total:
            done.set()

    bus.subscribe("bench.work", topo.queues["bench.work"], handler)
    start = time.perf_counter()
    bus.start()
    done.wait(300)
    consume_rate = n_total / (time.perf_counter() - start)
    bus.stop()
    bus.delete_topology(topo)
    return publish_rate, batched_rate, consume_rate


def run(n: int = 5000, runs: int = 3, prefetch: int = 50) -> dict:
    rows = {"raw_publish": [], "raw_batched": [], "raw_consume": [], "ours_publish": [], "ours_batched": [],
            "ours_consume": []}
    for i in range(runs):
        progress(f"bus run {i + 1}/{runs}: raw pika")
        p, c = raw_pika(n, prefetch)
        rows["raw_publish"].append(p)
        rows["raw_consume"].append(c)
        rows["raw_batched"].append(raw_pika_batched(n))
        progress(f"bus run {i + 1}/{runs}: tierline AmqpBus")
        p, b, c = ours(n, prefetch)
        rows["ours_publish"].append(p)
        rows["ours_batched"].append(b)
        rows["ours_consume"].append(c)
    result = {"params": {"messages": n, "runs": runs, "prefetch": prefetch},
              "runs": rows, "median": {k: median(v) for k, v in rows.items()}}
    m = result["median"]
    result["ratio"] = {"publish": m["ours_publish"] / m["raw_publish"], "batched": m["ours_batched"] / m["raw_batched"],
                       "consume": m["ours_consume"] / m["raw_consume"]}
    save("bus", result)
    return result


def table(result: dict) -> list[str]:
    m, r = result["median"], result["ratio"]
    return [
        "| bus: confirmed publish (msg/s) | {:.0f} | {:.0f} (raw pika) | {:.2f} |".format(m["ours_publish"], m["raw_publish"], r["publish"]),
        "| bus: confirmed publish, batches of {} (msg/s; the relay) | {:.0f} | {:.0f} (raw pika, pipelined confirms) | {:.2f} |".format(
            BATCH, m["ours_batched"], m["raw_batched"], r["batched"]),
        "| bus: consume + ack, handler does nothing (msg/s) | {:.0f} | {:.0f} (raw pika) | {:.2f} |".format(
            m["ours_consume"], m["raw_consume"], r["consume"]),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print("\n".join(table(run(args.n, args.runs))))
