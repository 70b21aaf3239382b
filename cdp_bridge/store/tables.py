"""The ``cdp_*`` tables, defined with SQLAlchemy Core on whichever MetaData hosts them.

Core tables rather than ORM models: they can live on the host's Flask-SQLAlchemy
``db.metadata`` (so Flask-Migrate's autogenerate sees them) or on cdp_bridge's own, and
the bulk membership operations are set-based statements, not per-row ORM objects.
Every constraint and index has an explicit name, so migrations are deterministic
whatever naming convention the host uses.
"""

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

from ..constants import MAX_IDENTIFIER_LENGTH

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
_ID = BigInteger().with_variant(Integer(), "sqlite")
_IDENT = String(MAX_IDENTIFIER_LENGTH)


def utcnow() -> datetime:
    """Now in UTC, naive: both SQLite and PostgreSQL columns store naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class CDPTables:
    """The tables of cdp_bridge's store."""

    segment_groups: Table
    segments: Table
    memberships: Table
    deliveries: Table
    tombstones: Table
    store_version: Table
    tracking_senders: Table
    buy_outbox: Table
    erasure_requests: Table
    gdpr_deletions: Table
    reconciles: Table
    schedule_runs: Table
    history: Table

    def all(self) -> list[Table]:
        """In creation order (parents first)."""
        return [self.segment_groups, self.segments, self.memberships, self.deliveries, self.tombstones,
                self.store_version, self.tracking_senders, self.buy_outbox, self.erasure_requests, self.gdpr_deletions,
                self.reconciles, self.schedule_runs, self.history]


def define_tables(metadata: MetaData) -> CDPTables:
    """The cdp tables on ``metadata``, defined on first call and reused after."""
    if "cdp_segment_groups" in metadata.tables:
        names = ("cdp_segment_groups", "cdp_segments", "cdp_memberships", "cdp_deliveries", "cdp_tombstones",
                 "cdp_store_version", "cdp_tracking_senders", "cdp_buy_outbox", "cdp_erasure_requests",
                 "cdp_gdpr_deletions", "cdp_reconciles", "cdp_schedule_runs", "cdp_history")
        return CDPTables(*(metadata.tables[name] for name in names))
    return CDPTables(
        segment_groups=_segment_groups(metadata),
        segments=_segments(metadata),
        memberships=_memberships(metadata),
        deliveries=_deliveries(metadata),
        tombstones=_tombstones(metadata),
        store_version=_store_version(metadata),
        tracking_senders=_tracking_senders(metadata),
        buy_outbox=_buy_outbox(metadata),
        erasure_requests=_erasure_requests(metadata),
        gdpr_deletions=_gdpr_deletions(metadata),
        reconciles=_reconciles(metadata),
        schedule_runs=_schedule_runs(metadata),
        history=_history(metadata),
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
        #: Kept with every change to the segment's members (in the same transaction).
        Column("member_count", BigInteger(), nullable=False, default=0, server_default="0"),
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
        # No foreign key to cdp_segments: checking it row by row was 40% of applying a
        # 100,000-member delivery on PostgreSQL. The store deletes a segment's
        # memberships in the same transaction as the segment (membership.delete_segment,
        # SegmentStore.delete_group), and the tests check that no row is left orphaned.
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
        # When a worker last claimed it (kept after it finishes): `flask cdp check` reads
        # the newest to tell whether any worker is at work.
        Column("claimed_at", DateTime(), nullable=True),
        Column("applied", Integer(), nullable=True),
        Column("stale", Integer(), nullable=True),
        # A bounded sample of rejections and a count per reason; the total beside it, so
        # the log's list reads a number, never the sample.
        Column("rejected", JSON(), nullable=True),
        Column("rejected_count", Integer(), nullable=False, default=0, server_default="0"),
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


def _store_version(metadata: MetaData) -> Table:
    """One row whose number every change of segments or memberships raises, in the same
    transaction: a web process keeps the segments' names between requests while the
    number it read them at is still the current one (see :mod:`.user_segments`)."""
    return Table(
        "cdp_store_version",
        metadata,
        Column("id", Integer(), nullable=False, autoincrement=False),
        Column("version", BigInteger(), nullable=False, default=0),
        PrimaryKeyConstraint("id", name="pk_cdp_store_version"),
    )


def _tracking_senders(metadata: MetaData) -> Table:
    """What each process's server-side tracking sender reported last (every minute):
    ``flask cdp check`` sums the recent ones, as it runs in a process of its own."""
    return Table(
        "cdp_tracking_senders",
        metadata,
        Column("sender", String(255), nullable=False),
        Column("reported_at", DateTime(), nullable=False),
        Column("sent", BigInteger(), nullable=False),
        Column("failed", BigInteger(), nullable=False),
        Column("dropped", BigInteger(), nullable=False),
        PrimaryKeyConstraint("sender", name="pk_cdp_tracking_senders"),
        Index("ix_cdp_tracking_senders_reported_at", "reported_at"),
    )


def _leased_queue_columns() -> list[Column[object]]:
    """What a table of the store's leased queue holds beside its own columns (see
    :mod:`.leased_queue`): when it was queued, its tries, when it is due, who holds it and
    until when, and the last error."""
    return [
        Column("queued_at", DateTime(), nullable=False, default=utcnow),
        Column("attempts", Integer(), nullable=False, default=0),
        Column("available_at", DateTime(), nullable=False, default=utcnow),
        Column("claimed_by", String(255), nullable=True),
        Column("lease_expires_at", DateTime(), nullable=True),
        Column("last_error", String(255), nullable=True),
    ]


def _buy_outbox(metadata: MetaData) -> Table:
    """Server-sent buys not yet accepted by Raptor (``CDP_TRACKING_BUY_OUTBOX``): written
    by the page, claimed and sent by the queue workers (see :mod:`..tracking.outbox`)."""
    return Table(
        "cdp_buy_outbox",
        metadata,
        Column("id", _ID, nullable=False, autoincrement=True),
        # The event's URL after the tracking host's: {account}.{endpoint}?{query}.
        Column("path", Text(), nullable=False),
        *_leased_queue_columns(),
        PrimaryKeyConstraint("id", name="pk_cdp_buy_outbox"),
        Index("ix_cdp_buy_outbox_available_at", "available_at"),
    )


#: A keyed hash (HMAC-SHA256, hex) of an identifier: what an erasure request keeps of it.
_HASH = String(64)


def _erasure_requests(metadata: MetaData) -> Table:
    """What ``cdp.forget`` did, holding no identifier: keyed hashes of the user id and the
    email (for the hold window), when, and how far Raptor got (see :mod:`..privacy`)."""
    return Table(
        "cdp_erasure_requests",
        metadata,
        Column("id", _ID, nullable=False, autoincrement=True),
        Column("made_at", DateTime(), nullable=False, default=utcnow),
        Column("user_hash", _HASH, nullable=True),
        Column("email_hash", _HASH, nullable=True),
        Column("hold_until", DateTime(), nullable=False),
        Column("memberships_removed", Integer(), nullable=False, default=0),
        # not_asked (no CDP_GDPR_API_KEY), queued, accepted (every DeleteUser answered 2xx), given_up
        Column("raptor_state", String(20), nullable=False),
        Column("raptor_status", Integer(), nullable=True),
        Column("raptor_answered_at", DateTime(), nullable=True),
        PrimaryKeyConstraint("id", name="pk_cdp_erasure_requests"),
        Index("ix_cdp_erasure_requests_hold_until", "hold_until"),
    )


def _gdpr_deletions(metadata: MetaData) -> Table:
    """``DeleteUser`` calls to Raptor's GDPR API waiting for a 2xx: the only place an
    identifier waits, deleted once Raptor answered or the call was given up."""
    return Table(
        "cdp_gdpr_deletions",
        metadata,
        Column("id", _ID, nullable=False, autoincrement=True),
        Column("request_id", _ID, nullable=False),
        Column("identifier", Text(), nullable=False),
        *_leased_queue_columns(),
        PrimaryKeyConstraint("id", name="pk_cdp_gdpr_deletions"),
        ForeignKeyConstraint(["request_id"], ["cdp_erasure_requests.id"],
                             name="fk_cdp_gdpr_deletions_request_id_cdp_erasure_requests", ondelete="CASCADE"),
        Index("ix_cdp_gdpr_deletions_available_at", "available_at"),
    )


def _reconciles(metadata: MetaData) -> Table:
    """What each reconcile did to each segment (``flask cdp reconcile``, SPEC section 15):
    the back office shows a segment's last one. Names, not row ids: a segment deleted
    since keeps its history."""
    return Table(
        "cdp_reconciles",
        metadata,
        Column("id", _ID, nullable=False, autoincrement=True),
        Column("ran_at", DateTime(), nullable=False, default=utcnow),
        Column("group_identifier", String(255), nullable=False),
        Column("segment_identifier", String(255), nullable=False),
        Column("added", Integer(), nullable=False, default=0),
        Column("removed", Integer(), nullable=False, default=0),
        Column("unchanged", Integer(), nullable=False, default=0),
        Column("sequence", BigInteger(), nullable=True),
        Column("error", String(255), nullable=True),
        PrimaryKeyConstraint("id", name="pk_cdp_reconciles"),
        Index("ix_cdp_reconciles_group_segment", "group_identifier", "segment_identifier", "id"),
    )


def _schedule_runs(metadata: MetaData) -> Table:
    """When each scheduled job last ran: the workers of a fleet take a due run by
    moving it forward (compare and set), so one of them runs it."""
    return Table(
        "cdp_schedule_runs",
        metadata,
        Column("name", String(64), nullable=False),
        Column("last_run_at", DateTime(), nullable=False),
        PrimaryKeyConstraint("name", name="pk_cdp_schedule_runs"),
    )


def _history(metadata: MetaData) -> Table:
    """The back office's figures over time (:mod:`.history`): a value per series, subject
    (a segment's row id for member counts, else 0), period (``hour`` or ``day``) and the
    start of that hour or day, in UTC. Written with each change, never recomputed."""
    return Table(
        "cdp_history",
        metadata,
        Column("series", String(40), nullable=False),
        Column("subject", BigInteger(), nullable=False),
        Column("period", String(4), nullable=False),
        Column("bucket", DateTime(), nullable=False),
        Column("value", BigInteger(), nullable=False),
        PrimaryKeyConstraint("series", "subject", "period", "bucket", name="pk_cdp_history"),
        Index("ix_cdp_history_bucket", "bucket"),
    )
