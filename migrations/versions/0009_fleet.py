"""a fleet on one PostgreSQL: the outbox's claim token, wrong tokens counted in the database

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("claim", sa.String(), nullable=True))
    op.create_table(
        "auth_failure",
        sa.Column("address", sa.String(length=64), primary_key=True),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("auth_failure")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("claim")
