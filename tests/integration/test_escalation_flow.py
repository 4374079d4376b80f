"""Escalation on real RabbitMQ and PostgreSQL: fed ticket.* and sla.* events as intake and sla
publish them, checked by the exact escalation.* events it publishes and its history API."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from services.escalation.bootstrap import build
from shared.clock import FrozenClock
from shared.events import Event, new_event
from shared.outbox import inbox_table, outbox_table
from tests.helpers import Probe, running, ticket_event, ticket_ref, token, wait_for

pytestmark = pytest.mark.integration
T0 = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.timezone.utc)
API = "/api/v1/escalation"
DESK_CONTACTS = {
    "members": [
        {"name": "Ivan Petrov", "email": "ivan.petrov@example.com", "chat": "@ivan", "timezone": "Europe/Moscow",
         "language": "ru"},
        {"name": "Anna Smith", "email": "anna.smith@example.com", "chat": "@anna", "timezone": "Europe/London",
         "language": "en"}],
    "manager": {"name": "Olga Ivanova", "email": "sd-manager@example.com", "chat": "@olga", "timezone": None,
                "language": "ru"},
    "on_call": None}


@pytest.fixture
def esc(settings, pg_schema, amqp_bus):
    """The service on its own schema and bus prefix, with a probe on escalation.*."""
    conf = settings(database_url=pg_schema("escalation"))
    service = build(conf, bus=amqp_bus, clock=FrozenClock(T0))
    probe = Probe(amqp_bus, keys=("escalation.#",))
    with running(amqp_bus, service):
        yield Harness(service, probe, amqp_bus, conf)


class Harness:
    def __init__(self, service, probe, bus, conf):
        self.service, self.probe, self.bus, self.conf = service, probe, bus, conf
        self.client = service.app.test_client()
        self.staff = token(conf, "admin")

    def feed(self, *events: Event) -> list[Event]:
        """Publish, wait until the service handled them and its events reached the probe; returns
        the escalation events these inputs caused."""
        before = len(self.probe.events)
        for event in events:
            self.bus.publish(event)
        ids = {e.id for e in events}
        assert wait_for(lambda: self._handled(ids)), "service did not handle the events"
        assert wait_for(lambda: len(self.probe.events) >= self._published()), "outbox not drained"
        return self.probe.events[before:]

    def _handled(self, ids) -> bool:
        with self.service.db.transaction() as s:
            seen = set(s.scalars(select(inbox_table.c.event_id).where(inbox_table.c.event_id.in_(ids))))
        return seen == ids

    def _published(self) -> int:
        with self.service.db.transaction() as s:
            return s.scalar(select(func.count()).select_from(outbox_table))

    def history(self, ticket_id: str) -> dict:
        answer = self.client.get(f"{API}/tickets/{ticket_id}", headers=self.staff)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()


def kinds(events):
    return [(e.type, e.payload.get("trigger"), e.payload.get("group")) for e in events]


def applied(routed: Event, ref: dict, assignee: str | None = None) -> tuple[Event, dict]:
    """intake applying escalation's decision: ticket.assigned with the new placement."""
    p = routed.payload
    new_ref = {**ref, "tier": p["tier"], "group": p["group"], "assignee": assignee, "status": "assigned"}
    event = new_event("ticket.assigned", {
        "ticket": new_ref, "previous": {"tier": ref["tier"], "group": ref["group"], "assignee": ref["assignee"]},
        "trigger": p["trigger"], "escalation_id": p["escalation_id"], "contacts": p["contacts"]},
        producer="intake", ticket_id=ref["id"], correlation_id=routed.correlation_id, causation_id=routed.id)
    return event, new_ref


def sla(type_: str, ref: dict, clock: str, percent: int | None = None) -> Event:
    payload = {"key": ref["key"], "priority": ref["priority"], "clock": clock,
               "tier": clock.split(":")[1] if ":" in clock else None, "due_at": "2026-11-23T10:00:00+00:00",
               "target_seconds": 3600, "elapsed_seconds": 3600 * (percent or 100) // 100}
    if percent is not None:
        payload["percent"] = percent
    return new_event(type_, payload, producer="sla", ticket_id=ref["id"], correlation_id=ref["id"])


def requested(ref: dict, to_tier: str, role: str, who: str = "Ivan Petrov", to_group: str | None = None,
              reason: str = "needs specialists") -> Event:
    return ticket_event("ticket.escalation_requested", ref, to_tier=to_tier, to_group=to_group, reason=reason,
                        requested_by={"name": who, "email": None}, requested_by_role=role)


def place(h: Harness, ref: dict, assignee: str | None = None) -> dict:
    """Create the ticket and apply its initial routing; returns the placed ticket ref."""
    [routed] = h.feed(ticket_event("ticket.created", ref, description="details"))
    event, new_ref = applied(routed, ref, assignee)
    assert h.feed(event) == []
    return new_ref


# --- routing --------------------------------------------------------------------------------
def test_initial_routing_by_rule_then_default_group(esc):
    h = esc
    assert h.client.post(f"{API}/groups", headers=h.staff, json={
        "name": "Field Support", "tier": "L1", "handles": {"categories": ["hardware"]},
        "manager": {"name": "Fred", "email": "fred@example.com"},
        "members": [{"name": "Tom", "email": "tom@example.com", "chat": "@tom", "timezone": "Europe/Paris"}],
        "on_call": "Tom"}).status_code == 201
    assert h.client.post(f"{API}/rules", headers=h.staff, json={
        "match": {"category": "hardware", "channel": "phone"}, "group": "Field Support"}).status_code == 201

    by_rule = ticket_ref(category="hardware", channel="phone", priority="P3")
    other = ticket_ref(category="hardware", channel="web")
    created = ticket_event("ticket.created", by_rule)
    out = h.feed(created, ticket_event("ticket.created", other))

    assert kinds(out) == [("escalation.routed", "initial", "Field Support"),
                          ("escalation.routed", "initial", "Service Desk")]
    first, second = out
    tom = {"name": "Tom", "email": "tom@example.com", "chat": "@tom", "timezone": "Europe/Paris", "language": "en"}
    assert first.payload == {
        "key": by_rule["key"], "tier": "L1", "group": "Field Support", "assignee": None, "trigger": "initial",
        "reason": "routing rule 10 (category=hardware, channel=phone)", "escalation_id": first.payload["escalation_id"],
        "contacts": {"members": [tom], "on_call": tom,
                     "manager": {"name": "Fred", "email": "fred@example.com", "chat": None, "timezone": None,
                                 "language": "en"}}}
    assert (first.ticket_id, first.correlation_id, first.causation_id) == (by_rule["id"], created.correlation_id, created.id)
    assert second.payload["reason"] == "default group" and second.payload["contacts"] == DESK_CONTACTS

    [record] = h.history(by_rule["id"])["records"]
    assert record["id"] == first.payload["escalation_id"]
    assert (record["trigger"], record["outcome"], record["from"], record["to"]) == (
        "initial", "routed", {"tier": None, "group": None}, {"tier": "L1", "group": "Field Support"})

    # intake applies it: the record says so
    event, _ = applied(first, by_rule)
    assert h.feed(event) == []
    assert h.history(by_rule["id"])["records"][0]["outcome"] == "applied"


def test_category_change_at_l1_reroutes_and_other_changes_do_not(esc):
    h = esc
    h.client.post(f"{API}/groups", headers=h.staff, json={"name": "Field Support", "tier": "L1"})
    h.client.post(f"{API}/rules", headers=h.staff, json={"match": {"category": "hardware"}, "group": "Field Support"})
    ref = place(h, ticket_ref(category="network"))

    moved = {**ref, "category": "hardware"}
    out = h.feed(ticket_event("ticket.updated", moved, changes={"category": {"old": "network", "new": "hardware"}},
                              actor={"name": "Anna Smith"}),
                 ticket_event("ticket.updated", {**moved, "priority": "P1"}, changes={"priority": {"old": "P2", "new": "P1"}}))
    assert kinds(out) == [("escalation.routed", "reroute", "Field Support")]
    assert out[0].payload["reason"] == "category 'network' -> 'hardware': routing rule 10 (category=hardware)"
    assert h.history(ref["id"])["records"][-1]["who"] == "Anna Smith"


# --- the ladder -----------------------------------------------------------------------------
def test_every_ladder_step_from_l1_to_the_developers(esc):
    h = esc
    ref = place(h, ticket_ref(priority="P1", category="network", service="vpn"), assignee="Ivan Petrov")

    # first-response warnings: 50% is below the step, 75% tells the manager, 90% does not repeat it
    out = h.feed(sla("sla.warning", ref, "first_response", 50))
    assert out == []
    out = h.feed(sla("sla.warning", ref, "first_response", 75), sla("sla.warning", ref, "first_response", 90))
    assert kinds(out) == [("escalation.manager_notified", "ladder", "Service Desk")]
    assert out[0].payload["manager"] == DESK_CONTACTS["manager"]
    assert out[0].payload["reason"] == "sla.warning of first_response at 75%"
    assert out[0].payload["tier"] == "L1"

    # the L1 OLA breaks: functional escalation to the L2 group that handles network/vpn
    out = h.feed(sla("sla.breached", ref, "ola:L1"))
    assert kinds(out) == [("escalation.routed", "ladder", "Infrastructure")]
    assert out[0].payload["tier"] == "L2" and out[0].payload["contacts"]["manager"]["name"] == "Pavel Sidorov"
    event, ref = applied(out[0], ref)
    # a second L1 OLA breach (another clock instance) and a late one after the move change nothing
    assert h.feed(event, sla("sla.breached", ref, "ola:L1")) == []

    out = h.feed(sla("sla.breached", ref, "ola:L2"))
    assert kinds(out) == [("escalation.routed", "ladder", "Platform Engineering")]
    event, ref = applied(out[0], ref)
    h.feed(event)

    out = h.feed(sla("sla.breached", ref, "ola:L3"))
    assert kinds(out) == [("escalation.routed", "ladder", "Developers")]  # defect_linked waits for a tracker
    event, ref = applied(out[0], ref)
    h.feed(event)

    # resolution breached at the top: the DEV manager is told; there is no higher tier
    out = h.feed(sla("sla.breached", ref, "resolution"))
    assert kinds(out) == [("escalation.manager_notified", "ladder", "Developers")]
    assert out[0].payload["manager"]["name"] == "Alex Brown"

    records = h.history(ref["id"])["records"]
    assert [(r["trigger"], r["outcome"], r["to"]["group"], r["clock"]) for r in records] == [
        ("initial", "applied", "Service Desk", None),
        ("ladder", "manager_notified", "Service Desk", "first_response"),
        ("ladder", "applied", "Infrastructure", "ola:L1"),
        ("ladder", "applied", "Platform Engineering", "ola:L2"),
        ("ladder", "applied", "Developers", "ola:L3"),
        ("ladder", "manager_notified", "Developers", "resolution"),
        ("ladder", "skipped", "Developers", "resolution"),
    ]
    assert records[1]["percent"] == 75
    assert [d["status"] for d in h.history(ref["id"])["defects"]] == ["pending"]


def test_ladder_ignores_resolved_tickets_and_unknown_tickets(esc):
    h = esc
    ref = place(h, ticket_ref(priority="P2"))
    stranger = ticket_ref()
    h.feed(ticket_event("ticket.updated", {**ref, "status": "resolved"}, changes={"status": {"old": "assigned", "new": "resolved"}}))
    assert h.feed(sla("sla.breached", ref, "ola:L1"), sla("sla.breached", stranger, "ola:L1")) == []
    assert h.client.get(f"{API}/tickets/{stranger['id']}", headers=h.staff).status_code == 404
    assert h.bus.take_dead_letters("escalation.events") == []


# --- manual escalation ----------------------------------------------------------------------
def test_manual_escalation_up_sideways_refused_down_and_lead_down(esc):
    h = esc
    ref = place(h, ticket_ref(category="network"))

    out = h.feed(requested(ref, "L2", "agent"))
    assert kinds(out) == [("escalation.routed", "manual", "Infrastructure")]
    assert out[0].payload["reason"] == "needs specialists (upward)"
    event, ref = applied(out[0], ref, assignee="Dmitry Volkov")
    h.feed(event)

    # an agent may not move it down: refused, recorded, and the group's manager (who may) is told
    out = h.feed(requested(ref, "L1", "agent", who="Dmitry Volkov", reason="not ours"))
    assert kinds(out) == [("escalation.manager_notified", "refused", "Infrastructure")]
    assert out[0].payload["manager"]["name"] == "Pavel Sidorov"
    assert out[0].payload["reason"] == ("request by Dmitry Volkov (agent) refused: moving down from L2 to L1 "
                                        "needs a lead. Reason given: not ours")

    # sideways to a named group of the same tier is a transfer
    out = h.feed(requested(ref, "L2", "agent", who="Dmitry Volkov", to_group="Applications", reason="it is the CRM"))
    assert kinds(out) == [("escalation.routed", "manual", "Applications")]
    event, ref = applied(out[0], ref)
    h.feed(event)

    # a lead may de-escalate
    out = h.feed(requested(ref, "L1", "lead", who="Maria Garcia", reason="user error, L1 can close"))
    assert kinds(out) == [("escalation.routed", "manual", "Service Desk")]

    records = h.history(ref["id"])["records"]
    assert [(r["trigger"], r["outcome"], r["from"]["group"], r["to"]["group"], r["who"]) for r in records[1:]] == [
        ("manual", "applied", "Service Desk", "Infrastructure", "Ivan Petrov"),
        ("manual", "refused", "Infrastructure", "Service Desk", "Dmitry Volkov"),
        ("manual", "applied", "Infrastructure", "Applications", "Dmitry Volkov"),
        ("manual", "routed", "Applications", "Service Desk", "Maria Garcia"),
    ]
    assert records[2]["to"]["tier"] == "L1"


def test_request_for_a_missing_group_is_refused(esc):
    h = esc
    ref = place(h, ticket_ref())
    out = h.feed(requested(ref, "L2", "agent", to_group="Nobody"))
    assert kinds(out) == [("escalation.manager_notified", "refused", "Service Desk")]
    assert "no support group named 'Nobody'" in out[0].payload["reason"]


# --- ping-pong ------------------------------------------------------------------------------
def test_ping_pong_guard_stops_the_bouncing_and_tells_the_manager(esc):
    h = esc
    ladder = h.client.get(f"{API}/ladders/standard", headers=h.staff).get_json()
    assert h.client.put(f"{API}/ladders/standard", headers=h.staff,
                        json={**ladder, "ping_pong_limit": 2}).status_code == 200
    ref = place(h, ticket_ref(category="network"))

    out = h.feed(requested(ref, "L2", "agent"))                                   # move 1
    event, ref = applied(out[0], ref)
    h.feed(event)
    # move 2: a person in intake puts it back to L1 (no escalation_id): it counts too
    back = {**ref, "tier": "L1", "group": "Service Desk"}
    h.feed(new_event("ticket.assigned", {"ticket": back, "previous": {"tier": "L2", "group": "Infrastructure"},
                                         "trigger": "manual"}, producer="intake", ticket_id=ref["id"]))
    ref = back

    out = h.feed(requested(ref, "L2", "agent", reason="again"))                  # would be move 3
    assert kinds(out) == [("escalation.manager_notified", "ping_pong", "Service Desk")]
    assert out[0].payload["reason"].startswith("moved 2 times (limit 2); kept in Service Desk instead of moving "
                                               "to Infrastructure")
    out = h.feed(sla("sla.breached", ref, "ola:L1"))                              # the ladder is held too
    assert kinds(out) == [("escalation.manager_notified", "ping_pong", "Service Desk")]

    # the manager (a lead) decides: the guard does not stop them
    out = h.feed(requested(ref, "L2", "lead", who="Olga Ivanova", reason="Infrastructure keeps it"))
    assert kinds(out) == [("escalation.routed", "manual", "Infrastructure")]
    body = h.history(ref["id"])
    assert body["ticket"]["moves"] == 3
    assert [r["outcome"] for r in body["records"] if r["trigger"] == "ping_pong"] == ["manager_notified"] * 2


# --- redelivery and order -------------------------------------------------------------------
def test_redelivered_events_change_nothing(esc):
    h = esc
    ref = ticket_ref(priority="P1", category="network")
    created = ticket_event("ticket.created", ref)
    out = h.feed(created, created)
    assert kinds(out) == [("escalation.routed", "initial", "Service Desk")]
    assign, ref = applied(out[0], ref)
    assert h.feed(assign, assign) == []

    for event, expected in ((sla("sla.warning", ref, "first_response", 80), "escalation.manager_notified"),
                            (requested(ref, "L2", "agent"), "escalation.routed")):
        out = h.feed(event)
        assert [e.type for e in out] == [expected]
        assert h.feed(event) == []  # the very same Event object again

    assert len(h.history(ref["id"])["records"]) == 3
    assert h.bus.take_dead_letters("escalation.events") == []


def test_ticket_seen_first_through_an_update_is_routed_once(esc):
    h = esc
    ref = ticket_ref()
    out = h.feed(ticket_event("ticket.updated", ref, changes={"title": {"old": "x", "new": ref["title"]}}))
    assert kinds(out) == [("escalation.routed", "initial", "Service Desk")]
    assert h.feed(ticket_event("ticket.created", ref)) == []
    assert len(h.history(ref["id"])["records"]) == 1
