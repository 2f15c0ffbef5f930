"""Bearer tokens by role; event ids unique per execution, not across all of them.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tokens",
        # sha256 of the token: the store never holds a token itself
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("label", sa.String(200), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    # the table is rebuilt to move the unique key (SQLite cannot alter an unnamed one)
    op.create_table(
        "events_v2",
        sa.Column("execution_id", sa.String(64), sa.ForeignKey("executions.id"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("execution_id", "event_id", name="uq_events_execution_event"),
    )
    op.execute(
        "INSERT INTO events_v2 (execution_id, seq, event_id, type, payload, created_at) "
        "SELECT execution_id, seq, event_id, type, payload, created_at FROM events"
    )
    op.drop_table("events")
    op.rename_table("events_v2", "events")


def downgrade() -> None:
    op.drop_table("tokens")
