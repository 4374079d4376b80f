"""`tierline demo` plays its day against a running embedded Tierline, from start to KPI report."""
from __future__ import annotations

import subprocess

import pytest

from tests.e2e.system import embedded, tierline_bin
from shared.config import DEFAULTS_FILE

pytestmark = [pytest.mark.e2e]


def test_demo_plays_a_day(tmp_path):
    system = embedded(tmp_path, config_file=DEFAULTS_FILE, tracker_url="", tracker_secret="")
    try:
        token = system.tokens["admin"]["Authorization"].split()[1]
        url = f"http://127.0.0.1:{system.ports['tierline']}"
        run = subprocess.run([tierline_bin(), "demo", "--url", url, "--token", token],
                             capture_output=True, text=True, timeout=180)
        out = run.stdout
        assert run.returncode == 0, out + run.stderr
        for step in ("routed -> L1 / Service Desk", "escalated -> L2", "escalated -> L3", "escalated -> DEV",
                     "answered and resolved at L1", "pending: first_response=paused", "reopened",
                     '"tickets": 4'):
            assert step in out, f"missing {step!r} in:\n{out}"
    finally:
        system.stop()
