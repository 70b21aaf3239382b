"""cdp_tracking_senders: what each process's server-side tracking sender reported last.

Revision ID: 0006_tracking_senders
Revises: 0005_claimed_at

Expand: a new table previous code does not know of; it keeps working.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_tracking_senders"
down_revision = "0005_claimed_at"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("cdp_tracking_senders"):
        return  # made already by a host's db.create_all(): adopted
    op.create_table(
        "cdp_tracking_senders",
        sa.Column("sender", sa.String(255), nullable=False),
        sa.Column("reported_at", sa.DateTime(), nullable=False),
        sa.Column("sent", sa.BigInteger(), nullable=False),
        sa.Column("failed", sa.BigInteger(), nullable=False),
        sa.Column("dropped", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("sender", name="pk_cdp_tracking_senders"),
    )
    op.create_index("ix_cdp_tracking_senders_reported_at", "cdp_tracking_senders", ["reported_at"])


def downgrade() -> None:
    op.drop_table("cdp_tracking_senders")
