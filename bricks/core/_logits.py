"""Remember the logits behind a softmax output, so a cost can use them.

Theano rewrote ``log(softmax(x))`` into the stable log-softmax, which is why
Blocks' ``CategoricalCrossEntropy().apply(y, Softmax().apply(x))`` was exact
even for saturated logits. bricks does the same explicitly: ``Softmax.apply``
remembers which array it returned for which input, and
``CategoricalCrossEntropy`` asks for the input of the probabilities it is
given. The link is by identity (a weak reference to the output, eager arrays
and tracers alike), so an output that was replaced, sliced or computed
elsewhere is not found and the cost falls back to the probabilities.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

__all__ = ["remember_logits", "logits_of"]

# reentrant: freeing an entry may free another softmax output and run its callback here
_LOCK = threading.RLock()
_LOGITS: dict[int, tuple[weakref.ref, Any]] = {}


def remember_logits(probabilities: Any, logits: Any) -> Any:
    """Record that ``probabilities`` is the softmax of ``logits``; return it unchanged."""
    key = id(probabilities)

    def forget(ref: weakref.ref, key: int = key) -> None:
        with _LOCK:
            entry = _LOGITS.get(key)
            if entry is not None and entry[0] is ref:
                del _LOGITS[key]

    try:
        ref = weakref.ref(probabilities, forget)
    except TypeError:  # a value that cannot be weakly referenced is never looked up
        return probabilities
    with _LOCK:
        _LOGITS[key] = (ref, logits)
    return probabilities


def logits_of(probabilities: Any) -> Any:
    """The logits ``probabilities`` was computed from by a softmax, or ``None``."""
    with _LOCK:
        entry = _LOGITS.get(id(probabilities))
    if entry is None or entry[0]() is not probabilities:
        return None
    return entry[1]
