"""A flow run as the API returns it (`FlowRun`), with its outputs one call away."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbflows.client.rest import Client


def run_state_type(run: Mapping[str, Any]) -> str:
    return str((run.get("state") or {}).get("type") or "")


class FlowRun(dict[str, Any]):
    """A flow run as the API returns it, with its outputs one call away. Without a client of
    its own it finds the server as `get_client()` does."""

    def __init__(self, fields: Mapping[str, Any], client: Client | None = None) -> None:
        super().__init__(fields)
        self._client = client

    def _api(self) -> Client:
        from nbflows.client.rest import get_client

        return self._client if self._client is not None else get_client()

    @property
    def artifacts(self) -> list[dict[str, Any]]:
        """The files the run wrote under its output folder: `{"name", "size", "sha256"}`."""
        return self._api().list_flow_run_artifacts(str(self["id"]))

    def read_artifact(self, name: str) -> bytes:
        return self._api().read_flow_run_artifact(str(self["id"]), name)

    def export(self, to: str = "html") -> bytes:
        """The executed notebook as HTML (or PDF where the server can make it)."""
        return self._api().export_flow_run_notebook(str(self["id"]), to)
