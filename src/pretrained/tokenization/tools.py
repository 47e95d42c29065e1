"""Tools given to chat templates as Python functions: `get_json_schema(func)` builds the JSON schema that
Transformers' function of the same name builds, from the type hints and the Google-style docstring
(description, `Args:` with optional `(choices: [...])`, `Returns:`).
"""

from __future__ import annotations

import enum
import inspect
import json
import re
import sys
import types
import typing

from ..errors import InputError

_SCALARS = {int: "integer", float: "number", str: "string", bool: "boolean", type(None): "null"}
_PLAIN = {**{t: {"type": name} for t, name in _SCALARS.items()}, list: {"type": "array"}, tuple: {"type": "array"},
          dict: {"type": "object"}, typing.Any: {}}
_SECTION = re.compile(r"^\s*(Args|Returns|Raises):\s*$", re.MULTILINE)
_CHOICES = re.compile(r"\(choices:\s*(.*?)\)\s*$", re.IGNORECASE)


def get_json_schema(func) -> dict:
    """{"type": "function", "function": {name, description, parameters, [return]}} for a documented,
    fully annotated function (`self` / `cls` of a method left out)."""
    name = getattr(func, "__name__", "operation")
    doc = inspect.getdoc(func)
    if not doc or not doc.strip():
        raise InputError(f"get_json_schema({name}): the function has no docstring; its description and each "
                         "argument's (under 'Args:') are what the model reads")
    description, arg_docs, return_doc = _parse_docstring(doc.strip())
    parameters, return_schema = _signature_schema(func, name)
    for arg, schema in parameters["properties"].items():
        if arg not in arg_docs:
            raise InputError(f"get_json_schema({name}): the docstring's 'Args:' section has no description for "
                             f"argument {arg!r}")
        text = arg_docs[arg]
        choices = _CHOICES.search(text)
        if choices:
            try:
                values = json.loads(choices.group(1))
            except json.JSONDecodeError as e:
                raise InputError(f"get_json_schema({name}): argument {arg!r} has '(choices: {choices.group(1)})', "
                                 f"which is not a JSON list: {e}") from e
            schema["enum"] = [v.strip() if isinstance(v, str) else v for v in values]
            text = text[:choices.start()].strip()
        schema["description"] = text
    out = {"name": name, "description": description, "parameters": parameters}
    if return_schema is not None:
        if return_doc is not None:
            return_schema["description"] = return_doc
        out["return"] = return_schema
    return {"type": "function", "function": out}


def _parse_docstring(doc: str) -> tuple[str, dict[str, str], str | None]:
    """(description, {argument: description}, returns description or None) of a Google-style docstring."""
    sections = {}
    matches = list(_SECTION.finditer(doc))
    for m, following in zip(matches, matches[1:] + [None]):
        sections.setdefault(m.group(1), doc[m.end():following.start() if following else len(doc)])
    description = doc[:matches[0].start()].strip() if matches else doc
    returns = sections["Returns"].strip() if "Returns" in sections else None
    args: dict[str, str] = {}
    lines = [line for line in sections.get("Args", "").split("\n") if line.strip()]
    current, indent = None, None
    for line in lines:
        depth = len(line) - len(line.lstrip())
        head = re.match(r"\s*(\w+):\s*(.*)$", line)
        # a new argument is a "name:" line no deeper than the first one; deeper lines continue the last
        if head and (indent is None or depth <= indent):
            current, indent = head.group(1), depth if indent is None else indent
            args[current] = head.group(2).strip()
        elif current is not None:
            args[current] = (args[current] + " " + line.strip()).strip()
    return description, args, returns


def _signature_schema(func, name: str) -> tuple[dict, dict | None]:
    """The parameters object and the return value's schema (None when it has no hint we can write)."""
    try:
        hints = typing.get_type_hints(func)
    except Exception as e:  # a forward reference that does not resolve
        raise InputError(f"get_json_schema({name}): cannot resolve the type hints: {e}") from e
    params = inspect.signature(func).parameters
    first = next(iter(params), None)
    receiver = first if first in ("self", "cls") and params[first].annotation is inspect.Parameter.empty else None
    properties, required = {}, []
    for arg, param in params.items():
        if arg == receiver:
            continue
        if param.annotation is inspect.Parameter.empty:
            raise InputError(f"get_json_schema({name}): argument {arg!r} has no type hint")
        if param.default is inspect.Parameter.empty:
            required.append(arg)
    for arg, hint in hints.items():
        if arg not in ("return", receiver):
            properties[arg] = _type_schema(hint, f"get_json_schema({name}): argument {arg!r}")
    parameters = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    returns = None
    if "return" in hints:
        try:
            returns = _type_schema(hints["return"], "")
        except InputError:  # the model never writes the return value: leave out what we cannot describe
            returns = None
    return parameters, returns


def _type_schema(hint, where: str) -> dict:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is None:
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            return _enum_schema([member.value for member in hint], f"{where}: the Enum {hint.__name__}")
        if hint in _PLAIN:
            return dict(_PLAIN[hint])
        media = _media_type(hint)
        if media is not None:
            return {"type": media}
        raise InputError(f"{where}: cannot write the type hint {hint!r} as JSON schema; use int, float, str, bool, "
                         "Enum, Literal, or list / tuple / dict / unions of those, or pass the tool as a schema dict")
    if origin is typing.Union or origin is types.UnionType:
        parts = [_type_schema(a, where) for a in args if a is not type(None)]
        if len(parts) == 1:
            out = parts[0]
        elif all(set(p) == {"type"} and isinstance(p["type"], str) for p in parts):
            names = sorted({p["type"] for p in parts})
            out = {"type": names[0] if len(names) == 1 else names}
        else:
            out = {"anyOf": parts}
        if type(None) in args:
            out["nullable"] = True
        return out
    if origin is typing.Literal and args:
        return _enum_schema(list(args), f"{where}: the Literal {hint!r}")
    if origin is list:
        return {"type": "array", "items": _type_schema(args[0], where)} if args else {"type": "array"}
    if origin is tuple:
        if not args:
            return {"type": "array"}
        if len(args) == 1 or ... in args:
            raise InputError(f"{where}: {hint!r}: write a variable-length or one-element tuple as list[...] or as "
                             "the element itself")
        return {"type": "array", "prefixItems": [_type_schema(a, where) for a in args]}
    if origin is dict:
        out = {"type": "object"}
        if len(args) == 2:
            out["additionalProperties"] = _type_schema(args[1], where)
        return out
    raise InputError(f"{where}: cannot write the type hint {hint!r} as JSON schema")


def _enum_schema(values: list, where: str) -> dict:
    if not values:
        raise InputError(f"{where} has no members: no value could match it")
    if any(type(v) not in _SCALARS for v in values):
        raise InputError(f"{where} has values {values!r}; they must be int, float, str, bool or None")
    kinds = list(dict.fromkeys(_SCALARS[type(v)] for v in values))  # each JSON type once, first seen first
    return {"type": kinds[0] if len(kinds) == 1 else kinds, "enum": values}


def _media_type(hint) -> str | None:
    """Transformers' names for images and audio arguments; checked only if their library is loaded already."""
    image = getattr(sys.modules.get("PIL.Image"), "Image", None)
    tensor = getattr(sys.modules.get("torch"), "Tensor", None)
    return "image" if image is not None and hint is image else "audio" if tensor is not None and hint is tensor else None


def tool_schemas(tools) -> list[dict]:
    """apply_chat_template's `tools`: schema dicts as given, functions through get_json_schema."""
    out = []
    for tool in tools:
        if isinstance(tool, dict):
            out.append(tool)
        elif inspect.isfunction(tool) or inspect.ismethod(tool):
            out.append(get_json_schema(tool))
        else:
            raise InputError(f"tools: each tool must be a JSON schema dict or a Python function, got "
                             f"{type(tool).__name__}")
    return out
