"""reference/params.md: every params.yaml key, from the typed config `flowsentry.config.Config`.

Run by mkdocs-gen-files at build time. A key's meaning is its pydantic `Field` description;
for a key without one, the comment beside it in params.yaml (the file the config reads).
Defaults, types and bounds come from the model, so the page cannot drift from the code.
"""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import mkdocs_gen_files
from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from flowsentry.config import DEFAULT_PARAMS, Config

ROOT = Path(__file__).resolve().parent.parent

PAGE = "reference/params.md"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_]\w*):(?P<rest>.*)$")
_COMMENT = re.compile(r"(?:^|\s)#\s?(?P<text>.*)$")


def params_comments(path: Path) -> dict[str, str]:
    """{dotted key: its comment} from params.yaml: the comment on the key's line (with any
    comment lines aligned under it) or the comment lines just above the key."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    above: list[str] = []
    last_key, last_column = "", -1
    for line in path.read_text().splitlines():
        stripped = line.lstrip()
        if not stripped:
            above, last_column = [], -1
            continue
        if stripped.startswith("#"):
            column, text = len(line) - len(stripped), stripped[1:].strip()
            if column == last_column:  # a trailing comment continued on the next line
                comments[last_key] += " " + text
            else:
                above.append(text)
            continue
        match = _KEY.match(line)
        if match is None:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        dotted = ".".join(key for _, key in stack)
        trailing = _COMMENT.search(match["rest"])
        parts = [*above, trailing["text"].strip()] if trailing else above
        if parts and indent:  # comments above a top-level section describe the file
            comments[dotted] = " ".join(parts)
        elif trailing:
            comments[dotted] = trailing["text"].strip()
        above = []
        last_key = dotted
        last_column = line.index("#", match.start("rest")) if trailing else -1
    return comments


def type_text(annotation: Any) -> str:
    """A field's type in the words params.yaml uses (one of, list of, or null)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return "one of " + " \\| ".join(f"`{value}`" for value in args)
    if origin in (Union, types.UnionType):
        named = [type_text(arg) for arg in args if arg is not type(None)]
        return " or ".join(named) + (" or `null`" if type(None) in args else "")
    if origin is tuple:
        return f"list of {type_text(args[0])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping (below)"
    names = {str: "text", int: "integer", float: "number", bool: "`true` \\| `false`"}
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path"
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def yaml_text(value: Any) -> str:
    """A default as params.yaml writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(yaml_text(item) for item in value) + "]"
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, BaseModel):
        return "(below)"
    return str(value)


def bounds_text(field: FieldInfo) -> str:
    """`>= 0, < 1` from the field's constraints."""
    signs = {Ge: (">=", "ge"), Gt: (">", "gt"), Le: ("<=", "le"), Lt: ("<", "lt")}
    found = []
    for item in field.metadata:
        for kind, (sign, name) in signs.items():
            if isinstance(item, kind):
                found.append(f"{sign} {getattr(item, name)}")
    return ", ".join(found)


def cell_text(text: str) -> str:
    """Text safe inside a Markdown table cell (pipes, angle brackets, asterisks)."""
    for raw, safe in (("|", "\\|"), ("<", "&lt;"), (">", "&gt;"), ("*", "\\*")):
        text = text.replace(raw, safe)
    return text.rstrip(":")


def item_model(annotation: Any) -> type[BaseModel] | None:
    """The model of a section, a nested mapping or the items of a list of mappings."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is tuple:
        return item_model(get_args(annotation)[0])
    return None


def rows(model: type[BaseModel], prefix: str, comments: dict[str, str]) -> list[str]:
    """Table rows for `model`'s fields, nested mappings after their parent key."""
    lines, nested = [], []
    for name, field in model.model_fields.items():
        key = f"{prefix}.{field.alias or name}"
        annotation = field.annotation
        default = "(required)" if field.is_required() else yaml_text(field.get_default())
        meaning = field.description or comments.get(key, "")
        kind = type_text(annotation)
        bounds = bounds_text(field)
        if bounds:
            kind += f" ({bounds})"
        sub = item_model(annotation)
        if sub is not None and get_origin(annotation) is tuple:
            kind = "list of mappings (below)"
        cell = cell_text(meaning)
        lines.append(f"| `{key}` | `{default}` | {kind} | {cell} |")
        if sub is not None:
            item_prefix = key + ("[]" if get_origin(annotation) is tuple else "")
            nested.extend(rows(sub, item_prefix, comments))
    return lines + nested


def page(comments: dict[str, str]) -> str:
    """The whole reference page: one table per params.yaml section."""
    out = [
        "# Parameters (`params.yaml`)",
        "",
        "Every knob of the pipeline, the service and the flows lives in `params.yaml`, read",
        "once into the typed, frozen `flowsentry.config.Config` (pydantic): an unknown key or",
        "a value out of bounds stops any command with one line naming the key. Override a key",
        "for one command with `--set KEY=VALUE` (a YAML value), e.g.",
        "`flowsentry prepare --set split.method=random`. Each stage in `dvc.yaml` depends only",
        "on the sections it reads.",
        "",
        "This page is generated from `src/flowsentry/config.py` when the site is built",
        "(`docs/gen_params.py`): the defaults are the model's, which a unit test keeps equal",
        "to `params.yaml`. `[]` in a key marks each item of a list.",
        "",
    ]
    for name, field in Config.model_fields.items():
        section = field.alias or name
        model = item_model(field.annotation)
        assert model is not None, f"section {section} is not a model"
        out += [f"## `{section}`", ""]
        intro = model.__doc__ or comments.get(section, "")
        if intro:
            out += [" ".join(intro.split()), ""]
        out += ["| key | default | type | meaning |", "| --- | --- | --- | --- |"]
        out += rows(model, section, comments)
        out.append("")
    return "\n".join(out)


_comments = params_comments(ROOT / DEFAULT_PARAMS)
with mkdocs_gen_files.open(PAGE, "w") as handle:
    handle.write(page(_comments))
