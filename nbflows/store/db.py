"""The store: one engine, sessions, and Alembic migrations applied on start."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Table, create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import Insert

from nbflows import protocol
from nbflows.errors import NBFlowsError

MIGRATIONS = Path(__file__).with_name("migrations")


def default_database_url() -> str:
    """`NBFLOWS_DATABASE_URL`, else SQLite under the Jupyter data dir (its folder made)."""
    url = protocol.default_database_url()
    if not os.environ.get(protocol.DATABASE_URL_ENV):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never wait for the writer; NORMAL sync is durable enough with WAL.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class Database:
    """Owns the engine and the session factory for one database URL."""

    def __init__(self, url: str | None = None, *, migrate: bool = True) -> None:
        self.url = url or default_database_url()
        self.engine: Engine = make_engine(self.url)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.migrate()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent)."""
        from nbflows.store.revisions import at_head

        with self.engine.connect() as connection:
            if at_head(connection):
                return  # the usual start: Alembic is not even imported
        from alembic import command
        from alembic.config import Config
        from alembic.util.exc import CommandError

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        sqlite = self.dialect == "sqlite"
        with self.engine.connect() as connection:
            if sqlite:
                # Alembic rebuilds SQLite tables (copy, drop, rename); with foreign keys on,
                # dropping the old table would cascade to the rows that reference it. The
                # pragma only takes effect outside a transaction.
                connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
                connection.commit()
            try:
                with connection.begin():
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
            except CommandError as exc:
                # Alembic's "Can't locate revision": the schema was made by an nbflows that
                # knows revisions this one does not (a newer version or another branch).
                where = self.engine.url.render_as_string(hide_password=True)
                raise NBFlowsError(
                    f"the nbflows store {where} was migrated by another nbflows version, "
                    f"which this one cannot read ({exc}). Install that version (or a newer "
                    f"one), or use another store: set {protocol.DATABASE_URL_ENV}."
                ) from None
            finally:
                if sqlite:
                    connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                    connection.commit()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        with self.sessionmaker.begin() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 10}, pool_size=8
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def begin_write(session: Session) -> None:
    """On SQLite, take the database's write lock now, before reading what will be changed.

    pysqlite starts a transaction only at the first write, so a read-then-write (check a run's
    state, then change it) could act on a state another writer has replaced meanwhile. A write
    that matches no row takes the lock at once; later reads in this transaction then see the
    latest committed state and no other writer can slip in. PostgreSQL uses row locks
    (SELECT ... FOR UPDATE) instead, so this does nothing there.
    """
    if session.get_bind().dialect.name == "sqlite":
        # Once per transaction: a request that changes several things (a worker's end of an
        # attempt: logs, notebook, state) would otherwise take it each time.
        transaction = session.get_transaction()
        if transaction is not None and session.info.get(_WRITE_LOCKED) is transaction:
            return
        session.execute(text("UPDATE work_pools SET paused = paused WHERE 0"))
        session.info[_WRITE_LOCKED] = session.get_transaction()


#: `Session.info` key: the transaction that holds SQLite's write lock (see `begin_write`).
_WRITE_LOCKED = "nbflows_write_locked"


def insert_or_ignore(session: Session, table: Table, unique: list[str]) -> Insert:
    """`INSERT ... ON CONFLICT (unique) DO NOTHING` in the session's dialect.

    A row that would break the unique index on `unique` is left out, without an error that
    would end the whole transaction: how concurrent writers of the same row agree on one.
    """
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    return insert(table).on_conflict_do_nothing(index_elements=unique)
