"""What a deploy form deploys: a `%%flow` Flow or the path of a notebook deployed whole, with its
parameters and the request that deploys it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from nbflows.client.rest import Client
from nbflows.errors import NBFlowsError

Deploy = Callable[..., Any]


class Target:
    """What the form deploys: a `%%flow` Flow, or a whole notebook given by its path."""

    def __init__(self, flow: Any, client: Callable[[], Client]) -> None:
        self.flow = flow
        self._client = client
        if isinstance(flow, str | os.PathLike):
            self.path: str | None = os.path.abspath(os.fspath(flow))
            self.name = os.path.splitext(os.path.basename(self.path))[0]
            self.kind = "notebook"
        elif hasattr(flow, "deploy") and getattr(flow, "name", None):
            self.path = getattr(flow, "notebook_path", None)
            self.name = str(flow.name)
            self.kind = "flow"
        else:
            raise TypeError(
                "deploy_form() takes a Flow (bound by a %%flow cell) or the path of a notebook, "
                f"not {flow!r}"
            )

    def notebook_file(self) -> str | None:
        """The saved notebook the flow comes from, as a path this kernel can read."""
        if self.kind == "notebook":
            return self.path
        if self.path is None:
            from nbflows.client.context import current_context

            self.path = current_context().notebook_path
        if not self.path:
            return None
        if os.path.isabs(self.path) and os.path.exists(self.path):
            return self.path
        # JPY_SESSION_NAME may be relative to the server's root directory.
        candidates = [os.path.abspath(self.path)]
        try:
            client = self._client()
            root = client.root_dir or client.health().get("root_dir")
        except NBFlowsError:
            root = None
        if root:
            candidates.insert(0, os.path.join(str(root), self.path.lstrip("/")))
        return next((p for p in candidates if os.path.exists(p)), None)

    def parameter_properties(self) -> dict[str, dict[str, Any]]:
        path = self.notebook_file()
        if path is None:
            return {}
        from nbflows.notebooks.loading import load_notebook
        from nbflows.notebooks.parameters import parameter_schema

        _, nb = load_notebook(path, None)
        return dict(parameter_schema(nb).get("properties", {}))

    def default_deploy(self) -> Deploy:
        if self.kind == "flow":
            return self.flow.deploy
        path = self.path

        def deploy_notebook(**kwargs: Any) -> dict[str, Any]:
            client = self._client()
            return client.deploy(**_notebook_deploy_body(str(path), kwargs, client))

        return deploy_notebook


def _notebook_deploy_body(path: str, kwargs: Mapping[str, Any], client: Any) -> dict[str, Any]:
    """The REST body (docs/api.md) deploying a whole notebook from `Flow.deploy`-style kwargs.

    An image is built here, before the request, as `Flow.deploy` and the CLI do.
    """
    from nbflows.client.deploy import deploy_request, image_for_deploy

    keys = ("work_queue_name", "parameters", "job_variables", "tags", "paused", "description")
    body = deploy_request(
        path=path,
        name=kwargs["name"],
        work_pool_name=kwargs["work_pool_name"],
        cron=kwargs.get("cron"),
        interval=kwargs.get("interval"),
        rrule=kwargs.get("rrule"),
        timezone=kwargs.get("timezone"),
        schedules=kwargs.get("schedules"),
        move_pool=bool(kwargs.get("move_pool")),
        **{key: kwargs.get(key) for key in keys},
    )
    image = kwargs.get("image")
    if image is not None:
        body["image"] = image_for_deploy(
            client,
            path,
            None,
            image,
            kwargs["work_pool_name"],
            kwargs.get("job_variables"),
            build=kwargs.get("build", True),
            push=bool(kwargs.get("push", False)),
        )
    return body


def deployment_field(deployment: Any, key: str) -> Any:
    if isinstance(deployment, Mapping):
        return deployment.get(key)
    return getattr(deployment, key, None)
