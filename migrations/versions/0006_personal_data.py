"""personal data: consent on record, erasure marks, the access log of contact data

Revision ID: 0006
Revises: 0005
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONTACT = ("first_name", "phone", "email", "availability")

# The handoff log stays append-only, with one exception: erasing free text (note, and a reason
# other than a refusal's code) once the record's retention time is over.
HANDOFF_GUARD = """
CREATE OR REPLACE FUNCTION handoff_event_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND NEW.note IS NULL
       AND (NEW.reason IS NULL OR NEW.reason IS NOT DISTINCT FROM OLD.reason)
       AND (NEW.id, NEW.orientation_id, NEW.referral_id, NEW.at, NEW.kind, NEW.route,
            NEW.actor_key_id, NEW.actor_role, NEW.actor_place_id, NEW.from_status,
            NEW.to_status)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.orientation_id, OLD.referral_id, OLD.at, OLD.kind, OLD.route,
            OLD.actor_key_id, OLD.actor_role, OLD.actor_place_id, OLD.from_status,
            OLD.to_status)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'handoff_event is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql
"""
ACCESS_LOG_GUARD = """
CREATE FUNCTION contact_read_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'contact_read is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    with op.batch_alter_table("orientation") as batch:
        batch.add_column(sa.Column("consent_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("consent_text_version", sa.String(), nullable=True))
        batch.add_column(sa.Column("contact_erased_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("purged_at", UTCDateTime(), nullable=True))
    # Consent given before it was recorded: at the orientation, wording not versioned then.
    op.execute("UPDATE orientation SET consent_at = created_at WHERE consent")
    with op.batch_alter_table("idempotency_record") as batch:
        batch.add_column(sa.Column("orientation_id", sa.String(), nullable=True))
        batch.create_index("ix_idempotency_record_orientation_id", ["orientation_id"])
    # Answers stored before this release: tie them to their orientation, and drop the contact
    # data that a referral's answer carried.
    record = sa.table(
        "idempotency_record",
        sa.column("id", sa.Integer()),
        sa.column("response", sa.JSON()),
        sa.column("orientation_id", sa.String()),
    )
    bind = op.get_bind()
    for record_id, response in bind.execute(sa.select(record.c.id, record.c.response)).all():
        if isinstance(response, str):
            response = json.loads(response)
        if not isinstance(response, dict):
            continue
        orientation_id = response.get("orientation_id")
        if orientation_id is None and str(response.get("id", "")).startswith("ori_"):
            orientation_id = response["id"]
        if isinstance(response.get("person"), dict):
            response = {**response, "person": {**response["person"], **dict.fromkeys(CONTACT)}}
        bind.execute(
            record.update()
            .where(record.c.id == record_id)
            .values(response=response, orientation_id=orientation_id)
        )
    op.create_table(
        "contact_read",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("api_key_id", sa.String(), sa.ForeignKey("api_key.id"), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("place_id", sa.String(), nullable=True),
        sa.Column("referral_id", sa.String(), sa.ForeignKey("referral.id"), nullable=False),
        sa.Column("orientation_id", sa.String(), sa.ForeignKey("orientation.id"), nullable=False),
        sa.Column("via", sa.String(), nullable=False),
    )
    op.create_index("ix_contact_read_at", "contact_read", ["at"])
    op.create_index("ix_contact_read_referral_id", "contact_read", ["referral_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(HANDOFF_GUARD)
        op.execute(ACCESS_LOG_GUARD)
        op.execute(
            "CREATE TRIGGER contact_read_append_only BEFORE UPDATE OR DELETE ON contact_read "
            "FOR EACH ROW EXECUTE FUNCTION contact_read_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER contact_read_append_only ON contact_read")
        op.execute("DROP FUNCTION contact_read_append_only()")
    op.drop_table("contact_read")
    with op.batch_alter_table("idempotency_record") as batch:
        batch.drop_index("ix_idempotency_record_orientation_id")
        batch.drop_column("orientation_id")
    with op.batch_alter_table("orientation") as batch:
        for column in ("purged_at", "contact_erased_at", "consent_text_version", "consent_at"):
            batch.drop_column(column)
