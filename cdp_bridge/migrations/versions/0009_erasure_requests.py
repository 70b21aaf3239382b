"""cdp_erasure_requests and cdp_gdpr_deletions: forgetting a person (SPEC section 14).

Revision ID: 0009_erasure_requests
Revises: 0008_buy_outbox

Expand: two new tables previous code does not know of; it keeps working (without
``cdp.forget``).
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_erasure_requests"
down_revision = "0008_buy_outbox"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("cdp_erasure_requests"):  # else made by a host's db.create_all(): adopted
        op.create_table(
            "cdp_erasure_requests",
            sa.Column("id", _ID, nullable=False, autoincrement=True),
            sa.Column("made_at", sa.DateTime(), nullable=False),
            sa.Column("user_hash", sa.String(64), nullable=True),
            sa.Column("email_hash", sa.String(64), nullable=True),
            sa.Column("hold_until", sa.DateTime(), nullable=False),
            sa.Column("memberships_removed", sa.Integer(), nullable=False),
            sa.Column("raptor_state", sa.String(20), nullable=False),
            sa.Column("raptor_status", sa.Integer(), nullable=True),
            sa.Column("raptor_answered_at", sa.DateTime(), nullable=True),
            sa.PrimaryKeyConstraint("id", name="pk_cdp_erasure_requests"),
        )
        op.create_index("ix_cdp_erasure_requests_hold_until", "cdp_erasure_requests", ["hold_until"])
    if not inspector.has_table("cdp_gdpr_deletions"):
        op.create_table(
            "cdp_gdpr_deletions",
            sa.Column("id", _ID, nullable=False, autoincrement=True),
            sa.Column("request_id", _ID, nullable=False),
            sa.Column("identifier", sa.Text(), nullable=False),
            sa.Column("queued_at", sa.DateTime(), nullable=False),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("available_at", sa.DateTime(), nullable=False),
            sa.Column("claimed_by", sa.String(255), nullable=True),
            sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
            sa.Column("last_error", sa.String(255), nullable=True),
            sa.PrimaryKeyConstraint("id", name="pk_cdp_gdpr_deletions"),
            sa.ForeignKeyConstraint(["request_id"], ["cdp_erasure_requests.id"],
                                    name="fk_cdp_gdpr_deletions_request_id_cdp_erasure_requests", ondelete="CASCADE"),
        )
        op.create_index("ix_cdp_gdpr_deletions_available_at", "cdp_gdpr_deletions", ["available_at"])


def downgrade() -> None:
    op.drop_table("cdp_gdpr_deletions")
    op.drop_table("cdp_erasure_requests")
