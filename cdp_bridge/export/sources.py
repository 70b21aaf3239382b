"""What a site exports: registered record sources, item processors, and item building.

The host registers functions that yield its records (``@cdp.user_source``,
``@cdp.product_source("pet_food")``, ``@cdp.content_source("article")``) and, optionally,
processors that add or change keys of each item (``@cdp.user_item_processor(priority=10)``,
called as ``processor(item, record)``, higher priority first). Each record becomes an item
with a fixed set of base keys, so the Data Manager's schema is the same on every run.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from itertools import repeat
from operator import itemgetter
from typing import Any

from sqlalchemy.engine import Row

from ..errors import CDPError, TrackingArgumentError, ValidationError
from ..export_kinds import EXPORT_KINDS
from ..tracking.fields import format_category_path

Source = Callable[[], Iterable[Any]]
Processor = Callable[[dict[str, Any], Any], dict[str, Any]]
Skip = Callable[[Any, str, Exception], None]


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

    def items(self, kind: str, type_name: str, records: list[Any], skip: Skip) -> list[dict[str, Any]]:
        """The items of a list of records; a record that cannot become one goes to ``skip``.

        Values keep their JSON type (an integer id is a number, as Ibexa sends it); a base
        key the record does not have is left out, since Raptor reads ``null`` as "delete
        the stored value". Without processors, values are not checked here: the batch
        encoder converts dates and writes decimals as numbers, and the rare batch it
        refuses is checked item by item (see :func:`checked_item`).

        A whole list is read with one reader (:func:`read_items`) and its ids checked at
        once; a record goes through the steps one at a time only when its kind, a
        processor or an unusual id needs it. An export reads a million records, and
        this is where its time goes.
        """
        processors = [ranked.function for ranked in self.processors[kind]]
        typed = EXPORT_KINDS[kind].typed
        items = read_items(records, EXPORT_KINDS[kind].base_keys)
        if processors or typed or not _plain_ids(items):
            items = self._finished(records, items, type_name, typed, processors, skip)
        return items

    @staticmethod
    def _finished(records: list[Any], items: list[dict[str, Any]], type_name: str, typed: bool,
                  processors: list[Processor], skip: Skip) -> list[dict[str, Any]]:
        """Each item with its id checked, its type and category path set, and the processors run."""
        finished = []
        for record, item in zip(records, items):
            try:
                identifier = item.get("id")
                if type(identifier) is not int and (type(identifier) is not str or not identifier):
                    _check_id(identifier)  # the usual int or str id costs no call
                if typed:
                    if item.get("type") is None:  # the source's type, in its place after the id
                        item.pop("type", None)
                        item = {"id": item.pop("id"), "type": type_name, **item}
                    if "category_path" in item and not isinstance(item["category_path"], (str, type(None))):
                        item["category_path"] = _category_path_text(item["category_path"])
                for processor in processors:
                    item = processor(item, record)
                if processors:
                    item = checked_item(item)
            except UnsendableRecord as problem:
                skip(record, type_name, problem)
                continue
            finished.append(item)
        return finished


def _plain_ids(items: list[dict[str, Any]]) -> bool:
    """Whether every item's id is an int or a non-empty string (no item then needs a look of its own)."""
    ids = [item.get("id") for item in items]
    return _ID_TYPES.issuperset(map(type, ids)) and "" not in ids


_ID_TYPES = frozenset({int, str})


# A row's result (its ``_parent``), read through the attribute's descriptor: SQLAlchemy's
# compiled row class answers ``row._parent`` through a ``__getattribute__`` of its own,
# which made checking that a batch's rows share one result cost as much as building
# their items (0.42 against 0.07 us a row, measured on SQLAlchemy 2.1 with its compiled rows).
_RESULT_OF_ROW = inspect.getattr_static(Row, "_parent").__get__


def read_items(records: list[Any], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """The base keys of each record, read the fastest way the records allow.

    Records of one type are read by one comprehension: mappings and rows by name, and
    SQLAlchemy rows of one result by position (by name they cost three times as much).
    A record without some key, or a list of mixed types, is read one record at a time.
    """
    if not records:
        return []
    record_type = type(records[0])
    if len(set(map(type, records))) > 1:
        return [base_key_reader(type(record))(record, keys) for record in records]
    if issubclass(record_type, Row):
        positional = _read_rows_by_position(records, keys)
        if positional is not None:
            return positional
    read = base_key_reader(record_type)
    if read in (_read_dict, _read_row):
        try:  # a SQL row or a source's dict usually has every base key: read them without asking first
            return [{key: record[key] for key in keys} for record in records]
        except (KeyError, IndexError):  # sqlite3.Row raises IndexError for a missing column
            pass
    return [read(record, keys) for record in records]


def _read_rows_by_position(rows: list[Any], keys: tuple[str, ...]) -> list[dict[str, Any]] | None:
    """SQLAlchemy rows of one result (one ``_parent``) by the positions of their columns; None otherwise.

    Each row's result is read through the attribute's descriptor (:data:`_RESULT_OF_ROW`).
    """
    if len(set(map(_RESULT_OF_ROW, rows))) != 1:
        return None
    fields = rows[0]._fields
    if fields == keys:
        return list(map(dict, map(zip, repeat(keys), rows)))
    present = tuple(key for key in keys if key in fields)
    if len(present) < 2:  # itemgetter of one position gives the value, not a tuple
        return None
    values = itemgetter(*(fields.index(key) for key in present))
    return [dict(zip(present, values(row))) for row in rows]


_MISSING = object()


def base_key_reader(record_type: type) -> Callable[[Any, tuple[str, ...]], dict[str, Any]]:
    """How to read base keys from records of one type: a mapping's keys, a row's columns,
    or an object's attributes. A key the record does not have is left out."""
    if issubclass(record_type, dict):
        return _read_dict
    if _read_by_name(record_type):
        return _read_row
    if hasattr(record_type, "_mapping"):  # a SQLAlchemy Row: by column name, faster than getattr
        return _read_row_mapping
    return _read_attributes


def _read_dict(record: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: record[key] for key in keys if key in record}


def _read_row(record: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    try:  # a SQL row usually has every base key: read them without asking first
        return {key: record[key] for key in keys}
    except (KeyError, IndexError):  # sqlite3.Row raises IndexError for a missing column
        present = record.keys()  # sqlite3.Row has keys() but no "in"
        return {key: record[key] for key in keys if key in present}


def _read_row_mapping(record: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    return _read_row(record._mapping, keys)


def _read_attributes(record: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    item = {}
    for key in keys:
        value = getattr(record, key, _MISSING)
        if value is not _MISSING:
            item[key] = value
    return item


def _category_path_text(value: Any) -> str:
    """A category path in Raptor's text form ``id#name;id#name``, as tracking sends it."""
    try:
        return format_category_path(value)
    except TrackingArgumentError as exc:
        raise UnsendableRecord(f"category_path: {exc}") from None


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


def _check_id(identifier: Any) -> None:
    """An id is a non-empty string or an integer, and is sent as it is (its JSON type kept)."""
    if identifier is None or identifier == "":
        raise UnsendableRecord("record has no id")
    if isinstance(identifier, bool) or not isinstance(identifier, (str, int)):
        raise UnsendableRecord(f"record id must be a string or an integer, not {type(identifier).__name__}")


_PLAIN = frozenset({str, int, bool, type(None)})


def checked_item(item: Any) -> dict[str, Any]:
    """The item with dates as text; refuses what JSON cannot hold (NaN and infinities
    too), naming the key. Decimals stay decimals: the encoder writes them as numbers."""
    if not isinstance(item, dict):
        raise UnsendableRecord(f"a processor returned {type(item).__name__}, not the item")
    if _PLAIN.issuperset(map(type, item.values())) and all(type(key) is str for key in item):
        return item  # the common case: nothing to convert
    try:
        return {_json_key(key): _exportable_value(value, str(key)) for key, value in item.items()}
    except RecursionError:
        raise UnsendableRecord("a value refers to itself or nests too deeply for JSON") from None


def json_default(value: object) -> Any:
    """For the batch encoder's ``default=``: the conversion of :func:`checked_item`, in the encoder."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON")  # the batch is then checked item by item


def _json_key(key: object) -> str:
    if type(key) is int:
        return str(key)  # as the encoder writes it
    if type(key) is not str:
        raise UnsendableRecord(f"key {key!r} is a {type(key).__name__}; keys must be text or whole numbers")
    return key


def _exportable_value(value: object, key: str) -> Any:
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
        return value
    if isinstance(value, (list, tuple)):
        return [_exportable_value(v, key) for v in value]
    if isinstance(value, dict):
        return {_json_key(k): _exportable_value(v, f"{key}.{k}") for k, v in value.items()}
    raise UnsendableRecord(f"{key} is a {type(value).__name__}, which JSON cannot hold")
