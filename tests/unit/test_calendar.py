"""Business-time arithmetic (services/sla/calendar.py), checked against a minute-by-minute
brute-force reference. The reference counts real UTC minutes whose local wall time falls in a
window of its local weekday on a working local date; with window edges, offsets and DST
transitions all on whole minutes (true for every zone used here since 1970) it is exact."""
from __future__ import annotations

import datetime as dt
import functools
import json

import holidays
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from zoneinfo import ZoneInfo

from services.sla.calendar import (
    DAY_KEYS, Calendar, Window, add_business_seconds, business_seconds_between,
)

UTC = dt.timezone.utc
MIN = dt.timedelta(minutes=1)
SEC = dt.timedelta(seconds=1)
TZS = ["UTC", "Europe/Berlin", "America/New_York", "Europe/Moscow",
       "Australia/Lord_Howe",  # 30-minute DST shift
       "America/Santiago",     # DST changes at local midnight
       "America/St_Johns",     # -03:30; DST changed at 00:01 until 2011
       "Asia/Kolkata"]         # +05:30, no DST
BERLIN, NEW_YORK, MOSCOW, SANTIAGO = (ZoneInfo(z) for z in
                                      ("Europe/Berlin", "America/New_York", "Europe/Moscow",
                                       "America/Santiago"))
PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- brute-force reference

@functools.lru_cache(maxsize=None)
def _country_days(country: str) -> frozenset[dt.date]:
    return frozenset(holidays.country_holidays(country, years=range(2009, 2030)))


def ref_between(cal: Calendar, start: dt.datetime, end: dt.datetime) -> int:
    """Business seconds in [start, end), one UTC minute at a time (both ends whole minutes)."""
    assert start.second == start.microsecond == end.second == end.microsecond == 0
    ts, te = int(start.timestamp()), int(end.timestamp())
    if cal.always_on:
        return max(0, te - ts)
    tz = ZoneInfo(cal.timezone)
    off = cal.holidays | (_country_days(cal.holiday_country) if cal.holiday_country else set())
    spans = [[(w.start, w.end) for w in cal.windows if w.weekday == d] for d in range(7)]
    total = 0
    for t in range(ts, te, 60):
        local = dt.datetime.fromtimestamp(t, tz)
        m = local.hour * 60 + local.minute
        if local.date() not in off and any(s <= m < e for s, e in spans[local.weekday()]):
            total += 60
    return total


def test_reference_sanity():
    cal = make_cal("Europe/Berlin", {"sun": [["02:00", "03:00"]]})
    # Spring forward: 02:00-03:00 does not exist; fall back: it happens twice.
    assert ref_between(cal, dt.datetime(2026, 3, 28, tzinfo=UTC), dt.datetime(2026, 3, 30, tzinfo=UTC)) == 0
    assert ref_between(cal, dt.datetime(2026, 10, 24, tzinfo=UTC), dt.datetime(2026, 10, 26, tzinfo=UTC)) == 7200


# ---------------------------------------------------------------- strategies

def _transitions(first: dt.datetime, last: dt.datetime) -> set[dt.datetime]:
    """Hours (UTC) at which one of TZS changed its offset between first and last."""
    out = set()
    for key in TZS:
        tz = ZoneInfo(key)
        t = first
        prev = t.astimezone(tz).utcoffset()
        while t < last:
            t += dt.timedelta(hours=1)
            cur = t.astimezone(tz).utcoffset()
            if cur != prev:
                out.add(t)
            prev = cur
    return out


# Dec 2025 - Jan 2027, plus 2010 for St. John's 00:01 transitions (a fold across midnight).
TRANSITIONS = sorted(_transitions(dt.datetime(2025, 12, 1, tzinfo=UTC), dt.datetime(2027, 2, 1, tzinfo=UTC))
                     | _transitions(dt.datetime(2010, 3, 1, tzinfo=UTC), dt.datetime(2010, 12, 1, tzinfo=UTC)))
# Window edges: anywhere, but often on DST-sensitive wall times and the day edges.
EDGE = st.one_of(st.sampled_from([0, 60, 120, 150, 180, 1380, 1440]), st.integers(0, 1440))


@st.composite
def day_windows(draw, weekday: int) -> list[Window]:
    k = draw(st.integers(0, 3))
    pts = sorted(draw(st.lists(EDGE, min_size=2 * k, max_size=2 * k, unique=True)))
    out = []
    for i in range(k):
        start = pts[2 * i]
        if out and draw(st.booleans()):  # sometimes touch the previous window
            start = out[-1].end
        out.append(Window(weekday, start, pts[2 * i + 1]))
    return out


@st.composite
def instants(draw) -> dt.datetime:
    """Whole-minute instants in Dec 2025 - Jan 2027, half of them within days of a DST change."""
    if draw(st.booleans()):
        base, minutes = draw(st.sampled_from(TRANSITIONS)), draw(st.integers(-3 * 1440, 1440))
    else:
        base, minutes = dt.datetime(2025, 12, 1, tzinfo=UTC), draw(st.integers(0, 420 * 1440))
    t = base + dt.timedelta(minutes=minutes)
    # Callers may pass any zone; the instant is what counts.
    return t.astimezone(ZoneInfo(draw(st.sampled_from(TZS + ["Asia/Tokyo"]))))


@st.composite
def cal_and_start(draw) -> tuple[Calendar, dt.datetime]:
    start = draw(instants())
    near = start.astimezone(UTC).date()
    hols = draw(st.frozensets(st.integers(-2, 20).map(lambda n: near + dt.timedelta(days=n)),
                              max_size=4))
    cal = Calendar(
        name="gen", timezone=draw(st.sampled_from(TZS)),
        windows=tuple(w for d in range(7) for w in draw(day_windows(d))),
        holidays=hols, holiday_country=draw(st.sampled_from([None, None, "RU"])),
        always_on=draw(st.integers(0, 9)) == 0)
    return cal, start


def plus(t: dt.datetime, **delta) -> dt.datetime:
    """Real-time arithmetic (aware + timedelta in a ZoneInfo zone would be wall-clock)."""
    return t.astimezone(UTC) + dt.timedelta(**delta)


def make_cal(tz: str, windows: dict, **kw) -> Calendar:
    return Calendar.from_dict({"name": "t", "timezone": tz, "windows": windows, **kw})


def every_day(start: str, end: str) -> dict:
    return {k: [[start, end]] for k in DAY_KEYS}


def local_day(tz: ZoneInfo, d: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[local midnight, next local midnight) of date d (midnights that exist in these cases)."""
    return (dt.datetime.combine(d, dt.time(), tzinfo=tz),
            dt.datetime.combine(d + dt.timedelta(days=1), dt.time(), tzinfo=tz))


# ---------------------------------------------------------------- properties

@PROPS
@given(cal_and_start(), st.integers(0, 14 * 1440))
def test_between_matches_reference(cs, minutes):
    cal, start = cs
    end = plus(start, minutes=minutes)
    assert business_seconds_between(cal, start, end) == ref_between(cal, start, end)


@PROPS
@given(cal_and_start(), st.integers(0, 30 * 86400))
def test_add_inverts_between_and_is_minimal(cs, n):
    cal, start = cs
    if not cal.always_on and not cal.windows and n > 0:
        with pytest.raises(ValueError):
            add_business_seconds(cal, start, n)
        return
    try:
        t = add_business_seconds(cal, start, n)
    except ValueError:  # allowed only when the ~3-year horizon truly lacks n seconds
        assert business_seconds_between(cal, start, plus(start, days=1090)) < n
        return
    assert t.utcoffset() == dt.timedelta(0) and t >= start.astimezone(UTC)
    assert business_seconds_between(cal, start, t) == n
    if n > 0:
        assert business_seconds_between(cal, start, t - SEC) == n - 1
    else:  # (compare in UTC: PEP 495 makes == across zones False for times in a fold)
        assert t == start.astimezone(UTC)


@PROPS
@given(cal_and_start(), st.integers(0, 3 * 1440))
def test_add_matches_reference(cs, business_minutes):
    cal, start = cs
    n = business_minutes * 60
    try:
        t = add_business_seconds(cal, start, n)
    except ValueError:
        return  # covered by test_add_inverts_between_and_is_minimal
    if t - start > dt.timedelta(days=21):
        return  # too slow for the minute-by-minute reference
    assert t.second == 0 and ref_between(cal, start, t) == n
    if n > 0:
        assert ref_between(cal, start, t - MIN) < n


@PROPS
@given(cal_and_start(), st.integers(0, 10 * 1440), st.integers(0, 10 * 1440))
def test_between_is_additive(cs, m1, m2):
    cal, a = cs
    b = plus(a, minutes=m1)
    c = plus(b, minutes=m2)
    assert business_seconds_between(cal, a, c) == (
        business_seconds_between(cal, a, b) + business_seconds_between(cal, b, c))
    assert business_seconds_between(cal, c, a) == 0


@PROPS
@given(cal_and_start())
def test_dict_round_trip_property(cs):
    cal, _ = cs
    d = cal.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert Calendar.from_dict(d) == cal
    assert Calendar.from_dict(d).to_dict() == d


# ---------------------------------------------------------------- DST examples

@pytest.mark.parametrize("tz, day, hours", [
    (BERLIN, dt.date(2026, 3, 29), 23), (BERLIN, dt.date(2026, 10, 25), 25),
    (BERLIN, dt.date(2026, 10, 26), 24),
    (NEW_YORK, dt.date(2026, 3, 8), 23), (NEW_YORK, dt.date(2026, 11, 1), 25),
    (MOSCOW, dt.date(2026, 3, 29), 24), (MOSCOW, dt.date(2026, 10, 25), 24),
])
def test_full_day_window_counts_real_hours(tz, day, hours):
    cal = make_cal(tz.key, every_day("00:00", "24:00"))
    s, e = local_day(tz, day)
    assert business_seconds_between(cal, s, e) == hours * 3600 == ref_between(cal, s, e)


BERLIN_SPRING, BERLIN_FALL = dt.date(2026, 3, 29), dt.date(2026, 10, 25)  # 02->03, 03->02
NY_SPRING, NY_FALL = dt.date(2026, 3, 8), dt.date(2026, 11, 1)              # 02->03, 02->01


@pytest.mark.parametrize("tz, day, window, hours", [
    # A window spanning the change counts real elapsed time.
    (BERLIN, BERLIN_SPRING, ("01:00", "04:00"), 2), (BERLIN, BERLIN_FALL, ("01:00", "04:00"), 4),
    (NEW_YORK, NY_SPRING, ("00:00", "04:00"), 3), (NEW_YORK, NY_FALL, ("00:00", "04:00"), 5),
    # A skipped hour never happens; a repeated hour happens twice.
    (BERLIN, BERLIN_SPRING, ("02:00", "03:00"), 0), (BERLIN, BERLIN_FALL, ("02:00", "03:00"), 2),
    (NEW_YORK, NY_SPRING, ("02:00", "03:00"), 0), (NEW_YORK, NY_FALL, ("01:00", "02:00"), 2),
    # Windows starting or ending inside the gap / the fold.
    (BERLIN, BERLIN_SPRING, ("02:30", "04:00"), 1), (BERLIN, BERLIN_FALL, ("02:30", "04:00"), 2),
    (BERLIN, BERLIN_SPRING, ("01:00", "02:30"), 1), (BERLIN, BERLIN_FALL, ("01:00", "02:30"), 2),
    (NEW_YORK, NY_FALL, ("01:30", "03:00"), 2), (NEW_YORK, NY_FALL, ("00:00", "01:30"), 2),
    # Away from the change: unaffected.
    (BERLIN, BERLIN_FALL, ("09:00", "18:00"), 9), (NEW_YORK, NY_SPRING, ("09:00", "18:00"), 9),
])
def test_windows_on_dst_days(tz, day, window, hours):
    cal = make_cal(tz.key, {"sun": [list(window)]})
    s, e = local_day(tz, day)
    assert business_seconds_between(cal, s, e) == hours * 3600 == ref_between(cal, s, e)


def test_no_dst_zone_is_plain():
    cal = make_cal("Europe/Moscow", {"sun": [["02:00", "03:00"]]})
    for day in (dt.date(2026, 3, 29), dt.date(2026, 10, 25)):
        assert business_seconds_between(cal, *local_day(MOSCOW, day)) == 3600


def test_add_through_repeated_hour():
    cal = make_cal("Europe/Berlin", {"sun": [["02:00", "03:00"]]})
    start = dt.datetime(2026, 10, 25, tzinfo=BERLIN)
    # First 02:00-03:00 (CEST) is 00:00-01:00 UTC; the second (CET) is 01:00-02:00 UTC.
    assert add_business_seconds(cal, start, 5400) == dt.datetime(2026, 10, 25, 1, 30, tzinfo=UTC)


def test_add_across_spring_forward():
    cal = make_cal("America/New_York", every_day("01:00", "04:00"))
    start = dt.datetime(2026, 3, 8, 1, 30, tzinfo=NEW_YORK)  # 06:30 UTC; 02:00 EST -> 03:00 EDT
    assert add_business_seconds(cal, start, 3600) == dt.datetime(2026, 3, 8, 3, 30, tzinfo=NEW_YORK)


def test_santiago_midnight_transitions():
    cal = make_cal("America/Santiago", every_day("00:00", "24:00"))
    # Saturday 2026-04-04 24:00 -03 becomes 23:00 -04: Saturday lasts 25 h.
    s = dt.datetime(2026, 4, 4, tzinfo=SANTIAGO)
    e = dt.datetime(2026, 4, 5, 4, tzinfo=UTC)  # Sunday 00:00 -04
    assert business_seconds_between(cal, s, e) == 25 * 3600 == ref_between(cal, s, e)
    sat_only = make_cal("America/Santiago", {"sat": [["23:00", "24:00"]]})
    assert business_seconds_between(sat_only, s, e) == 7200
    assert add_business_seconds(sat_only, s, 5400) == dt.datetime(2026, 4, 5, 3, 30, tzinfo=UTC)


def test_fold_across_midnight_st_johns_2010():
    # Until 2011 St. John's changed at 00:01: on 2010-11-07 00:01 NDT (-02:30) the clock went
    # back to Saturday 23:01 NST (-03:30), so Saturday's second 23:01-24:00 comes after a minute
    # of Sunday. Instants after a start on Sunday can lie on Saturday.
    st_johns = ZoneInfo("America/St_Johns")
    sat = make_cal(st_johns.key, {"sat": [["23:00", "24:00"]]})
    sun_start = dt.datetime(2010, 11, 7, 2, 30, 30, tzinfo=UTC)  # Sunday 00:00:30 NDT
    end = dt.datetime(2010, 11, 7, 4, tzinfo=UTC)
    assert sun_start.astimezone(st_johns).date() == dt.date(2010, 11, 7)
    assert business_seconds_between(sat, sun_start, end) == 59 * 60
    assert add_business_seconds(sat, sun_start, 60) == dt.datetime(2010, 11, 7, 2, 32, tzinfo=UTC)
    # Saturday's and Sunday's business time interleave: Sat 01:30-02:30 UTC, Sun 02:30-02:31,
    # Sat 02:31-03:30, Sun 03:30-04:30.
    both = make_cal(st_johns.key, {"sat": [["23:00", "24:00"]], "sun": [["00:00", "01:00"]]})
    s = dt.datetime(2010, 11, 7, 0, 30, tzinfo=UTC)
    for minutes, expected in ((60, (2, 30)), (61, (2, 31)), (62, (2, 32)), (120, (3, 30)),
                              (150, (4, 0))):
        t = add_business_seconds(both, s, minutes * 60)
        assert t == dt.datetime(2010, 11, 7, *expected, tzinfo=UTC), minutes
        assert ref_between(both, s, t) == minutes * 60 == business_seconds_between(both, s, t)


def test_touching_windows_across_midnight_are_continuous():
    cal = make_cal("Europe/Berlin", {"mon": [["22:00", "24:00"]], "tue": [["00:00", "02:00"]]})
    s = dt.datetime(2026, 6, 1, 21, tzinfo=BERLIN)
    assert business_seconds_between(cal, s, s + dt.timedelta(hours=6)) == 4 * 3600
    assert add_business_seconds(cal, s, 4 * 3600) == dt.datetime(2026, 6, 2, 2, tzinfo=BERLIN)


# ---------------------------------------------------------------- holidays

RU_OFFICE = {"timezone": "Europe/Moscow", "holiday_country": "RU",
             "windows": {k: [["09:00", "18:00"]] for k in DAY_KEYS[:5]}}


def test_ru_public_holidays():
    cal = Calendar.from_dict({"name": "ru", **RU_OFFICE})
    assert not cal.is_working_day(dt.date(2026, 11, 4))  # Unity Day (Wednesday)
    assert cal.is_working_day(dt.date(2026, 11, 5))
    assert not cal.is_working_day(dt.date(2026, 11, 7))  # Saturday
    for day in range(1, 9):
        assert not cal.is_working_day(dt.date(2027, 1, day))
    assert cal.is_working_day(dt.date(2027, 1, 11))
    # 2026-12-31 is a transferred day off, then New Year holidays up to 2027-01-10.
    s = dt.datetime(2026, 12, 30, 17, tzinfo=MOSCOW)
    assert add_business_seconds(cal, s, 2 * 3600) == dt.datetime(2027, 1, 11, 10, tzinfo=MOSCOW)
    e = dt.datetime(2027, 1, 11, 10, tzinfo=MOSCOW)
    assert business_seconds_between(cal, s, e) == 2 * 3600 == ref_between(cal, s, e)
    # Unity Day week: Mon-Fri minus Wednesday = 4 days.
    s, e = dt.datetime(2026, 11, 2, tzinfo=MOSCOW), dt.datetime(2026, 11, 9, tzinfo=MOSCOW)
    assert business_seconds_between(cal, s, e) == 4 * 9 * 3600


def test_explicit_holidays_and_empty_days():
    cal = make_cal("Europe/Berlin", {"mon": [["09:00", "17:00"]]}, holidays=["2026-06-01"])
    assert not cal.is_working_day(dt.date(2026, 6, 1))   # explicit holiday
    assert cal.is_working_day(dt.date(2026, 6, 8))
    assert not cal.is_working_day(dt.date(2026, 6, 2))   # no windows on Tuesday
    s = dt.datetime(2026, 6, 1, tzinfo=BERLIN)
    assert add_business_seconds(cal, s, 3600) == dt.datetime(2026, 6, 8, 10, tzinfo=BERLIN)


# ---------------------------------------------------------------- edge cases and errors

def test_always_on():
    cal = Calendar.twenty_four_seven()
    assert cal.always_on and cal.name == "24x7" and cal.is_working_day(dt.date(2026, 1, 1))
    s = dt.datetime(2026, 10, 25, tzinfo=BERLIN)
    e = dt.datetime(2026, 10, 26, tzinfo=BERLIN)
    assert business_seconds_between(cal, s, e) == 25 * 3600
    assert business_seconds_between(cal, s, s + dt.timedelta(seconds=1.9)) == 1
    assert add_business_seconds(cal, s, 90) == (s + dt.timedelta(seconds=90)).astimezone(UTC)
    # always_on ignores windows and holidays.
    cal2 = make_cal("Europe/Berlin", {}, always_on=True, holidays=["2026-10-25"])
    assert business_seconds_between(cal2, s, e) == 25 * 3600


def test_zero_seconds_returns_start_in_utc_even_outside_working_time():
    cal = make_cal("Europe/Berlin", {"mon": [["09:00", "17:00"]]})
    s = dt.datetime(2026, 6, 6, 23, 59, 59, 123, tzinfo=BERLIN)  # Saturday
    t = add_business_seconds(cal, s, 0)
    assert t == s and t.tzinfo is UTC


def test_sub_second_start():
    cal = make_cal("UTC", every_day("09:00", "17:00"))
    s = dt.datetime(2026, 6, 1, 16, 59, 59, 500_000, tzinfo=UTC)
    t = add_business_seconds(cal, s, 1)
    assert t == dt.datetime(2026, 6, 2, 9, 0, 0, 500_000, tzinfo=UTC)
    assert business_seconds_between(cal, s, t) == 1
    assert business_seconds_between(cal, s, t - dt.timedelta(microseconds=1)) == 0


def test_naive_datetimes_rejected():
    cal = Calendar.twenty_four_seven()
    naive, aware = dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="start"):
        business_seconds_between(cal, naive, aware)
    with pytest.raises(ValueError, match="end"):
        business_seconds_between(cal, aware, naive)
    with pytest.raises(ValueError, match="start"):
        add_business_seconds(cal, naive, 5)


def test_add_errors():
    now = dt.datetime(2026, 1, 1, tzinfo=UTC)
    never = Calendar(name="never", timezone="UTC", windows=())
    assert add_business_seconds(never, now, 0) == now
    assert business_seconds_between(never, now, now + dt.timedelta(days=30)) == 0
    with pytest.raises(ValueError, match="no working time"):
        add_business_seconds(never, now, 1)
    with pytest.raises(ValueError, match="seconds"):
        add_business_seconds(Calendar.twenty_four_seven(), now, -1)
    with pytest.raises(ValueError, match="seconds"):
        add_business_seconds(Calendar.twenty_four_seven(), now, 1.5)
    # Only Mondays, and every Monday for 4 years is a holiday: give up instead of looping.
    mondays = [dt.date(2026, 1, 5) + dt.timedelta(weeks=i) for i in range(4 * 53)]
    cal = Calendar("mon", "UTC", (Window(0, 540, 1020),), holidays=frozenset(mondays))
    with pytest.raises(ValueError, match="within"):
        add_business_seconds(cal, now, 1)


# ---------------------------------------------------------------- from_dict / to_dict

GOOD = {"name": "office", "timezone": "Europe/Berlin", "always_on": False,
        "holiday_country": "RU", "holidays": ["2026-12-24", "2026-12-31"],
        "windows": {"mon": [["09:00", "13:00"], ["14:00", "18:00"]], "tue": [["00:00", "24:00"]],
                    "sat": [["10:00", "12:00"], ["12:00", "14:00"]]}}


def test_from_dict_round_trip():
    cal = Calendar.from_dict(GOOD)
    assert cal.windows[:2] == (Window(0, 540, 780), Window(0, 840, 1080))
    assert cal.holidays == {dt.date(2026, 12, 24), dt.date(2026, 12, 31)}
    assert cal.to_dict() == GOOD
    assert Calendar.from_dict(cal.to_dict()) == cal
    # Defaults and canonical order.
    small = Calendar.from_dict({"name": "x", "timezone": "UTC",
                                "windows": {"fri": [["14:00", "15:00"], ["09:00", "10:00"]]}})
    assert small.to_dict() == {"name": "x", "timezone": "UTC", "always_on": False,
                               "holiday_country": None, "holidays": [],
                               "windows": {"fri": [["09:00", "10:00"], ["14:00", "15:00"]]}}
    assert Calendar.from_dict(Calendar.twenty_four_seven().to_dict()) == Calendar.twenty_four_seven()
    # Plain dates (what YAML makes of unquoted 2026-12-24) are accepted too.
    assert Calendar.from_dict({**GOOD, "holidays": [dt.date(2026, 12, 24), "2026-12-31"]}) == cal


def _with(**changes):
    d = json.loads(json.dumps(GOOD))
    for k, v in changes.items():
        if v is ...:
            del d[k]
        else:
            d[k] = v
    return d


@pytest.mark.parametrize("bad, field", [
    (_with(timezone="Mars/Olympus"), "timezone"),
    (_with(timezone=""), "timezone"),
    (_with(name=...), "name"),
    (_with(name=""), "name"),
    (_with(timezone=...), "timezone"),
    (_with(always_on="yes"), "always_on"),
    (_with(holiday_country="XX"), "holiday_country"),
    (_with(holidays=["2026-12-24", "2026-13-01"]), r"holidays\[1\]"),
    (_with(holidays="2026-12-24"), "holidays"),
    (_with(holiday="2026-12-24"), "holiday"),  # unknown field (typo)
    (_with(windows=[["09:00", "18:00"]]), "windows"),
    (_with(windows={"monday": [["09:00", "18:00"]]}), "windows.monday"),
    (_with(windows={"mon": [["25:00", "26:00"]]}), r"windows.mon\[0\] start"),
    (_with(windows={"mon": [["9:00", "18:00"]]}), r"windows.mon\[0\] start"),
    (_with(windows={"mon": [["09:60", "18:00"]]}), r"windows.mon\[0\] start"),
    (_with(windows={"mon": [["24:00", "24:00"]]}), r"windows.mon\[0\] start"),
    (_with(windows={"mon": [["09:00", "24:01"]]}), r"windows.mon\[0\] end"),
    (_with(windows={"mon": [["09:00", 1800]]}), r"windows.mon\[0\] end"),
    (_with(windows={"mon": [["09:00", "18:00", "19:00"]]}), r"windows.mon\[0\]"),
    (_with(windows={"tue": [["08:00", "09:00"], ["18:00", "09:00"]]}), r"windows.tue\[1\]"),
    (_with(windows={"wed": [["09:00", "09:00"]]}), r"windows.wed\[0\]"),
    (_with(windows={"thu": [["09:00", "13:00"], ["12:00", "18:00"]]}), "windows.thu.*overlap"),
    (_with(windows={"fri": [["09:00", "18:00"], ["10:00", "11:00"]]}), "windows.fri.*overlap"),
])
def test_from_dict_rejects_bad_input(bad, field):
    with pytest.raises(ValueError, match=field):
        Calendar.from_dict(bad)


def test_constructor_validates_too():
    with pytest.raises(ValueError, match="windows.mon"):
        Window(0, 600, 600)
    with pytest.raises(ValueError, match="weekday"):
        Window(7, 0, 60)
    with pytest.raises(ValueError, match="windows.sun.*overlap"):
        Calendar("x", "UTC", (Window(6, 0, 120), Window(6, 60, 180)))
    with pytest.raises(ValueError, match="holidays"):
        Calendar("x", "UTC", (), holidays=frozenset({dt.datetime(2026, 1, 1)}))
