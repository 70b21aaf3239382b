"""cdp_buy_outbox: server-sent buys kept until Raptor has them (CDP_TRACKING_BUY_OUTBOX).

Revision ID: 0008_buy_outbox
Revises: 0007_member_counts

Expand: a new table previous code does not know of; it keeps working (and sends its
buys from memory, as before).
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_buy_outbox"
down_revision = "0007_member_counts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("cdp_buy_outbox"):
        return  # made already by a host's db.create_all(): adopted
    op.create_table(
        "cdp_buy_outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False, autoincrement=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("queued_at", sa.DateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("available_at", sa.DateTime(), nullable=False),
        sa.Column("claimed_by", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_cdp_buy_outbox"),
    )
    op.create_index("ix_cdp_buy_outbox_available_at", "cdp_buy_outbox", ["available_at"])


def downgrade() -> None:
    op.drop_table("cdp_buy_outbox")
