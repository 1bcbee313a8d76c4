"""data versions for in-memory caches; indexes that match the referral lists

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("api_key", "commune", "place")


def upgrade() -> None:
    data_version = op.create_table(
        "data_version",
        sa.Column("name", sa.String(length=40), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False, server_default="0"),
    )
    op.bulk_insert(data_version, [{"name": name, "version": 0} for name in TABLES])
    # GET /v1/referrals: the caller's place, optionally one status, newest first. With these
    # the page is read straight off the index, whatever the size of the table.
    for side in ("place_id", "origin_place_id"):
        op.create_index(f"ix_referral_{side}_created", "referral", [side, "created_at", "id"])
        op.create_index(
            f"ix_referral_{side}_status_created", "referral", [side, "status", "created_at", "id"]
        )
    # Superseded by the composite indexes, which start with the same column.
    op.drop_index("ix_referral_place_id", table_name="referral")
    op.drop_index("ix_referral_origin_place_id", table_name="referral")


def downgrade() -> None:
    op.create_index("ix_referral_origin_place_id", "referral", ["origin_place_id"])
    op.create_index("ix_referral_place_id", "referral", ["place_id"])
    for side in ("place_id", "origin_place_id"):
        op.drop_index(f"ix_referral_{side}_status_created", table_name="referral")
        op.drop_index(f"ix_referral_{side}_created", table_name="referral")
    op.drop_table("data_version")
