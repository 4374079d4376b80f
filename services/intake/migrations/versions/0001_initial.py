"""Intake's tables: tickets, counters, idempotency keys, comments, history, defects, SLA flags.

Revision ID: intake_0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

from shared.outbox import create_tables

revision = "intake_0001"
down_revision = None
branch_labels = None
depends_on = None

AUTO_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
INSTANT = sa.DateTime(timezone=True)


def upgrade():
    op.create_table(
        "tickets",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("number", sa.Integer, nullable=False, unique=True),
        sa.Column("key", sa.String(20), nullable=False, unique=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("priority", sa.String(4), nullable=False),
        sa.Column("impact", sa.String(20)),
        sa.Column("urgency", sa.String(20)),
        sa.Column("tier", sa.String(8)),
        sa.Column("group_name", sa.String(100)),
        sa.Column("assignee", sa.String(200)),
        sa.Column("category", sa.String(100)),
        sa.Column("service", sa.String(100)),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("reporter_name", sa.String(200), nullable=False),
        sa.Column("reporter_email", sa.String(254)),
        sa.Column("language", sa.String(10), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("dedup_key", sa.String(200)),
        sa.Column("dedup_active", sa.String(200), unique=True),
        sa.Column("occurrences", sa.Integer, nullable=False),
        sa.Column("reassignments", sa.Integer, nullable=False),
        sa.Column("tiers_reached", sa.JSON, nullable=False),
        sa.Column("l1_tier", sa.String(8)),
        sa.Column("l1_group", sa.String(100)),
        sa.Column("l1_assignee", sa.String(200)),
        sa.Column("at_risk", sa.Boolean, nullable=False),
        sa.Column("breached", sa.Boolean, nullable=False),
        sa.Column("breached_clocks", sa.JSON, nullable=False),
        sa.Column("first_response_at", INSTANT),
        sa.Column("resolved_at", INSTANT),
        sa.Column("closed_at", INSTANT),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("updated_at", INSTANT, nullable=False),
        sa.Column("csat", sa.Integer),
        sa.Column("nps", sa.Integer),
        sa.Column("feedback_comment", sa.Text),
        sa.Column("feedback_at", INSTANT),
        sa.Column("version", sa.Integer, nullable=False),
    )
    for column in ("status", "priority", "tier", "group_name", "assignee", "reporter_email", "breached",
                   "created_at"):
        op.create_index(f"ix_tickets_{column}", "tickets", [column])
    op.create_index("ix_tickets_resolved_at", "tickets", ["resolved_at"])

    counters = op.create_table(
        "counters",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(counters, [{"name": "ticket", "value": 0}])

    op.create_table(
        "idempotency_keys",
        sa.Column("principal", sa.String(200), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("ticket_id", sa.String(36)),
        sa.Column("created_at", INSTANT, nullable=False),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])

    op.create_table(
        "comments",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("ticket_id", sa.String(36), sa.ForeignKey("tickets.id"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("author_name", sa.String(200), nullable=False),
        sa.Column("author_email", sa.String(254)),
        sa.Column("author_role", sa.String(20), nullable=False),
        sa.Column("public", sa.Boolean, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.UniqueConstraint("ticket_id", "position", name="uq_comments_ticket_position"),
    )
    op.create_index("ix_comments_ticket_id", "comments", ["ticket_id"])

    op.create_table(
        "history",
        sa.Column("id", AUTO_ID, primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.String(36), sa.ForeignKey("tickets.id"), nullable=False),
        sa.Column("at", INSTANT, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("actor_role", sa.String(40), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("public", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
    )
    op.create_index("ix_history_ticket_id", "history", ["ticket_id"])

    op.create_table(
        "defects",
        sa.Column("id", AUTO_ID, primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.String(36), sa.ForeignKey("tickets.id"), nullable=False),
        sa.Column("tracker", sa.String(100), nullable=False),
        sa.Column("defect_id", sa.String(200), nullable=False),
        sa.Column("url", sa.String(2000)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("linked_at", INSTANT, nullable=False),
        sa.Column("resolved_at", INSTANT),
        sa.UniqueConstraint("ticket_id", "tracker", "defect_id", name="uq_defects_ticket_defect"),
    )
    op.create_index("ix_defects_ticket_id", "defects", ["ticket_id"])

    op.create_table(
        "sla_clocks",
        sa.Column("ticket_id", sa.String(36), sa.ForeignKey("tickets.id"), primary_key=True),
        sa.Column("clock", sa.String(40), primary_key=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("percent", sa.Integer),
        sa.Column("due_at", sa.String(40)),
        sa.Column("event_at", INSTANT, nullable=False),
    )

    create_tables(op)


def downgrade():
    for table in ("sla_clocks", "defects", "history", "comments", "idempotency_keys", "counters", "tickets",
                  "inbox", "outbox"):
        op.drop_table(table)
