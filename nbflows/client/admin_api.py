"""The client's automation, secret and worker token calls."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from nbflows.client.transport import Transport, drop_none, segment


class AdministrationAPI(Transport):
    """The client's automation, secret and worker token calls."""

    # -- automations ---------------------------------------------------------------------------

    def create_automation(
        self,
        name: str,
        trigger: Mapping[str, Any],
        actions: Sequence[Mapping[str, Any]],
        scope: Mapping[str, Any] | None = None,
        description: str | None = None,
        enabled: bool = True,
    ) -> dict[str, Any]:
        """A rule: `trigger` e.g. {"kind": "state", "states": ["FAILED"]} or {"kind": "late",
        "after": 60}; `actions` e.g. [{"type": "notify", "url": "mailto://..."}]."""
        body = drop_none(
            {
                "name": name,
                "trigger": dict(trigger),
                "actions": [dict(a) for a in actions],
                "scope": dict(scope) if scope else None,
                "description": description,
            }
        )
        body["enabled"] = enabled
        return cast(dict[str, Any], self._post("automations", body))

    def list_automations(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._get("automations"))

    def read_automation(self, ref: str) -> dict[str, Any]:
        """By name or id."""
        return cast(dict[str, Any], self._get(f"automations/{segment(ref)}"))

    def update_automation(self, ref: str, **fields: Any) -> dict[str, Any]:
        """PATCH `enabled` (pause/resume) or `description`."""
        return cast(dict[str, Any], self._patch(f"automations/{segment(ref)}", fields))

    def delete_automation(self, ref: str) -> None:
        self._delete(f"automations/{segment(ref)}")

    def list_automation_deliveries(self, ref: str) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._get(f"automations/{segment(ref)}/deliveries"))

    def read_run_secrets(self, id: str) -> dict[str, str]:
        """The values of the secrets run `id` refers to (a worker credential holding it only)."""
        return dict(self._get(f"flow_runs/{segment(id)}/secrets")["values"])

    # -- secrets and worker credentials ---------------------------------------------------------

    def set_secret(self, name: str, value: str) -> None:
        self.request("PUT", f"secrets/{segment(name)}", json_body={"value": value})

    def list_secrets(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._get("secrets"))

    def delete_secret(self, name: str) -> None:
        self._delete(f"secrets/{segment(name)}")

    def create_worker_token(self, name: str, pools: list[str]) -> dict[str, Any]:
        """A new worker credential; its `token` is in this answer only."""
        return cast(dict[str, Any], self._post("worker_tokens", {"name": name, "pools": pools}))

    def list_worker_tokens(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._get("worker_tokens"))

    def revoke_worker_token(self, name: str) -> None:
        self._delete(f"worker_tokens/{segment(name)}")
