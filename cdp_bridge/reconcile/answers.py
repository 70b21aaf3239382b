"""Reading the CDP API's answers tolerantly: Raptor's public pages do not name their fields.

- The audiences: a list, as the answer itself or under ``audiences`` (or ``items``); each
  audience an object with ``id`` or ``audienceId``, and ``name``.
- One audience's members: a list, as the answer itself or under ``profiles``, ``members``
  or ``items``; each profile a string, a whole number, or an object with
  ``identifierValue``, ``value`` or ``id``; the sequence number as ``sequenceNumber`` or
  ``sequence``. Read as a stream (ijson, its C parser): a million members are never held
  as a parsed document, only in chunks on their way to the store.

A host whose answers differ registers a reader (``@cdp.membership_list_reader``), given
the parsed answer and returning a :class:`MembershipList`, or ``None`` to leave the
answer to the next reader and then to this module's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import ijson

from ..errors import CDPError
from ..log_text import one_line

AUDIENCE_LIST_KEYS = ("audiences", "items")
PROFILE_LIST_KEYS = ("profiles", "members", "items")
PROFILE_ID_KEYS = ("identifierValue", "value", "id")
SEQUENCE_KEYS = ("sequenceNumber", "sequence")
#: Ids handed to the store at a time: memory stays flat whatever the audience's size.
CHUNK = 10_000


class Readable(Protocol):
    """A binary stream: a file, or an answer read as it arrives."""

    def read(self, size: int = ..., /) -> bytes: ...


class UnreadableAnswer(CDPError):
    """An answer that is not one of the shapes read here; the message says what was found."""


@dataclass(frozen=True)
class Audience:
    id: str
    name: str | None


@dataclass
class MembershipList:
    """One audience's members as a host's reader returns them (any iterable of ids) and
    its sequence number, if the answer has one."""

    user_ids: Iterable[object]
    sequence: int | None = None


MembershipListReader = Callable[[Any], "MembershipList | None"]


def read_audiences(document: object) -> list[Audience]:
    """The audiences of a parsed answer; :class:`UnreadableAnswer` if it holds no list of them."""
    items = document
    if isinstance(document, dict):
        items = next((document[key] for key in AUDIENCE_LIST_KEYS if isinstance(document.get(key), list)), None)
    if not isinstance(items, list):
        raise UnreadableAnswer(f"no list of audiences (expected a list, or one under {', '.join(AUDIENCE_LIST_KEYS)})")
    audiences = []
    for item in items:
        if not isinstance(item, dict):
            raise UnreadableAnswer(f"an audience is {type(item).__name__}, not an object")
        found = item.get("id", item.get("audienceId"))
        if isinstance(found, int) and not isinstance(found, bool):
            found = str(found)
        if not isinstance(found, str) or not found:
            raise UnreadableAnswer("an audience has no id (expected id or audienceId)")
        name = item.get("name")
        audiences.append(Audience(found, name if isinstance(name, str) else None))
    return audiences


class StreamedMembers:
    """The members of a streamed answer, in chunks (:meth:`chunks`); then :attr:`sequence`.

    The sequence number may come before or after the list; it is known once the chunks
    are read to the end."""

    def __init__(self, body: Readable) -> None:
        self._body = body
        self.sequence: int | None = None
        self.read = 0

    def chunks(self) -> Iterator[list[str]]:
        chunk: list[str] = []
        list_prefix: str | None = None
        profile: dict[str, object] | None = None
        try:
            for prefix, event, value in ijson.parse(self._body, use_float=False):
                if list_prefix is None:
                    if event == "start_array" and prefix in ("", *PROFILE_LIST_KEYS):
                        list_prefix = prefix
                        item_prefix = f"{prefix}.item" if prefix else "item"
                    elif prefix in SEQUENCE_KEYS and self.sequence is None:
                        self.sequence = _sequence(value)
                    continue
                if prefix == list_prefix and event == "end_array":
                    list_prefix = "done"
                    continue
                if list_prefix == "done":
                    if prefix in SEQUENCE_KEYS and self.sequence is None:
                        self.sequence = _sequence(value)
                    continue
                if prefix == item_prefix:
                    if event == "start_map":
                        profile = {}
                    elif event == "end_map":
                        chunk.append(_profile_id(profile or {}))
                        profile = None
                    elif event in ("string", "number"):
                        chunk.append(_id_text(value))
                    elif event != "map_key":
                        raise UnreadableAnswer(f"a profile is {event}, not a string or an object")
                elif profile is not None and prefix.startswith(item_prefix + ".") and prefix.count(".") == item_prefix.count(".") + 1:
                    key = prefix[len(item_prefix) + 1:]
                    if key in PROFILE_ID_KEYS and event in ("string", "number"):
                        profile[key] = value
                if len(chunk) >= CHUNK:
                    self.read += len(chunk)
                    yield chunk
                    chunk = []
        except ijson.JSONError as exc:
            detail = one_line(" ".join(str(exc).split()))[:80]
            raise UnreadableAnswer(f"not JSON, or cut short ({detail})") from None
        if list_prefix is None:
            raise UnreadableAnswer(f"no list of profiles (expected a list, or one under {', '.join(PROFILE_LIST_KEYS)})")
        if chunk:
            self.read += len(chunk)
            yield chunk


def members_from(reader_result: MembershipList) -> Iterator[list[str]]:
    """A host reader's members in chunks, each id as text."""
    chunk: list[str] = []
    for user_id in reader_result.user_ids:
        chunk.append(_id_text(user_id))
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _profile_id(profile: dict[str, object]) -> str:
    for key in PROFILE_ID_KEYS:
        if key in profile:
            return _id_text(profile[key])
    raise UnreadableAnswer(f"a profile has no id (expected {', '.join(PROFILE_ID_KEYS)})")


def _id_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool) and value == int(value):
        return str(int(value))
    raise UnreadableAnswer(f"a profile id is {type(value).__name__}, not text or a whole number")


def _sequence(value: object) -> int | None:
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool) and value == int(value) and value >= 0:
        return int(value)
    raise UnreadableAnswer(f"the sequence number is {value!r}, not a whole number")
