"""escalation: groups, routing rules, ladders, ticket read model, history, defects, outbox/inbox

Revision ID: escalation_0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

from shared.outbox import create_tables

revision = "escalation_0001"
down_revision = None
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)


def upgrade():
    op.create_table(
        "support_groups",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("tier", sa.String(8), nullable=False),
        sa.Column("members", sa.JSON, nullable=False),
        sa.Column("manager", sa.JSON, nullable=True),
        sa.Column("on_call", sa.String(200), nullable=True),
        sa.Column("handles", sa.JSON, nullable=False),
        sa.Column("tracker", sa.String(100), nullable=True),
        sa.Column("updated_at", UTC, nullable=False),
    )
    op.create_table(
        "routing_rules",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("match", sa.JSON, nullable=False),
        sa.Column("group", sa.String(200), nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
    )
    op.create_table(
        "options",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.JSON, nullable=True),
    )
    op.create_table(
        "ladders",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("priorities", sa.JSON, nullable=False),
        sa.Column("ping_pong_limit", sa.Integer, nullable=False),
        sa.Column("steps", sa.JSON, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
    )
    op.create_table(
        "tickets",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(40), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("priority", sa.String(4), nullable=True),
        sa.Column("status", sa.String(20), nullable=True),
        sa.Column("category", sa.String(200), nullable=True),
        sa.Column("service", sa.String(200), nullable=True),
        sa.Column("channel", sa.String(20), nullable=True),
        sa.Column("reporter", sa.JSON, nullable=True),
        sa.Column("tier", sa.String(8), nullable=True),
        sa.Column("group", sa.String(200), nullable=True),
        sa.Column("assignee", sa.String(200), nullable=True),
        sa.Column("l1_group", sa.String(200), nullable=True),
        sa.Column("l1_assignee", sa.String(200), nullable=True),
        sa.Column("moves", sa.Integer, nullable=False),
        sa.Column("auto_placed", sa.Boolean, nullable=False),
        sa.Column("last_escalation_id", sa.String(36), nullable=True),
        sa.Column("snapshot_at", UTC, nullable=False),
        sa.Column("correlation_id", sa.String(64), nullable=False),
    )
    op.create_table(
        "escalations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("ticket_id", sa.String(64), nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("trigger", sa.String(20), nullable=False),
        sa.Column("from_tier", sa.String(8), nullable=True),
        sa.Column("from_group", sa.String(200), nullable=True),
        sa.Column("to_tier", sa.String(8), nullable=True),
        sa.Column("to_group", sa.String(200), nullable=True),
        sa.Column("who", sa.String(200), nullable=False),
        sa.Column("why", sa.Text, nullable=False),
        sa.Column("clock", sa.String(40), nullable=True),
        sa.Column("percent", sa.Integer, nullable=True),
        sa.Column("outcome", sa.String(30), nullable=False),
        sa.Column("applied_at", UTC, nullable=True),
    )
    op.create_index("ix_escalations_ticket", "escalations", ["ticket_id", "at"])
    op.create_table(
        "fired_steps",
        sa.Column("ticket_id", sa.String(64), primary_key=True),
        sa.Column("clock", sa.String(40), primary_key=True),
        sa.Column("step", sa.String(200), primary_key=True),
        sa.Column("fired_at", UTC, nullable=False),
        sa.Column("escalation_id", sa.String(36), nullable=True),
    )
    op.create_table(
        "defects",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("ticket_id", sa.String(64), nullable=False),
        sa.Column("key", sa.String(40), nullable=False),
        sa.Column("tracker", sa.String(100), nullable=False),
        sa.Column("group", sa.String(200), nullable=False),
        sa.Column("escalation_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTC, nullable=False),
        sa.Column("lease_until", UTC, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("defect_id", sa.String(100), nullable=True),
        sa.Column("url", sa.String(1000), nullable=True),
        sa.Column("tracker_status", sa.String(40), nullable=True),
        sa.Column("resolution", sa.String(20), nullable=True),
        sa.Column("correlation_id", sa.String(64), nullable=False),
        sa.Column("causation_id", sa.String(64), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("linked_at", UTC, nullable=True),
        sa.Column("resolved_at", UTC, nullable=True),
        sa.UniqueConstraint("tracker", "defect_id", name="uq_defects_tracker_defect"),
    )
    op.create_index("ix_defects_due", "defects", ["status", "next_attempt_at"])
    op.create_index("ix_defects_ticket", "defects", ["ticket_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("tracker", sa.String(100), primary_key=True),
        sa.Column("delivery_id", sa.String(128), primary_key=True),
        sa.Column("received_at", UTC, nullable=False),
    )
    create_tables(op)


def downgrade():
    for table in ("webhook_deliveries", "defects", "fired_steps", "escalations", "tickets", "ladders",
                  "options", "routing_rules", "support_groups", "inbox", "outbox"):
        op.drop_table(table)
