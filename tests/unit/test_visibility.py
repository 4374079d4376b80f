"""The one visibility rule (shared/visibility.py): its cases, and its SQL form agreeing with it."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert, select

from shared.auth import Principal
from shared.visibility import can_see, visible_where


def who(role, tier=None, groups=(), name="pat", email="pat@example.com"):
    return Principal(name=name, role=role, email=email, tier=tier, groups=tuple(groups))


def test_visibility_rules():
    ticket = dict(tier="L2", group="Infrastructure", assignee=None, reporter_email="kate@example.com")
    assert can_see(who("lead"), **ticket) and can_see(who("admin"), **ticket)
    assert can_see(who("reporter", email="KATE@example.com"), **ticket)
    assert not can_see(who("reporter"), **ticket)
    assert not can_see(who("reporter", tier="L2", groups=["Infrastructure"]), **ticket)  # a reporter: own only
    assert can_see(who("agent", tier="L2"), **ticket)
    assert can_see(who("agent", tier="L3", groups=["Infrastructure"]), **ticket)
    assert not can_see(who("agent", tier="L1", groups=["Service Desk"]), **ticket)
    assert can_see(who("agent", tier="L3", name="Dmitry"), **{**ticket, "assignee": "Dmitry"})
    assert can_see(who("agent", tier="L3", email="kate@example.com"), **ticket)  # staff reporting for themselves
    unrouted = {**ticket, "tier": None, "group": None}
    assert can_see(who("agent", tier="L1"), **unrouted)
    assert not can_see(who("agent", tier="L2"), **unrouted)


TIERS = st.sampled_from([None, "L1", "L2", "L3", "DEV"])
GROUPS = st.sampled_from([None, "Service Desk", "Infrastructure", "Applications"])
PEOPLE = st.sampled_from([None, "pat", "pat@example.com", "kate@example.com", "Dmitry"])
EMAILS = st.sampled_from([None, "pat@example.com", "kate@example.com"])
TICKETS = st.lists(st.fixed_dictionaries({"tier": TIERS, "group": GROUPS, "assignee": PEOPLE,
                                          "reporter_email": EMAILS}), min_size=1, max_size=12)
PRINCIPALS = st.builds(who, st.sampled_from(["reporter", "agent", "lead", "admin"]), TIERS,
                       st.lists(GROUPS.filter(bool), max_size=2),
                       st.sampled_from(["pat", "Dmitry"]), st.sampled_from([None, "pat@example.com", "PAT@example.com"]))


@settings(max_examples=150, deadline=None)
@given(principal=PRINCIPALS, tickets=TICKETS)
def test_the_sql_condition_selects_exactly_what_can_see_allows(principal, tickets):
    md = MetaData()
    table = Table("t", md, Column("id", Integer, primary_key=True), Column("tier", String), Column("grp", String),
                  Column("assignee", String), Column("reporter_email", String))
    engine = create_engine("sqlite://")
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(table), [{"id": i, "tier": t["tier"], "grp": t["group"], "assignee": t["assignee"],
                                      "reporter_email": t["reporter_email"]} for i, t in enumerate(tickets)])
        condition = visible_where(principal, tier=table.c.tier, group=table.c.grp, assignee=table.c.assignee,
                                  reporter_email=table.c.reporter_email)
        query = select(table.c.id) if condition is None else select(table.c.id).where(condition)
        selected = {row.id for row in conn.execute(query)}
    assert selected == {i for i, t in enumerate(tickets) if can_see(principal, **t)}
