"""Hyperparameters and checkpointable state of :class:`~bricks.algorithms.GradientDescent`.

:class:`TrainingState` is the part of GradientDescent that reads and
writes its state tree ``{"params", "opt", "acc", "step", counters}``: the
step rule's hyperparameters (changed without re-compiling), the
``(json, arrays)`` payload of checkpoints, its exact restore, and
asynchronous device snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bricks.algorithms.live import StateSnapshot, device_copy
from bricks.algorithms.non_finite import counter_values, counters_from
from bricks.algorithms.parallel import gathered
from bricks.algorithms.step_rule import Hyperparameter, StepRule, get_at, set_at
from bricks.distributed import host_copy
from bricks.errors import AlgorithmError, StepRuleError, did_you_mean

__all__ = ["TrainingState"]


class TrainingState:
    """Mixin of GradientDescent: hyperparameters and checkpointing of its state tree."""

    _state: dict[str, Any] | None
    _base_key: Any
    _monitors: list[list[Any]]
    parameter_paths: list[str]
    step_rule: Any

    # -- hyperparameters -----------------------------------------------------
    def _locate_hyperparameters(self) -> None:
        found: list[tuple[str, Any, tuple]] = []
        if isinstance(self.step_rule, StepRule):
            found = list(self.step_rule.named_hyperparameters())
        else:
            found = [(n, None, p) for n, p in _inject_hyperparams(self._state["opt"], ())]
        self._hyper: dict[str, tuple] = {name: path for name, _, path in found}
        self._handles: dict[Hyperparameter, str] = {h: n for n, h, _ in found if h is not None}
        short: dict[str, list[str]] = {}
        for name in self._hyper:
            short.setdefault(name.rsplit("/", 1)[-1], []).append(name)
        self._aliases = {s: names[0] for s, names in short.items() if len(names) == 1}

    def _hyper_path(self, name: str | Hyperparameter) -> tuple:
        self._require_state()
        if isinstance(name, Hyperparameter):
            if name not in self._handles:
                raise StepRuleError(f"{name!r} does not belong to this algorithm's step rule")
            name = self._handles[name]
        full = name if name in self._hyper else self._aliases.get(name)
        if full is None:
            known = sorted(set(self._hyper) | set(self._aliases))
            raise StepRuleError(
                f"no hyperparameter {name!r}{did_you_mean(name, known)}; known: {known}"
            )
        return self._hyper[full]

    @property
    def hyperparameters(self) -> dict[str, float]:
        """Current hyperparameter values by name (reads them from the device)."""
        state = self._require_state()
        return {n: float(get_at(state["opt"], p)) for n, p in self._hyper.items()}

    def get_hyperparameter(self, name: str | Hyperparameter) -> float:
        return float(get_at(self._require_state()["opt"], self._hyper_path(name)))

    def set_hyperparameter(self, name: str | Hyperparameter, value: float) -> None:
        """Change a hyperparameter (e.g. ``"learning_rate"``) for the next steps; no re-compile."""
        path = self._hyper_path(name)
        state = self._require_state()
        old = get_at(state["opt"], path)
        new = jnp.asarray(value, old.dtype)
        parallel = getattr(self, "parallel", None)
        if parallel is not None:  # placed as the step expects it: no re-compile
            new = parallel.place_state(new, old.sharding)
        state["opt"] = set_at(state["opt"], path, new)

    # -- checkpointing -------------------------------------------------------
    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(json, arrays)``: parameters, optimizer state, key, accumulators, counters.

        The arrays are whole host copies whatever the sharding (also of sharded,
        FSDP-style parameters), so a state saved sharded restores unsharded and
        back. With arrays split over several processes they are gathered
        (:func:`bricks.distributed.host_copy`): every process must call this.
        """
        return self._host_payload(host_copy(self._require_state()), self._base_key)

    def snapshot(self) -> StateSnapshot:
        """The training state of this moment, copied on the device without waiting.

        One compiled copy is queued behind the steps already dispatched, so
        the snapshot holds the values of this call although later steps
        donate (overwrite) the originals; nothing waits for the device. Read
        it later, from any thread, with :meth:`StateSnapshot.get_state`,
        which returns what :meth:`get_state` would have returned now.
        Asynchronous checkpoints are built on this.
        """
        state = self._require_state()
        # arrays split over processes are gathered now, in step with the other
        # processes, so that the snapshot can be read from any thread
        whole = gathered(getattr(self, "parallel", None), state)
        return StateSnapshot(self, device_copy(state) if whole is None else whole)

    def _host_payload(
        self, host: Mapping[str, Any], base_key: Any
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``get_state``'s ``(json, arrays)`` from a host copy of the state tree."""
        arrays: dict[str, np.ndarray] = {}
        for path, value in host["params"].items():
            arrays[f"params/{path}"] = np.asarray(value)
        for keypath, leaf in jax.tree_util.tree_flatten_with_path(host["opt"])[0]:
            arrays[f"opt_state/{jax.tree_util.keystr(keypath)}"] = np.asarray(leaf)
        for i, acc in enumerate(host["acc"]):
            arrays[f"accumulators/{i}"] = np.asarray(acc)
        arrays["rng_key"] = np.asarray(base_key)
        meta = {
            "step": int(host["step"]),
            **counter_values(host),  # bad, skipped, consecutive: as three ints
            "trained": list(self.parameter_paths),
            "hyperparameters": {
                n: float(np.asarray(get_at(host["opt"], p))) for n, p in self._hyper.items()
            },
            "monitors": [[v.name for v in slot] for slot in self._monitors],
        }
        return meta, arrays

    def set_state(self, meta: Mapping[str, Any], arrays: Mapping[str, Any]) -> None:
        """Restore :meth:`get_state`'s output exactly.

        The graph's bricks are bound to the restored parameters, so they
        show them at once (also after :meth:`write_back`); a value written
        into a brick before the restore is not trained from.
        """
        state = self._require_state()
        params = {}
        for path, old in state["params"].items():
            if f"params/{path}" not in arrays:
                raise AlgorithmError(f"the saved state lacks parameter {path!r}")
            params[path] = jnp.asarray(arrays[f"params/{path}"], old.dtype)
        leaves, treedef = jax.tree_util.tree_flatten_with_path(state["opt"])
        new_leaves = []
        for keypath, old in leaves:
            name = f"opt_state/{jax.tree_util.keystr(keypath)}"
            if name not in arrays:
                raise AlgorithmError(
                    f"the saved optimizer state lacks {name!r}; "
                    "was it saved with another step rule?"
                )
            new_leaves.append(jnp.asarray(arrays[name], jnp.asarray(old).dtype))
        # a slot's sums are restored only where the saved slot monitored the
        # same names, so restored sums are never reported under other names
        saved = list(meta.get("monitors", []))
        acc = tuple(
            jnp.asarray(arrays[f"accumulators/{i}"], jnp.float32)
            if f"accumulators/{i}" in arrays
            and i < len(saved)
            and saved[i] == [v.name for v in self._monitors[i]]
            and np.shape(arrays[f"accumulators/{i}"]) == self._acc_shape(i)
            else self._zero_acc(i)
            for i in range(len(self._monitors))
        )
        self._state = {
            "params": params,
            "opt": jax.tree_util.tree_unflatten(treedef, new_leaves),
            "acc": acc,
            "step": jnp.asarray(meta["step"], jnp.int32),
            "counters": counters_from(meta),
        }
        if "rng_key" in arrays:
            self._base_key = jnp.asarray(arrays["rng_key"], jnp.uint32)
        self._place_state()
        self._live.forget()
        self._flags.reset(int(meta.get("skipped", 0)))
        self._bind(adopt=False)  # the bricks show what was restored (Load, resume)



def _inject_hyperparams(tree: Any, path: tuple) -> list[tuple[str, tuple]]:
    """Find ``optax.inject_hyperparams`` states: ``(name, path)`` of each hyperparameter."""
    out: list[tuple[str, tuple]] = []
    hyper = getattr(tree, "hyperparams", None)
    if isinstance(hyper, Mapping):
        prefix = "/".join(str(p) for p in path if isinstance(p, int))
        for k in hyper:
            out.append(((prefix + "/" if prefix else "") + str(k), path + ("hyperparams", k)))
    if isinstance(tree, tuple | list):
        for i, child in enumerate(tree):
            out.extend(_inject_hyperparams(child, path + (i,)))
    return out


