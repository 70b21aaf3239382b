"""cdp_deliveries.claimed_at: when a worker last claimed a delivery, for ``flask cdp check``.

Revision ID: 0005_claimed_at
Revises: 0004_store_version

Expand: a nullable column previous code does not write; it keeps working.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_claimed_at"
down_revision = "0004_store_version"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cdp_deliveries") as batch:
        batch.add_column(sa.Column("claimed_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cdp_deliveries") as batch:
        batch.drop_column("claimed_at")
