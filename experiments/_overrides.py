"""``--set key=value`` overrides: parsed as literals, never evaluated as code.

A value is read with :func:`ast.literal_eval` (numbers, strings, lists,
tuples, dicts, ``True``/``False``/``None``). Text that is no literal is kept
as a string only when it is a *bare word*: letters, digits and ``_ . , : / \\
~ + - @ %`` (file names, paths, ``tanh``); anything else -- quotes left
open, calls, attribute access on a call, operators, spaces -- is refused.
The parsed value must then fit the type of the config's default.

>>> apply_overrides({"epochs": 2, "lr": 0.1, "corpus": None}, ["epochs=5", "lr=1", "corpus=a.txt"])
{'epochs': 5, 'lr': 1.0, 'corpus': 'a.txt'}
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from typing import Any

from bricks.errors import OverrideError, did_you_mean

__all__ = ["parse_value", "apply_overrides", "check_plain"]

_BARE_WORD = re.compile(r"[\w.,:/\\~+\-@%]*\Z")
_TRUE = {"true", "yes", "on"}
_FALSE = {"false", "no", "off"}


def parse_value(text: str, key: str = "?") -> Any:
    """The plain value that ``text`` spells; a bare word stays a string.

    Raises:
        OverrideError: ``text`` is neither a literal nor a bare word (it
            looks like code, e.g. ``__import__('os').system('id')``).
    """
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    if _BARE_WORD.match(text):
        return text
    raise OverrideError(
        f"--set {key}={text}: the value is neither a literal (number, quoted string, list, "
        "True/False/None) nor a bare word (letters, digits, _ . , : / - + ~ @ %); overrides are "
        "never evaluated as code. Quote a string like this: --set "
        f"{key}='\"...\"'"
    )


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def check_plain(value: Any, where: str = "config") -> None:
    """Raise :class:`OverrideError` unless ``value`` is JSON-like plain data."""
    if value is None or isinstance(value, bool | int | float | str):
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise OverrideError(f"{where}: dict keys must be strings, found {k!r}")
            check_plain(item, f"{where}[{k!r}]")
        return
    raise OverrideError(
        f"{where}: expected plain data (numbers, strings, lists, dicts, None), "
        f"found a {_type_name(value)}: {value!r}"
    )


def _coerce(key: str, text: str, value: Any, default: Any) -> Any:
    """Fit ``value`` (parsed from ``text``) to the type of ``default``."""

    def wrong() -> OverrideError:
        return OverrideError(
            f"--set {key}={text}: expected a {_type_name(default)} like the default "
            f"{default!r}, found a {_type_name(value)}: {value!r}"
        )

    if default is None:
        return list(value) if isinstance(value, tuple) else value
    if value is None:
        return None
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise wrong()
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise wrong()
    if isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise wrong()
    if isinstance(default, str):
        return value if isinstance(value, str) else text
    if isinstance(default, list | tuple):
        if isinstance(value, list | tuple):
            return list(value)
        if isinstance(value, str | int | float):
            return [value]
        raise wrong()
    if isinstance(default, dict):
        if isinstance(value, dict):
            return value
        raise wrong()
    raise wrong()


def apply_overrides(config: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``config`` with each ``"key=value"`` of ``overrides`` applied.

    Raises:
        OverrideError: no ``=``, an unknown key (with a "did you mean"), a
            value that is no literal nor bare word, or one of the wrong type.
    """
    result = dict(config)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise OverrideError(f"--set expects key=value, found {item!r}")
        if key not in result:
            raise OverrideError(
                f"--set {item}: unknown config key {key!r}{did_you_mean(key, result)}; "
                f"known keys: {', '.join(sorted(result))}"
            )
        value = parse_value(text, key)
        check_plain(value, f"--set {key}")
        result[key] = _coerce(key, text, value, config[key])
    return result
