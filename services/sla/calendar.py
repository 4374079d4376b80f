"""Business-time arithmetic for SLA clocks: pure, no I/O.

Definition used everywhere below: a real (UTC) instant is *business time* when its local wall
time in the calendar's zone falls inside one of the windows of its local weekday, and that local
date is not a holiday. Counting real instants (not wall-clock minutes) gives DST days their true
length: a 00:00-24:00 window lasts 23 h on a spring-forward day and 25 h on a fall-back day.
Window edges that land in a DST gap or fold need no fold=0/fold=1 choice under this rule: a
nonexistent wall time is never business time, and an ambiguous wall time is business time at
both of its occurrences (a 02:00-03:00 window on a fall-back day counts two real hours).
(Converting window edges to UTC with fold=0 instead would disagree with this rule, and a window
starting inside a spring-forward gap could then overlap its neighbour or end before it starts.)

Speed: work goes day by day, never minute by minute; per-(zone, date) UTC offsets and
per-(country, year) public holidays are cached, so a clock costs tens of microseconds.
"""
from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_pkg

DAY_KEYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_EPOCH_ORD = dt.date(1970, 1, 1).toordinal()
_ONE_US = dt.timedelta(microseconds=1)
_US = 1_000_000
_DAY = 86_400
_MAX_SEARCH_DAYS = 3 * 366  # add_business_seconds gives up after ~3 years without finding time
_TIME_RE = re.compile(r"^(\d\d):(\d\d)$")
_DICT_KEYS = {"name", "timezone", "always_on", "holiday_country", "holidays", "windows"}


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class Window:
    """Working time on one weekday (0=Monday), as minutes from local midnight; end may be 1440."""

    weekday: int
    start: int
    end: int

    def __post_init__(self) -> None:
        if any(type(v) is not int for v in (self.weekday, self.start, self.end)) \
                or not 0 <= self.weekday <= 6:
            raise ValueError(f"window: need int weekday 0..6 and int minutes, got {self!r}")
        if not 0 <= self.start < self.end <= 1440:
            raise ValueError(f"windows.{DAY_KEYS[self.weekday]}: need 00:00 <= start < end <= "
                             f"24:00, got {_hhmm(self.start)}-{_hhmm(self.end)}")


@dataclass(frozen=True)
class Calendar:
    name: str
    timezone: str
    windows: tuple[Window, ...]
    holidays: frozenset[dt.date] = frozenset()
    holiday_country: str | None = None
    always_on: bool = False

    def __post_init__(self) -> None:
        # Validate and normalise here so that directly built calendars are as safe as parsed ones;
        # sorting the windows makes equality (and the to_dict/from_dict round trip) canonical.
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name: expected a non-empty string, got {self.name!r}")
        try:
            tz = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(f"timezone: unknown IANA time zone {self.timezone!r}") from None
        if type(self.always_on) is not bool:
            raise ValueError(f"always_on: expected true/false, got {self.always_on!r}")
        if self.holiday_country is not None and \
                self.holiday_country not in holidays_pkg.list_supported_countries():
            raise ValueError(f"holiday_country: {self.holiday_country!r} is not a country "
                             "supported by the holidays package")
        days = frozenset(self.holidays)
        for d in days:
            if not isinstance(d, dt.date) or isinstance(d, dt.datetime):
                raise ValueError(f"holidays: expected dates, got {d!r}")
        windows = tuple(self.windows)
        if not all(isinstance(w, Window) for w in windows):
            raise ValueError("windows: expected a sequence of Window")
        windows = tuple(sorted(windows, key=lambda w: (w.weekday, w.start, w.end)))
        by_day: list[list[tuple[int, int]]] = [[] for _ in range(7)]
        for w in windows:
            spans = by_day[w.weekday]
            if spans and spans[-1][1] > w.start * 60:
                prev = spans[-1]
                raise ValueError(
                    f"windows.{DAY_KEYS[w.weekday]}: {_hhmm(prev[0] // 60)}-{_hhmm(prev[1] // 60)} "
                    f"overlaps {_hhmm(w.start)}-{_hhmm(w.end)}")
            spans.append((w.start * 60, w.end * 60))
        object.__setattr__(self, "windows", windows)
        object.__setattr__(self, "holidays", days)
        # Derived lookups (not dataclass fields, so they stay out of eq/hash/repr).
        object.__setattr__(self, "_tz", tz)
        object.__setattr__(self, "_by_weekday", tuple(tuple(s) for s in by_day))
        object.__setattr__(self, "_holiday_ords", frozenset(d.toordinal() for d in days))

    @classmethod
    def twenty_four_seven(cls, name: str = "24x7") -> Calendar:
        return cls(name=name, timezone="UTC", windows=(), always_on=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calendar:
        if not isinstance(d, Mapping):
            raise ValueError(f"calendar: expected a mapping, got {type(d).__name__}")
        # Unknown keys are refused: a typo such as "holiday" must not silently drop holidays.
        extra = sorted(set(d) - _DICT_KEYS)
        if extra:
            raise ValueError(f"{extra[0]}: unknown calendar field (allowed: {sorted(_DICT_KEYS)})")
        for f in ("name", "timezone"):
            if f not in d:
                raise ValueError(f"{f}: missing")
        hols = d.get("holidays") or []
        if isinstance(hols, (str, bytes)) or not isinstance(hols, (list, tuple)):
            raise ValueError("holidays: expected a list of YYYY-MM-DD strings")
        dates = []
        for i, h in enumerate(hols):
            if type(h) is dt.date:  # YAML reads unquoted 2026-12-31 as a date
                dates.append(h)
                continue
            try:
                dates.append(dt.date.fromisoformat(h))
            except (TypeError, ValueError):
                raise ValueError(f"holidays[{i}]: invalid date {h!r} (expected YYYY-MM-DD)") from None
        wins = d.get("windows") or {}
        if not isinstance(wins, Mapping):
            raise ValueError("windows: expected a mapping of weekday -> [[start, end], ...]")
        windows = []
        for key, spans in wins.items():
            if key not in DAY_KEYS:
                raise ValueError(f"windows.{key}: unknown weekday (expected one of {list(DAY_KEYS)})")
            if isinstance(spans, (str, bytes)) or not isinstance(spans, (list, tuple)):
                raise ValueError(f"windows.{key}: expected a list of [start, end] pairs")
            for i, span in enumerate(spans):
                if not isinstance(span, (list, tuple)) or len(span) != 2:
                    raise ValueError(f"windows.{key}[{i}]: expected [start, end], got {span!r}")
                start = _parse_time(span[0], f"windows.{key}[{i}] start", allow_24=False)
                end = _parse_time(span[1], f"windows.{key}[{i}] end", allow_24=True)
                if start >= end:
                    raise ValueError(f"windows.{key}[{i}]: start {span[0]} must be before end {span[1]}")
                windows.append(Window(DAY_KEYS.index(key), start, end))
        return cls(name=d["name"], timezone=d["timezone"], windows=tuple(windows),
                   holidays=frozenset(dates), holiday_country=d.get("holiday_country"),
                   always_on=d.get("always_on", False))

    def to_dict(self) -> dict[str, Any]:
        windows: dict[str, list[list[str]]] = {}
        for w in self.windows:
            windows.setdefault(DAY_KEYS[w.weekday], []).append([_hhmm(w.start), _hhmm(w.end)])
        return {"name": self.name, "timezone": self.timezone, "always_on": self.always_on,
                "holiday_country": self.holiday_country,
                "holidays": sorted(h.isoformat() for h in self.holidays), "windows": windows}

    def is_working_day(self, local_date: dt.date) -> bool:
        """True when the date has at least one window and is not a holiday (always for 24x7)."""
        return self.always_on or self._working_ordinal(local_date.toordinal())

    def _working_ordinal(self, ordinal: int) -> bool:
        # Only days off are modelled; transferred working days (a working Saturday) are not.
        if not self._by_weekday[(ordinal - 1) % 7]:  # ordinal 1 (0001-01-01) was a Monday
            return False
        if ordinal in self._holiday_ords:
            return False
        if self.holiday_country is not None:
            year = dt.date.fromordinal(ordinal).year
            return ordinal not in _country_holidays(self.holiday_country, year)
        return True


def _parse_time(value: Any, where: str, allow_24: bool) -> int:
    m = _TIME_RE.match(value) if isinstance(value, str) else None
    if m:
        h, mi = int(m[1]), int(m[2])
        if (h < 24 and mi < 60) or (allow_24 and h == 24 and mi == 0):
            return h * 60 + mi
    hint = "HH:MM, 00:00..24:00" if allow_24 else "HH:MM, 00:00..23:59"
    if isinstance(value, int):  # YAML 1.1 reads unquoted 18:00 as the base-60 number 1080
        hint += ", quoted in YAML"
    raise ValueError(f"{where}: invalid time {value!r} (expected {hint})")


@functools.lru_cache(maxsize=1024)
def _country_holidays(country: str, year: int) -> frozenset[int]:
    return frozenset(d.toordinal() for d in holidays_pkg.country_holidays(country, years=year))


def _offset_at_wall(tz: ZoneInfo, ordinal: int, fold: int) -> int:
    d = dt.date.fromordinal(ordinal)
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=tz, fold=fold).utcoffset().total_seconds())


def _offset_at_utc(tz: ZoneInfo, sec: int) -> int:
    return int(dt.datetime.fromtimestamp(sec, tz).utcoffset().total_seconds())


@functools.lru_cache(maxsize=65536)
def _day_segments(tz_key: str, ordinal: int) -> tuple[tuple[int, int, int], ...]:
    """UTC spans (start_s, end_s, utc_offset_s), each with one constant offset, that together
    cover every instant whose local date is `ordinal`.

    Assumes offsets never change twice and back again within ~a day (true of tzdata)."""
    tz = ZoneInfo(tz_key)
    n0 = (ordinal - _EPOCH_ORD) * _DAY  # local midnight as if it were UTC
    before, after = _offset_at_wall(tz, ordinal, 0), _offset_at_wall(tz, ordinal + 1, 1)
    if before == after:  # the usual case: one offset all day, shift the whole day
        return ((n0 - before, n0 + _DAY - before, before),)
    # A transition is near: bracket the day with every candidate offset, then split that UTC
    # range where the offset changes (binary search to the second; only on ~2 days a year).
    offs = (before, after, _offset_at_wall(tz, ordinal, 1), _offset_at_wall(tz, ordinal + 1, 0))
    lo, hi = n0 - max(offs), n0 + _DAY - min(offs)
    out = []
    while lo < hi:
        off = _offset_at_utc(tz, lo)
        if _offset_at_utc(tz, hi - 1) == off:
            out.append((lo, hi, off))
            break
        a, b = lo, hi - 1  # offset(a) == off != offset(b)
        while b - a > 1:
            mid = (a + b) // 2
            a, b = (mid, b) if _offset_at_utc(tz, mid) == off else (a, mid)
        out.append((lo, b, off))
        lo = b
    return tuple(out)


def _day_pieces(cal: Calendar, ordinal: int) -> list[tuple[int, int]]:
    """Business time of one local date as disjoint UTC (start_s, end_s) spans, in no set order."""
    if not cal._working_ordinal(ordinal):
        return []
    n0 = (ordinal - _EPOCH_ORD) * _DAY
    spans = cal._by_weekday[(ordinal - 1) % 7]
    segs = _day_segments(cal.timezone, ordinal)
    if len(segs) == 1:
        base = n0 - segs[0][2]
        return [(base + s, base + e) for s, e in spans]
    # Within one constant-offset segment, wall time = UTC + offset exactly, so a window's
    # preimage there is the shifted window clipped to the segment. Gaps yield nothing, folds
    # yield two pieces, and the pieces of distinct windows stay disjoint.
    out = []
    for s, e in spans:
        for lo, hi, off in segs:
            a, b = max(lo, n0 + s - off), min(hi, n0 + e - off)
            if a < b:
                out.append((a, b))
    return out


def _to_us(t: dt.datetime, what: str) -> int:
    if not isinstance(t, dt.datetime) or t.utcoffset() is None:
        raise ValueError(f"{what}: expected a timezone-aware datetime, got {t!r}")
    return (t - _EPOCH) // _ONE_US


def _from_us(us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=us)


def business_seconds_between(cal: Calendar, start: dt.datetime, end: dt.datetime) -> int:
    """Whole business seconds in [start, end); 0 when end <= start."""
    s_us, e_us = _to_us(start, "start"), _to_us(end, "end")
    if e_us <= s_us:
        return 0
    if cal.always_on:
        return (e_us - s_us) // _US
    # One local date either side covers instants whose date differs from that of start/end
    # because of a fold (clocks set back over midnight).
    first = start.astimezone(cal._tz).toordinal() - 1
    last = end.astimezone(cal._tz).toordinal() + 1
    total = 0
    for ordinal in range(first, last + 1):
        for a, b in _day_pieces(cal, ordinal):
            a, b = max(a * _US, s_us), min(b * _US, e_us)
            if a < b:
                total += b - a
    return total // _US


def add_business_seconds(cal: Calendar, start: dt.datetime, seconds: int) -> dt.datetime:
    """Earliest instant t >= start with business_seconds_between(cal, start, t) == seconds (UTC)."""
    s_us = _to_us(start, "start")
    if not isinstance(seconds, int):
        raise ValueError(f"seconds: expected an int, got {seconds!r}")
    if seconds < 0:
        raise ValueError(f"seconds: must be >= 0, got {seconds}")
    if seconds == 0:
        return _from_us(s_us)
    if cal.always_on:
        return _from_us(s_us + seconds * _US)
    if not cal.windows:
        raise ValueError(f"calendar {cal.name!r} has no working time")
    remaining = seconds * _US
    first = start.astimezone(cal._tz).toordinal() - 1  # see business_seconds_between
    pending: list[tuple[int, int]] = []
    for ordinal in range(first, first + _MAX_SEARCH_DAYS):
        pending.extend(_day_pieces(cal, ordinal))
        pending.sort()
        # Folds can interleave the pieces of neighbouring dates, so consume only those that no
        # later date can precede: a later date's pieces start after its local midnight minus
        # 24 h (datetime keeps |utcoffset| below 24 h), i.e. after `ready`.
        ready = (ordinal - _EPOCH_ORD) * _DAY
        while pending and pending[0][0] <= ready:
            a, b = pending.pop(0)
            a, b = max(a * _US, s_us), b * _US
            if a >= b:
                continue
            if remaining <= b - a:
                return _from_us(a + remaining)
            remaining -= b - a
    raise ValueError(f"calendar {cal.name!r}: no {seconds} business seconds within "
                     f"{_MAX_SEARCH_DAYS} days after {start.isoformat()}")
