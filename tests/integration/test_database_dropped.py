"""PostgreSQL ending the service's pooled connections (what a restart does to them): no pre-ping,
so a request may meet a dead connection; it must answer 503 (retry), never 500, and the next
requests work on a refreshed pool."""
from __future__ import annotations

import psycopg
import pytest

from tests.integration.test_intake_support import intake  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


def test_dropped_connections_answer_503_or_succeed_then_recover(intake, pg_url):
    intake.create()  # the pool now holds live connections
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as admin:
        ended = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                              "WHERE application_name = 'tierline-intake' AND pid <> pg_backend_pid()").fetchone()[0]
    assert ended >= 1
    answers = []
    for i in range(4):
        response = intake.client.post("/api/v1/tickets", json={"title": f"after the drop {i}"}, headers=intake.kate)
        answers.append(response.status_code)
        if response.status_code == 503:
            assert response.headers["Retry-After"] == "1" and response.get_json()["error"]["code"] == "unavailable"
    assert set(answers) <= {201, 503} and answers[-2:] == [201, 201], answers
    listed = intake.client.get("/api/v1/tickets?limit=50", headers=intake.admin).get_json()["items"]
    assert len([t for t in listed if t["title"].startswith("after the drop")]) == answers.count(201)
