import json

import pytest

from shared.events import Event, PoisonMessage, new_event


def _ref():
    return {"id": "t1", "key": "INC-1", "title": "Мой принтер", "priority": "P2", "status": "new",
            "reporter": {"name": "Ann", "email": "a@example.com"}, "created_at": "2026-11-22T10:00:00+00:00"}


def test_round_trip_keeps_everything():
    e = new_event("ticket.created", {"ticket": _ref()}, producer="intake", ticket_id="t1")
    back = Event.from_json(e.to_json())
    assert back == e and back.correlation_id == "t1" and back.version == 1
    child = back.caused("escalation.routed", {"key": "INC-1", "tier": "L1", "group": "SD", "trigger": "initial",
                                              "escalation_id": "x"}, producer="escalation")
    assert child.correlation_id == e.correlation_id and child.causation_id == e.id and child.ticket_id == "t1"


def test_new_event_refuses_a_bad_payload():
    with pytest.raises(ValueError, match="priority"):
        new_event("ticket.created", {"ticket": {**_ref(), "priority": "P9"}}, producer="intake")
    with pytest.raises(ValueError, match="unknown event type"):
        new_event("ticket.exploded", {}, producer="intake")


@pytest.mark.parametrize("mutate", [
    lambda d: d.update(version=2),
    lambda d: d.update(type="nope.nope"),
    lambda d: d.pop("id"),
    lambda d: d.update(occurred_at="yesterday"),
    lambda d: d.update(occurred_at="2026-11-22T10:00:00"),  # naive: not UTC-aware
    lambda d: d["payload"].pop("ticket"),
])
def test_from_json_rejects_as_poison(mutate):
    d = new_event("ticket.created", {"ticket": _ref()}, producer="intake").to_dict()
    mutate(d)
    with pytest.raises(PoisonMessage):
        Event.from_json(json.dumps(d))
