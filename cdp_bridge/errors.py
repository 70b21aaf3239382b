"""Exceptions cdp_bridge raises, each with a message a user can act on."""

from __future__ import annotations

import click


class CDPError(Exception):
    """Base class of every error cdp_bridge raises on purpose."""


class ConfigurationError(CDPError, click.ClickException):
    """A setting is missing or wrong; the message names the key and what it expects.

    It is also a click exception so that ``flask`` commands, which load the app first,
    print the message and exit with status 2 instead of a traceback.
    """

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ValidationError(CDPError, ValueError):
    """An input (identifier, user id, name) does not have the required form."""


class NotFoundError(CDPError, LookupError):
    """A segment group or segment that was named does not exist."""


class ConflictError(CDPError):
    """The operation would break a uniqueness rule (for example a duplicate identifier)."""


class ProtectedGroupError(CDPError):
    """A segment group named by a configured activation was to be changed by hand."""


def first_line(exc: BaseException) -> str:
    """The first line of an error (for database errors, of the driver's message),
    without the SQL and parameters SQLAlchemy appends."""
    message = str(getattr(exc, "orig", None) or exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__
