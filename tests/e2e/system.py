"""Starts Tierline as real OS processes for end-to-end tests.

- `multi_process`: the four services exactly as docker-compose.yml names them (command and
  TIERLINE_* environment read from the file), hosts pointed at 127.0.0.1: the local RabbitMQ,
  a PostgreSQL schema per service, the test's SMTP server and HTTP receiver.
- `embedded`: `tierline run`, memory bus, SQLite and the .eml outbox under a temp var dir.
"""
from __future__ import annotations

import copy
import re
import email
import email.policy
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

from shared.auth import TokenStore
from shared.config import DEFAULTS_FILE
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "sla", "escalation", "notify")
PREFIXES = {"/api/v1/tickets": "intake", "/api/v1/reports": "intake", "/api/v1/sla": "sla",
            "/api/v1/escalation": "escalation", "/api/v1/notify": "notify"}
USERS = {  # role, email, tier, groups
    "reporter": ("reporter", "kate@example.com", None, []),
    "agent1": ("agent", "ivan.petrov@example.com", "L1", ["Service Desk"]),
    "agent2": ("agent", "dmitry.volkov@example.com", "L2", ["Infrastructure"]),
    "agent3": ("agent", "elena.sokolova@example.com", "L3", ["Platform Engineering"]),
    "lead": ("lead", "olga@example.com", None, []),
    "admin": ("admin", "admin@example.com", None, []),
}


def interpolate(value: str) -> str:
    """docker-compose's `${NAME:-default}` / `${NAME}` with an empty .env: the defaults."""
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)


def tierline_bin() -> str:
    candidate = Path(sys.executable).parent / "tierline"
    return str(candidate) if candidate.exists() else shutil.which("tierline")


def fast_config(path: Path, *, ola_seconds: int = 3) -> Path:
    """The shipped defaults with P1 clocks in seconds, so a flow breaches within a test."""
    doc = yaml.safe_load(DEFAULTS_FILE.read_text(encoding="utf-8"))
    policies = copy.deepcopy(doc["policies"])
    policies[0].update(first_response=600, resolution=3600, warnings=[90],
                       ola={"L1": ola_seconds, "L2": ola_seconds, "L3": 3600, "DEV": 3600})
    doc["policies"] = policies
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def make_tokens(path: Path) -> dict[str, dict]:
    store = TokenStore(path)
    headers = {}
    for name, (role, mail, tier, groups) in USERS.items():
        secret = store.add(name=name, role=role, email=mail, tier=tier, groups=groups)
        headers[name] = {"Authorization": f"Bearer {secret}"}
    return headers


class System:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self.envs: dict[str, dict] = {}
        self.logs: dict[str, Path] = {}
        self.tokens: dict[str, dict] = {}
        self.mail_dir: Path | None = None
        self.smtp = None

    # --- processes ---------------------------------------------------------------------------
    def start(self, name: str, command: list[str], env: dict) -> None:
        self.logs[name] = self.workdir / f"{name}.log"
        self.envs[name] = env
        full_env = {**{k: v for k, v in os.environ.items() if not k.startswith("TIERLINE_")}, **env}
        with open(self.logs[name], "ab") as log:
            self.procs[name] = subprocess.Popen(command, env=full_env, cwd=self.workdir, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for name, port in self.ports.items():
            while True:
                proc = self.procs[name]
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")
                try:
                    if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} not ready:\n{self.tail(name)}")
                time.sleep(0.2)

    def kill(self, name: str, sig=signal.SIGKILL) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
            proc.wait(30)

    def restart(self, name: str) -> None:
        self.kill(name)
        self.start(name, self.procs[name].args, self.envs[name])

    def stop(self) -> None:
        for name in list(self.procs):
            proc = self.procs[name]
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for name, proc in self.procs.items():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    def tail(self, name: str, lines: int = 60) -> str:
        try:
            return "\n".join(self.logs[name].read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    # --- HTTP ----------------------------------------------------------------------------------
    def url(self, path: str) -> str:
        for prefix, service in PREFIXES.items():
            if path.startswith(prefix):
                return f"http://127.0.0.1:{self.ports.get(service) or self.ports['tierline']}{path}"
        raise ValueError(path)

    def call(self, method: str, path: str, who: str, headers: dict | None = None, **kwargs) -> requests.Response:
        return requests.request(method, self.url(path), headers={**self.tokens[who], **(headers or {})},
                                timeout=kwargs.pop("timeout", 15), **kwargs)

    # --- mail ------------------------------------------------------------------------------------
    def mails_to(self, address: str) -> list:
        if self.smtp is not None:
            return self.smtp.to(address)
        found = []
        for path in sorted(self.mail_dir.glob("*.eml")) if self.mail_dir and self.mail_dir.exists() else []:
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if address in (msg["To"] or ""):
                found.append(msg)
        return found


def multi_process(workdir: Path, *, amqp_url: str, bus_prefix: str, database_urls: dict[str, str],
                  smtp, tracker_url: str, tracker_secret: str, config_file: Path) -> System:
    system = System(workdir)
    system.smtp = smtp
    system.tokens = make_tokens(workdir / "tokens.yaml")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name in SERVICES:
        spec = compose["services"][name]
        env = {k: interpolate(str(v)) for k, v in spec["environment"].items()}
        port = free_port()
        # Point the compose environment at this machine: same variables, local addresses.
        env.update(TIERLINE_BUS_URL=amqp_url, TIERLINE_BUS_PREFIX=bus_prefix, TIERLINE_HOST="127.0.0.1",
                   TIERLINE_PORT=str(port), TIERLINE_TOKENS_FILE=str(workdir / "tokens.yaml"),
                   TIERLINE_CONFIG=str(config_file), TIERLINE_VAR_DIR=str(workdir / f"var-{name}"),
                   TIERLINE_RELAY_INTERVAL="0.1", TIERLINE_SLA_TICK_SECONDS="0.2",
                   TIERLINE_NOTIFY_RETRY_SECONDS="0.2", TIERLINE_LOG_JSON="false")
        env[f"TIERLINE_{name.upper()}_DATABASE_URL"] = database_urls[name]
        if "TIERLINE_SMTP_URL" in env:
            env["TIERLINE_SMTP_URL"] = smtp.url
        if "TIERLINE_TRACKER_URL" in env:
            env.update(TIERLINE_TRACKER_URL=tracker_url, TIERLINE_TRACKER_SECRET=tracker_secret,
                       TIERLINE_TRACKER_KIND="webhook")
        command = [tierline_bin(), *spec["command"][1:]]
        system.ports[name] = port
        system.start(name, command, env)
    system.wait_ready()
    return system


def embedded(workdir: Path, *, config_file: Path, tracker_url: str, tracker_secret: str) -> System:
    system = System(workdir)
    var = workdir / "var"
    system.tokens = make_tokens(var / "tokens.yaml")
    system.mail_dir = var / "outbox"
    port = free_port()
    env = {"TIERLINE_VAR_DIR": str(var), "TIERLINE_PORT": str(port), "TIERLINE_CONFIG": str(config_file),
           "TIERLINE_TRACKER_URL": tracker_url, "TIERLINE_TRACKER_SECRET": tracker_secret,
           "TIERLINE_SLA_TICK_SECONDS": "0.2", "TIERLINE_LOG_JSON": "false"}
    system.ports["tierline"] = port
    system.start("tierline", [tierline_bin(), "run"], env)
    system.wait_ready()
    return system
