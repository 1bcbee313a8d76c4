"""the handoff log is append-only: PostgreSQL refuses UPDATE and DELETE on it

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # on SQLite, only the code guarantees it: no code path updates or deletes
    op.execute(
        """
        CREATE FUNCTION handoff_event_append_only() RETURNS trigger AS $$
        BEGIN
            RAISE EXCEPTION 'handoff_event is append-only (% refused)', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END;
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        """
        CREATE TRIGGER handoff_event_append_only
        BEFORE UPDATE OR DELETE ON handoff_event
        FOR EACH ROW EXECUTE FUNCTION handoff_event_append_only()
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER handoff_event_append_only ON handoff_event")
    op.execute("DROP FUNCTION handoff_event_append_only()")
