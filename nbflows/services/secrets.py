"""Secrets: named values encrypted at rest, referenced as `{{ secret.NAME }}` from job variables
and parameters, resolved only on the worker at run time, masked by value wherever they could
show.

The key is Fernet's (AES-128-CBC + HMAC-SHA256) and lives outside the database: the environment
variable `NBFLOWS_SECRETS_KEY` (teams whose servers share one database give each the same key),
else a file `secrets.key` (mode 0600) under the Jupyter data dir, created on first use. A copy of
the database alone reveals no secret.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbflows.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from cryptography.fernet import Fernet
    from sqlalchemy.orm import Session

__all__ = [
    "KEY_ENV",
    "MASK",
    "Masker",
    "check_references",
    "delete_secret",
    "list_secrets",
    "references",
    "resolve",
    "set_secret",
    "substitute",
]

KEY_ENV = "NBFLOWS_SECRETS_KEY"
#: What a secret's value is replaced with wherever it would show.
MASK = "********"
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,199}$")
REFERENCE = re.compile(r"\{\{\s*secret\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def key_file() -> Path:
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "nbflows" / "secrets.key"


def _fernet() -> Fernet:
    from cryptography.fernet import Fernet  # the server and workers only; not kernels

    key = os.environ.get(KEY_ENV, "").strip()
    if not key:
        path = key_file()
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Created with its mode: never readable by others, not even for a moment.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another server made it meanwhile
            else:
                with os.fdopen(fd, "wb") as out:
                    out.write(Fernet.generate_key())
        key = path.read_text().strip()
    try:
        return Fernet(key.encode())
    except ValueError:
        raise InvalidInput(
            f"the secrets key ({KEY_ENV} or {key_file()}) is not a Fernet key "
            "(32 url-safe base64-encoded bytes)"
        ) from None


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise InvalidInput(
            f"'{name}' is not a secret name: use letters, digits and '_', not starting with "
            "a digit (at most 200 characters)"
        )
    return name


def set_secret(s: Session, name: str, value: str) -> bool:
    """Store `value` encrypted under `name`; True when it is new."""
    from nbflows.store import tables as t

    check_name(name)
    if not value:
        raise InvalidInput(f"the value of secret '{name}' is empty")
    token = _fernet().encrypt(value.encode()).decode()
    row = s.get(t.Secret, name)
    if row is None:
        s.add(t.Secret(name=name, ciphertext=token))
        return True
    row.ciphertext = token
    row.updated = t.utcnow()
    return False


def list_secrets(s: Session) -> list[dict[str, Any]]:
    """Names and times only: values never leave the server except to a run's worker."""
    from sqlalchemy import select

    from nbflows.store import tables as t

    rows = s.execute(
        select(t.Secret.name, t.Secret.created, t.Secret.updated).order_by(t.Secret.name)
    )
    return [
        {"name": n, "created": c.isoformat(), "updated": u.isoformat()} for n, c, u in rows.all()
    ]


def delete_secret(s: Session, name: str) -> None:
    from nbflows.store import tables as t

    row = s.get(t.Secret, name)
    if row is None:
        raise NotFound(f"no secret '{name}'")
    s.delete(row)


def references(*values: Any) -> set[str]:
    """The secret names `{{ secret.NAME }}` refers to anywhere inside `values` (JSON)."""
    found: set[str] = set()
    for value in values:
        if isinstance(value, str):
            found.update(REFERENCE.findall(value))
        elif isinstance(value, Mapping):
            found |= references(*value.values())
        elif isinstance(value, (list, tuple)):
            found |= references(*value)
    return found


def check_references(s: Session, *values: Any) -> None:
    """InvalidInput naming the secrets `values` refer to that do not exist."""
    names = references(*values)
    if not names:
        return
    from sqlalchemy import select

    from nbflows.store import tables as t

    known = set(s.scalars(select(t.Secret.name).where(t.Secret.name.in_(names))))
    missing = sorted(names - known)
    if missing:
        raise InvalidInput(
            "unknown secret(s): "
            + ", ".join(missing)
            + " (create them with `nbflows secret set NAME`)",
            secrets=missing,
        )


def resolve(s: Session, names: Iterable[str]) -> dict[str, str]:
    """The values of `names` (for the worker of a run); unknown names are an InvalidInput."""
    from cryptography.fernet import InvalidToken

    from nbflows.store import tables as t

    fernet = _fernet()
    out: dict[str, str] = {}
    for name in sorted(set(names)):
        row = s.get(t.Secret, name)
        if row is None:
            raise InvalidInput(f"unknown secret '{name}' (it was deleted after the deploy)")
        try:
            out[name] = fernet.decrypt(row.ciphertext.encode()).decode()
        except InvalidToken:
            raise InvalidInput(
                f"secret '{name}' cannot be decrypted with this server's key ({KEY_ENV} or "
                f"{key_file()}): set it again, or give every server the same key"
            ) from None
    return out


def substitute(value: Any, values: Mapping[str, str]) -> Any:
    """`value` (JSON) with each `{{ secret.NAME }}` replaced by the secret's value."""
    if isinstance(value, str):
        whole = REFERENCE.fullmatch(value.strip())
        if whole:
            return values[whole.group(1)]
        return REFERENCE.sub(lambda m: values[m.group(1)], value)
    if isinstance(value, Mapping):
        return {k: substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, values) for v in value]
    return value


class Masker:
    """Replaces secret values by `MASK` in text and in JSON values (log lines, notebooks)."""

    def __init__(self, values: Iterable[str]) -> None:
        # Longest first: a value that contains another is masked whole.
        self.values = sorted({v for v in values if v}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, self.values))) if self.values else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern is not None else text

    def json(self, value: Any) -> Any:
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self.json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json(v) for v in value]
        return value
