"""The client's work pool, work queue and worker calls."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from nbflows.client.transport import Transport, drop_none, segment


class WorkPoolsAPI(Transport):
    """The client's work pool, work queue and worker calls."""

    # -- work pools ----------------------------------------------------------------------------

    def create_work_pool(
        self,
        name: str,
        type: str,
        description: str | None = None,
        base_job_template: dict[str, Any] | None = None,
        concurrency_limit: int | None = None,
        paused: bool = False,
    ) -> dict[str, Any]:
        body = drop_none(
            {
                "name": name,
                "type": type,
                "description": description,
                "base_job_template": base_job_template,
                "concurrency_limit": concurrency_limit,
            }
        )
        body["paused"] = paused
        return cast(dict[str, Any], self._post("work_pools", body))

    def list_work_pools(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._get("work_pools"))

    def read_work_pool(self, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._get(f"work_pools/{segment(name)}"))

    def update_work_pool(self, name: str, **fields: Any) -> dict[str, Any]:
        """PATCH any of `description, base_job_template, concurrency_limit, paused`.

        Fields are sent as given, so `concurrency_limit=None` clears the limit.
        """
        return cast(dict[str, Any], self._patch(f"work_pools/{segment(name)}", fields))

    def delete_work_pool(self, name: str) -> None:
        self._delete(f"work_pools/{segment(name)}")

    def list_work_pool_types(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._get("work_pool_types"))

    def get_default_base_job_template(self, type: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._get(f"work_pool_types/{segment(type)}/base_job_template"))

    # -- work queues ---------------------------------------------------------------------------

    def create_work_queue(
        self,
        pool: str,
        name: str,
        priority: int | None = None,
        concurrency_limit: int | None = None,
        description: str | None = None,
        paused: bool = False,
    ) -> dict[str, Any]:
        body = drop_none(
            {
                "name": name,
                "priority": priority,
                "concurrency_limit": concurrency_limit,
                "description": description,
            }
        )
        body["paused"] = paused
        return cast(dict[str, Any], self._post(f"work_pools/{segment(pool)}/queues", body))

    def list_work_queues(self, pool: str) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._get(f"work_pools/{segment(pool)}/queues"))

    def read_work_queue(self, pool: str, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._get(f"work_pools/{segment(pool)}/queues/{segment(name)}"))

    def update_work_queue(self, pool: str, name: str, **fields: Any) -> dict[str, Any]:
        return cast(
            dict[str, Any],
            self._patch(f"work_pools/{segment(pool)}/queues/{segment(name)}", fields),
        )

    def delete_work_queue(self, pool: str, name: str) -> None:
        self._delete(f"work_pools/{segment(pool)}/queues/{segment(name)}")

    # -- workers -------------------------------------------------------------------------------

    def claim(
        self,
        pool: str,
        worker: str,
        queues: Iterable[str] | None = None,
        limit: int = 1,
        wait: float = 0,
    ) -> list[dict[str, Any]]:
        """Claim up to `limit` due runs; with `wait`, long-poll up to that many seconds (max 30)."""
        body: dict[str, Any] = {"worker": worker, "limit": limit}
        if queues is not None:
            body["queues"] = list(queues)
        if wait:
            body["wait"] = wait
        result = self._post(
            f"work_pools/{segment(pool)}/claim", body, timeout=self._long_timeout(wait)
        )
        return cast(list[dict[str, Any]], result)

    def heartbeat(
        self,
        pool: str,
        worker: str,
        running: Iterable[str],
        limit: int | None = None,
        heartbeat_interval: float | None = None,
        wait: float = 0,
        fences: Mapping[str, int] | None = None,
        problem: str | None = None,
    ) -> dict[str, Any]:
        """Report the runs this worker is executing (`fences`: the fencing token of each); the
        answer lists runs it must cancel. `problem` says why the worker cannot execute the
        pool's runs now (shown on the pool).

        With `wait`, the server holds the request up to that long and answers as soon as one of
        the worker's runs is to be cancelled (so cancellation does not wait for the next beat).
        """
        body: dict[str, Any] = {"name": worker, "running": list(running)}
        if fences:
            body["fences"] = dict(fences)
        if problem is not None:
            body["problem"] = problem
        if limit is not None:
            body["limit"] = limit
        if heartbeat_interval is not None:
            body["heartbeat_interval"] = heartbeat_interval
        if wait:
            body["wait"] = wait
        path = f"work_pools/{segment(pool)}/workers/heartbeat"
        return cast(dict[str, Any], self._post(path, body, timeout=self._long_timeout(wait)))

    def list_workers(self, pool: str) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._get(f"work_pools/{segment(pool)}/workers"))
