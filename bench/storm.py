"""Breach storm: N tickets whose L1 OLA clocks all run out within the same second.

1. The four services as processes (bench.pipeline.Stack: compose commands and defaults), with a
   benchmark configuration (bench/results/storm-config.yaml, written from the shipped one): P1
   targets of a week so nothing breaches during set-up; the Service Desk group with one member and
   no acknowledgement mail to the reporter, so that set-up sends one mail per ticket, not three.
2. N P1 tickets (network / vpn, so L2 is Infrastructure) are created over HTTP; the harness waits
   until every one is routed to L1, its ola:L1 clock armed, its group mail sent, every queue and
   outbox empty.
3. The harness (not the product) then moves every running ola:L1 clock in the sla service's own
   table so that it falls due at T = now + 3 s: `started_at`/`segment_started_at` = T - target,
   `due_at` = `next_fire_at` = T, warnings marked as fired (only the breach is left). This is the
   only write a benchmark makes to a service's tables; the clocks are otherwise the sla engine's.
4. From T on: the sla engine fires N sla.breached, escalation moves each ticket to L2 (ladder
   step `sla.breached / ola -> next_tier`), intake applies it, notify tells the L2 group and the
   L1 manager. Measured: time from T until intake shows every ticket at L2, and until every mail
   is accepted by the SMTP server; each stage's finish from the services' own timestamps.
5. Duplicates (must be 0): sla.breached per ola:L1 clock (sla outbox), escalation.routed to L2
   per ticket (escalation outbox), ticket.assigned at L2 per ticket (intake outbox), mails per
   (ticket, recipient, subject) and per Message-ID.

Baseline: a hand-built automation through the same PostgreSQL and SMTP server: one table of N
tickets due at T; every 0.5 s (the sla default tick) one process runs
`UPDATE ... SET tier = 'L2' WHERE due_at <= now() RETURNING key`, commits, and sends the two
mails per ticket over one SMTP connection. No bus, no outbox, no inbox, no templates.

    python -m bench.storm --n 10000
"""
from __future__ import annotations

import argparse
import copy
import smtplib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage

import psycopg
import yaml

from bench.common import AMQP_URL, RESULTS, median, pg_schema_url, progress, save, summary
from bench.pipeline import MailLog, Poster, Stack
from shared.config import DEFAULTS_FILE
from shared.topology import TOPOLOGY

WEEK = 7 * 24 * 3600
LEAD = 3.0  # seconds from the UPDATE to T
TICKET = {"title": "VPN concentrator down in the Kazan office", "description": "Nobody can connect since 9:00.",
          "channel": "monitoring", "category": "network", "service": "vpn", "impact": "high", "urgency": "high"}
MAILS_PER_TICKET = 2  # sla.breached -> the manager; ticket.assigned (L2) -> the Infrastructure member


def storm_config() -> str:
    doc = yaml.safe_load(DEFAULTS_FILE.read_text(encoding="utf-8"))
    for policy in doc["policies"]:
        if policy["match"].get("priority") == "P1":
            policy.update(first_response=WEEK, resolution=4 * WEEK, ola={t: WEEK for t in ("L1", "L2", "L3", "DEV")})
    for group in doc["groups"]:
        if group["name"] == "Service Desk":
            group["members"] = group["members"][:1]
    doc["notifications"] = copy.deepcopy(doc["notifications"])
    doc["notifications"]["rules"]["ticket.created"] = []
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "storm-config.yaml"
    path.write_text("# Written by bench/storm.py from the shipped defaults; see its docstring.\n"
                    + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return str(path)


# --- set-up ---------------------------------------------------------------------------------------
def create(stack: Stack, n: int, concurrency: int) -> dict:
    poster = Poster(stack.tickets_url(), stack.system.tokens["agent1"],
                    {**TICKET, "reporter": {"name": "Kate Reporter", "email": "kate@example.com"}})
    done, failed = [0], []
    lock = threading.Lock()
    step = max(1, n // 10)

    def one(_):
        status, body = poster.post()
        with lock:
            if status != 201:
                failed.append((status, body))
            done[0] += 1
            if done[0] % step == 0:
                progress(f"storm: created {done[0]}/{n}")

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(n)))
    seconds = time.perf_counter() - started
    if failed:
        raise RuntimeError(f"{len(failed)} creates failed, first: {failed[0]}")
    return {"seconds": seconds, "per_s": n / seconds}


def idle(stack: Stack) -> bool:
    from shared.bus import connect

    bus = connect(AMQP_URL, prefix=stack.prefix)
    try:
        if any(bus.depth(q) for q in TOPOLOGY.queues):
            return False
    finally:
        bus.stop()
    return all(stack.sql(s, "SELECT count(*) FROM outbox WHERE published_at IS NULL")[0][0] == 0
               for s in ("intake", "sla", "escalation", "notify"))


def settle(stack: Stack, n: int, limit: float) -> float:
    """Until every ticket is at L1 with its ola:L1 clock running, its mail sent, and all quiet."""
    started = time.perf_counter()
    deadline = started + limit
    last_report = 0.0
    while True:
        routed = stack.sql("intake", "SELECT count(*) FROM tickets WHERE tier = 'L1'")[0][0]
        armed = stack.sql("sla", "SELECT count(*) FROM clocks WHERE name = 'ola:L1' AND status = 'running'")[0][0]
        mails = stack.smtp.count()
        if routed >= n and armed >= n and mails >= n and idle(stack):
            return time.perf_counter() - started
        if time.perf_counter() > deadline:
            raise RuntimeError(f"set-up did not settle in {limit:.0f} s: {routed} routed, {armed} clocks, {mails} mails")
        if time.perf_counter() - last_report > 15:
            progress(f"storm: settling: {routed}/{n} routed to L1, {armed} ola:L1 clocks, {mails} mails")
            last_report = time.perf_counter()
        time.sleep(0.5)


# --- the storm ------------------------------------------------------------------------------------
def make_due(stack: Stack, n: int) -> tuple[float, float]:
    """Harness write to the sla service's own clocks table; returns T as (epoch, perf_counter)."""
    t_epoch = time.time() + LEAD
    t_perf = time.perf_counter() + LEAD
    with psycopg.connect(stack.urls["sla"]) as conn:
        count = conn.execute("""
            UPDATE clocks SET started_at = to_timestamp(%(t)s) - make_interval(secs => target_seconds - elapsed_before),
                              segment_started_at = to_timestamp(%(t)s) - make_interval(secs => target_seconds - elapsed_before),
                              due_at = to_timestamp(%(t)s), next_fire_at = to_timestamp(%(t)s), warned = 99
            WHERE name = 'ola:L1' AND status = 'running' AND calendar = '24x7'""", {"t": t_epoch}).rowcount
    if count != n:
        raise RuntimeError(f"expected {n} running ola:L1 clocks on the 24x7 calendar, moved {count}")
    return t_epoch, t_perf


def watch(stack: Stack, n: int, mark: int, t_perf: float, limit: float) -> dict:
    """Poll until every ticket is at L2 and every mail is in; then 3 s more for stragglers."""
    escalated_at = mailed_at = None
    deadline = t_perf + limit
    last_report = 0.0
    expected = n * MAILS_PER_TICKET
    while time.perf_counter() < deadline:
        now = time.perf_counter()
        if escalated_at is None:
            at_l2 = stack.sql("intake", "SELECT count(*) FROM tickets WHERE tier = 'L2'")[0][0]
            if at_l2 >= n:
                escalated_at = now
        mails = len(stack.smtp.since(mark))
        if mailed_at is None and mails >= expected:
            mailed_at = max(e[0] for e in stack.smtp.since(mark))
        if escalated_at is not None and mailed_at is not None:
            break
        if now - last_report > 10 and now > t_perf:
            at_l2 = stack.sql("intake", "SELECT count(*) FROM tickets WHERE tier = 'L2'")[0][0]
            progress(f"storm: T+{now - t_perf:.0f} s: {at_l2}/{n} at L2, {mails}/{expected} mails")
            last_report = now
        time.sleep(0.2)
    time.sleep(3.0)
    while not idle(stack) and time.perf_counter() < deadline:
        time.sleep(0.5)
    return {"escalated_s": (escalated_at - t_perf) if escalated_at else None,
            "notified_s": (mailed_at - t_perf) if mailed_at else None}


def stage_times(stack: Stack, t_epoch: float) -> dict:
    """When each stage finished its last ticket, seconds after T (from the services' own rows)."""
    def one(service, query):
        value = stack.sql(service, query, {"t": t_epoch})[0][0]
        return float(value) if value is not None else None
    after = "extract(epoch from {col}) - %(t)s"
    return {
        "sla engine wrote the last sla.breached": one("sla", "SELECT max(" + after.format(col="created_at") + ") FROM outbox WHERE type = 'sla.breached'"),
        "sla relay published it": one("sla", "SELECT max(" + after.format(col="published_at") + ") FROM outbox WHERE type = 'sla.breached'"),
        "escalation wrote the last L2 routing": one("escalation", "SELECT max(" + after.format(col="created_at") + ") FROM outbox WHERE type = 'escalation.routed' AND body::json->'payload'->>'tier' = 'L2'"),
        "escalation relay published it": one("escalation", "SELECT max(" + after.format(col="published_at") + ") FROM outbox WHERE type = 'escalation.routed' AND body::json->'payload'->>'tier' = 'L2'"),
        "intake applied the last one": one("intake", "SELECT max(" + after.format(col="created_at") + ") FROM outbox WHERE type = 'ticket.assigned' AND body::json->'payload'->'ticket'->>'tier' = 'L2'"),
        "intake relay published ticket.assigned": one("intake", "SELECT max(" + after.format(col="published_at") + ") FROM outbox WHERE type = 'ticket.assigned' AND body::json->'payload'->'ticket'->>'tier' = 'L2'"),
        "notify planned the last mail": one("notify", "SELECT max(" + after.format(col="created_at") + ") FROM deliveries WHERE source_event_type IN ('sla.breached', 'ticket.assigned') AND created_at > to_timestamp(%(t)s) - interval '1 second'"),
        "notify sent the last mail": one("notify", "SELECT max(" + after.format(col="sent_at") + ") FROM deliveries WHERE source_event_type IN ('sla.breached', 'ticket.assigned') AND created_at > to_timestamp(%(t)s) - interval '1 second'"),
    }


def duplicates(stack: Stack, mark: int) -> dict:
    def dup(service, where):
        total, distinct = stack.sql(service, "SELECT count(*), count(DISTINCT body::json->>'ticket_id') FROM outbox WHERE " + where)[0]
        return {"events": total, "tickets": distinct, "duplicates": total - distinct}
    mails = stack.smtp.since(mark)
    per_message = {}
    for _at, key, rcpt, subject, message_id in mails:
        per_message.setdefault((key, rcpt, subject), 0)
        per_message[(key, rcpt, subject)] += 1
    ids = [m[4] for m in mails]
    return {
        "sla.breached per ola:L1 clock": dup("sla", "type = 'sla.breached' AND body::json->'payload'->>'clock' = 'ola:L1'"),
        "escalation.routed to L2 per ticket": dup("escalation", "type = 'escalation.routed' AND body::json->'payload'->>'tier' = 'L2'"),
        "ticket.assigned at L2 per ticket": dup("intake", "type = 'ticket.assigned' AND body::json->'payload'->'ticket'->>'tier' = 'L2'"),
        "mails per (ticket, recipient, subject)": {"events": len(mails), "tickets": len(per_message),
                                                   "duplicates": len(mails) - len(per_message)},
        "mails per Message-ID": {"events": len(ids), "tickets": len(set(ids)), "duplicates": len(ids) - len(set(ids))},
    }


def tierline_storm(n: int, concurrency: int, limit: float, profile: tuple[str, ...] = ()) -> dict:
    progress(f"storm: starting the four services; then {n} P1 tickets")
    stack = Stack("storm", storm_config(), profile=profile).start()
    try:
        created = create(stack, n, concurrency)
        progress(f"storm: {n} created in {created['seconds']:.0f} s ({created['per_s']:.0f}/s); settling")
        settle_s = settle(stack, n, limit)
        progress(f"storm: settled {settle_s:.0f} s after the last create; moving {n} ola:L1 clocks due to T = now + {LEAD:g} s")
        mark = stack.smtp.count()
        t_epoch, t_perf = make_due(stack, n)
        times = watch(stack, n, mark, t_perf, limit)
        progress(f"storm: all at L2 at T+{times['escalated_s'] or float('nan'):.1f} s, all mails at "
                 f"T+{times['notified_s'] or float('nan'):.1f} s")
        mails = stack.smtp.since(mark)
        if stack.database_interruptions:
            progress(f"storm: PostgreSQL was unavailable {stack.database_interruptions} times during the run")
        return {"database_interruptions": stack.database_interruptions, "created": created, "settle_s": settle_s, **times, "stages_s": stage_times(stack, t_epoch),
                "mails": len(mails), "mails_expected": n * MAILS_PER_TICKET,
                "mail_lateness_s": summary([m[0] - t_perf for m in mails]),
                "duplicates": duplicates(stack, mark)}
    except BaseException:
        progress("storm failed; service logs:\n" + stack.tail())
        raise
    finally:
        stack.stop()


# --- the hand-built baseline ------------------------------------------------------------------------
def raw_storm(n: int, tick: float = 0.5) -> dict:
    url, drop = pg_schema_url("rawstorm")
    smtp = MailLog().start()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE tickets (id bigserial PRIMARY KEY, key text NOT NULL, tier text NOT NULL, "
                         "title text NOT NULL, due_at timestamptz NOT NULL)")
            conn.execute("INSERT INTO tickets (key, tier, title, due_at) SELECT 'INC-' || g, 'L1', %s, now() + interval '1 day' "
                         "FROM generate_series(1, %s) g", (TICKET["title"], n))
            conn.execute("CREATE INDEX ON tickets (due_at) WHERE tier = 'L1'")
            t_epoch = time.time() + LEAD
            t_perf = time.perf_counter() + LEAD
            conn.execute("UPDATE tickets SET due_at = to_timestamp(%s)", (t_epoch,))
        done = 0
        escalated_at = None
        with psycopg.connect(url) as conn, smtplib.SMTP("127.0.0.1", smtp.port) as client:
            while done < n:
                time.sleep(tick)
                rows = conn.execute("UPDATE tickets SET tier = 'L2' WHERE tier = 'L1' AND due_at <= now() "
                                    "RETURNING key, title").fetchall()
                conn.commit()
                done += len(rows)
                if done >= n and escalated_at is None:
                    escalated_at = time.perf_counter()
                for key, title in rows:
                    for to, subject in (("dmitry.volkov@example.com", f"[{key}] Assigned to Infrastructure: {title}"),
                                        ("sd-manager@example.com", f"[{key}] SLA breached (OLA L1): {title}")):
                        msg = EmailMessage()
                        msg["Subject"], msg["From"], msg["To"] = subject, "tierline@example.com", to
                        msg.set_content(f"{key} needs you.\n" * 10)
                        client.send_message(msg)
        mails = smtp.since(0)
        return {"escalated_s": escalated_at - t_perf, "notified_s": max(m[0] for m in mails) - t_perf,
                "mails": len(mails)}
    finally:
        smtp.stop()
        drop()


def run(n: int = 10_000, concurrency: int = 8, raw_runs: int = 3, limit: float = 900.0,
        profile: tuple[str, ...] = ()) -> dict:
    ours = tierline_storm(n, concurrency, limit, profile)
    raws = []
    for i in range(raw_runs):
        progress(f"storm baseline run {i + 1}/{raw_runs}: hand-built UPDATE + SMTP loop, {n} tickets")
        raws.append(raw_storm(n))
    raw = {"escalated_s": median([r["escalated_s"] for r in raws]), "notified_s": median([r["notified_s"] for r in raws]),
           "runs": raws}
    dups = sum(d["duplicates"] for d in ours["duplicates"].values())
    result = {"params": {"n": n, "create_concurrency": concurrency, "raw_runs": raw_runs, "lead_s": LEAD,
                         "config": "bench/results/storm-config.yaml"},
              "ours": ours, "raw": raw, "duplicates_total": dups}
    save(f"storm_{n}", result)
    return result


def _ratio(a, b) -> str:
    if a is None or b is None:
        return "—"
    if b < 0.1:  # the baseline finished within its first tick: a ratio would only measure the tick's phase
        return "baseline < 0.1 s"
    return f"{a / b:.1f}x"


def table(result: dict) -> list[str]:
    o, r, n = result["ours"], result["raw"], result["params"]["n"]
    fmt = (lambda v: f"{v:.1f}" if v is not None else "did not finish")
    return [
        f"| storm: {n} OLA breaches in one second -> all at L2 (s after due) | {fmt(o['escalated_s'])} | "
        f"{r['escalated_s']:.1f} (hand-built UPDATE loop) | {_ratio(o['escalated_s'], r['escalated_s'])} |",
        f"| storm: -> all {o['mails_expected']} mails accepted (s after due) | {fmt(o['notified_s'])} | "
        f"{r['notified_s']:.1f} (same loop + one SMTP connection) | {_ratio(o['notified_s'], r['notified_s'])} |",
        f"| storm: duplicates (breaches, routings, assignments, mails) | {result['duplicates_total']} | 0 | — |",
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8, help="HTTP clients creating the tickets")
    parser.add_argument("--raw-runs", type=int, default=3)
    parser.add_argument("--limit", type=float, default=900.0, help="give up waiting after this many seconds")
    parser.add_argument("--profile", nargs="*", default=[], help="services to run under cProfile (bench/profiled.py)")
    args = parser.parse_args()
    print("\n".join(table(run(args.n, args.concurrency, args.raw_runs, args.limit, tuple(args.profile)))))
