"""Image builds started from the deploy dialog, followed line by line.

`POST image_builds` checks the target as a deploy would (a docker pool, job variables its
template allows, the notebook under the server's root, a valid image name), then builds on a
thread of its own (a build takes minutes: not a worker of the database pool) with
`nbflows.packaging.build.build_for_deploy`, the code `nbflows deploy --image` runs.
`GET image_builds/{id}?after=N&wait=S` answers the output lines after N, waiting up to S
seconds for one or for the end; once COMPLETED its `image` is what `POST deployments` takes.

Builds live in the server's memory only: they are a step of deploying, not a record (the
deployment keeps the image it runs). Finished builds are forgotten after `KEEP` seconds.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from tornado import web

from nbflows.errors import NBFlowsError, NotFound
from nbflows.services import work_pools as pools
from nbflows.services.schemas.bodies import ImageBuildRequest, parse
from nbflows.services.schemas.queries import ImageBuildQuery

from .base import NBFlowsHandler
from .permissions import permitted

#: Seconds a finished build stays readable.
KEEP = 3600.0
#: How often a waiting reader looks for new lines (s).
POLL = 0.2


@dataclass
class ImageBuild:
    id: str
    lines: list[str] = field(default_factory=list)
    state: str = "RUNNING"
    image: dict[str, Any] | None = None
    error: str | None = None
    ended: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def say(self, line: str) -> None:
        with self.lock:
            self.lines.append(line.rstrip("\n"))

    def page(self, after: int) -> dict[str, Any]:
        with self.lock:
            lines = self.lines[after:]
            return {
                "id": self.id,
                "state": self.state,
                "lines": lines,
                "next_after": after + len(lines),
                "image": self.image,
                "error": self.error,
            }


_builds: dict[str, ImageBuild] = {}


def _forget_old() -> None:
    now = time.monotonic()
    for key, build in list(_builds.items()):
        if build.ended is not None and now - build.ended > KEEP:
            _builds.pop(key, None)


def prepare(req: ImageBuildRequest, root_dir: str | None, pool: dict[str, Any]) -> Any:
    """Everything a build needs, checked before it starts: raises InvalidInput / NotFound."""
    from nbflows.notebooks.loading import load_notebook
    from nbflows.packaging.build import check_image_pool
    from nbflows.packaging.images import DeploymentImage

    image = DeploymentImage(name=req.image, base_image=req.base_image)
    check_image_pool(pool, req.job_variables)
    path, _ = load_notebook(req.path, root_dir)
    if req.flow_name:
        from nbflows.notebooks.extraction import find_flows

        _, source = load_notebook(path)
        if req.flow_name not in find_flows(source):
            raise NotFound(f"notebook {req.path} has no %%flow cell named {req.flow_name!r}")
    return path, image


def run_build(
    build: ImageBuild, req: ImageBuildRequest, path: Any, image: Any, pool: dict[str, Any]
) -> None:
    from nbflows.packaging.build import build_for_deploy

    try:
        spec = build_for_deploy(
            path,
            req.flow_name,
            image,
            pool,
            build=req.build,
            push=req.push,
            progress=build.say,
            job_variables=req.job_variables,
        )
    except NBFlowsError as exc:
        outcome: tuple[str, Any, str | None] = ("FAILED", None, exc.message)
    except Exception as exc:  # e.g. the Docker engine is not reachable
        outcome = ("FAILED", None, f"{type(exc).__name__}: {exc}")
    else:
        outcome = ("COMPLETED", spec, None)
    with build.lock:
        build.state, build.image, build.error = outcome
        if build.error:
            build.lines.append(f"Build failed: {build.error}")
        build.ended = time.monotonic()


class ImageBuilds(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def post(self) -> None:
        req = parse(ImageBuildRequest, await self.body())
        pool = await self.orch.call(
            lambda s: pools.work_pool_json(s, pools.get_work_pool(s, req.work_pool_name))
        )
        path, image = await self.orch.compute(prepare, req, self.orch.root_dir, pool)
        _forget_old()
        build = ImageBuild(id=str(uuid.uuid4()))
        _builds[build.id] = build
        build.say(f"Building {req.image} for work pool {req.work_pool_name}…")
        threading.Thread(
            target=run_build,
            args=(build, req, path, image, pool),
            name=f"nbflows-image-build-{build.id[:8]}",
            daemon=True,
        ).start()
        self.reply(build.page(0), 202, location=self.api_url("image_builds", build.id))


class ImageBuildProgress(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self, build_id: str) -> None:
        q = self.query_args(ImageBuildQuery)
        build = _builds.get(build_id)
        if build is None:
            raise NotFound(f"no image build {build_id} on this server (builds are kept 1 hour)")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + q.wait
        while True:
            page = build.page(q.after)
            if page["lines"] or page["state"] != "RUNNING" or loop.time() >= deadline:
                self.reply(page)
                return
            await asyncio.sleep(POLL)
