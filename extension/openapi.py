"""The OpenAPI document, generated from the route table so that it always matches the routes:
paths and methods from the handlers, bodies, query strings and answers from their models."""

from __future__ import annotations

import re
from typing import Any

from pydantic import TypeAdapter
from tornado import web

from nbflows import __version__
from nbflows.extension.base import NBFlowsHandler
from nbflows.extension.permissions import permitted
from nbflows.services.schemas.replies import ErrorReply

_METHODS = ("get", "post", "put", "patch", "delete")


class Binary:
    """A body that is a file, not JSON: a route's `body` or the model of one of its answers,
    in one of `media_types`."""

    def __init__(self, *media_types: str) -> None:
        self.media_types = media_types or ("application/octet-stream",)

    def content(self) -> dict[str, Any]:
        return {m: {"schema": {"type": "string", "format": "binary"}} for m in self.media_types}


_REF = "#/components/schemas/{model}"

#: The errors every route may answer, each with an `Error` body.
ERRORS = {
    400: "Malformed: not JSON, a value of the wrong type, nested too deep",
    401: "No valid credentials: Jupyter's token (or login) is missing or wrong",
    403: "Not allowed: Jupyter's authorizer refused it, or a browser request lacks its XSRF token",
    404: "No such resource",
    409: "Conflict: it exists already, or its state forbids the change",
    413: "Over a size limit of the server (the message names the limit and its setting)",
    422: "Well-formed but invalid: the message says what is valid",
    501: "This server cannot make it (e.g. PDF without a Chromium); the message says what can",
    503: "The server is shutting down; try again",
}


def openapi_document(
    routes: list[tuple[str, type, dict[str, Any]]],
    links: dict[Any, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The document of `routes` (see `nbflows.extension.api`).

    `links` maps a response type to the path parameters its body provides (parameter -> JSON
    pointer): each operation answering that type links to the operations those parameters
    fill, so that a client (or a fuzzer) can follow from a created resource to its routes.
    """
    ops: list[tuple[str, str, str, list[str], dict[str, Any]]] = []
    inputs: list[tuple[Any, Any, TypeAdapter[Any]]] = [
        ("error", "serialization", TypeAdapter(ErrorReply))
    ]
    # A path parameter narrower than one path segment says its pattern.
    narrow: dict[str, dict[str, str]] = {}
    for pattern, handler, meta in routes:
        path = "/nbflows/api/" + re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern).lstrip("/")
        params = re.findall(r"\{(\w+)\}", path)
        narrow[path] = {
            name: f"^{regex}$"
            for name, regex in re.findall(r"\(\?P<(\w+)>([^)]*)\)", pattern)
            if regex != "[^/]+"
        }
        for method in _METHODS:
            if method not in handler.__dict__:
                continue
            spec = meta.get(method, {})
            op_id = f"{handler.__name__}_{method}"
            ops.append((path, method, op_id, params, spec))
            if spec.get("body") is not None and not isinstance(spec["body"], Binary):
                inputs.append(((op_id, "body"), "validation", TypeAdapter(spec["body"])))
            for status, model in spec.get("responses", {}).items():
                if model is not None and not isinstance(model, Binary):
                    inputs.append(((op_id, status), "serialization", TypeAdapter(model)))
    schemas, definitions = TypeAdapter.json_schemas(inputs, ref_template=_REF)
    error_ref = schemas[("error", "serialization")]

    paths: dict[str, dict[str, Any]] = {}
    for path, method, op_id, params, spec in ops:
        op: dict[str, Any] = {
            "summary": spec.get("summary", f"{method.upper()} {path}"),
            "operationId": op_id,
            "parameters": [
                {
                    "name": p,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", **spec.get("path", {}).get(p, {})}
                    | ({"pattern": narrow[path][p]} if p in narrow[path] else {}),
                }
                for p in params
            ],
            "responses": {},
        }
        if spec.get("query") is not None:
            op["parameters"] += _query_parameters(spec["query"].model_json_schema())
        if isinstance(spec.get("body"), Binary):
            op["requestBody"] = {"required": True, "content": spec["body"].content()}
        elif spec.get("body") is not None:
            body = spec["body"]
            optional = isinstance(body, type) and not any(
                field.is_required() for field in getattr(body, "model_fields", {}).values()
            )
            op["requestBody"] = {
                # A body whose every field is optional may be left out: it is `{}`.
                "required": not optional,
                "content": {
                    "application/json": {"schema": schemas[((op_id, "body"), "validation")]}
                },
            }
        for status, model in spec.get("responses", {}).items():
            answer: dict[str, Any] = {"description": _DESCRIPTIONS.get(status, "OK")}
            if isinstance(model, Binary):
                answer["content"] = model.content()
            elif model is not None:
                schema = schemas[((op_id, status), "serialization")]
                answer["content"] = {"application/json": {"schema": schema}}
            if status == 201:
                answer["headers"] = {
                    "Location": {
                        "description": "The URL of the created resource",
                        "schema": {"type": "string"},
                    }
                }
            op["responses"][str(status)] = answer
        for status, text in ERRORS.items():
            if status == 413 and "body" not in spec:
                continue
            if status == 501 and not spec.get("may_be_unavailable"):
                continue
            op["responses"][str(status)] = {
                "description": text,
                "content": {"application/json": {"schema": error_ref}},
            }
        paths.setdefault(path, {})[method] = op
    _add_links(paths, routes, links or {})
    return {
        "openapi": "3.1.0",
        "info": {"title": "nbflows", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "token": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "`token <Jupyter server token>`",
                }
            },
        },
        "security": [{"token": []}],
    }


_DESCRIPTIONS = {200: "OK", 201: "Created", 204: "Done; no content"}


def _query_parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", []))
    definitions = schema.get("$defs", {})

    def inline(part: dict[str, Any]) -> dict[str, Any]:
        # A parameter's schema stands alone: a model's own definitions (an enum) go inline.
        ref = part.get("$ref", "")
        return {**definitions[ref.rsplit("/", 1)[-1]]} if ref else part

    out = []
    for name, prop in schema.get("properties", {}).items():
        prop = inline(dict(prop)) | {k: v for k, v in prop.items() if k != "$ref"}
        description = prop.pop("description", None)
        prop.pop("title", None)
        # A query value is never null: leaving the parameter out is how it is "none".
        variants = [inline(v) for v in prop.pop("anyOf", []) if v.get("type") != "null"]
        if variants:
            prop.update(variants[0] if len(variants) == 1 else {"anyOf": variants})
        if prop.get("default") is None:
            prop.pop("default", None)
        param = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            param["description"] = description
        out.append(param)
    return out


def _add_links(
    paths: dict[str, dict[str, Any]],
    routes: list[tuple[str, type, dict[str, Any]]],
    links: dict[Any, dict[str, str]],
) -> None:
    unlinked = {
        f"{handler.__name__}_{method}"
        for _, handler, meta in routes
        for method, spec in meta.items()
        if spec.get("linked") is False
    }
    targets = [
        (op["operationId"], {p["name"] for p in op["parameters"] if p["in"] == "path"})
        for ops in paths.values()
        for op in ops.values()
        if op["operationId"] not in unlinked
    ]
    for _, handler, meta in routes:
        for method, spec in meta.items():
            for status, model in spec.get("responses", {}).items():
                provided = links.get(model)
                if not provided:
                    continue
                answer = _operation(paths, handler, method)["responses"][str(status)]
                answer["links"] = {
                    target: {
                        "operationId": target,
                        "parameters": {p: f"$response.body#{provided[p]}" for p in needs},
                    }
                    for target, needs in targets
                    if needs and needs <= set(provided)
                }


def _operation(paths: dict[str, dict[str, Any]], handler: type, method: str) -> dict[str, Any]:
    op_id = f"{handler.__name__}_{method}"
    return next(op for ops in paths.values() for op in ops.values() if op["operationId"] == op_id)


class OpenAPI(NBFlowsHandler):
    @web.authenticated
    @permitted
    async def get(self) -> None:
        self.reply(self.settings["nbflows_openapi"])
