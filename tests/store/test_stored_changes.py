"""A queued delivery's changes as the inbox stores them: exactly what was validated comes
back, whatever the ids hold (the id lists are joined without the encoder when no id needs
escaping; any that does takes the encoder)."""

from __future__ import annotations

import json
from datetime import datetime

from hypothesis import given
from hypothesis import strategies as st

from cdp_bridge.model import AudienceChange, SegmentMetadata
from cdp_bridge.store.audiences import changes_from_json, changes_to_json

TRICKY = ("plain-1", 'a"quote', "back\\slash", "é-ünïcode", "line\u2028sep", "tab\there", "\x7fdel", "emoji-🐈")


def test_every_field_and_tricky_ids_come_back_exactly() -> None:
    changes = (
        AudienceChange("a", SegmentMetadata(name='Cats "Ünï"', description="d", tags=("x", "y"), profile_count=3,
                                            source_updated_at=datetime(2026, 12, 5, 10, 0)),
                       add=TRICKY, remove=("r-1",), sequence=7),
        AudienceChange("b", members=("m-1", "m-2")),
        AudienceChange("c", members=(), deleted=False),
        AudienceChange("d", deleted=True, sequence=9),
    )
    stored = changes_to_json(changes)
    assert changes_from_json(stored) == changes
    assert json.loads(stored)[0]["add"] == list(TRICKY)  # valid JSON, whichever path encoded it


@given(st.lists(st.text(min_size=1, max_size=12), max_size=30))
def test_any_ids_round_trip(ids: list[str]) -> None:
    change = AudienceChange("a", add=tuple(ids), members=tuple(reversed(ids)))
    assert changes_from_json(changes_to_json([change])) == (change,)
