"""Routes of access: worker credentials, secrets, and a run's secrets for its worker."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from tornado import web

from nbflows.errors import Conflict, Forbidden
from nbflows.extension.base import NBFlowsHandler
from nbflows.extension.permissions import permitted
from nbflows.protocol import StateType
from nbflows.services import credentials, flow_runs
from nbflows.services import secrets as vault
from nbflows.services.schemas.bodies import parse
from nbflows.services.schemas.replies import SecretSet, WorkerTokenCreate


class WorkerTokens(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self) -> None:
        self.reply(
            await self.orch.call(
                lambda s: [
                    credentials.worker_credential_json(c)
                    for c in credentials.list_worker_credentials(s)
                ]
            )
        )

    @web.authenticated
    @permitted
    async def post(self) -> None:
        req = parse(WorkerTokenCreate, await self.body())

        def create(s: Session) -> dict[str, Any]:
            cred, token = credentials.create_worker_credential(s, req.name, req.pools)
            return credentials.worker_credential_json(cred) | {"token": token}

        out = await self.orch.call(create)
        self.reply(out, 201, self.api_url("worker_tokens", out["name"]))


class WorkerToken(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def delete(self, name: str) -> None:
        await self.orch.call(credentials.revoke_worker_credential, name)
        self.reply(None, 204)


class Secrets(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self) -> None:
        self.reply(await self.orch.call(vault.list_secrets))


class Secret(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def put(self, name: str) -> None:
        vault.check_name(name)
        value = parse(SecretSet, await self.body()).value
        await self.orch.call(vault.set_secret, name, value)
        self.reply(None, 204)

    @web.authenticated
    @permitted
    async def delete(self, name: str) -> None:
        await self.orch.call(vault.delete_secret, name)
        self.reply(None, 204)


class RunSecrets(NBFlowsHandler):
    """The values of the secrets a run refers to: for the worker credential holding the run."""

    @web.authenticated
    @permitted
    async def get(self, run_id: str) -> None:
        if self.principal is None or self.principal.kind != "worker":
            raise Forbidden("secrets are resolved only for a worker credential holding the run")

        def resolve(s: Session) -> dict[str, Any]:
            run = flow_runs.get_flow_run(s, run_id)
            if run.state_type not in (StateType.PENDING.value, StateType.RUNNING.value):
                raise Conflict(f"run {run_id} is {run.state_type}: its secrets are not given out")
            names = vault.references(run.parameters, run.job_variables, _deployment_refs(s, run))
            return {"values": vault.resolve(s, names)}

        self.reply(await self.orch.call(resolve))


def _deployment_refs(s: Session, run: Any) -> Any:
    from nbflows.store import tables as t

    d = s.get(t.Deployment, run.deployment_id) if run.deployment_id else None
    pool = s.get(t.WorkPool, run.work_pool_id) if run.work_pool_id else None
    found = [d.parameters, d.job_variables] if d is not None else []
    return [*found, pool.base_job_template] if pool is not None else found
