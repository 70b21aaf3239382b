"""The 0.1 schema, exactly as it landed (cdp_bridge/store/tables.py at 0.1.0).

Revision ID: 0001_baseline
Revises: (none)

A database made by 0.1's ``flask cdp init-db`` has no version table; ``upgrade-db``
recognises it by its shape and stamps it at this revision before upgrading.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
IDENT = sa.String(255)


def upgrade() -> None:
    op.create_table(
        "cdp_segment_groups",
        sa.Column("id", ID, nullable=False, autoincrement=True),
        sa.Column("identifier", IDENT, nullable=False),
        sa.Column("name", IDENT, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cdp_segment_groups"),
        sa.UniqueConstraint("identifier", name="uq_cdp_segment_groups_identifier"),
    )
    op.create_table(
        "cdp_segments",
        sa.Column("id", ID, nullable=False, autoincrement=True),
        sa.Column("group_id", ID, nullable=False),
        sa.Column("identifier", IDENT, nullable=False),
        sa.Column("name", IDENT, nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=True),
        sa.Column("profile_count", sa.BigInteger(), nullable=True),
        sa.Column("source_updated_at", sa.DateTime(), nullable=True),
        sa.Column("last_sequence", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cdp_segments"),
        sa.ForeignKeyConstraint(["group_id"], ["cdp_segment_groups.id"], name="fk_cdp_segments_group_id_cdp_segment_groups",
                                ondelete="CASCADE"),
        sa.UniqueConstraint("group_id", "identifier", name="uq_cdp_segments_group_id_identifier"),
    )
    op.create_index("ix_cdp_segments_name", "cdp_segments", ["name"])
    op.create_table(
        "cdp_memberships",
        sa.Column("segment_id", ID, nullable=False),
        sa.Column("user_id", IDENT, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("segment_id", "user_id", name="pk_cdp_memberships"),
        sa.ForeignKeyConstraint(["segment_id"], ["cdp_segments.id"], name="fk_cdp_memberships_segment_id_cdp_segments",
                                ondelete="CASCADE"),
    )
    op.create_index("ix_cdp_memberships_user_id_segment_id", "cdp_memberships", ["user_id", "segment_id"])
    op.create_table(
        "cdp_deliveries",
        sa.Column("id", ID, nullable=False, autoincrement=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("client_id", IDENT, nullable=False),
        sa.Column("segment_group_identifier", IDENT, nullable=False),
        sa.Column("request_id", IDENT, nullable=True),
        sa.Column("payload_format", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("available_at", sa.DateTime(), nullable=False),
        sa.Column("claimed_by", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("applied", sa.Integer(), nullable=True),
        sa.Column("stale", sa.Integer(), nullable=True),
        sa.Column("rejected", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_cdp_deliveries"),
        sa.UniqueConstraint("client_id", "request_id", name="uq_cdp_deliveries_client_id_request_id"),
    )
    op.create_index("ix_cdp_deliveries_status_available_at", "cdp_deliveries", ["status", "available_at"])
    op.create_table(
        "cdp_tombstones",
        sa.Column("group_id", ID, nullable=False),
        sa.Column("identifier", IDENT, nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "identifier", name="pk_cdp_tombstones"),
        sa.ForeignKeyConstraint(["group_id"], ["cdp_segment_groups.id"], name="fk_cdp_tombstones_group_id_cdp_segment_groups",
                                ondelete="CASCADE"),
    )


def downgrade() -> None:
    for table in ("cdp_tombstones", "cdp_deliveries", "cdp_memberships", "cdp_segments", "cdp_segment_groups"):
        op.drop_table(table)
