"""Intake: tickets created per second over HTTP against raw single-row PostgreSQL inserts.

Tierline side: `tierline serve intake` (waitress, PostgreSQL, outbox relay to RabbitMQ) as its
own process; clients POST /api/v1/tickets from threads with keep-alive sessions.
Baseline: the same number of threads, each with its own psycopg connection, inserting one row
(title, description, a JSON document of similar size) and committing, as fast as it can.
Both run for the same duration on the same machine; the client shares its 2 cores with the
server, for both.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import requests

from bench.common import AMQP_URL, median, pg_schema_url, progress, save, summary, unique
from shared.auth import TokenStore
from shared.bus import connect
from shared.topology import TOPOLOGY
from tests.servers import free_port

BODY = {"title": "Cannot connect to VPN from home office", "description": "Since this morning the client "
        "says 'authentication failed' although the password works on the portal. " * 3,
        "channel": "web", "category": "network", "service": "vpn", "impact": "medium", "urgency": "high",
        "reporter": {"name": "Kate Reporter", "email": "kate@example.com"}}


def _hammer(worker, concurrency: int, seconds: float) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    errors = []

    def loop():
        local = []
        try:
            state = worker.open()
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                worker.once(state)
                local.append(time.perf_counter() - t0)
        except Exception as exc:  # reported, never hidden
            errors.append(exc)
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=loop) for _ in range(concurrency)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} client errors, first: {errors[0]!r}")
    return len(latencies) / (time.monotonic() - start), latencies


class RawPostgres:
    def __init__(self, url: str):
        self.url = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE raw_tickets (id bigserial primary key, title text, description text, "
                         "body jsonb, created_at timestamptz default now())")
        self.doc = json.dumps(BODY)

    def open(self):
        return psycopg.connect(self.url)

    def once(self, conn):
        conn.execute("INSERT INTO raw_tickets (title, description, body) VALUES (%s, %s, %s)",
                     (BODY["title"], BODY["description"], self.doc))
        conn.commit()


class TierlineHttp:
    def __init__(self, url: str, token: str):
        self.url, self.token = url, token

    def open(self):
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.token}"
        return session

    def once(self, session):
        resp = session.post(self.url, json=BODY, timeout=30)
        if resp.status_code != 201:
            raise RuntimeError(f"{resp.status_code} {resp.text[:200]}")


def start_intake(workdir: Path, db_url: str, prefix: str, threads: int) -> tuple[subprocess.Popen, int, str]:
    port = free_port()
    token = TokenStore(workdir / "tokens.yaml").add(name="bench", role="agent", email="agent@example.com",
                                                    tier="L1", groups=["Service Desk"])
    env = {**os.environ, "TIERLINE_BUS_URL": AMQP_URL, "TIERLINE_BUS_PREFIX": prefix,
           "TIERLINE_INTAKE_DATABASE_URL": db_url, "TIERLINE_PORT": str(port),
           "TIERLINE_TOKENS_FILE": str(workdir / "tokens.yaml"), "TIERLINE_HTTP_THREADS": str(threads),
           "TIERLINE_LOG_LEVEL": "WARNING", "TIERLINE_VAR_DIR": str(workdir / "var")}
    exe = str(Path(sys.executable).parent / "tierline")
    proc = subprocess.Popen([exe, "serve", "intake"], env=env, stdout=open(workdir / "intake.log", "wb"),
                            stderr=subprocess.STDOUT)
    for _ in range(300):
        try:
            if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc, port, token
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("intake did not start: " + (workdir / "intake.log").read_text()[-2000:])


def run(concurrencies=(1, 4, 16), seconds: float = 6.0, runs: int = 3) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="tierline-bench-"))
    raw_url, drop_raw = pg_schema_url("raw")
    app_url, drop_app = pg_schema_url("intake")
    prefix = unique("bench.") + "."
    proc, port, token = start_intake(workdir, app_url, prefix, threads=max(concurrencies))
    raw, ours = RawPostgres(raw_url), TierlineHttp(f"http://127.0.0.1:{port}/api/v1/tickets", token)
    rows = []
    try:
        ours.once(ours.open())  # warm up
        for c in concurrencies:
            raw_rates, our_rates, our_lat = [], [], []
            for i in range(runs):
                progress(f"intake c={c} run {i + 1}/{runs}")
                rate, _ = _hammer(raw, c, seconds)
                raw_rates.append(rate)
                rate, lat = _hammer(ours, c, seconds)
                our_rates.append(rate)
                our_lat.extend(lat)
            rows.append({"concurrency": c, "ours_per_s": median(our_rates), "raw_per_s": median(raw_rates),
                         "ratio": median(our_rates) / median(raw_rates), "ours_latency_s": summary(our_lat),
                         "runs": {"ours": our_rates, "raw": raw_rates}})
    finally:
        proc.terminate()
        proc.wait(30)
        bus = connect(AMQP_URL, prefix=prefix)
        bus.delete_topology(TOPOLOGY)
        drop_raw()
        drop_app()
    result = {"params": {"seconds": seconds, "runs": runs, "concurrencies": list(concurrencies)}, "rows": rows}
    save("intake", result)
    return result


def table(result: dict) -> list[str]:
    return ["| intake: tickets/s over HTTP, c={} (p99 {:.0f} ms) | {:.0f} | {:.0f} (raw INSERT+COMMIT) | {:.2f} |".format(
        r["concurrency"], r["ours_latency_s"]["p99"] * 1000, r["ours_per_s"], r["raw_per_s"], r["ratio"])
        for r in result["rows"]]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args()
    print("\n".join(table(run(tuple(args.concurrency), args.seconds, args.runs))))
