"""Phases up to 32 characters (AWAITING_APPROVAL is 17).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.alter_column(
            "phase", existing_type=sa.String(16), type_=sa.String(32), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.alter_column(
            "phase", existing_type=sa.String(32), type_=sa.String(16), existing_nullable=False
        )
