"""What cdp_bridge keeps for one app (``app.extensions["cdp"]``), and the current app's.

:class:`CDPState` holds an app's validated settings, its database and tables, and the
:class:`Hooks` the host registered on the ``CDP`` object (shared by every app that
object serves). The request, CLI and tracking layers reach everything through
:func:`current_state`; nothing here knows the ``CDP`` class, so no module has to import
the extension back.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from flask import current_app, g, has_request_context
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Engine

from .constants import DEFAULT_TRACKING_PARAMETERS, EXTENSION_KEY, TRACK_EVENTS_PER_MINUTE
from .errors import RegistrationError
from .export.sources import ExportRegistry
from .settings import CDPSettings
from .store import CDPTables, SegmentStore, UserSegments, membership
from .store.senders import record_sender_counts
from .tracking.rate_limit import RateLimit
from .tracking.sender import EventSender
from .tracking.wire import Event, Visitor, check_encodable
from .visitors import CircuitBreaker, MembershipClient, SegmentsCache, VisitorSegmentsService, default_cache
from .webhook.formats import PayloadFormat, default_formats
from .webhook.inbox import DeliveryInbox
from .webhook.worker import InlineWorker


@dataclass
class Hooks:
    """What the host registers with the ``CDP`` object's decorators."""

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
    #: Export sources and item processors.
    exports: ExportRegistry = field(default_factory=ExportRegistry)


@dataclass
class CDPState:
    """cdp_bridge's state for one app."""

    hooks: Hooks
    settings: CDPSettings
    db: SQLAlchemy
    tables: CDPTables
    url_prefix: str | None = None
    tracking_warning_logged: bool = False
    #: How exports wait between retries; tests put a recording function here.
    export_sleep: Callable[[float], None] = time.sleep
    inline_worker: InlineWorker | None = None
    #: One store per engine (an app may be served by several, e.g. in tests).
    _stores: WeakKeyDictionary[Engine, SegmentStore] = field(default_factory=WeakKeyDictionary, repr=False)
    _visitor_segments: VisitorSegmentsService | None = field(default=None, repr=False)
    _lazy_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _sender: EventSender | None = field(default=None, repr=False)
    #: Hybrid mode: events a visitor may post to /cdp/track a minute, in this process.
    track_rate_limit: RateLimit = field(default_factory=lambda: RateLimit(TRACK_EVENTS_PER_MINUTE), repr=False)
    #: ... and a client address (CDP_TRACK_ADDRESS_LIMIT_PER_MINUTE; made in ``__post_init__``).
    track_address_rate_limit: RateLimit = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.track_address_rate_limit = RateLimit(self.settings.track_address_limit_per_minute)

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
            protected = self.settings.protected_group_identifiers
            store = self._stores[engine] = SegmentStore(engine, self.tables, protected)
        return store

    @property
    def visitor_segments(self) -> VisitorSegmentsService | None:
        """The CDP API for visitors' segments, when configured; made at its first use, so
        a cache registered after ``init_app`` is the one used."""
        settings = self.settings
        if not settings.visitor_segments_enabled or self._visitor_segments is not None:
            return self._visitor_segments  # every request after the first: no lock
        with self._lazy_lock:
            if self._visitor_segments is None:
                assert settings.membership_activation_id is not None and settings.membership_api_key is not None
                client = MembershipClient(settings.membership_api_url, settings.membership_activation_id,
                                          settings.membership_api_key, settings.membership_timeout,
                                          settings.membership_max_bytes)
                breaker = CircuitBreaker(settings.membership_failures_before_pause, settings.membership_pause_seconds)
                cache = self.hooks.visitor_segments_cache or default_cache(settings.visitor_segments_cache_ttl)
                self._visitor_segments = VisitorSegmentsService(client, breaker, cache, settings.visitor_segments_cache_ttl)
            return self._visitor_segments

    @property
    def sender(self) -> EventSender:
        """The server-side tracking sender of this app (its thread starts with the first event
        of each process); each minute it records its counts for ``flask cdp check``, under a
        name with the reporting process's pid, so workers forked after it was made each keep
        a row of their own."""
        if self._sender is not None:
            return self._sender  # every event after the first: no lock
        with self._lazy_lock:
            if self._sender is None:
                engine, senders, token = self.engine, self.tables.tracking_senders, uuid.uuid4().hex[:8]
                self._sender = EventSender(on_report=lambda counts: record_sender_counts(
                    engine, senders, f"{socket.gethostname()}:{os.getpid()}:{token}", counts))
            return self._sender

    def send_events(self, events: list[tuple[str, dict[str, str]]], visitor: Visitor) -> None:
        """Queue server-side events (SPEC section 10), all or none: each is checked before
        any is queued; their URLs are built and sent off the request path."""
        settings = self.settings
        assert settings.account_number is not None
        for _, params in events:
            check_encodable(params, visitor)
        for event_type, params in events:
            moved = settings.tracking_parameters.get(event_type, {})
            basket = moved.get("basket_content", DEFAULT_TRACKING_PARAMETERS["basket_content"])
            self.sender.enqueue(Event(settings.server_tracking_url, settings.account_number, params, visitor,
                                      keep_empty=frozenset({basket})))

    @property
    def inbox(self) -> DeliveryInbox:
        """The delivery inbox on this app's engine (needs an app context)."""
        return DeliveryInbox(self.engine, self.tables, bulk_async_threshold=self.settings.bulk_async_threshold,
                             lease_seconds=self.settings.worker_lease_seconds)

    def user_segments(self, user_id: object) -> UserSegments:
        """A user's segments, read from the database at most once per request: every
        ``cdp_in_segment`` / ``cdp_user_segments`` / ``cdp.is_in_segment`` of a page is
        answered from the set the first one loaded. Outside a request, read each time.

        In a request the read joins the request's own database connection (the
        Flask-SQLAlchemy session's, which the page's other queries use too): one indexed
        query for the user's segment ids, named from what the process keeps while the
        store version stands (see :mod:`cdp_bridge.store.user_segments`).
        """
        if not has_request_context() or isinstance(user_id, bool) or not isinstance(user_id, (str, int)):
            return self.store.user_segments(user_id)
        request_globals = g._get_current_object()  # one proxy lookup, not one per use
        loaded: dict[object, UserSegments] | None = request_globals.get("_cdp_user_segments")
        if loaded is None:
            loaded = request_globals._cdp_user_segments = {}
        found = loaded.get(user_id)
        if found is None:
            connection = self.db.session.connection(bind_arguments={"bind": self.engine})
            found = loaded[user_id] = self.store.user_segments(user_id, connection=connection)
        return found

    def create_tables(self) -> None:
        """Create the ``cdp_*`` tables that do not exist yet (needs an app context)."""
        self.db.metadata.create_all(self.engine, tables=self.tables.all())
        with self.engine.begin() as conn:
            membership.ensure_store_version(conn, self.tables)

    def uses_inline_worker(self) -> bool:
        """CDP_INLINE_WORKER, or by default: on with SQLite, off otherwise."""
        if self.settings.inline_worker is not None:
            return self.settings.inline_worker
        return self.engine.dialect.name == "sqlite"

    def wake_inline_worker(self) -> None:
        """Have the inline worker (if this app uses one) look at the queue now."""
        if self.inline_worker is not None:
            self.inline_worker.wake()


def current_state() -> CDPState:
    """``app.extensions["cdp"]`` of the current app; a clear error if it is not registered."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]  # the proxy's app: one lookup, not two
    state: CDPState | None = app.extensions.get(EXTENSION_KEY)
    if state is None:
        raise RegistrationError("cdp_bridge is not registered on the current app: call cdp.init_app(app)")
    return state
