"""The service's front door (an ASGI middleware): request limits and an honest contract.

- A request body over `MAX_BODY_BYTES` is answered 413 before it is parsed (a full batch
  of `MAX_BATCH` complete job records is about 2.5 MB). JSON nested deeper than the
  parser's limit, a batch over `MAX_BATCH` jobs, an unknown field: 400 naming the
  reason (pydantic, in the service's schemas).
- BentoML 1.4 wraps the body of its own 4xx errors in a one-element list
  (`[{"error": ...}]`); the guard answers the object its OpenAPI schema promises.
- BentoML writes OpenAPI 3.0.2 but with JSON Schema 2020 nulls (`{"type": "null"}`),
  drops the null from fields with a `None` default, says an error's `detail` is a string
  where validation errors carry a list, and declares neither 413 nor the 409 of
  `explain`. `openapi_fixes` rewrites `/docs.json` so the document describes what the
  service does (also: a body with required fields is itself required); schemathesis
  checks it against the running service (tests/serving).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY_BYTES = 8 * 1024 * 1024
SPEC_PATH = "/docs.json"
# Operations that can refuse a valid request because of the champion's kind.
CONFLICTS = {"/explain": "The champion cannot explain (only an ICL decoder can)."}
# Operations that refuse a job of a workflow the champion was not trained on: the set
# changes with the champion (hot swap), so no static schema can say it.
_UNKNOWN = "A job's workflow is not one the champion was trained on (see /metadata)."
UNPROCESSABLE = {"/classify": _UNKNOWN, "/classify_partial": _UNKNOWN, "/explain": _UNKNOWN}

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "title": "Message"},
        "detail": {
            "title": "Error Detail",
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}],
        },
    },
}


def _json_response(status: int, payload: Any) -> tuple[Message, Message]:
    body = json.dumps(payload).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    return start, {"type": "http.response.body", "body": body, "more_body": False}


class RequestGuard:
    """ASGI middleware: body-size limit, BentoML's 4xx bodies unwrapped, spec fixed."""

    def __init__(self, app: Callable[..., Awaitable[None]], max_body_bytes: int = MAX_BODY_BYTES):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            kind = _content_type(scope)
            if kind not in ("", "application/json"):
                start, end = _json_response(
                    415, {"error": f"content type '{kind}' is not accepted; send application/json"}
                )
                await send(start)
                await send(end)
                return
            body = await self._read_body(scope, receive)
            if body is None:
                start, end = _json_response(
                    413,
                    {
                        "error": f"request body over the limit of {self.max_body_bytes} bytes; "
                        "send fewer jobs per request"
                    },
                )
                await send(start)
                await send(end)
                return
            receive = _replay(body)
        await self.app(scope, receive, _Rewriter(scope["path"], send))

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None once it is over the limit (declared or streamed)."""
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _content_type(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return value.decode("latin-1").split(";", 1)[0].strip().lower()
    return ""


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


class _Rewriter:
    """Buffers the responses it must change (the spec, 4xx errors); passes others through."""

    def __init__(self, path: str, send: Send) -> None:
        self.path = path
        self.send = send
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            status = message["status"]
            if (self.path == SPEC_PATH and status == 200) or 400 <= status < 500:
                self.start = message
                return
            await self.send(message)
            return
        if self.start is None or message["type"] != "http.response.body":
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(self.chunks)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if payload is not None:
            if self.path == SPEC_PATH:
                body = json.dumps(openapi_fixes(payload)).encode()
            elif (
                isinstance(payload, list)
                and len(payload) == 1
                and isinstance(payload[0], dict)
                and "error" in payload[0]
            ):
                body = json.dumps(payload[0]).encode()
        headers = [(k, v) for k, v in self.start.get("headers", []) if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body, "more_body": False})


def _nullable(node: Any) -> Any:
    """JSON Schema 2020 nulls as OpenAPI 3.0 `nullable`, recursively."""
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable(value) for key, value in node.items()}
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        node.pop("anyOf")
        node = {**(rest[0] if len(rest) == 1 else {"anyOf": rest}), **node, "nullable": True}
    elif "default" in node and node["default"] is None and "type" in node:
        node["nullable"] = True
    return node


def openapi_fixes(spec: dict[str, Any]) -> dict[str, Any]:
    """The service's OpenAPI document, corrected to describe what the service does."""
    spec = _nullable(spec)
    schemas = spec.get("components", {}).get("schemas", {})
    for name in ("InvalidArgument", "NotFound", "InternalServerError"):
        if name in schemas:
            described = schemas[name].get("description", "")
            schemas[name] = {**_ERROR, "title": name, "description": described}
    extra = {
        "413": ("Payload Too Large", "PayloadTooLarge"),
        "415": ("Unsupported Media Type: only application/json", "UnsupportedMediaType"),
    }
    for _, name in (*extra.values(), ("", "Conflict"), ("", "UnprocessableEntity")):
        schemas[name] = {**_ERROR, "title": name}
    for path, item in spec.get("paths", {}).items():
        operation = item.get("post")
        if operation is None:
            continue
        request = operation.get("requestBody", {})
        body_schema = request.get("content", {}).get("application/json", {}).get("schema", {})
        if body_schema.get("required"):  # a body with required fields cannot be left out
            request["required"] = True
        responses = operation.setdefault("responses", {})
        for status, (description, name) in extra.items():
            responses[status] = _ref_response(description, name)
        if path in CONFLICTS:
            responses["409"] = _ref_response(CONFLICTS[path], "Conflict")
        if path in UNPROCESSABLE:
            responses["422"] = _ref_response(UNPROCESSABLE[path], "UnprocessableEntity")
        for response in responses.values():  # BentoML inlines (and flattens) single objects
            content = response.get("content", {}).get("application/json", {})
            title = content.get("schema", {}).get("title")
            if title in schemas and "$ref" not in content["schema"]:
                content["schema"] = {"$ref": f"#/components/schemas/{title}"}
    return spec


def _ref_response(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }
