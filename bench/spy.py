"""Sample a running Tierline process with py-spy and print where its time goes.

    python -m bench.spy intake --concurrency 4 --seconds 20

starts `tierline serve intake` as the intake benchmark does, drives POST /api/v1/tickets from
c client threads, and has py-spy (a sampling profiler: it reads the process from outside, so the
service runs at full speed) record every thread for the duration. Printed: the share of samples
per function, inclusive and own ("self"), over the threads that were busy (py-spy's default;
`--idle` counts waiting threads too, a wall-clock view; `--within Tickets.post` keeps only the
request handler's stacks). The collapsed stacks are kept in bench/results/spy-intake.txt
for flame-graph tools.
"""
from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import AMQP_URL, RESULTS, pg_schema_url, progress, unique
from bench.intake import TierlineHttp, _hammer, start_intake
from shared.bus import connect
from shared.topology import TOPOLOGY


def py_spy() -> str:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        raise SystemExit("py-spy is not installed: ./dev installs it with the test extras")
    return exe


def record(pid: int, seconds: float, out: Path, rate: int = 200, idle: bool = False) -> subprocess.Popen:
    return subprocess.Popen([py_spy(), "record", "--pid", str(pid), "--duration", str(int(seconds)),
                             "--rate", str(rate), "--format", "raw", "--output", str(out), "--nonblocking",
                             *(["--idle"] if idle else [])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"; keep function and file.
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{path}:{name}"


def summarise(collapsed: Path, top: int = 35, within: str | None = None) -> list[str]:
    inclusive, own = collections.Counter(), collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [frame_name(f) for f in stack.split(";")[1:]]  # [0] is the thread
        if within and not any(within in f for f in frames):
            continue
        total += n
        for name in set(frames):
            inclusive[name] += n
        if frames:
            own[frames[-1]] += n
    lines = [f"{total} samples" + (f" within {within}" if within else ""), "", "inclusive %  function"]
    lines += [f"{100 * n / total:10.1f}  {name}" for name, n in inclusive.most_common(top)]
    lines += ["", "self %      function"]
    lines += [f"{100 * n / total:10.1f}  {name}" for name, n in own.most_common(top)]
    return lines


def run(concurrency: int, seconds: float, idle: bool = False, within: str | None = None) -> list[str]:
    workdir = Path(tempfile.mkdtemp(prefix="tierline-spy-"))
    app_url, drop_app = pg_schema_url("spy")
    prefix = unique("bench.") + "."
    proc, port, token = start_intake(workdir, app_url, prefix, threads=max(concurrency, 4))
    out = RESULTS / "spy-intake.txt"
    try:
        client = TierlineHttp(f"http://127.0.0.1:{port}/api/v1/tickets", token)
        client.once(client.open())
        progress(f"py-spy on intake (pid {proc.pid}), c={concurrency}, {seconds:.0f} s")
        spy = record(proc.pid, seconds + 1, out, idle=idle)
        time.sleep(0.5)
        rate, _ = _hammer(client, concurrency, seconds)
        _, err = spy.communicate(timeout=60)
        if spy.returncode != 0:
            raise SystemExit(f"py-spy failed: {err.decode()[-500:]}")
    finally:
        proc.terminate()
        proc.wait(30)
        connect(AMQP_URL, prefix=prefix).delete_topology(TOPOLOGY)
        drop_app()
    return [f"intake under py-spy: {rate:.0f} tickets/s at c={concurrency}", *summarise(out, within=within)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("service", choices=["intake", "pid"],
                        help="intake: start and load it; pid: sample a running process (--pid) as it is")
    parser.add_argument("--pid", type=int)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--idle", action="store_true", help="count waiting threads too (wall-clock view)")
    parser.add_argument("--within", help="only stacks through this function, e.g. Tickets.post")
    args = parser.parse_args()
    if args.service == "pid":  # e.g. `tierline serve escalation` during a breach storm
        out = RESULTS / f"spy-{args.pid}.txt"
        spy = record(args.pid, args.seconds, out, idle=args.idle)
        _, err = spy.communicate(timeout=args.seconds + 60)
        if spy.returncode != 0:
            raise SystemExit(f"py-spy failed: {err.decode()[-500:]}")
        print("\n".join(summarise(out, within=args.within)))
    else:
        print("\n".join(run(args.concurrency, args.seconds, args.idle, args.within)))
