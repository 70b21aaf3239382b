"""What ``flask cdp check`` verifies: settings, database, segment groups, and the URL
to paste into the CDP's activation form. Secrets are reported as set or not, never shown.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from flask import Flask
from limits.storage import MemoryStorage
from sqlalchemy import inspect, text
from sqlalchemy.exc import SQLAlchemyError

from ..constants import WEBHOOK_PATH
from ..errors import NotFoundError, first_line
from ..export_kinds import EXPORT_KINDS
from ..log_text import counted
from ..recommendations import RecommendationsFailure
from ..settings import process_environment, unknown_keys
from ..state import CDPState
from ..store import schema, utcnow
from ..store.senders import recent_sender_totals
from ..visitors import MembershipFailure

#: What ``check`` prints for a site whose URL it cannot know.
UNKNOWN_SITE_URL = "https://<your site>"
#: The visitor id ``check`` asks the CDP API about: a valid UUID no visitor has.
CHECK_VISITOR_ID = "00000000-0000-4000-8000-000000000000"
#: A queue with work this old and no claim in this long has no worker running.
DEFAULT_WORKER_WINDOW = timedelta(minutes=10)


@dataclass
class CheckReport:
    """Lines to print, and whether every check passed."""

    lines: list[str] = field(default_factory=list)
    ok: bool = True

    def passed(self, message: str) -> None:
        self.lines.append(f"ok    {message}")

    def failed(self, message: str) -> None:
        self.lines.append(f"FAIL  {message}")
        self.ok = False

    def noted(self, message: str) -> None:
        self.lines.append(f"note  {message}")

    def warned(self, message: str) -> None:
        """Something that will fail later (a scheduled export without its stream): said
        loudly, without failing the check of a site that works today."""
        self.lines.append(f"WARN  {message}")


def run_checks(state: CDPState, app: Flask, site_url: str | None, worker_window: timedelta = DEFAULT_WORKER_WINDOW) -> CheckReport:
    """Run every check against one app's state."""
    report = CheckReport()
    report.passed("settings valid")
    _check_settings(state, report)
    for line in unknown_keys(process_environment(), app.config):
        report.warned(line)
    _check_shared_cache(state, report)
    _check_limit_storage(state, report)
    _check_visitor_segments(state, report)
    _check_recommendations(state, report)
    if _check_database(state, report):
        _check_groups(state, report)
        _check_queue(state, report, worker_window)
        _check_server_tracking(state, report)
        _check_buy_outbox(state, report, worker_window)
        _check_erasure_requests(state, report)
    _report_base_url(state, app, site_url, report)
    return report


def _check_settings(state: CDPState, report: CheckReport) -> None:
    settings = state.settings
    if settings.site.account_number:
        report.passed(f"account number {settings.site.account_number} (tracking and export enabled)")
    else:
        report.noted("CDP_ACCOUNT_NUMBER not set: tracking helpers render nothing, exports refuse to run")
    if not settings.webhook.activations:
        report.failed(
            "no activation configured: set CDP_ACTIVATION_CLIENT_ID, CDP_ACTIVATION_CLIENT_SECRET"
            " and CDP_SEGMENT_GROUP_IDENTIFIER (or CDP_ACTIVATIONS)"
        )
    for kind, export_kind in EXPORT_KINDS.items():
        state_text = "set" if settings.export.stream_id(kind) else "not set"
        own = sorted(settings.export.type_stream_ids.get(kind, {}))
        types_text = f"; types with their own stream: {', '.join(own)}" if own else ""
        report.noted(f"{kind} stream id {state_text}{types_text}")
        if settings.export.schedule.get(kind) and not settings.export.stream_id(kind) and not own:
            report.warned(f"CDP_EXPORT_SCHEDULE exports {kind}s, but {export_kind.stream_id_key} is not set: every"
                          " scheduled export will fail until it is")
    if settings.webhook.signing_secrets:
        report.passed(f"webhook signatures required ({len(settings.webhook.signing_secrets)} signing secret(s));"
                      " unsigned or wrongly signed deliveries are refused with 401")
    else:
        report.noted("webhook signatures not required (CDP_WEBHOOK_SIGNING_SECRETS not set): the client secret alone"
                     " authenticates the CDP")


def _check_shared_cache(state: CDPState, report: CheckReport) -> None:
    """CDP_CACHE_URL's Redis: answering, and how fast (it is asked on pages)."""
    cache = state.shared_cache
    if cache is None:
        report.noted("shared cache off (CDP_CACHE_URL not set): each process caches the APIs' answers for itself")
        return
    try:
        seconds = cache.ping()
    except Exception as exc:  # noqa: BLE001 - the redis client's errors, whatever they are
        # Its class only: the text may quote the URL, password and all.
        report.failed(f"shared cache (CDP_CACHE_URL): Redis cannot be reached ({type(exc).__name__}); pages go to the"
                      " APIs without it")
        return
    report.passed(f"shared cache (CDP_CACHE_URL): Redis answered in {seconds * 1000:.1f} ms")


def _check_limit_storage(state: CDPState, report: CheckReport) -> None:
    """The rate limits' storage (CDP_RATE_LIMIT_STORAGE_URI, or the host's Limiter's)."""
    limiter = state.rate_limits.limiter
    if limiter is None:
        report.noted("rate limits off (the host's Flask-Limiter is turned off)")
        return
    storage = limiter.storage
    if isinstance(storage, MemoryStorage):
        report.noted("rate limits: memory:// (each process counts for itself; redis://… shares the counts)")
        return
    started = time.monotonic()
    answered = storage.check()  # limits' check: False for any failure, never raises
    seconds = time.monotonic() - started
    if not answered:
        report.failed("rate-limit storage (CDP_RATE_LIMIT_STORAGE_URI): it cannot be reached; the limits are skipped"
                      " until it answers")
        return
    report.passed(f"rate-limit storage (CDP_RATE_LIMIT_STORAGE_URI): answered in {seconds * 1000:.1f} ms")


def _check_visitor_segments(state: CDPState, report: CheckReport) -> None:
    """One call to the CDP API with a made-up visitor: are the credentials accepted?"""
    service = state.visitor_segments
    if service is None:
        report.noted("visitor segments off (set CDP_MEMBERSHIP_ACTIVATION_ID and CDP_MEMBERSHIP_API_KEY to turn them on)")
        return
    client = service.client
    try:
        found = client.memberships(CHECK_VISITOR_ID)
    except MembershipFailure as failure:
        if failure.reason == "not_found":
            report.noted(f"visitor segments: the CDP API at {client.url} answered 404 for a made-up visitor, as for any"
                         " visitor it does not know; if known visitors get no segments, check CDP_MEMBERSHIP_API_URL")
            return
        hint = (" check CDP_MEMBERSHIP_ACTIVATION_ID and CDP_MEMBERSHIP_API_KEY" if failure.reason == "unauthorized"
                else " check CDP_MEMBERSHIP_API_URL and the network")
        report.failed(f"visitor segments: {failure.detail} at {client.url};{hint}")
        return
    report.passed(f"visitor segments: the CDP API at {client.url} accepted the credentials"
                  f" ({counted(len(found), 'membership')} for a made-up visitor)")


#: What ``check`` passes for each source a module reads: made-up values no visitor or item has.
CHECK_SOURCES = {"visitor": CHECK_VISITOR_ID, "user": "cdp-bridge-check", "product_id": "cdp-bridge-check",
                 "content_id": "cdp-bridge-check", "category": "cdp-bridge-check"}


def _check_recommendations(state: CDPState, report: CheckReport) -> None:
    """One call to each configured module with made-up parameters: are the key, the
    account and the method accepted, and is the answer readable?"""
    service = state.recommendations
    if service is None:
        report.noted("recommendations off (set CDP_RECOMMENDATION_MODULES and CDP_RECOMMENDATIONS_API_KEY to turn"
                      " them on)")
        return
    client = service.client
    hints = {"unauthorized": "check CDP_RECOMMENDATIONS_API_KEY and CDP_ACCOUNT_NUMBER",
             "not_found": "check the module's method in Raptor's control panel, and CDP_ACCOUNT_NUMBER",
             "bad_answer": "check CDP_RECOMMENDATIONS_API_URL"}
    for module in state.settings.recommendations_api.modules.values():
        shown = client.shown_url(module.method, 1)
        parameters = {parameter: CHECK_SOURCES[source] for parameter, source in module.parameters.items()}
        try:
            found = client.recommend(module.method, 1, parameters, split_variants=module.splits_variants)
        except RecommendationsFailure as failure:
            hint = hints.get(failure.reason, "check CDP_RECOMMENDATIONS_API_URL and the network")
            report.failed(f"recommendations {module.name!r}: {failure.detail} at {shown}; {hint}")
            continue
        report.passed(f"recommendations {module.name!r}: {module.method} answered at {shown}"
                      f" ({counted(len(found), 'recommendation')} for made-up parameters)")


def _check_database(state: CDPState, report: CheckReport) -> bool:
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            present = set(inspect(conn).get_table_names())
            found = schema.status(conn) if "cdp_segment_groups" in present else None
    except schema.SchemaTooNew as exc:
        report.failed(str(exc))
        return False
    except SQLAlchemyError as exc:
        report.failed(f"database unreachable: {first_line(exc)}")
        return False
    if found is None:
        report.failed("cdp_bridge's tables are missing: run flask cdp init-db")
        return False
    if not found.is_current:
        report.failed(f"schema at revision {found.current or found.recognised}, pending {', '.join(found.pending)}:"
                      f" run {schema.UPGRADE_COMMAND}")
        return False
    report.passed(f"database reachable ({state.engine.dialect.name}), cdp tables at schema revision {found.head}")
    return True


def _check_groups(state: CDPState, report: CheckReport) -> None:
    for activation in state.settings.webhook.activations:
        identifier = activation.segment_group_identifier
        try:
            group = state.store.get_group(identifier)
        except NotFoundError:
            report.failed(
                f"segment group {identifier!r} (activation {activation.client_id!r}) does not exist:"
                f" run flask cdp segment-group create {identifier} --name NAME"
            )
            continue
        report.passed(
            f"segment group {identifier!r} (activation {activation.client_id!r}):"
            f" {group.segment_count} segments"
        )


def _check_queue(state: CDPState, report: CheckReport, window: timedelta) -> None:
    """Queue depth and age, failed deliveries, and whether a worker is at work."""
    health = state.inbox.queue_health()
    now = utcnow()
    oldest = f" (oldest received {_age(now - health.oldest_queued_at)} ago)" if health.oldest_queued_at else ""
    report.noted(f"queue: {health.queued} queued{oldest}, {health.processing} being applied, {health.failed} failed")
    if health.failed:
        report.noted(f"{counted(health.failed, 'failed delivery', 'failed deliveries')}:"
                     " see flask cdp deliveries --status failed, then flask cdp replay ID")
    last_claim = health.last_claim_at
    if last_claim is not None and now - last_claim <= window:
        report.passed(f"a worker claimed a delivery {_age(now - last_claim)} ago")
        return
    last = "never" if last_claim is None else f"last {_age(now - last_claim)} ago"
    waiting = health.oldest_queued_at is not None and now - health.oldest_queued_at > window
    if waiting:
        report.failed(f"deliveries have waited over {_age(window)} and no worker claimed one in that time ({last}):"
                      " is flask cdp worker running?")
    else:
        report.noted(f"no worker claimed a delivery in the last {_age(window)} ({last}); nothing has waited that long")


def _check_server_tracking(state: CDPState, report: CheckReport) -> None:
    """What the web processes' senders reported in the last hour (they report each minute)."""
    mode = state.settings.tracking.mode
    totals = recent_sender_totals(state.engine, state.tables.tracking_senders, utcnow() - timedelta(hours=1))
    if not state.mode.server_sends_events and not totals.senders:
        report.noted("tracking mode client (events go from the browser to Raptor)")
        return
    if not totals.senders:
        report.noted(f"tracking mode {mode}: no process has reported sending events in the last hour"
                     " (a process reports each minute once it has sent one)")
        return
    line = (f"tracking mode {mode}: {counted(totals.senders, 'process', 'processes')} reported in the last hour:"
            f" sent {totals.sent}, failed {totals.failed}, dropped {totals.dropped}")
    if totals.failed and not totals.sent:
        report.failed(line + "; nothing reached Raptor: check CDP_SERVER_TRACKING_URL and the network")
    elif totals.dropped or totals.failed:
        report.noted(line)
    else:
        report.passed(line)


def _check_buy_outbox(state: CDPState, report: CheckReport, window: timedelta) -> None:
    """With CDP_TRACKING_BUY_OUTBOX: the buys waiting, and whether they wait too long."""
    outbox = state.buy_outbox_or_none()
    if outbox is None:
        return
    count, oldest = outbox.waiting()
    line = f"buy outbox: {count} waiting" + (f" (oldest written {_age(timedelta(seconds=oldest))} ago)" if oldest is not None else "")
    if oldest is not None and oldest > window.total_seconds():
        report.failed(line + ": is flask cdp worker running, and does Raptor accept them? (the workers' log says)")
    else:
        report.passed(line)


def _check_erasure_requests(state: CDPState, report: CheckReport) -> None:
    """Erasure requests Raptor never accepted (each was logged at ERROR when given up)."""
    erasures = state.erasures_or_none()
    if erasures is None:
        return
    failed = erasures.given_up()
    if failed:
        report.warned(f"{counted(failed, 'erasure request')} given up at Raptor: ask Raptor to delete the person"
                      " another way (the back office's Erasure requests page lists them; docs/privacy.md)")


def _age(elapsed: timedelta) -> str:
    """A duration as people read it: 42 s, 3 min 5 s, 2 h 10 min, 3 d 4 h."""
    seconds = max(0, int(elapsed.total_seconds()))
    for unit, size, smaller, smaller_size in (("d", 86400, "h", 3600), ("h", 3600, "min", 60), ("min", 60, "s", 1)):
        if seconds >= size:
            rest = (seconds % size) // smaller_size
            return f"{seconds // size} {unit}" + (f" {rest} {smaller}" if rest else "")
    return f"{seconds} s"


def _report_base_url(state: CDPState, app: Flask, site_url: str | None, report: CheckReport) -> None:
    prefix = state.url_prefix
    if prefix is None:
        report.failed("the cdp blueprint is not registered: app.register_blueprint(cdp.blueprint)")
        return
    site = site_url or served_url(app)
    path = f"{prefix.rstrip('/')}{WEBHOOK_PATH}"
    if site is None:
        report.lines.append(f"Base URL for the CDP activation: {UNKNOWN_SITE_URL}{path} (run check with --site-url"
                            " https://… to print it whole)")
        return
    report.lines.append(f"Base URL for the CDP activation: {site.rstrip('/')}{path}")


def served_url(app: Flask) -> str | None:
    """Where the site is known to be served: ``SERVER_NAME``, else ``GUNICORN_BIND``'s
    address; ``None`` when neither says (a development server's port is its own)."""
    return _configured_site_url(app) or local_site_url()


def local_site_url(environ: Mapping[str, str] | None = None) -> str | None:
    """Where this machine serves the site: ``GUNICORN_BIND``'s first address (from the
    environment or ``.env``; ``0.0.0.0`` / ``[::]`` reached on loopback), else ``None``."""
    bind = (process_environment() if environ is None else environ).get("GUNICORN_BIND", "").split(",")[0].strip()
    host, separator, port = bind.rpartition(":")
    if not separator or not port.isdigit() or host.startswith("unix") or not host:
        return None
    host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]"}.get(host, host)  # noqa: S104 - reading a bind, not binding
    return f"http://{host}:{port}"


def _configured_site_url(app: Flask) -> str | None:
    server_name = app.config.get("SERVER_NAME")
    if not server_name:
        return None
    return f"{app.config.get('PREFERRED_URL_SCHEME', 'http')}://{server_name}"
