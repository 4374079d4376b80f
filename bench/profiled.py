"""`tierline` under cProfile, every thread included: `python -m bench.profiled serve notify`.

The benchmarks start a service this way with `--profile SERVICE`; at a graceful stop (SIGTERM)
the merged statistics of all its threads are written to $TIERLINE_PROFILE_OUT (a pstats file)
and a text summary beside it (.txt: top functions by own time and by cumulative time).
cProfile is the standard library's; it slows the profiled process down (roughly 1.5-2x), so
figures from a profiled run are not benchmark figures.
"""
from __future__ import annotations

import atexit
import cProfile
import io
import os
import pstats
import sys
import threading

_profiles: list[cProfile.Profile] = []
_original_run = threading.Thread.run


def _profiled_run(self) -> None:
    profile = cProfile.Profile()
    _profiles.append(profile)
    profile.enable()
    try:
        _original_run(self)
    finally:
        profile.disable()


def _dump(main: cProfile.Profile, out: str) -> None:
    main.disable()
    stats = None
    for profile in [main, *_profiles]:
        try:
            profile.create_stats()
        except Exception:  # a thread still running: its profile so far is still good
            continue
        if stats is None:
            stats = pstats.Stats(profile)
        else:
            stats.add(profile)
    if stats is None:
        return
    stats.dump_stats(out)
    text = io.StringIO()
    stats.stream = text
    stats.sort_stats("tottime").print_stats(40)
    stats.sort_stats("cumulative").print_stats(60)
    with open(out + ".txt", "w") as fh:
        fh.write(text.getvalue())


def main() -> int:
    out = os.environ.get("TIERLINE_PROFILE_OUT", "tierline.prof")
    threading.Thread.run = _profiled_run
    profile = cProfile.Profile()
    profile.enable()
    atexit.register(_dump, profile, out)
    from services.cli import main as cli
    return cli(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
