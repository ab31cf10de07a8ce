"""JSON of a checkpoint, parsed as plain data and refused when it names code or is too big.

Keys that name classes or callables in serialization formats (``__class__``,
``py/object``, ``_target_`` ...) are refused, as are YAML python tags in
values: bricks never imports or calls anything from a checkpoint. Caps on
size and nesting keep a hostile file from taking long or recursing deeply.
"""

from __future__ import annotations

import json
from typing import Any

from bricks.errors import CheckpointCorruptError, UnsafeCheckpointError

__all__ = [
    "safe_json_loads",
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_INDEX_ENTRIES",
    "MAX_NDIM",
    "MAX_DIM",
]

#: keys that name classes, modules or callables in serialization formats that
#: instantiate objects (jsonpickle, hydra, pickle-in-JSON conventions).
_FORBIDDEN_KEYS = frozenset(
    [
        "__class__",
        "__module__",
        "__reduce__",
        "__reduce_ex__",
        "__getstate__",
        "__setstate__",
        "__qualname__",
        "__init__",
        "__import__",
        "__builtins__",
        "py/object",
        "py/reduce",
        "py/type",
        "py/function",
        "py/mod",
        "py/newargs",
        "py/initargs",
        "py/state",
        "_target_",
        "!!python/object",
    ]
)

def _refuse_classes(mapping: dict[str, Any]) -> None:
    for key, value in mapping.items():
        if key in _FORBIDDEN_KEYS:
            raise UnsafeCheckpointError(
                f"checkpoint metadata holds the key {key!r}, which names a class or callable "
                "to instantiate; bricks never imports or calls anything from a checkpoint, "
                "so such a file is refused"
            )
        if isinstance(value, str) and value.startswith("!!python/"):
            raise UnsafeCheckpointError(
                f"checkpoint metadata value of {key!r} is a YAML python tag {value[:40]!r}; refused"
            )


#: Caps on what a checkpoint may declare, checked before anything is parsed or allocated.
MAX_JSON_BYTES = 256 << 20  # state.json / manifest.json
MAX_JSON_DEPTH = 200  # nesting of lists and objects
MAX_INDEX_ENTRIES = 50_000  # arrays in one checkpoint
MAX_NDIM = 32
MAX_DIM = 1 << 48


def _check_tree(value: Any) -> bool:
    """Refuse class-naming keys (raises); whether ``value`` nests at most
    :data:`MAX_JSON_DEPTH` deep. Iterative: no recursion on hostile input."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            _refuse_classes(item)
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            return False
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


def safe_json_loads(text: str | bytes, where: str = "checkpoint metadata") -> Any:
    """Parse JSON into plain dicts, lists, strings and numbers, refusing class names.

    Args:
        text: the JSON document.
        where: a description (file path) for error messages.

    Raises:
        UnsafeCheckpointError: a key names a class or callable (``__class__``,
            ``py/object``, ``_target_`` ...).
        CheckpointCorruptError: the text is not JSON.
    """
    if len(text) > MAX_JSON_BYTES:
        raise CheckpointCorruptError(
            f"{where}: {len(text)} bytes of JSON, more than the cap of {MAX_JSON_BYTES}"
        )
    try:
        value = json.loads(text)  # plain data only: dicts, lists, strings, numbers
        ok = _check_tree(value)
    except UnsafeCheckpointError as error:
        raise UnsafeCheckpointError(f"{where}: {error}") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointCorruptError(f"{where}: not valid JSON ({error})") from None
    except RecursionError:
        raise CheckpointCorruptError(
            f"{where}: JSON nested deeper than Python can parse (cap {MAX_JSON_DEPTH})"
        ) from None
    if not ok:
        raise CheckpointCorruptError(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH}")
    return value
