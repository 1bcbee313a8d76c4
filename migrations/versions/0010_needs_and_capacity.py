"""needs and capacity: what a place offers in the schema's terms, its capacity, and the needs
an orientation was matched on

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("place") as batch:
        batch.add_column(sa.Column("capacity", sa.Integer(), nullable=True))
        for name in ("specific", "publics", "modalities"):
            batch.add_column(
                sa.Column(name, sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
            )
        batch.add_column(sa.Column("fees", sa.String(), nullable=True))
    with op.batch_alter_table("orientation") as batch:
        batch.add_column(sa.Column("needs", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("matching_version", sa.String(), nullable=True))
        batch.add_column(sa.Column("nearest_suitable", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orientation") as batch:
        batch.drop_column("nearest_suitable")
        batch.drop_column("matching_version")
        batch.drop_column("needs")
    with op.batch_alter_table("place") as batch:
        for name in ("fees", "modalities", "publics", "specific", "capacity"):
            batch.drop_column(name)
