"""The developers' tracker webhook (POST /api/v1/escalation/trackers/{name}/webhook): signatures
missing, wrong, stale or replayed, and GitLab's token variant.

Rules (docs/escalation.md): `X-Tierline-Signature: sha256=<HMAC-SHA256 of "<timestamp>.<raw body>">`
and `X-Tierline-Timestamp` within 5 minutes, else 401; a delivery already taken (same
delivery_id, or same signature without one) answers 200 "duplicate" and changes nothing.
"""
from __future__ import annotations

import concurrent.futures
import json
import time

import pytest
from werkzeug.test import Client

from services.escalation.trackers import sign, sign_delivery
from tests.attack.harness import TRACKER_SECRET, WEBHOOK, config_with
from tests.helpers import wait_for

pytestmark = pytest.mark.attack
GITLAB_SECRET = "gitlab-hook-token-for-attack"


@pytest.fixture(scope="module")
def system_options(tmp_path_factory):
    trackers = [{"name": "gitlab", "kind": "gitlab", "url": "", "project": "team/crm", "secret": GITLAB_SECRET},
                {"name": "nosecret", "kind": "webhook", "url": ""}]
    return {"config_file": str(config_with(tmp_path_factory.mktemp("config") / "tierline.yaml", trackers=trackers))}


def to_developers(system, title: str) -> tuple[dict, str]:
    """A ticket of kate's, moved to the developers by a lead; returns it and its defect id."""
    ticket = system.routed("reporter", title=title)
    resp = system.call("POST", f"/api/v1/tickets/{ticket['id']}/escalations", "lead",
                       json_body={"to_tier": "DEV", "reason": "a bug"})
    assert resp.status_code == 202
    ticket = system.wait_ticket(ticket["id"], lambda t: t["tier"] == "DEV" and t["defects"], "linked to a defect")
    return ticket, ticket["defects"][0]["defect_id"]


@pytest.fixture(scope="module")
def defect(system):
    return to_developers(system, "firmware bug")


def body(defect_id: str, status: str = "fixed", delivery: str | None = None, **extra) -> bytes:
    doc = {"defect_id": defect_id, "status": status, **extra}
    if delivery:
        doc["delivery_id"] = delivery
    return json.dumps(doc).encode()


def unauthorized(resp) -> bool:
    return resp.status_code == 401 and resp.get_json()["error"]["code"] == "unauthorized"


# --- signatures ----------------------------------------------------------------------------------
def test_missing_signature_or_timestamp_is_401(system, defect):
    _, defect_id = defect
    raw = body(defect_id, "in_progress")
    assert unauthorized(system.client.open(WEBHOOK, method="POST", data=raw,
                                           headers={"Content-Type": "application/json"}))
    assert unauthorized(system.webhook(raw, headers={"X-Tierline-Signature": None}))
    assert unauthorized(system.webhook(raw, headers={"X-Tierline-Timestamp": None}))
    assert unauthorized(system.webhook(raw, signature=""))
    assert unauthorized(system.webhook(raw, headers=system.tokens["admin"], signature=""))  # a token is no signature


@pytest.mark.parametrize("kind", ["zeros", "other secret", "other body", "no timestamp in MAC", "truncated",
                                  "no prefix", "non-ASCII"])
def test_wrong_signature_is_401(system, defect, kind):
    _, defect_id = defect
    raw = body(defect_id, "fixed")
    stamp = str(int(time.time()))
    variants = {
        "zeros": "sha256=" + "0" * 64,
        "other secret": sign_delivery("not-the-secret", stamp, raw),
        "other body": sign_delivery(TRACKER_SECRET, stamp, body(defect_id, "wontfix")),
        "no timestamp in MAC": sign(TRACKER_SECRET, raw),  # the outgoing format, not the incoming one
        "truncated": sign_delivery(TRACKER_SECRET, stamp, raw)[:-2],
        "no prefix": sign_delivery(TRACKER_SECRET, stamp, raw).removeprefix("sha256="),
        "non-ASCII": "sha256=\u00e9\u00ff" + "0" * 62,  # regression: compare_digest raised TypeError (500)
    }
    assert unauthorized(system.webhook(raw, stamp=stamp, signature=variants[kind]))
    assert system.ticket(defect[0]["id"])["tier"] == "DEV"


@pytest.mark.parametrize("stamp", [-301, 301, 86400, "nan", "inf", "-inf", "1e100", "", "yesterday", "\u00e9"])
def test_stale_future_or_malformed_timestamp_is_401_even_when_signed(system, defect, stamp):
    """Regression ("nan"): NaN compares False with everything, so `abs(now - nan) > 300` let a
    signed delivery with that timestamp through forever."""
    _, defect_id = defect
    value = str(int(time.time()) + stamp) if isinstance(stamp, int) else stamp
    assert unauthorized(system.webhook(body(defect_id, "fixed"), stamp=value))
    assert system.ticket(defect[0]["id"])["tier"] == "DEV"


def test_a_tracker_without_secret_accepts_nothing(system):
    assert unauthorized(system.webhook(body("BUG-1"), secret="", tracker="nosecret"))


def test_unknown_tracker_is_404(system):
    resp = system.webhook(body("BUG-1"), tracker="nope")
    assert resp.status_code == 404


def test_signed_but_malformed_bodies_are_4xx(system, defect):
    _, defect_id = defect
    for raw, code in ((b"[1, 2]", 422), (b'{"status": "fixed"}', 422), (b"not json", 400),
                      (json.dumps({"defect_id": defect_id, "status": 5}).encode(), 422),
                      (json.dumps({"defect_id": "x" * 101, "status": "fixed"}).encode(), 422),
                      (body("BUG-999", "fixed"), 404)):
        resp = system.webhook(raw)
        assert resp.status_code == code, resp.get_data(as_text=True)


def test_gitlab_hooks_need_the_token(system):
    hook = json.dumps({"object_kind": "issue", "object_attributes": {"iid": 1, "state": "closed"}}).encode()
    url = WEBHOOK.replace("/default/", "/gitlab/")
    for token in (None, "", "wrong", GITLAB_SECRET + "x", "\u00e9t\u00e9"):
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["X-Gitlab-Token"] = token
        assert unauthorized(system.client.open(url, method="POST", data=hook, headers=headers)), token
    ok = system.client.open(url, method="POST", data=hook,
                            headers={"Content-Type": "application/json", "X-Gitlab-Token": GITLAB_SECRET})
    assert ok.status_code == 200 and ok.get_json()["status"] == "ignored"  # no such issue linked


# --- replays ---------------------------------------------------------------------------------------
def returns(system, ticket_id: str) -> list[dict]:
    records = system.call("GET", f"/api/v1/escalation/tickets/{ticket_id}", "admin").get_json()["records"]
    return [r for r in records if r["trigger"] == "defect_resolved"]


def test_replayed_deliveries_have_no_second_effect(system, defect):
    ticket, defect_id = defect
    stamp = str(int(time.time()))
    progress = body(defect_id, "in_progress", "d-1")
    assert system.webhook(progress, stamp=stamp).get_json()["status"] == "updated"
    assert system.webhook(progress, stamp=stamp).get_json()["status"] == "duplicate"  # byte-for-byte replay

    fixed = body(defect_id, "fixed", "d-2", comment="firmware 2.4.1")
    first = system.webhook(fixed, stamp=stamp)
    assert first.status_code == 200 and first.get_json()["status"] == "resolved"
    back = system.wait_ticket(ticket["id"], lambda t: t["tier"] == "L1", "back at L1")
    assert back["group"] == "Service Desk"
    # the same delivery again: replayed as is, or re-sent by the tracker with a fresh timestamp
    assert system.webhook(fixed, stamp=stamp).get_json()["status"] == "duplicate"
    assert system.webhook(fixed, stamp=str(int(time.time()) + 1)).get_json()["status"] == "duplicate"
    # a new delivery saying "fixed" again is stored but sends nothing back a second time
    assert system.webhook(body(defect_id, "closed", "d-3")).get_json()["status"] == "updated"
    # an old signature under a new timestamp does not verify
    old_signature = sign_delivery(TRACKER_SECRET, stamp, fixed)
    assert unauthorized(system.webhook(fixed, stamp=str(int(time.time()) + 2), signature=old_signature))

    assert len(returns(system, ticket["id"])) == 1
    history = system.call("GET", f"/api/v1/tickets/{ticket['id']}/history", "admin").get_json()["items"]
    assert [h["action"] for h in history].count("defect_resolved") == 1
    told = system.wait_deliveries(ticket_id=ticket["id"], recipient="kate@example.com")
    assert [d["source_event_type"] for d in told].count("escalation.defect_resolved") == 1


def test_replay_without_delivery_id_is_caught_by_its_signature(system):
    ticket, defect_id = to_developers(system, "no delivery ids")
    raw, stamp = body(defect_id, "fixed"), str(int(time.time()))
    assert system.webhook(raw, stamp=stamp).get_json()["status"] == "resolved"
    assert system.webhook(raw, stamp=stamp).get_json()["status"] == "duplicate"
    assert len(returns(system, ticket["id"])) == 1


def test_concurrent_copies_of_one_delivery_take_effect_once(system):
    ticket, defect_id = to_developers(system, "raced delivery")
    raw, stamp = body(defect_id, "fixed", "race-1"), str(int(time.time()))

    def post(_):
        return Client(system.app).open(WEBHOOK, method="POST", data=raw, headers={
            "Content-Type": "application/json", "X-Tierline-Timestamp": stamp,
            "X-Tierline-Signature": sign_delivery(TRACKER_SECRET, stamp, raw)})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    assert [r.status_code for r in answers] == [200] * 8, [r.get_data(as_text=True) for r in answers]
    assert sorted(r.get_json()["status"] for r in answers) == ["duplicate"] * 7 + ["resolved"]
    assert len(returns(system, ticket["id"])) == 1
    assert wait_for(lambda: system.ticket(ticket["id"])["tier"] == "L1", 15, 0.05)
