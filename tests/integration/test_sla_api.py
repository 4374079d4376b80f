"""The sla HTTP API on real PostgreSQL: ticket clocks, preview, policies and calendars CRUD,
validation errors naming the field, roles; changes carried to open tickets."""
from __future__ import annotations

import datetime as dt

import pytest

from tests.helpers import ticket_ref, token
from tests.integration.test_sla_harness import MONDAY_9, clock_of, iso, sla_env  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration
S = dt.timedelta(seconds=1)
API = "/api/v1/sla"
POLICY = {"name": "VPN P2", "match": {"priority": "P2", "service": "vpn"}, "calendar": "24x7",
          "first_response": 60, "resolution": 600, "warnings": [80], "ola": {"L1": 120}}


def new_ticket(sla, priority="P1", **overrides):
    ref = ticket_ref(priority=priority, created_at=iso(sla.clock.now()), **overrides)
    sla.send("ticket.created", ref)
    sla.wait_view(ref["id"])
    return ref


def test_ticket_view_lookup_roles_and_preview(sla_env):
    sla = sla_env()
    ref = new_ticket(sla, priority="P3")
    sla.advance(30)
    by_key = sla.client.get(f"{API}/tickets/{ref['key']}", headers=sla.staff)
    assert by_key.status_code == 200 and by_key.get_json()["ticket_id"] == ref["id"]
    assert sla.client.get(f"{API}/tickets/nope", headers=sla.staff).status_code == 404
    reporter = token(sla.settings, "reporter")
    assert sla.client.get(f"{API}/tickets/{ref['id']}", headers=reporter).status_code == 403
    assert sla.client.get(f"{API}/tickets/{ref['id']}").status_code == 401

    preview = sla.client.get(f"{API}/tickets/{ref['id']}/preview?priority=P1", headers=sla.staff)
    assert preview.status_code == 200
    body = preview.get_json()
    assert (body["priority"], body["preview_priority"], body["policy"]) == ("P3", "P1", "P1 fast")
    clocks = {c["name"]: c for c in body["clocks"]}
    assert clocks["resolution"]["due_at"] == iso(MONDAY_9 + 40 * S)  # from the original start
    assert clocks["resolution"]["remaining_seconds"] == 10
    assert clocks["first_response"]["state"] == "breached"
    # Nothing changed by looking.
    assert clock_of(sla.view(ref["id"]), "resolution")["target_seconds"] == 400
    bad = sla.client.get(f"{API}/tickets/{ref['id']}/preview?priority=P9", headers=sla.staff)
    assert bad.status_code == 422 and "priority" in bad.get_json()["error"]["fields"]
    missing = sla.client.get(f"{API}/tickets/{ref['id']}/preview", headers=sla.staff)
    assert missing.status_code == 422 and "priority" in missing.get_json()["error"]["fields"]


def test_clocks_are_shown_only_to_who_may_see_the_ticket(sla_env):
    """The visibility of intake (shared/visibility.py): an L1 agent does not see an L2 ticket."""
    sla = sla_env()
    ref = new_ticket(sla)
    l2 = {**ref, "tier": "L2", "group": "Infrastructure", "assignee": "Dmitry", "status": "assigned"}
    sla.send("ticket.assigned", l2, previous={}, trigger="ladder")
    sla.wait_view(ref["id"], lambda v: v["tier"] == "L2")
    l1_agent, l2_agent = sla.staff, token(sla.settings, "agent", tier="L2")
    in_group = token(sla.settings, "agent", tier="L3", groups=["Infrastructure"])
    assignee = token(sla.settings, "agent", name="Dmitry", tier="L3")
    staff_reporter = token(sla.settings, "agent", tier="L3", email="kate@example.com")
    for path in (f"{API}/tickets/{ref['id']}", f"{API}/tickets/{ref['key']}",
                 f"{API}/tickets/{ref['id']}/preview?priority=P1"):
        assert sla.client.get(path, headers=l1_agent).status_code == 404, path  # like a missing ticket
        for headers in (l2_agent, in_group, assignee, staff_reporter, token(sla.settings, "lead"), sla.admin):
            assert sla.client.get(path, headers=headers).status_code == 200, path
    assert sla.client.get(f"{API}/tickets/{ref['id']}", headers=l1_agent).get_json()["error"]["message"] == \
        sla.client.get(f"{API}/tickets/no-such", headers=l1_agent).get_json()["error"]["message"].replace(
            "'no-such'", repr(ref["id"]))


def test_policies_crud_and_validation(sla_env):
    sla = sla_env()
    listed = sla.client.get(f"{API}/policies", headers=sla.staff).get_json()
    assert [p["name"] for p in listed] == ["P1 fast", "P3 office"]
    assert listed[0]["match"] == {"priority": "P1", "category": None, "service": None, "channel": None}
    assert sla.client.post(f"{API}/policies", json=POLICY, headers=sla.staff).status_code == 403

    def refused(body, status=422):
        response = sla.client.post(f"{API}/policies", json=body, headers=sla.admin)
        assert response.status_code == status, response.get_json()
        return response.get_json()["error"]["fields"]

    assert "priority" in refused({**POLICY, "match": {"priority": "P7"}})["match"]
    assert "calendar" in refused({**POLICY, "calendar": "mars-time"})
    assert "resolution_calendar" in refused({**POLICY, "resolution_calendar": "nope"})
    assert "warnings" in refused({**POLICY, "warnings": [120]})
    assert "first_response" in refused({**POLICY, "first_response": -5})
    assert "ola" in refused({**POLICY, "ola": {"L9": 10}})
    assert "name" in refused({**POLICY, "name": "x" * 101})
    assert "colour" in refused({**POLICY, "colour": "red"})
    assert "name" in refused({**POLICY, "name": "P1 fast"}, status=409)

    created = sla.client.post(f"{API}/policies", json=POLICY, headers=sla.admin)
    assert created.status_code == 201
    policy = created.get_json()
    assert policy["position"] == 30 and policy["ola"] == {"L1": 120}
    assert sla.client.get(f"{API}/policies/{policy['id']}", headers=sla.staff).get_json()["name"] == "VPN P2"
    vpn = new_ticket(sla, priority="P2", service="vpn")
    assert sla.view(vpn["id"])["policy"] == "VPN P2"
    other = new_ticket(sla, priority="P2", service="crm")
    assert sla.view(other["id"])["policy"] is None and sla.view(other["id"])["clocks"] == []

    assert sla.client.delete(f"{API}/policies/{policy['id']}", headers=sla.admin).status_code == 204
    assert sla.client.get(f"{API}/policies/{policy['id']}", headers=sla.staff).status_code == 404
    assert sla.client.put(f"{API}/policies/999", json=POLICY, headers=sla.admin).status_code == 404


def test_editing_a_policy_recounts_open_tickets_at_once(sla_env):
    sla = sla_env()
    ref = new_ticket(sla)
    sla.advance(8)
    p1 = sla.client.get(f"{API}/policies", headers=sla.staff).get_json()[0]
    body = {k: p1[k] for k in ("name", "position", "match", "calendar", "resolution_calendar", "warnings", "ola")}
    updated = sla.client.put(f"{API}/policies/{p1['id']}", headers=sla.admin,
                             json={**body, "first_response": 5, "resolution": 100})
    assert updated.status_code == 200 and updated.get_json()["first_response"] == 5
    breach = sla.probe.wait("sla.breached", clock="first_response")[0]  # 8 s used of a 5 s target
    assert breach.payload["target_seconds"] == 5 and breach.payload["due_at"] == iso(MONDAY_9 + 5 * S)
    view = sla.view(ref["id"])
    assert clock_of(view, "resolution")["due_at"] == iso(MONDAY_9 + 100 * S)
    assert clock_of(view, "resolution")["elapsed_seconds"] == 8


def test_calendars_crud_validation_and_a_new_holiday_moves_deadlines(sla_env):
    sla = sla_env()
    names = [c["name"] for c in sla.client.get(f"{API}/calendars", headers=sla.staff).get_json()]
    assert names == ["24x7", "office"]
    good = {"name": "berlin", "timezone": "Europe/Berlin", "holiday_country": "DE", "holidays": ["2026-12-24"],
            "windows": {"mon": [["09:00", "13:00"], ["14:00", "18:00"]]}}

    def refused(body, status=422):
        response = sla.client.post(f"{API}/calendars", json=body, headers=sla.admin)
        assert response.status_code == status, response.get_json()
        return response.get_json()["error"]["fields"]

    assert "timezone" in refused({**good, "timezone": "Mars/Olympus"})
    assert "windows.mon[0] end" in refused({**good, "windows": {"mon": [["09:00", "25:00"]]}})
    assert "windows.mon" in refused({**good, "windows": {"mon": [["09:00", "13:00"], ["12:00", "18:00"]]}})
    assert "windows" in refused({**good, "windows": {"someday": [["09:00", "10:00"]]}})
    assert "windows" in refused({**good, "windows": {}})
    assert "holidays[0]" in refused({**good, "holidays": ["2026-13-45"]})
    assert "holiday_country" in refused({**good, "holiday_country": "XX"})
    assert "name" in refused({**good, "name": "has space"})
    assert "name" in refused({**good, "name": "office"}, status=409)
    assert sla.client.post(f"{API}/calendars", json=good, headers=sla.staff).status_code == 403
    created = sla.client.post(f"{API}/calendars", json=good, headers=sla.admin)
    assert created.status_code == 201
    assert created.get_json()["windows"] == {"mon": [["09:00", "13:00"], ["14:00", "18:00"]]}
    assert sla.client.delete(f"{API}/calendars/berlin", headers=sla.admin).status_code == 204
    assert sla.client.get(f"{API}/calendars/berlin", headers=sla.staff).status_code == 404

    ref = new_ticket(sla, priority="P3")  # office calendar, Monday 09:00
    sla.advance(30)
    office = sla.client.get(f"{API}/calendars/office", headers=sla.staff).get_json()
    body = {k: office[k] for k in ("timezone", "windows", "holiday_country", "always_on")}
    renamed = sla.client.put(f"{API}/calendars/office", json={**body, "name": "other"}, headers=sla.admin)
    assert renamed.status_code == 422 and "name" in renamed.get_json()["error"]["fields"]
    # Today becomes a holiday: the ticket's clocks have used no business time yet after all.
    put = sla.client.put(f"{API}/calendars/office", json={**body, "holidays": ["2026-11-23"]}, headers=sla.admin)
    assert put.status_code == 200 and put.get_json()["version"] == 2
    view = sla.view(ref["id"])
    tuesday_9 = MONDAY_9 + dt.timedelta(days=1)
    assert clock_of(view, "first_response")["elapsed_seconds"] == 0
    assert clock_of(view, "first_response")["due_at"] == iso(tuesday_9 + 100 * S)
    in_use = sla.client.delete(f"{API}/calendars/office", headers=sla.admin)
    assert in_use.status_code == 409 and "P3 office" in in_use.get_json()["error"]["message"]


def test_openapi_lists_every_endpoint(sla_env):
    sla = sla_env()
    spec = sla.client.get(f"{API}/openapi.json").get_json()
    assert {"/api/v1/sla/tickets/{ticket_id}", "/api/v1/sla/tickets/{ticket_id}/preview",
            "/api/v1/sla/policies", "/api/v1/sla/policies/{policy_id}",
            "/api/v1/sla/calendars", "/api/v1/sla/calendars/{name}"} <= set(spec["paths"])
    assert sla.client.get(f"{API}/healthz").status_code == 200
    assert sla.client.get(f"{API}/readyz").get_json()["checks"] == {"database": True, "bus": True}
