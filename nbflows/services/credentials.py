"""Scoped credentials: worker tokens (claim, beat and report for some pools) and run tokens
(one attempt's own logs, state and child runs). Users are not here: they are Jupyter's users,
checked by Jupyter's authorizer (`nbflows.extension.permissions`).

Tokens are random (256 bits) and stored as their SHA-256 only: a copy of the database gives no
usable token. A token says what it is by its prefix, so the server knows whom to ask.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from nbflows.errors import InvalidInput, NotFound
from nbflows.protocol import StateType
from nbflows.services.schemas.values import iso
from nbflows.store import tables as t

__all__ = [
    "RUN_PREFIX",
    "WORKER_PREFIX",
    "Principal",
    "create_worker_credential",
    "find_principal",
    "is_credential",
    "list_worker_credentials",
    "mint_run_credential",
    "revoke_worker_credential",
    "worker_credential_json",
]

WORKER_PREFIX = "nbfw_"
RUN_PREFIX = "nbfr_"
#: States in which an attempt goes on: its run token is valid in these only.
_LIVE = {StateType.PENDING.value, StateType.RUNNING.value, StateType.CANCELLING.value}
#: How many parents up a child run is looked for under a run or a pool (nesting of %%flow).
MAX_DEPTH = 20


def is_credential(token: str) -> bool:
    """True when `token` is an nbflows worker or run token (not a Jupyter one)."""
    return token.startswith((WORKER_PREFIX, RUN_PREFIX))


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who a credential speaks for: a worker (`pools` by name, or every pool of `pool_types`)
    or one attempt of a run (`run_id` under `fence`)."""

    kind: str  # "worker" | "run"
    name: str
    pools: frozenset[str] = field(default_factory=frozenset)
    pool_types: frozenset[str] = field(default_factory=frozenset)
    run_id: str | None = None
    fence: int | None = None

    @property
    def username(self) -> str:
        return f"nbflows-{self.kind}:{self.name}"

    def serves(self, pool: t.WorkPool) -> bool:
        """A worker credential's pools include `pool`."""
        return self.kind == "worker" and (pool.name in self.pools or pool.type in self.pool_types)

    # Something that does not exist is the route's own 404 (ids are random: that tells nothing;
    # a worker learns so that a pool or run it served is gone).

    def may_use_pool(self, s: Session, name: str) -> bool:
        pool = s.scalar(select(t.WorkPool).where(t.WorkPool.name == name))
        return self.serves(pool) if pool is not None else True

    def may_use_run(self, s: Session, run_id: str, *, missing: bool = True) -> bool:
        """A worker's: the run, or the run it is a child of, is in its pools or in no pool. A
        run's: the run is its own or one of its (grand)children. `missing`: the answer for no such run."""
        run = s.get(t.FlowRun, run_id)
        if run is None:
            return missing
        for _ in range(MAX_DEPTH):
            if run is None:
                return False
            if self.kind == "run" and run.id == self.run_id:
                return True
            if self.kind == "worker" and run.work_pool_id:
                pool = s.get(t.WorkPool, run.work_pool_id)
                return pool is not None and self.serves(pool)
            if not run.parent_run_id:
                # A run in no pool (recorded from a notebook) may have left a container labelled
                # with the worker's pool: its reaper reads the run and says what it did there.
                return self.kind == "worker"

            run = s.get(t.FlowRun, run.parent_run_id)
        return False

    def may_use_deployment(self, s: Session, ref: str) -> bool:
        from nbflows.services.deployments import get_deployment

        try:
            d = get_deployment(s, ref)
        except NotFound:  # its 404 names every deployment: not for a worker
            return False
        pool = s.get(t.WorkPool, d.work_pool_id)
        return pool is not None and self.serves(pool)


def find_principal(s: Session, token: str) -> Principal | None:
    """Whom `token` speaks for; None when it is unknown, revoked or its attempt is over."""
    digest = _hash(token)
    if token.startswith(WORKER_PREFIX):
        cred = s.scalar(
            select(t.WorkerCredential).where(
                t.WorkerCredential.token_hash == digest, t.WorkerCredential.revoked.is_(None)
            )
        )
        if cred is None:
            return None
        return Principal(
            "worker",
            cred.name,
            pools=frozenset(map(str, cred.pools or [])),
            pool_types=frozenset(map(str, cred.pool_types or [])),
        )
    if token.startswith(RUN_PREFIX):
        rc = s.get(t.RunCredential, digest)
        run = s.get(t.FlowRun, rc.flow_run_id) if rc else None
        if rc is None or run is None or run.fence != rc.fence or run.state_type not in _LIVE:
            return None
        return Principal("run", run.id, run_id=run.id, fence=rc.fence)
    return None


def mint_run_credential(s: Session, run: t.FlowRun) -> str:
    """A new token for the attempt `run` was just claimed for; those of earlier attempts go."""
    s.execute(delete(t.RunCredential).where(t.RunCredential.flow_run_id == run.id))
    token = RUN_PREFIX + secrets.token_urlsafe(32)
    s.add(t.RunCredential(token_hash=_hash(token), flow_run_id=run.id, fence=run.fence))
    return token


def create_worker_credential(
    s: Session, name: str, pools: list[str], pool_types: list[str] | None = None
) -> tuple[t.WorkerCredential, str]:
    """A new worker credential and its token (shown once: only its hash is kept)."""
    if not name.strip():
        raise InvalidInput("a worker credential needs a name")
    if not pools and not pool_types:
        raise InvalidInput("a worker credential needs at least one pool (--pool NAME)")
    token = WORKER_PREFIX + secrets.token_urlsafe(32)
    cred = t.WorkerCredential(
        name=name, token_hash=_hash(token), pools=sorted(set(pools)), pool_types=pool_types or []
    )
    s.add(cred)
    s.flush()
    return cred, token


def list_worker_credentials(s: Session) -> list[t.WorkerCredential]:
    query = select(t.WorkerCredential).where(t.WorkerCredential.revoked.is_(None))
    return list(s.scalars(query.order_by(t.WorkerCredential.created)))


def revoke_worker_credential(s: Session, ref: str) -> list[t.WorkerCredential]:
    """Revoke the live credentials named `ref` (or the one with id `ref`)."""
    found = [c for c in list_worker_credentials(s) if ref in (c.name, c.id)]
    if not found:
        names = ", ".join(sorted({c.name for c in list_worker_credentials(s)})) or "none"
        raise NotFound(f"no worker credential '{ref}'; live ones: {names}")
    for cred in found:
        cred.revoked = t.utcnow()
    return found


def worker_credential_json(cred: t.WorkerCredential) -> dict[str, Any]:
    return {
        "id": cred.id,
        "name": cred.name,
        "pools": list(cred.pools or []),
        "pool_types": list(cred.pool_types or []),
        "created": iso(cred.created),
    }
