"""cdp_segments.member_count: each segment's members, kept with every change.

Revision ID: 0007_member_counts
Revises: 0006_tracking_senders

Expand: a column with a server default, counted once here from the memberships. From
this revision on, every change to a segment's members updates its count in the same
transaction, so the back office never counts a million rows on view. Processes of an
earlier version keep working on it but do not keep the count: after a rolling deploy,
``flask cdp segments --recount`` counts afresh.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_member_counts"
down_revision = "0006_tracking_senders"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "member_count" not in {column["name"] for column in sa.inspect(op.get_bind()).get_columns("cdp_segments")}:
        with op.batch_alter_table("cdp_segments") as batch:
            batch.add_column(sa.Column("member_count", sa.BigInteger(), nullable=False, server_default="0"))
    op.execute("UPDATE cdp_segments SET member_count = (SELECT count(*) FROM cdp_memberships"
               " WHERE cdp_memberships.segment_id = cdp_segments.id)")


def downgrade() -> None:
    with op.batch_alter_table("cdp_segments") as batch:
        batch.drop_column("member_count")
