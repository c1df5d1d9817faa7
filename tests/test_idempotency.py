"""Idempotency keys of run requests, through the REST API of a real server."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .pg_support import postgres_server
from .servers import Server, start_server


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def srv(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres_server()) if request.param == "postgresql" else None
        server = start_server(tmp_path_factory.mktemp("idem"), embedded_worker=False, db_url=url)
        stack.callback(server.stop)
        yield server


def ok(response: httpx.Response, *statuses: int) -> Any:
    assert response.status_code in (statuses or (200,)), response.text
    return response.json()


@pytest.fixture(scope="module")
def two_deployments(srv: Server) -> tuple[dict[str, Any], dict[str, Any]]:
    ok(srv.http("POST", "work_pools", json={"name": "idem", "type": "process"}), 201)
    return tuple(  # type: ignore[return-value]
        ok(
            srv.http(
                "POST",
                "deployments",
                json={"path": "trivial.ipynb", "name": name, "work_pool_name": "idem"},
            ),
            201,
        )
        for name in ("a", "b")
    )


def request_run(srv: Server, deployment: dict[str, Any], key: str) -> httpx.Response:
    return srv.http("POST", f"deployments/{deployment['id']}/runs", json={"idempotency_key": key})


def test_a_key_is_scoped_to_its_deployment(
    srv: Server, two_deployments: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    a, b = two_deployments
    run_a = ok(request_run(srv, a, "nightly-2026-11-29"), 201)
    run_b = ok(request_run(srv, b, "nightly-2026-11-29"), 201)
    assert run_b["id"] != run_a["id"]
    assert run_b["deployment_id"] == b["id"]
    assert ok(request_run(srv, b, "nightly-2026-11-29"), 200)["id"] == run_b["id"]
    assert ok(request_run(srv, a, "nightly-2026-11-29"), 200)["id"] == run_a["id"]


def test_concurrent_requests_with_one_key_get_the_one_run(
    srv: Server, two_deployments: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    a, _ = two_deployments
    for attempt in range(5):  # a few rounds: the race is not won the same way every time
        key = f"burst-{attempt}"
        start = threading.Barrier(8)
        answers: list[httpx.Response] = []

        def ask(
            key: str = key, start: threading.Barrier = start, out: list[httpx.Response] = answers
        ) -> None:
            start.wait()
            out.append(request_run(srv, a, key))

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert [r.status_code for r in answers if r.status_code >= 300] == [], [
            r.text for r in answers
        ]
        assert sorted(r.status_code for r in answers) == [200] * 7 + [201]
        assert len({r.json()["id"] for r in answers}) == 1
    runs = ok(srv.http("GET", "flow_runs", params={"deployment_id": a["id"], "limit": 1000}))
    keys = [r["idempotency_key"] for r in runs if (r.get("idempotency_key") or "").startswith("b")]
    assert len(keys) == len(set(keys)) == 5
