"""notify: tickets read model, recipients, deliveries, outbox and inbox.

Revision ID: notify_0001
Revises:
"""
from alembic import op
import sqlalchemy as sa

from shared import outbox

revision = "notify_0001"
down_revision = None
branch_labels = None
depends_on = None


def _aware():
    return sa.DateTime(timezone=True)


def upgrade():
    op.create_table(
        "tickets",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(64), nullable=True),
        sa.Column("title", sa.Text, nullable=False, server_default=""),
        sa.Column("priority", sa.String(8), nullable=True),
        sa.Column("status", sa.String(20), nullable=True),
        sa.Column("tier", sa.String(8), nullable=True),
        sa.Column("group_name", sa.Text, nullable=True),
        sa.Column("assignee", sa.Text, nullable=True),
        sa.Column("reporter_name", sa.Text, nullable=True),
        sa.Column("reporter_email", sa.String(254), nullable=True),
        sa.Column("language", sa.String(8), nullable=True),
        sa.Column("contacts", sa.JSON, nullable=True),
        sa.Column("developers", sa.JSON, nullable=True),
        sa.Column("snapshot_at", _aware(), nullable=True),
        sa.Column("contacts_at", _aware(), nullable=True),
    )
    op.create_index("ix_tickets_key", "tickets", ["key"])

    op.create_table(
        "recipients",
        sa.Column("address", sa.String(254), primary_key=True),
        sa.Column("name", sa.Text, nullable=False, server_default=""),
        sa.Column("chat", sa.Text, nullable=True),
        sa.Column("contact_language", sa.String(8), nullable=True),
        sa.Column("contact_timezone", sa.String(64), nullable=True),
        sa.Column("language", sa.String(8), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=True),
        sa.Column("channels", sa.JSON, nullable=True),
        sa.Column("quiet_hours", sa.JSON, nullable=True),
        sa.Column("preferences_set", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", _aware(), nullable=False),
        sa.Column("updated_at", _aware(), nullable=False),
    )

    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("source_event_id", sa.String(64), nullable=False),
        sa.Column("source_event_type", sa.String(80), nullable=False),
        sa.Column("correlation_id", sa.String(128), nullable=False),
        sa.Column("ticket_id", sa.String(64), nullable=True),
        sa.Column("ticket_key", sa.String(64), nullable=True),
        sa.Column("recipient", sa.String(254), nullable=False),
        sa.Column("recipient_name", sa.Text, nullable=False, server_default=""),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("body_text", sa.Text, nullable=False),
        sa.Column("body_html", sa.Text, nullable=False),
        sa.Column("urgent", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", _aware(), nullable=False),
        sa.Column("lease_id", sa.String(36), nullable=True),
        sa.Column("claimed_at", _aware(), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("fallback_of", sa.String(36), nullable=True),
        sa.Column("created_at", _aware(), nullable=False),
        sa.Column("updated_at", _aware(), nullable=False),
        sa.Column("sent_at", _aware(), nullable=True),
        sa.UniqueConstraint("source_event_id", "recipient", "channel", name="uq_deliveries_event_recipient_channel"),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["state", "next_attempt_at"])
    op.create_index("ix_deliveries_created", "deliveries", ["created_at", "id"])
    op.create_index("ix_deliveries_ticket_id", "deliveries", ["ticket_id"])
    op.create_index("ix_deliveries_ticket_key", "deliveries", ["ticket_key"])
    op.create_index("ix_deliveries_recipient", "deliveries", ["recipient"])

    outbox.create_tables(op)


def downgrade():
    op.drop_table("inbox")
    op.drop_table("outbox")
    op.drop_table("deliveries")
    op.drop_table("recipients")
    op.drop_table("tickets")
