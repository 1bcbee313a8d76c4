"""people and sign-in: accounts, memberships, sign-in links, server-side sessions, requests to
join a place; the person named in the handoff and access logs; e-mails without a referral

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import UTCDateTime

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "user_account",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("email", sa.String(), nullable=True),
        sa.Column("first_name", sa.String(), nullable=True),
        sa.Column("last_name", sa.String(), nullable=True),
        sa.Column("oidc_sub", sa.String(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_login_at", UTCDateTime(), nullable=True),
        sa.Column("deactivated_at", UTCDateTime(), nullable=True),
        sa.Column("erased_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_user_account_email", "user_account", ["email"], unique=True)
    op.create_index("ix_user_account_oidc_sub", "user_account", ["oidc_sub"], unique=True)
    op.create_table(
        "membership",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("user_id", sa.String(), sa.ForeignKey("user_account.id"), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("place_id", sa.String(), sa.ForeignKey("place.id"), nullable=True),
        sa.Column("territory", sa.String(), nullable=True),
        sa.Column("responsable", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column(
            "invited_by_user_id", sa.String(), sa.ForeignKey("user_account.id"), nullable=True
        ),
        sa.Column("invited_by_key_id", sa.String(), sa.ForeignKey("api_key.id"), nullable=True),
        sa.Column("accepted_at", UTCDateTime(), nullable=True),
        sa.Column("removed_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_membership_user_id", "membership", ["user_id"])
    op.create_index("ix_membership_place", "membership", ["place_id", "removed_at"])
    op.create_table(
        "login_link",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("user_id", sa.String(), sa.ForeignKey("user_account.id"), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.Column("next_path", sa.String(), nullable=True),
    )
    op.create_index("ix_login_link_user_id", "login_link", ["user_id"])
    op.create_table(
        "web_session",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("user_id", sa.String(), sa.ForeignKey("user_account.id"), nullable=False),
        sa.Column("membership_id", sa.String(), sa.ForeignKey("membership.id"), nullable=True),
        sa.Column("via", sa.String(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_web_session_user_id", "web_session", ["user_id"])
    op.create_table(
        "join_request",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("user_id", sa.String(), sa.ForeignKey("user_account.id"), nullable=False),
        sa.Column("place_id", sa.String(), sa.ForeignKey("place.id"), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("accepted", sa.Boolean(), nullable=True),
        sa.Column(
            "decided_by_user_id", sa.String(), sa.ForeignKey("user_account.id"), nullable=True
        ),
    )
    op.create_index("ix_join_request_user_id", "join_request", ["user_id"])
    op.create_index("ix_join_request_place_id", "join_request", ["place_id"])
    # Append-only logs (PostgreSQL triggers refuse UPDATE and DELETE of rows): adding nullable
    # columns rewrites no row.
    for table, user, membership in (
        ("handoff_event", "actor_user_id", "actor_membership_id"),
        ("contact_read", "user_id", "membership_id"),
    ):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column(user, sa.String(), nullable=True))
            batch.add_column(sa.Column(membership, sa.String(), nullable=True))
            batch.create_foreign_key(f"fk_{table}_{user}", "user_account", [user], ["id"])
            batch.create_foreign_key(f"fk_{table}_{membership}", "membership", [membership], ["id"])
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("referral_id", existing_type=sa.String(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("referral_id", existing_type=sa.String(), nullable=False)
    for table, columns in (
        ("contact_read", ("user_id", "membership_id")),
        ("handoff_event", ("actor_user_id", "actor_membership_id")),
    ):
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.drop_column(column)
    for table in ("join_request", "web_session", "login_link", "membership", "user_account"):
        op.drop_table(table)
