"""Exceptions cdp_bridge raises, each with a message a user can act on.

Every one derives from :class:`CDPError`, so a host can catch them all; the CLI turns
them into messages and exit statuses (``cli/group.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

#: What SQLAlchemy raises when the database does not answer (an outage, not a bug): the
#: webhook and the back office answer 503 for these, the workers wait and retry.
DATABASE_UNREACHABLE: tuple[type[Exception], ...] = (OperationalError, InterfaceError, PoolTimeoutError)


class CDPError(Exception):
    """Base class of every error cdp_bridge raises on purpose."""


class ConfigurationError(CDPError, ValueError):
    """A setting is missing or wrong; the message names the key and what it expects."""


class RegistrationError(CDPError, RuntimeError):
    """The host set cdp_bridge up wrongly in its code (registered twice, not at all, …)."""


class ValidationError(CDPError, ValueError):
    """An input (identifier, user id, name) does not have the required form."""


class NotFoundError(CDPError, LookupError):
    """A segment group or segment that was named does not exist."""


class ConflictError(CDPError):
    """The operation would break a uniqueness rule (for example a duplicate identifier)."""


class ProtectedGroupError(CDPError):
    """A segment group named by a configured activation was to be changed by hand."""


class TrackingArgumentError(CDPError, ValueError):
    """A tracking helper was given a bad argument; the message names it."""


class RecommendationArgumentError(CDPError, ValueError):
    """``cdp_recommendations`` / ``cdp.recommendations`` was given a bad argument, or is not
    set up (no such module, no loader for its kind); the message names it."""


class SignatureError(CDPError):
    """The webhook's signature headers are missing, malformed, too old or do not match."""


@dataclass(frozen=True)
class PayloadError(CDPError):
    """A webhook body refused whole: ``error`` is the answer's error code."""

    error: str
    message: str
    details: Any = None


def first_line(exc: BaseException) -> str:
    """The first line of an error (for database errors, of the driver's message),
    without the SQL and parameters SQLAlchemy appends."""
    message = str(getattr(exc, "orig", None) or exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__
