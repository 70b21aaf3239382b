"""cdp_bridge's own schema revisions (Alembic), shipped inside the package.

They keep their own version table, ``cdp_alembic_version``, so they never mix with the
host's Alembic or Flask-Migrate history. Each revision is a snapshot: it imports nothing
from cdp_bridge, so later code cannot change what an old revision does. Run them with
``flask cdp upgrade-db`` (see :mod:`cdp_bridge.store.schema`).
"""
