"""The segment store on SQLite and PostgreSQL: groups, members, look-ups, refusals."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from cdp_bridge import ConflictError, NotFoundError, ProtectedGroupError, SegmentStore, ValidationError
from cdp_bridge.model import SegmentMetadata
from cdp_bridge.store import membership


def count_rows(store: SegmentStore, table) -> int:
    with store.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(table))


def test_create_and_get_a_group(store: SegmentStore) -> None:
    group = store.create_group("newsletter", "Newsletter")
    assert (group.identifier, group.name, group.protected, group.segment_count) == ("newsletter", "Newsletter", False, 0)
    assert store.get_group("newsletter").name == "Newsletter"


def test_group_name_defaults_to_identifier(store: SegmentStore) -> None:
    assert store.create_group("plain").name == "plain"


def test_group_named_by_an_activation_is_protected(store: SegmentStore) -> None:
    assert store.create_group("shop", "Shop").protected is True


def test_list_groups_in_identifier_order_with_segment_counts(store: SegmentStore) -> None:
    store.create_group("b_group")
    store.create_group("a_group")
    store.add_members("a_group", "seg1", ["1"])
    store.add_members("a_group", "seg2", ["1"])
    assert [(g.identifier, g.segment_count) for g in store.list_groups()] == [("a_group", 2), ("b_group", 0)]


def test_duplicate_group_identifier_is_refused(store: SegmentStore) -> None:
    store.create_group("dup", "First")
    with pytest.raises(ConflictError, match="'dup' already exists"):
        store.create_group("dup", "Second")
    assert store.get_group("dup").name == "First"
    assert count_rows(store, store.tables.segment_groups) == 1


@pytest.mark.parametrize(
    ("identifier", "expected"),
    [
        ("", "non-empty"),
        ("Upper", "lower-case"),
        ("with space", "lower-case"),
        ("x" * 256, "at most 255"),
        ("tab\there", "lower-case"),
        ("dash-ed", "lower-case"),
        (12, "non-empty string"),
    ],
)
def test_bad_group_identifier_is_refused_and_nothing_written(store: SegmentStore, identifier, expected) -> None:
    with pytest.raises(ValidationError, match=expected):
        store.create_group(identifier, "Name")
    assert count_rows(store, store.tables.segment_groups) == 0


@pytest.mark.parametrize("name", ["", "   ", "bell\x07", "x" * 256, 5])
def test_bad_group_name_is_refused(store: SegmentStore, name) -> None:
    with pytest.raises(ValidationError):
        store.create_group("good", name)
    assert count_rows(store, store.tables.segment_groups) == 0


def test_rename_group(store: SegmentStore) -> None:
    store.create_group("mine", "Old")
    assert store.rename_group("mine", "New").name == "New"
    assert store.get_group("mine").name == "New"


def test_unknown_group_is_reported(store: SegmentStore) -> None:
    with pytest.raises(NotFoundError, match="'ghost' does not exist"):
        store.rename_group("ghost", "Name")
    with pytest.raises(NotFoundError):
        store.delete_group("ghost")
    with pytest.raises(NotFoundError):
        store.add_members("ghost", "seg", ["1"])
    with pytest.raises(NotFoundError):
        store.list_segments("ghost")
    assert count_rows(store, store.tables.segments) == 0


def test_delete_group_removes_segments_and_memberships(store: SegmentStore) -> None:
    store.create_group("gone")
    store.create_group("kept")
    store.add_members("gone", "seg", ["1", "2"])
    store.add_members("kept", "seg", ["1"])
    store.delete_group("gone")
    assert [g.identifier for g in store.list_groups()] == ["kept"]
    assert count_rows(store, store.tables.segments) == 1
    assert count_rows(store, store.tables.memberships) == 1


@pytest.mark.parametrize(
    "operation",
    [
        lambda s: s.rename_group("shop", "Renamed"),
        lambda s: s.delete_group("shop"),
        lambda s: s.add_members("shop", "seg", ["9"]),
        lambda s: s.remove_members("shop", "seg", ["1"]),
        lambda s: s.replace_members("shop", "seg", ["9"]),
        lambda s: s.delete_segment("shop", "seg"),
    ],
    ids=["rename", "delete", "add", "remove", "replace", "delete-segment"],
)
def test_protected_group_refuses_changes_by_hand(store: SegmentStore, operation) -> None:
    store.create_group("shop", "Shop")
    with store.engine.begin() as conn:  # as a webhook delivery would
        group_id = store.group_id(conn, "shop")
        row, _ = membership.ensure_segment(conn, store.tables, group_id, "seg", "Seg")
        membership.add_members(conn, store.tables, row.id, ["1"])
    with pytest.raises(ProtectedGroupError, match="^Cannot modify protected segment group$"):
        operation(store)
    assert store.get_group("shop").name == "Shop"
    assert store.members("shop", "seg") == ["1"]


def test_add_members_creates_segment_and_counts_only_new(store: SegmentStore) -> None:
    store.create_group("g")
    assert store.add_members("g", "cats", ["1", "2", 3], name="Cat owners") == 3
    assert store.add_members("g", "cats", ["2", "3", "4", "4"]) == 1
    assert store.members("g", "cats") == ["1", "2", "3", "4"]
    (segment,) = store.list_segments("g")
    assert (segment.identifier, segment.name, segment.member_count) == ("cats", "Cat owners", 4)


def test_remove_members_ignores_absent_ones(store: SegmentStore) -> None:
    store.create_group("g")
    store.add_members("g", "s", ["1", "2", "3"])
    assert store.remove_members("g", "s", ["2", "99"]) == 1
    assert store.members("g", "s") == ["1", "3"]


def test_replace_members_makes_membership_exact(store: SegmentStore) -> None:
    store.create_group("g")
    store.add_members("g", "s", ["1", "2", "3"])
    assert store.replace_members("g", "s", ["3", "4", "5"]) == (2, 2)
    assert store.members("g", "s") == ["3", "4", "5"]
    assert store.replace_members("g", "s", []) == (0, 3)
    assert store.members("g", "s") == []


def test_delete_segment_removes_its_memberships(store: SegmentStore) -> None:
    store.create_group("g")
    store.add_members("g", "s", ["1"])
    store.add_members("g", "t", ["1"])
    store.delete_segment("g", "s")
    assert [s.identifier for s in store.segments_for("1")] == ["t"]
    assert count_rows(store, store.tables.memberships) == 1


@pytest.mark.parametrize(
    ("user_ids", "expected"),
    [
        (["1", None], "position 1: user id must be a string or an integer"),
        (["1", 2.5], "position 1"),
        ([True], "not bool"),
        (["ok", ""], "must not be empty"),
        (["x" * 256], "at most 255"),
        (["new\nline"], "control characters"),
        (["nul\x00"], "control characters"),
        (["bidi\u202e"], "control characters"),
        ("12345", "list of ids"),
    ],
)
def test_bad_user_ids_are_refused_and_nothing_written(store: SegmentStore, user_ids, expected) -> None:
    store.create_group("g")
    with pytest.raises(ValidationError, match=expected):
        store.add_members("g", "s", user_ids)
    assert count_rows(store, store.tables.segments) == 0
    assert count_rows(store, store.tables.memberships) == 0


def test_unicode_and_long_user_ids_are_kept_exactly(store: SegmentStore) -> None:
    ids = ["zoë", "用户42", "x" * 255, "émoji-🐈"]
    store.create_group("g")
    store.add_members("g", "s", ids)
    assert sorted(store.members("g", "s")) == sorted(ids)
    assert store.is_in_segment("用户42", "s")


def test_segments_for_lists_a_users_segments_across_groups(store: SegmentStore) -> None:
    store.create_group("alpha")
    store.create_group("beta")
    store.add_members("alpha", "vip", ["7"], name="VIP")
    store.add_members("beta", "cats", ["7", "8"], name="Cat owners")
    store.add_members("beta", "dogs", ["8"])
    found = store.segments_for(7)
    assert [(s.group, s.identifier, s.name) for s in found] == [("alpha", "vip", "VIP"), ("beta", "cats", "Cat owners")]
    assert store.segments_for("nobody") == []


def test_is_in_segment_by_identifier_name_and_group_path(store: SegmentStore) -> None:
    store.create_group("alpha")
    store.create_group("beta")
    store.add_members("alpha", "5d822e81", ["1"], name="Cat owners")
    store.add_members("beta", "other", ["2"], name="Cat owners")
    assert store.is_in_segment("1", "5d822e81")
    assert store.is_in_segment("1", "Cat owners")
    assert store.is_in_segment("1", "alpha/5d822e81")
    assert store.is_in_segment("1", "alpha/Cat owners")
    assert not store.is_in_segment("1", "beta/Cat owners")
    assert store.is_in_segment("2", "beta/Cat owners")
    assert not store.is_in_segment("3", "Cat owners")


def test_segment_metadata_is_kept(store: SegmentStore) -> None:
    from datetime import datetime

    store.create_group("g")
    with store.engine.begin() as conn:
        group_id = store.group_id(conn, "g")
        metadata = SegmentMetadata(
            name="Cat owners",
            description="People with cats",
            tags=("pets", "cats"),
            profile_count=1200,
            source_updated_at=datetime(2026, 11, 28, 10, 0),
        )
        row, _ = membership.ensure_segment(conn, store.tables, group_id, "5d822e81")
        assert membership.update_metadata(conn, store.tables, row, metadata)
        assert not membership.update_metadata(conn, store.tables, membership.find_segment(conn, store.tables, group_id, "5d822e81"), metadata)  # the same again: nothing to write
    (segment,) = store.list_segments("g")
    assert segment.description == "People with cats"
    assert segment.tags == ("pets", "cats")
    assert segment.profile_count == 1200
    assert segment.source_updated_at == datetime(2026, 11, 28, 10, 0)


def test_large_membership_changes_are_exact(store: SegmentStore) -> None:
    store.create_group("g")
    first = [str(i) for i in range(0, 5000)]
    second = [str(i) for i in range(2500, 7500)]
    assert store.replace_members("g", "big", first) == (5000, 0)
    assert store.replace_members("g", "big", second) == (2500, 2500)
    assert set(store.members("g", "big")) == set(second)
    assert store.remove_members("g", "big", [str(i) for i in range(0, 3000)]) == 500


def test_list_segments_is_paged(store: SegmentStore) -> None:
    store.create_group("g")
    for name in ["a", "b", "c", "d"]:
        store.add_members("g", name, ["1"])
    assert [s.identifier for s in store.list_segments("g", offset=1, limit=2)] == ["b", "c"]


def test_users_segments_are_one_index_lookup(store: SegmentStore) -> None:
    index_names = {index.name for index in store.tables.memberships.indexes}
    assert "ix_cdp_memberships_user_id_segment_id" in index_names
    assert list(store.tables.memberships.indexes)[0].columns.keys() == ["user_id", "segment_id"]


def stored_count(store: SegmentStore, group: str, segment: str) -> int:
    """The kept count, and a check that it is what counting the rows gives."""
    kept = store.get_segment(group, segment).member_count
    assert kept == len(store.members(group, segment)), (kept, len(store.members(group, segment)))
    return kept


def test_the_member_count_stays_right_across_add_remove_and_replace(store: SegmentStore) -> None:
    """Kept with each change, in its transaction, by every writer: a few ids (one
    statement), thousands (PostgreSQL stages them; COPY fills an empty segment), repeats."""
    store.create_group("g")
    store.add_members("g", "s", ["1", "2", "3"])
    assert stored_count(store, "g", "s") == 3
    store.add_members("g", "s", ["2", "3", "4"])  # two already there
    assert stored_count(store, "g", "s") == 4
    store.remove_members("g", "s", ["1", "9"])  # 9 is no member
    assert stored_count(store, "g", "s") == 3
    store.replace_members("g", "s", ["4", "5"])
    assert stored_count(store, "g", "s") == 2
    store.replace_members("g", "big", [str(n) for n in range(5000)])  # into an empty segment
    assert stored_count(store, "g", "big") == 5000
    store.replace_members("g", "big", [str(n) for n in range(2500, 7500)])  # staged: half kept
    assert stored_count(store, "g", "big") == 5000
    store.add_members("g", "big", [str(n) for n in range(7000, 9000)])
    assert stored_count(store, "g", "big") == 6500
    store.remove_members("g", "big", [str(n) for n in range(0, 3000)])
    assert stored_count(store, "g", "big") == 6000
    store.replace_members("g", "big", [])
    assert stored_count(store, "g", "big") == 0
    assert stored_count(store, "g", "s") == 2  # the other segment untouched


def test_a_refused_change_leaves_the_count_as_it_was(store: SegmentStore) -> None:
    store.create_group("g")
    store.add_members("g", "s", ["1", "2"])
    with pytest.raises(ValidationError):
        store.add_members("g", "s", ["3", "bad\x00id"])
    assert stored_count(store, "g", "s") == 2


def test_members_are_paged_by_key_both_ways_and_from_a_user_id(store: SegmentStore) -> None:
    store.create_group("g")
    ids = [f"u{n:03d}" for n in range(25)]
    store.add_members("g", "s", ids)
    first = store.members_page("g", "s", limit=10)
    assert (first.members, first.has_previous, first.has_next) == (ids[:10], False, True)
    second = store.members_page("g", "s", after=first.members[-1], limit=10)
    assert (second.members, second.has_previous, second.has_next) == (ids[10:20], True, True)
    last = store.members_page("g", "s", after=second.members[-1], limit=10)
    assert (last.members, last.has_previous, last.has_next) == (ids[20:], True, False)
    back = store.members_page("g", "s", before=last.members[0], limit=10)
    assert (back.members, back.has_previous, back.has_next) == (ids[10:20], True, True)
    assert store.members_page("g", "s", before=second.members[0], limit=10).members == ids[:10]
    jump = store.members_page("g", "s", at="u017", limit=10)
    assert (jump.members, jump.has_previous, jump.has_next) == (ids[17:], True, False)
    between = store.members_page("g", "s", at="u0055", limit=3)  # no such member: the next ones
    assert between.members == ["u006", "u007", "u008"]
    beyond = store.members_page("g", "s", at="z", limit=10)
    assert (beyond.members, beyond.has_previous, beyond.has_next) == ([], True, False)
    with pytest.raises(NotFoundError):
        store.members_page("g", "nope")
