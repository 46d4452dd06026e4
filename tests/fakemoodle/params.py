"""Moodle's external API parameter descriptions and their validation.

Mirrors ``external_api::validate_parameters()``: every parameter arrives as a string (or a PHP
array of strings) from ``$_GET``/``$_POST``; values are checked against ``PARAM_*`` types by
cleaning them and comparing the cleaned value with the original (so ``"True"`` is not a
``PARAM_BOOL`` and ``"007"`` is not a ``PARAM_INT``). The debuginfo texts are Moodle's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .errors import invalid_parameter

REQUIRED = 1
DEFAULT = 0
OPTIONAL = 2

PARAM_INT = "int"
PARAM_BOOL = "bool"
PARAM_TEXT = "text"
PARAM_RAW = "raw"


@dataclass
class Value:
    """``external_value``."""

    type: str
    required: int = REQUIRED
    default: Any = None
    allownull: bool = True


@dataclass
class Single:
    """``external_single_structure`` (also ``external_function_parameters``)."""

    keys: dict[str, Value | Single | Multiple]
    required: int = REQUIRED
    default: Any = None


@dataclass
class Multiple:
    """``external_multiple_structure``."""

    content: Value | Single | Multiple
    required: int = REQUIRED
    default: Any = None


Description = Value | Single | Multiple


@dataclass
class _Invalid(Exception):
    debuginfo: str
    message: str = field(default="Invalid parameter value detected")


def _php_string(value: Any) -> str:
    if value is True:
        return "1"
    if value is False or value is None:
        return ""
    return str(value)


def _print_r(value: Any) -> str:
    if isinstance(value, dict):
        inner = "".join(f"    [{k}] => {_print_r(v)}\n" for k, v in value.items())
        return "Array\n(\n" + inner + ")\n"
    return _php_string(value)


def _clean(value: str, ptype: str) -> str:
    """``clean_param()`` for the types the quiz plugins use, returned as PHP would print it."""
    if ptype == PARAM_INT:
        match = re.match(r"^\s*([+-]?\d+)", value)
        return str(int(match.group(1))) if match else "0"
    if ptype == PARAM_BOOL:
        lowered = value.lower()
        if lowered in ("on", "yes", "true"):
            return "1"
        if lowered in ("off", "no", "false"):
            return "0"
        return "0" if value in ("", "0") else "1"
    if ptype == PARAM_TEXT:
        # strip_tags(): a "<" followed by a non-space starts a tag that is removed.
        return re.sub(r"<[^\s<][^>]*(>|$)", "", value)
    return value


def _validate_value(desc: Value, value: Any) -> Any:
    if isinstance(value, dict | list):
        raise _Invalid("Scalar type expected, array or object received.")
    if desc.type == PARAM_BOOL and (value is True or value is False or value in (0, 1, "0", "1")):
        return bool(int(value))
    debuginfo = (
        f'Invalid external api parameter: the value is "{_php_string(value)}", '
        f'the server was expecting "{desc.type}" type'
    )
    if value is None:
        if desc.allownull:
            return None
        raise _Invalid(debuginfo)
    text = _php_string(value)
    if _clean(text, desc.type) != text:
        raise _Invalid(debuginfo)
    if desc.type == PARAM_INT:
        return int(text)
    if desc.type == PARAM_BOOL:
        return text == "1"
    return text


def _validate(desc: Description, value: Any) -> Any:
    if isinstance(desc, Value):
        return _validate_value(desc, value)
    if not isinstance(value, dict):
        raise _Invalid(f"Only arrays accepted. The bad value is: '{_print_r(value)}'")
    if isinstance(desc, Multiple):
        return [_validate(desc.content, item) for item in value.values()]
    remaining = dict(value)
    result: dict[str, Any] = {}
    for key, sub in desc.keys.items():
        if key not in remaining:
            if sub.required == REQUIRED:
                raise _Invalid(f"Missing required key in single structure: {key}")
            if sub.required == DEFAULT:
                try:
                    result[key] = _validate(sub, sub.default)
                except _Invalid as exc:
                    raise _Invalid(f"{key} => {exc.message}: {exc.debuginfo}") from None
        else:
            try:
                result[key] = _validate(sub, remaining[key])
            except _Invalid as exc:
                raise _Invalid(f"{key} => {exc.message}: {exc.debuginfo}") from None
        remaining.pop(key, None)
    if remaining:
        names = ", ".join(str(k) for k in remaining)
        raise _Invalid(f"Unexpected keys ({names}) detected in parameter array.")
    return result


def validate_parameters(desc: Single, params: dict[str | int, Any]) -> dict[str, Any]:
    """Validate the request parameters of one web service function.

    Raises the ``invalidparameter`` :class:`MoodleError` Moodle would send.
    """
    try:
        return _validate(desc, params)
    except _Invalid as exc:
        raise invalid_parameter(exc.debuginfo) from None
