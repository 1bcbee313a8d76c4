"""acting from the e-mail: a place's pause and history, the actor's channel, a shared secret

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "server_secret",
        sa.Column("name", sa.String(), primary_key=True),
        sa.Column("value", sa.String(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    with op.batch_alter_table("place") as batch:
        batch.add_column(sa.Column("paused_until", sa.Date(), nullable=True))
    op.create_table(
        "place_event",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("place_id", sa.String(), sa.ForeignKey("place.id"), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor_role", sa.String(), nullable=False),
        sa.Column("actor_key_id", sa.String(), sa.ForeignKey("api_key.id"), nullable=True),
        sa.Column("actor_via", sa.String(), nullable=True),
        sa.Column("field", sa.String(), nullable=False),
        sa.Column("old_value", sa.String(), nullable=True),
        sa.Column("new_value", sa.String(), nullable=True),
    )
    op.create_index("ix_place_event_place_id", "place_event", ["place_id"])
    # The handoff log is append-only (a trigger on PostgreSQL refuses UPDATE and DELETE of
    # rows): adding a nullable column rewrites no row.
    op.add_column("handoff_event", sa.Column("actor_via", sa.String(), nullable=True))
    with op.batch_alter_table("contact_read") as batch:
        batch.alter_column("api_key_id", existing_type=sa.String(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("contact_read") as batch:
        batch.alter_column("api_key_id", existing_type=sa.String(), nullable=False)
    with op.batch_alter_table("handoff_event") as batch:
        batch.drop_column("actor_via")
    op.drop_index("ix_place_event_place_id", "place_event")
    op.drop_table("place_event")
    with op.batch_alter_table("place") as batch:
        batch.drop_column("paused_until")
    op.drop_table("server_secret")
