"""Reading the Recommendations API's answer: a JSON array of objects, each with
``RecommendedId`` and ``Priority`` (history modules add ``CreateDate``).

Read tolerantly: unknown keys are ignored, and an entry that is not an object, or whose
id is missing or not acceptable text, is skipped (one WARNING per answer). An answer
that is not an array at all is refused whole, as a bad answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..identifiers import text_problem
from ..json_text import UnreadableJSON, read_json

log = logging.getLogger("cdp_bridge.recommendations")

#: The longest id kept (as the store's identifiers).
MAX_ID_LENGTH = 255


@dataclass(frozen=True)
class Recommendation:
    """One recommended item: its id (a product's without its ``_<variant>``), the variant
    when there was one, Raptor's priority and, for history modules, when it happened."""

    id: str
    variant: str | None = None
    priority: float | None = None
    created: str | None = None


class UnreadableAnswer(ValueError):
    """The answer is not a JSON array of recommendations."""


def parse_recommendations(body: bytes, *, split_variants: bool) -> tuple[Recommendation, ...]:
    """The recommendations of an answer, in Raptor's order; ``split_variants`` for product
    modules, whose ids may end in ``_<variant>``. Raises :class:`UnreadableAnswer`."""
    document = read_json(body)
    if isinstance(document, UnreadableJSON):
        raise UnreadableAnswer(f"not JSON ({document.detail})")
    if not isinstance(document, list):
        raise UnreadableAnswer(f"expected a JSON array, not {type(document).__name__}")
    found: list[Recommendation] = []
    skipped = 0
    for entry in document:
        recommendation = _recommendation(entry, split_variants)
        if recommendation is None:
            skipped += 1
        else:
            found.append(recommendation)
    if skipped:
        log.warning("recommendations: skipped %s of %s entries of an answer without an acceptable RecommendedId",
                    skipped, len(document))
    return tuple(found)


def _recommendation(entry: object, split_variants: bool) -> Recommendation | None:
    if not isinstance(entry, dict):
        return None
    raw_id = entry.get("RecommendedId")
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        return None
    item_id = str(raw_id).strip()
    if not acceptable_id(item_id):
        return None
    variant = None
    if split_variants and "_" in item_id.strip("_"):
        item_id, variant = item_id.rsplit("_", 1)
    priority = entry.get("Priority")
    created = entry.get("CreateDate")
    return Recommendation(
        id=item_id,
        variant=variant,
        priority=float(priority) if isinstance(priority, int | float) and not isinstance(priority, bool) else None,
        created=created if isinstance(created, str) and text_problem(created, max_length=64) is None else None,
    )


def acceptable_id(item_id: str) -> bool:
    """Whether an id (an answer's or a cached one) is kept: non-empty text of at most
    :data:`MAX_ID_LENGTH` characters, without control characters."""
    return bool(item_id) and text_problem(item_id, max_length=MAX_ID_LENGTH) is None


def first_ids(found: tuple[Recommendation, ...], count: int) -> tuple[str, ...]:
    """The ids of the first ``count`` items, in Raptor's order (a product's variants are
    one item): what Raptor was asked for, however long its answer, and all a page needs
    of it (worked out once per answer, not on each page)."""
    return tuple(dict.fromkeys([recommendation.id for recommendation in found]))[:count]


def id_from_cache(value: object) -> str:
    """A cached id, checked as an answer's is; a ``ValueError`` or ``TypeError`` for anything else."""
    if not isinstance(value, str):
        raise TypeError("expected an id")
    if not acceptable_id(value):
        raise ValueError("the id is not acceptable text")
    return value
