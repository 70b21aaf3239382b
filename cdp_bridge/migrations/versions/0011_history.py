"""cdp_history: the back office dashboard's figures over time (member counts, deliveries,
tracking, erasures, reconciles per hour and per day).

Revision ID: 0011_history
Revises: 0010_reconciles

Expand: a new table previous code does not know of; it keeps working (without writing
the history). Each segment's member count now is its first figure, so its chart starts
at the upgrade rather than empty.
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0011_history"
down_revision = "0010_reconciles"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if inspector.has_table("cdp_history"):  # made by a host's db.create_all(): adopted
        return
    op.create_table(
        "cdp_history",
        sa.Column("series", sa.String(40), nullable=False),
        sa.Column("subject", sa.BigInteger(), nullable=False),
        sa.Column("period", sa.String(4), nullable=False),
        sa.Column("bucket", sa.DateTime(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("series", "subject", "period", "bucket", name="pk_cdp_history"),
    )
    op.create_index("ix_cdp_history_bucket", "cdp_history", ["bucket"])
    now = datetime.now(UTC).replace(tzinfo=None)
    for period, bucket in (("hour", now.replace(minute=0, second=0, microsecond=0)),
                           ("day", now.replace(hour=0, minute=0, second=0, microsecond=0))):
        op.get_bind().execute(
            sa.text("INSERT INTO cdp_history (series, subject, period, bucket, value)"
                    " SELECT 'members', id, :period, :bucket, member_count FROM cdp_segments"),
            {"period": period, "bucket": bucket},
        )


def downgrade() -> None:
    op.drop_table("cdp_history")
