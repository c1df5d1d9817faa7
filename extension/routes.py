"""REST handlers under `nbflows/api/` (docs/api.md). Each is thin: parse, call a service, reply."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy.orm import Session
from tornado import web

from nbflows import __version__
from nbflows.errors import InvalidInput, NotFound
from nbflows.extension.base import NBFlowsHandler, decode_json, json_object_keys
from nbflows.extension.permissions import permitted
from nbflows.pipelines import deploy as pipeline_deploy
from nbflows.pipelines import graph as pipeline_graph
from nbflows.pipelines import repair as pipeline_repair
from nbflows.protocol import StateType
from nbflows.results.project_files import carry_project_files
from nbflows.scheduling.scheduler import MIN_INTERVAL, check_frequency
from nbflows.services import claims, deployments, flow_runs, heartbeats, logs, run_end
from nbflows.services import work_pools as pools
from nbflows.services.limits import executed_notebook_text, too_large
from nbflows.services.schemas.bodies import (
    ClaimRequest,
    DeploymentUpdate,
    DeployRequest,
    FlowRunHeartbeatRequest,
    HeartbeatRequest,
    InteractiveRunCreate,
    LogIn,
    Notebook,
    OutputIn,
    PipelineDeployRequest,
    RunEnd,
    RunRequest,
    SetState,
    WorkPoolCreate,
    WorkPoolUpdate,
    WorkQueueCreate,
    WorkQueueUpdate,
    parse,
)
from nbflows.services.schemas.deployments import DeploymentReply
from nbflows.services.schemas.logs import LogLineReply, LogsPageReply
from nbflows.services.schemas.pools import WorkQueueReply
from nbflows.services.schemas.queries import (
    DeploymentNotebookQuery,
    DeploymentsQuery,
    FlowRunsQuery,
    LogsQuery,
    NotebookStoreQuery,
    UpcomingQuery,
)
from nbflows.services.schemas.values import load_json
from nbflows.store import tables as t
from nbflows.workers import job_templates

MAX_WAIT = 30.0


class Health(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self) -> None:
        self.reply(
            {
                "status": "ok",
                "version": __version__,
                "database": self.orch.db.dialect,
                "root_dir": self.orch.root_dir,
                "limits": self.limits.as_json(),
            }
        )


# ---- work pools ------------------------------------------------------------------------------


class PoolTypes(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self) -> None:
        self.reply(
            [
                {
                    "type": kind,
                    "description": "",
                    "base_job_template": job_templates.default_base_job_template(kind),
                }
                for kind in job_templates.pool_types()
            ]
        )


class PoolTypeTemplate(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self, kind: str) -> None:
        if kind not in job_templates.pool_types():  # a type is a resource here: unknown is 404
            valid = ", ".join(job_templates.pool_types())
            raise NotFound(f"no work pool type '{kind}'; valid types: {valid}")
        self.reply(job_templates.default_base_job_template(kind))


class WorkPools(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self) -> None:
        who = self.principal  # a worker credential sees the pools it serves

        def listed(s: Session) -> list[dict[str, Any]]:
            found = pools.list_work_pools(s)
            if who is not None:
                found = [p for p in found if who.serves(p)]
            return [pools.work_pool_json(s, p) for p in found]

        self.reply(await self.orch.call(listed))

    @web.authenticated
    @permitted
    async def post(self) -> None:
        req = parse(WorkPoolCreate, await self.body())
        out = await self.orch.call(
            lambda s: pools.work_pool_json(s, pools.create_work_pool(s, req))
        )
        self.reply(out, 201, self.api_url("work_pools", out["name"]))


class WorkPool(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self, pool: str) -> None:
        self.reply(
            await self.orch.call(lambda s: pools.work_pool_json(s, pools.get_work_pool(s, pool)))
        )

    @web.authenticated
    @permitted
    async def patch(self, pool: str) -> None:
        req = parse(WorkPoolUpdate, await self.body())
        out = await self.orch.call(
            lambda s: pools.work_pool_json(s, pools.update_work_pool(s, pool, req))
        )
        self.orch.notifier.notify(f"pool:{out['id']}")
        self.reply(out)

    @web.authenticated
    @permitted
    async def delete(self, pool: str) -> None:
        await self.orch.call(pools.delete_work_pool, pool)
        self.reply(None, 204)


class WorkQueues(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self, pool: str) -> None:
        self.reply(
            await self.orch.call(
                lambda s: [
                    WorkQueueReply.serialise(q, pool) for q in pools.get_work_pool(s, pool).queues
                ]
            )
        )

    @web.authenticated
    @permitted
    async def post(self, pool: str) -> None:
        req = parse(WorkQueueCreate, await self.body())
        out = await self.orch.call(
            lambda s: WorkQueueReply.serialise(pools.create_work_queue(s, pool, req), pool)
        )
        self.reply(out, 201, self.api_url("work_pools", pool, "queues", out["name"]))


class WorkQueue(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self, pool: str, queue: str) -> None:
        self.reply(
            await self.orch.call(
                lambda s: WorkQueueReply.serialise(pools.get_work_queue(s, pool, queue), pool)
            )
        )

    @web.authenticated
    @permitted
    async def patch(self, pool: str, queue: str) -> None:
        req = parse(WorkQueueUpdate, await self.body())

        def update(s: Session) -> tuple[str, dict[str, Any]]:
            updated = pools.update_work_queue(s, pool, queue, req)
            return updated.work_pool_id, WorkQueueReply.serialise(updated, pool)

        pool_id, out = await self.orch.call(update)
        self.orch.notifier.notify(f"pool:{pool_id}")
        self.reply(out)

    @web.authenticated
    @permitted
    async def delete(self, pool: str, queue: str) -> None:
        await self.orch.call(pools.delete_work_queue, pool, queue)
        self.reply(None, 204)


# ---- workers ---------------------------------------------------------------------------------


class Claim(NBFlowsHandler):
    """Long-poll: answers as soon as a run is claimable, or after `wait` seconds with []."""

    gone = False

    def on_connection_close(self) -> None:
        # A worker that hung up must not be handed runs it will never start.
        self.gone = True
        # (A request refused before its method ran, a 405 say, has no path arguments.)
        pool_id = self.orch.pool_ids.get(getattr(self, "path_kwargs", {}).get("pool", ""))
        if pool_id:
            self.orch.notifier.notify(f"pool:{pool_id}")

    @web.authenticated
    @permitted
    async def post(self, pool: str) -> None:
        req = parse(ClaimRequest, await self.body())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(req.wait, MAX_WAIT)

        def claim(s: Session) -> tuple[str, list[dict[str, Any]], Any]:
            pool_id = pools.get_work_pool(s, pool).id
            got = claims.claim_next_runs(s, pool, req.worker, req.queues, req.limit)
            due = None if got else claims.next_due_time(s, pool)
            return pool_id, got, due

        claimed: list[dict[str, Any]] = []
        while not self.gone:
            known_id = self.orch.pool_ids.get(pool, "")
            with self.orch.notifier.subscribe([f"pool:{known_id}"]) as sub:
                pool_id, claimed, next_due = await self.orch.call(claim)
                self.orch.pool_ids[pool] = pool_id
                remaining = deadline - loop.time()
                if claimed or remaining <= 0 or self.gone:
                    break
                if pool_id != known_id:  # subscribed under a stale id: read again
                    continue
                timeout = remaining
                if next_due is not None:
                    due_in = (next_due - t.utcnow()).total_seconds()
                    timeout = min(timeout, max(due_in, 0.0) + 0.001)
                await sub.wait(timeout)
        if claimed and self.gone:
            await self.orch.call(_hand_back, [c["flow_run"]["id"] for c in claimed])
            self.orch.notifier.notify(f"pool:{self.orch.pool_ids[pool]}")
            return
        for item in claimed:
            self.orch.notifier.notify(f"run:{item['flow_run']['id']}")
        self.reply(claimed)


def _hand_back(s: Session, run_ids: list[str]) -> None:
    for run_id in run_ids:
        run = flow_runs.get_flow_run(s, run_id, lock=True)
        if run.state_type == StateType.PENDING.value:
            flow_runs.transition(
                run, StateType.SCHEDULED, message="handed back: the worker hung up"
            )
        elif run.state_type == StateType.CANCELLING.value:  # cancelled meanwhile, never started
            flow_runs.transition(run, StateType.CANCELLED, message="cancelled before it started")


class Heartbeat(NBFlowsHandler):
    """Records a heartbeat; with `wait`, also long-polls for cancellations of the worker's runs."""

    @web.authenticated
    @permitted
    async def post(self, pool: str) -> None:
        req = parse(HeartbeatRequest, await self.body())
        # Never hold a beat longer than the worker's own interval: the scheduler counts
        # missed beats from the last one recorded.
        wait = min(req.wait, req.heartbeat_interval or heartbeats.DEFAULT_INTERVAL, MAX_WAIT)

        def beat(s: Session) -> tuple[str, dict[str, Any]]:
            return pools.get_work_pool(s, pool).id, heartbeats.heartbeat(s, pool, req)

        known_id = self.orch.pool_ids.get(pool, "")
        with self.orch.notifier.subscribe([f"worker:{known_id}:{req.name}"]) as sub:
            pool_id, out = await self.orch.call(beat)
            self.orch.pool_ids[pool] = pool_id
            if out["settled"]:
                self.orch.notifier.notify(f"pool:{pool_id}")
            if not out["cancel"] and wait > 0 and pool_id == known_id:
                await sub.wait(wait)
                out = await self.orch.call(lambda s: heartbeats.heartbeat(s, pool, req))
                if out["settled"]:
                    self.orch.notifier.notify(f"pool:{pool_id}")
        self.reply(out)


class Workers(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self, pool: str) -> None:
        self.reply(await self.orch.call(heartbeats.list_workers, pool))


# ---- deployments -----------------------------------------------------------------------------


class Deployments(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self) -> None:
        q = self.query_args(DeploymentsQuery)
        self.reply(
            await self.orch.call(
                lambda s: [
                    DeploymentReply.serialise(d)
                    for d in deployments.list_deployments(s, q.flow_name, q.work_pool_name)
                ]
            )
        )

    @web.authenticated
    @permitted
    async def post(self) -> None:
        req = parse(DeployRequest, await self.body())
        root, limits, results = self.orch.root_dir, self.limits, self.orch.results
        floor = self.settings.get("nbflows_min_schedule_interval", MIN_INTERVAL)

        def deploy(s: Session) -> tuple[dict[str, Any], bool]:
            check_frequency(req.schedules, floor)
            d, created, changes = deployments.redeploy(s, req, root, limits)
            carry_project_files(s, results, d, limits)
            return {**DeploymentReply.serialise(d), "changes": changes}, created

        out, created = await self.orch.call(deploy)
        self.orch.wake_scheduler()
        self.reply(out, 201 if created else 200, self.api_url("deployments", out["id"]))


class Deployment(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self, ref: str) -> None:
        self.reply(
            await self.orch.call(
                lambda s: DeploymentReply.serialise(deployments.get_deployment(s, ref))
            )
        )

    @web.authenticated
    @permitted
    async def patch(self, ref: str) -> None:
        req = parse(DeploymentUpdate, await self.body())
        floor = self.settings.get("nbflows_min_schedule_interval", MIN_INTERVAL)

        def update(s: Session) -> dict[str, Any]:
            check_frequency(req.schedules or [], floor)
            return DeploymentReply.serialise(deployments.update_deployment(s, ref, req))

        out = await self.orch.call(update)
        self.orch.wake_scheduler()
        self.orch.notifier.notify(f"pool:{out['work_pool_id']}")
        self.reply(out)

    @web.authenticated
    @permitted
    async def delete(self, ref: str) -> None:
        await self.orch.call(deployments.delete_deployment, ref)
        self.reply(None, 204)


class DeploymentByName(NBFlowsHandler):
    """`deployments/name/{flow}/{name}`: a deployment addressed by its full name."""

    @web.authenticated
    @permitted
    async def get(self, flow: str, name: str) -> None:
        ref = f"{flow}/{name}"
        self.reply(
            await self.orch.call(
                lambda s: DeploymentReply.serialise(deployments.get_deployment(s, ref))
            )
        )


class DeploymentNotebook(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self, ref: str) -> None:
        version = self.query_args(DeploymentNotebookQuery).version
        text = await self.orch.call(deployments.deployment_notebook, ref, version)
        self.set_header("Content-Type", "application/json")
        self.finish(text)


class DeploymentUpcoming(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self, ref: str) -> None:
        limit = self.query_args(UpcomingQuery).limit

        def upcoming(s: Session) -> list[dict[str, Any]]:
            d = deployments.get_deployment(s, ref)
            return flow_runs.runs_json(s, deployments.upcoming_runs(s, d.id, limit))

        self.reply(await self.orch.call(upcoming))


class DeploymentRuns(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def post(self, ref: str) -> None:
        req = parse(RunRequest, await self.body())

        def create(s: Session) -> tuple[dict[str, Any], bool]:
            d = deployments.get_deployment(s, ref)
            run, created = flow_runs.create_deployment_run(s, d, req)
            return flow_runs.run_json(s, run) | {"_pool_id": run.work_pool_id}, created

        out, created = await self.orch.call(create)
        self.orch.notifier.notify(f"pool:{out.pop('_pool_id')}")
        self.reply(out, 201 if created else 200, self.api_url("flow_runs", out["id"]))


# ---- flow runs -------------------------------------------------------------------------------


class FlowRuns(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self) -> None:
        q = self.query_args(FlowRunsQuery)
        kwargs = q.model_dump(exclude={"state"}) | {
            "state": q.state.split(",") if q.state else None
        }
        self.reply(
            await self.orch.call(
                lambda s: flow_runs.runs_json(s, flow_runs.list_flow_runs(s, **kwargs))
            )
        )

    @web.authenticated
    @permitted
    async def post(self) -> None:
        req = parse(InteractiveRunCreate, await self.body())
        out = await self.orch.call(
            lambda s: flow_runs.run_json(s, flow_runs.create_interactive_run(s, req))
        )
        self.reply(out, 201, self.api_url("flow_runs", out["id"]))


#: States a worker reports about its own run: its heartbeat has nothing new to answer then
#: (see heartbeats._not_held), so they do not wake it (two extra beats per run otherwise).
_REPORTED_BY_WORKER = {"RUNNING", "COMPLETED", "FAILED", "CRASHED"}


def _run_topics(run: dict[str, Any], pool_id: str | None) -> list[str]:
    topics = [f"run:{run['id']}"]
    if pool_id:
        topics.append(f"pool:{pool_id}")
        state = (run.get("state") or {}).get("type")
        if run.get("worker_name") and state not in _REPORTED_BY_WORKER:
            topics.append(f"worker:{pool_id}:{run['worker_name']}")
    return topics


class FlowRun(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self, run_id: str) -> None:
        self.reply(
            await self.orch.call(lambda s: flow_runs.run_json(s, flow_runs.get_flow_run(s, run_id)))
        )


class FlowRunState(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def post(self, run_id: str) -> None:
        req = parse(SetState, await self.body())

        def change(s: Session) -> tuple[dict[str, Any], str | None]:
            run = flow_runs.set_state(s, run_id, req)
            return flow_runs.run_json(s, run), run.work_pool_id

        out, pool_id = await self.orch.call(change)
        self.orch.notifier.notify(*_run_topics(out, pool_id))
        _wake_for_pipeline(self, out)
        self.reply(out)


class FlowRunEnd(NBFlowsHandler):
    """A worker's end of an attempt: last log lines, executed notebook, end state, in one
    request and one transaction (`nbflows.services.run_end`)."""

    @web.authenticated
    @permitted
    async def post(self, run_id: str) -> None:
        data = await self.body()
        limits, results = self.limits, self.orch.results

        def end(s: Session) -> tuple[dict[str, Any], str | None]:
            # Validated on the threads: up to thousands of lines and a notebook.
            req = parse(RunEnd, data)
            notebook = data.get("notebook") if req.notebook is not None else None
            run = run_end.end_attempt(s, run_id, req, notebook, results=results, limits=limits)
            return flow_runs.run_json(s, run), run.work_pool_id

        out, pool_id = await self.orch.call(end)
        self.orch.notifier.notify(*_run_topics(out, pool_id))
        _wake_for_pipeline(self, out)
        self.reply(out)


def _wake_for_pipeline(handler: NBFlowsHandler, run: dict[str, Any]) -> None:
    """A child run that ended may let the next steps of its pipeline start: a scheduler pass
    now starts them (it is the one place that advances pipelines)."""
    if run.get("parent_run_id") and StateType(run["state"]["type"]).is_terminal:
        handler.orch.wake_scheduler()


class FlowRunOutputs(NBFlowsHandler):
    """`nbflows.output(name, value)` of a run, sent by its kernel or relayed by its worker."""

    @web.authenticated
    @permitted
    async def post(self, run_id: str) -> None:
        req = parse(OutputIn, await self.body())
        max_size = self.limits.max_parameters_size
        await self.orch.call(
            lambda s: flow_runs.record_output(s, run_id, req.name, req.value, max_size=max_size)
        )
        self.orch.notifier.notify(f"run:{run_id}")
        self.reply({"flow_run_id": run_id, "name": req.name}, 201)


class FlowRunRepair(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def post(self, run_id: str) -> None:
        out = await self.orch.call(
            lambda s: flow_runs.run_json(s, pipeline_repair.repair_pipeline_run(s, run_id))
        )
        self.orch.wake_scheduler()
        self.orch.notifier.notify(f"run:{run_id}")
        self.reply(out)


class FlowRunPipeline(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self, run_id: str) -> None:
        self.reply(await self.orch.call(pipeline_run_graph, run_id))


def pipeline_run_graph(s: Session, run_id: str) -> dict[str, Any]:
    """The DAG of pipeline run `run_id` (409 for a run that is not a pipeline run)."""
    from nbflows.errors import Conflict

    run = flow_runs.get_flow_run(s, run_id)
    if run.kind != "pipeline":
        raise Conflict(f"run '{run_id}' is a {run.kind} run, not a pipeline run: it has no steps")
    return pipeline_graph.pipeline_graph(s, run)


class Pipelines(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def post(self) -> None:
        req = parse(PipelineDeployRequest, await self.body())
        root, limits = self.orch.root_dir, self.limits
        floor = self.settings.get("nbflows_min_schedule_interval", MIN_INTERVAL)

        def deploy(s: Session) -> tuple[dict[str, Any], bool]:
            check_frequency(req.schedules, floor)
            d, created = pipeline_deploy.deploy_pipeline(s, req, root, limits)
            return DeploymentReply.serialise(d), created

        out, created = await self.orch.call(deploy)
        self.orch.wake_scheduler()
        self.reply(out, 201 if created else 200, self.api_url("deployments", out["id"]))


class FlowRunHeartbeat(NBFlowsHandler):
    """A kernel's beat for one of its `%%flow` runs (created with `heartbeat_interval`)."""

    @web.authenticated
    @permitted
    async def post(self, run_id: str) -> None:
        req = parse(FlowRunHeartbeatRequest, await self.body())
        self.reply(await self.orch.call(heartbeats.beat_flow_run, run_id, req.heartbeat_interval))


class FlowRunCancel(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def post(self, run_id: str) -> None:
        def change(s: Session) -> tuple[dict[str, Any], str | None]:
            run = flow_runs.cancel(s, run_id)
            return flow_runs.run_json(s, run), run.work_pool_id

        out, pool_id = await self.orch.call(change)
        self.orch.notifier.notify(*_run_topics(out, pool_id))
        self.reply(out)


class FlowRunLogs(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def post(self, run_id: str) -> None:
        data = await self.body()
        if not isinstance(data, list):
            data = [data]
        limits = self.limits

        def write(s: Session) -> dict[str, Any]:
            # Validating thousands of lines is work for the threads, not the event loop.
            return logs.write_logs(s, run_id, [parse(LogIn, x) for x in data], limits=limits)

        out = await self.orch.call(write)
        self.orch.notifier.notify(f"run:{run_id}")
        self.reply(out, 201)

    @web.authenticated
    @permitted
    async def get(self, run_id: str) -> None:
        q = self.query_args(LogsQuery)
        after, limit, wait, seen_state = q.after, q.limit, min(q.wait, MAX_WAIT), q.state
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait

        def read(s: Session) -> tuple[bool, str, str]:
            # The run first, then its lines: lines are stored before (or with) the run's end, so
            # a page whose run is terminal holds every line (`watch_flow_run` stops there).
            run = flow_runs.get_flow_run(s, run_id)
            lines = logs.read_logs(s, run_id, after, limit)
            out = LogsPageReply.build(
                items=[LogLineReply.serialise(x) for x in lines],
                next_after=lines[-1].id if lines else after,
                flow_run=flow_runs.run_json(s, run),
            )
            # Encoded here: up to 10,000 lines are too much JSON for the event loop.
            return bool(lines), run.state_type, json.dumps(out, default=str)

        while True:
            with self.orch.notifier.subscribe([f"run:{run_id}"]) as sub:
                has_lines, state, text = await self.orch.call(read)
                changed = seen_state is not None and state != seen_state
                remaining = deadline - loop.time()
                if has_lines or changed or StateType(state).is_terminal or remaining <= 0:
                    break
                await sub.wait(remaining)
        self.reply_json_text(text)


class FlowRunNotebook(NBFlowsHandler):
    """An executed notebook (tens of MB with outputs), stored as sent once it is known to be a
    notebook: checked on the orchestrator's threads, or in a process of its own when big; the
    event loop only passes bytes on."""

    def compute_etag(self) -> str | None:
        return None  # hashing megabytes on the event loop, for a body nobody revalidates

    @web.authenticated
    @permitted
    async def get(self, run_id: str) -> None:
        results = self.orch.results
        text = await self.orch.call(lambda s: flow_runs.read_notebook(s, run_id, results).encode())
        await self.reply_big_json(text)

    @web.authenticated
    @permitted
    async def put(self, run_id: str) -> None:
        limits = self.limits
        if self._body_size > limits.max_body_size:
            raise too_large("the request body", self._body_size, limits, "max_body_size")
        raw = bytes(self.request.body)
        # A worker stores its attempt's notebook only while it holds the run (its fence).
        q = self.query_args(NotebookStoreQuery)
        worker, fence = q.worker, q.fence
        results = self.orch.results
        if len(raw) > limits.max_notebook_size:
            # Over the limit: decoded (on the threads) to cut its largest outputs.
            def cut(s: Session) -> None:
                nb = load_json(raw)
                parse(Notebook, nb, what="notebook")
                text = executed_notebook_text(nb, limits)
                flow_runs.store_notebook(
                    s, run_id, text, results=results, worker=worker, fence=fence
                )

            await self.orch.call(cut)
        else:
            checked = False
            if len(raw) > ISOLATE_ABOVE:
                keys = await json_object_keys(raw)
                if keys is None or "cells" not in keys:
                    raise InvalidInput(NOT_A_NOTEBOOK)
                checked = True
            await self.orch.call(
                lambda s: flow_runs.store_notebook(
                    s,
                    run_id,
                    _notebook_text(raw, checked),
                    results=results,
                    worker=worker,
                    fence=fence,
                )
            )
        self.orch.notifier.notify(f"run:{run_id}")
        self.reply(None, 204)


#: Notebooks larger than this are checked in a process of their own (see `json_object_keys`).
ISOLATE_ABOVE = 4 * 1024 * 1024
NOT_A_NOTEBOOK = "the body must be a notebook (nbformat JSON with 'cells')"


def _notebook_text(raw: bytes, checked: bool) -> str:
    """The body as stored: the text as sent, once it is known to be a notebook."""
    if not checked:
        nb = decode_json(raw) if raw else None
        if not isinstance(nb, dict) or "cells" not in nb:
            raise InvalidInput(NOT_A_NOTEBOOK)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # JSON in UTF-16 or UTF-32: stored as UTF-8 JSON
        return json.dumps(json.loads(raw))


class NotFoundRoute(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self, path: str) -> None:
        raise NotFound(f"no nbflows API route '{path}'; see nbflows/api/openapi.json")

    post = patch = put = delete = get
