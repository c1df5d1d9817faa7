"""Connections of a dask worker to Dask schedulers: one client per scheduler, kept open.

Each connection subscribes to one Dask event topic of its own; the tasks of its runs send their
messages there (`task._Outbox`) and `Cluster` hands each to the queue of its run (by task key).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["Cluster", "Clusters", "SchedulerUnreachable"]

#: Seconds between two looks at which Dask workers are alive.
WORKERS_REFRESH = 1.0
#: After a scheduler could not be reached, runs for it fail at once for this many seconds (rather
#: than each waiting its connect timeout in turn).
RETRY_UNREACHABLE_AFTER = 5.0


class SchedulerUnreachable(Exception):
    """The pool's Dask scheduler cannot be reached (or is not configured); says which and why."""


class Cluster:
    """A Dask client connected to one scheduler, with the message queues of its runs."""

    def __init__(self, client: Any, address: str) -> None:
        self.client = client
        self.address = address
        self.topic = f"nbflows-{uuid.uuid4().hex}"
        self._queues: dict[str, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._workers: set[str] = set()
        self._workers_at = 0.0
        client.subscribe_topic(self.topic, self._deliver)

    @contextlib.contextmanager
    def messages(self, key: str) -> Iterator[queue.Queue[dict[str, Any]]]:
        """The queue receiving the messages of task `key` while the block runs."""
        box: queue.Queue[dict[str, Any]] = queue.Queue()
        with self._lock:
            self._queues[key] = box
        try:
            yield box
        finally:
            with self._lock:
                self._queues.pop(key, None)

    def _deliver(self, event: tuple[float, dict[str, Any]]) -> None:
        # Runs on the Dask client's event loop: hand over, nothing more.
        _, message = event
        with self._lock:
            box = self._queues.get(str(message.get("key")))
        if box is not None:
            box.put(message)

    def worker_alive(self, address: str) -> bool:
        """Whether the Dask worker at `address` is connected to the scheduler (asked at most
        every `WORKERS_REFRESH` seconds)."""
        now = time.monotonic()
        with self._lock:
            fresh = now - self._workers_at < WORKERS_REFRESH
            if fresh:
                return address in self._workers
        info = self.client.run_on_scheduler(_worker_addresses)
        with self._lock:
            self._workers, self._workers_at = set(info), time.monotonic()
            return address in self._workers

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.unsubscribe_topic(self.topic)
        with contextlib.suppress(Exception):
            self.client.close(timeout=5)


def _worker_addresses(dask_scheduler: Any) -> list[str]:
    return list(dask_scheduler.workers)


class Clusters:
    """The clusters a worker's runs go to, by scheduler (or dask-gateway cluster)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say
        self._clusters: dict[tuple[Any, ...], Cluster] = {}
        self._unreachable: dict[tuple[Any, ...], tuple[float, str]] = {}
        self._lock = threading.Lock()

    def connect(self, config: dict[str, Any]) -> Cluster:
        """The connection for a run's job configuration; `SchedulerUnreachable` when there is
        none within `connect_timeout` seconds."""
        target = _target(config)
        with self._lock:
            cluster = self._clusters.get(target)
            if cluster is not None and cluster.client.status == "running":
                return cluster
            if cluster is not None:
                cluster.close()
                del self._clusters[target]
            failed_at, why = self._unreachable.get(target, (0.0, ""))
            if time.monotonic() - failed_at < RETRY_UNREACHABLE_AFTER:
                raise SchedulerUnreachable(why)
            try:
                cluster = _open(config, target, float(config.get("connect_timeout") or 10))
            except SchedulerUnreachable as exc:
                self._unreachable[target] = (time.monotonic(), str(exc))
                raise
            self._unreachable.pop(target, None)
            self._clusters[target] = cluster
        self._say(f"connected to the Dask scheduler {cluster.address}")
        return cluster

    def close(self) -> None:
        with self._lock:
            clusters, self._clusters = list(self._clusters.values()), {}
        for cluster in clusters:
            cluster.close()


def _target(config: dict[str, Any]) -> tuple[Any, ...]:
    if config.get("gateway_address"):
        if not config.get("gateway_cluster"):
            raise SchedulerUnreachable(
                "the job variable gateway_address is set but gateway_cluster is not: name the "
                "dask-gateway cluster to run on"
            )
        return ("gateway", config["gateway_address"], config["gateway_cluster"])
    address = config.get("scheduler_address")
    if not address:
        import dask

        address = dask.config.get("scheduler-address", None) or os.environ.get(
            "DASK_SCHEDULER_ADDRESS"
        )
    if not address:
        raise SchedulerUnreachable(
            "no Dask scheduler to run on: set the job variable scheduler_address (e.g. "
            "'tcp://10.0.0.5:8786') on the pool or the deployment, or DASK_SCHEDULER_ADDRESS "
            "in the worker's environment"
        )
    tls = tuple(config.get(k) for k in ("tls_ca_file", "tls_client_cert", "tls_client_key"))
    return ("scheduler", str(address), tls)


def _open(config: dict[str, Any], target: tuple[Any, ...], timeout: float) -> Cluster:
    from distributed import Client

    if target[0] == "gateway":
        return _open_gateway(config, timeout)
    address, (ca, cert, key) = target[1], target[2]
    security = None
    if ca or cert or key:
        from distributed.security import Security

        security = Security(
            tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True
        )
    try:
        client = Client(address, timeout=timeout, security=security, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise SchedulerUnreachable(
            f"cannot reach the Dask scheduler at {address} within {timeout:g} s ({exc}); is the "
            "cluster running, and is the pool's job variable scheduler_address right?"
        ) from None
    return Cluster(client, address)


def _open_gateway(config: dict[str, Any], timeout: float) -> Cluster:
    try:
        from dask_gateway import Gateway
    except ImportError:
        raise SchedulerUnreachable(
            "the pool runs on dask-gateway but the dask-gateway package is not installed where "
            "this worker runs (pip install dask-gateway)"
        ) from None
    address, name = config["gateway_address"], config["gateway_cluster"]
    try:
        gateway = Gateway(address, auth=config.get("gateway_auth") or None)
        client = gateway.connect(name).get_client(set_as_default=False)
    except Exception as exc:
        raise SchedulerUnreachable(
            f"cannot reach the dask-gateway cluster {name!r} at {address}: {exc}"
        ) from None
    return Cluster(client, f"{address} (cluster {name})")
