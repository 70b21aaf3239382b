"""``flask cdp stream-user-data`` / ``stream-product-data`` / ``stream-content-data`` and
``flask cdp export-schedule`` (SPEC section 6).

Exit status: 0 when everything was sent; 1 with a summary of what was and was not sent
(a failed batch, or records skipped because they could not be sent); 2 for usage or
configuration errors such as a missing stream id.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Callable
from typing import Any

import click
from flask.cli import ScriptInfo

from ..errors import ConfigurationError
from ..export.runner import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_BATCH_BYTES,
    ExportRequest,
    ExportSummary,
    deliver_to,
    print_batches,
    run_export,
)
from ..export.streaming import StreamClient
from ..export_kinds import EXPORT_KINDS, ExportKind
from ..secret import Secret
from ..settings import CDPSettings
from ..state import CDPState, current_state
from .group import CommandFailed, UsageProblem, cdp_cli, reports_errors


def export_command(export_kind: ExportKind) -> Callable[..., Any]:
    """Build the ``stream-KIND-data`` command."""
    kind = export_kind.name

    @cdp_cli.command(export_kind.command, help=f"Stream the site's {kind} records to Raptor's Streaming API.")
    @click.option("--draft/--no-draft", default=True, show_default=True,
                  help="Draft: send a sample (first 100, or --limit) for the Data Manager's validation.")
    @click.option("--stream-id", help=f"The stream id (default: {export_kind.stream_id_key}; prefer the setting).")
    @click.option("--batch-size", type=click.IntRange(min=1, max=10_000), default=DEFAULT_BATCH_SIZE, show_default=True)
    @click.option("--max-batch-bytes", type=click.IntRange(min=1024), default=DEFAULT_MAX_BATCH_BYTES, show_default=True)
    @click.option("--limit", type=click.IntRange(min=1), help="Send at most this many records.")
    @click.option("--dry-run", is_flag=True, help="Print the JSON batches instead of sending them.")
    @click.option(export_kind.type_option, "type_name", help=f"Only the {kind} source of this type.")
    @reports_errors
    def command(draft: bool, stream_id: str | None, batch_size: int, max_batch_bytes: int, limit: int | None,
                dry_run: bool, type_name: str | None) -> None:
        state = current_state()
        if not state.hooks.exports.sources[kind]:
            raise ConfigurationError(f"no {kind} source registered: decorate a function with {export_kind.decorator}")
        summaries = []
        for types_name, secret in _streams(state, kind, type_name, stream_id, dry_run):
            request = ExportRequest(kind, types_name, draft, limit, batch_size, max_batch_bytes)
            label = f"{kind} type {types_name}: " if types_name is not None and type_name is None else ""
            if dry_run:
                summary = run_export(state.hooks.exports, request, print_batches(sys.stdout), report_skip=_report)
                click.echo(label + summary.line(), err=True)
            else:
                client = _client(state, secret)
                try:
                    summary = run_export(state.hooks.exports, request, deliver_to(client, draft),
                                         report_skip=_report, progress=_progress_printer())
                finally:
                    client.close()
                _finish_progress()
                click.echo(label + summary.line())
            summaries.append(summary)
        _exit_for(summaries)

    return command


def _streams(
    state: CDPState, kind: str, type_name: str | None, stream_id: str | None, dry_run: bool
) -> list[tuple[str | None, Secret | None]]:
    """Which types go to which stream: one export per stream.

    ``--stream-id`` sends everything selected to it. Otherwise each type goes to its own
    stream when it has one (``CDP_PRODUCT_STREAM_IDS``…), else to the kind's single id;
    without a type option and with per-type streams, each type is exported in turn.
    """
    settings = state.settings
    if stream_id is not None:
        return [(type_name, Secret(stream_id))]
    if type_name is not None:
        state.hooks.exports.selected_sources(kind, type_name)  # an unknown type is a usage error first
        return [(type_name, _stream_of(settings, kind, type_name, dry_run))]
    if not settings.export.type_stream_ids.get(kind):
        return [(None, _stream_of(settings, kind, None, dry_run))]
    return [(name, _stream_of(settings, kind, name, dry_run)) for name in state.hooks.exports.sources[kind]]


def _stream_of(settings: CDPSettings, kind: str, type_name: str | None, dry_run: bool) -> Secret | None:
    secret = settings.export.stream_id(kind, type_name)
    export_kind = EXPORT_KINDS[kind]
    if secret is None and not dry_run:
        per_type = f" or {export_kind.type_stream_ids_key}[{type_name!r}]" if export_kind.type_stream_ids_key and type_name else ""
        raise ConfigurationError(
            f"{export_kind.stream_id_key}{per_type} is not set (or pass --stream-id): copy it from the Data Manager"
        )
    return secret


def _client(state: CDPState, secret: Secret | None) -> StreamClient:
    settings = state.settings
    if not settings.site.account_number:
        raise ConfigurationError("CDP_ACCOUNT_NUMBER is not set: the export needs the Raptor account number")
    assert secret is not None  # _stream_of refused a missing one
    return StreamClient(settings.export.stream_api_url, settings.site.account_number, secret, sleep=state.hooks.clock.sleep)


def _report(message: str) -> None:
    click.echo(message, err=True)


def _progress_printer() -> Callable[[ExportSummary], None]:
    """A progress line on a terminal; nothing under cron or in a pipe."""
    if not sys.stderr.isatty():
        return lambda summary: None
    return lambda summary: click.echo(
        f"\rsent {summary.records} records in {summary.batches} batches ({summary.bytes} bytes)", err=True, nl=False
    )


def _finish_progress() -> None:
    if sys.stderr.isatty():
        click.echo("", err=True)


def _exit_for(summaries: list[ExportSummary]) -> None:
    if any(summary.failure for summary in summaries):
        raise CommandFailed("the export did not complete: see the summary above")
    skipped = sum(summary.skipped for summary in summaries)
    if skipped:
        raise CommandFailed(f"{skipped} records could not be sent and were skipped (listed above)")


for _kind in EXPORT_KINDS.values():
    export_command(_kind)


@cdp_cli.command("export-schedule")
@click.option("--directory", help="Where the site runs (default: the current directory).")
@click.option("--flask", "flask_path", help="The flask executable (default: the one running now).")
@click.option("--app", "app_path", help="The --app value (default: the one given to this command).")
@reports_errors
def export_schedule(directory: str | None, flask_path: str | None, app_path: str | None) -> None:
    """Print crontab lines for CDP_EXPORT_SCHEDULE."""
    schedule = current_state().settings.export.schedule
    if not schedule:
        raise ConfigurationError('CDP_EXPORT_SCHEDULE is not set: e.g. {"user": [{"interval": "0 3 * * *", "options": "--no-draft"}]}')
    script_info = click.get_current_context().find_object(ScriptInfo)
    app_path = app_path or (script_info.app_import_path if script_info else None) or os.environ.get("FLASK_APP")
    prefix = f"cd {shlex.quote(directory or os.getcwd())} && {shlex.quote(flask_path or _flask_executable())}"
    if app_path:
        prefix += f" --app {shlex.quote(app_path)}"
    for kind, entries in schedule.items():
        for number, entry in enumerate(entries, start=1):
            words = _checked_options(kind, entry.options)
            if _names_stream_id(words):
                # The stream id is a secret: the line names the entry, which reads it from the settings.
                click.echo(f"{entry.interval} {prefix} cdp scheduled-export {kind} {number}")
            else:
                options = " ".join(shlex.quote(word) for word in words)
                click.echo(f"{entry.interval} {prefix} cdp {EXPORT_KINDS[kind].command}{' ' + options if options else ''}")


@cdp_cli.command("scheduled-export")
@click.argument("kind", type=click.Choice(list(EXPORT_KINDS)))
@click.argument("number", type=click.IntRange(min=1))
@click.pass_context
@reports_errors
def scheduled_export(context: click.Context, kind: str, number: int) -> None:
    """Run entry NUMBER (from 1) of CDP_EXPORT_SCHEDULE[KIND], with its options.

    For crontab lines whose options hold a --stream-id: the id stays in the settings,
    out of the crontab and of every listing of processes.
    """
    entries = current_state().settings.export.schedule.get(kind, ())
    if number > len(entries):
        raise UsageProblem(f"CDP_EXPORT_SCHEDULE {kind} has {len(entries)} entries, not {number}")
    words = _checked_options(kind, entries[number - 1].options)
    name = EXPORT_KINDS[kind].command
    command = cdp_cli.commands[name]
    with command.make_context(name, list(words), parent=context) as sub_context:
        command.invoke(sub_context)


def _names_stream_id(words: list[str]) -> bool:
    return any(word == "--stream-id" or word.startswith("--stream-id=") for word in words)


def _flask_executable() -> str:
    beside_python = os.path.join(os.path.dirname(sys.executable), "flask")
    return beside_python if os.path.exists(beside_python) else (shutil.which("flask") or "flask")


def _checked_options(kind: str, options: str) -> list[str]:
    """The options' words, if the command accepts them. Messages do not repeat the
    options: they may hold a stream id."""
    try:
        words = shlex.split(options)
    except ValueError as exc:
        raise UsageProblem(f"CDP_EXPORT_SCHEDULE {kind}: options: {exc}") from None
    name = EXPORT_KINDS[kind].command
    try:
        cdp_cli.commands[name].make_context(name, list(words), resilient_parsing=False)
    except click.ClickException as exc:  # click names options, and --stream-id takes any value
        raise UsageProblem(f"CDP_EXPORT_SCHEDULE {kind}: options: {exc.format_message()}") from None
    return words
