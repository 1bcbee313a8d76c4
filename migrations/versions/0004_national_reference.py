"""national commune reference: territories, commune kinds and outlines; places keyed by source

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "region",
        sa.Column("code", sa.String(length=3), primary_key=True),
        sa.Column("name", sa.String(), nullable=False),
    )
    op.create_table(
        "departement",
        sa.Column("code", sa.String(length=3), primary_key=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("region", sa.String(length=3), nullable=False),
    )
    op.create_table(
        "epci",
        sa.Column("siren", sa.String(length=9), primary_key=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("kind", sa.String(length=4), nullable=False, server_default=""),
    )
    with op.batch_alter_table("commune") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=4), nullable=False, server_default="COM")
        )
        batch.add_column(sa.Column("parent", sa.String(length=5), nullable=True))
        batch.add_column(
            sa.Column("point_source", sa.String(length=20), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("shape", sa.LargeBinary(), nullable=True))
        batch.drop_column("epci_name")
        batch.drop_column("centroid_precision")
    # Points that came from the approximated Corrèze file say so until a reference replaces them.
    op.execute("UPDATE commune SET point_source = 'fichier'")

    with op.batch_alter_table("place") as batch:
        batch.add_column(sa.Column("source", sa.String(), nullable=False, server_default=""))
        batch.add_column(sa.Column("pivot", sa.String(), nullable=True))
        batch.add_column(sa.Column("source_date", sa.Date(), nullable=True))
        batch.add_column(sa.Column("merged_ids", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(
            sa.Column(
                "approximate_location", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        batch.drop_index("ix_place_source_id")
        batch.create_index("ix_place_source_id", ["source_id"], unique=False)
        batch.create_unique_constraint("uq_place_source", ["source", "source_id"])


def downgrade() -> None:
    with op.batch_alter_table("place") as batch:
        batch.drop_constraint("uq_place_source", type_="unique")
        batch.drop_index("ix_place_source_id")
        batch.create_index("ix_place_source_id", ["source_id"], unique=True)
        for column in ("approximate_location", "merged_ids", "source_date", "pivot", "source"):
            batch.drop_column(column)
    with op.batch_alter_table("commune") as batch:
        batch.add_column(
            sa.Column("centroid_precision", sa.String(), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("epci_name", sa.String(), nullable=False, server_default=""))
        for column in ("shape", "point_source", "parent", "kind"):
            batch.drop_column(column)
    for table in ("epci", "departement", "region"):
        op.drop_table(table)
