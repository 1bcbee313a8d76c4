"""statistics: local day of orientations and referrals, referral milestones, indexes

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import UTCDateTime

from app.models.common import local_day

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc(value: datetime | str) -> datetime:
    if isinstance(value, str):  # SQLite hands timestamps back as text here
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("orientation") as batch:
        batch.add_column(sa.Column("day", sa.Date(), nullable=True))
    with op.batch_alter_table("referral") as batch:
        batch.add_column(sa.Column("day", sa.Date(), nullable=True))
        batch.add_column(sa.Column("accepted_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("first_contact_hours", sa.Float(), nullable=True))
        batch.add_column(sa.Column("refusal_reason", sa.String(), nullable=True))

    # Backfill from what is stored: the day in Europe/Paris of each orientation, and from the
    # handoff log each referral's acceptance, first contact and refusal reason.
    orientation = sa.table(
        "orientation", sa.column("id", sa.String()), sa.column("created_at"), sa.column("day")
    )
    rows = bind.execute(sa.select(orientation.c.id, orientation.c.created_at)).all()
    for oid, created_at in rows:
        bind.execute(
            orientation.update()
            .where(orientation.c.id == oid)
            .values(day=local_day(_utc(created_at)))
        )
    op.execute(
        "UPDATE referral SET day = "
        "(SELECT day FROM orientation WHERE orientation.id = referral.orientation_id)"
    )
    referral = sa.table(
        "referral",
        sa.column("id", sa.String()),
        sa.column("accepted_at", UTCDateTime()),
        sa.column("first_contact_hours", sa.Float()),
        sa.column("refusal_reason", sa.String()),
    )
    events = bind.execute(
        sa.text(
            "SELECT e.referral_id, e.to_status, e.at, e.reason, r.created_at "
            "FROM handoff_event e JOIN referral r ON r.id = e.referral_id "
            "WHERE e.kind = 'transition' AND e.to_status IN ('acceptee', 'contactee', 'refusee') "
            "ORDER BY e.at"
        )
    ).all()
    for referral_id, to_status, at, reason, created_at in events:
        if to_status == "acceptee":
            values: dict[str, object] = {"accepted_at": _utc(at)}
        elif to_status == "contactee":
            hours = (_utc(at) - _utc(created_at)).total_seconds() / 3600
            values = {"first_contact_hours": round(hours, 2)}
        else:
            values = {"refusal_reason": reason}
        bind.execute(referral.update().where(referral.c.id == referral_id).values(**values))

    with op.batch_alter_table("orientation") as batch:
        batch.alter_column("day", existing_type=sa.Date(), nullable=False)
        batch.create_index("ix_orientation_commune_day", ["commune", "day"])
    with op.batch_alter_table("referral") as batch:
        batch.alter_column("day", existing_type=sa.Date(), nullable=False)
        batch.create_index("ix_referral_commune_day", ["commune", "day"])
    with op.batch_alter_table("commune") as batch:
        batch.create_index("ix_commune_region", ["region"])


def downgrade() -> None:
    with op.batch_alter_table("commune") as batch:
        batch.drop_index("ix_commune_region")
    with op.batch_alter_table("orientation") as batch:
        batch.drop_index("ix_orientation_commune_day")
        batch.drop_column("day")
    with op.batch_alter_table("referral") as batch:
        batch.drop_index("ix_referral_commune_day")
        for column in ("refusal_reason", "first_contact_hours", "accepted_at", "day"):
            batch.drop_column(column)
