"""The route table of `nbflows/api/`: one place, used to serve the API, to describe it (the
OpenAPI document) and to shape each answer (its response model).

Each method of a route says its `summary`, its request `body` and `query` models (`path`: JSON
schemas of path parameters beyond "a string"), its
`responses` (status -> the type of the JSON answer; None: no body), and with `linked: False` that
the document links no created resource to it (see `LINKS`).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import TypeAdapter

from nbflows import schemas as s
from nbflows.results.exports import FORMATS

from . import routes as r
from . import run_files as f
from .openapi import Binary, OpenAPI

_NAME = r"(?P<{}>[^/]+)"
POOL, QUEUE, REF, RUN = (
    _NAME.format("pool"),
    _NAME.format("queue"),
    _NAME.format("ref"),
    _NAME.format("run_id"),
)
FORMAT, ARTIFACT, SHA256 = _NAME.format("fmt"), _NAME.format("name"), _NAME.format("sha256")
JSON = s.JSONObject

ROUTES: list[tuple[str, type, dict[str, Any]]] = [
    (
        "health",
        r.Health,
        {
            "get": {
                "summary": "Server health, version and size limits",
                "responses": {200: s.HealthReply},
            }
        },
    ),
    ("openapi.json", OpenAPI, {"get": {"summary": "This document", "responses": {200: JSON}}}),
    (
        "work_pool_types",
        r.PoolTypes,
        {
            "get": {
                "summary": "Pool types and their default templates",
                "responses": {200: list[s.PoolTypeReply]},
            }
        },
    ),
    (
        r"work_pool_types/(?P<kind>[^/]+)/base_job_template",
        r.PoolTypeTemplate,
        {"get": {"summary": "Default base job template of a pool type", "responses": {200: JSON}}},
    ),
    (
        "work_pools",
        r.WorkPools,
        {
            "get": {"summary": "List work pools", "responses": {200: list[s.WorkPoolReply]}},
            "post": {
                "summary": "Create a work pool",
                "body": s.WorkPoolCreate,
                "responses": {201: s.WorkPoolReply},
            },
        },
    ),
    (
        f"work_pools/{POOL}",
        r.WorkPool,
        {
            "get": {"summary": "Read a work pool", "responses": {200: s.WorkPoolReply}},
            "patch": {
                "summary": "Update a work pool",
                "body": s.WorkPoolUpdate,
                "responses": {200: s.WorkPoolReply},
            },
            "delete": {"summary": "Delete a work pool", "responses": {204: None}},
        },
    ),
    (
        f"work_pools/{POOL}/queues",
        r.WorkQueues,
        {
            "get": {"summary": "List a pool's queues", "responses": {200: list[s.WorkQueueReply]}},
            "post": {
                "summary": "Create a work queue",
                "body": s.WorkQueueCreate,
                "responses": {201: s.WorkQueueReply},
            },
        },
    ),
    (
        f"work_pools/{POOL}/queues/{QUEUE}",
        r.WorkQueue,
        {
            "get": {"summary": "Read a work queue", "responses": {200: s.WorkQueueReply}},
            "patch": {
                "summary": "Update a work queue",
                "body": s.WorkQueueUpdate,
                "responses": {200: s.WorkQueueReply},
            },
            "delete": {"summary": "Delete a work queue", "responses": {204: None}},
        },
    ),
    (
        f"work_pools/{POOL}/claim",
        r.Claim,
        {
            "post": {
                "summary": "Claim due runs (long-poll)",
                # Not a link target of a new pool: its body names queues, each may be unknown.
                "linked": False,
                "body": s.ClaimRequest,
                "responses": {200: list[s.ClaimedRunReply]},
            }
        },
    ),
    (
        f"work_pools/{POOL}/workers/heartbeat",
        r.Heartbeat,
        {
            "post": {
                "summary": "Worker heartbeat; returns runs to cancel",
                "body": s.HeartbeatRequest,
                "responses": {200: s.HeartbeatReply},
            }
        },
    ),
    (
        f"work_pools/{POOL}/workers",
        r.Workers,
        {"get": {"summary": "List a pool's workers", "responses": {200: list[s.WorkerReply]}}},
    ),
    (
        "deployments",
        r.Deployments,
        {
            "get": {
                "summary": "List deployments",
                "query": s.DeploymentsQuery,
                "responses": {200: list[s.DeploymentReply]},
            },
            "post": {
                "summary": "Deploy (create, or a new version: 200)",
                "body": s.DeployRequest,
                "responses": {201: s.DeploymentReply, 200: s.DeploymentReply},
            },
        },
    ),
    (
        r"deployments/name/(?P<flow>[^/]+)/(?P<name>[^/]+)",
        r.DeploymentByName,
        {
            "get": {
                "summary": "Read a deployment by flow and deployment name",
                "responses": {200: s.DeploymentReply},
            }
        },
    ),
    (
        f"deployments/{REF}",
        r.Deployment,
        {
            "get": {"summary": "Read a deployment", "responses": {200: s.DeploymentReply}},
            "patch": {
                "summary": "Update a deployment",
                "body": s.DeploymentUpdate,
                "responses": {200: s.DeploymentReply},
            },
            "delete": {"summary": "Delete a deployment", "responses": {204: None}},
        },
    ),
    (
        f"deployments/{REF}/notebook",
        r.DeploymentNotebook,
        {
            "get": {
                "summary": "Frozen notebook",
                "query": s.DeploymentNotebookQuery,
                "responses": {200: s.Notebook},
            }
        },
    ),
    (
        f"deployments/{REF}/files",
        f.DeploymentFiles,
        {
            "get": {
                "summary": "The project files a version carries (for remote process workers)",
                "query": s.DeploymentNotebookQuery,
                "responses": {200: s.ProjectFilesReply},
            }
        },
    ),
    (
        f"deployments/{REF}/files/{SHA256}",
        f.DeploymentFile,
        {"get": {"summary": "One project file, by its sha256", "responses": {200: Binary()}}},
    ),
    (
        f"deployments/{REF}/upcoming",
        r.DeploymentUpcoming,
        {
            "get": {
                "summary": "Upcoming runs",
                "query": s.UpcomingQuery,
                "responses": {200: list[s.FlowRunReply]},
            }
        },
    ),
    (
        f"deployments/{REF}/runs",
        r.DeploymentRuns,
        {
            "post": {
                "summary": "Run a deployment (the same run again for a known idempotency key: 200)",
                "body": s.RunRequest,
                "responses": {201: s.FlowRunReply, 200: s.FlowRunReply},
            }
        },
    ),
    (
        "flow_runs",
        r.FlowRuns,
        {
            "get": {
                "summary": "List flow runs, newest first",
                "query": s.FlowRunsQuery,
                "responses": {200: list[s.FlowRunReply]},
            },
            "post": {
                "summary": "Record an interactive flow run",
                "body": s.InteractiveRunCreate,
                "responses": {201: s.FlowRunReply},
            },
        },
    ),
    (
        "flow_runs/prune",
        f.PruneFlowRuns,
        {
            "post": {
                "summary": "Remove finished runs with their logs, notebooks and artifacts "
                "(or with dry_run, say what would go)",
                "body": s.PruneRequest,
                "responses": {200: s.PruneReply},
            }
        },
    ),
    (
        f"flow_runs/{RUN}",
        r.FlowRun,
        {"get": {"summary": "Read a flow run", "responses": {200: s.FlowRunReply}}},
    ),
    (
        f"flow_runs/{RUN}/set_state",
        r.FlowRunState,
        {
            "post": {
                "summary": "Change a run's state",
                "body": s.SetState,
                "responses": {200: s.FlowRunReply},
            }
        },
    ),
    (
        f"flow_runs/{RUN}/cancel",
        r.FlowRunCancel,
        {"post": {"summary": "Cancel a run", "responses": {200: s.FlowRunReply}}},
    ),
    (
        f"flow_runs/{RUN}/heartbeat",
        r.FlowRunHeartbeat,
        {
            "post": {
                "summary": "A kernel's beat for its %%flow run",
                "body": s.FlowRunHeartbeatRequest,
                "responses": {200: s.FlowRunBeatReply},
            }
        },
    ),
    (
        f"flow_runs/{RUN}/logs",
        r.FlowRunLogs,
        {
            "get": {
                "summary": "Read log lines (long-poll with wait)",
                "query": s.LogsQuery,
                "responses": {200: s.LogsPageReply},
            },
            "post": {
                "summary": "Write log lines",
                "body": s.LogIn | list[s.LogIn],
                "responses": {201: s.LogsWrittenReply},
            },
        },
    ),
    (
        f"flow_runs/{RUN}/notebook",
        r.FlowRunNotebook,
        {
            "get": {"summary": "Executed notebook", "responses": {200: s.Notebook}},
            "put": {
                "summary": "Store the executed notebook",
                "query": s.NotebookStoreQuery,
                "body": s.Notebook,
                "responses": {204: None},
            },
        },
    ),
    (
        f"flow_runs/{RUN}/exports/{FORMAT}",
        f.FlowRunExport,
        {
            "get": {
                "summary": "The executed notebook exported (html; pdf where Chromium exists)",
                "path": {"fmt": {"enum": list(FORMATS)}},
                "responses": {200: Binary("text/html", "application/pdf")},
            }
        },
    ),
    (
        f"flow_runs/{RUN}/artifacts",
        f.FlowRunArtifacts,
        {"get": {"summary": "A run's artifacts", "responses": {200: list[s.RunFileReply]}}},
    ),
    (
        f"flow_runs/{RUN}/artifacts/{ARTIFACT}",
        f.FlowRunArtifact,
        {
            "get": {
                "summary": "Download an artifact (name URL-encoded, '/' as %2F)",
                "responses": {200: Binary()},
            },
            "put": {
                "summary": "Store an artifact of a run",
                "query": s.NotebookStoreQuery,
                "body": Binary(),
                "responses": {201: s.RunFileReply},
            },
        },
    ),
]


def response_adapter(handler: type, method: str, status: int) -> TypeAdapter[Any] | None:
    """The response model of `handler`'s `method` for `status`, as a pydantic TypeAdapter."""
    return _adapters().get((handler, method.lower(), status))


@cache
def _adapters() -> dict[tuple[type, str, int], TypeAdapter[Any]]:
    return {
        (handler, method, status): TypeAdapter(model)
        for _, handler, meta in ROUTES
        for method, spec in meta.items()
        for status, model in spec.get("responses", {}).items()
        if model is not None and not isinstance(model, Binary)
    }


#: What the body of each answer provides to fill the path parameters of other routes.
LINKS: dict[Any, dict[str, str]] = {
    s.WorkPoolReply: {"pool": "/name"},
    s.WorkQueueReply: {"pool": "/work_pool_name", "queue": "/name"},
    s.DeploymentReply: {
        "ref": "/id",
        "flow": "/flow_name",
        "name": "/name",
        "pool": "/work_pool_name",
    },
    s.FlowRunReply: {"run_id": "/id"},
}
