"""The app factory: the demo (embedded SQLite, demo data, a stand-in for Raptor), or a
site configured by the environment alone (``SQLALCHEMY_DATABASE_URI`` set)."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select

from cdp_bridge import ConflictError, database_url
from cdp_bridge.settings import process_environment
from cdp_bridge.store import membership

from . import cdp_hooks  # noqa: F401 - registers the demo's hooks on cdp
from .extensions import cdp, db
from .models import (
    CONSENT_COOKIE,
    DEMO_AUDIENCES,
    DEMO_CLIENT_ID,
    DEMO_GROUP,
    DEMO_MEMBERSHIP_ACTIVATION_ID,
    DEMO_MISSED_PUSH,
    DEMO_RECOMMENDATION_MODULES,
    DEMO_USERS,
    INTERESTS_GROUP,
    DemoUser,
)
from .raptor import NOWHERE, calls_raptor, raptor_stand_in, start_raptor_stand_in
from .shop import shop
from .site import admin_password, behind_proxies, site_secret

#: The repository's folder: the demo's templates/ and static/ are there (its instance/ too).
ROOT = Path(__file__).resolve().parent.parent


def create_app(config: dict[str, Any] | None = None, instance_path: str | None = None) -> Flask:
    """Build the shop: the demo by default; a site configured by the environment (or a
    ``.env`` file) when that sets ``SQLALCHEMY_DATABASE_URI``. ``config`` overrides any
    setting (tests use it).

    The demo: embedded SQLite, demo users with passwordless logins, a made-up account
    number and a local stand-in for Raptor's script; every setting the environment gives
    wins over its default. The site: the environment's database and ``SECRET_KEY`` (it
    refuses to start without a real one), its ``CDP_*`` settings and nothing of the
    demo's; the back office admits HTTP Basic user ``admin`` with ``SHOP_ADMIN_PASSWORD``.
    The site's factory never touches its database (``flask --app wsgi shop init-db``
    makes the shop's tables), so ``flask cdp check`` and the workers can report an
    outage instead of failing to start.
    """
    # the environment, and .env for what it does not set: read afresh each time (a reload's new workers)
    environment = process_environment()
    app = Flask("demo", root_path=str(ROOT), instance_path=instance_path)
    os.makedirs(app.instance_path, exist_ok=True)
    site_database = environment.get("SQLALCHEMY_DATABASE_URI")
    if site_database:
        # A site on its own database is no demo: configured by the environment alone, with
        # no passwordless demo logins and no demo data.
        app.config.update(SQLALCHEMY_DATABASE_URI=database_url(site_database), SECRET_KEY=site_secret(environment), SHOP_DEMO=False,
                          SHOP_ADMIN_PASSWORD=admin_password(environment))
        behind_proxies(app, environment)
        cdp_defaults: dict[str, Any] = {"CDP_CONSENT_COOKIE": CONSENT_COOKIE}  # the shop's banner sets it
    else:
        with _first_run_lock(app):  # the instance's secrets too: each one is made by one process only
            secret_key = environment.get("SECRET_KEY") or _instance_secret(app, "session_key")
            cdp_defaults = _demo_settings(app, environment)
        app.config.update(SQLALCHEMY_DATABASE_URI="sqlite:///" + os.path.join(app.instance_path, "demo.sqlite3"),
                          SECRET_KEY=secret_key, SHOP_DEMO=True)
        keys = {key: environment.get(key) or cdp_defaults[key] for key in
                ("CDP_MEMBERSHIP_API_KEY", "CDP_MEMBERSHIP_ACTIVATION_ID", "CDP_RECOMMENDATIONS_API_KEY",
                 "CDP_GDPR_API_KEY")}
        schedule = environment.get("CDP_RECONCILE_SCHEDULE") or (config or {}).get("CDP_RECONCILE_SCHEDULE")
        stand_in = start_raptor_stand_in(app, keys) if calls_raptor(bool(schedule)) else NOWHERE
        for key in ("CDP_MEMBERSHIP_API_URL", "CDP_SERVER_TRACKING_URL", "CDP_RECOMMENDATIONS_API_URL"):
            cdp_defaults[key] = stand_in
        cdp_defaults["CDP_GDPR_API_URL"] = f"{stand_in}/gdpr"
    app.config.update(cdp_defaults)
    # cdp_bridge reads app.config first: the environment's (and .env's) CDP_* win over the defaults
    app.config.update({key: value for key, value in environment.items() if key.startswith("CDP_") and value.strip()})
    app.config.update(config or {})
    db.init_app(app)
    cdp.init_app(app, db=db)
    if app.config["SHOP_DEMO"]:  # the demo's own SQLite file, made on first run
        with _first_run_lock(app), app.app_context():
            db.create_all()
            _seed_first_run()
    app.register_blueprint(shop)
    if app.config["SHOP_DEMO"]:
        app.register_blueprint(raptor_stand_in)
    return app


#: The demo's commands that call Raptor's servers (its stand-in): ``check`` asks each API
#: once, ``till-sale`` sends offline buys; ``run`` serves pages that call them.

def _demo_settings(app: Flask, environment: dict[str, str]) -> dict[str, Any]:
    """The demo's cdp_bridge settings; an activation in the environment replaces its own."""
    settings: dict[str, Any] = {
        "CDP_ACTIVATION_CLIENT_ID": DEMO_CLIENT_ID,
        "CDP_ACTIVATION_CLIENT_SECRET": _instance_secret(app, "activation_client_secret"),
        "CDP_SEGMENT_GROUP_IDENTIFIER": DEMO_GROUP,
        # Tracking: a made-up account number and a local stand-in for Raptor's script, so
        # the demo sends nothing off the machine.
        "CDP_ACCOUNT_NUMBER": "1234",
        "CDP_CONSENT_COOKIE": CONSENT_COOKIE,
        "CDP_TRACKING_SCRIPT_URL": "/static/raptor-demo.js",
        # Visitor segments from a local stand-in for Raptor's CDP API (see below); a short
        # cache, so a visitor who just looked at a cat product sees the offer soon.
        "CDP_MEMBERSHIP_ACTIVATION_ID": DEMO_MEMBERSHIP_ACTIVATION_ID,
        "CDP_MEMBERSHIP_API_KEY": _instance_secret(app, "membership_api_key"),
        "CDP_MEMBERSHIP_TIMEOUT": 1,
        "CDP_VISITOR_SEGMENTS_CACHE_TTL": 10,
        # Recommendation blocks from the stand-in for Raptor's Recommendations API: three web
        # modules as an operator creates them in Raptor's control panel (docs/recommendations.md).
        "CDP_RECOMMENDATIONS_API_KEY": _instance_secret(app, "recommendations_api_key"),
        "CDP_RECOMMENDATIONS_CACHE_TTL": 10,
        "CDP_RECOMMENDATION_MODULES": DEMO_RECOMMENDATION_MODULES,
        # "Forget me" asks the stand-in for Raptor's GDPR API to delete the customer.
        "CDP_GDPR_API_KEY": _instance_secret(app, "gdpr_api_key"),
    }
    activation_keys = ("CDP_ACTIVATION_CLIENT_ID", "CDP_ACTIVATION_CLIENT_SECRET", "CDP_SEGMENT_GROUP_IDENTIFIER")
    if any(environment.get(key) for key in (*activation_keys, "CDP_ACTIVATIONS")):
        for key in activation_keys:
            del settings[key]
    return settings


@contextmanager
def _first_run_lock(app: Flask) -> Iterator[None]:
    """One process at a time makes the demo's first-run files: gunicorn's workers build
    the app at once, and without it two would both create the tables (one failing on
    "table already exists", which stops gunicorn), each make a different secret, or one
    read the secrets' file while another was rewriting it (a worker failing to boot)."""
    with open(os.path.join(app.instance_path, "first-run.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed, or the process dies
        yield


def _instance_secret(app: Flask, name: str) -> str:
    """A random secret made on first run and kept in the (git-ignored) instance folder."""
    path = os.path.join(app.instance_path, "demo-secrets.json")
    stored: dict[str, str] = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            stored = json.load(handle)
    if name not in stored:
        stored[name] = secrets.token_urlsafe(32)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(stored, handle)
    return stored[name]


def _seed_first_run() -> None:
    if db.session.scalar(select(DemoUser).limit(1)) is None:
        db.session.add_all(DemoUser(**user) for user in DEMO_USERS)
        db.session.commit()
    store = cdp.store
    for identifier, name in ((DEMO_GROUP, "Demo shop (CDP activation)"), (INTERESTS_GROUP, "Interests (by hand)")):
        try:
            store.create_group(identifier, name)
        except ConflictError:
            continue
        if identifier == INTERESTS_GROUP:
            store.add_members(INTERESTS_GROUP, "newsletter", ["1", "3"], name="Newsletter readers")
        else:
            _receive_the_missed_push()


def _receive_the_missed_push() -> None:
    """The activation's audiences as the CDP pushed them before the push the demo "missed"
    (:data:`~demo.models.DEMO_MISSED_PUSH`): ``flask cdp reconcile`` repairs the rest."""
    state = cdp.state
    with state.engine.begin() as conn:
        group_id = state.store.group_id(conn, DEMO_GROUP)
        for audience, members in DEMO_MISSED_PUSH.items():
            row, _ = membership.ensure_segment(conn, state.tables, group_id, audience, DEMO_AUDIENCES[audience][0])
            membership.add_members(conn, state.tables, row.id, members)
        membership.bump_store_version(conn, state.tables)
