""":class:`RecurrentStack`: layers of recurrent bricks, as in Blocks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bricks.core.application import application
from bricks.core.brick import Brick, Initializable
from bricks.core.parallel import Fork
from bricks.core.simple import Linear
from bricks.errors import RecurrentError
from bricks.recurrent._recurrent import (
    CONTROL_ARGUMENTS,
    BaseRecurrent,
    _input_transforms,
    recurrent,
)

__all__ = ["RecurrentStack", "RECURRENTSTACK_SEPARATOR"]

RECURRENTSTACK_SEPARATOR = "#"


def _as_list(result: Any) -> list[Any]:
    return list(result) if isinstance(result, (tuple, list)) else [result]


def _unique(names: Sequence[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        if name not in out:
            out.append(name)
    return out


class RecurrentStack(BaseRecurrent, Initializable):
    """A stack of recurrent layers; each layer reads a fork of the states of
    the layer below.

    Names follow Blocks: the sequences, states and outputs of layer ``k > 0``
    get the suffix ``"#k"`` (``"states#1"``, ``"cells#2"``); layer 0 keeps
    its names; ``mask`` is shared by all layers and contexts are merged
    without suffix. The output ``states_name`` of layer ``k`` goes through
    the fork ``fork_k+1`` (a ``Fork`` of ``fork_prototype`` copies) into
    every sequence of layer ``k + 1``.

    Args:
        transitions: the recurrent bricks, bottom first; they are renamed
            ``"<name>#<level>"``.
        fork_prototype: the brick copied for each fork channel (default
            ``Linear``, with a bias unless ``skip_connections``).
        states_name: the output of each layer that feeds the next one.
        skip_connections: if ``True``, every layer also takes its own
            inputs (``inputs#k``, added to the fork of the layer below), so
            the network input can reach every layer; every layer's states
            are always returned, so every layer can reach the output.
        weights_init, biases_init: pushed to the transitions and forks.

    Applications:
        ``apply(*sequences, mask=None, low_memory=False, ...)`` returns the
        outputs of every layer in the order of ``apply.outputs``. It takes
        the ``recurrent`` keywords (``iterate``, ``reverse``,
        ``return_initial_states``, ``remat``, ...) and the initial state of
        any layer by name (``cells#2=...``). With ``low_memory=True`` all
        layers advance together in one scan (one step of the whole stack per
        time step): activations of only one time step are live at once, at
        the price of the per-layer input products (one large matrix product
        per layer) becoming one small product per step.

        ``fuse_forks`` (per-layer mode; default: on when the layer
        rematerializes) runs the fork of layer ``k - 1``'s states inside the
        scan of layer ``k``, so that with ``remat`` its ``(time, batch,
        4 dim)`` output and cotangent are recomputed per step rather than
        stored. ``input_transforms`` (``{"inputs": embed.apply}``, by the
        stack's sequence names) are applied per step inside the scan; in
        per-layer mode a transform of a skip input ``inputs#k`` (``k > 0``)
        is applied to the whole sequence, since it is added to the fork.

    >>> import jax.numpy as jnp
    >>> from bricks.core import IsotropicGaussian, Constant
    >>> from bricks.recurrent import LSTM
    >>> stack = RecurrentStack([LSTM(dim=3), LSTM(dim=3)],
    ...                        weights_init=IsotropicGaussian(0.1), biases_init=Constant(0))
    >>> stack.initialize(seed=0)
    >>> stack.apply.states
    ['states', 'cells', 'states#1', 'cells#1']
    >>> outputs = stack.apply(jnp.ones((5, 2, 12)), mask=jnp.ones((5, 2)))
    >>> [o.shape for o in outputs]
    [(5, 2, 3), (5, 2, 3), (5, 2, 3), (5, 2, 3)]
    """

    def __init__(
        self,
        transitions: Sequence[Brick],
        fork_prototype: Brick | None = None,
        states_name: str = "states",
        skip_connections: bool = False,
        **kwargs: Any,
    ) -> None:
        transitions = list(transitions)
        if not transitions:
            raise RecurrentError("RecurrentStack needs at least one transition")
        for level, transition in enumerate(transitions):
            if states_name not in transition.apply.outputs:
                raise RecurrentError(
                    f"layer {level} ({transition.path}) has no output {states_name!r} to feed the "
                    f"layer above; its outputs are {transition.apply.outputs} (set states_name=)"
                )
            transition.name = f"{transition.name}{RECURRENTSTACK_SEPARATOR}{level}"
        self.transitions = transitions
        self.states_name = states_name
        self.skip_connections = skip_connections
        if fork_prototype is None:
            fork_prototype = Linear(use_bias=not skip_connections)
        self.forks = [
            Fork(self.normal_inputs(level), name=f"fork_{level}", prototype=fork_prototype)
            for level in range(1, len(transitions))
        ]
        super().__init__(children=[*transitions, *self.forks], **kwargs)

    # -- names ----------------------------------------------------------------
    @staticmethod
    def suffix(name: str, level: int) -> str:
        if name == "mask" or level == 0:
            return name
        return f"{name}{RECURRENTSTACK_SEPARATOR}{level}"

    @staticmethod
    def suffixes(names: Sequence[str], level: int) -> list[str]:
        return [RecurrentStack.suffix(n, level) for n in names if n != "mask"]

    @staticmethod
    def split_suffix(name: str) -> tuple[str, int]:
        base, sep, level = name.rpartition(RECURRENTSTACK_SEPARATOR)
        if sep and level.isdigit():
            return base, int(level)
        return name, 0

    def normal_inputs(self, level: int) -> list[str]:
        return [n for n in self.transitions[level].apply.sequences if n != "mask"]

    def _names(self, kind: str) -> list[str]:
        if kind == "contexts":
            return _unique([c for t in self.transitions for c in t.apply.contexts])
        levels = range(len(self.transitions))
        if kind == "sequences" and not self.skip_connections:
            levels = range(1)
        names = [
            n for k in levels for n in self.suffixes(getattr(self.transitions[k].apply, kind), k)
        ]
        return [*names, "mask"] if kind == "sequences" else names

    def get_dim(self, name: str) -> int:
        if name == "mask":
            return 0
        if name in self._names("contexts"):
            for t in self.transitions:
                if name in t.apply.contexts:
                    return t.get_dim(name)
        base, level = self.split_suffix(name)
        if level < len(self.transitions):
            return self.transitions[level].get_dim(base)
        return super().get_dim(name)

    def dim_setting(self, name: str) -> str | None:
        """The setting that decides the features of ``name`` (its layer's)."""
        base, level = self.split_suffix(name)
        if name == "mask" or level >= len(self.transitions):
            return None
        setting = getattr(self.transitions[level], "dim_setting", None)
        text = setting(base) if callable(setting) else None
        return f"{text} of layer {level}" if text else None

    # -- lifecycle ------------------------------------------------------------
    def _push_allocation_config(self) -> None:
        super()._push_allocation_config()
        for transition in self.transitions:
            transition.push_allocation_config()
        for level, fork in enumerate(self.forks):
            self.push_to(fork, "input_dim", self.transitions[level].get_dim(self.states_name))
            outs = self.transitions[level + 1].get_dims(fork.output_names)
            self.push_to(fork, "output_dims", outs)

    # -- applications ---------------------------------------------------------
    def _layers(
        self,
        kwargs: dict[str, Any],
        control: dict[str, Any],
        mask: Any,
        fuse_forks: bool | None = None,
    ) -> tuple:
        """Run the layers one after the other (each iterating, or each doing
        one step when ``control["iterate"]`` is False)."""
        results: list[Any] = []
        below = None
        control = dict(control)
        transforms = control.pop("input_transforms", None) or {}
        for level, transition in enumerate(self.transitions):
            normal = self.normal_inputs(level)
            layer: dict[str, Any] = {}
            layer_transforms: dict[str, Any] = {}
            if level == 0 or self.skip_connections:
                for name in normal:
                    layer[name] = kwargs.get(self.suffix(name, level))
                    if self.suffix(name, level) in transforms:
                        layer_transforms[name] = transforms[self.suffix(name, level)]
            for name in transition.apply.states:
                layer[name] = kwargs.get(self.suffix(name, level))
            for name in transition.apply.contexts:
                layer[name] = kwargs.get(name)
            if level > 0:
                fork = self.forks[level - 1]
                fuse = fuse_forks
                if fuse is None:
                    remat = control.get("remat")
                    fuse = bool(getattr(transition, "remat", False) if remat is None else remat)
                if fuse and normal and all(layer.get(name) is None for name in normal):
                    # the fork runs inside the layer's scan, one step at a time
                    layer[normal[0]] = below
                    layer_transforms[normal[0]] = lambda b, fork=fork, normal=normal: dict(
                        zip(normal, _as_list(fork.apply(b)), strict=True)
                    )
                else:
                    for name, fn in list(layer_transforms.items()):
                        if layer.get(name) is not None:  # apply it to the whole sequence
                            layer[name] = fn(layer[name])
                        del layer_transforms[name]
                    forked = _as_list(fork.apply(below))
                    for name, value in zip(normal, forked, strict=True):
                        layer[name] = value if layer.get(name) is None else layer[name] + value
            if layer_transforms:
                control["input_transforms"] = layer_transforms
            else:
                control.pop("input_transforms", None)
            out = _as_list(transition.apply(mask=mask, **layer, **control))
            results.extend(out)
            below = out[transition.apply.outputs.index(self.states_name)]
            if control.get("iterate", True) and control.get("return_initial_states"):
                below = below[:-1] if control.get("reverse") else below[1:]
        return tuple(results)

    def _named(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        names = [n for n in self._names("sequences") if n != "mask"] + self._names("contexts")
        if len(args) > len(names):
            raise RecurrentError(
                f"{self.path}.apply takes at most {len(names)} positional inputs {names}, got "
                f"{len(args)}"
            )
        named = dict(zip(names, args, strict=False))
        for name in kwargs:
            if name in named:
                raise RecurrentError(f"{self.path}.apply got {name!r} twice")
        named.update(kwargs)
        known = set(self._names("sequences") + self._names("states") + self._names("contexts"))
        unknown = [n for n in named if n not in known and n not in CONTROL_ARGUMENTS]
        if unknown:
            from bricks.errors import did_you_mean

            raise RecurrentError(
                f"{self.path}.apply got unknown input {unknown[0]!r}"
                f"{did_you_mean(unknown[0], known)}; it takes {sorted(known)}"
            )
        return named

    @application
    def apply(
        self,
        *args: Any,
        low_memory: bool = False,
        fuse_forks: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Apply the stack; see the class docstring."""
        named = self._named(args, kwargs)
        mask = named.pop("mask", None)
        control = {n: named.pop(n) for n in CONTROL_ARGUMENTS if n in named}
        if low_memory or not control.get("iterate", True):
            return self.low_memory_apply(mask=mask, **named, **control)
        if control.get("input_transforms") is not None:
            control["input_transforms"] = _input_transforms(
                control["input_transforms"], self._names("sequences"), f"{self.path}.apply"
            )
        results = self._layers(named, control, mask, fuse_forks)
        return results[0] if len(results) == 1 else results

    @recurrent
    def low_memory_apply(self, mask: Any = None, **kwargs: Any) -> Any:
        """One step of every layer; the decorator iterates it (one scan)."""
        results = self._layers(kwargs, {"iterate": False}, mask, fuse_forks=False)
        return results[0] if len(results) == 1 else results

    low_memory_apply.step_masks_states = True

    @application
    def initial_states(self, batch_size: int, *args: Any, **kwargs: Any) -> Any:
        """The initial states of every layer (suffixed names)."""
        result = []
        contexts = {c: kwargs[c] for c in self._names("contexts") if c in kwargs}
        for transition in self.transitions:
            values = _as_list(transition.initial_states(batch_size, **contexts))
            names = transition.initial_states.outputs
            by_name = dict(zip(names, values, strict=True))
            result.extend(by_name[s] for s in transition.apply.states)
        return result[0] if len(result) == 1 else tuple(result)

    @initial_states.property("outputs")
    def _initial_states_outputs(self) -> list[str]:
        return self._names("states")


def _declare(app: Any) -> None:
    for kind in ("sequences", "states", "contexts", "outputs"):
        app.property(kind)(lambda brick, kind=kind: brick._names(kind))


_declare(RecurrentStack.apply)
_declare(RecurrentStack.low_memory_apply)
RecurrentStack.apply.property("inputs")(
    lambda brick: brick._names("sequences") + brick._names("states") + brick._names("contexts")
)
