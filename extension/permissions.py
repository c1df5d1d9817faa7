"""Who may call which route (docs/permissions.md has the table).

Three kinds of callers:

- **Users** (Jupyter's token, a login cookie, JupyterHub): each route method needs one Jupyter
  permission, an `(action, resource)` pair asked of the server's `Authorizer.is_authorized`, so
  a deployment plugs in its own authorizer (`ServerApp.authorizer_class`). Actions are Jupyter's
  own (read / write / execute); resources are `nbflows:pools`, `nbflows:deployments`,
  `nbflows:runs`, `nbflows:secrets` and `nbflows` (the server itself).
- **Worker credentials** (`nbflows worker-token create`): only the routes a worker uses, and
  only for its pools and the runs in them.
- **Run credentials** (given to a run's kernel instead of any other token): only its own run and
  the child runs under it.

Every method says which scope a credential must be within (`worker` and `run` in its route's
spec in `nbflows.extension.api`); a method without one refuses credentials.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

from jupyter_server.utils import ensure_async
from sqlalchemy.orm import Session

from nbflows.errors import Forbidden
from nbflows.services.credentials import Principal

if TYPE_CHECKING:
    from nbflows.extension.base import NBFlowsHandler

__all__ = ["Permission", "permitted", "route_spec"]

Permission = tuple[str, str]

READ_SERVER: Permission = ("read", "nbflows")
READ_POOLS: Permission = ("read", "nbflows:pools")
ADMIN_POOLS: Permission = ("write", "nbflows:pools")
WORK_POOLS: Permission = ("execute", "nbflows:pools")
READ_DEPLOYMENTS: Permission = ("read", "nbflows:deployments")
DEPLOY: Permission = ("write", "nbflows:deployments")
RUN_DEPLOYMENTS: Permission = ("execute", "nbflows:deployments")
READ_RUNS: Permission = ("read", "nbflows:runs")
WRITE_RUNS: Permission = ("write", "nbflows:runs")
READ_SECRETS: Permission = ("read", "nbflows:secrets")
WRITE_SECRETS: Permission = ("write", "nbflows:secrets")
READ_AUTOMATIONS: Permission = ("read", "nbflows:automations")
WRITE_AUTOMATIONS: Permission = ("write", "nbflows:automations")

#: Credential scopes a route method may accept (see `_within`).
ANY, POOL, POOLS, DEPLOYMENT, RUN, CHILD = "any", "pool", "pools", "deployment", "run", "child"

H = TypeVar("H", bound="NBFlowsHandler")
Method = Callable[..., Awaitable[None]]


def route_spec(handler: type, method: str) -> dict[str, Any]:
    """The spec of `handler`'s `method` in the route table (`nbflows.extension.api`)."""
    from nbflows.extension.api import method_specs  # the route table imports the handlers

    return method_specs().get((handler, method.lower()), {})


def permitted(method: Method) -> Method:
    """Decorator of a route method: the caller must hold the method's permission (a user) or be
    within its scope (a credential); else 403 saying what is missing."""

    @wraps(method)
    async def inner(self: NBFlowsHandler, *args: Any, **kwargs: Any) -> None:
        spec = route_spec(type(self), method.__name__)
        principal = self.principal
        if principal is None:
            await _check_user(self, spec)
        else:
            await _check_credential(self, spec, principal, kwargs)
        await method(self, *args, **kwargs)

    return inner


async def _check_user(handler: NBFlowsHandler, spec: dict[str, Any]) -> None:
    action, resource = spec.get("permission", ("execute", "nbflows"))
    user = handler.current_user
    if user and await ensure_async(
        handler.authorizer.is_authorized(handler, user, action, resource)
    ):
        return
    name = getattr(user, "username", None) or "this user"
    raise Forbidden(
        f"{name} may not {action} {resource} ({handler.request.method} "
        f"{handler.request.path}); the server's authorizer must allow ({action!r}, {resource!r})",
        action=action,
        resource=resource,
    )


async def _check_credential(
    handler: NBFlowsHandler, spec: dict[str, Any], who: Principal, kwargs: dict[str, Any]
) -> None:
    scope = spec.get(who.kind)
    what = f"{handler.request.method} {handler.request.path}"
    if scope is None:
        raise Forbidden(f"a {who.kind} credential may not call {what}", credential=who.kind)
    if scope in (ANY, POOLS):
        return
    within = handler.credential_within if scope != CHILD else None
    if within is None:
        body = await handler.body() if scope == CHILD else None
        within = await handler.orch.call(_within, who, scope, kwargs, body)
    if not within:
        whose = "pools" if who.kind == "worker" else "run"
        raise Forbidden(
            f"{what} is outside this {who.kind} credential's {whose} ({_describe(who)})",
            credential=who.kind,
        )


def identify(
    s: Session, token: str, spec: dict[str, Any], kwargs: dict[str, Any]
) -> tuple[Principal | None, bool | None]:
    """Whom a credential speaks for and, when the route's scope can be judged before the body
    arrives, whether the call is within it: one transaction for what took two (a worker's
    every report paid for both)."""
    from nbflows.services.credentials import find_principal

    who = find_principal(s, token)
    if who is None:
        return None, None
    scope = spec.get(who.kind)
    if scope not in (POOL, DEPLOYMENT, RUN):
        return who, None
    return who, _within(s, who, scope, kwargs, None)


def _within(s: Session, who: Principal, scope: str, kwargs: dict[str, Any], body: Any) -> bool:
    if scope == POOL:
        return who.may_use_pool(s, kwargs["pool"])
    if scope == DEPLOYMENT:
        return who.kind == "worker" and who.may_use_deployment(s, kwargs["ref"])
    if scope == RUN:
        return who.may_use_run(s, kwargs["run_id"])
    if scope == CHILD:  # a new run: a child of a run within the credential's reach
        parent = body.get("parent_run_id") if isinstance(body, dict) else None
        return isinstance(parent, str) and who.may_use_run(s, parent, missing=False)
    return False


def _describe(who: Principal) -> str:
    if who.kind == "run":
        return f"run {who.run_id} and its child runs"
    names = sorted(who.pools) + [f"every {k} pool" for k in sorted(who.pool_types)]
    return ", ".join(names) or "none"


def permission_table() -> str:
    """The route-by-route table of docs/permissions.md, from the route table itself."""
    from nbflows.extension.api import ROUTES

    rows = [
        "| route | method | user permission (action, resource) | worker credential | "
        "run credential |",
        "| --- | --- | --- | --- | --- |",
    ]
    for pattern, _, meta in ROUTES:
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern)
        for method, spec in meta.items():
            action, resource = spec["permission"]
            worker, run = (_SCOPES[kind][spec.get(kind)] for kind in ("worker", "run"))
            rows.append(
                f"| `{path}` | {method.upper()} | `{action}` `{resource}` | {worker} | {run} |"
            )
    return "\n".join(rows)


_SCOPES: dict[str, dict[str | None, str]] = {
    "worker": {
        None: "—",
        ANY: "yes",
        POOLS: "yes (lists its pools only)",
        POOL: "its pools",
        DEPLOYMENT: "deployments of its pools",
        RUN: "runs of its pools (or of none) and their child runs",
        CHILD: "a child of a run of its pools",
    },
    "run": {
        None: "—",
        ANY: "yes",
        RUN: "its own run and its child runs",
        CHILD: "a child of its own run",
    },
}
