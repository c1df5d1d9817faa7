"""A server starting on a store already at the newest schema revision does not import Alembic
(memory: Alembic brings Mako and Pygments along, for the server's life); any other store is
still migrated by Alembic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import text

from nbflows.store.db import MIGRATIONS, Database
from nbflows.store.revisions import head_revisions

OPEN_STORE = """
import sys
from nbflows.store.db import Database
Database(sys.argv[1]).dispose()
print("alembic" in sys.modules)
"""


def _open_in_a_fresh_process(url: str) -> bool:
    """Open the store as a starting server does; whether that imported Alembic."""
    out = subprocess.run(
        [sys.executable, "-c", OPEN_STORE, url], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip() == "True"


def _config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def test_the_head_read_from_the_migration_files_is_alembics() -> None:
    from alembic.script import ScriptDirectory

    assert head_revisions() == set(ScriptDirectory.from_config(_config()).get_heads())


def test_a_store_at_the_newest_revision_opens_without_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nbflows.db'}"
    assert _open_in_a_fresh_process(url)  # a new store: created by Alembic
    assert not _open_in_a_fresh_process(url)  # at the newest revision: nothing to import

    # A store at an older revision is migrated (by Alembic) to the newest one.
    [head] = head_revisions()
    from alembic import command

    db = Database(url, migrate=False)
    with db.engine.begin() as connection:
        config = _config()
        config.attributes["connection"] = connection
        command.downgrade(config, "0006_pipelines")
    db.dispose()
    assert _open_in_a_fresh_process(url)
    db = Database(url, migrate=False)
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).all() == [
            (head,)
        ]
        assert connection.execute(text("SELECT count(*) FROM run_files")).scalar() == 0
    db.dispose()
