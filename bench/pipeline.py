"""Pipeline: time from `POST /api/v1/tickets` answered to the L1 group's email accepted by SMTP.

Tierline side: the four services as separate processes, started from docker-compose.yml's
commands and TIERLINE_* environment (tests/e2e/system.py), with the compose defaults for every
interval (relay 0.2 s, sla tick 0.5 s, notify retry 1 s) and only the addresses pointed at this
machine: the local RabbitMQ (a unique bus prefix, quorum queues), a PostgreSQL schema per service,
an aiosmtpd server in this process. Tickets are POSTed open-loop at a fixed rate (a thread pool
sends each at its scheduled instant); a ticket's latency is from its 201 to the moment the SMTP
server accepted the last mail to the members of the Service Desk group with `[INC-n]` in the
Subject. The path: intake outbox -> ticket.created -> escalation (route) -> escalation.routed ->
intake (apply) -> ticket.assigned -> notify (plan, send over SMTP): three services, five
transactions, three confirmed publishes.

Baseline: raw pika at the same rate through the same broker: publish with confirms into a quorum
queue, consume with manual acks on a second connection; latency from just before basic_publish to
the consumer's callback.

    python -m bench.pipeline --rates 5 10 20 40 --seconds 8 --runs 2
"""
from __future__ import annotations

import argparse
import email.policy
import re
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from email.parser import BytesHeaderParser
from pathlib import Path

import pika
import psycopg
import requests
import yaml

from bench.common import AMQP_URL, RESULTS, median, percentile, pg_schema_url, progress, save, summary, unique
from shared.config import DEFAULTS_FILE
from tests.e2e.system import ROOT, SERVICES, System, interpolate, make_tokens, tierline_bin
from tests.servers import HttpReceiver, SmtpSink, free_port

KEY_RE = re.compile(r"\[(INC-\d+)\]")
L1_MEMBERS = ("ivan.petrov@example.com", "anna.smith@example.com")  # the shipped Service Desk group
TICKET = {"title": "Cannot connect to VPN from home office",
          "description": "Since this morning the client says 'authentication failed'. " * 3,
          "channel": "web", "category": "network", "service": "vpn", "impact": "medium", "urgency": "high"}


# --- the outside world ----------------------------------------------------------------------------
class MailLog(SmtpSink):
    """The SMTP sink, keeping for each accepted message only what the benchmarks need:
    (accepted at [perf_counter], ticket key from the Subject, recipient, Subject, Message-ID)."""

    def __init__(self):
        super().__init__()
        self.log: list[tuple[float, str | None, str, str, str]] = []
        self.parser = BytesHeaderParser(policy=email.policy.default)

    async def handle_DATA(self, server, session, envelope):
        at = time.perf_counter()
        headers = self.parser.parsebytes(envelope.content)
        subject = str(headers["Subject"] or "")
        match = KEY_RE.search(subject)
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.log.append((at, match.group(1) if match else None, rcpt.lower(), subject,
                                 str(headers["Message-ID"] or "")))
        return "250 OK"

    def count(self) -> int:
        with self.lock:
            return len(self.log)

    def since(self, index: int) -> list:
        with self.lock:
            return self.log[index:]


# --- the system under test ------------------------------------------------------------------------
class Stack:
    """Tierline as four processes (compose commands and environment) plus the SMTP sink and a
    tracker stand-in, each service on its own fresh PostgreSQL schema; `sql(service, ...)` lets
    the harness read (and, for the storm, adjust) a service's own tables."""

    def __init__(self, label: str, config_file: Path = DEFAULTS_FILE, env: dict | None = None,
                 profile: tuple[str, ...] = ()):
        self.label, self.config_file, self.extra_env = label, Path(config_file), env or {}
        self.profile = tuple(profile)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"tierline-bench-{label}-"))
        self.prefix = unique("bench.") + "."
        self.urls: dict[str, str] = {}
        self._drops: list = []
        self.system: System | None = None
        self.database_interruptions = 0

    def start(self) -> "Stack":
        self.smtp = MailLog().start()
        self.tracker = HttpReceiver(secret="bench-tracker-secret").start()
        for name in SERVICES:
            self.urls[name], drop = pg_schema_url(f"{self.label}_{name}")
            self._drops.append(drop)
        self.system = System(self.workdir)
        self.system.smtp = self.smtp
        self.system.tokens = make_tokens(self.workdir / "tokens.yaml")
        compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
        for name in SERVICES:
            spec = compose["services"][name]
            env = {k: interpolate(str(v)) for k, v in spec["environment"].items()}
            port = free_port()
            env.update(TIERLINE_BUS_URL=AMQP_URL, TIERLINE_BUS_PREFIX=self.prefix, TIERLINE_HOST="127.0.0.1",
                       TIERLINE_PORT=str(port), TIERLINE_TOKENS_FILE=str(self.workdir / "tokens.yaml"),
                       TIERLINE_CONFIG=str(self.config_file), TIERLINE_VAR_DIR=str(self.workdir / f"var-{name}"),
                       **self.extra_env)
            env[f"TIERLINE_{name.upper()}_DATABASE_URL"] = self.urls[name]
            if "TIERLINE_SMTP_URL" in env:
                env["TIERLINE_SMTP_URL"] = self.smtp.url
            if "TIERLINE_TRACKER_URL" in env:
                env.update(TIERLINE_TRACKER_URL=self.tracker.url("/tracker/issues"),
                           TIERLINE_TRACKER_SECRET="bench-tracker-secret", TIERLINE_TRACKER_KIND="webhook")
            command = [tierline_bin(), *spec["command"][1:]]
            if name in self.profile:  # cProfile, every thread: bench/profiled.py
                command = [sys.executable, "-m", "bench.profiled", *spec["command"][1:]]
                env.update(PYTHONPATH=str(ROOT), TIERLINE_PROFILE_OUT=str(RESULTS / f"profile-{self.label}-{name}.prof"))
            self.system.ports[name] = port
            self.system.start(name, command, env)
        self.system.wait_ready(120)
        return self

    def stop(self) -> None:
        from shared.bus import connect
        from shared.topology import TOPOLOGY

        try:
            if self.system is not None:
                self.system.stop()
        finally:
            self.smtp.stop()
            self.tracker.stop()
            try:
                connect(AMQP_URL, prefix=self.prefix).delete_topology(TOPOLOGY)
            except Exception as exc:  # a leftover prefix is harmless; say so and go on
                progress(f"could not delete bus topology {self.prefix}: {exc!r}")
            for drop in self._drops:
                for attempt in (1, 2):
                    try:
                        drop()
                        break
                    except Exception as exc:  # e.g. PostgreSQL restarted under us: its pool is stale
                        if attempt == 2:
                            progress(f"could not drop a bench schema: {exc!r}")
                        time.sleep(2)

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def sql(self, service: str, query: str, params: dict | None = None) -> list:
        """Run one statement on a service's schema; rides out a PostgreSQL restart (someone's fault
        tests on a shared machine) for up to two minutes instead of losing the run."""
        deadline = time.monotonic() + 120
        while True:
            try:
                with psycopg.connect(self.urls[service], autocommit=True, connect_timeout=10) as conn:
                    cur = conn.execute(query, params or {})
                    return cur.fetchall() if cur.description else [(cur.rowcount,)]
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise
                self.database_interruptions += 1
                progress(f"database unavailable ({str(exc).strip().splitlines()[-1][:80]}); retrying")
                time.sleep(2)

    def tickets_url(self) -> str:
        return self.system.url("/api/v1/tickets")

    def tail(self) -> str:
        return "\n".join(f"----- {n} -----\n{self.system.tail(n, 30)}" for n in self.system.procs)


class Poster:
    """POSTs tickets from many threads, a keep-alive session per thread."""

    def __init__(self, url: str, headers: dict, body: dict | None = None):
        self.url, self.headers, self.body = url, headers, body or TICKET
        self.local = threading.local()

    def post(self) -> tuple[int, dict]:
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
            session.headers.update(self.headers)
        resp = session.post(self.url, json=self.body, timeout=60)
        return resp.status_code, (resp.json() if resp.headers.get("Content-Type", "").startswith("application/json") else {})


def open_loop(send, rate: float, seconds: float, workers: int = 48) -> tuple[list, float]:
    """Call `send()` at `rate` per second for `seconds`, each call at its own scheduled instant.
    Returns [(scheduled, started, answered, result)] and the achieved start rate."""
    n = max(1, int(rate * seconds))
    t0 = time.perf_counter() + 0.2
    out: list = [None] * n

    def one(i: int):
        at = t0 + i / rate
        delay = at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        started = time.perf_counter()
        try:
            result = send()
        except Exception as exc:  # counted as a failure, never hidden
            result = exc
        out[i] = (at, started, time.perf_counter(), result)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(n)))
    starts = [r[1] for r in out]
    span = max(starts) - min(starts)
    return out, (n - 1) / span if span > 0 else float("nan")


# --- one rate, Tierline -----------------------------------------------------------------------------
def tierline_at(stack: Stack, poster: Poster, rate: float, seconds: float, drain: float = 30.0) -> dict:
    mark = stack.smtp.count()
    calls, achieved = open_loop(poster.post, rate, seconds)
    answered: dict[str, float] = {}
    ids: list[str] = []
    errors = 0
    for _at, _started, done, result in calls:
        if isinstance(result, tuple) and result[0] == 201:
            answered[result[1]["key"]] = done
            ids.append(result[1]["id"])
        else:
            errors += 1
    post_latency = [c[2] - c[1] for c in calls]
    # Wait until every ticket's group mail is in (or the drain time is up).
    deadline = time.perf_counter() + drain
    while True:
        got = _group_mail_times(stack.smtp.since(mark))
        if all(k in got and len(got[k]) >= len(L1_MEMBERS) for k in answered) or time.perf_counter() > deadline:
            break
        time.sleep(0.1)
    latencies, missing = [], 0
    for key, t_answer in answered.items():
        times = got.get(key, {})
        if len(times) < len(L1_MEMBERS):
            missing += 1
            latencies.append(float("inf"))
        else:
            latencies.append(max(times.values()) - t_answer)
    finite = [x for x in latencies if x != float("inf")]
    return {"rate": rate, "achieved_rate": achieved, "tickets": len(answered), "errors": errors, "missing": missing,
            "latency_s": {**summary(finite), "p99_all": percentile(latencies, 99)},
            "post_latency_s": summary(post_latency), "stages_p50_s": stages(stack, ids)}


STAGES = ("intake relay publishes ticket.created", "escalation consumes and routes",
          "escalation relay publishes escalation.routed", "intake consumes and applies",
          "intake relay publishes ticket.assigned", "notify consumes and plans", "notify sends (SMTP)")


def stages(stack: Stack, ticket_ids: list[str]) -> dict[str, float]:
    """Median seconds of each hop, from the timestamps each service writes in its own tables."""
    if not ticket_ids:
        return {}
    ids = list(ticket_ids)
    outbox = ("SELECT body::json->>'ticket_id', type, extract(epoch from created_at), extract(epoch from published_at) "
              "FROM outbox WHERE type = ANY(%(types)s) AND body::json->>'ticket_id' = ANY(%(ids)s)")
    intake = {(t, kind): (c, p) for t, kind, c, p in stack.sql("intake", outbox, {"types": ["ticket.created", "ticket.assigned"], "ids": ids})}
    routed = {t: (c, p) for t, _k, c, p in stack.sql("escalation", outbox, {"types": ["escalation.routed"], "ids": ids})}
    sent = {t: (c, s) for t, c, s in stack.sql("notify", (
        "SELECT ticket_id, extract(epoch from min(created_at)), extract(epoch from max(sent_at)) FROM deliveries "
        "WHERE source_event_type = 'ticket.assigned' AND ticket_id = ANY(%(ids)s) GROUP BY ticket_id"), {"ids": ids})}
    hops: list[list[float]] = [[] for _ in STAGES]
    for t in ids:
        try:
            c0, p0 = intake[(t, "ticket.created")]
            c1, p1 = routed[t]
            c2, p2 = intake[(t, "ticket.assigned")]
            c3, s3 = sent[t]
            points = [c0, p0, c1, p1, c2, p2, c3, s3]
        except (KeyError, TypeError):
            continue
        if None in points:
            continue
        for i in range(len(STAGES)):
            hops[i].append(float(points[i + 1] - points[i]))
    return {name: median(values) for name, values in zip(STAGES, hops) if values}


def _group_mail_times(entries) -> dict[str, dict[str, float]]:
    got: dict[str, dict[str, float]] = {}
    for at, key, rcpt, _subject, _mid in entries:
        if key and rcpt in L1_MEMBERS:
            got.setdefault(key, {}).setdefault(rcpt, at)
    return got


def quiesce(stack: Stack, quiet: float = 1.5, limit: float = 60.0) -> None:
    """Until no mail has arrived for `quiet` seconds (acknowledgements to the reporter trail)."""
    deadline = time.perf_counter() + limit
    last, since = stack.smtp.count(), time.perf_counter()
    while time.perf_counter() < deadline:
        time.sleep(0.25)
        now = stack.smtp.count()
        if now != last:
            last, since = now, time.perf_counter()
        elif time.perf_counter() - since >= quiet:
            return


# --- one rate, raw pika -------------------------------------------------------------------------------
def raw_at(rate: float, seconds: float, body_size: int = 1500) -> dict:
    queue = unique("bench.rtt.")
    params = pika.URLParameters(AMQP_URL)
    pub = pika.BlockingConnection(params)
    ch = pub.channel()
    ch.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    ch.confirm_delivery()
    n = max(1, int(rate * seconds))
    sent, received = [0.0] * n, [0.0] * n
    ready, done = threading.Event(), threading.Event()

    def consume():
        conn = pika.BlockingConnection(params)
        c = conn.channel()
        c.basic_qos(prefetch_count=50)
        count = [0]

        def on_message(chan, method, props, body):
            received[int(props.headers["i"])] = time.perf_counter()
            chan.basic_ack(method.delivery_tag)
            count[0] += 1
            if count[0] == n:
                done.set()

        c.basic_consume(queue, on_message)
        ready.set()
        deadline = time.monotonic() + seconds + 60
        while not done.is_set() and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.1)
        conn.close()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    ready.wait(30)
    padding = b"x" * body_size
    t0 = time.perf_counter() + 0.1
    for i in range(n):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent[i] = time.perf_counter()
        ch.basic_publish("", queue, padding, pika.BasicProperties(delivery_mode=2, headers={"i": i}), mandatory=True)
    done.wait(seconds + 60)
    thread.join(5)
    ch.queue_delete(queue)
    pub.close()
    lat = [r - s for s, r in zip(sent, received) if r]
    return {"rate": rate, "messages": n, "received": len(lat), "latency_s": summary(lat)}


# --- the benchmark -----------------------------------------------------------------------------------------
def _sustained(row: dict) -> bool:
    return (row["missing"] == 0 and row["errors"] == 0 and row["latency_s"]["p99_all"] < 1.0
            and row["achieved_rate"] >= 0.95 * row["rate"])


def run(rates=(5, 10, 20, 40), seconds: float = 8.0, runs: int = 2, raw_seconds: float = 4.0,
        refine: bool = True) -> dict:
    progress("pipeline: starting the four services (compose commands, local RabbitMQ/PostgreSQL)")
    stack = Stack("pipe").start()
    rows: list[dict] = []
    try:
        poster = Poster(stack.tickets_url(), stack.system.tokens["reporter"])
        progress("pipeline: warm-up")
        tierline_at(stack, poster, 2, 2)
        quiesce(stack)

        def measure(rate: float) -> dict:
            ours_runs, raw_runs = [], []
            for i in range(runs):
                progress(f"pipeline {rate:g} tickets/s, run {i + 1}/{runs}: Tierline ({seconds:g} s)")
                ours_runs.append(tierline_at(stack, poster, rate, seconds))
                quiesce(stack)
                progress(f"pipeline {rate:g} msg/s, run {i + 1}/{runs}: raw pika round trip ({raw_seconds:g} s)")
                raw_runs.append(raw_at(rate, raw_seconds))
            row = {"rate": rate,
                   "ours_p50_s": median([r["latency_s"]["p50"] for r in ours_runs]),
                   "ours_p99_s": median([r["latency_s"]["p99_all"] for r in ours_runs]),
                   "raw_p50_s": median([r["latency_s"]["p50"] for r in raw_runs]),
                   "raw_p99_s": median([r["latency_s"]["p99"] for r in raw_runs]),
                   "achieved_rate": median([r["achieved_rate"] for r in ours_runs]),
                   "missing": sum(r["missing"] for r in ours_runs), "errors": sum(r["errors"] for r in ours_runs),
                   "post_p99_s": median([r["post_latency_s"]["p99"] for r in ours_runs]),
                   "runs": {"ours": ours_runs, "raw": raw_runs}}
            row["latency_s"] = {"p99_all": row["ours_p99_s"]}
            row["sustained"] = _sustained(row)
            row["ratio_p50"] = row["ours_p50_s"] / row["raw_p50_s"] if row["raw_p50_s"] else float("nan")
            row["ratio_p99"] = row["ours_p99_s"] / row["raw_p99_s"] if row["raw_p99_s"] else float("nan")
            progress(f"pipeline {rate:g}/s: p50 {row['ours_p50_s'] * 1000:.0f} ms, p99 {row['ours_p99_s'] * 1000:.0f} ms"
                     f" (raw p50 {row['raw_p50_s'] * 1000:.1f} ms); sustained={row['sustained']}")
            rows.append(row)
            return row

        for rate in rates:
            if not measure(rate)["sustained"]:
                break
        passing = [r["rate"] for r in rows if r["sustained"]]
        failing = [r["rate"] for r in rows if not r["sustained"]]
        if refine and passing and failing:
            middle = round((max(passing) + min(failing)) / 2)
            if max(passing) < middle < min(failing):
                measure(middle)
    except BaseException:
        progress("pipeline failed; service logs:\n" + stack.tail())
        raise
    finally:
        stack.stop()
    rows.sort(key=lambda r: r["rate"])
    ok = [r["rate"] for r in rows if r["sustained"]]
    result = {"params": {"rates": list(rates), "seconds": seconds, "runs": runs, "raw_seconds": raw_seconds,
                         "settings": "compose defaults (relay 0.2 s, sla tick 0.5 s, notify retry 1 s), quorum queues"},
              "rows": rows, "max_sustained_rate": max(ok) if ok else 0}
    save("pipeline", result)
    return result


def table(result: dict) -> list[str]:
    out = []
    for r in result["rows"]:
        out.append("| pipeline: POST -> L1 group mail at {:g} tickets/s, p50 / p99 (ms){} | {:.0f} / {:.0f} | "
                   "{:.1f} / {:.1f} (raw pika publish -> consume) | {:.0f}x / {:.0f}x |".format(
                       r["rate"], "" if r["sustained"] else " — not sustained", r["ours_p50_s"] * 1000,
                       r["ours_p99_s"] * 1000, r["raw_p50_s"] * 1000, r["raw_p99_s"] * 1000,
                       r["ratio_p50"], r["ratio_p99"]))
    out.append("| pipeline: highest sustained rate with p99 < 1 s (tickets/s) | {:g} | — | — |".format(
        result["max_sustained_rate"]))
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=float, nargs="+", default=[5, 10, 20, 40])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--raw-seconds", type=float, default=4.0)
    parser.add_argument("--no-refine", action="store_true")
    args = parser.parse_args()
    print("\n".join(table(run(tuple(args.rates), args.seconds, args.runs, args.raw_seconds, not args.no_refine))))
