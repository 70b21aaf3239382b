"""cdp_reconciles and cdp_schedule_runs: reconciling the store with the CDP API (SPEC section 15).

Revision ID: 0010_reconciles
Revises: 0009_erasure_requests

Expand: two new tables previous code does not know of; it keeps working (without
``flask cdp reconcile``).
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_reconciles"
down_revision = "0009_erasure_requests"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("cdp_reconciles"):  # else made by a host's db.create_all(): adopted
        op.create_table(
            "cdp_reconciles",
            sa.Column("id", _ID, nullable=False, autoincrement=True),
            sa.Column("ran_at", sa.DateTime(), nullable=False),
            sa.Column("group_identifier", sa.String(255), nullable=False),
            sa.Column("segment_identifier", sa.String(255), nullable=False),
            sa.Column("added", sa.Integer(), nullable=False),
            sa.Column("removed", sa.Integer(), nullable=False),
            sa.Column("unchanged", sa.Integer(), nullable=False),
            sa.Column("sequence", sa.BigInteger(), nullable=True),
            sa.Column("error", sa.String(255), nullable=True),
            sa.PrimaryKeyConstraint("id", name="pk_cdp_reconciles"),
        )
        op.create_index("ix_cdp_reconciles_group_segment", "cdp_reconciles", ["group_identifier", "segment_identifier", "id"])
    if not inspector.has_table("cdp_schedule_runs"):
        op.create_table(
            "cdp_schedule_runs",
            sa.Column("name", sa.String(64), nullable=False),
            sa.Column("last_run_at", sa.DateTime(), nullable=False),
            sa.PrimaryKeyConstraint("name", name="pk_cdp_schedule_runs"),
        )


def downgrade() -> None:
    op.drop_table("cdp_schedule_runs")
    op.drop_table("cdp_reconciles")
