"""Concurrent requests on real PostgreSQL: retried POSTs, duplicate alerts, ticket numbers and
status changes racing each other must still leave one consistent answer."""
from __future__ import annotations

import threading

import pytest

from tests.integration.test_intake_support import intake  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration
THREADS = 8


def at_once(fn, n: int = THREADS) -> list:
    """Run fn(i) in n threads released together; returns their results in order."""
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list = []

    def run(i):
        try:
            barrier.wait()
            results[i] = fn(i)
        except Exception as exc:  # surfaced below, with the thread's error
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def post(intake, body, headers):
    response = intake.service.app.test_client().post("/api/v1/tickets", json=body, headers=headers)
    return response.status_code, response.get_json()


def test_identical_posts_with_one_idempotency_key_create_one_ticket(intake):
    headers = {**intake.kate, "Idempotency-Key": "web-form-submit-7"}
    body = {"title": "Outlook keeps asking for my password", "impact": "low", "urgency": "high"}
    results = at_once(lambda i: post(intake, body, headers))
    assert [status for status, _ in results] == [201] * THREADS
    assert all(answer == results[0][1] for _, answer in results)
    listed = intake.client.get("/api/v1/tickets", headers=intake.admin).get_json()["items"]
    assert [t["id"] for t in listed] == [results[0][1]["id"]]
    intake.expect("ticket.created")


def test_concurrent_alerts_with_one_dedup_key_open_one_ticket_and_count_every_occurrence(intake):
    alert = {"title": "db-1 CPU 100%", "channel": "monitoring", "dedup_key": "db-1:cpu"}
    headers = intake.ivan  # tokens are made before the threads start
    results = at_once(lambda i: post(intake, alert, headers))
    assert sorted(status for status, _ in results) == [200] * (THREADS - 1) + [201]
    assert len({answer["id"] for _, answer in results}) == 1
    ticket = intake.get(results[0][1]["id"])
    assert ticket["occurrences"] == THREADS
    events = intake.expect("ticket.created", *["ticket.updated"] * (THREADS - 1))
    counts = sorted(e.payload["changes"]["occurrences"]["new"] for e in events[1:])
    assert counts == list(range(2, THREADS + 1))


def test_concurrent_creates_get_distinct_gap_free_numbers(intake):
    headers = intake.kate
    results = at_once(lambda i: post(intake, {"title": f"ticket {i}"}, headers))
    assert [status for status, _ in results] == [201] * THREADS
    assert sorted(int(answer["key"].split("-")[1]) for _, answer in results) == list(range(1, THREADS + 1))
    intake.expect(*["ticket.created"] * THREADS)


def test_racing_status_changes_apply_once(intake):
    tid = intake.create()["id"]
    intake.expect("ticket.created")
    headers = intake.ivan

    def resolve(i):
        return intake.service.app.test_client().post(
            f"/api/v1/tickets/{tid}/status", json={"status": "resolved", "reason": f"agent {i}"},
            headers=headers).status_code

    assert sorted(at_once(resolve, 4)) == [200, 409, 409, 409]
    intake.expect("ticket.status_changed")
