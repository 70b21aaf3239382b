"""Reading and validating cdp_bridge's settings (SPEC section 2).

Each key is read from ``app.config`` first, then from the process environment (which a
``.env`` file may have filled). The settings come in sections (:mod:`.sections`: the
site, the webhook, the queue workers, tracking, the export, and each outside API), each
a marshmallow schema of its keys; all are validated at start-up, and a wrong value
raises :class:`ConfigurationError` naming the key and what it expects, never the value
itself, so a secret cannot leak through the message.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dotenv import dotenv_values, find_dotenv
from marshmallow import ValidationError as SchemaError

from ..errors import ConfigurationError
from .fields import MAKE_SIGNING_SECRET, MAX_SIGNING_KEY_BYTES, MIN_SIGNING_KEY_BYTES, PLACEHOLDER, secret_problem
from .sections import (
    MIN_CLIENT_SECRET_LENGTH,
    ExportSection,
    ExportSettings,
    GdprApi,
    GdprApiSection,
    MembershipApi,
    MembershipApiSection,
    OutsideApi,
    PrivacySection,
    PrivacySettings,
    RecommendationsApi,
    RecommendationsApiSection,
    ReconcileSection,
    ReconcileSettings,
    Section,
    SiteSection,
    SiteSettings,
    TrackingSection,
    TrackingSettings,
    WebhookSection,
    WebhookSettings,
    WorkerSection,
    WorkerSettings,
)

__all__ = [
    "ALL_KEYS", "ENV_FILE_KEY", "MAKE_SIGNING_SECRET", "MAX_SIGNING_KEY_BYTES", "MIN_CLIENT_SECRET_LENGTH",
    "MIN_SIGNING_KEY_BYTES", "PLACEHOLDER", "CDPSettings", "ExportSettings", "GdprApi", "MembershipApi",
    "OutsideApi", "PrivacySettings", "RecommendationsApi", "SiteSettings", "TrackingSettings",
    "WebhookSettings", "WorkerSettings", "check_env_file", "load_settings", "process_environment",
    "read_raw_settings", "secret_problem", "settings_table", "unknown_keys",
]


@dataclass(frozen=True)
class CDPSettings:
    """The validated settings of one app, made by :func:`load_settings` only, one
    attribute per section: each setting's key, default and documentation live in its
    section's schema (:mod:`.sections`). Secrets are wrapped in :class:`Secret`."""

    site: SiteSettings
    webhook: WebhookSettings
    worker: WorkerSettings
    tracking: TrackingSettings
    export: ExportSettings
    membership_api: MembershipApi
    recommendations_api: RecommendationsApi
    privacy: PrivacySettings
    gdpr_api: GdprApi
    reconcile: ReconcileSettings


#: The sections, in the order the docs list them, by the attribute of :class:`CDPSettings` that holds each.
SECTIONS: dict[str, type[Section]] = {
    "site": SiteSection,
    "webhook": WebhookSection,
    "worker": WorkerSection,
    "tracking": TrackingSection,
    "export": ExportSection,
    "membership_api": MembershipApiSection,
    "recommendations_api": RecommendationsApiSection,
    "privacy": PrivacySection,
    "gdpr_api": GdprApiSection,
    "reconcile": ReconcileSection,
}


def _schemas() -> dict[str, Section]:
    return {name: section() for name, section in SECTIONS.items()}


#: Every key, in the order the docs list them.
ALL_KEYS: tuple[str, ...] = tuple(str(f.data_key) for schema in _schemas().values() for f in schema.fields.values())


def settings_table() -> str:
    """The settings table of docs/settings.md, from the sections' schemas: one part per
    section, under its title."""
    rows = ["| key | meaning | default |", "|---|---|---|"]
    for schema in _schemas().values():
        rows.append(f"| **{schema.title}** | | |")
        for schema_field in schema.fields.values():
            shown = schema_field.metadata["default"]
            if shown is None:
                default = schema_field.load_default
                shown = "—" if default is None or default in ({}, [], ()) else f"`{default}`"
            rows.append(f"| `{schema_field.data_key}` | {schema_field.metadata['doc']} | {shown} |")
    return "\n".join(rows)


def read_raw_settings(config: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """The value of each key from ``config``, else the environment; absent keys are left out.

    A key set to ``None`` in ``config`` counts as absent, so an app can blank an
    environment value explicitly only by giving another value.
    """
    raw: dict[str, Any] = {}
    for key in ALL_KEYS:
        if config.get(key) is not None:
            value = config[key]
            # An account number written as a Python int is the same number.
            raw[key] = str(value) if key == "CDP_ACCOUNT_NUMBER" and type(value) is int else value
        elif environ.get(key, "").strip():
            raw[key] = environ[key]
    return raw


#: Names a ``.env`` file to read instead of the working directory's. gunicorn.conf.py
#: points its workers at the last ``.env`` that passed the check, so a reload with a
#: mistyped one keeps serving on the last good settings.
ENV_FILE_KEY = "CDP_ENV_FILE"
#: Keys of the environment that start with ``CDP_`` and are no setting, yet are cdp_bridge's.
OTHER_CDP_KEYS = frozenset({ENV_FILE_KEY})


def env_file_values(path: str) -> dict[str, str]:
    """The keys a ``.env`` file sets (python-dotenv; a key with no ``=`` is left out)."""
    return {key: value for key, value in dotenv_values(path).items() if value is not None}


def process_environment() -> dict[str, str]:
    """The environment settings are read from: ``os.environ``, and for keys it does not set
    the ``.env`` file (``CDP_ENV_FILE``'s, else the working directory's, as python-dotenv
    finds it; also under gunicorn, which loads none). The file is read, never written into
    ``os.environ``, and read afresh each time an app registers cdp_bridge, so a reload's
    new workers see its changes."""
    path = os.environ.get(ENV_FILE_KEY) or find_dotenv(usecwd=True)
    return {**(env_file_values(path) if path else {}), **os.environ}


def unknown_keys(*sources: Mapping[str, Any]) -> list[str]:
    """One line per ``CDP_*`` key of ``sources`` (the environment, a ``.env`` file,
    ``app.config``) that is no setting, naming the closest known key: a misspelt setting
    is otherwise silently ignored."""
    known = set(ALL_KEYS) | OTHER_CDP_KEYS
    found = sorted({key for source in sources for key in source if key.startswith("CDP_") and key not in known})
    lines = []
    for key in found:
        close = difflib.get_close_matches(key, ALL_KEYS, n=1, cutoff=0.75)
        lines.append(f"unknown setting {key}" + (f" (did you mean {close[0]}?)" if close else "") + "; it is ignored")
    return lines


def check_env_file(path: str, environ: Mapping[str, str] | None = None) -> tuple[str | None, list[str]]:
    """What is wrong with the settings an app would read with ``path`` as its ``.env``:
    the one error that stops it (``None`` if none), and the unknown keys (see
    :func:`unknown_keys`). ``environ`` defaults to ``os.environ``, which wins over the file."""
    if not os.path.isfile(path):
        return f"{path}: no such file", []
    from_file = env_file_values(path)
    environ = os.environ if environ is None else environ
    try:
        load_settings({}, {**from_file, **environ})
    except ConfigurationError as exc:
        return str(exc), unknown_keys(from_file, environ)
    return None, unknown_keys(from_file, environ)


def load_settings(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> CDPSettings:
    """Validate the settings of one app, or raise :class:`ConfigurationError`; ``environ``
    defaults to :func:`process_environment`."""
    raw = read_raw_settings(config, process_environment() if environ is None else environ)
    loaded: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    across: ConfigurationError | None = None  # a rule across keys: said once every key's value is valid
    for name, schema in _schemas().items():
        try:
            loaded[name] = schema.load(raw)
        except SchemaError as exc:
            errors.update(exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages})
        except ConfigurationError as exc:
            across = across or exc
    if errors:
        raise ConfigurationError("invalid cdp_bridge setting: " + _describe(errors))
    if across is not None:
        raise across
    settings = CDPSettings(**loaded)
    _check_across_sections(settings)
    return settings


def _check_across_sections(settings: CDPSettings) -> None:
    if settings.recommendations_api.modules:
        for key, needed in (("CDP_RECOMMENDATIONS_API_KEY", settings.recommendations_api.key),
                            ("CDP_ACCOUNT_NUMBER", settings.site.account_number)):
            if needed is None:
                raise ConfigurationError(f"{key}: required with CDP_RECOMMENDATION_MODULES (the Recommendations API's"
                                         " URL holds it)")


def _describe(messages: object, prefix: str = "") -> str:
    """Flatten marshmallow's nested messages into 'KEY[0].field: message; …'."""
    if isinstance(messages, dict):
        parts = []
        for key, value in messages.items():
            if key in ("_schema", "value"):
                name = prefix
            elif isinstance(key, int):
                name = f"{prefix}[{key}]"
            else:
                name = f"{prefix}.{key}" if prefix else str(key)
            parts.append(_describe(value, name))
        return "; ".join(parts)
    if isinstance(messages, list):
        texts = [m if isinstance(m, str) else _describe(m, prefix) for m in messages]
        return f"{prefix}: {' '.join(texts)}" if prefix else " ".join(texts)
    return f"{prefix}: {messages}"

