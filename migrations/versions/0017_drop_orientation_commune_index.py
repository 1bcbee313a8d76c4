"""The orientations' index on the commune alone goes: the index on (commune, day) of migration
0005 begins with the commune and serves every read it served (the statistics of a commune,
the foreign key's check when a commune is removed). One index fewer for each orientation to
write, on its hot path.

Revision ID: 0017
Revises: 0016
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_orientation_commune", table_name="orientation")


def downgrade() -> None:
    op.create_index("ix_orientation_commune", "orientation", ["commune"])
