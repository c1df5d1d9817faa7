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

from nbflows.automations import schemas as as_
from nbflows.extension import access_routes as a
from nbflows.extension import automation_routes as ar
from nbflows.extension import image_builds as ib
from nbflows.extension import permissions as p
from nbflows.extension import previews as pv
from nbflows.extension import routes as r
from nbflows.extension import run_files as f
from nbflows.extension.openapi import Binary, OpenAPI
from nbflows.results.conversion import FORMATS
from nbflows.services.schemas import (
    bodies,
    deployments,
    flow_runs,
    logs,
    pools,
    queries,
    replies,
    run_files,
    values,
)

_NAME = r"(?P<{}>[^/]+)"
POOL, QUEUE, REF, RUN = (
    _NAME.format("pool"),
    _NAME.format("queue"),
    _NAME.format("ref"),
    _NAME.format("run_id"),
)
FORMAT, ARTIFACT, SHA256 = _NAME.format("fmt"), _NAME.format("name"), _NAME.format("sha256")
JSON = values.JSONObject

ROUTES: list[tuple[str, type, dict[str, Any]]] = [
    (
        "health",
        r.Health,
        {
            "get": {
                "permission": p.READ_SERVER,
                "worker": p.ANY,
                "run": p.ANY,
                "summary": "Server health, version and size limits",
                "responses": {200: replies.HealthReply},
            }
        },
    ),
    (
        "openapi.json",
        OpenAPI,
        {
            "get": {
                "permission": p.READ_SERVER,
                "worker": p.ANY,
                "run": p.ANY,
                "summary": "This document",
                "responses": {200: JSON},
            }
        },
    ),
    (
        "previews/schedules",
        pv.SchedulePreview,
        {
            "post": {
                "permission": p.READ_DEPLOYMENTS,
                "summary": "Next times of schedules, checked as a deploy checks them",
                "body": bodies.SchedulePreviewRequest,
                "responses": {200: replies.SchedulePreviewReply},
            }
        },
    ),
    (
        "previews/deploy",
        pv.DeployPreview,
        {
            "post": {
                # It reads notebooks under the server's root, as a deploy does.
                "permission": p.DEPLOY,
                "summary": "A notebook's flows, parameters and the cells a deployment would hold",
                "body": bodies.DeployPreviewRequest,
                "responses": {200: replies.DeployPreviewReply},
            }
        },
    ),
    (
        "image_builds",
        ib.ImageBuilds,
        {
            "post": {
                # It reads the notebook under the server's root and builds it, as a deploy does.
                "permission": p.DEPLOY,
                "summary": "Start building a deployment's image for a docker work pool",
                "body": bodies.ImageBuildRequest,
                "responses": {202: replies.ImageBuildReply},
            }
        },
    ),
    (
        r"image_builds/(?P<build_id>[^/]+)",
        ib.ImageBuildProgress,
        {
            "get": {
                "permission": p.DEPLOY,
                "summary": "An image build's output and outcome (long-poll with wait)",
                "query": queries.ImageBuildQuery,
                "responses": {200: replies.ImageBuildReply},
            }
        },
    ),
    (
        "work_pool_types",
        r.PoolTypes,
        {
            "get": {
                "permission": p.READ_POOLS,
                "summary": "Pool types and their default templates",
                "responses": {200: list[replies.PoolTypeReply]},
            }
        },
    ),
    (
        r"work_pool_types/(?P<kind>[^/]+)/base_job_template",
        r.PoolTypeTemplate,
        {
            "get": {
                "permission": p.READ_POOLS,
                "summary": "Default base job template of a pool type",
                "responses": {200: JSON},
            }
        },
    ),
    (
        "work_pools",
        r.WorkPools,
        {
            "get": {
                "permission": p.READ_POOLS,
                "worker": p.POOLS,
                "summary": "List work pools",
                "responses": {200: list[pools.WorkPoolReply]},
            },
            "post": {
                "permission": p.ADMIN_POOLS,
                "summary": "Create a work pool",
                "body": bodies.WorkPoolCreate,
                "responses": {201: pools.WorkPoolReply},
            },
        },
    ),
    (
        f"work_pools/{POOL}",
        r.WorkPool,
        {
            "get": {
                "permission": p.READ_POOLS,
                "worker": p.POOL,
                "summary": "Read a work pool",
                "responses": {200: pools.WorkPoolReply},
            },
            "patch": {
                "permission": p.ADMIN_POOLS,
                "summary": "Update a work pool",
                "body": bodies.WorkPoolUpdate,
                "responses": {200: pools.WorkPoolReply},
            },
            "delete": {
                "permission": p.ADMIN_POOLS,
                "summary": "Delete a work pool",
                "responses": {204: None},
            },
        },
    ),
    (
        f"work_pools/{POOL}/queues",
        r.WorkQueues,
        {
            "get": {
                "permission": p.READ_POOLS,
                "worker": p.POOL,
                "summary": "List a pool's queues",
                "responses": {200: list[pools.WorkQueueReply]},
            },
            "post": {
                "permission": p.ADMIN_POOLS,
                "summary": "Create a work queue",
                "body": bodies.WorkQueueCreate,
                "responses": {201: pools.WorkQueueReply},
            },
        },
    ),
    (
        f"work_pools/{POOL}/queues/{QUEUE}",
        r.WorkQueue,
        {
            "get": {
                "permission": p.READ_POOLS,
                "worker": p.POOL,
                "summary": "Read a work queue",
                "responses": {200: pools.WorkQueueReply},
            },
            "patch": {
                "permission": p.ADMIN_POOLS,
                "summary": "Update a work queue",
                "body": bodies.WorkQueueUpdate,
                "responses": {200: pools.WorkQueueReply},
            },
            "delete": {
                "permission": p.ADMIN_POOLS,
                "summary": "Delete a work queue",
                "responses": {204: None},
            },
        },
    ),
    (
        f"work_pools/{POOL}/claim",
        r.Claim,
        {
            "post": {
                "permission": p.WORK_POOLS,
                "worker": p.POOL,
                "summary": "Claim due runs (long-poll)",
                # Not a link target of a new pool: its body names queues, each may be unknown.
                "linked": False,
                "body": bodies.ClaimRequest,
                "responses": {200: list[replies.ClaimedRunReply]},
            }
        },
    ),
    (
        f"work_pools/{POOL}/workers/heartbeat",
        r.Heartbeat,
        {
            "post": {
                "permission": p.WORK_POOLS,
                "worker": p.POOL,
                "summary": "Worker heartbeat; returns runs to cancel",
                "body": bodies.HeartbeatRequest,
                "responses": {200: replies.HeartbeatReply},
            }
        },
    ),
    (
        f"work_pools/{POOL}/workers",
        r.Workers,
        {
            "get": {
                "permission": p.READ_POOLS,
                "worker": p.POOL,
                "summary": "List a pool's workers",
                "responses": {200: list[pools.WorkerReply]},
            }
        },
    ),
    (
        "deployments",
        r.Deployments,
        {
            "get": {
                "permission": p.READ_DEPLOYMENTS,
                "summary": "List deployments",
                "query": queries.DeploymentsQuery,
                "responses": {200: list[deployments.DeploymentReply]},
            },
            "post": {
                "permission": p.DEPLOY,
                "summary": "Deploy (create, or a new version: 200)",
                "body": bodies.DeployRequest,
                "responses": {201: deployments.DeploymentReply, 200: deployments.DeploymentReply},
            },
        },
    ),
    (
        "pipelines",
        r.Pipelines,
        {
            "post": {
                "permission": p.DEPLOY,
                "summary": "Deploy a pipeline (create, or a new version: 200)",
                "body": bodies.PipelineDeployRequest,
                "responses": {201: deployments.DeploymentReply, 200: deployments.DeploymentReply},
            }
        },
    ),
    (
        r"deployments/name/(?P<flow>[^/]+)/(?P<name>[^/]+)",
        r.DeploymentByName,
        {
            "get": {
                "permission": p.READ_DEPLOYMENTS,
                "summary": "Read a deployment by flow and deployment name",
                "responses": {200: deployments.DeploymentReply},
            }
        },
    ),
    (
        f"deployments/{REF}",
        r.Deployment,
        {
            "get": {
                "permission": p.READ_DEPLOYMENTS,
                "worker": p.DEPLOYMENT,
                "summary": "Read a deployment",
                "responses": {200: deployments.DeploymentReply},
            },
            "patch": {
                "permission": p.DEPLOY,
                "summary": "Update a deployment",
                "body": bodies.DeploymentUpdate,
                "responses": {200: deployments.DeploymentReply},
            },
            "delete": {
                "permission": p.DEPLOY,
                "summary": "Delete a deployment",
                "responses": {204: None},
            },
        },
    ),
    (
        f"deployments/{REF}/notebook",
        r.DeploymentNotebook,
        {
            "get": {
                "permission": p.READ_DEPLOYMENTS,
                "worker": p.DEPLOYMENT,
                "summary": "Frozen notebook",
                "query": queries.DeploymentNotebookQuery,
                "responses": {200: bodies.Notebook},
            }
        },
    ),
    (
        f"deployments/{REF}/files",
        f.DeploymentFiles,
        {
            "get": {
                "permission": p.READ_DEPLOYMENTS,
                "worker": p.DEPLOYMENT,
                "summary": "The project files a version carries (for remote process workers)",
                "query": queries.DeploymentNotebookQuery,
                "responses": {200: replies.ProjectFilesReply},
            }
        },
    ),
    (
        f"deployments/{REF}/files/{SHA256}",
        f.DeploymentFile,
        {
            "get": {
                "permission": p.READ_DEPLOYMENTS,
                "worker": p.DEPLOYMENT,
                "summary": "One project file, by its sha256",
                "responses": {200: Binary()},
            }
        },
    ),
    (
        f"deployments/{REF}/upcoming",
        r.DeploymentUpcoming,
        {
            "get": {
                "permission": p.READ_DEPLOYMENTS,
                "summary": "Upcoming runs",
                "query": queries.UpcomingQuery,
                "responses": {200: list[flow_runs.FlowRunReply]},
            }
        },
    ),
    (
        f"deployments/{REF}/runs",
        r.DeploymentRuns,
        {
            "post": {
                "permission": p.RUN_DEPLOYMENTS,
                "summary": "Run a deployment (the same run again for a known idempotency key: 200)",
                "body": bodies.RunRequest,
                "responses": {201: flow_runs.FlowRunReply, 200: flow_runs.FlowRunReply},
            }
        },
    ),
    (
        "flow_runs",
        r.FlowRuns,
        {
            "get": {
                "permission": p.READ_RUNS,
                "summary": "List flow runs, newest first",
                "query": queries.FlowRunsQuery,
                "responses": {200: list[flow_runs.FlowRunReply]},
            },
            "post": {
                "permission": p.WRITE_RUNS,
                "worker": p.CHILD,
                "run": p.CHILD,
                "summary": "Record an interactive flow run",
                "body": bodies.InteractiveRunCreate,
                "responses": {201: flow_runs.FlowRunReply},
            },
        },
    ),
    (
        "flow_runs/prune",
        f.PruneFlowRuns,
        {
            "post": {
                "permission": p.WRITE_RUNS,
                "summary": "Remove finished runs with their logs, notebooks and artifacts "
                "(or with dry_run, say what would go)",
                "body": replies.PruneRequest,
                "responses": {200: replies.PruneReply},
            }
        },
    ),
    (
        f"flow_runs/{RUN}",
        r.FlowRun,
        {
            "get": {
                "permission": p.READ_RUNS,
                "worker": p.RUN,
                "run": p.RUN,
                "summary": "Read a flow run",
                "responses": {200: flow_runs.FlowRunReply},
            }
        },
    ),
    (
        f"flow_runs/{RUN}/set_state",
        r.FlowRunState,
        {
            "post": {
                "permission": p.WRITE_RUNS,
                "worker": p.RUN,
                "run": p.RUN,
                "summary": "Change a run's state",
                "body": bodies.SetState,
                "responses": {200: flow_runs.FlowRunReply},
            }
        },
    ),
    (
        f"flow_runs/{RUN}/end",
        r.FlowRunEnd,
        {
            "post": {
                "permission": p.WRITE_RUNS,
                "worker": p.RUN,
                "summary": "A worker's end of an attempt: last log lines, executed notebook "
                "and end state in one transaction",
                "body": bodies.RunEnd,
                "responses": {200: flow_runs.FlowRunReply},
            }
        },
    ),
    (
        f"flow_runs/{RUN}/outputs",
        r.FlowRunOutputs,
        {
            "post": {
                "permission": p.WRITE_RUNS,
                "worker": p.RUN,
                "run": p.RUN,
                "summary": "Record an output of a run (nbflows.output)",
                "body": bodies.OutputIn,
                "responses": {201: replies.OutputRecordedReply},
            }
        },
    ),
    (
        f"flow_runs/{RUN}/pipeline",
        r.FlowRunPipeline,
        {
            "get": {
                "permission": p.READ_RUNS,
                "summary": "A pipeline run's steps, edges and live step states",
                "responses": {200: replies.PipelineGraphReply},
            }
        },
    ),
    (
        f"flow_runs/{RUN}/repair",
        r.FlowRunRepair,
        {
            "post": {
                "permission": p.RUN_DEPLOYMENTS,
                "summary": "Re-run a failed pipeline run from its failed steps",
                "responses": {200: flow_runs.FlowRunReply},
            }
        },
    ),
    (
        f"flow_runs/{RUN}/cancel",
        r.FlowRunCancel,
        {
            "post": {
                "permission": p.WRITE_RUNS,
                "summary": "Cancel a run",
                "responses": {200: flow_runs.FlowRunReply},
            }
        },
    ),
    (
        f"flow_runs/{RUN}/heartbeat",
        r.FlowRunHeartbeat,
        {
            "post": {
                "permission": p.WRITE_RUNS,
                "worker": p.RUN,
                "run": p.RUN,
                "summary": "A kernel's beat for its %%flow run",
                "body": bodies.FlowRunHeartbeatRequest,
                "responses": {200: replies.FlowRunBeatReply},
            }
        },
    ),
    (
        f"flow_runs/{RUN}/logs",
        r.FlowRunLogs,
        {
            "get": {
                "permission": p.READ_RUNS,
                "worker": p.RUN,
                "run": p.RUN,
                "summary": "Read log lines (long-poll with wait)",
                "query": queries.LogsQuery,
                "responses": {200: logs.LogsPageReply},
            },
            "post": {
                "permission": p.WRITE_RUNS,
                "worker": p.RUN,
                "run": p.RUN,
                "summary": "Write log lines",
                "body": bodies.LogIn | list[bodies.LogIn],
                "responses": {201: replies.LogsWrittenReply},
            },
        },
    ),
    (
        f"flow_runs/{RUN}/notebook",
        r.FlowRunNotebook,
        {
            "get": {
                "permission": p.READ_RUNS,
                "worker": p.RUN,
                "run": p.RUN,
                "summary": "Executed notebook",
                "responses": {200: bodies.Notebook},
            },
            "put": {
                "permission": p.WRITE_RUNS,
                "worker": p.RUN,
                "summary": "Store the executed notebook",
                "query": queries.NotebookStoreQuery,
                "body": bodies.Notebook,
                "responses": {204: None},
            },
        },
    ),
    (
        "worker_tokens",
        a.WorkerTokens,
        {
            "get": {
                "permission": p.ADMIN_POOLS,
                "summary": "List worker credentials (never their tokens)",
                "responses": {200: list[replies.WorkerTokenReply]},
            },
            "post": {
                "permission": p.ADMIN_POOLS,
                "summary": "Create a worker credential for some pools (its token is shown once)",
                "body": replies.WorkerTokenCreate,
                "responses": {201: replies.WorkerTokenCreated},
            },
        },
    ),
    (
        r"worker_tokens/(?P<name>[^/]+)",
        a.WorkerToken,
        {
            "delete": {
                "permission": p.ADMIN_POOLS,
                "summary": "Revoke the worker credentials of this name (or id)",
                "responses": {204: None},
            }
        },
    ),
    (
        "secrets",
        a.Secrets,
        {
            "get": {
                "permission": p.READ_SECRETS,
                "summary": "List secrets (names only)",
                "responses": {200: list[replies.SecretReply]},
            }
        },
    ),
    (
        r"secrets/(?P<name>[A-Za-z_][A-Za-z0-9_]{0,199})",
        a.Secret,
        {
            "put": {
                "permission": p.WRITE_SECRETS,
                "summary": "Set a secret (stored encrypted)",
                "body": replies.SecretSet,
                "responses": {204: None},
            },
            "delete": {
                "permission": p.WRITE_SECRETS,
                "summary": "Delete a secret",
                "responses": {204: None},
            },
        },
    ),
    (
        f"flow_runs/{RUN}/secrets",
        a.RunSecrets,
        {
            "get": {
                # Users never: only the worker credential holding the run.
                "permission": ("resolve", "nbflows:secrets"),
                "worker": p.RUN,
                "summary": "Values of the secrets a run refers to (its worker only)",
                "linked": False,
                "responses": {200: replies.RunSecretsReply},
            }
        },
    ),
    (
        f"flow_runs/{RUN}/exports/{FORMAT}",
        f.FlowRunExport,
        {
            "get": {
                "permission": p.READ_RUNS,
                "worker": p.RUN,
                "run": p.RUN,
                "summary": "The executed notebook exported (html; pdf where Chromium exists)",
                "path": {"fmt": {"enum": list(FORMATS)}},
                "may_be_unavailable": True,
                "responses": {200: Binary("text/html", "application/pdf")},
            },
            "put": {
                "permission": p.WRITE_RUNS,
                "worker": p.RUN,
                "summary": "Store the export its worker made of a run it holds",
                "path": {"fmt": {"enum": list(FORMATS)}},
                "query": queries.ExportStoreQuery,
                "body": Binary(),
                "responses": {201: run_files.RunFileReply},
            },
        },
    ),
    (
        f"flow_runs/{RUN}/artifacts",
        f.FlowRunArtifacts,
        {
            "get": {
                "permission": p.READ_RUNS,
                "worker": p.RUN,
                "run": p.RUN,
                "summary": "A run's artifacts",
                "responses": {200: list[run_files.RunFileReply]},
            }
        },
    ),
    (
        f"flow_runs/{RUN}/artifacts/{ARTIFACT}",
        f.FlowRunArtifact,
        {
            "get": {
                "permission": p.READ_RUNS,
                "worker": p.RUN,
                "run": p.RUN,
                "summary": "Download an artifact (name URL-encoded, '/' as %2F)",
                "responses": {200: Binary()},
            },
            "put": {
                "permission": p.WRITE_RUNS,
                "worker": p.RUN,
                "summary": "Store an artifact of a run",
                "query": queries.NotebookStoreQuery,
                "body": Binary(),
                "responses": {201: run_files.RunFileReply},
            },
        },
    ),
]


AUTOMATION = _NAME.format("automation")

ROUTES += [
    (
        "automations",
        ar.Automations,
        {
            "get": {
                "permission": p.READ_AUTOMATIONS,
                "summary": "List automations",
                "responses": {200: list[as_.AutomationReply]},
            },
            "post": {
                "permission": p.WRITE_AUTOMATIONS,
                "summary": "Create an automation (a trigger, a scope, actions)",
                "body": as_.AutomationCreate,
                "responses": {201: as_.AutomationReply},
            },
        },
    ),
    (
        f"automations/{AUTOMATION}",
        ar.Automation,
        {
            "get": {
                "permission": p.READ_AUTOMATIONS,
                "summary": "Read an automation (by name or id)",
                "responses": {200: as_.AutomationReply},
            },
            "patch": {
                "permission": p.WRITE_AUTOMATIONS,
                "summary": "Pause or resume an automation, or change its description",
                "body": as_.AutomationUpdate,
                "responses": {200: as_.AutomationReply},
            },
            "delete": {
                "permission": p.WRITE_AUTOMATIONS,
                "summary": "Delete an automation",
                "responses": {204: None},
            },
        },
    ),
    (
        f"automations/{AUTOMATION}/deliveries",
        ar.AutomationDeliveries,
        {
            "get": {
                "permission": p.READ_AUTOMATIONS,
                "summary": "An automation's latest deliveries, newest first",
                "responses": {200: list[as_.DeliveryReply]},
            }
        },
    ),
    (
        f"flow_runs/{RUN}/notifications",
        ar.FlowRunNotifications,
        {
            "get": {
                "permission": p.READ_RUNS,
                "summary": "What automations did for a run: notified whom, when, how it went",
                "responses": {200: list[as_.DeliveryReply]},
            }
        },
    ),
]


@cache
def method_specs() -> dict[tuple[type, str], dict[str, Any]]:
    """Each route method's spec by (handler, method)."""
    return {(handler, method): spec for _, handler, meta in ROUTES for method, spec in meta.items()}


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
    pools.WorkPoolReply: {"pool": "/name"},
    pools.WorkQueueReply: {"pool": "/work_pool_name", "queue": "/name"},
    deployments.DeploymentReply: {
        "ref": "/id",
        "flow": "/flow_name",
        "name": "/name",
        "pool": "/work_pool_name",
    },
    flow_runs.FlowRunReply: {"run_id": "/id"},
    as_.AutomationReply: {"automation": "/id"},
}
