"""SLA timer engine: N clocks due over a short window; lateness from due time to the bus.

Arms N resolution clocks directly in the sla tables (one per ticket, due evenly over --window
seconds, the first --lead seconds after arming), then runs the sla service as `tierline serve
sla` builds it (services.sla.bootstrap.build: the APScheduler interval job calling
Engine.tick, the outbox relay, the AMQP bus) against the local PostgreSQL and RabbitMQ. A
separate process consumes the sla.* events with raw pika and stamps their arrival.

Reported: lateness from each clock's due time to (1) its event in the outbox (the engine),
(2) the relay marking it published, (3) its arrival at the consumer; throughput; the sla
process's peak RSS (ru_maxrss, arming included).

    python -m bench.sla_timer --n 100000 --window 60
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import multiprocessing as mp
import os
import time

from bench.common import AMQP_URL, clock_lead, machine, peak_rss_mb, pg_schema_url, progress, save, summary, unique

UTC = dt.timezone.utc
TARGET = 3600  # every clock's target; they are armed as if started an hour before they fall due


def consume(url: str, queue: str, expected: int, patience: float, ready, out) -> None:
    """Child process: raw pika, auto-ack; (arrival - due) per event, in seconds."""
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=2000)
    lateness: list[float] = []
    first = last = None

    def on_message(_ch, _method, _props, body):
        nonlocal first, last
        now = time.time()
        due = dt.datetime.fromisoformat(json.loads(body)["payload"]["due_at"]).timestamp()
        lateness.append(now - due)
        first = first or now
        last = now

    ch.basic_consume(queue, on_message, auto_ack=True)
    ready.set()
    deadline = time.time() + patience
    while len(lateness) < expected and time.time() < deadline:
        conn.process_data_events(time_limit=0.5)
    out.put({"lateness": lateness, "first": first, "last": last})
    conn.close()


def replica(settings_kwargs: dict, go, stop, out) -> None:
    """Child process: one more sla replica (engine job + relay) on the same database and bus."""
    from services.sla.bootstrap import build
    from shared.bus import connect
    from shared.config import load_settings

    settings = load_settings(env={}, **settings_kwargs)
    service = build(settings, bus=connect(settings.bus_url, prefix=settings.bus_prefix,
                                          queue_type=settings.bus_queue_type))
    go.wait()
    service.start_background()
    stop.wait()
    service.stop_background()
    out.put(peak_rss_mb())


def arm(db, n: int, window: float, lead: float, warnings: list[int]) -> dt.datetime:
    """N tickets with one running resolution clock each, due from t0 to t0 + window."""
    from sqlalchemy import insert, text

    from services.sla.models import Clock, Ticket

    placeholder = dt.datetime(2000, 1, 1, tzinfo=UTC)
    chunk = 5000
    with db.engine.begin() as conn:
        for start in range(0, n, chunk):
            ids = range(start, min(n, start + chunk))
            conn.execute(insert(Ticket), [
                {"id": f"bench-{i}", "key": f"INC-{i}", "priority": "P1", "category": None, "service": None,
                 "channel": "api", "status": "assigned", "tier": "L1", "policy": "P1 critical",
                 "correlation_id": f"bench-{i}", "created_at": placeholder, "updated_at": placeholder} for i in ids])
            conn.execute(insert(Clock), [
                {"ticket_id": f"bench-{i}", "name": "resolution", "tier": None, "seq": 1, "calendar": "24x7",
                 "target_seconds": TARGET, "warnings": warnings, "status": "running", "outcome": None,
                 "started_at": placeholder, "segment_started_at": placeholder, "segments": [], "elapsed_before": 0,
                 "paused_at": None, "paused_seconds": 0, "warned": 0, "breached_at": None, "stopped_at": None,
                 "due_at": None, "next_fire_at": None} for i in ids])
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE tickets"))
        conn.execute(text("VACUUM ANALYZE clocks"))
    # Due times are set last, relative to now, so arming time does not eat into the window.
    with db.engine.begin() as conn:
        t0 = dt.datetime.now(UTC) + dt.timedelta(seconds=lead)
        step = window / max(1, n - 1)
        first_id = conn.execute(text("SELECT min(id) FROM clocks")).scalar()
        # With warnings the first threshold comes due first; without, the deadline.
        first_percent = min(warnings) if warnings else 100
        conn.execute(text("""
            UPDATE clocks SET due_at = t.due, started_at = t.due - make_interval(secs => :target),
                              segment_started_at = t.due - make_interval(secs => :target),
                              next_fire_at = t.due - make_interval(secs => :target)
                                             + make_interval(secs => CEIL(CAST(:target AS float8) * :p / 100.0))
            FROM (SELECT id, :t0 + make_interval(secs => (id - :first) * CAST(:step AS float8)) AS due
                  FROM clocks) t
            WHERE clocks.id = t.id"""),
                     {"t0": t0, "first": first_id, "step": step, "target": TARGET, "p": first_percent})
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE clocks"))
    if dt.datetime.now(UTC) > t0:
        progress(f"warning: arming ran {(dt.datetime.now(UTC) - t0).total_seconds():.1f} s into the window")
    return t0


def outbox_lateness(db) -> tuple[list[float], list[float]]:
    from sqlalchemy import text

    with db.engine.connect() as conn:
        rows = conn.execute(text("""
            SELECT extract(epoch FROM created_at - (body::json -> 'payload' ->> 'due_at')::timestamptz),
                   extract(epoch FROM published_at - (body::json -> 'payload' ->> 'due_at')::timestamptz)
            FROM outbox WHERE type IN ('sla.breached', 'sla.warning')""")).all()
    return [float(r[0]) for r in rows], [float(r[1]) for r in rows if r[1] is not None]


def run(n: int, window: float, lead: float, tick: float, warnings: list[int], relays: int, topology: str,
        queue_type: str, replicas: int) -> dict:
    from shared.bus import connect
    from shared.bus.base import Topology
    from shared.config import load_settings
    from shared.outbox import OutboxRelay
    from shared.topology import TOPOLOGY
    from services.sla.bootstrap import build

    load_before = os.getloadavg()[0]
    url, drop = pg_schema_url("sla")
    prefix = unique("bench.") + "."
    settings_kwargs = dict(database_url=url, bus_url=AMQP_URL, bus_prefix=prefix, sla_tick_seconds=tick,
                           log_json=False, bus_queue_type=queue_type)
    settings = load_settings(env={}, **settings_kwargs)
    bus = connect(AMQP_URL, prefix=prefix, prefetch=settings.prefetch, queue_type=queue_type)
    bench_topology = Topology(queues={"bench.sla": ("sla.warning", "sla.breached")})
    declared = Topology(queues={**(TOPOLOGY.queues if topology == "full" else {}), **bench_topology.queues})
    bus.declare(declared)
    service = build(settings, bus=bus)
    ctx = mp.get_context("spawn")
    go, stop, rss = ctx.Event(), ctx.Event(), ctx.Queue()
    others = [ctx.Process(target=replica, args=(settings_kwargs, go, stop, rss)) for _ in range(replicas - 1)]
    for proc in others:
        proc.start()
    expected = n * (len(warnings) + 1)
    progress(f"arming {n} clocks ({expected} events due over {window:.0f} s)")
    started = time.perf_counter()
    t0 = arm(service.db, n, window, lead, warnings)
    arm_seconds = time.perf_counter() - started
    progress(f"armed in {arm_seconds:.1f} s; first due at {t0.time()}")
    ready, out = ctx.Event(), ctx.Queue()
    consumer = ctx.Process(target=consume, args=(AMQP_URL, bus.name("bench.sla"), expected,
                                                  window + lead + 300, ready, out))
    consumer.start()
    ready.wait(60)
    extra = [OutboxRelay(service.db, bus, service="sla", interval=settings.relay_interval) for _ in range(relays - 1)]
    go.set()
    service.start_background()
    for relay in extra:
        relay.start()
    result = out.get(timeout=window + lead + 400)
    progress(f"received {len(result['lateness'])} events; stopping")
    consumer.join(10)
    for relay in extra:
        relay.stop()
    service.stop_background()
    stop.set()
    replica_rss = [rss.get(timeout=60) for _ in others]
    for proc in others:
        proc.join(30)
    fired, published = outbox_lateness(service.db)
    service.db.dispose()
    # A fresh connection: the declaring one sat idle through the run and may have timed out.
    connect(AMQP_URL, prefix=prefix, queue_type=queue_type).delete_topology(declared)
    drop()
    progress("cleaned up")
    lateness = result["lateness"]
    span = (result["last"] - result["first"]) if result["first"] else float("nan")
    return {"params": {"n": n, "window_s": window, "lead_s": lead, "tick_s": tick, "warnings": warnings,
                       "replicas": replicas, "relays": relays, "topology": topology, "queue_type": queue_type,
                       "engine_batch": service.extras["engine"].batch},
            "events_expected": expected, "events_received": len(lateness), "arm_seconds": arm_seconds,
            "lateness_to_outbox_s": summary(fired), "lateness_to_published_s": summary(published),
            "lateness_to_consumer_s": summary(lateness),
            "throughput_events_per_s": len(lateness) / span if span else float("nan"),
            "peak_rss_mb": peak_rss_mb(), "replica_peak_rss_mb": replica_rss,
            "load_avg_1m": {"before": load_before, "after": os.getloadavg()[0]}, "machine": machine()}


def table(r: dict) -> str:
    p = r["params"]
    rows = [("setup", f"N={p['n']} over {p['window_s']:.0f} s, {p['replicas']} replica(s), tick {p['tick_s']} s, "
                      f"{p['queue_type']} queues"),
            ("events received", f"{r['events_received']} / {r['events_expected']}"),
            ("throughput", f"{r['throughput_events_per_s']:.0f} events/s"),
            ("load average (1 min)", f"{r['load_avg_1m']['before']:.2f} before, {r['load_avg_1m']['after']:.2f} after"),
            ("peak RSS (sla process)", f"{r['peak_rss_mb']:.0f} MB (arming included)"
                                       + "".join(f", replica {x:.0f} MB" for x in r["replica_peak_rss_mb"]))]
    for label, key in (("due -> outbox (engine)", "lateness_to_outbox_s"),
                       ("due -> published (relay)", "lateness_to_published_s"),
                       ("due -> received (bus)", "lateness_to_consumer_s")):
        s = r[key]
        rows.append((label, f"p50 {s['p50']:.3f} s  p99 {s['p99']:.3f} s  max {s['max']:.3f} s"))
    width = max(len(a) for a, _ in rows)
    return "\n".join(f"{a:<{width}}  {b}" for a, b in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--lead", type=float, default=None,
                        help="seconds from arming to the first due time (default: 5, more for large N)")
    parser.add_argument("--tick", type=float, default=0.5, help="the engine's interval (TIERLINE_SLA_TICK_SECONDS)")
    parser.add_argument("--warnings", type=int, nargs="*", default=[], help="warning percents (default: breach only)")
    parser.add_argument("--replicas", type=int, default=1, help="sla processes sharing the clocks (SKIP LOCKED)")
    parser.add_argument("--relays", type=int, default=1, help="outbox relays in the measured process")
    parser.add_argument("--topology", choices=("bench", "full"), default="bench",
                        help="bench: only the benchmark's queue is bound; full: every service's queues too")
    parser.add_argument("--queue-type", choices=("quorum", "classic"), default="quorum")
    parser.add_argument("--name", default="sla_timer", help="results file bench/results/<name>.json")
    args = parser.parse_args()
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # "skipped: already running" when behind
    lead = clock_lead(args.n) if args.lead is None else args.lead
    result = run(args.n, args.window, lead, args.tick, args.warnings, args.relays, args.topology,
                 args.queue_type, args.replicas)
    print(table(result))
    save(args.name, result)


if __name__ == "__main__":
    main()
