"""The migrations build the schema the models declare (tables, columns, indexes, keys), on
SQLite and PostgreSQL: a store made by migrating is the one the code expects."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from nbflows.store import tables as t
from nbflows.store.db import Database

from .pg_support import postgres_server


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'nbflows.db'}")
        yield db
        db.dispose()
    else:
        with postgres_server() as url:
            db = Database(url)
            yield db
            db.dispose()


def test_migrated_store_matches_the_models(database: Database) -> None:
    with database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), t.Base.metadata)
    assert differences == []
