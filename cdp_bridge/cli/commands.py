"""The ``flask cdp`` commands for segment groups, segments, deliveries, workers and checks.

Each reads the app's state with :func:`~cdp_bridge.state.current_state`; exit statuses
come from :mod:`.group`.
"""

from __future__ import annotations

import logging
import signal
from datetime import timedelta

import click
from flask import current_app

from ..constants import PROTECTED_GROUP_MESSAGE
from ..errors import ConfigurationError, ValidationError, first_line
from ..jobs.wake import QueueListener
from ..jobs.worker import QueueWorker
from ..log_text import LOG_DATE_FORMAT, LOG_FORMAT, counted
from ..model import ActivationCredentials, DeliveryStatus
from ..settings import check_env_file
from ..state import current_state as _state
from ..store import schema, validate_user_ids
from ..web.metrics import serve_worker_metrics
from ..webhook.sample import ActivationNotSent, sample_body, send_activation
from .group import CommandFailed, UsageProblem, cdp_cli, reports_errors
from .health import run_checks, served_url


@cdp_cli.command("init-db")
@reports_errors
def init_db() -> None:
    """Create the cdp_* tables at the newest schema revision (an older database is upgraded)."""
    _state().create_tables(report=click.echo)
    click.echo("cdp_bridge tables are ready.")


@cdp_cli.command("upgrade-db")
@reports_errors
def upgrade_db() -> None:
    """Apply cdp_bridge's pending schema revisions, printing each; safe to run again."""
    applied = _state().create_tables(report=click.echo)
    click.echo(f"cdp_bridge's schema is at revision {schema.head_revision()}"
               + ("" if applied else " (nothing to apply)") + ".")


@cdp_cli.command("check")
@click.option("--site-url", help="The site's public URL (default: SERVER_NAME, else GUNICORN_BIND's address).")
@click.option("--env-file", type=click.Path(dir_okay=False), help="Check this .env's settings, as a reload of"
              " gunicorn would read them (before kill -HUP), and nothing else.")
@click.option("--worker-minutes", type=click.IntRange(min=1), default=10, show_default=True,
              help="Fail when deliveries have waited this long and no worker claimed one in that time.")
@reports_errors
def check(site_url: str | None, env_file: str | None, worker_minutes: int) -> None:
    """Check settings, database, segment groups and the delivery queue; print the Base URL for the CDP."""
    if env_file is not None:
        _check_env_file(env_file)
        return
    report = run_checks(_state(), current_app, site_url, timedelta(minutes=worker_minutes))
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
        click.echo(f"{group.identifier}\t{group.name}\t{counted(group.segment_count, 'segment')}{mark}")


@segment_group.command("delete")
@click.argument("identifier")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@reports_errors
def segment_group_delete(identifier: str, yes: bool) -> None:
    """Delete a segment group with its segments and memberships."""
    store = _state().store
    group = store.get_group(identifier)
    if group.protected:  # refused before asking, not after
        raise CommandFailed(f"{PROTECTED_GROUP_MESSAGE}: {identifier!r} is connected to a CDP activation")
    if not yes and not click.confirm(
        f"Delete segment group {identifier!r} and its {counted(group.segment_count, 'segment')}?", err=True
    ):
        raise CommandFailed("not deleted")
    store.delete_group(identifier)
    click.echo(f"Deleted segment group {identifier!r}.")


@cdp_cli.command("segments")
@click.option("--group", "group", help="Only this segment group.")
@click.option("--recount", is_flag=True,
              help="Count every segment's members afresh first (once, after a rolling upgrade to 0007_member_counts).")
@reports_errors
def segments(group: str | None, recount: bool) -> None:
    """List segments with their member counts."""
    store = _state().store
    if recount:
        click.echo(f"Recounted the members of {counted(store.recount_members(), 'segment')}.")
    rows = store.list_segments(group)
    if not rows:
        click.echo("No segments.")
    for segment in rows:
        click.echo(f"{segment.group}/{segment.identifier}\t{segment.name}\t{counted(segment.member_count or 0, 'member')}")



@cdp_cli.command("worker")
@click.option("--once", is_flag=True, help="Apply every delivery that is due, then exit.")
@click.option("--poll-seconds", type=click.FloatRange(min=0.05), default=2.0, show_default=True)
@click.option("--lease-seconds", type=click.IntRange(min=1), default=None,
              help="How long a claim lasts before another worker may take the delivery over"
                   " [default: CDP_WORKER_LEASE_SECONDS, else 120].")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), default="INFO",
              show_default=True, help="Used when the app has not configured logging itself.")
@click.option("--metrics-port", type=click.IntRange(min=1, max=65535), default=None,
              help="Serve this worker's Prometheus figures (and the queue's) on this port.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="The address --metrics-port listens on (0.0.0.0: every interface; the page has no password).")
@reports_errors
def worker(once: bool, poll_seconds: float, lease_seconds: int | None, log_level: str, metrics_port: int | None,
           metrics_host: str) -> None:
    """Apply queued webhook deliveries, and send the buy outbox's buys (run any number, on any host)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=log_level, format=LOG_FORMAT, datefmt=LOG_DATE_FORMAT)
    state = _state()
    if metrics_port is not None:
        try:
            serve_worker_metrics(current_app._get_current_object(),  # type: ignore[attr-defined]
                                  metrics_host, metrics_port)
        except (OSError, ValueError) as exc:
            raise CommandFailed(f"--metrics-port {metrics_port}: cannot listen on {metrics_host} ({exc.__class__.__name__}:"
                                f" {first_line(exc)})") from None
    queue_worker = QueueWorker(state.queue_jobs(lease_seconds), poll_seconds=poll_seconds,
                               ready=state.schema_gate.is_current)
    if once:
        if not state.schema_gate.is_current():
            raise CommandFailed(f"cdp_bridge's tables are not at the schema this version writes: run {schema.UPGRADE_COMMAND}")
        reports = queue_worker.run_once()
        queue_worker.close()
        for line in (report.summary() for report in reports):
            if line:  # a job with nothing to say (the history's pruning, most passes) prints nothing
                click.echo(line)
        return
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda *_: queue_worker.stop())
    listener = QueueListener(state.engine, queue_worker.wake).start() if state.engine.dialect.name == "postgresql" \
        else None
    try:
        queue_worker.run_forever()
    finally:
        if listener is not None:
            listener.stop()


@cdp_cli.command("deliveries")
@click.option("--status", type=click.Choice([status.value for status in DeliveryStatus]), help="Only deliveries with this status.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@reports_errors
def deliveries(status: str | None, limit: int) -> None:
    """The delivery log, newest first."""
    rows = _state().inbox.summaries(DeliveryStatus(status) if status else None, limit=limit)
    if not rows:
        click.echo("No deliveries.")
    for d in rows:
        outcome = f"applied={d.applied} stale={d.stale}" if d.status == DeliveryStatus.APPLIED else (d.error or "")
        claim = (f"\tclaimed_by={d.claimed_by}\tlease_until={d.lease_expires_at:%Y-%m-%d %H:%M:%S}"
                 if d.claimed_by and d.lease_expires_at else "")
        click.echo(
            f"{d.id}\t{d.received_at:%Y-%m-%d %H:%M:%S}\t{d.status}\t{d.client_id}\t{d.segment_group_identifier}"
            f"\titems={d.items}\tattempts={d.attempts}\trejected={d.rejected_count}{claim}\t{outcome}"
        )


@cdp_cli.command("replay")
@click.argument("delivery_id", type=int)
@reports_errors
def replay(delivery_id: int) -> None:
    """Queue a failed or rejected delivery again."""
    state = _state()
    delivery = state.inbox.replay(delivery_id)
    state.wake_inline_worker()
    click.echo(f"Delivery {delivery.id} queued again; a worker will apply it.")


def _check_env_file(path: str) -> None:
    """The settings of ``path`` (with the environment, which wins), as gunicorn.conf.py
    checks them on a reload: one line, and status 2 when they would be refused."""
    problem, unknown = check_env_file(path)
    for line in unknown:
        click.echo(f"WARN  {path}: {line}")
    if problem is not None:
        raise UsageProblem(f"{path}: {problem}")
    click.echo(f"ok    {path}: settings valid")


@cdp_cli.command("send-test-activation")
@click.option("--url", help="The webhook URL (default: this app's on SERVER_NAME or GUNICORN_BIND's address; with"
                            " neither, say it: the site's port is its own).")
@click.option("--client-id", help="Which configured activation to send as (default: the first).")
@click.option("--user-id", "user_ids", multiple=True, default=("1", "2", "3"), show_default=True,
              help="User ids to put in the sample audiences (repeat the option).")
@reports_errors
def send_test_activation(url: str | None, client_id: str | None, user_ids: tuple[str, ...]) -> None:
    """Send an authenticated sample activation to a running site."""
    state = _state()
    activation = _activation(state.settings.webhook.activations, client_id)
    if url is None:
        site = served_url(current_app)
        if site is None:
            raise UsageProblem("say where the site is served: --url http://HOST:PORT/cdp/webhook (or set SERVER_NAME or"
                               " GUNICORN_BIND)")
        url = f"{site.rstrip('/')}{(state.url_prefix or '/cdp').rstrip('/')}/webhook"
    secrets = state.settings.webhook.signing_secrets
    body = sample_body(activation.segment_group_identifier, validate_user_ids(user_ids))
    try:
        sent = send_activation(url, activation, body, secrets[0] if secrets else None)
    except ActivationNotSent as exc:
        raise CommandFailed(f"could not reach {url}: {exc} (is the site running?)") from None
    click.echo(f"{url} answered {sent.status_code}: {sent.body.strip()}")
    if not 200 <= sent.status_code < 300:
        raise CommandFailed("the site did not accept the activation")


def _activation(activations: tuple[ActivationCredentials, ...], client_id: str | None) -> ActivationCredentials:
    if not activations:
        raise ConfigurationError("no activation configured: set CDP_ACTIVATION_CLIENT_ID and the rest")
    for activation in activations:
        if client_id is None or activation.client_id == client_id:
            return activation
    raise ValidationError(f"no configured activation has client id {client_id!r}")


@cdp_cli.command("forget")
@click.option("--user-id", help="The person's user id on the site.")
@click.option("--email", help="The person's email address.")
@reports_errors
def forget(user_id: str | None, email: str | None) -> None:
    """Forget a person here at once, and have Raptor delete them (SPEC section 14)."""
    if user_id is None and email is None:
        raise UsageProblem("give --user-id, --email, or both")
    state = _state()
    receipt = state.erasures.forget(user_id, email)
    click.echo(f"Erasure request {receipt.request_id}: {counted(receipt.memberships_removed, 'membership')} removed;"
               f" deliveries cannot add the person back, and no event names them, for"
               f" {counted(state.settings.privacy.forget_hold_days, 'day')}.")
    if receipt.deletions_queued:
        click.echo(f"Raptor: {counted(receipt.deletions_queued, 'DeleteUser call')} queued; the queue workers send"
                   " them (flask cdp worker).")
    else:
        click.echo("Raptor was not asked: set CDP_GDPR_API_KEY (and CDP_ACCOUNT_NUMBER) to have it delete the person.")


@cdp_cli.command("reconcile")
@click.option("--group", help="The segment group to reconcile (default: each configured activation's group).")
@click.option("--dry-run", is_flag=True, help="Change nothing; say what would change.")
@reports_errors
def reconcile(group: str | None, dry_run: bool) -> None:
    """Make the segment store what the CDP API says each audience is (SPEC section 15)."""
    state = _state()
    groups = [group] if group is not None else sorted(state.settings.webhook.protected_group_identifiers)
    if not groups:
        raise UsageProblem("no segment group: give --group, or configure an activation (CDP_SEGMENT_GROUP_IDENTIFIER)")
    reconciler = state.reconciler()
    failed = False
    try:
        for name in groups:
            report = reconciler.run(name, dry_run=dry_run)
            click.echo(f"Reconcile of group {name}{' (dry run: nothing changed)' if dry_run else ''}:")
            if report.error is not None:
                click.echo(f"  FAILED: {report.error}")
            for segment in report.segments:
                click.echo(f"  {segment.line(dry_run)}")
            if not report.segments and report.error is None:
                click.echo("  the CDP lists no audience")
            failed = failed or report.failed
    finally:
        reconciler.client.close()
    if failed:
        raise click.exceptions.Exit(1)
