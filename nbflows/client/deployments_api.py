"""The client's deployment calls: deploy, read, update, delete, upcoming runs, project files."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from nbflows.client.transport import Transport, drop_none, segment
from nbflows.errors import (
    InvalidInput,
    NotFound,
)


class DeploymentsAPI(Transport):
    """The client's deployment calls: deploy, read, update, delete, upcoming runs, project files."""

    # -- deployments ---------------------------------------------------------------------------

    def deploy(self, **body: Any) -> dict[str, Any]:
        """Create or update (by flow name + name) a deployment; see docs/api.md for the body."""
        return cast(dict[str, Any], self._post("deployments", drop_none(body)))

    def deploy_pipeline(self, **body: Any) -> dict[str, Any]:
        """Deploy a pipeline: `name`, `pipeline` (its JSON), and optionally `parameters`,
        `schedules`, `paused`, `tags`, `description`, `base_dir`."""
        return cast(dict[str, Any], self._post("pipelines", drop_none(body)))

    def list_deployments(
        self, flow_name: str | None = None, work_pool_name: str | None = None
    ) -> list[dict[str, Any]]:
        return cast(
            list[dict[str, Any]],
            self._get("deployments", flow_name=flow_name, work_pool_name=work_pool_name),
        )

    def read_deployment(self, ref: str) -> dict[str, Any]:
        """A deployment by id or by `"flow-name/deployment-name"`."""
        flow_name, sep, name = str(ref).partition("/")
        if sep:
            if not flow_name or not name:
                raise InvalidInput(
                    f"'{ref}' is not a deployment reference; use 'flow-name/deployment-name' "
                    "or a deployment id"
                )
            return cast(
                dict[str, Any], self._get(f"deployments/name/{segment(flow_name)}/{segment(name)}")
            )
        return cast(dict[str, Any], self._get(f"deployments/{segment(ref)}"))

    @property
    def _run_ids(self) -> dict[str, str]:
        """Deployment ids by name, as runs were created by name (`create_flow_run_from_deployment`)."""
        return cast(dict[str, str], self.__dict__.setdefault("_deployment_ids_by_name", {}))

    def _deployment_id(self, ref: str) -> str:
        # Routes other than read take the id; a name costs one extra GET.
        if "/" in str(ref):
            return str(self.read_deployment(ref)["id"])
        return str(ref)

    def update_deployment(self, ref: str, **fields: Any) -> dict[str, Any]:
        """PATCH any of `paused, parameters, job_variables, schedules, tags, description,
        work_queue_name`."""
        return cast(
            dict[str, Any], self._patch(f"deployments/{segment(self._deployment_id(ref))}", fields)
        )

    def delete_deployment(self, ref: str) -> None:
        self._delete(f"deployments/{segment(self._deployment_id(ref))}")

    def read_deployment_notebook(self, ref: str, version: int | None = None) -> dict[str, Any]:
        """The frozen notebook of a deployment (the latest version unless `version` is given)."""
        return cast(
            dict[str, Any],
            self._get(f"deployments/{segment(self._deployment_id(ref))}/notebook", version=version),
        )

    def upcoming_runs(self, ref: str, limit: int = 10) -> list[dict[str, Any]]:
        return cast(
            list[dict[str, Any]],
            self._get(f"deployments/{segment(self._deployment_id(ref))}/upcoming", limit=limit),
        )

    def create_flow_run_from_deployment(
        self,
        ref: str,
        parameters: Mapping[str, Any] | None = None,
        job_variables: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        tags: Iterable[str] | None = None,
        scheduled_time: str | None = None,
    ) -> dict[str, Any]:
        body = drop_none(
            {
                "parameters": dict(parameters) if parameters is not None else None,
                "job_variables": dict(job_variables) if job_variables is not None else None,
                "idempotency_key": idempotency_key,
                "tags": list(tags) if tags is not None else None,
                "scheduled_time": scheduled_time,
            }
        )
        if "/" not in str(ref):
            return cast(dict[str, Any], self._post(f"deployments/{segment(ref)}/runs", body))
        # By name: the id is looked up once per client (a burst of runs is not twice the
        # requests), and again if that deployment is gone (deleted, deployed anew).
        known = self._run_ids.get(str(ref))
        if known is not None:
            try:
                return cast(dict[str, Any], self._post(f"deployments/{segment(known)}/runs", body))
            except NotFound:
                self._run_ids.pop(str(ref), None)
        deployment_id = self._deployment_id(ref)
        created = cast(
            dict[str, Any], self._post(f"deployments/{segment(deployment_id)}/runs", body)
        )
        self._run_ids[str(ref)] = deployment_id
        return created

    def read_deployment_files(self, ref: str, version: int | None = None) -> dict[str, Any]:
        """The project files a deployment version carries: `{"notebook_dir", "files"}`."""
        path = f"deployments/{segment(self._deployment_id(ref))}/files"
        return cast(dict[str, Any], self._get(path, version=version))

    def read_deployment_file(self, ref: str, sha256: str) -> bytes:
        path = f"deployments/{segment(self._deployment_id(ref))}/files/{segment(sha256)}"
        return cast(bytes, self.request("GET", path, raw=True, timeout=300))
