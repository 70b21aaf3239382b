"""The ``flask cdp`` command group.

Commands read the extension's state from ``current_app.extensions["cdp"]``. Exit
status: 0 ok, 1 failure, 2 usage or configuration error, always with a message on
standard error.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy.exc import SQLAlchemyError

from .errors import CDPError, ConfigurationError, ValidationError
from .health import first_line, run_checks
from .extension import EXTENSION_KEY, CDPState

F = TypeVar("F", bound=Callable[..., Any])

cdp_cli = AppGroup("cdp", help="Ibexa CDP activation target: segments, webhook deliveries, exports.")


class CommandFailed(click.ClickException):
    """A command that ran but failed: exit status 1."""

    exit_code = 1


class UsageProblem(click.ClickException):
    """Bad arguments or configuration: exit status 2."""

    exit_code = 2


def _state() -> CDPState:
    state: CDPState = current_app.extensions[EXTENSION_KEY]
    return state


def reports_errors(command: F) -> F:
    """Turn cdp_bridge and database errors into messages with the right exit status."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (ValidationError, ConfigurationError) as exc:
            raise UsageProblem(str(exc)) from None
        except CDPError as exc:
            raise CommandFailed(str(exc)) from None
        except SQLAlchemyError as exc:
            raise CommandFailed(f"database error: {first_line(exc)}") from None

    return wrapper  # type: ignore[return-value]


@cdp_cli.command("init-db")
@reports_errors
def init_db() -> None:
    """Create the cdp_* tables that do not exist yet."""
    _state().create_tables()
    click.echo("cdp_bridge tables are ready.")


@cdp_cli.command("check")
@click.option("--site-url", help="The site's public URL (default: SERVER_NAME, else http://localhost:5000).")
@reports_errors
def check(site_url: str | None) -> None:
    """Check settings, database and segment groups; print the Base URL for the CDP."""
    report = run_checks(_state(), current_app, site_url)
    for line in report.lines:
        click.echo(line)
    if not report.ok:
        raise CommandFailed("some checks failed (see above)")


@cdp_cli.group("segment-group")
def segment_group() -> None:
    """Create, list and delete segment groups."""


@segment_group.command("create")
@click.argument("identifier")
@click.option("--name", help="Display name (default: the identifier).")
@reports_errors
def segment_group_create(identifier: str, name: str | None) -> None:
    """Create a segment group before connecting the CDP to it."""
    group = _state().store.create_group(identifier, name)
    click.echo(f"Created segment group {group.identifier!r} ({group.name}).")


@segment_group.command("list")
@reports_errors
def segment_group_list() -> None:
    """List segment groups with their segment counts."""
    groups = _state().store.list_groups()
    if not groups:
        click.echo("No segment groups. Create one: flask cdp segment-group create IDENTIFIER --name NAME")
    for group in groups:
        mark = "  [protected]" if group.protected else ""
        click.echo(f"{group.identifier}\t{group.name}\t{group.segment_count} segments{mark}")


@segment_group.command("delete")
@click.argument("identifier")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@reports_errors
def segment_group_delete(identifier: str, yes: bool) -> None:
    """Delete a segment group with its segments and memberships."""
    store = _state().store
    group = store.get_group(identifier)
    if not yes and not click.confirm(
        f"Delete segment group {identifier!r} and its {group.segment_count} segments?", err=True
    ):
        raise CommandFailed("not deleted")
    store.delete_group(identifier)
    click.echo(f"Deleted segment group {identifier!r}.")


@cdp_cli.command("segments")
@click.option("--group", "group", help="Only this segment group.")
@reports_errors
def segments(group: str | None) -> None:
    """List segments with their member counts."""
    rows = _state().store.list_segments(group)
    if not rows:
        click.echo("No segments.")
    for segment in rows:
        click.echo(f"{segment.group}/{segment.identifier}\t{segment.name}\t{segment.member_count} members")

