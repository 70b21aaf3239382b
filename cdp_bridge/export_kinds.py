"""The kinds of data export (SPEC section 6), one row each: everything that differs between
users, products and content lives here, so adding a kind is one row (plus its source
decorator on ``CDP`` and its tests and docs).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExportKind:
    """One kind of record the site streams to Raptor."""

    #: ``user``, ``product`` or ``content``: the word in CDP_EXPORT_SCHEDULE and the registry.
    name: str
    #: The ``flask cdp`` command that streams it.
    command: str
    #: The command's option that picks one registered type.
    type_option: str
    #: How the host registers a source of it (for the error when none is registered).
    decorator: str
    #: The setting holding its stream id, and the one mapping each type to a stream of its own.
    stream_id_key: str
    type_stream_ids_key: str | None
    #: The keys an item is read with, in this order (a key the record lacks is left out).
    base_keys: tuple[str, ...]
    #: Whether its sources are registered per type (products and content); users have one.
    typed: bool = True


EXPORT_KINDS: dict[str, ExportKind] = {kind.name: kind for kind in (
    ExportKind("user", "stream-user-data", "--user-content-type", "@cdp.user_source", "CDP_USER_STREAM_ID", None,
               ("id", "login", "email", "name"), typed=False),
    ExportKind("product", "stream-product-data", "--product-type", '@cdp.product_source("TYPE")', "CDP_PRODUCT_STREAM_ID",
               "CDP_PRODUCT_STREAM_IDS",
               ("id", "type", "name", "price", "currency", "brand", "category_path", "in_stock", "url")),
    ExportKind("content", "stream-content-data", "--content-type", '@cdp.content_source("TYPE")', "CDP_CONTENT_STREAM_ID",
               "CDP_CONTENT_STREAM_IDS", ("id", "type", "name", "url", "category_path", "published_at")),
)}
