"""Statements that insert a row or, when its key is taken, do something else: in the
words of the dialect (SQLite and PostgreSQL share ``ON CONFLICT``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.dialects import postgresql, sqlite


def conflict_insert(dialect: str, table: object) -> Any:
    """An INSERT with ``ON CONFLICT`` clauses where the dialect (its name) has them, else ``None``."""
    module = {"postgresql": postgresql, "sqlite": sqlite}.get(dialect)
    return module.insert(table) if module is not None else None


def insert_skipping_conflicts(dialect: str, table: Any, index_elements: list[str] | None = None) -> Any:
    """An INSERT that skips a row violating a unique constraint (``index_elements``: that
    one only), in the words of the dialect named; elsewhere a plain INSERT, whose violation
    raises ``IntegrityError``."""
    with_conflict = conflict_insert(dialect, table)
    if with_conflict is not None:
        return with_conflict.on_conflict_do_nothing(index_elements=index_elements)
    return insert(table).prefix_with("IGNORE") if dialect in {"mysql", "mariadb"} else insert(table)
