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
    if not item_id or text_problem(item_id, max_length=MAX_ID_LENGTH) is not None:
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


def first_items(found: tuple[Recommendation, ...], count: int) -> tuple[Recommendation, ...]:
    """The entries of the first ``count`` items (a product's variants are one item): what
    Raptor was asked for, however long its answer."""
    seen: set[str] = set()
    for index, recommendation in enumerate(found):
        seen.add(recommendation.id)
        if len(seen) > count:
            return found[:index]
    return found


def recommendation_from_cache(row: object) -> Recommendation:
    """A cached ``[id, variant, priority, created]``, checked as an answer's entry is; a
    ``ValueError`` or ``TypeError`` for anything else."""
    if not isinstance(row, list) or len(row) != 4:
        raise TypeError("expected [id, variant, priority, created]")
    item_id, variant, priority, created = row
    if not isinstance(item_id, str) or not item_id or text_problem(item_id, max_length=MAX_ID_LENGTH) is not None:
        raise ValueError("the id is not acceptable text")
    if variant is not None and (not isinstance(variant, str) or text_problem(variant, max_length=MAX_ID_LENGTH) is not None):
        raise ValueError("the variant is not acceptable text")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int | float)):
        raise TypeError("the priority is not a number")
    if created is not None and (not isinstance(created, str) or text_problem(created, max_length=64) is not None):
        raise ValueError("the date is not acceptable text")
    return Recommendation(item_id, variant, float(priority) if priority is not None else None, created)
