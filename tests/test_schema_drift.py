"""The migrations build the schema the models declare (tables, columns, indexes, keys), on
SQLite and PostgreSQL: a store made by migrating is the one the code expects."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from nbflows.store import tables as t
from nbflows.store.db import Database


def test_migrated_store_matches_the_models(database: Database) -> None:
    with database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), t.Base.metadata)
    assert differences == []
