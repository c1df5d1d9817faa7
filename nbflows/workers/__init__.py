"""Workers: processes that claim due flow runs of work pools and execute them.

One life cycle (`nbflows.workers.base.BaseWorker`) for every pool type; a pool type is a
subclass registered under the entry point group `nbflows.workers` with the type's name
(`process = "nbflows.workers.process:ProcessWorker"`), so another package can add one.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from nbflows.errors import InvalidInput
from nbflows.protocol import WORKERS_ENTRY_POINT_GROUP

if TYPE_CHECKING:
    from nbflows.workers.base import BaseWorker

__all__ = ["get_worker_class", "worker_types"]


def worker_types() -> list[str]:
    """The pool types a worker can be started for here."""
    return sorted({ep.name for ep in entry_points(group=WORKERS_ENTRY_POINT_GROUP)})


def get_worker_class(pool_type: str) -> type[BaseWorker]:
    """The worker class of `pool_type`; `InvalidInput` for a type nothing here can serve."""
    from nbflows.workers.base import BaseWorker

    found = [ep for ep in entry_points(group=WORKERS_ENTRY_POINT_GROUP) if ep.name == pool_type]
    if not found:
        known = ", ".join(worker_types()) or "none"
        raise InvalidInput(f"no worker for work pool type '{pool_type}'; worker types: {known}")
    try:
        cls = found[0].load()
    except (ImportError, AttributeError) as exc:
        raise InvalidInput(
            f"the '{pool_type}' worker ({found[0].value}) cannot be loaded: {exc}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, BaseWorker)):
        raise InvalidInput(f"entry point '{pool_type}' ({found[0].value}) is not a BaseWorker")
    return cls
