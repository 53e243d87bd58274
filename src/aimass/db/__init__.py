"""The product's one database: the engine, the declarative base and the migration chain.

Each package keeps its own tables (``registry/tables.py``, ``gateway/tables.py``,
``lifecycle/tables.py``, ``deployments/tables.py``) on :class:`~aimass.db.base.Base`;
the migrations under ``aimass/migrations`` create and evolve all of them.
"""
