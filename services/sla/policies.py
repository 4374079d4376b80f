"""SLA policies: the targets a ticket gets, chosen by its attributes (first match wins)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from services.sla.domain import FIRST_RESPONSE, OLA, RESOLUTION


@dataclass(frozen=True)
class Policy:
    name: str
    priority: str
    calendar: str
    first_response: int
    resolution: int
    resolution_calendar: str | None = None
    category: str | None = None
    service: str | None = None
    channel: str | None = None
    warnings: tuple[int, ...] = ()
    ola: Mapping[str, int] = field(default_factory=dict)
    position: int = 0

    @classmethod
    def from_dict(cls, d: Mapping) -> "Policy":
        """From the config/API shape: {name, match: {priority, category, ...}, calendar, ...}."""
        match = d.get("match") or {}
        return cls(name=d["name"], priority=match["priority"], category=match.get("category"),
                   service=match.get("service"), channel=match.get("channel"),
                   calendar=d["calendar"], resolution_calendar=d.get("resolution_calendar"),
                   first_response=int(d["first_response"]), resolution=int(d["resolution"]),
                   warnings=tuple(sorted(set(d.get("warnings") or ()))), ola=dict(d.get("ola") or {}),
                   position=int(d.get("position") or 0))

    def calendars(self) -> set[str]:
        return {self.calendar, self.resolution_calendar or self.calendar}

    def matches(self, *, priority: str, category: str | None = None, service: str | None = None,
                channel: str | None = None) -> bool:
        if self.priority != priority:
            return False
        for wanted, actual in ((self.category, category), (self.service, service), (self.channel, channel)):
            if wanted is not None and (actual is None or wanted.casefold() != actual.casefold()):
                return False
        return True

    def target(self, clock_name: str) -> tuple[int | None, str]:
        """(target seconds, calendar name) of a clock under this policy."""
        if clock_name == FIRST_RESPONSE:
            return self.first_response, self.calendar
        if clock_name == RESOLUTION:
            return self.resolution, self.resolution_calendar or self.calendar
        if clock_name.startswith(OLA):
            return self.ola.get(clock_name[len(OLA):]), self.calendar
        raise ValueError(f"unknown clock {clock_name!r}")


def select_policy(policies: Iterable[Policy], *, priority: str, category: str | None = None,
                  service: str | None = None, channel: str | None = None) -> Policy | None:
    """The first policy (in position order) whose match fits; None when nothing fits."""
    for policy in sorted(policies, key=lambda p: p.position):
        if policy.matches(priority=priority, category=category, service=service, channel=channel):
            return policy
    return None
