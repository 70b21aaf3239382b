"""COPY's text format from one buffer: what goes in comes back out, whatever it holds."""

from __future__ import annotations

import pytest

from cdp_bridge import SegmentStore
from cdp_bridge.store.bulk import copy_text

AWKWARD = ["plain", "back\\slash", "tab\there", "new\nline", "cr\rhere", "\\N", "\\t literally", "zoë 🐈", "end\\"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # COPY is PostgreSQL's
def test_values_holding_a_backslash_a_tab_and_a_newline_come_back_exactly(store: SegmentStore) -> None:
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("CREATE TEMPORARY TABLE copied (segment_id INTEGER, user_id TEXT, created_at TEXT)")
        with cursor.copy("COPY copied (segment_id, user_id, created_at) FROM STDIN") as copy:
            copy.write(copy_text(AWKWARD, before="7\t", after="\t2026-12-04 10:00:00"))
        cursor.execute("SELECT segment_id, user_id, created_at FROM copied")
        rows = cursor.fetchall()
    finally:
        raw.close()
    assert sorted(rows) == sorted((7, value, "2026-12-04 10:00:00") for value in AWKWARD)
    assert "\\N" in [row[1] for row in rows]  # the two characters, not SQL's NULL


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_segment_of_ids_with_backslashes_is_stored_exactly_by_copy(store: SegmentStore) -> None:
    """Through the store: COPY fills an empty segment, then the staging table takes a replace
    (user ids may hold a backslash; tabs and line breaks are refused before any COPY)."""
    store.create_group("g")
    first = [f"domain\\user{n}" for n in range(3000)] + ["\\N", "trailing\\"]
    store.replace_members("g", "s", first)
    assert sorted(store.members("g", "s")) == sorted(first)
    second = first[1500:] + [f"other\\{n}" for n in range(2000)]
    assert store.replace_members("g", "s", second) == (2000, 1500)
    assert sorted(store.members("g", "s")) == sorted(second)


def test_an_empty_list_is_an_empty_buffer_and_a_nul_is_refused() -> None:
    assert copy_text([]) == ""
    assert copy_text(["a"], before="1\t") == "1\ta\n"
    with pytest.raises(ValueError, match="NUL"):
        copy_text(["a\0b"])
