"""The :class:`CDP` Flask extension: registration and the Python API.

``CDP(app, db=db)`` or ``cdp.init_app(app, db=db)`` validates the settings, puts the
``cdp_*`` tables on the host's Flask-SQLAlchemy metadata (or on cdp_bridge's own),
registers the ``cdp`` blueprint and the ``flask cdp`` commands, and keeps everything
per app in ``app.extensions["cdp"]`` (a :class:`~cdp_bridge.state.CDPState`). The
extension object never stores an app, so one object serves the app-factory pattern and
several apps in one process; what its decorators register lives in its
:class:`~cdp_bridge.state.Hooks`, which every app's state shares.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, current_app
from flask.blueprints import BlueprintSetupState
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Engine, event

from .cli import cdp_cli
from .constants import EXTENSION_KEY
from .database_url import database_url
from .errors import ConfigurationError, RegistrationError, ValidationError
from .export.sources import Processor, Source
from .identifiers import visitor_id_or_none
from .jobs.worker import InlineWorker
from .model import Clock
from .privacy.erasure import ErasureReceipt
from .rate_limits import RateLimits, limiter_for
from .reconcile.answers import MembershipListReader
from .redis_guard import RedisGuard
from .settings import CDPSettings, load_settings, process_environment, unknown_keys
from .state import CDPState, Hooks, current_state
from .store import Segment, SegmentStore, define_tables
from .templating.consent_banner import cdp_consent_banner
from .templating.page import current_page
from .templating.privacy import cdp_set_email, forget_visitor, identify_email
from .templating.recommendations import cdp_recommendations, recommendations
from .templating.server_events import track, track_offline_buy
from .templating.tracking import register_tracking_globals
from .tracking.sender import EventSender
from .visitors import as_segments
from .web.admin.views import admin_blueprint
from .web.click import register_click_endpoint
from .web.cookies import set_visitor_cookies
from .web.metrics import register_metrics_endpoint
from .web.track import VIEW_LOCATION as TRACK_VIEW
from .web.track import register_track_endpoint
from .web.webhook import VIEW_LOCATION as WEBHOOK_VIEW
from .web.webhook import register_webhook
from .webhook.formats import PayloadFormat

BLUEPRINT_NAME = "cdp"
DEFAULT_URL_PREFIX = "/cdp"
OWN_DATABASE_FILE = "cdp_bridge.sqlite3"

log = logging.getLogger("cdp_bridge")


#: Seconds a pooled connection of cdp_bridge's own engine is used before it is replaced.
POOL_RECYCLE_SECONDS = 300
#: On a database server, the connections cdp_bridge's own engine keeps per process: each
#: one it opens (as threads need them), up to this many. SQLAlchemy's default pool keeps 5
#: and closes the others as they come back, so a busy worker of more threads opened and
#: closed a connection for most of its requests.
POOL_SIZE = 32


def _engine_options(app: Flask) -> dict[str, Any]:
    """cdp_bridge's own engine's pool: renewed every 5 minutes; on database servers (not
    SQLite, whose in-memory databases take no pool size) it keeps what it opened."""
    options: dict[str, Any] = {"pool_recycle": POOL_RECYCLE_SECONDS}
    urls = [app.config.get("SQLALCHEMY_DATABASE_URI"), *(app.config.get("SQLALCHEMY_BINDS") or {}).values()]
    if all(isinstance(url, str) and not url.startswith("sqlite") for url in urls if url is not None):
        options.update(pool_size=POOL_SIZE, max_overflow=0)
    return options


class CDP:
    """Makes a Flask site an activation target of the Ibexa CDP.

    Settings are read from ``app.config``, then the environment: every key, its default
    and its meaning are in :class:`~cdp_bridge.settings.SettingsSchema` (and the README's
    table, made from it).

    :param app: the app to register on now; or call :meth:`init_app` later.
    :param db: the host's Flask-SQLAlchemy instance, so the ``cdp_*`` tables live on its
        metadata and Flask-Migrate sees them. Without it, the app's registered
        Flask-SQLAlchemy instance is used if there is one, else cdp_bridge brings its
        own (SQLite in the instance folder unless ``SQLALCHEMY_DATABASE_URI`` is set).
    :param register_blueprint: register the ``cdp`` blueprint at ``/cdp``. Pass
        ``False`` to place ``cdp.blueprint`` yourself.
    :param clock: how cdp_bridge waits (the export's backoff); tests pass one that does not.
    """

    def __init__(
        self,
        app: Flask | None = None,
        db: SQLAlchemy | None = None,
        *,
        register_blueprint: bool = True,
        clock: Clock | None = None,
    ) -> None:
        self._db = db
        self._register_blueprint = register_blueprint
        self._own_db: SQLAlchemy | None = None
        self.blueprint = Blueprint(BLUEPRINT_NAME, __name__)
        self.blueprint.record(_remember_url_prefix)
        register_webhook(self.blueprint)
        register_track_endpoint(self.blueprint)
        register_metrics_endpoint(self.blueprint)
        register_click_endpoint(self.blueprint)
        self.blueprint.url_value_preprocessor(_exempt_from_host_csrf)
        # Nested: its own before_request guards every back-office view, whatever name
        # and prefix the host registers ``cdp.blueprint`` under.
        self.blueprint.register_blueprint(admin_blueprint(), url_prefix="/admin")
        self.hooks = Hooks(clock=clock or Clock())
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, db: SQLAlchemy | None = None, *, register_blueprint: bool | None = None) -> None:
        """Register cdp_bridge on ``app``; raises :class:`ConfigurationError` on a bad setting."""
        if EXTENSION_KEY in app.extensions:
            raise RegistrationError(
                "cdp_bridge is already registered on this app. Call init_app once per app;"
                " its state is app.extensions['cdp']."
            )
        environ = process_environment()
        settings = load_settings(app.config, environ)
        for line in unknown_keys(environ, app.config):
            log.warning("%s", line)
        database, owns_db, private_folder = self._database_for(app, db)
        with app.app_context():
            # One breaker for the app's shared Redis: its cache and its limits.
            redis_guard = RedisGuard(settings.site.redis_pause_seconds)
            limits = RateLimits(limiter_for(app, settings.site.rate_limit_storage_uri), settings, redis_guard)
            state = CDPState(hooks=self.hooks, settings=settings, db=database, tables=define_tables(database.metadata),
                             rate_limits=limits, redis_guard=redis_guard)
            app.extensions[EXTENSION_KEY] = state
            if owns_db:
                _tune_sqlite(state.engine)
            if state.uses_inline_worker(testing=app.testing):
                state.inline_worker = InlineWorker(app, state.queue_jobs, ready=state.schema_gate.is_current)
                # Also drains what a previous process left queued, from the first request on.
                app.before_request(state.inline_worker.ensure_started)
        # The sender's threads hold no reference to the app: when it goes, they go.
        weakref.finalize(app, _stop_sender, state.tracking.sender, private_folder)
        app.cli.add_command(cdp_cli)  # also an entry point: flask finds it before loading the app
        register_tracking_globals(app)
        app.jinja_env.globals["cdp_recommendations"] = cdp_recommendations
        app.jinja_env.globals["cdp_consent_banner"] = cdp_consent_banner
        app.jinja_env.globals["cdp_set_email"] = cdp_set_email
        app.after_request(set_visitor_cookies)
        place_blueprint = self._register_blueprint if register_blueprint is None else register_blueprint
        if place_blueprint:
            app.register_blueprint(self.blueprint, url_prefix=DEFAULT_URL_PREFIX)

    def _database_for(self, app: Flask, db: SQLAlchemy | None) -> tuple[SQLAlchemy, bool, str | None]:
        """The Flask-SQLAlchemy instance, whether it is cdp_bridge's own, and the private
        folder of a ``TESTING`` app's temporary database (removed with the app)."""
        chosen = db or self._db or app.extensions.get("sqlalchemy")
        if chosen is not None:
            if "sqlalchemy" not in app.extensions:
                raise ConfigurationError(
                    "the db given to CDP is not registered on this app: call db.init_app(app)"
                    " before cdp.init_app(app)"
                )
            return chosen, False, None
        if self._own_db is None:
            self._own_db = SQLAlchemy()
        configured = app.config.get("SQLALCHEMY_DATABASE_URI")
        if isinstance(configured, str):  # postgres:// as hosts hand it out: the installed driver
            app.config["SQLALCHEMY_DATABASE_URI"] = database_url(configured)
        private_folder = None
        if not configured and not app.config.get("SQLALCHEMY_BINDS"):
            if app.testing:  # a test never writes to the developer's database: a private one, gone with the app
                private_folder = tempfile.mkdtemp(prefix="cdp-bridge-test-")
                folder = private_folder
            else:
                folder = app.instance_path
                os.makedirs(folder, exist_ok=True)
            app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + os.path.join(folder, OWN_DATABASE_FILE)
        # No ping on every checkout (a round trip for each request): a connection a database
        # restart broke fails its first statement, is thrown away with its pool's others, and
        # that request answers 503 (the CDP retries a delivery); connections are also renewed
        # every 5 minutes, before a server or proxy closes them as idle.
        app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", _engine_options(app))
        self._own_db.init_app(app)
        # cdp_bridge's own instance is private: the host may still register its own
        # Flask-SQLAlchemy on the app (SQLAlchemy().init_app(app)) after this.
        del app.extensions["sqlalchemy"]
        return self._own_db, True, private_folder

    def shutdown(self, app: Flask) -> None:
        """Stop every thread cdp_bridge started for ``app`` (the inline worker, the
        server-side sender, after it sent what was queued) and close its connections to
        Raptor. A test's teardown, or a process that stops serving, calls it; the sender
        also stops by itself when the app is garbage-collected."""
        state: CDPState | None = app.extensions.get(EXTENSION_KEY)
        if state is not None:
            state.shutdown()

    # -- registration decorators ------------------------------------------------------

    def admin_guard(self, function: Callable[[], bool]) -> Callable[[], bool]:
        """Register the back office's access check: called with no arguments during each
        back-office request; true admits. Without one the back office is not served (404)."""
        self.hooks.admin_guard = function
        return function

    def user_source(self, function_or_type: Source | str | None = None) -> Any:
        """Register a function yielding the site's users (``id``, ``login``, ``email``, ``name``).

        Use bare (``@cdp.user_source``) or with a type for ``--user-content-type``
        (``@cdp.user_source("customer")``).
        """
        if callable(function_or_type):
            self.hooks.exports.add_source("user", "user", function_or_type)
            return function_or_type
        return self._source_decorator("user", function_or_type or "user")

    def product_source(self, product_type: str) -> Callable[[Source], Source]:
        """Register a function yielding the products of one type (for ``--product-type``)."""
        return self._source_decorator("product", product_type)

    def content_source(self, content_type: str) -> Callable[[Source], Source]:
        """Register a function yielding the content items of one type (for ``--content-type``)."""
        return self._source_decorator("content", content_type)

    def _source_decorator(self, kind: str, type_name: str) -> Callable[[Source], Source]:
        def register(function: Source) -> Source:
            self.hooks.exports.add_source(kind, type_name, function)
            return function

        return register

    def user_item_processor(self, priority: int = 0) -> Callable[[Processor], Processor]:
        """Register ``processor(item, record) -> item`` for user items; higher priority first."""
        return self._processor_decorator("user", priority)

    def product_item_processor(self, priority: int = 0) -> Callable[[Processor], Processor]:
        """Like :meth:`user_item_processor`, for product items."""
        return self._processor_decorator("product", priority)

    def content_item_processor(self, priority: int = 0) -> Callable[[Processor], Processor]:
        """Like :meth:`user_item_processor`, for content items."""
        return self._processor_decorator("content", priority)

    def _processor_decorator(self, kind: str, priority: int) -> Callable[[Processor], Processor]:
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise RegistrationError("priority must be an integer: @cdp.user_item_processor(priority=10)")

        def register(function: Processor) -> Processor:
            self.hooks.exports.add_processor(kind, function, priority)
            return function

        return register

    def recommendation_loader(self, kind: str) -> Callable[[Callable[[list[str]], Any]], Callable[[list[str]], Any]]:
        """Register the function that turns recommended ids of one kind (``product``,
        ``content``… as ``CDP_RECOMMENDATION_MODULES`` names it) into the site's records:
        given the list of ids, it returns a dict id → record, or a list of records with an
        ``id``. Called once per page and module; ids it does not return are skipped."""
        if not isinstance(kind, str) or not kind:
            raise RegistrationError('recommendation_loader needs the kind of record: @cdp.recommendation_loader("product")')

        def register(function: Callable[[list[str]], Any]) -> Callable[[list[str]], Any]:
            self.hooks.recommendation_loaders[kind] = function
            return function

        return register

    def nonce_provider(self, function: Callable[[], str | None]) -> Callable[[], str | None]:
        """Register a function returning the request's CSP nonce for the tracking scripts.

        Without one, Flask-Talisman's ``request.csp_nonce`` is used when present.
        """
        self.hooks.nonce_provider = function
        return function

    def register_payload_format(self, payload_format: PayloadFormat) -> PayloadFormat:
        """Read webhook bodies of another format too; tried before the built-in one."""
        self.hooks.payload_formats.insert(0, payload_format)
        return payload_format

    def membership_list_reader(self, reader: MembershipListReader) -> MembershipListReader:
        """Read the CDP API's member lists of another shape too (``flask cdp reconcile``):
        given the parsed answer, return a :class:`~cdp_bridge.reconcile.answers.MembershipList`,
        or ``None`` to leave it to the next reader and then to the built-in one."""
        self.hooks.membership_list_readers.append(reader)
        return reader

    def user_id_loader(self, function: Callable[[], Any]) -> Callable[[], Any]:
        """Register a function returning the logged-in user's id, or ``None``."""
        self.hooks.user_id_loader = function
        return function

    def consent_loader(self, function: Callable[[], bool]) -> Callable[[], bool]:
        """Register a function returning whether the visitor consented to tracking (true or
        false), for sites whose consent tool is not a simple cookie; it replaces
        ``CDP_CONSENT_COOKIE`` for the main script and for visitor segments."""
        self.hooks.consent_loader = function
        return function

    def visitor_segments_cache(self, cache: Any) -> Any:
        """Cache visitors' segments in ``cache`` (anything with ``get(key)`` and
        ``set(key, value, timeout=seconds)``, such as a Flask-Caching ``Cache`` on Redis
        that every gunicorn worker shares), instead of each process's own memory. Used as
        a decorator, the decorated function is called once, with no arguments, for it."""
        found = cache() if callable(cache) and not hasattr(cache, "get") else cache
        if not (callable(getattr(found, "get", None)) and callable(getattr(found, "set", None))):
            raise RegistrationError("visitor_segments_cache needs an object with get(key) and set(key, value, timeout=...)")
        self.hooks.visitor_segments_cache = found
        return cache

    # -- Python API (each needs an app context) -------------------------------------

    @property
    def state(self) -> CDPState:
        """This extension's state on the current app."""
        return current_state()

    @property
    def store(self) -> SegmentStore:
        """The current app's segment store."""
        return self.state.store

    @property
    def settings(self) -> CDPSettings:
        """The current app's validated settings."""
        return self.state.settings

    def create_tables(self) -> list[str]:
        """Bring the ``cdp_*`` tables to the newest schema revision, as ``flask cdp init-db``
        and ``upgrade-db`` do: made at once in a new database, else upgraded. The revisions
        applied (none for a new or current database)."""
        return self.state.create_tables()

    def segments_for(self, user_id: object) -> list[Segment]:
        """The segments the user belongs to (read once per request, see :meth:`is_in_segment`)."""
        return list(current_page().segments.of_user(user_id).segments)

    def recommendations(self, name: str, count: int | None = None, *, visitor_id: str | None = None,
                        user_id: str | None = None, **parameters: Any) -> list[Any]:
        """A recommendation module's records, as ``cdp_recommendations`` gives them to a
        template (for a JSON endpoint or an email). In a request the visitor (with
        consent) and the user are the request's; ``visitor_id`` / ``user_id`` replace
        them, and outside a request they are the only ones. Raises
        :class:`~cdp_bridge.errors.RecommendationArgumentError` on a bad argument."""
        return recommendations(name, count, visitor_id=visitor_id, user_id=user_id, **parameters)

    def visitor_segments(self, visitor_id: str) -> list[Segment]:
        """A visitor's segments from Raptor's CDP API (cached; none when it cannot answer):
        ``identifier`` is the audience id, ``name`` its name. ``visitor_id`` is the
        visitor's ``rsa`` cookie, a UUID."""
        service = self.state.visitor_segments
        if service is None:
            raise ConfigurationError("visitor segments are not configured: set CDP_MEMBERSHIP_ACTIVATION_ID and"
                                     " CDP_MEMBERSHIP_API_KEY (a CDP API activation in the CDP)")
        checked = visitor_id_or_none(visitor_id)
        if checked is None:
            raise ValidationError("visitor_id must be a UUID, as the rsa cookie holds")
        return list(as_segments(service.memberships(checked)).segments)

    def track(self, event_type: str, *, visitor_id: str | None = None, session_id: str | None = None,
              user_id: object = None, url: str | None = None, **fields: object) -> bool:
        """Send one tracking event from the server (SPEC section 10), in any tracking mode:
        for example a buy from a payment provider's webhook. Returns whether it was queued.

        Inside a request, the visitor comes from its cookies, with its consent (without
        consent nothing is sent). Outside one, pass ``visitor_id`` (the ``rsa`` cookie
        the order recorded), ``session_id``, ``user_id`` and ``url`` yourself: keeping
        events without consent out is then the caller's duty. Fields are the helpers'
        (``id``, ``price``, ``currency``, …); a bad one raises
        :class:`TrackingArgumentError`.
        """
        return track(self.state, event_type, visitor_id=visitor_id, session_id=session_id, user_id=user_id, url=url,
                     fields=fields)

    def track_offline_buy(self, order_id: Any, lines: Any, email: str, currency: Any = None) -> int:
        """Send an order that no browser page saw (a till sale, a payment provider's webhook)
        to Raptor's ``.stream`` endpoint, one ``buy`` per line (``id``, ``price``,
        ``quantity``), attributed by the customer's email (SPEC section 13), through the
        same bounded sender as every server-side event. Every line is checked before any is
        sent: a bad email, order id or line raises :class:`TrackingArgumentError` and
        nothing is sent. Returns the number of events queued."""
        return track_offline_buy(self.state, order_id, lines, email, currency)

    def forget(self, user_id: object = None, email: object = None) -> ErasureReceipt:
        """Forget a person (SPEC section 14): their memberships leave every segment at once,
        an erasure request is recorded holding keyed hashes only, deliveries cannot add
        them back and no event names them for ``CDP_FORGET_HOLD_DAYS``, and Raptor's GDPR
        API is asked to delete each identifier by the queue workers (with
        ``CDP_GDPR_API_KEY``; the receipt says whether). Needs an app context and the
        app's ``SECRET_KEY``; :class:`ValidationError` for an empty call or a malformed id
        or email, and then nothing is changed."""
        return self.state.erasures.forget(user_id, email)

    def forget_visitor(self, response: Response) -> Response:
        """Expire every cookie cdp_bridge set on the current visitor on ``response``, and
        send nothing more for them in this request (consent withdrawn)."""
        return forget_visitor(response)

    def identify_email(self, email: object) -> bool:
        """The site learnt the visitor's email (a purchase, a sign-up): Raptor's ``ruid``
        from now on, after consent (see :func:`.templating.privacy.identify_email`)."""
        return identify_email(email)

    def is_in_segment(self, user_id: object, segment: str) -> bool:
        """Whether the user is in ``segment`` (identifier, name, or ``group/segment``).

        Inside a request the user's segments are read once and every further check is a
        set lookup; a delivery applied meanwhile shows from the next request on.
        """
        return segment in current_page().segments.of_user(user_id)


#: The views a host's Flask-WTF ``CSRFProtect`` must let through, by endpoint suffix.
CSRF_EXEMPT_VIEWS = {".webhook": WEBHOOK_VIEW, ".track": TRACK_VIEW}


def _exempt_from_host_csrf(endpoint: str | None, _values: object) -> None:
    """The CDP authenticates the webhook with credentials and signatures, and the hybrid
    endpoint checks that a request comes from the site's own pages: a host's Flask-WTF
    ``CSRFProtect`` must let both through. URL preprocessors run before every
    ``before_request`` function, so this works whichever of CDP and CSRFProtect the host
    set up first."""
    csrf = current_app.extensions.get("csrf")
    if csrf is None or endpoint is None:
        return
    for suffix, view in CSRF_EXEMPT_VIEWS.items():
        if endpoint.endswith(suffix):
            csrf.exempt(view)


def _remember_url_prefix(setup: BlueprintSetupState) -> None:
    """Note where the blueprint was mounted, for the Base URL ``flask cdp check`` prints."""
    state = setup.app.extensions.get(EXTENSION_KEY)
    if state is not None:
        state.url_prefix = setup.url_prefix or ""


def _stop_sender(sender: EventSender, private_folder: str | None) -> None:
    """When an app goes: its sender's threads, and a test's private database."""
    sender.stop(seconds=1)
    if private_folder is not None:
        shutil.rmtree(private_folder, ignore_errors=True)


def _tune_sqlite(engine: Engine) -> None:
    """WAL and a busy timeout on cdp_bridge's own SQLite file: the web process and its
    inline worker thread write to it concurrently."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
