"""Erasure requests: what ``cdp.forget`` does here, and what it keeps of it.

In one transaction the person's memberships leave every segment, and a request is
recorded holding only keyed hashes of their identifiers (HMAC-SHA256 under a key derived
from the app's ``SECRET_KEY``: a stolen database alone cannot test a guessed email
against them), when it was made, and how far Raptor got. The ``DeleteUser`` calls, the
only place an identifier waits, are queued in the same transaction (see
:mod:`.deletions`). For ``CDP_FORGET_HOLD_DAYS`` a delivery that would add the person
again is applied without them (counted as rejected, reason ``forgotten``, with no
sample: the sample would show the id), and no event names them as ``ruid``: Raptor's
deletion takes up to 14 days, and a person added back meanwhile could be deleted again,
or kept.

On SQLite the erase runs with ``PRAGMA secure_delete`` and ends with a WAL checkpoint, so
nothing deleted stays readable in the database file; on PostgreSQL a deleted row's space
is reclaimed by VACUUM (autovacuum; see the docs' Privacy page).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, func, insert, or_, select

from .. import signals
from ..errors import ValidationError
from ..identifiers import email_problem, validate_user_id
from ..jobs.wake import notify_workers
from ..metrics import ERASURE_REQUESTS
from ..model import AudienceChange, Rejections
from ..store import history
from ..store.changes import recording
from ..store.membership import remove_everywhere
from ..store.secure_delete import secure_deleting
from ..store.tables import CDPTables, utcnow

#: The rejection reason of a held person's id in a delivery.
FORGOTTEN = "forgotten"


class RaptorState(enum.StrEnum):
    """How far Raptor got with an erasure request."""

    #: No ``CDP_GDPR_API_KEY``: only the local part ran.
    NOT_ASKED = "not_asked"
    QUEUED = "queued"
    #: Every ``DeleteUser`` answered 2xx: Raptor's deletion has started.
    ACCEPTED = "accepted"
    GIVEN_UP = "given_up"


@dataclass(frozen=True)
class ErasureReceipt:
    """What ``forget`` did."""

    request_id: int
    memberships_removed: int
    #: ``DeleteUser`` calls queued for Raptor (0 without ``CDP_GDPR_API_KEY``).
    deletions_queued: int


@dataclass(frozen=True)
class ErasureSummary:
    """One erasure request as the back office and the CLI show it: never an identifier."""

    id: int
    made_at: datetime
    #: The first characters of the user id's hash (else the email's): enough to tell two apart.
    hash_prefix: str
    hold_until: datetime
    memberships_removed: int
    raptor_state: RaptorState
    raptor_status: int | None
    raptor_answered_at: datetime | None


def hash_key(secret_key: str | bytes) -> bytes:
    """The key of the identifiers' hashes, derived from the app's ``SECRET_KEY`` (a key of
    its own, so the hashes say nothing about the sessions' signatures)."""
    secret = secret_key.encode("utf-8") if isinstance(secret_key, str) else secret_key
    return hmac.new(secret, b"cdp_bridge erasure requests", hashlib.sha256).digest()


def identifier_hash(key: bytes, identifier: str) -> str:
    """HMAC-SHA256 of an identifier (user id or email), hex."""
    return hmac.new(key, identifier.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def checked_email(email: object) -> str:
    """An email address as the site learnt it, trimmed; :class:`ValidationError` naming
    what is wrong (never the address)."""
    if not isinstance(email, str):
        raise ValidationError(f"email: expected text, not {type(email).__name__}")
    text = email.strip()
    problem = email_problem(text)
    if problem is not None:
        raise ValidationError(f"email: {problem}")
    return text


class ErasureRequests:
    """``cdp_erasure_requests`` (and the queue of ``DeleteUser`` calls) on one engine."""

    def __init__(self, engine: Engine, tables: CDPTables, key: bytes, *, hold_days: int, ask_raptor: bool) -> None:
        self.engine = engine
        self.tables = tables
        self.key = key
        self.hold_days = hold_days
        self.ask_raptor = ask_raptor

    def forget(self, user_id: object = None, email: object = None) -> ErasureReceipt:
        """Forget a person here at once and queue Raptor's deletion (see the module)."""
        if user_id is None and email is None:
            raise ValidationError("forget: give a user id, an email, or both")
        identifiers = []
        if user_id is not None:
            identifiers.append(validate_user_id(user_id))
        if email is not None:
            identifiers.append(checked_email(email))
        now = utcnow()
        hashes = [identifier_hash(self.key, identifier) for identifier in identifiers]
        row = {"made_at": now, "user_hash": hashes[0] if user_id is not None else None,
               "email_hash": hashes[-1] if email is not None else None,
               "hold_until": now + timedelta(days=self.hold_days),
               "raptor_state": RaptorState.QUEUED if self.ask_raptor else RaptorState.NOT_ASKED}
        with recording() as changes, secure_deleting(self.engine) as conn:
            removed = remove_everywhere(conn, self.tables, identifiers)
            request_id = int(conn.execute(insert(self.tables.erasure_requests)
                                          .values(**row, memberships_removed=removed)
                                          .returning(self.tables.erasure_requests.c.id)).scalar_one())
            if self.ask_raptor:
                conn.execute(insert(self.tables.gdpr_deletions), [
                    {"request_id": request_id, "identifier": identifier, "queued_at": now, "available_at": now,
                     "attempts": 0} for identifier in identifiers])
                notify_workers(conn)
            history.add_counts(conn, self.tables, {history.ERASURES_REQUESTED: 1})
        ERASURE_REQUESTS.labels("made").inc()
        if changes is not None:
            changes.send("forget")
        signals.send(signals.person_forgotten, request_id=request_id)
        return ErasureReceipt(request_id, removed, len(identifiers) if self.ask_raptor else 0)

    # -- the hold window ---------------------------------------------------------------

    def held_hashes(self, conn: Connection) -> frozenset[str]:
        """The hashes of every identifier held now (usually none: one indexed read)."""
        e = self.tables.erasure_requests
        rows = conn.execute(select(e.c.user_hash, e.c.email_hash).where(e.c.hold_until > utcnow())).all()
        return frozenset(value for row in rows for value in row if value is not None)

    def is_held(self, *identifiers: str) -> bool:
        """Whether an event may not name any of ``identifiers`` now."""
        e = self.tables.erasure_requests
        digests = [identifier_hash(self.key, identifier) for identifier in identifiers]
        with self.engine.connect() as conn:
            found = conn.scalar(select(e.c.id).where(e.c.hold_until > utcnow(), or_(
                e.c.user_hash.in_(digests), e.c.email_hash.in_(digests))).limit(1))
        return found is not None

    def without_held(self, conn: Connection, changes: Sequence[AudienceChange],
                     rejected: Rejections) -> list[AudienceChange]:
        """The delivery's changes with no held person added (each one counted in
        ``rejected`` as ``forgotten``, without a sample); removals are kept."""
        held = self.held_hashes(conn)
        if not held:
            return list(changes)
        kept = []
        for change in changes:
            add = self._keep(change.add, held, rejected)
            members = self._keep(change.members, held, rejected) if change.members is not None else None
            kept.append(replace(change, add=add, members=members))
        return kept

    def _keep(self, user_ids: Sequence[str], held: frozenset[str], rejected: Rejections) -> tuple[str, ...]:
        kept = []
        for user_id in user_ids:
            if identifier_hash(self.key, user_id) in held:
                rejected.count(FORGOTTEN)
            else:
                kept.append(user_id)
        return tuple(kept)

    # -- the list ----------------------------------------------------------------------

    def summaries(self, limit: int = 100) -> list[ErasureSummary]:
        """The newest requests first."""
        e = self.tables.erasure_requests
        with self.engine.connect() as conn:
            rows = conn.execute(select(e).order_by(e.c.id.desc()).limit(limit)).all()
        return [ErasureSummary(row.id, row.made_at, (row.user_hash or row.email_hash or "")[:12], row.hold_until,
                               row.memberships_removed, RaptorState(row.raptor_state), row.raptor_status,
                               row.raptor_answered_at) for row in rows]

    def given_up(self) -> int:
        """Requests Raptor never accepted (for ``flask cdp check``)."""
        e = self.tables.erasure_requests
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).where(e.c.raptor_state == RaptorState.GIVEN_UP)) or 0)
