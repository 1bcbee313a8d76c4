"""Referral tally: how many referrals each place has received and sent, by status and urgency,
kept by triggers in the transaction of every insert, change and delete of a referral (so
exact with several instances, and for every writer: the service, the command line, a bulk
COPY). The inbox's counts read it instead of counting the place's whole history.

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SIDES = {"received": "place_id", "sent": "origin_place_id"}


def _sqlite_triggers() -> list[str]:
    def change(row: str, sign: str) -> str:
        statements = []
        for side, column in SIDES.items():
            key = f"'{side}', {row}.{column}, {row}.status, {row}.urgent"
            statements.append(
                f"INSERT INTO referral_tally (side, place_id, status, urgent, count) "
                f"VALUES ({key}, {sign}1) ON CONFLICT (side, place_id, status, urgent) "
                f"DO UPDATE SET count = count {sign} 1;"
            )
        return "\n".join(statements)

    watched = "status, urgent, place_id, origin_place_id"
    return [
        f"CREATE TRIGGER referral_tally_insert AFTER INSERT ON referral BEGIN\n"
        f"{change('NEW', '+')}\nEND",
        f"CREATE TRIGGER referral_tally_update AFTER UPDATE OF {watched} ON referral "
        f"WHEN OLD.status IS NOT NEW.status OR OLD.urgent IS NOT NEW.urgent "
        f"OR OLD.place_id IS NOT NEW.place_id OR OLD.origin_place_id IS NOT NEW.origin_place_id "
        f"BEGIN\n{change('OLD', '-')}\n{change('NEW', '+')}\nEND",
        f"CREATE TRIGGER referral_tally_delete AFTER DELETE ON referral BEGIN\n"
        f"{change('OLD', '-')}\nEND",
    ]


# One statement per row, always the received side first: two transactions touching the same
# place's rows lock them in the same order (no deadlock between an orientation and a transition).
_PG_FUNCTION = """
CREATE FUNCTION referral_tally_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE referral_tally SET count = count - 1
         WHERE side = 'received' AND place_id = OLD.place_id AND status = OLD.status
           AND urgent = OLD.urgent;
        UPDATE referral_tally SET count = count - 1
         WHERE side = 'sent' AND place_id = OLD.origin_place_id AND status = OLD.status
           AND urgent = OLD.urgent;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        INSERT INTO referral_tally (side, place_id, status, urgent, count)
        VALUES ('received', NEW.place_id, NEW.status, NEW.urgent, 1)
        ON CONFLICT (side, place_id, status, urgent)
        DO UPDATE SET count = referral_tally.count + 1;
        INSERT INTO referral_tally (side, place_id, status, urgent, count)
        VALUES ('sent', NEW.origin_place_id, NEW.status, NEW.urgent, 1)
        ON CONFLICT (side, place_id, status, urgent)
        DO UPDATE SET count = referral_tally.count + 1;
    END IF;
    RETURN NULL;
END $$
"""
_PG_TRIGGERS = [
    "CREATE TRIGGER referral_tally_insert AFTER INSERT OR DELETE ON referral "
    "FOR EACH ROW EXECUTE FUNCTION referral_tally_change()",
    "CREATE TRIGGER referral_tally_update AFTER UPDATE OF status, urgent, place_id, "
    "origin_place_id ON referral FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status "
    "OR OLD.urgent IS DISTINCT FROM NEW.urgent OR OLD.place_id IS DISTINCT FROM NEW.place_id "
    "OR OLD.origin_place_id IS DISTINCT FROM NEW.origin_place_id) "
    "EXECUTE FUNCTION referral_tally_change()",
]


def upgrade() -> None:
    op.create_table(
        "referral_tally",
        sa.Column("side", sa.String(), nullable=False),
        sa.Column("place_id", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("side", "place_id", "status", "urgent"),
    )
    for side, column in SIDES.items():
        op.execute(
            f"INSERT INTO referral_tally (side, place_id, status, urgent, count) "
            f"SELECT '{side}', {column}, status, urgent, count(*) FROM referral "
            f"GROUP BY {column}, status, urgent"
        )
    if op.get_context().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        for statement in _PG_TRIGGERS:
            op.execute(statement)
    else:
        for statement in _sqlite_triggers():
            op.execute(statement)


def downgrade() -> None:
    for name in ("referral_tally_insert", "referral_tally_update", "referral_tally_delete"):
        if op.get_context().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON referral")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS referral_tally_change()")
    op.drop_table("referral_tally")
