"""Alembic's environment for cdp_bridge's revisions: always online, on the connection
:mod:`cdp_bridge.store.schema` hands over, with cdp_bridge's own version table."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table=context.config.attributes["version_table"],
                  render_as_batch=True, transaction_per_migration=True)
with context.begin_transaction():
    context.run_migrations()
