"""Route by route: each API method asks Jupyter's authorizer for its documented (action, resource)
and answers 403 with a JSON body naming it when the authorizer says no; docs/permissions.md shows
the route table as it is."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from nbflows.extension.api import ROUTES
from nbflows.extension.permissions import permission_table
from tests.servers import start_server

pytestmark = pytest.mark.slow

#: Reads the permissions it grants from a file on each question, so one server is asked both ways.
SOME = """
import os
from jupyter_server.auth.authorizer import Authorizer


class OnlySome(Authorizer):
    def is_authorized(self, handler, user, action, resource):
        if not resource.startswith("nbflows"):
            return True
        with open(os.environ["NBFLOWS_TEST_GRANTED"]) as granted:
            return f"{action} {resource}" in granted.read().split("\\n")
"""

GRANTED = {
    ("read", "nbflows"),
    ("read", "nbflows:runs"),
    ("execute", "nbflows:deployments"),
    ("write", "nbflows:secrets"),
}


def every_method() -> list[tuple[str, str, tuple[str, str]]]:
    """(method, path with each parameter filled in, permission) of every route method."""
    found = []
    for pattern, _, meta in ROUTES:
        path = re.sub(r"\(\?P<\w+>[^)]*\)", "x", pattern)
        for method, spec in meta.items():
            found.append((method.upper(), path, spec["permission"]))
    return found


def test_the_permissions_document_shows_the_route_table() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "permissions.md").read_text()
    assert permission_table() in doc


def test_each_route_asks_the_authorizer_for_its_own_permission(tmp_path: Path) -> None:
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "only_some.py").write_text(SOME)
    granted_file = tmp_path / "granted"
    granted_file.write_text("read nbflows\n")
    server = start_server(
        tmp_path / "srv",
        embedded_worker=False,
        extra_args=["--ServerApp.authorizer_class=only_some.OnlySome"],
        env={
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(modules), os.environ.get("PYTHONPATH")])
            ),
            "NBFLOWS_TEST_GRANTED": str(granted_file),
        },
    )
    everything = {permission for _, _, permission in every_method()}
    try:
        # Both ways on the same routes: what is granted in one pass is refused in the other.
        for granted in (GRANTED, everything - GRANTED - {("resolve", "nbflows:secrets")}):
            granted_file.write_text("\n".join(f"{a} {r}" for a, r in sorted(granted)) + "\n")
            for method, path, (action, resource) in every_method():
                body = {} if method in ("POST", "PUT", "PATCH") else None
                answer = server.http(method, path, json=body)
                where = f"{method} {path} as a user granted {sorted(granted)}"
                if (action, resource) in granted and action != "resolve":
                    assert answer.status_code != 403, f"{where}: refused\n{answer.text}"
                    continue
                assert answer.status_code == 403, f"{where}: allowed\n{answer.text}"
                error = answer.json()
                assert error["reason"] == "Forbidden", where
                if action != "resolve":
                    assert f"({action!r}, {resource!r})" in error["message"], where
                    assert error["details"] == {"action": action, "resource": resource}
    finally:
        server.stop()
