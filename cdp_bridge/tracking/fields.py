"""Raptor tracking parameters: from keyword arguments to ``{"p1": "visit", "p2": …}``.

Each keyword of SPEC section 5 maps to a p-number (Raptor's defaults, overridable per
event type with CDP_TRACKING_PARAMETERS); each value is validated and formatted as the
string Raptor expects. A bad value raises :class:`TrackingArgumentError` naming the
argument. Nothing here renders HTML or knows about requests.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from ..constants import DEFAULT_TRACKING_PARAMETERS
from ..errors import TrackingArgumentError, ValidationError
from ..identifiers import text_problem, validate_user_id

ZERO_DECIMAL_CURRENCIES = frozenset(
    ["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"]
)
THREE_DECIMAL_CURRENCIES = frozenset(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"])
RAW_PARAMETER = re.compile(r"p[1-9][0-9]?")
CATEGORY_SEPARATORS = str.maketrans("", "", ",;#")
CURRENCY_CODE = re.compile(r"[A-Za-z]{3}")
MAX_VALUE_LENGTH = 4096
#: Amounts and quantities stay below 10^18: a price with three decimals then fits the 28
#: digits of Decimal's default precision, and no shop sells more than that.
MAX_DIGITS = 18
MAX_AMOUNT = 10**MAX_DIGITS


def event_parameters(
    event_type: str, fields: Mapping[str, Any], overrides: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """The ``pN`` parameters of one event (a type :mod:`.events` knows), every value a
    string, absent fields left out."""
    positions = parameter_positions(event_type, overrides)
    given = fields.get("currency")
    currency = format_currency(given) if given is not None else None  # checked once for every amount
    params = {positions["event_type"]: event_type}
    for keyword, value in fields.items():
        if value is None:
            continue
        if keyword in TEXT_FIELDS:  # most fields: text as given, checked
            params[positions[keyword]] = text_value(value, keyword)
            continue
        format_value = FIELD_FORMATTERS.get(keyword)
        if format_value is not None:
            params[positions[keyword]] = format_value(value, currency)
        elif RAW_PARAMETER.fullmatch(keyword):
            params[keyword] = text_value(value, keyword)
        else:
            raise TrackingArgumentError(
                f"{keyword} is not a tracking field; expected one of "
                + ", ".join(sorted(TEXT_FIELDS | FIELD_FORMATTERS.keys()))
                + " or a raw parameter such as p9"
            )
    return params


def parameter_positions(event_type: str, overrides: Mapping[str, Mapping[str, str]]) -> Mapping[str, str]:
    """Field → ``pN`` for one event type: the defaults, moved by ``CDP_TRACKING_PARAMETERS``."""
    moved = overrides.get(event_type)
    return {**DEFAULT_TRACKING_PARAMETERS, **moved} if moved else DEFAULT_TRACKING_PARAMETERS


def format_in_stock(value: object) -> str:
    if not isinstance(value, bool):
        raise TrackingArgumentError(f"in_stock must be true or false, not {value!r}")
    return "true" if value else "false"


def text_value(value: object, name: str) -> str:
    """A string or number as text: valid Unicode of bounded length, no control characters
    other than tab and line breaks. Format characters (emoji sequences), U+2028, quotes and
    markup are legitimate text, escaped on output."""
    if type(value) is str and len(value) <= MAX_VALUE_LENGTH and value.isprintable():
        return value  # the usual value: nothing more to check
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise TrackingArgumentError(f"{name} must be text or a number, not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise TrackingArgumentError(f"{name} must be a finite number")
    text = value if isinstance(value, str) else str(value)
    problem = text_problem(text, max_length=MAX_VALUE_LENGTH, line_breaks=True, format_characters=True)
    if problem is not None:
        raise TrackingArgumentError(f"{name} {problem}")
    return text


def tracking_user_id(user_id: object) -> str:
    """A user id given to a helper or ``cdp.track``, checked as the store checks one."""
    try:
        return validate_user_id(user_id)
    except ValidationError as exc:
        raise TrackingArgumentError(f"user_id: {exc}") from None


def whole_number(value: object, name: str) -> int:
    """A whole number >= 0 and below 10^18, from an int, an integral float or Decimal (a
    SQL ``NUMERIC`` column gives one) or a string of digits."""
    if isinstance(value, bool):
        raise TrackingArgumentError(f"{name} must be a whole number >= 0, not {value!r}")
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= MAX_DIGITS:
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer() and abs(value) < MAX_AMOUNT:
        value = int(value)
    if isinstance(value, Decimal) and value.is_finite() and value.adjusted() < MAX_DIGITS and value == value.to_integral_value():
        value = int(value)
    if not isinstance(value, int) or not 0 <= value < MAX_AMOUNT:
        raise TrackingArgumentError(f"{name} must be a whole number >= 0 and below 10^{MAX_DIGITS}, not {_short(value)}")
    return value


def decimal_amount(value: object, name: str) -> Decimal:
    """A finite amount >= 0 from an int, float, Decimal or numeric string."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        raise TrackingArgumentError(f"{name} must be a number, not {type(value).__name__}")
    try:
        amount = value if type(value) is Decimal else Decimal(value if isinstance(value, (str, int)) else str(value))
    except (InvalidOperation, ValueError):  # ValueError: an int too long to convert
        raise TrackingArgumentError(f"{name} must be a number below 10^{MAX_DIGITS}, not {_short(value)}") from None
    if not amount.is_finite() or amount < 0:
        raise TrackingArgumentError(f"{name} must be a finite amount >= 0, not {_short(value)}")
    if amount >= MAX_AMOUNT:  # beyond it, formatting with the currency's decimals overflows Decimal's precision
        raise TrackingArgumentError(f"{name} must be below 10^{MAX_DIGITS}, not {_short(value)}")
    return amount


def _short(value: object) -> str:
    """A value for an error message: its repr, cut short (a number may have thousands of digits)."""
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 64 else f"a number of {value.bit_length()} bits"
    return text if len(text) <= 40 else text[:37] + "..."


def format_currency(value: object) -> str:
    if not isinstance(value, str) or not CURRENCY_CODE.fullmatch(value.strip()):
        raise TrackingArgumentError(f"currency must be a three-letter ISO code such as EUR, not {value!r}")
    return value.strip().upper()


def currency_decimals(code: str | None) -> int:
    """2, or 0 / 3 for the currencies ISO 4217 gives that many minor digits (``code`` as
    :func:`format_currency` returns it)."""
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    return 3 if code in THREE_DECIMAL_CURRENCIES else 2


def format_price(value: object, currency: str | None = None, name: str = "price") -> str:
    """A price with a dot and the currency's number of decimals (``currency`` already checked)."""
    amount = decimal_amount(value, name)
    return str(amount.quantize(QUANTUM[currency_decimals(currency)], rounding=ROUND_HALF_UP))


def format_category_path(value: object) -> str:
    """``id#name;id#name`` from (id, name) pairs or names; ``,`` ``;`` ``#`` removed from parts."""
    if isinstance(value, str):
        return text_value(value, "category_path")
    if not isinstance(value, Iterable):
        raise TrackingArgumentError("category_path must be a list of (id, name) pairs or of names")
    entries = []
    for index, item in enumerate(value):
        if type(item) in (tuple, list) and len(item) == 2:
            entries.append(f"{_category_part(item[0], 'category_path id')}#{_category_part(item[1], 'category_path name')}")
        elif type(item) is str:
            entries.append(_category_part(item, f"category_path[{index}]"))
        else:
            raise TrackingArgumentError(f"category_path[{index}] must be an (id, name) pair or a name")
    return ";".join(entries)


def _category_part(value: object, name: str) -> str:
    text = text_value(value, name)
    if "," in text or ";" in text or "#" in text:
        return text.translate(CATEGORY_SEPARATORS)
    return text


def format_basket_content(value: object) -> str:
    """Comma-separated ids (empty for an empty basket), or a string as given."""
    if isinstance(value, str):
        return text_value(value, "basket_content")
    if not isinstance(value, Iterable):
        raise TrackingArgumentError("basket_content must be a list of ids or a string")
    return ",".join(text_value(item, f"basket_content[{i}]").replace(",", "") for i, item in enumerate(value))


def subtotal_of(price: str, quantity: str) -> str:
    """``price × quantity`` from an event's formatted price and quantity: a price already
    has its currency's decimals, and a whole quantity keeps them."""
    subtotal = Decimal(price) * int(quantity)
    if subtotal >= MAX_AMOUNT:
        raise TrackingArgumentError(f"subtotal must be below 10^{MAX_DIGITS}, not {_short(subtotal)}")
    return str(subtotal)


def _amount_formatter(keyword: str) -> Callable[[Any, Any], str]:
    return lambda value, currency: format_price(value, currency, keyword)


FIELD_KEYS = tuple(k for k in DEFAULT_TRACKING_PARAMETERS if k != "event_type")
FIELD_KEY_SET = frozenset(FIELD_KEYS)
QUANTUM = {0: Decimal(1), 2: Decimal("0.01"), 3: Decimal("0.001")}
#: keyword -> ``format(value, currency)``, for the fields that are not plain text.
FIELD_FORMATTERS: dict[str, Callable[[Any, Any], str]] = {
    "price": _amount_formatter("price"),
    "subtotal": _amount_formatter("subtotal"),
    "currency": lambda value, currency: currency,  # event_parameters checked it
    "quantity": lambda value, currency: str(whole_number(value, "quantity")),
    "in_stock": lambda value, currency: format_in_stock(value),
    "category_path": lambda value, currency: format_category_path(value),
    "basket_content": lambda value, currency: format_basket_content(value),
}
#: The fields sent as the text they are given, once checked.
TEXT_FIELDS = FIELD_KEY_SET - FIELD_FORMATTERS.keys()


def line_fields(line: object, index: int) -> dict[str, Any]:
    """The fields of one order line, from a mapping or an object with attributes."""
    if isinstance(line, dict):  # other keys of the host's own line are ignored
        fields = {k: v for k, v in line.items() if k in FIELD_KEY_SET and v is not None}
    elif isinstance(line, Mapping):
        fields = {k: line[k] for k in FIELD_KEYS if line.get(k) is not None}
    else:
        fields = {k: getattr(line, k) for k in FIELD_KEYS if getattr(line, k, None) is not None}
    for required in ("id", "price", "quantity"):
        if fields.get(required) is None:
            raise TrackingArgumentError(f"lines[{index}].{required} is required")
    return fields
