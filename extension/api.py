"""The route table of `nbflows/api/`: one place, used both to serve and to describe the API."""

from __future__ import annotations

from typing import Any

from nbflows import schemas

from . import routes as r
from .openapi import OpenAPI

_NAME = r"(?P<{}>[^/]+)"
POOL, QUEUE, REF, RUN = (
    _NAME.format("pool"),
    _NAME.format("queue"),
    _NAME.format("ref"),
    _NAME.format("run_id"),
)

ROUTES: list[tuple[str, type, dict[str, Any]]] = [
    ("health", r.Health, {"get": {"summary": "Server health and version"}}),
    ("openapi.json", OpenAPI, {"get": {"summary": "This document"}}),
    (
        "work_pool_types",
        r.PoolTypes,
        {"get": {"summary": "Pool types and their default templates"}},
    ),
    (
        r"work_pool_types/(?P<kind>[^/]+)/base_job_template",
        r.PoolTypeTemplate,
        {"get": {"summary": "Default base job template of a pool type"}},
    ),
    (
        "work_pools",
        r.WorkPools,
        {
            "get": {"summary": "List work pools"},
            "post": {"summary": "Create a work pool", "body": schemas.WorkPoolCreate},
        },
    ),
    (
        f"work_pools/{POOL}",
        r.WorkPool,
        {
            "get": {"summary": "Read a work pool"},
            "patch": {"summary": "Update a work pool", "body": schemas.WorkPoolUpdate},
            "delete": {"summary": "Delete a work pool"},
        },
    ),
    (
        f"work_pools/{POOL}/queues",
        r.WorkQueues,
        {
            "get": {"summary": "List a pool's queues"},
            "post": {"summary": "Create a work queue", "body": schemas.WorkQueueCreate},
        },
    ),
    (
        f"work_pools/{POOL}/queues/{QUEUE}",
        r.WorkQueue,
        {
            "get": {"summary": "Read a work queue"},
            "patch": {"summary": "Update a work queue", "body": schemas.WorkQueueUpdate},
            "delete": {"summary": "Delete a work queue"},
        },
    ),
    (
        f"work_pools/{POOL}/claim",
        r.Claim,
        {"post": {"summary": "Claim due runs (long-poll)", "body": schemas.ClaimRequest}},
    ),
    (
        f"work_pools/{POOL}/workers/heartbeat",
        r.Heartbeat,
        {
            "post": {
                "summary": "Worker heartbeat; returns runs to cancel",
                "body": schemas.HeartbeatRequest,
            }
        },
    ),
    (f"work_pools/{POOL}/workers", r.Workers, {"get": {"summary": "List a pool's workers"}}),
    (
        "deployments",
        r.Deployments,
        {
            "get": {"summary": "List deployments"},
            "post": {"summary": "Deploy (create or new version)", "body": schemas.DeployRequest},
        },
    ),
    (
        r"deployments/name/(?P<flow>[^/]+)/(?P<name>[^/]+)",
        r.DeploymentByName,
        {"get": {"summary": "Read a deployment by flow and deployment name"}},
    ),
    (
        f"deployments/{REF}",
        r.Deployment,
        {
            "get": {"summary": "Read a deployment"},
            "patch": {"summary": "Update a deployment", "body": schemas.DeploymentUpdate},
            "delete": {"summary": "Delete a deployment"},
        },
    ),
    (f"deployments/{REF}/notebook", r.DeploymentNotebook, {"get": {"summary": "Frozen notebook"}}),
    (f"deployments/{REF}/upcoming", r.DeploymentUpcoming, {"get": {"summary": "Upcoming runs"}}),
    (
        f"deployments/{REF}/runs",
        r.DeploymentRuns,
        {"post": {"summary": "Run a deployment", "body": schemas.RunRequest}},
    ),
    (
        "flow_runs",
        r.FlowRuns,
        {
            "get": {"summary": "List flow runs"},
            "post": {
                "summary": "Record an interactive flow run",
                "body": schemas.InteractiveRunCreate,
            },
        },
    ),
    (f"flow_runs/{RUN}", r.FlowRun, {"get": {"summary": "Read a flow run"}}),
    (
        f"flow_runs/{RUN}/set_state",
        r.FlowRunState,
        {"post": {"summary": "Change a run's state", "body": schemas.SetState}},
    ),
    (f"flow_runs/{RUN}/cancel", r.FlowRunCancel, {"post": {"summary": "Cancel a run"}}),
    (
        f"flow_runs/{RUN}/heartbeat",
        r.FlowRunHeartbeat,
        {
            "post": {
                "summary": "A kernel's beat for its %%flow run",
                "body": schemas.FlowRunHeartbeatRequest,
            }
        },
    ),
    (
        f"flow_runs/{RUN}/logs",
        r.FlowRunLogs,
        {
            "get": {"summary": "Read log lines (long-poll with wait)"},
            "post": {"summary": "Write log lines"},
        },
    ),
    (
        f"flow_runs/{RUN}/notebook",
        r.FlowRunNotebook,
        {
            "get": {"summary": "Executed notebook"},
            "put": {"summary": "Store the executed notebook"},
        },
    ),
]
