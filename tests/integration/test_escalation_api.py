"""The configuration API on real PostgreSQL: roles, validation naming the field, conflicts.

These tests publish and consume nothing, so the service gets the in-memory bus; the event flows
are in test_escalation_flow.py and test_escalation_tracker.py on RabbitMQ.
"""
from __future__ import annotations

import pytest

from services.escalation.bootstrap import build
from tests.helpers import token

pytestmark = pytest.mark.integration
API = "/api/v1/escalation"
GROUP = {"name": "Field Support", "tier": "L1", "handles": {"categories": ["hardware"], "services": []},
         "manager": {"name": "Fred", "email": "fred@example.com"},
         "members": [{"name": "Tom", "email": "tom@example.com", "timezone": "Europe/Paris", "language": "fr"}],
         "on_call": "Tom"}


@pytest.fixture
def api(settings, pg_schema, memory_bus):
    conf = settings(database_url=pg_schema("escalation"))
    service = build(conf, bus=memory_bus)
    yield service.app.test_client(), conf
    service.db.dispose()


def fields_of(answer) -> set:
    return set(answer.get_json()["error"]["fields"])


def test_tokens_and_roles(api):
    client, conf = api
    assert client.get(f"{API}/groups").status_code == 401
    assert client.get(f"{API}/groups", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get(f"{API}/groups", headers=token(conf, "reporter")).status_code == 403
    assert client.get(f"{API}/groups", headers=token(conf, "agent")).status_code == 200
    denied = client.post(f"{API}/groups", headers=token(conf, "lead"), json=GROUP)
    assert denied.status_code == 403 and denied.get_json()["error"]["code"] == "forbidden"
    # a caller without the role gets 403 even with a bad body, not a validation answer about the body
    assert client.post(f"{API}/rules", headers=token(conf, "agent"), json={"x": 1}).status_code == 403
    assert client.get(f"{API}/openapi.json").status_code == 200
    assert client.get(f"{API}/healthz").status_code == 200


def test_shipped_defaults_are_seeded(api):
    client, conf = api
    staff = token(conf, "agent")
    groups = {g["name"]: g["tier"] for g in client.get(f"{API}/groups", headers=staff).get_json()}
    assert groups == {"Service Desk": "L1", "Infrastructure": "L2", "Applications": "L2",
                      "Platform Engineering": "L3", "Developers": "DEV"}
    assert client.get(f"{API}/routing", headers=staff).get_json() == {"default_group": "Service Desk"}
    [ladder] = client.get(f"{API}/ladders", headers=staff).get_json()
    assert ladder["priorities"] == ["P1", "P2", "P3", "P4"] and ladder["ping_pong_limit"] == 3
    assert ladder["steps"][1] == {"on": "sla.breached", "clock": "ola", "min_percent": 0, "action": "next_tier"}
    assert client.get(f"{API}/groups/Developers", headers=staff).get_json()["tracker"] == "default"


def test_group_crud_and_validation(api):
    client, conf = api
    admin = token(conf, "admin")
    made = client.post(f"{API}/groups", headers=admin, json=GROUP)
    assert made.status_code == 201 and made.get_json()["members"][0]["language"] == "fr"
    assert client.post(f"{API}/groups", headers=admin, json=GROUP).status_code == 409

    for bad, field in (({"tier": "L4"}, "tier"), ({"on_call": "Nobody"}, "on_call"), ({"name": "x" * 201}, "name"),
                       ({"tracker": "default"}, "tracker"), ({"members": [{"email": "a@b.c"}]}, "members"),
                       ({"manager": {"name": "M", "timezone": "Mars/Olympus"}}, "manager"),
                       ({"manager": {"name": "M", "email": "not-an-email"}}, "manager"),
                       ({"colour": "red"}, "colour")):
        answer = client.post(f"{API}/groups", headers=admin, json={**GROUP, "name": "Other", **bad})
        assert answer.status_code == 422 and field in fields_of(answer), (bad, answer.get_json())
    unknown = client.post(f"{API}/groups", headers=admin,
                          json={"name": "Bugfixers", "tier": "DEV", "tracker": "jira-nowhere"})
    assert unknown.status_code == 422 and fields_of(unknown) == {"tracker"}
    assert client.post(f"{API}/groups", headers=admin, data="{", content_type="application/json").status_code == 400

    changed = client.put(f"{API}/groups/Field Support", headers=admin, json={**GROUP, "tier": "L2", "on_call": None})
    assert changed.status_code == 200 and changed.get_json()["tier"] == "L2"
    assert client.put(f"{API}/groups/Field Support", headers=admin, json={**GROUP, "name": "Renamed"}).status_code == 422
    assert client.get(f"{API}/groups/Nope", headers=admin).status_code == 404
    assert client.delete(f"{API}/groups/Field Support", headers=admin).status_code == 204
    assert client.get(f"{API}/groups/Field Support", headers=admin).status_code == 404


def test_groups_in_use_cannot_be_deleted(api):
    client, conf = api
    admin = token(conf, "admin")
    client.post(f"{API}/groups", headers=admin, json=GROUP)
    rule = client.post(f"{API}/rules", headers=admin, json={"match": {"category": "hardware"}, "group": "Field Support"})
    assert rule.status_code == 201
    assert client.delete(f"{API}/groups/Field Support", headers=admin).status_code == 409
    assert client.delete(f"{API}/groups/Service Desk", headers=admin).status_code == 409  # the default group
    assert client.delete(f"{API}/rules/{rule.get_json()['id']}", headers=admin).status_code == 204
    assert client.delete(f"{API}/groups/Field Support", headers=admin).status_code == 204


def test_rules_keep_their_order_and_check_their_group(api):
    client, conf = api
    admin = token(conf, "admin")
    client.post(f"{API}/groups", headers=admin, json=GROUP)
    first = client.post(f"{API}/rules", headers=admin, json={"match": {"channel": "phone"}, "group": "Field Support"})
    early = client.post(f"{API}/rules", headers=admin,
                        json={"position": 5, "match": {"priority": "P1", "category": None}, "group": "Service Desk"})
    assert (first.get_json()["position"], early.get_json()["position"]) == (10, 5)
    assert early.get_json()["match"] == {"priority": "P1"}
    listed = client.get(f"{API}/rules", headers=token(conf, "agent")).get_json()
    assert [r["id"] for r in listed] == [early.get_json()["id"], first.get_json()["id"]]

    for body, field in (({"group": "Nobody"}, "group"), ({"group": "Field Support", "match": {"priority": "P9"}}, "match"),
                        ({"group": "Field Support", "match": {"channel": "pigeon"}}, "match"),
                        ({"group": "Field Support", "position": -1}, "position"), ({}, "group")):
        answer = client.post(f"{API}/rules", headers=admin, json=body)
        assert answer.status_code == 422 and field in fields_of(answer), (body, answer.get_json())

    rule_id = first.get_json()["id"]
    moved = client.put(f"{API}/rules/{rule_id}", headers=admin, json={"match": {"channel": "chat"}, "group": "Service Desk"})
    assert moved.status_code == 200 and moved.get_json() == {"id": rule_id, "position": 10, "match": {"channel": "chat"},
                                                             "group": "Service Desk"}
    assert client.get(f"{API}/rules/unknown", headers=admin).status_code == 404

    assert client.put(f"{API}/routing", headers=admin, json={"default_group": "Nobody"}).status_code == 422
    assert client.put(f"{API}/routing", headers=admin, json={"default_group": "Field Support"}).status_code == 200
    assert client.get(f"{API}/routing", headers=admin).get_json() == {"default_group": "Field Support"}


def test_ladders_one_per_priority_and_valid_steps(api):
    client, conf = api
    admin = token(conf, "admin")
    critical = {"name": "critical", "priorities": ["P1"], "ping_pong_limit": 2,
                "steps": [{"on": "sla.warning", "clock": "first_response", "min_percent": 50, "action": "notify_manager"}]}
    clash = client.post(f"{API}/ladders", headers=admin, json=critical)
    assert clash.status_code == 409 and clash.get_json()["error"]["fields"] == {"priorities": ["P1"]}

    standard = client.get(f"{API}/ladders/standard", headers=admin).get_json()
    assert client.put(f"{API}/ladders/standard", headers=admin,
                      json={**standard, "priorities": ["P2", "P3", "P4"]}).status_code == 200
    assert client.post(f"{API}/ladders", headers=admin, json=critical).status_code == 201
    assert client.post(f"{API}/ladders", headers=admin, json=critical).status_code == 409

    step = critical["steps"][0]
    for bad, field in (({"priorities": []}, "priorities"), ({"priorities": ["P1", "P1"]}, "priorities"),
                       ({"ping_pong_limit": 0}, "ping_pong_limit"),
                       ({"steps": [{**step, "clock": "lunch"}]}, "steps"),
                       ({"steps": [{**step, "action": "fire_everyone"}]}, "steps"),
                       ({"steps": [{**step, "min_percent": 101}]}, "steps")):
        answer = client.post(f"{API}/ladders", headers=admin, json={**critical, "name": "x", **bad})
        assert answer.status_code == 422 and field in fields_of(answer), (bad, answer.get_json())
    assert client.delete(f"{API}/ladders/critical", headers=admin).status_code == 204
    assert client.get(f"{API}/ladders/critical", headers=admin).status_code == 404


def test_history_defects_and_trackers_need_staff(api):
    client, conf = api
    reporter, agent = token(conf, "reporter"), token(conf, "agent")
    assert client.get(f"{API}/tickets/abc", headers=reporter).status_code == 403
    missing = client.get(f"{API}/tickets/abc", headers=agent)
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
    assert client.get(f"{API}/defects?status=lost", headers=agent).status_code == 422
    assert client.get(f"{API}/defects", headers=agent).get_json() == []
    assert client.get(f"{API}/trackers", headers=reporter).status_code == 403
    assert client.post(f"{API}/trackers/nowhere/webhook", json={}).status_code == 404
