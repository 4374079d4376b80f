"""Bus: our AMQP adapter's confirmed publish and consume rates against raw pika, same broker.

Both sides publish one message at a time with publisher confirms (what the outbox relay does)
into a quorum queue, then consume with manual acks and the same prefetch.
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


def ours(n: int, prefetch: int) -> tuple[float, float]:
    prefix = unique("bench.") + "."
    topo = Topology(queues={"bench.work": ("sla.met",)})
    bus = connect(AMQP_URL, prefix=prefix, prefetch=prefetch)
    bus.declare(topo)
    events = [_event(i) for i in range(n)]
    start = time.perf_counter()
    for e in events:
        bus.publish(e)
    publish_rate = n / (time.perf_counter() - start)
    done = threading.Event()
    count = [0]

    def handler(_event):
        count[0] += 1
        if count[0] == n:
            done.set()

    bus.subscribe("bench.work", topo.queues["bench.work"], handler)
    start = time.perf_counter()
    bus.start()
    done.wait(300)
    consume_rate = n / (time.perf_counter() - start)
    bus.stop()
    bus.delete_topology(topo)
    return publish_rate, consume_rate


def run(n: int = 5000, runs: int = 3, prefetch: int = 50) -> dict:
    rows = {"raw_publish": [], "raw_consume": [], "ours_publish": [], "ours_consume": []}
    for i in range(runs):
        progress(f"bus run {i + 1}/{runs}: raw pika")
        p, c = raw_pika(n, prefetch)
        rows["raw_publish"].append(p)
        rows["raw_consume"].append(c)
        progress(f"bus run {i + 1}/{runs}: tierline AmqpBus")
        p, c = ours(n, prefetch)
        rows["ours_publish"].append(p)
        rows["ours_consume"].append(c)
    result = {"params": {"messages": n, "runs": runs, "prefetch": prefetch},
              "runs": rows, "median": {k: median(v) for k, v in rows.items()}}
    m = result["median"]
    result["ratio"] = {"publish": m["ours_publish"] / m["raw_publish"], "consume": m["ours_consume"] / m["raw_consume"]}
    save("bus", result)
    return result


def table(result: dict) -> list[str]:
    m, r = result["median"], result["ratio"]
    return [
        "| bus: confirmed publish (msg/s) | {:.0f} | {:.0f} (raw pika) | {:.2f} |".format(m["ours_publish"], m["raw_publish"], r["publish"]),
        "| bus: consume + ack (msg/s) | {:.0f} | {:.0f} (raw pika) | {:.2f} |".format(m["ours_consume"], m["raw_consume"], r["consume"]),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print("\n".join(table(run(args.n, args.runs))))
