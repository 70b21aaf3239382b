"""What a site exports: registered record sources, item processors, and item building.

The host registers functions that yield its records (``@cdp.user_source``,
``@cdp.product_source("pet_food")``, ``@cdp.content_source("article")``) and, optionally,
processors that add or change keys of each item (``@cdp.user_item_processor(priority=10)``,
called as ``processor(item, record)``, higher priority first). Each record becomes an item
with a fixed set of base keys, so the Data Manager's schema is the same on every run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from .constants import EXPORT_KINDS
from .errors import CDPError, ValidationError

Source = Callable[[], Iterable[Any]]
Processor = Callable[[dict[str, Any], Any], dict[str, Any]]
Skip = Callable[[Any, str, Exception], None]

#: The keys every item of a kind has, in this order (missing values are null).
BASE_KEYS: dict[str, tuple[str, ...]] = {
    "user": ("id", "login", "email", "name"),
    "product": ("id", "type", "name", "price", "currency", "brand", "category_path", "in_stock", "url"),
    "content": ("id", "type", "name", "url", "category_path", "published_at"),
}


class UnsendableRecord(CDPError):
    """A record that cannot become a valid item (no id, a value JSON cannot hold)."""


@dataclass(order=True)
class _RankedProcessor:
    sort_key: tuple[int, int]
    function: Processor = field(compare=False)


@dataclass
class ExportRegistry:
    """Sources by kind and type, and item processors by kind."""

    sources: dict[str, dict[str, Source]] = field(default_factory=lambda: {kind: {} for kind in EXPORT_KINDS})
    processors: dict[str, list[_RankedProcessor]] = field(default_factory=lambda: {kind: [] for kind in EXPORT_KINDS})

    def add_source(self, kind: str, type_name: str, source: Source) -> None:
        if not isinstance(type_name, str) or not type_name:
            raise CDPError(f"{kind} source type must be a non-empty string")
        self.sources[kind][type_name] = source

    def add_processor(self, kind: str, processor: Processor, priority: int) -> None:
        ranked = self.processors[kind]
        # Higher priority first; equal priorities keep their registration order.
        ranked.append(_RankedProcessor((-priority, len(ranked)), processor))
        ranked.sort()

    def selected_sources(self, kind: str, type_name: str | None) -> dict[str, Source]:
        """The sources to read: one type, or all of the kind's."""
        registered = self.sources[kind]
        if type_name is None:
            return dict(registered)
        if type_name not in registered:
            known = ", ".join(sorted(registered)) or "none registered"
            raise ValidationError(f"no {kind} source of type {type_name!r} (registered: {known})")
        return {type_name: registered[type_name]}

    def items(self, kind: str, type_name: str, records: Iterable[Any], skip: Skip) -> Iterator[dict[str, Any]]:
        """The item of each record; a record that cannot become one goes to ``skip``.

        Without processors, values are not checked here: the batch encoder converts dates
        and decimals and refuses the rest (see :func:`json_default`), and the rare batch
        it refuses is checked item by item. This loop runs once per record.
        """
        processors = [ranked.function for ranked in self.processors[kind]]
        readers: dict[type, Callable[[Any], dict[str, Any]]] = {}
        needs_type = kind != "user"
        for record in records:
            try:
                read = readers.get(type(record))
                if read is None:
                    read = readers[type(record)] = base_key_reader(kind, type(record))
                item = read(record)
                identifier = item["id"]
                if type(identifier) is int:  # the usual SQL id
                    item["id"] = str(identifier)
                elif type(identifier) is not str or not identifier:
                    item["id"] = _checked_id(identifier)
                if needs_type and item["type"] is None:
                    item["type"] = type_name
                if processors:
                    for processor in processors:
                        item = processor(item, record)
                    item = checked_item(item)
            except UnsendableRecord as problem:
                skip(record, type_name, problem)
                continue
            yield item


def base_key_reader(kind: str, record_type: type) -> Callable[[Any], dict[str, Any]]:
    """How to read the base keys from records of one type: a mapping's keys or an object's attributes."""
    if issubclass(record_type, dict):
        return _READERS[kind, "get"]
    if _read_by_name(record_type):
        read_every_key = _READERS[kind, "subscript"]
        keys = BASE_KEYS[kind]

        def read_mapping(record: Any) -> dict[str, Any]:
            try:  # a SQL row usually has every base key
                return read_every_key(record)
            except (KeyError, IndexError):  # sqlite3.Row raises IndexError for a missing key
                present = set(record.keys())
                return {key: record[key] if key in present else None for key in keys}

        return read_mapping
    return _READERS[kind, "getattr"]


def _compiled_reader(keys: tuple[str, ...], read_key: str) -> Callable[[Any], dict[str, Any]]:
    """``record -> {key: <read_key>, …}`` as one dict display, the way namedtuple builds its code.

    Three times faster than ``dict(zip(keys, values))``, which counts once per exported
    record. ``keys`` are this module's constants and ``read_key`` one of three fixed
    templates, never input.
    """
    display = ", ".join(f"{key!r}: {read_key.format(key=repr(key))}" for key in keys)
    return eval(f"lambda record: {{{display}}}")  # noqa: S307 - constants only, see above


_READERS = {
    (kind, name): _compiled_reader(keys, read_key)
    for kind, keys in BASE_KEYS.items()
    for name, read_key in (("get", "record.get({key})"), ("subscript", "record[{key}]"),
                           ("getattr", "getattr(record, {key}, None)"))
}


def record_id(record: Any) -> Any:
    """The id a record carries, as given (for messages about it); None if it has none."""
    if _read_by_name(type(record)):
        try:
            return record["id"]
        except (KeyError, IndexError):
            return None
    return getattr(record, "id", None)


def _read_by_name(record_type: type) -> bool:
    """Mappings, and rows read by name that are not Mappings, such as ``sqlite3.Row``."""
    return issubclass(record_type, Mapping) or (
        callable(getattr(record_type, "keys", None)) and hasattr(record_type, "__getitem__")
    )


def _checked_id(identifier: Any) -> str:
    if identifier is None or identifier == "":
        raise UnsendableRecord("record has no id")
    if isinstance(identifier, bool) or not isinstance(identifier, (str, int)):
        raise UnsendableRecord(f"record id must be a string or an integer, not {type(identifier).__name__}")
    return str(identifier)


_PLAIN = frozenset({str, int, bool, type(None)})


def checked_item(item: Any) -> dict[str, Any]:
    """The item with dates and decimals as text; refuses what JSON cannot hold, naming the key."""
    if not isinstance(item, dict):
        raise UnsendableRecord(f"a processor returned {type(item).__name__}, not the item")
    if _PLAIN.issuperset(map(type, item.values())) and all(type(key) is str for key in item):
        return item  # the common case: nothing to convert
    try:
        return {_json_key(key): _json_value(value, str(key)) for key, value in item.items()}
    except RecursionError:
        raise UnsendableRecord("a value refers to itself or nests too deeply for JSON") from None


def json_default(value: Any) -> Any:
    """For ``json.JSONEncoder(default=…)``: the conversions of :func:`checked_item`, in the encoder."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal) and value.is_finite():
        return str(value)
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON")  # the batch is then checked item by item


def _json_key(key: Any) -> str:
    if type(key) is int:
        return str(key)  # as the encoder writes it
    if type(key) is not str:
        raise UnsendableRecord(f"key {key!r} is a {type(key).__name__}; keys must be text or whole numbers")
    return key


def _json_value(value: Any, key: str) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnsendableRecord(f"{key} is {value}, which JSON cannot hold")
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise UnsendableRecord(f"{key} is {value}, which JSON cannot hold")
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(v, key) for v in value]
    if isinstance(value, dict):
        return {_json_key(k): _json_value(v, f"{key}.{k}") for k, v in value.items()}
    raise UnsendableRecord(f"{key} is a {type(value).__name__}, which JSON cannot hold")
