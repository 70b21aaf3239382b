"""``cdp_recommendations(name, count=None, **parameters)`` in templates and
``cdp.recommendations(…)`` in Python: a module's recommendations as the site's own records.

The module's query parameters are filled from the request (the visitor's ``rsa`` cookie,
only with consent; the logged-in user) and from the call (``product_id``,
``content_id``, ``category``). A module that needs a visitor or a user the request does
not have is not called: the answer is no records. The ids go to the host's
``@cdp.recommendation_loader(kind)`` once per page and module; ids it does not return
are skipped, the others keep Raptor's order.

In a template nothing breaks the page: an API that fails gives no records (one WARNING
per episode); a bad argument or a missing loader gives no records and one ERROR per
process and module (in debug, the error). From Python, a bad argument raises
:class:`~cdp_bridge.errors.RecommendationArgumentError`.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from typing import Any
from urllib.parse import urlencode

from flask import current_app
from markupsafe import Markup, escape

from ..constants import CLICK_PATH, RECOMMENDATION_CALLS_KEPT
from ..errors import RecommendationArgumentError, TrackingArgumentError
from ..identifiers import text_problem
from ..model import RecommendationModule
from ..recommendations.service import CheckedCall
from ..state import CDPState
from .page import Page, current_page

log = logging.getLogger("cdp_bridge.recommendations")

#: The keyword arguments a page may pass: the sources a module's parameters read besides the visitor and user.
PASSED_SOURCES = ("product_id", "content_id", "category")
MAX_COUNT = 100


def recommendations(name: str, count: int | None = None, *, visitor_id: str | None = None, user_id: str | None = None,
                    **parameters: object) -> list[Any]:
    """The module's recommendations as the site's records (see the module's docstring).

    ``visitor_id`` / ``user_id`` stand in for the request's (outside a request, say in an
    email job, they are the only ones)."""
    return [record for _, record in _recommended(name, count, visitor_id, user_id, parameters)]


def _recommended(name: str, count: int | None, visitor_id: str | None, user_id: str | None,
                 parameters: Mapping[str, Any], page: Page | None = None) -> tuple[tuple[str, Any], ...]:
    """(recommended id, the site's record) pairs, kept for the page."""
    page = page or current_page()
    state = page.state
    call = _checked_call(state, page, name, count, visitor_id, user_id, parameters)
    if call is None:
        return ()
    module, count, query, key = call
    blocks = page.recommendations
    found = blocks.get(key)
    if found is None:
        service = state.recommendations
        assert service is not None
        found = blocks[key] = _records(state, module, service.recommend(module, count, query, key=key))
    return found


def _checked_call(state: CDPState, page: Page, name: str, count: int | None, visitor_id: str | None,
                  user_id: str | None, parameters: Mapping[str, Any]) -> CheckedCall | None:
    """The block's module, count, query parameters and answer's cache key (by which the
    page keeps the block too); ``None`` when the module needs a visitor or a user there is
    not. A module whose query the arguments alone make is kept by its plain arguments
    (:attr:`~cdp_bridge.recommendations.RecommendationsService.checked_calls`)."""
    service = state.recommendations
    kept = service.checked_calls if service is not None and visitor_id is None and user_id is None else None
    arguments = _plain_arguments(name, count, parameters) if kept is not None else None
    if kept is not None and arguments is not None and (call := kept.get(arguments)) is not None:
        return call
    module = _module(state, name)
    count = _count(module, count)
    query = _query(module, page, visitor_id, user_id, _passed(parameters))
    if query is None:
        return None
    assert service is not None
    call = (module, count, query, service.key(module, count, query))
    if kept is not None and arguments is not None and not module.reads_viewer:
        if len(kept) >= RECOMMENDATION_CALLS_KEPT:
            kept.clear()
        kept[arguments] = call
    return call


def _plain_arguments(name: object, count: object, parameters: Mapping[str, Any]) -> Hashable | None:
    """The arguments as a key of the checked calls when they are text (and a whole
    number), else ``None``: values equal across types (``1``, ``1.0``, ``True``) must not
    share a checked call."""
    if type(name) is not str or (count is not None and type(count) is not int):
        return None
    items = tuple(parameters.items())
    for _, value in items:
        if type(value) is not str:
            return None
    return name, count, items


class Recommended:
    """A host's record as a recommendation block gives it to a template: everything of the
    record (``item.name``, ``item["name"]``), and what its link needs to send an
    ``itemclick`` with the module's name (SPEC section 13):
    ``<a href="{{ item.cdp_href(url) }}"{{ item.cdp_click }}>``. With a browser script
    (client and hybrid modes) the link keeps its URL and carries ``data-cdp-module`` /
    ``data-cdp-item``, which the head script's click listener sends; in server mode the
    link goes through ``/cdp/click``, which sends the click and redirects to the URL."""

    __slots__ = ("record", "module", "item_id", "_click_path", "_fields")

    def __init__(self, record: Any, module: str, item_id: str, click_path: str | None) -> None:
        self.record, self.module, self.item_id, self._click_path = record, module, item_id, click_path
        #: A mapping record's keys answer attribute look-ups: asked once here, not at each look-up.
        self._fields: Mapping[str, Any] | None = record if type(record) is dict or isinstance(record, Mapping) else None

    def __getattr__(self, name: str) -> Any:
        fields = self._fields
        if fields is not None and name in fields:
            return fields[name]
        return getattr(self.record, name)

    def __getitem__(self, key: Any) -> Any:
        return self.record[key]

    def __repr__(self) -> str:
        return f"Recommended({self.record!r}, module={self.module!r})"

    @property
    def cdp_click(self) -> Markup:
        """`` data-cdp-module="…" data-cdp-item="…"`` for the head script; nothing in server mode."""
        if self._click_path is not None:
            return Markup("")
        return Markup(f' data-cdp-module="{escape(self.module)}" data-cdp-item="{escape(self.item_id)}"')

    def cdp_href(self, url: str) -> str:
        """The link's URL: ``url``, or in server mode ``/cdp/click?…&to=url`` (``url`` a path on the site)."""
        if self._click_path is None:
            return url
        return f"{self._click_path}?{urlencode({'m': self.module, 'i': self.item_id, 'to': url})}"


def cdp_recommendations(name: str, count: int | None = None, **parameters: Any) -> list[Any]:
    """The Jinja global: as :func:`recommendations`, each record a :class:`Recommended`
    carrying its click data; a bad argument or a missing loader gives no records and one
    ERROR instead of an error page (in debug, the error)."""
    page = current_page()
    try:
        found = _recommended(name, count, None, None, parameters, page)
    except (RecommendationArgumentError, TrackingArgumentError) as exc:
        if current_app.debug:
            raise
        problem = f"cdp_recommendations({str(name)[:64]!r}): no records: {exc}"
        page.state.error_once(log, problem)
        return []
    state = page.state
    click_path = f"{state.url_prefix or ''}{CLICK_PATH}" if state.mode.clicks_through_site else None
    return [Recommended(record, name, item_id, click_path) for item_id, record in found]


def _module(state: CDPState, name: object) -> RecommendationModule:
    if state.recommendations is None:
        raise RecommendationArgumentError("no recommendation modules are configured (CDP_RECOMMENDATION_MODULES)")
    module = state.settings.recommendations_api.modules.get(name) if isinstance(name, str) else None
    if module is None:
        known = ", ".join(sorted(state.settings.recommendations_api.modules))
        raise RecommendationArgumentError(f"no module named {str(name)[:64]!r} in CDP_RECOMMENDATION_MODULES ({known})")
    return module


def _count(module: RecommendationModule, count: object) -> int:
    if count is None:
        return module.count
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise RecommendationArgumentError(f"count must be a whole number from 1 to {MAX_COUNT}, not {count!r:.40}")
    return count


def _passed(parameters: Mapping[str, Any]) -> dict[str, str]:
    """The page's own parameters, checked: known names, text or whole numbers."""
    passed: dict[str, str] = {}
    for name, value in parameters.items():
        if name not in PASSED_SOURCES:
            raise RecommendationArgumentError(f"unknown argument {name[:40]!r}; expected " + ", ".join(PASSED_SOURCES))
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise RecommendationArgumentError(f"{name} must be text or a whole number")
        text = str(value).strip()
        problem = text_problem(text, max_length=255) if text else "must not be empty"
        if problem is not None:
            raise RecommendationArgumentError(f"{name} {problem}")
        passed[name] = text
    return passed


def _query(module: RecommendationModule, page: Page, visitor_id: str | None, user_id: str | None,
           passed: dict[str, str]) -> dict[str, str] | None:
    """The module's query parameters; ``None`` when it needs a visitor or a user there is not."""
    sources: Mapping[str, str | None] = passed
    if module.reads_viewer:  # a visitor or a user besides the page's own arguments
        sources = dict(passed)
        if "visitor" in module.needs:
            sources["visitor"] = visitor_id if visitor_id is not None else (page.visitor_id if page.in_request else None)
        if "user" in module.needs:
            sources["user"] = user_id if user_id is not None else page.user_id
    query: dict[str, str] = {}
    for parameter, source in module.parameters.items():
        value = sources.get(source)
        if value is None:
            if source in ("visitor", "user"):
                return None  # nobody to recommend for (no consent, not logged in): no call
            raise RecommendationArgumentError(f"module {module.name!r} reads {source}: pass {source}=…")
        query[parameter] = value
    return query


def _records(state: CDPState, module: RecommendationModule, ids: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    """(id, the loader's record) for the recommended ids, in Raptor's order: the loader is
    asked for these ids only (the first ``count`` items, a product's variants one)."""
    if not ids:
        return ()
    loader = state.hooks.recommendation_loaders.get(module.kind)
    if loader is None:
        raise RecommendationArgumentError(f"no @cdp.recommendation_loader({module.kind!r}) for module {module.name!r}")
    loaded = loader(list(ids))
    if type(loaded) is dict or isinstance(loaded, Mapping):
        pairs = [(item_id, loaded[item_id]) for item_id in ids if item_id in loaded]
        if len(pairs) == len(ids):  # keyed by the ids as asked: nothing to rebuild
            return tuple(pairs)
        by_id = {str(key): record for key, record in loaded.items()}  # numbers for keys, or some missing
    else:
        by_id = {_record_id(record): record for record in loaded}
    return tuple([(item_id, by_id[item_id]) for item_id in ids if item_id in by_id])


def _record_id(record: object) -> str:
    value = record.get("id") if isinstance(record, Mapping) else getattr(record, "id", None)
    if value is None:
        raise RecommendationArgumentError("a recommendation loader's list must hold records with an id")
    return str(value)
