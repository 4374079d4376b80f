"""Test harness: finds RabbitMQ and PostgreSQL as DESIGN.md says and isolates every test.

Order: TIERLINE_TEST_AMQP_URL / TIERLINE_TEST_DATABASE_URL; else testcontainers when a Docker
engine answers; else the local defaults if they answer; else skip with the reason, except under
CI=true, where a missing broker or database fails the run.
Each test gets its own bus name prefix and its own PostgreSQL schemas.
"""
from __future__ import annotations

import os
import socket
import uuid
from urllib.parse import urlparse

import pytest
from sqlalchemy import create_engine, text

from shared.config import load_settings

LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"
LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/test"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _answers(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=2):
            return True
    except OSError:
        return False


def _docker_answers() -> bool:
    try:
        import docker
        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


def _unavailable(what: str, reason: str):
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true: {reason}", pytrace=False)
    pytest.skip(f"{what} unavailable: {reason}")


def _delete_leftover_test_queues(url: str) -> None:
    """Queues of earlier runs killed before their teardown (names t<hex10>.*) are removed."""
    import re
    import subprocess

    import pika
    try:
        names = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name"], capture_output=True,
                               text=True, timeout=60).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return
    stale = [n for n in names if re.match(r"^t[0-9a-f]{10}\.", n)]
    if stale:
        conn = pika.BlockingConnection(pika.URLParameters(url))
        channel = conn.channel()
        for name in stale:
            channel.queue_delete(name)
        conn.close()


@pytest.fixture(scope="session")
def amqp_url():
    url = os.environ.get("TIERLINE_TEST_AMQP_URL")
    if url:
        yield url
        return
    if _docker_answers():
        from testcontainers.rabbitmq import RabbitMqContainer
        container = RabbitMqContainer("rabbitmq:3.13-management").start()
        params = container.get_connection_params()
        yield f"amqp://guest:guest@{params.host}:{params.port}/%2F"
        container.stop()
        return
    if _answers(LOCAL_AMQP):
        if IN_CI:  # CI is alone on its machine; a developer's parallel runs would lose queues
            _delete_leftover_test_queues(LOCAL_AMQP)
        yield LOCAL_AMQP
        return
    _unavailable("RabbitMQ", "no TIERLINE_TEST_AMQP_URL, no Docker engine, nothing on 127.0.0.1:5672")


@pytest.fixture(scope="session")
def pg_url():
    url = os.environ.get("TIERLINE_TEST_DATABASE_URL")
    if url:
        yield url
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer
        container = PostgresContainer("postgres:16", driver="psycopg").start()
        yield container.get_connection_url()
        container.stop()
        return
    if _answers(LOCAL_PG):
        yield LOCAL_PG
        return
    _unavailable("PostgreSQL", "no TIERLINE_TEST_DATABASE_URL, no Docker engine, nothing on 127.0.0.1:5432")


@pytest.fixture
def bus_prefix():
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def pg_schema(pg_url):
    """Factory: a fresh schema per call; returns a URL whose search_path points at it."""
    from shared.db import normalise_url

    admin = create_engine(normalise_url(pg_url), isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    made: list[str] = []

    def make(label: str = "s") -> str:
        name = f"t_{uuid.uuid4().hex[:10]}_{label}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
        made.append(name)
        sep = "&" if "?" in pg_url else "?"
        return f"{pg_url}{sep}options=-csearch_path%3D{name}"

    yield make
    with admin.connect() as conn:
        for name in made:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    admin.dispose()


@pytest.fixture
def amqp_bus(amqp_url, bus_prefix):
    """The real RabbitMQ with classic queues: service tests create and delete ~10 queues each,
    and hundreds of quorum queues (a Raft group each) churned on a 2-core machine have hung the
    broker. Quorum queues themselves are covered by the bus contract and end-to-end tests."""
    from shared.bus import connect
    from shared.topology import TOPOLOGY

    bus = connect(amqp_url, prefix=bus_prefix, prefetch=10, queue_type="classic")
    bus.declare(TOPOLOGY)
    yield bus
    bus.stop()
    bus.delete_topology(TOPOLOGY)
    bus._close_local()


@pytest.fixture
def memory_bus(bus_prefix):
    from shared.bus import connect
    from shared.topology import TOPOLOGY

    bus = connect("memory://", prefix=bus_prefix)
    bus.declare(TOPOLOGY)
    yield bus
    bus.stop()
    bus.delete_topology(TOPOLOGY)


@pytest.fixture
def settings(tmp_path):
    """Settings for a test: files under tmp_path, fast timers; override with settings(...)."""
    def make(**overrides):
        base = dict(var_dir=str(tmp_path / "var"), tokens_file=str(tmp_path / "tokens.yaml"),
                    relay_interval=0.05, sla_tick_seconds=0.2, notify_retry_seconds=0.2, log_json=False)
        base.update(overrides)
        return load_settings(env={}, **base)
    return make
