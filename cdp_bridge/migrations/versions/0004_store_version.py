"""cdp_store_version: one row that every change of segments or memberships raises.

Revision ID: 0004_store_version
Revises: 0003_drop_memberships_fk

Expand: previous code does not raise the number, so while it still runs beside the new
code, pages would keep segment names a little longer than they should. Finish a rolling
deploy before renaming segments by hand.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_store_version"
down_revision = "0003_drop_memberships_fk"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A host's db.create_all() may have made the table already: it is adopted.
    if not sa.inspect(op.get_bind()).has_table("cdp_store_version"):
        op.create_table(
            "cdp_store_version",
            sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
            sa.Column("version", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("id", name="pk_cdp_store_version"),
        )
    op.execute("INSERT INTO cdp_store_version (id, version) SELECT 1, 0 WHERE NOT EXISTS (SELECT 1 FROM cdp_store_version)")


def downgrade() -> None:
    op.drop_table("cdp_store_version")
