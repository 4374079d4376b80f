"""sla: calendars, policies, tickets, clocks, outbox and inbox.

Revision ID: sla_0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

from shared.outbox import create_tables

revision = "sla_0001"
down_revision = None
branch_labels = None
depends_on = None


def _stamp(name, nullable=False):
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade():
    op.create_table(
        "calendars",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        _stamp("created_at"), _stamp("updated_at"),
    )
    op.create_table(
        "policies",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("priority", sa.String(8), nullable=False),
        sa.Column("category", sa.String(100)),
        sa.Column("service", sa.String(100)),
        sa.Column("channel", sa.String(20)),
        sa.Column("calendar", sa.String(64), nullable=False),
        sa.Column("resolution_calendar", sa.String(64)),
        sa.Column("first_response", sa.Integer, nullable=False),
        sa.Column("resolution", sa.Integer, nullable=False),
        sa.Column("warnings", sa.JSON, nullable=False),
        sa.Column("ola", sa.JSON, nullable=False),
        _stamp("created_at"), _stamp("updated_at"),
    )
    op.create_table(
        "tickets",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("priority", sa.String(8), nullable=False),
        sa.Column("category", sa.String(100)),
        sa.Column("service", sa.String(100)),
        sa.Column("channel", sa.String(20)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("tier", sa.String(8)),
        sa.Column("policy", sa.String(100)),
        sa.Column("correlation_id", sa.String(64), nullable=False),
        _stamp("created_at"), _stamp("updated_at"),
    )
    op.create_index("ix_tickets_key", "tickets", ["key"])
    op.create_table(
        "clocks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.String(64), sa.ForeignKey("tickets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("tier", sa.String(8)),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("calendar", sa.String(64), nullable=False),
        sa.Column("target_seconds", sa.Integer),
        sa.Column("warnings", sa.JSON, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("outcome", sa.String(10)),
        _stamp("started_at"),
        _stamp("segment_started_at", True),
        sa.Column("segments", sa.JSON, nullable=False),
        sa.Column("elapsed_before", sa.Integer, nullable=False),
        _stamp("paused_at", True),
        sa.Column("paused_seconds", sa.Integer, nullable=False),
        sa.Column("warned", sa.Integer, nullable=False),
        _stamp("breached_at", True),
        _stamp("stopped_at", True),
        _stamp("due_at", True),
        _stamp("next_fire_at", True),
        sa.UniqueConstraint("ticket_id", "name", "seq", name="uq_clocks_ticket_name_seq"),
    )
    op.create_index("ix_clocks_ticket", "clocks", ["ticket_id"])
    # The timer engine's scan: due rows in due order; clocks with nothing left to fire stay out.
    op.create_index("ix_clocks_next_fire", "clocks", ["next_fire_at"],
                    postgresql_where=sa.text("next_fire_at IS NOT NULL"),
                    sqlite_where=sa.text("next_fire_at IS NOT NULL"))
    create_tables(op)


def downgrade():
    for table in ("inbox", "outbox", "clocks", "tickets", "policies", "calendars"):
        op.drop_table(table)
