"""cdp_deliveries.rejected_count: the total of rejections beside their bounded sample.

Revision ID: 0002_rejected_count
Revises: 0001_baseline

Expand: a column with a server default, so 0.1 code, which does not write it, keeps
working on this schema during a rolling deploy. Deliveries 0.1 recorded keep their plain
list of rejections; the count is set to its length, so the delivery log shows it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_rejected_count"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cdp_deliveries") as batch:
        batch.add_column(sa.Column("rejected_count", sa.Integer(), nullable=False, server_default="0"))
    kind = "json_typeof" if op.get_bind().dialect.name == "postgresql" else "json_type"
    op.execute(f"UPDATE cdp_deliveries SET rejected_count = json_array_length(rejected) WHERE {kind}(rejected) = 'array'")


def downgrade() -> None:
    with op.batch_alter_table("cdp_deliveries") as batch:
        batch.drop_column("rejected_count")
