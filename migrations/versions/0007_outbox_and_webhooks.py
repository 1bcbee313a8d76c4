"""notifications: the outbox, webhook subscriptions, reminders before expiry

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import UTCDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("api_key_id", sa.String(), sa.ForeignKey("api_key.id"), nullable=False),
        sa.Column("place_id", sa.String(), sa.ForeignKey("place.id"), nullable=True),
        sa.Column("url", sa.String(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("secret", sa.String(), nullable=False),
    )
    op.create_index("ix_webhook_place_id", "webhook", ["place_id"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("event", sa.String(), nullable=False),
        sa.Column("referral_id", sa.String(), sa.ForeignKey("referral.id"), nullable=False),
        sa.Column("recipient", sa.String(), nullable=False),
        sa.Column("webhook_id", sa.String(), sa.ForeignKey("webhook.id"), nullable=True),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_referral_id", "outbox", ["referral_id"])
    with op.batch_alter_table("referral") as batch:
        batch.add_column(sa.Column("reminded_at", UTCDateTime(), nullable=True))
    data_version = sa.table("data_version", sa.column("name"), sa.column("version"))
    op.bulk_insert(data_version, [{"name": "webhook", "version": 0}])


def downgrade() -> None:
    op.execute("DELETE FROM data_version WHERE name = 'webhook'")
    with op.batch_alter_table("referral") as batch:
        batch.drop_column("reminded_at")
    op.drop_table("outbox")
    op.drop_table("webhook")
