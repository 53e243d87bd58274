"""Alembic environment: runs on the connection aimass hands it (see aimass/db/database.py).

The migrations belong to the product, not to one package: every package's
tables join :class:`~aimass.db.base.Base` here, so autogenerate and the schema
test see them all.
"""

from alembic import context

import aimass.deployments.tables
import aimass.gateway.tables
import aimass.lifecycle.tables
import aimass.registry.tables  # noqa: F401  (each registers its tables on Base)
from aimass.db.base import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
