"""Plain data -> ``schema.Config`` with msgspec, reporting as many problems as it can.

msgspec stops at the first error and names dict keys only as ``[...]``. When the
fast whole-document conversion fails, we descend the schema ourselves: each struct
field, list item and dict value is converted on its own, so every bad leaf is found
and its path holds the real keys. Unknown and missing fields are found per struct.

Conversion uses msgspec's lax mode, so a string that came from ``${VAR}`` can fill
a number or a boolean (``weight: ${CANARY_WEIGHT:-5}``).
"""

from __future__ import annotations

import difflib
import re
import types
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import msgspec

from proxy.config.paths import Path, Problem, parse_msgspec_path
from proxy.config.units import dec_hook

T = TypeVar("T")

# "Expected `int`, got `str` - at `$.a[0]`" or "... - at `key` in `$.a`"
_MSGSPEC_ERROR = re.compile(r"(?s)(?P<message>.*) - at `(?:key` in `)?(?P<path>\$[^`]*)`\Z")


def convert(data: Any, type_: type[T]) -> tuple[T | None, list[Problem]]:
    """``(value, [])`` or ``(None, problems)``."""
    try:
        return _convert(data, type_), []
    except msgspec.ValidationError as e:
        return None, _problems(data, type_, (), e) or [_from_error(e, ())]


def _convert(data: Any, type_: Any) -> Any:
    return msgspec.convert(data, type_, strict=False, dec_hook=dec_hook)


def _from_error(error: msgspec.ValidationError, path: Path) -> Problem:
    text = str(error)
    m = _MSGSPEC_ERROR.match(text)
    if m is None:
        return Problem(path, _lower_first(text))
    return Problem(path + parse_msgspec_path(m.group("path")), _lower_first(m.group("message")))


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _problems(value: Any, type_: Any, path: Path, error: msgspec.ValidationError) -> list[Problem]:
    """The problems inside ``value`` (known not to convert to ``type_``, with ``error``)."""
    type_ = _drop_none(type_, value)
    if isinstance(value, dict) and isinstance(type_, type) and issubclass(type_, msgspec.Struct):
        found = _struct_problems(value, type_, path)
    elif isinstance(value, list) and get_origin(type_) is list:
        (item_type,) = get_args(type_)
        found = _children_problems((path + (i,), v, item_type) for i, v in enumerate(value))
    elif isinstance(value, dict) and get_origin(type_) is dict:
        _, item_type = get_args(type_)
        found = [
            Problem(path + (str(k),), f"key must be a string, not {type(k).__name__} (quote it)")
            for k in value
            if not isinstance(k, str)
        ]
        found += _children_problems(
            (path + (k,), v, item_type) for k, v in value.items() if isinstance(k, str)
        )
    elif get_origin(type_) is Literal:
        found = [Problem(path, _not_one_of(value, get_args(type_)))]
    elif type_ is str and isinstance(value, int | float):  # YAML reads 1, 1.0, yes, on as non-strings
        found = [Problem(path, f"expected a string, got {value!r} (quote it)")]
    else:
        found = []
    # Nothing found below: the value itself is wrong (a string where a list belongs...).
    return found or [_from_error(error, path)]


def _not_one_of(value: Any, choices: tuple[Any, ...]) -> str:
    text = f"{value!r} is not one of {', '.join(repr(c) for c in choices)}"
    if isinstance(value, int | float) and str(value) in choices:
        text += " (quote it: it was read as a number)"
    return text


def _drop_none(type_: Any, value: Any) -> Any:
    """``X | None`` -> ``X`` when value is not None (None would have converted)."""
    if get_origin(type_) in (Union, types.UnionType) and value is not None:
        rest = [t for t in get_args(type_) if t is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return type_


def _children_problems(children: Any) -> list[Problem]:
    found: list[Problem] = []
    for path, value, type_ in children:
        try:
            _convert(value, type_)
        except msgspec.ValidationError as e:
            found += _problems(value, type_, path, e)
    return found


def _struct_problems(value: dict[Any, Any], type_: type[msgspec.Struct], path: Path) -> list[Problem]:
    fields = {f.encode_name: f for f in msgspec.structs.fields(type_)}
    found: list[Problem] = []
    for key in value:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(fields)})"
            found.append(Problem(path + (key,), f"unknown field{hint}"))
    for name, field in fields.items():
        if name not in value and field.required:
            found.append(Problem(path + (name,), "missing required field"))
    found += _children_problems((path + (k,), v, fields[k].type) for k, v in value.items() if k in fields)
    return found
