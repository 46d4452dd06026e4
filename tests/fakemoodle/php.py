"""Small emulations of PHP behaviour that Moodle's answers depend on.

* ``json_encode`` with PHP's default flags: slashes escaped as ``\\/``, non-ASCII as ``\\uXXXX``,
  no whitespace.
* ``parse_str``: how PHP turns ``a[]=1&a[]=2&s[x]=1`` into nested arrays (``$_GET``/``$_POST``).
* ``preg_replace`` replacement strings: ``$1``/``\\1``/``${1}`` are back-references, which bites
  pattern expansion when a quiz name contains ``$1``.
* ``truthy``: PHP's notion of a falsy string (``""`` and ``"0"``).
"""

from __future__ import annotations

import json
import re
from typing import Any

PhpArray = dict[str | int, Any]
"""A PHP array: an ordered map. ``a[]`` appends integer keys 0, 1, ..."""


def json_encode(value: Any) -> str:
    """``json_encode($value)`` with PHP's default flags."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    # A "/" can only occur inside JSON strings, so a plain replace matches PHP's escaping.
    return text.replace("/", "\\/")


def truthy(value: Any) -> bool:
    """PHP truthiness of a scalar (``""``, ``"0"``, ``0``, ``null``, ``[]`` are false)."""
    if value is None:
        return False
    if isinstance(value, str):
        return value not in ("", "0")
    if isinstance(value, dict | list):
        return len(value) > 0
    return bool(value)


_NAME_RE = re.compile(r"^([^\[]*)((?:\[[^\]]*\])*)(.*)$")


def _normalise_key(key: str) -> str | int:
    """PHP converts canonical decimal integer keys to ints."""
    if re.fullmatch(r"-?(0|[1-9][0-9]*)", key) and key != "-0":
        number = int(key)
        if -(2**63) <= number < 2**63:
            return number
    return key


def parse_str(pairs: list[tuple[str, str]]) -> PhpArray:
    """Build ``$_GET``/``$_POST`` from decoded ``(name, value)`` pairs the way PHP does.

    Supported: plain names (last one wins), ``name[]`` (append), ``name[key]`` and deeper nesting,
    PHP's mangling of ``.`` and space in the base name to ``_``, and an unterminated ``[`` turning
    into ``_``.
    """
    result: PhpArray = {}
    for raw_name, value in pairs:
        if "\x00" in raw_name:
            raw_name = raw_name.split("\x00", 1)[0]
        match = _NAME_RE.match(raw_name)
        assert match is not None
        base, brackets, rest = match.group(1), match.group(2), match.group(3)
        if not brackets:
            # No well-formed bracket part: the whole name is a plain key ("a[b" -> "a_b").
            base = raw_name
            rest = ""
        base = base.lstrip(" ")
        base = base.replace(".", "_").replace(" ", "_").replace("[", "_")
        if not base:
            continue
        keys: list[str | None] = [base]
        if brackets:
            for part in re.findall(r"\[([^\]]*)\]", brackets):
                keys.append(None if part == "" else part)
        # PHP ignores anything after the last ']' (e.g. "a[b]c" -> a[b]).
        del rest
        _assign(result, keys, value)
    return result


def _assign(container: PhpArray, keys: list[str | None], value: str) -> None:
    current: PhpArray = container
    for index, key in enumerate(keys):
        last = index == len(keys) - 1
        if key is None:
            int_keys = [k for k in current if isinstance(k, int)]
            php_key: str | int = (max(int_keys) + 1) if int_keys else 0
        else:
            php_key = _normalise_key(key)
        if last:
            current[php_key] = value
            return
        child = current.get(php_key)
        if not isinstance(child, dict):
            child = {}
            current[php_key] = child
        current = child


_BACKREF_RE = re.compile(r"\\\\(\d{1,2})|\\(\d{1,2})|\$(\d{1,2})|\$\{(\d{1,2})\}")


def preg_replace_all(pattern: re.Pattern[str], replacement: str, subject: str) -> str:
    """``preg_replace($pattern, $replacement, $subject)`` for patterns without capture groups.

    PHP interprets ``\\n``, ``$n`` and ``${n}`` in the replacement as back-references; with no
    groups only ``0`` (the whole match) is non-empty.
    """

    def expand(match: re.Match[str]) -> str:
        def ref(inner: re.Match[str]) -> str:
            if inner.group(1) is not None:  # an escaped backslash followed by digits
                return "\\" + inner.group(1)
            number = next(g for g in inner.groups()[1:] if g is not None)
            return match.group(0) if int(number) == 0 else ""

        return _BACKREF_RE.sub(ref, replacement)

    return pattern.sub(expand, subject)


def substr_bytes(text: str, length: int) -> str:
    """``substr($text, 0, $length)``: PHP cuts bytes, not characters.

    A multi-byte character cut in half is dropped (PHP would keep the broken byte, which then
    makes ``json_encode`` fail; dropping it keeps the fake usable).
    """
    return text.encode("utf-8")[:length].decode("utf-8", errors="ignore")


PHP_TRIM_CHARS = " \t\n\r\x00\x0b"


def serialize_source(filename: str) -> str:
    """``serialize((object) ['source' => $filename])`` as upload.php stores it."""
    size = len(filename.encode("utf-8"))
    return f'O:8:"stdClass":1:{{s:6:"source";s:{size}:"{filename}";}}'
