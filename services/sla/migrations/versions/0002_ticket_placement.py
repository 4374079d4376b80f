"""sla: a ticket's group, assignee and reporter, so its clocks are shown only to who may see it.

Revision ID: sla_0002
Revises: sla_0001
"""
import sqlalchemy as sa
from alembic import op

revision = "sla_0002"
down_revision = "sla_0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("group_name", sa.String(200), nullable=True))
        batch.add_column(sa.Column("assignee", sa.String(200), nullable=True))
        batch.add_column(sa.Column("reporter_email", sa.String(254), nullable=True))


def downgrade():
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("reporter_email")
        batch.drop_column("assignee")
        batch.drop_column("group_name")
