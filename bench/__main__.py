"""Tierline's benchmark suite: `python -m bench` (or `./dev bench`) runs every part; `python -m bench
bus storm` runs some. Prints progress lines and a Markdown table, and writes
bench/results/results.json and results.md (machine, versions, parameters, date, load).

Parts, in order: bus, intake, pipeline, sla (bench/sla_timer.py, with bench/raw_timer.py as its
baseline), storm. `--quick` shrinks every part for a smoke run (figures not for publishing).
The default sizes keep the whole suite under 15 minutes on a 2-core machine; the full breach
storm of 10,000 tickets is `python -m bench storm --storm-n 10000` (see docs/performance.md).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from bench.common import RESULTS, clock_lead, machine, median, progress

PARTS = ("bus", "intake", "pipeline", "sla", "storm")
HEADER = ["| benchmark | Tierline | raw baseline | ratio |", "|---|---|---|---|"]
PACKAGES = ("tierline", "pika", "SQLAlchemy", "psycopg", "Flask", "flask-smorest", "marshmallow", "waitress",
            "APScheduler", "aiosmtpd")


# --- the environment ---------------------------------------------------------------------------------
class LoadWatch:
    """Samples the 1-minute load average every 5 s while the suite runs (others' test runs on
    the same machine show up here) and notes whether PostgreSQL restarted meanwhile."""

    def __init__(self):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self.pg_started_before = _pg_started()
        self.others_before = _other_test_processes()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.wait(5):
            self.samples.append(os.getloadavg()[0])

    def start(self) -> "LoadWatch":
        self.samples.append(os.getloadavg()[0])
        self._thread.start()
        return self

    def stop(self) -> dict:
        self._stop.set()
        after = _pg_started()
        return {"load_1min": {"start": self.samples[0], "max": max(self.samples), "median": median(self.samples)},
                "cpus": os.cpu_count(), "other_test_processes_at_start": self.others_before,
                "other_test_processes_at_end": _other_test_processes(),
                "postgresql_restarted_during_run": bool(self.pg_started_before and after and after != self.pg_started_before)}


def _pg_started() -> str | None:
    try:
        import psycopg

        from bench.common import PG_URL
        with psycopg.connect(PG_URL, connect_timeout=5) as conn:
            return str(conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0])
    except Exception:
        return None


def _other_test_processes() -> list[str]:
    """pytest runs of other people on this machine (they compete for the 2 cores)."""
    try:
        out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, timeout=10).stdout
    except Exception:
        return []
    mine = str(os.getpid())
    return [line.strip()[:160] for line in out.splitlines()
            if "pytest" in line and "bench" not in line and not line.strip().startswith(mine)]


def versions() -> dict:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    try:
        root = Path(__file__).resolve().parents[1]
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True,
                                    timeout=30).stdout.strip())
        found["git"] = f"{commit}{' (uncommitted changes)' if dirty else ''}"
    except Exception:
        found["git"] = None
    return found


# --- the parts -------------------------------------------------------------------------------------------
def part_bus(args) -> tuple[dict, list[str]]:
    from bench import bus
    result = bus.run(n=args.bus_n, runs=args.runs)
    return result, bus.table(result)


def part_intake(args) -> tuple[dict, list[str]]:
    from bench import intake
    result = intake.run(concurrencies=tuple(args.intake_concurrency), seconds=args.intake_seconds, runs=args.runs)
    return result, intake.table(result)


def part_pipeline(args) -> tuple[dict, list[str]]:
    from bench import pipeline
    result = pipeline.run(rates=tuple(args.pipeline_rates), seconds=args.pipeline_seconds, runs=args.pipeline_runs)
    return result, pipeline.table(result)


def part_sla(args) -> tuple[dict, list[str]]:
    from bench import raw_timer
    script = Path(__file__).with_name("sla_timer.py")
    if not script.exists():
        return {"missing": "bench/sla_timer.py is not in this tree"}, [
            "| sla: timer engine lateness | not measured: bench/sla_timer.py missing | — | — |"]
    sizes = list(args.sla_n) + ([1_000_000] if args.sla_million else [])
    result, rows = {"runs": {}}, []
    for n in sizes:
        window = args.sla_window.get(n, 60.0)
        name = f"sla_timer_{n}"
        progress(f"sla: {n} clocks due over {window:g} s (bench/sla_timer.py, its own process)")
        started = time.monotonic()
        lead = clock_lead(n)
        proc = subprocess.run([sys.executable, "-m", "bench.sla_timer", "--n", str(n), "--window", str(window),
                               "--lead", str(lead), "--name", name], cwd=Path(__file__).resolve().parents[1],
                              text=True, capture_output=True, timeout=window + lead + 900)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout)[-1500:]
            result["runs"][n] = {"error": tail}
            rows.append(f"| sla: {n} clocks over {window:g} s | failed (see results.json) | — | — |")
            progress(f"sla {n}: failed\n{tail}")
            continue
        ours = json.loads((RESULTS / f"{name}.json").read_text())
        progress(f"sla {n}: done in {time.monotonic() - started:.0f} s; raw timer baseline")
        raw = raw_timer.run(n, window, lead=lead)
        result["runs"][n] = {"ours": ours, "raw": raw}
        o, r = ours["lateness_to_consumer_s"], raw["lateness_to_consumer_s"]
        rows.append("| sla: {:,} clocks due over {:g} s, lateness due -> on the bus, p50 / p99 / max (s) | "
                    "{:.2f} / {:.2f} / {:.2f} | {:.2f} / {:.2f} / {:.2f} (raw poller, same tick) | {:.1f}x / {:.1f}x |".format(
                        n, window, o["p50"], o["p99"], o["max"], r["p50"], r["p99"], r["max"],
                        o["p50"] / r["p50"], o["p99"] / r["p99"]))
        rows.append("| sla: {:,} clocks: events delivered, throughput, peak RSS of the sla process | "
                    "{}/{}, {:.0f} events/s, {:.0f} MB | {}/{} | — |".format(
                        n, ours["events_received"], ours["events_expected"], ours["throughput_events_per_s"],
                        ours["peak_rss_mb"], raw["events_received"], n))
    return result, rows


def part_storm(args) -> tuple[dict, list[str]]:
    from bench import storm
    result = storm.run(n=args.storm_n, raw_runs=args.runs)
    return result, storm.table(result)


RUNNERS = {"bus": part_bus, "intake": part_intake, "pipeline": part_pipeline, "sla": part_sla, "storm": part_storm}


# --- output ------------------------------------------------------------------------------------------------
def markdown(report: dict) -> str:
    m, env = report["machine"], report["environment"]
    lines = [f"# Tierline benchmark results ({m['date']})", "",
             f"Machine: {m['cpus']} CPUs, {m['platform']}; Python {m['python']}; RabbitMQ {m['rabbitmq']}; "
             f"PostgreSQL {m['postgresql']}.",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v) + ".",
             f"Load (1-min average) during the run: start {env['load_1min']['start']:.1f}, median "
             f"{env['load_1min']['median']:.1f}, max {env['load_1min']['max']:.1f}"
             + (f"; other test runs on the machine at start: {len(env['other_test_processes_at_start'])}"
                if env["other_test_processes_at_start"] else "; no other test runs seen at start")
             + ("; PostgreSQL was restarted during the run (by someone else's fault tests?)"
                if env["postgresql_restarted_during_run"] else "") + ".",
             f"Duration: {report['duration_s'] / 60:.1f} min. Parameters: `{json.dumps(report['params'])}`.", "",
             "Ratios: Tierline / baseline. For rates (per second) higher is better and 1.0 is the ceiling; "
             "for times and latencies lower is better and 1.0 is the floor.", "", *HEADER]
    for part in report["parts"].values():
        lines.extend(part["rows"])
    lines.append("")
    for name, part in report["parts"].items():
        if part.get("error"):
            lines.append(f"- {name} failed: `{part['error'].splitlines()[-1]}`")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="*", metavar="PART", help=f"some of {', '.join(PARTS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each (smoke test)")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (bus, intake, storm baseline)")
    parser.add_argument("--storm-n", type=int, default=None, help="tickets in the breach storm (default 1,000)")
    parser.add_argument("--sla-n", type=int, nargs="+", default=None, help="clock counts (default 10000 100000)")
    parser.add_argument("--sla-million", action="store_true", help="also 1,000,000 clocks (about 25 minutes more)")
    args = parser.parse_args(argv)
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    parts = [p for p in PARTS if p in args.parts] if args.parts else list(PARTS)
    quick = args.quick
    args.runs = 1 if quick else args.runs
    args.bus_n = 500 if quick else 3000
    args.intake_concurrency = [1, 4] if quick else [1, 4, 16]
    args.intake_seconds = 2.0 if quick else 4.0
    args.pipeline_rates = [5, 10] if quick else [5, 10, 20, 40]
    args.pipeline_seconds = 3.0 if quick else 8.0
    args.pipeline_runs = 1 if quick else 2
    args.sla_n = args.sla_n or ([2000] if quick else [10_000, 100_000])
    args.sla_window = {2000: 5.0, 10_000: 10.0, 100_000: 60.0, 1_000_000: 600.0}
    args.storm_n = args.storm_n or (100 if quick else 1000)
    params = {k: v for k, v in vars(args).items() if k not in ("parts",)}
    params["sla_window"] = {str(k): v for k, v in args.sla_window.items()}

    started = time.monotonic()
    watch = LoadWatch().start()
    progress(f"Tierline benchmarks: {', '.join(parts)}{' (quick)' if quick else ''}; load now {os.getloadavg()[0]:.1f}")
    report = {"machine": machine(), "versions": versions(), "params": params, "parts": {}}
    for i, name in enumerate(parts, 1):
        progress(f"== {i}/{len(parts)} {name} ==")
        t0 = time.monotonic()
        try:
            result, rows = RUNNERS[name](args)
            report["parts"][name] = {"rows": rows, "result": result, "seconds": time.monotonic() - t0}
        except Exception as exc:  # one part failing must not lose the others' figures
            progress(f"{name} failed: {exc!r}")
            report["parts"][name] = {"rows": [f"| {name} | failed: {type(exc).__name__} | — | — |"],
                                     "error": traceback.format_exc(), "seconds": time.monotonic() - t0}
        progress(f"{name}: {report['parts'][name]['seconds']:.0f} s")
    report["environment"] = watch.stop()
    report["duration_s"] = time.monotonic() - started
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "results.json").write_text(json.dumps(report, indent=2, default=str))
    text = markdown(report)
    (RESULTS / "results.md").write_text(text)
    print(text)
    progress(f"done in {report['duration_s'] / 60:.1f} min: bench/results/results.md, results.json")
    return 1 if any(p.get("error") for p in report["parts"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
