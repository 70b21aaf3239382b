"""What ``flask cdp check`` verifies: settings, database, segment groups, and the URL
to paste into the CDP's activation form. Secrets are reported as set or not, never shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Flask
from sqlalchemy import inspect, text
from sqlalchemy.exc import SQLAlchemyError

from ..constants import WEBHOOK_PATH
from ..errors import NotFoundError, first_line
from ..state import CDPState

DEFAULT_SITE_URL = "http://localhost:5000"


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


def run_checks(state: CDPState, app: Flask, site_url: str | None) -> CheckReport:
    """Run every check against one app's state."""
    report = CheckReport()
    report.passed("settings valid")
    _check_settings(state, report)
    if _check_database(state, report):
        _check_groups(state, report)
    _report_base_url(state, app, site_url, report)
    return report


def _check_settings(state: CDPState, report: CheckReport) -> None:
    settings = state.settings
    if settings.account_number:
        report.passed(f"account number {settings.account_number} (tracking and export enabled)")
    else:
        report.noted("CDP_ACCOUNT_NUMBER not set: tracking helpers render nothing, exports refuse to run")
    if not settings.activations:
        report.failed(
            "no activation configured: set CDP_ACTIVATION_CLIENT_ID, CDP_ACTIVATION_CLIENT_SECRET"
            " and CDP_SEGMENT_GROUP_IDENTIFIER (or CDP_ACTIVATIONS)"
        )
    for kind in ("user", "product", "content"):
        state_text = "set" if settings.stream_id(kind) else "not set"
        own = sorted(settings.type_stream_ids.get(kind, {}))
        types_text = f"; types with their own stream: {', '.join(own)}" if own else ""
        report.noted(f"{kind} stream id {state_text}{types_text}")


def _check_database(state: CDPState, report: CheckReport) -> bool:
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            present = set(inspect(conn).get_table_names())
    except SQLAlchemyError as exc:
        report.failed(f"cannot reach the database: {first_line(exc)}")
        return False
    missing = [t.name for t in state.tables.all() if t.name not in present]
    if missing:
        report.failed(f"tables missing ({', '.join(missing)}): run flask cdp init-db")
        return False
    report.passed(f"database reachable ({state.engine.dialect.name}), cdp tables present")
    return True


def _check_groups(state: CDPState, report: CheckReport) -> None:
    for activation in state.settings.activations:
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


def _report_base_url(state: CDPState, app: Flask, site_url: str | None, report: CheckReport) -> None:
    prefix = state.url_prefix
    if prefix is None:
        report.failed("the cdp blueprint is not registered: app.register_blueprint(cdp.blueprint)")
        return
    site = (site_url or _configured_site_url(app) or DEFAULT_SITE_URL).rstrip("/")
    report.lines.append(f"Base URL for the CDP activation: {site}{prefix.rstrip('/')}{WEBHOOK_PATH}")


def _configured_site_url(app: Flask) -> str | None:
    server_name = app.config.get("SERVER_NAME")
    if not server_name:
        return None
    return f"{app.config.get('PREFERRED_URL_SCHEME', 'http')}://{server_name}"
