"""The ``flask cdp`` command group, and how errors become messages and exit statuses.

Exit status: 0 ok, 1 failure, 2 usage or configuration error, always with a message on
standard error. The group is registered both by ``CDP.init_app`` and through the
``flask.commands`` entry point; through the entry point, ``flask cdp …`` exists before
the app is loaded, so a wrong setting found while loading it is reported here as a
configuration error (status 2) instead of a traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click
from flask.cli import AppGroup
from sqlalchemy.exc import SQLAlchemyError

from ..errors import CDPError, ConfigurationError, ValidationError, first_line
from ..version import __version__

F = TypeVar("F", bound=Callable[..., Any])


class CommandFailed(click.ClickException):
    """A command that ran but failed: exit status 1."""

    exit_code = 1


class UsageProblem(click.ClickException):
    """Bad arguments or configuration: exit status 2."""

    exit_code = 2


class CDPCommandGroup(AppGroup):
    """``flask cdp``: a configuration error while the app loads is a usage problem."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigurationError as exc:
            raise UsageProblem(str(exc)) from None


cdp_cli = CDPCommandGroup("cdp", help="Ibexa CDP activation target: segments, webhook deliveries, exports.")
cdp_cli = click.version_option(__version__, prog_name="cdp_bridge", message="%(prog)s %(version)s")(cdp_cli)


def reports_errors(command: F) -> F:
    """Turn cdp_bridge and database errors into messages with the right exit status."""

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> Any:
        try:
            return command(*args, **kwargs)
        except (ValidationError, ConfigurationError) as exc:
            raise UsageProblem(str(exc)) from None
        except CDPError as exc:
            raise CommandFailed(str(exc)) from None
        except SQLAlchemyError as exc:
            raise CommandFailed(f"database error: {first_line(exc)}") from None

    return wrapper  # type: ignore[return-value]
