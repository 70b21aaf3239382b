"""The cdp_* tables exactly as cdp_bridge 0.1.0 made them (cdp_bridge/store/tables.py at
commit 28caa1c, the 0.1 landing): the upgrade tests start from a database made with them."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

MAX_IDENTIFIER_LENGTH = 255

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
_ID = BigInteger().with_variant(Integer(), "sqlite")
_IDENT = String(MAX_IDENTIFIER_LENGTH)


def utcnow() -> datetime:
    """Now in UTC, naive: both SQLite and PostgreSQL columns store naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class CDPTables:
    """The four tables of cdp_bridge's store."""

    segment_groups: Table
    segments: Table
    memberships: Table
    deliveries: Table
    tombstones: Table

    def all(self) -> list[Table]:
        """In creation order (parents first)."""
        return [self.segment_groups, self.segments, self.memberships, self.deliveries, self.tombstones]


def define_tables(metadata: MetaData) -> CDPTables:
    """The cdp tables on ``metadata``, defined on first call and reused after."""
    if "cdp_segment_groups" in metadata.tables:
        names = ("cdp_segment_groups", "cdp_segments", "cdp_memberships", "cdp_deliveries", "cdp_tombstones")
        return CDPTables(*(metadata.tables[name] for name in names))
    return CDPTables(
        segment_groups=_segment_groups(metadata),
        segments=_segments(metadata),
        memberships=_memberships(metadata),
        deliveries=_deliveries(metadata),
        tombstones=_tombstones(metadata),
    )


def _segment_groups(metadata: MetaData) -> Table:
    return Table(
        "cdp_segment_groups",
        metadata,
        Column("id", _ID, nullable=False, autoincrement=True),
        Column("identifier", _IDENT, nullable=False),
        Column("name", _IDENT, nullable=False),
        Column("created_at", DateTime(), nullable=False, default=utcnow),
        Column("updated_at", DateTime(), nullable=False, default=utcnow, onupdate=utcnow),
        PrimaryKeyConstraint("id", name="pk_cdp_segment_groups"),
        UniqueConstraint("identifier", name="uq_cdp_segment_groups_identifier"),
    )


def _segments(metadata: MetaData) -> Table:
    return Table(
        "cdp_segments",
        metadata,
        Column("id", _ID, nullable=False, autoincrement=True),
        Column("group_id", _ID, nullable=False),
        Column("identifier", _IDENT, nullable=False),
        Column("name", _IDENT, nullable=False),
        Column("description", Text(), nullable=True),
        Column("tags", JSON(), nullable=True),
        Column("profile_count", BigInteger(), nullable=True),
        Column("source_updated_at", DateTime(), nullable=True),
        Column("last_sequence", BigInteger(), nullable=True),
        Column("created_at", DateTime(), nullable=False, default=utcnow),
        Column("updated_at", DateTime(), nullable=False, default=utcnow, onupdate=utcnow),
        PrimaryKeyConstraint("id", name="pk_cdp_segments"),
        ForeignKeyConstraint(
            ["group_id"],
            ["cdp_segment_groups.id"],
            name="fk_cdp_segments_group_id_cdp_segment_groups",
            ondelete="CASCADE",
        ),
        UniqueConstraint("group_id", "identifier", name="uq_cdp_segments_group_id_identifier"),
        Index("ix_cdp_segments_name", "name"),
    )


def _memberships(metadata: MetaData) -> Table:
    return Table(
        "cdp_memberships",
        metadata,
        Column("segment_id", _ID, nullable=False),
        Column("user_id", _IDENT, nullable=False),
        Column("created_at", DateTime(), nullable=False, default=utcnow),
        PrimaryKeyConstraint("segment_id", "user_id", name="pk_cdp_memberships"),
        ForeignKeyConstraint(
            ["segment_id"],
            ["cdp_segments.id"],
            name="fk_cdp_memberships_segment_id_cdp_segments",
            ondelete="CASCADE",
        ),
        # A user's segments: one range scan of this index.
        Index("ix_cdp_memberships_user_id_segment_id", "user_id", "segment_id"),
    )


def _deliveries(metadata: MetaData) -> Table:
    return Table(
        "cdp_deliveries",
        metadata,
        Column("id", _ID, nullable=False, autoincrement=True),
        Column("received_at", DateTime(), nullable=False, default=utcnow),
        Column("client_id", _IDENT, nullable=False),
        Column("segment_group_identifier", _IDENT, nullable=False),
        Column("request_id", _IDENT, nullable=True),
        Column("payload_format", String(64), nullable=False),
        Column("payload", Text(), nullable=False),
        Column("items", Integer(), nullable=False),
        Column("status", String(16), nullable=False),
        Column("attempts", Integer(), nullable=False, default=0),
        Column("available_at", DateTime(), nullable=False, default=utcnow),
        Column("claimed_by", String(255), nullable=True),
        Column("lease_expires_at", DateTime(), nullable=True),
        Column("applied", Integer(), nullable=True),
        Column("stale", Integer(), nullable=True),
        Column("rejected", JSON(), nullable=True),
        Column("error", Text(), nullable=True),
        Column("finished_at", DateTime(), nullable=True),
        Column("duration_ms", Integer(), nullable=True),
        PrimaryKeyConstraint("id", name="pk_cdp_deliveries"),
        UniqueConstraint("client_id", "request_id", name="uq_cdp_deliveries_client_id_request_id"),
        Index("ix_cdp_deliveries_status_available_at", "status", "available_at"),
    )


def _tombstones(metadata: MetaData) -> Table:
    """The last sequence of deleted audiences, so a late change cannot bring one back."""
    return Table(
        "cdp_tombstones",
        metadata,
        Column("group_id", _ID, nullable=False),
        Column("identifier", _IDENT, nullable=False),
        Column("sequence", BigInteger(), nullable=False),
        Column("deleted_at", DateTime(), nullable=False, default=utcnow),
        PrimaryKeyConstraint("group_id", "identifier", name="pk_cdp_tombstones"),
        ForeignKeyConstraint(
            ["group_id"],
            ["cdp_segment_groups.id"],
            name="fk_cdp_tombstones_group_id_cdp_segment_groups",
            ondelete="CASCADE",
        ),
    )
