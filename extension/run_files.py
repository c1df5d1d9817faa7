"""Handlers for what the result store keeps: the files of runs (artifacts, exports; pruning)
and the project files of deployments.

Files are read and written on the orchestrator's threads (the store may be a disk or an S3
bucket); the event loop only passes bytes on, a piece per turn.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tornado import web

from nbflows.extension.base import CHUNK, NBFlowsHandler
from nbflows.extension.permissions import permitted
from nbflows.results import (
    artifacts,
    conversion,
    exports,
    project_files,
    retention,
    run_files,
)
from nbflows.services.limits import too_large
from nbflows.services.schemas.bodies import parse
from nbflows.services.schemas.queries import (
    DeploymentNotebookQuery,
    ExportStoreQuery,
    NotebookStoreQuery,
)
from nbflows.services.schemas.replies import PruneRequest
from nbflows.services.schemas.run_files import RunFileReply


class BinaryReply(NBFlowsHandler):
    def compute_etag(self) -> str | None:
        return None  # hashing megabytes on the event loop, for a body nobody revalidates

    async def reply_file(self, data: bytes, media_type: str, filename: str) -> None:
        """Send `data` as a download: never rendered by the browser on the server's origin."""
        self.set_header("Content-Type", media_type)
        self.set_header("Content-Length", str(len(data)))
        self.set_header(
            "Content-Disposition", f"attachment; filename*=UTF-8''{quote(filename, safe='')}"
        )
        self.set_header("Content-Security-Policy", "sandbox")
        self.set_header("X-Content-Type-Options", "nosniff")
        view = memoryview(data)
        for start in range(0, len(view), CHUNK):
            self.write(bytes(view[start : start + CHUNK]))
            await self.flush()
        self.finish()


class FlowRunArtifacts(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self, run_id: str) -> None:
        def read(s: Any) -> list[dict[str, Any]]:
            from nbflows.services import flow_runs

            flow_runs.get_flow_run(s, run_id)
            return [
                RunFileReply.serialise(r) for r in run_files.list_run_files(s, run_id, "artifact")
            ]

        self.reply(await self.orch.call(read))


class FlowRunArtifact(BinaryReply):
    @web.authenticated
    @permitted
    async def get(self, run_id: str, name: str) -> None:
        results = self.orch.results
        _, data = await self.orch.call(
            lambda s: run_files.read_run_file(s, results, run_id, "artifact", name)
        )
        await self.reply_file(data, "application/octet-stream", name.rsplit("/", 1)[-1])

    @web.authenticated
    @permitted
    async def put(self, run_id: str, name: str) -> None:
        limits = self.limits
        if self._body_size > limits.max_body_size:
            raise too_large(f"artifact '{name}'", self._body_size, limits, "max_body_size")
        q = self.query_args(NotebookStoreQuery)
        raw = bytes(self.request.body)
        results = self.orch.results
        row = await self.orch.call(
            lambda s: RunFileReply.serialise(
                artifacts.store_artifact(
                    s, results, run_id, name, raw, limits, worker=q.worker, fence=q.fence
                )
            )
        )
        self.reply(row, 201, location=self.api_url("flow_runs", run_id, "artifacts", name))


class FlowRunExport(BinaryReply):
    @web.authenticated
    @permitted
    async def get(self, run_id: str, fmt: str) -> None:
        checked = conversion.check_format(fmt)
        results = self.orch.results
        data, notebook = await self.orch.call(exports.find_export, results, run_id, checked)
        if data is None:
            # Made now (a run of a deployment without `exports`): off the database threads.
            data = await self.orch.offload(conversion.convert, notebook, checked)
            made = data
            await self.orch.call(lambda s: exports.keep_export(s, results, run_id, checked, made))
        await self.reply_file(data, conversion.MEDIA_TYPES[checked], f"{run_id}.{checked}")

    @web.authenticated
    @permitted
    async def put(self, run_id: str, fmt: str) -> None:
        checked = conversion.check_format(fmt)
        limits = self.limits
        if self._body_size > limits.max_body_size:
            raise too_large(f"the {fmt} export", self._body_size, limits, "max_body_size")
        q = self.query_args(ExportStoreQuery)
        worker, raw, results = q.worker, bytes(self.request.body), self.orch.results
        row = await self.orch.call(
            lambda s: RunFileReply.serialise(
                exports.store_export(s, results, run_id, checked, raw, worker=worker, fence=q.fence)
            )
        )
        self.reply(row, 201, location=self.api_url("flow_runs", run_id, "exports", checked))


class PruneFlowRuns(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def post(self) -> None:
        req: PruneRequest = parse(PruneRequest, await self.body())
        results = self.orch.results
        out = await self.orch.call(
            lambda s: retention.prune(
                s,
                results,
                older_than_days=req.older_than_days,
                keep_last=req.keep_last,
                deployment=req.deployment,
                dry_run=req.dry_run,
            )
        )
        self.reply(out)


class DeploymentFiles(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self, ref: str) -> None:
        version = self.query_args(DeploymentNotebookQuery).version
        self.reply(await self.orch.call(project_files.project_manifest, ref, version))


class DeploymentFile(BinaryReply):
    @web.authenticated
    @permitted
    async def get(self, ref: str, sha256: str) -> None:
        results = self.orch.results
        data = await self.orch.call(project_files.read_project_file, results, ref, sha256)
        await self.reply_file(data, "application/octet-stream", sha256)
