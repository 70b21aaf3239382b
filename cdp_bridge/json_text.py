"""The one JSON reader for text from outside: webhook and ``/cdp/track`` bodies, and the
answers of Raptor's APIs.

``json.loads`` raises for malformed text, but also ``RecursionError`` for nesting too deep
for the parser, ``MemoryError`` for a document too large, and ``UnicodeDecodeError`` for
bytes that are no UTF-8: each of them, from outside, must be an answer naming the
problem, never a 500. :func:`read_json` turns them all into :class:`UnreadableJSON`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .log_text import one_line


@dataclass(frozen=True)
class UnreadableJSON:
    """A text that could not be read as JSON; ``detail`` says why (``nested too deeply``,
    ``not UTF-8 text``, or the parser's message such as ``Expecting value``)."""

    detail: str


def read_json(text: bytes) -> object:
    """The JSON value of ``text``, or an :class:`UnreadableJSON` (malformed, not UTF-8,
    nested too deeply for the parser, or too large for memory). Never raises."""
    try:
        return json.loads(text)
    except RecursionError:
        return UnreadableJSON("nested too deeply")
    except MemoryError:
        return UnreadableJSON("too large to parse")
    except UnicodeDecodeError:
        return UnreadableJSON("not UTF-8 text")
    except ValueError as exc:  # JSONDecodeError: its message without the document
        return UnreadableJSON(one_line(str(getattr(exc, "msg", None) or exc))[:120])
