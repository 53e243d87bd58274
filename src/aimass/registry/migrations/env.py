"""Alembic environment: runs on the connection aimass hands it (see registry/database.py)."""

from alembic import context

import aimass.gateway.tables  # registers the gateway's tables on Base
import aimass.lifecycle.tables  # noqa: F401  (registers the runs table on Base)
from aimass.registry.tables import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
