"""Statistics' two small reads by index: the orientations that state needs (an orientation
without needs now stores SQL's NULL, not JSON's null, which every row carried) and the
referrals' hours to first contact in order, for the median. Both partial: the rows without
add nothing to write.

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEEDS = sa.text("needs IS NOT NULL")
CONTACTED = sa.text("first_contact_hours IS NOT NULL")


def upgrade() -> None:
    json_null = (
        "needs::text = 'null'"
        if op.get_context().dialect.name == "postgresql"
        else ("needs = 'null'")
    )
    op.execute(f"UPDATE orientation SET needs = NULL WHERE {json_null}")
    op.create_index(
        "ix_orientation_needs_day",
        "orientation",
        ["day"],
        sqlite_where=NEEDS,
        postgresql_where=NEEDS,
    )
    op.create_index(
        "ix_referral_first_contact_day",
        "referral",
        ["first_contact_hours", "day"],
        sqlite_where=CONTACTED,
        postgresql_where=CONTACTED,
    )


def downgrade() -> None:
    op.drop_index("ix_referral_first_contact_day", "referral")
    op.drop_index("ix_orientation_needs_day", "orientation")
