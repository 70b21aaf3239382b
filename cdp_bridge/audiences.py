"""The domain core: audience changes from the CDP, and applying them to a segment group.

An :class:`AudienceChange` is what one audience of one delivery asks for, already
validated; :func:`apply_audience_changes` applies a delivery's changes inside the
caller's transaction. Nothing here knows about HTTP or Flask: the webhook, the worker
and replays all come through here, and a new body format only has to produce these
values (see :mod:`cdp_bridge.formats`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select

from .store import CDPTables, SegmentMetadata
from .store import membership


@dataclass(frozen=True)
class AudienceChange:
    """One audience's change: membership edits, metadata, deletion, ordering."""

    audience_id: str
    metadata: SegmentMetadata = field(default_factory=SegmentMetadata)
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    members: tuple[str, ...] | None = None
    deleted: bool = False
    sequence: int | None = None


@dataclass(frozen=True)
class Rejection:
    """An audience, or one user id of it, that was refused, and why."""

    audience: str
    reason: str
    user_id: str | None = None

    def as_dict(self) -> dict[str, str]:
        answer = {"audience": self.audience, "reason": self.reason}
        if self.user_id is not None:
            answer["user_id"] = self.user_id
        return answer


#: How many rejections a delivery keeps one by one; beyond them only counts per reason.
REJECTION_SAMPLE_SIZE = 100


class Rejections:
    """What a delivery refused, kept bounded: the first ``REJECTION_SAMPLE_SIZE``
    rejections, and a count per reason of all of them.

    A body of a million bad ids must cost no more to answer, record and show than a
    body of a million good ones, so the full list is never built.
    """

    __slots__ = ("sample", "by_reason", "total")

    def __init__(self) -> None:
        self.sample: list[Rejection] = []
        self.by_reason: dict[str, int] = {}
        self.total = 0

    def add(self, rejection: Rejection) -> None:
        self.total += 1
        self.by_reason[rejection.reason] = self.by_reason.get(rejection.reason, 0) + 1
        if len(self.sample) < REJECTION_SAMPLE_SIZE:
            self.sample.append(rejection)

    def count(self, reason: str) -> None:
        """Count a rejection that the full sample has no room for, without building it."""
        self.total += 1
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1

    @property
    def sampling(self) -> bool:
        """Whether the next rejection still goes into the sample."""
        return len(self.sample) < REJECTION_SAMPLE_SIZE

    def __len__(self) -> int:
        return self.total

    def sample_dicts(self) -> list[dict[str, str]]:
        return [r.as_dict() for r in self.sample]

    def as_record(self) -> dict[str, Any]:
        """The form kept in the delivery log (``cdp_deliveries.rejected``)."""
        return {"sample": self.sample_dicts(), "by_reason": dict(self.by_reason)}

    @classmethod
    def from_record(cls, value: Any) -> Rejections:
        """The inverse of :meth:`as_record`; also reads 0.1's plain list of rejections."""
        rejections = cls()
        if isinstance(value, dict):
            sample, by_reason = value.get("sample") or [], value.get("by_reason") or {}
        else:
            sample, by_reason = value or [], None
        for item in sample:
            rejections.add(Rejection(item.get("audience", ""), item.get("reason", ""), item.get("user_id")))
        if by_reason is not None:
            rejections.by_reason = {str(reason): int(count) for reason, count in by_reason.items()}
            rejections.total = sum(rejections.by_reason.values())
        return rejections


@dataclass(frozen=True)
class ActivationDocument:
    """A parsed delivery body: what to apply, what was refused, how many ids it held."""

    changes: tuple[AudienceChange, ...]
    rejected: Rejections = field(default_factory=Rejections)
    items: int = 0
    segment_group_identifier: str | None = None
    request_id: str | None = None


@dataclass
class ApplyOutcome:
    """How many audiences were applied and how many were skipped as stale."""

    applied: int = 0
    stale: int = 0


def apply_audience_changes(
    conn: Connection, tables: CDPTables, group_id: int, changes: Sequence[AudienceChange]
) -> ApplyOutcome:
    """Apply a delivery's changes to one group, in the caller's transaction.

    Audiences are visited in identifier order (a stable sort, so one audience's entries
    keep their order) so that concurrent deliveries lock segments in the same order.
    """
    outcome = ApplyOutcome()
    for change in sorted(changes, key=lambda c: c.audience_id):
        if _apply_one(conn, tables, group_id, change):
            outcome.applied += 1
        else:
            outcome.stale += 1
    return outcome


def _apply_one(conn: Connection, tables: CDPTables, group_id: int, change: AudienceChange) -> bool:
    """Apply one change; ``False`` when its sequence shows it is stale."""
    membership.lock_audience(conn, group_id, change.audience_id)
    deleted_at = _tombstone(conn, tables, group_id, change)
    if _is_stale(change.sequence, deleted_at):
        return False
    if change.deleted:
        return _delete(conn, tables, group_id, change)
    row = membership.ensure_segment(conn, tables, group_id, change.audience_id, change.metadata.name, lock=True)
    if _is_stale(change.sequence, row.last_sequence):
        return False
    membership.update_metadata(conn, tables, row.id, change.metadata)
    if change.members is not None:
        membership.replace_members(conn, tables, row.id, change.members)
    membership.add_members(conn, tables, row.id, change.add)
    membership.remove_members(conn, tables, row.id, change.remove)
    if change.sequence is not None:
        membership.record_sequence(conn, tables, row.id, change.sequence)
    if deleted_at is not None:  # recreated by a newer change
        _forget_tombstone(conn, tables, group_id, change.audience_id)
    return True


def _is_stale(sequence: int | None, last_applied: int | None) -> bool:
    return sequence is not None and last_applied is not None and sequence <= last_applied


def _tombstone(conn: Connection, tables: CDPTables, group_id: int, change: AudienceChange) -> int | None:
    """The sequence at which the audience was deleted, for a change that has a sequence."""
    if change.sequence is None:
        return None
    t = tables.tombstones
    return conn.scalar(select(t.c.sequence).where(t.c.group_id == group_id, t.c.identifier == change.audience_id))


def _delete(conn: Connection, tables: CDPTables, group_id: int, change: AudienceChange) -> bool:
    row = membership.find_segment(conn, tables, group_id, change.audience_id, lock=True)
    if row is not None:
        if _is_stale(change.sequence, row.last_sequence):
            return False
        membership.delete_segment(conn, tables, row.id)
    if change.sequence is not None:
        membership.record_tombstone(conn, tables, group_id, change.audience_id, change.sequence)
    return True


def _forget_tombstone(conn: Connection, tables: CDPTables, group_id: int, identifier: str) -> None:
    t = tables.tombstones
    conn.execute(delete(t).where(t.c.group_id == group_id, t.c.identifier == identifier))


# -- storage form of a delivery's changes (the queue holds these, not the raw body) -------


def changes_to_json(changes: Sequence[AudienceChange]) -> str:
    """The validated changes as JSON, for the delivery inbox."""
    return json.dumps([_change_to_dict(change) for change in changes], separators=(",", ":"))


def changes_from_json(text: str) -> tuple[AudienceChange, ...]:
    """The inverse of :func:`changes_to_json`."""
    return tuple(_change_from_dict(item) for item in json.loads(text))


def _change_to_dict(change: AudienceChange) -> dict[str, Any]:
    meta = change.metadata
    return {
        "id": change.audience_id,
        "name": meta.name,
        "description": meta.description,
        "tags": list(meta.tags) if meta.tags is not None else None,
        "profile_count": meta.profile_count,
        "updated_at": meta.source_updated_at.isoformat() if meta.source_updated_at else None,
        "add": list(change.add),
        "remove": list(change.remove),
        "members": list(change.members) if change.members is not None else None,
        "deleted": change.deleted,
        "sequence": change.sequence,
    }


def _change_from_dict(item: dict[str, Any]) -> AudienceChange:
    return AudienceChange(
        audience_id=item["id"],
        metadata=SegmentMetadata(
            name=item["name"],
            description=item["description"],
            tags=tuple(item["tags"]) if item["tags"] is not None else None,
            profile_count=item["profile_count"],
            source_updated_at=datetime.fromisoformat(item["updated_at"]) if item["updated_at"] else None,
        ),
        add=tuple(item["add"]),
        remove=tuple(item["remove"]),
        members=tuple(item["members"]) if item["members"] is not None else None,
        deleted=item["deleted"],
        sequence=item["sequence"],
    )
