"""``postgres://`` and ``postgresql://`` URLs, as hosting providers hand them out, mapped to
the PostgreSQL driver that is installed.

SQLAlchemy knows no ``postgres://`` dialect (``NoSuchModuleError: …dialects:postgres``),
and reads ``postgresql://`` as psycopg2's, which cdp_bridge does not install (its
``postgresql`` extra is psycopg 3). A URL that names its driver (``postgresql+psycopg2://``)
is left as it is.
"""

from __future__ import annotations

from importlib.util import find_spec

#: The drivers tried, in order: SQLAlchemy's dialect name and the module it imports.
DRIVERS = (("psycopg", "psycopg"), ("psycopg2", "psycopg2"))


def database_url(url: str) -> str:
    """``url`` with a bare ``postgres://`` / ``postgresql://`` scheme naming the installed
    driver (psycopg 3, else psycopg2); any other URL unchanged."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme not in ("postgres", "postgresql"):
        return url
    for dialect, module in DRIVERS:
        if find_spec(module) is not None:
            return f"postgresql+{dialect}://{rest}"
    return f"postgresql://{rest}"
