"""The OpenAPI document, generated from the route table so that it always matches the routes."""

from __future__ import annotations

import re
from typing import Any

from jupyter_server.auth.decorator import authorized
from pydantic import BaseModel
from tornado import web

from nbflows import __version__

from .base import NBFlowsHandler

_METHODS = ("get", "post", "put", "patch", "delete")


def openapi_document(routes: list[tuple[str, type, dict[str, Any]]]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for pattern, handler, meta in routes:
        path = "/nbflows/api/" + re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern).lstrip("/")
        params = re.findall(r"\{(\w+)\}", path)
        ops: dict[str, Any] = {}
        for method in _METHODS:
            if method not in handler.__dict__:
                continue
            op: dict[str, Any] = {
                "summary": meta.get(method, {}).get("summary", f"{method.upper()} {path}"),
                "operationId": f"{handler.__name__}_{method}",
                "parameters": [
                    {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                    for p in params
                ],
                "responses": {
                    "200": {"description": "OK"},
                    "default": {"$ref": "#/components/responses/Error"},
                },
            }
            body = meta.get(method, {}).get("body")
            if isinstance(body, type) and issubclass(body, BaseModel):
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": body.model_json_schema()}},
                }
            ops[method] = op
        paths[path] = ops
    return {
        "openapi": "3.1.0",
        "info": {"title": "nbflows", "version": __version__},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "header", "name": "Authorization"}
            },
            "responses": {
                "Error": {
                    "description": "400 malformed, 404 unknown, 409 conflict, 422 invalid value",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "message": {"type": "string"},
                                    "reason": {"type": "string"},
                                    "details": {"type": "object"},
                                },
                            }
                        }
                    },
                }
            },
        },
        "security": [{"token": []}],
    }


class OpenAPI(NBFlowsHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(self.settings["nbflows_openapi"])
