"""reference/api.md and reference/openapi.json: the service's endpoints, from its OpenAPI document.

Run by mkdocs-gen-files at build time. The document is the one a running service answers
at `/docs.json`: BentoML's spec of `flowsentry.serving.service:AnomalyDetector`, rewritten
by `flowsentry.serving.guard.openapi_fixes`. Both are computed from the service class, so
no server, no model and no BentoML store are needed, and the page follows the code.
"""

from __future__ import annotations

import json
from typing import Any

import mkdocs_gen_files

from flowsentry.serving.guard import SPEC_PATH, openapi_fixes
from flowsentry.serving.service import AnomalyDetector

PAGE = "reference/api.md"
SPEC = "reference/openapi.json"
# BentoML's own probes, answered by every BentoML service.
PROBES = {
    "/healthz": "Liveness: 200 while the service runs (Kubernetes' older name for /livez).",
    "/livez": "Liveness: 200 while the service runs.",
    "/readyz": "Readiness: 200 once the service accepts requests; the container's health check.",
    "/metrics": "Prometheus metrics of the service.",
}


def service_spec() -> dict[str, Any]:
    """The OpenAPI document the service serves at /docs.json."""
    return openapi_fixes(AnomalyDetector.openapi_spec.asdict())


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """`node`, or the component schema its `$ref` names."""
    ref = node.get("$ref")
    if ref is None:
        return node
    return spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def ref_name(node: dict[str, Any]) -> str | None:
    """The component a schema node points to, if any (directly or as array items)."""
    if "$ref" in node:
        return node["$ref"].rsplit("/", 1)[-1]
    if node.get("type") == "array" and "$ref" in node.get("items", {}):
        return node["items"]["$ref"].rsplit("/", 1)[-1]
    return None


def type_of(node: dict[str, Any]) -> str:
    """A property's type in a few words: `number`, `array of JobRecord`, `normal | anomalous`."""
    name = ref_name(node)
    if name is not None:
        link = f"[{name}](#{name.lower()})"
        return f"array of {link}" if node.get("type") == "array" else link
    if "enum" in node:
        return " \\| ".join(f"`{value}`" for value in node["enum"])
    if "anyOf" in node:
        return " or ".join(type_of(option) for option in node["anyOf"])
    kind = node.get("type", "any")
    if kind == "array":
        return f"array of {type_of(node.get('items', {}))}"
    return f"{kind}, or null" if node.get("nullable") else str(kind)


def bounds_of(node: dict[str, Any]) -> str:
    """`0 ..= 2,592,000`, `1 ..= 1,024 items`, `1 ..= 200 characters`."""
    for low, high, unit in (
        ("minimum", "maximum", ""),
        ("minItems", "maxItems", " items"),
        ("minLength", "maxLength", " characters"),
    ):
        if low in node or high in node:
            return f"{number(node.get(low))} ..= {number(node.get(high))}{unit}".strip()
    return ""


def number(value: Any) -> str:
    """A bound as people read it: 2,592,000 rather than 2592000.0."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}" if isinstance(value, int) else str(value)


def cell(text: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|").replace("<", "&lt;")


def fields_table(spec: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """One row per property of an object schema."""
    schema = resolve(spec, schema)
    properties = schema.get("properties", {})
    if not properties:
        return ["No fields: send `{}`.", ""]
    required = set(schema.get("required", ()))
    lines = ["| field | type | bounds | required | meaning |", "| --- | --- | --- | --- | --- |"]
    for name, node in properties.items():
        lines.append(
            f"| `{name}` | {type_of(node)} | {cell(bounds_of(node))} | "
            f"{'yes' if name in required else ''} | {cell(node.get('description', ''))} |"
        )
    if schema.get("additionalProperties") is False:
        lines += ["", "Any other field is refused (400)."]
    return [*lines, ""]


def operation_section(
    spec: dict[str, Any], path: str, method: str, op: dict[str, Any]
) -> list[str]:
    """One endpoint: what it does, its body, its replies."""
    lines = [f"### `{method.upper()} {path}` {{ #{anchor(method, path)} }}", ""]
    description = describe(path, op)
    if description:
        lines += [description, ""]
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    if body:
        lines += ["**Request body** (`application/json`):", ""]
        lines += fields_table(spec, body.get("schema", {}))
    replies = op.get("responses", {})
    if replies:
        lines += ["| status | meaning | body |", "| --- | --- | --- |"]
        for status in sorted(replies, key=str):
            reply = replies[status]
            schema = reply.get("content", {}).get("application/json", {}).get("schema", {})
            body = type_of(schema) if schema else ""
            lines.append(f"| {status} | {cell(reply.get('description', ''))} | {body} |")
        lines.append("")
    return lines


def describe(path: str, op: dict[str, Any]) -> str:
    """What an operation does: the service method's docstring (BentoML's probes: ours)."""
    return " ".join((PROBES.get(path) or op.get("description", "")).split())


def anchor(method: str, path: str) -> str:
    """The heading id of an operation: `post-classify_partial`."""
    return f"{method}-{path.strip('/').replace('/', '-')}"


def referenced(spec: dict[str, Any]) -> list[str]:
    """Component schemas the endpoints use (directly or through another schema), in the
    order the document lists them."""
    schemas = spec["components"]["schemas"]
    found: set[str] = set()
    todo = [json.dumps(spec["paths"])]
    while todo:
        text = todo.pop()
        for name in schemas:
            if name not in found and f'/{name}"' in text:
                found.add(name)
                todo.append(json.dumps(schemas[name]))
    return [name for name in schemas if name in found]


def page(spec: dict[str, Any]) -> str:
    """The whole reference page."""
    out = [
        "# Service API",
        "",
        "The endpoints of `flowsentry.serving.service:AnomalyDetector`, the BentoML service",
        "every champion is served by, whatever its kind. A running service answers the",
        f"OpenAPI document at `{SPEC_PATH}` (and an interactive page at `/`); the same document is",
        "[here](openapi.json), generated from the service class when the site is built",
        "(`docs/gen_openapi.py`). How the service scores, batches and keeps each run's jobs",
        "is in [Serving and the run store](../concepts/serving.md); what it answers to bad",
        "input, in [Reliability](../reliability.md).",
        "",
        "## Endpoints",
        "",
        "| method | path | what it does |",
        "| --- | --- | --- |",
    ]
    operations = [
        (path, method, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "delete")
    ]
    for path, method, op in operations:
        link = f"[`{path}`](#{anchor(method, path)})"
        out.append(f"| `{method.upper()}` | {link} | {cell(describe(path, op))} |")
    out += ["", "## Operations", ""]
    for path, method, op in operations:
        out += operation_section(spec, path, method, op)
    out += ["## Schemas", ""]
    for name in referenced(spec):
        schema = spec["components"]["schemas"][name]
        out += [f"### {name} {{ #{name.lower()} }}", ""]
        if schema.get("description"):
            out += [" ".join(schema["description"].split()), ""]
        out += fields_table(spec, schema)
    return "\n".join(out)


_spec = service_spec()
with mkdocs_gen_files.open(SPEC, "w") as handle:
    json.dump(_spec, handle, indent=2)
with mkdocs_gen_files.open(PAGE, "w") as handle:
    handle.write(page(_spec))
