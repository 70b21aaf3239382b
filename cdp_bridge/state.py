"""What cdp_bridge keeps for one app (``app.extensions["cdp"]``), and the current app's.

:class:`CDPState` holds an app's validated settings, its database and tables, the
:class:`Hooks` the host registered on the ``CDP`` object (shared by every app that
object serves), and the handles of the app's services, each made once at registration.
Rules live in the services' own packages; nothing here knows the ``CDP`` class or a
request. The request and CLI layers reach everything through :func:`current_state`.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from flask import Flask, current_app
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Engine

from .constants import EXTENSION_KEY, SERVER_TRACKING_TIMEOUT
from .deliveries.inbox import MAX_ATTEMPTS, DeliveryInbox
from .errors import ConfigurationError, RegistrationError
from .export.sources import ExportRegistry
from .jobs.worker import InlineWorker, Job
from .model import Clock
from .privacy.deletions import GdprDeletions
from .privacy.erasure import ErasureRequests, hash_key
from .rate_limits import RateLimits
from .recommendations import RecommendationsService
from .recommendations import service as recommendations
from .reconcile.answers import MembershipListReader
from .reconcile.client import CdpApiClient
from .reconcile.runner import Reconciler
from .reconcile.schedule import ScheduledReconcile
from .redis_guard import RedisGuard
from .settings import CDPSettings
from .shared_cache import SharedCache
from .store import CDPTables, SegmentStore, schema
from .store.history import HistoryPruning
from .store.senders import SenderReports
from .tracking.modes import MODES, ModeRules
from .tracking.outbox import BuyOutbox
from .tracking.service import TrackingService
from .visitors import SegmentsCache, VisitorSegmentsService
from .visitors import service as visitors
from .webhook.formats import PayloadFormat, default_formats

log = logging.getLogger("cdp_bridge")

#: Problems :meth:`CDPState.error_once` remembers, at most.
MAX_LOGGED_PROBLEMS = 1000


@dataclass
class Hooks:
    """What the host registers with the ``CDP`` object's decorators and arguments."""

    #: ``@cdp.admin_guard``: called during each back-office request; true admits.
    admin_guard: Callable[[], bool] | None = None
    #: ``@cdp.user_id_loader``: the logged-in user's id, or ``None``.
    user_id_loader: Callable[[], Any] | None = None
    #: ``@cdp.nonce_provider``: the request's CSP nonce.
    nonce_provider: Callable[[], str | None] | None = None
    #: ``@cdp.consent_loader``: whether the visitor consented to tracking (else the consent cookie says).
    consent_loader: Callable[[], bool] | None = None
    #: ``@cdp.visitor_segments_cache``: a cache with get/set shared by the app's processes.
    visitor_segments_cache: SegmentsCache | None = None
    #: Webhook body formats, tried in order (``cdp.register_payload_format``).
    payload_formats: list[PayloadFormat] = field(default_factory=default_formats)
    #: ``@cdp.recommendation_loader(kind)``: ids → the site's records (a dict by id, or records with an ``id``).
    recommendation_loaders: dict[str, Callable[[list[str]], Any]] = field(default_factory=dict)
    #: ``@cdp.membership_list_reader``: readers of the CDP API's member lists, tried first.
    membership_list_readers: list[MembershipListReader] = field(default_factory=list)
    #: Export sources and item processors.
    exports: ExportRegistry = field(default_factory=ExportRegistry)
    #: How cdp_bridge waits (``CDP(clock=…)``): the export's backoff between retries.
    clock: Clock = field(default_factory=Clock)


@dataclass
class CDPState:
    """cdp_bridge's state for one app."""

    hooks: Hooks
    settings: CDPSettings
    db: SQLAlchemy
    tables: CDPTables
    #: Hybrid's /cdp/track limits and the webhook's failed-authentication limit, on Flask-Limiter.
    rate_limits: RateLimits
    #: The breaker in front of the app's shared Redis (the cache's and the limits').
    redis_guard: RedisGuard
    #: Where the app mounted the ``cdp`` blueprint (Flask tells it when the blueprint is registered).
    url_prefix: str | None = None
    inline_worker: InlineWorker | None = None
    #: One store per engine (an app may be served by several, e.g. in tests).
    _stores: WeakKeyDictionary[Engine, SegmentStore] = field(default_factory=WeakKeyDictionary, repr=False)
    #: The delivery inbox, and the erasure requests, of each engine and SECRET_KEY (see :attr:`inbox`).
    _inboxes: dict[tuple[Engine, str | bytes | None], DeliveryInbox] = field(default_factory=dict, repr=False)
    _erasures: dict[tuple[Engine, str | bytes], ErasureRequests] = field(default_factory=dict, repr=False)
    visitor_segments: VisitorSegmentsService | None = field(init=False, repr=False)
    recommendations: RecommendationsService | None = field(init=False, repr=False)
    #: CDP_CACHE_URL's Redis cache, shared by the visitor segments and the recommendations.
    shared_cache: SharedCache | None = field(init=False, repr=False)
    tracking: TrackingService = field(init=False, repr=False)
    #: Whether the tables are at the schema revision this code writes (asked until they are).
    schema_gate: schema.SchemaGate = field(init=False, repr=False)
    #: What the tracking mode renders, sets and sends (its row, chosen once).
    mode: ModeRules = field(init=False, repr=False)
    #: The problems already logged once in this process (a template's on every page).
    _logged: set[str] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        """Made in an app context (``init_app``): the services are made once, here."""
        settings = self.settings
        self.mode = MODES[settings.tracking.mode]
        self.shared_cache = (SharedCache(settings.site.cache_url, settings.membership_api.cache_ttl, self.redis_guard)
                             if settings.site.cache_url else None)
        cache = _host_or_shared_cache(self.hooks, self.shared_cache)
        self.visitor_segments = visitors.service_from(settings.membership_api, cache)
        self.recommendations = recommendations.service_from(settings.recommendations_api, settings.site.account_number,
                                                              cache)
        self.schema_gate = schema.SchemaGate(self.engine)
        engine, token = self.engine, uuid.uuid4().hex[:8]
        # The sender reports from its own thread, with no app context: it keeps the engine.
        # Each process reports under a name with its pid, so workers forked after this
        # was made each keep a row of their own.
        self.tracking = TrackingService(self.settings, on_report=SenderReports(
            engine, self.tables, lambda: f"{socket.gethostname()}:{os.getpid()}:{token}"),
            buy_outbox=self.buy_outbox_or_none, wake=self.wake_inline_worker)

    def error_once(self, log: logging.Logger, problem: str) -> None:
        """Log ``problem`` at ERROR the first time this process meets it: a template that
        calls a helper wrongly would log on every page."""
        if problem in self._logged:
            return
        if len(self._logged) < MAX_LOGGED_PROBLEMS:  # beyond it (problems that hold values), each is logged
            self._logged.add(problem)
        log.error("%s (logged once per process)", problem)

    @property
    def engine(self) -> Engine:
        """The engine of this app's database (needs an app context)."""
        return self.db.engine

    @property
    def store(self) -> SegmentStore:
        """The segment store on this app's engine (needs an app context)."""
        engine = self.engine
        store = self._stores.get(engine)
        if store is None:
            protected = self.settings.webhook.protected_group_identifiers
            store = self._stores[engine] = SegmentStore(engine, self.tables, protected)
        return store

    @property
    def inbox(self) -> DeliveryInbox:
        """The delivery inbox on this app's engine (needs an app context), made once per
        engine (and ``SECRET_KEY``, the key of the erasure holds): a webhook request made
        one, with its queue and its erasure requests, every time."""
        secret = current_app.config.get("SECRET_KEY")
        key = (self.engine, secret if isinstance(secret, str | bytes) else None)
        inbox = self._inboxes.get(key)
        if inbox is None:
            inbox = self._inboxes[key] = self.make_inbox(self.settings.worker.lease_seconds)
        return inbox

    def make_inbox(self, lease_seconds: int) -> DeliveryInbox:
        return DeliveryInbox(self.engine, self.tables, bulk_async_threshold=self.settings.webhook.bulk_async_threshold,
                             lease_seconds=lease_seconds, holds=self.erasures_or_none())

    def erasures_or_none(self) -> ErasureRequests | None:
        """The erasure requests on this app's engine (needs an app context); ``None`` without
        the app's ``SECRET_KEY``, the key of their hashes (then none can have been made).
        Made once per engine and key: a tracked page of a logged-in user asks for them."""
        secret = current_app.config.get("SECRET_KEY")
        if not isinstance(secret, str | bytes) or not secret:
            return None
        key = (self.engine, secret)
        erasures = self._erasures.get(key)
        if erasures is None:
            gdpr = self.settings.gdpr_api
            erasures = self._erasures[key] = ErasureRequests(
                self.engine, self.tables, hash_key(secret), hold_days=self.settings.privacy.forget_hold_days,
                ask_raptor=gdpr.enabled and self.settings.site.account_number is not None)
        return erasures

    def is_held(self, *identifiers: str) -> bool:
        """Whether any of ``identifiers`` was forgotten within the hold window: no event may
        name them (one indexed read; none without ``SECRET_KEY``, as no request can exist)."""
        erasures = self.erasures_or_none() if identifiers else None
        return erasures is not None and erasures.is_held(*identifiers)

    @property
    def erasures(self) -> ErasureRequests:
        """The erasure requests; :class:`ConfigurationError` without ``SECRET_KEY``."""
        found = self.erasures_or_none()
        if found is None:
            raise ConfigurationError("SECRET_KEY: required to forget a person (the key of the identifiers' hashes)")
        return found

    def buy_outbox_or_none(self, lease_seconds: int | None = None) -> BuyOutbox | None:
        """The buy outbox on this app's engine with CDP_TRACKING_BUY_OUTBOX on, else ``None``
        (needs an app context). Its workers send with the server-side sender's timeout."""
        if not self.settings.tracking.buy_outbox:
            return None
        return BuyOutbox(self.engine, self.tables.buy_outbox, self.settings.tracking.server_url,
                         lease_seconds=lease_seconds or self.settings.worker.lease_seconds, max_attempts=MAX_ATTEMPTS,
                         timeout=SERVER_TRACKING_TIMEOUT)

    def queue_jobs(self, lease_seconds: int | None = None) -> list[Job]:
        """What the queue workers run for this app, each over its own leased queue: the
        delivery inbox, the buy outbox when it is on, and Raptor's ``DeleteUser`` calls with
        ``CDP_GDPR_API_KEY``; then the scheduled work: the history's pruning, the reconcile
        with ``CDP_RECONCILE_SCHEDULE`` (needs an app context). A new
        kind of queued work is one more job here; the worker itself is unchanged."""
        lease = lease_seconds or self.settings.worker.lease_seconds
        jobs: list[Job] = [self.make_inbox(lease)]
        outbox = self.buy_outbox_or_none(lease)
        if outbox is not None:
            jobs.append(outbox)
        account = self.settings.site.account_number
        if self.settings.gdpr_api.enabled and account is not None:
            jobs.append(GdprDeletions(self.engine, self.tables, self.settings.gdpr_api, account, lease_seconds=lease,
                                      give_up_days=self.settings.privacy.forget_give_up_days))
        jobs.append(HistoryPruning(self.engine, self.tables, self.settings.site.history_days))
        schedule = self.settings.reconcile.schedule
        if schedule is not None:
            if self.settings.membership_api.enabled:
                jobs.append(ScheduledReconcile(self.engine, self.tables, schedule,
                                               sorted(self.settings.webhook.protected_group_identifiers), self.reconciler))
            else:
                log.warning("CDP_RECONCILE_SCHEDULE is set but the CDP API is not (CDP_MEMBERSHIP_ACTIVATION_ID and"
                            " CDP_MEMBERSHIP_API_KEY): no scheduled reconcile")
        return jobs

    def reconciler(self) -> Reconciler:
        """A reconcile from the CDP API activation of CDP_MEMBERSHIP_* (SPEC section 15)."""
        api = self.settings.membership_api
        if not api.enabled or api.activation_id is None or api.key is None:
            raise ConfigurationError("reconcile needs the CDP API activation: set CDP_MEMBERSHIP_ACTIVATION_ID and"
                                     " CDP_MEMBERSHIP_API_KEY")
        client = CdpApiClient(api.url, api.activation_id, api.key, self.settings.reconcile.max_bytes)
        return Reconciler(self.engine, self.tables, client, list(self.hooks.membership_list_readers))

    def create_tables(self, report: Callable[[str], None] = lambda line: None) -> list[str]:
        """Bring the ``cdp_*`` tables to the newest schema revision: a new database is made
        at it, an older one upgraded (needs an app context). The revisions applied."""
        return schema.upgrade(self.engine, self.tables, report)

    def uses_inline_worker(self, *, testing: bool = False) -> bool:
        """CDP_INLINE_WORKER, or by default: on with SQLite, off otherwise, and off under
        ``TESTING`` (a test app starts no thread it was not asked for)."""
        if self.settings.worker.inline is not None:
            return self.settings.worker.inline
        return self.engine.dialect.name == "sqlite" and not testing

    def shutdown(self) -> None:
        """Stop the threads started for this app (the inline worker; the sender, once it
        sent what was queued) and close the API clients' connections. Safe to call twice."""
        if self.inline_worker is not None:
            self.inline_worker.stop()
        self.tracking.sender.stop()
        for service in (self.visitor_segments, self.recommendations):
            if service is not None:
                service.client.close()

    def wake_inline_worker(self) -> None:
        """Have the inline worker (if this app uses one) look at the queue now."""
        if self.inline_worker is not None:
            self.inline_worker.wake()


def _host_or_shared_cache(hooks: Hooks, shared: SharedCache | None) -> Callable[[], SegmentsCache | None]:
    """The cache of the API clients' answers, looked up at each use (so a cache the host
    registers after ``init_app`` is the one used): the host's own
    (``@cdp.visitor_segments_cache``) wins over CDP_CACHE_URL's; ``None`` for each
    process's own."""
    return lambda: shared if hooks.visitor_segments_cache is None else hooks.visitor_segments_cache


def current_state() -> CDPState:
    """``app.extensions["cdp"]`` of the current app; a clear error if it is not registered."""
    return state_of(current_app)


def state_of(app: Flask) -> CDPState:
    """``app.extensions["cdp"]``; a clear error if it is not registered (where the app is
    at hand, as on a request's context, without the ``current_app`` proxy's look-up)."""
    state: CDPState | None = app.extensions.get(EXTENSION_KEY)
    if state is None:
        raise RegistrationError("cdp_bridge is not registered on the current app: call cdp.init_app(app)")
    return state
