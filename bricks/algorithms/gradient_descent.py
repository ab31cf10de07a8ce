"""GradientDescent: one jitted, donated training step over a computation graph.

Forward pass, backward pass, the step rule, the parameter update, batch-norm
style state updates, the non-finite guard and the on-device accumulation of
monitored quantities all run in **one compiled function** whose parameters,
optimizer state and accumulators are donated. The host reads nothing back
per batch: monitored values are fetched only when an extension reports.

>>> import numpy as np
>>> from bricks.algorithms import GradientDescent, Scale
>>> algorithm = GradientDescent(
...     cost=lambda p, x: (p["w"] ** 2).sum() + 0 * x.sum(),
...     parameters={"w": np.array([1.0, 2.0], np.float32)}, step_rule=Scale(0.25))
>>> algorithm.process_batch({"x": np.zeros(1, np.float32)})
>>> algorithm.parameter_values()["w"].tolist()
[0.5, 1.0]
>>> algorithm.set_hyperparameter("learning_rate", 0.5)   # no re-compile
>>> algorithm.process_batch({"x": np.zeros(1, np.float32)})
>>> algorithm.parameter_values()["w"].tolist(), algorithm.compilations
([0.0, 0.0], 1)
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bricks.algorithms.checks import (
    check_cost,
    check_monitorable,
    find_by_name,
    flat_monitored,
    pending_output,
    resolve_outputs,
)
from bricks.algorithms.function_graph import FunctionGraph
from bricks.algorithms.live import LiveParameters, StateSnapshot, device_copy
from bricks.algorithms.non_finite import (
    FlagReader,
    SkipPolicy,
    collect_non_finite,
    flags_of,
    initial_counters,
    settle,
)
from bricks.algorithms.rules import RemoveNotFinite, Scale, l2_norm
from bricks.algorithms.step_rule import Hyperparameter, StepRule, get_at, set_at
from bricks.algorithms.updates import (
    BlocksUpdates,
    as_update_pairs,
    call_update,
    gradient_variables,
    gradients_only_cost,
)
from bricks.core.roles import AUXILIARY, PARAMETER, has_role
from bricks.core.tracing import Variable
from bricks.core.values import bind_values, unbind_values
from bricks.errors import AlgorithmError, StepRuleError, did_you_mean

__all__ = ["GradientDescent", "StateSnapshot"]

logger = logging.getLogger(__name__)

_UNUSED = ("raise", "warn", "ignore")


@functools.lru_cache(maxsize=256)
def _sizes_of(shapes: tuple[tuple[int, ...], ...]) -> list[int]:
    return [math.prod(shape) for shape in shapes]


@functools.lru_cache(maxsize=64)
def _zeros_maker(size: int) -> Callable[[], jax.Array]:
    return jax.jit(lambda: jnp.zeros(size, jnp.float32))


def _quantity(name: str) -> Variable:
    return Variable(tag=f"algorithm:{name}", name=name, roles=(AUXILIARY,), shape=())


class GradientDescent(BlocksUpdates):
    """Minimize ``cost`` by gradient descent with a step rule (Blocks' GradientDescent).

    Args:
        cost: a :class:`bricks.graph.ComputationGraph` (its first output is
            the cost), or a plain function ``cost(params, **batch)``
            returning a scalar (then ``parameters`` is the dict of initial
            values), or a :class:`~bricks.algorithms.FunctionGraph`.
        parameters: which parameters to train: Variables or paths of the
            graph (default: every graph parameter with role PARAMETER); the
            others stay fixed. For a cost function: the initial values.
        step_rule: a Blocks :class:`StepRule` (its step is subtracted) or any
            optax ``GradientTransformation`` (its update is added). Default:
            ``Scale(1.0)``, i.e. steepest descent.
        on_unused_sources: ``"raise"`` (default), ``"warn"`` or ``"ignore"``
            when a batch has sources the cost does not read.
        seed: seed of the base PRNG key for stochastic graphs; step ``i``
            uses ``fold_in(key, i)``, so a resumed run draws the same noise.
        gradients: Blocks' ``gradients=``: ``{path: fn}`` or ``[(path, fn)]``
            with ``fn(params, **sources)`` returning the gradient of that
            parameter, used instead of automatic differentiation. Without
            a cost, ``parameters`` is the ``{name: initial value}`` mapping
            and the trained parameters are the gradients' keys, in order.
        updates: ``{name: fn}`` or ``[(name, fn)]``: values that are not
            trained, set every step to ``fn(params, **sources)`` computed
            from the values before the step (Blocks' ``updates=``; see
            :meth:`add_updates`).

    Attributes:
        graph, step_rule, total_gradient_norm, total_step_norm (Variables to
        monitor), gradients (``{path: Variable}``: each trained parameter's
        gradient, to monitor), compilations (how many times the step was
        traced).
    """

    def __init__(
        self,
        cost: Any = None,
        parameters: Sequence[Any] | Mapping[str, Any] | None = None,
        step_rule: Any = None,
        on_unused_sources: str = "raise",
        seed: int = 0,
        gradients: Any = None,
        updates: Any = None,
    ) -> None:
        if on_unused_sources not in _UNUSED:
            raise AlgorithmError(
                f"on_unused_sources must be one of {_UNUSED}, got {on_unused_sources!r}"
            )
        self._gradient_fns = dict(as_update_pairs(gradients, "gradients"))
        self._updates: list[tuple[str, Callable[..., Any]]] = []
        cost, parameters = gradients_only_cost(cost, parameters, self._gradient_fns)
        if callable(cost) and not hasattr(cost, "evaluate"):
            cost = FunctionGraph(cost, parameters)  # type: ignore[arg-type]
            parameters = None
        if not hasattr(cost, "evaluate"):
            raise AlgorithmError(
                f"cost must be a ComputationGraph or a function, got {type(cost).__name__}"
            )
        self.graph = cost
        check_cost(cost, "GradientDescent")
        self.step_rule = step_rule if step_rule is not None else Scale()
        if not (hasattr(self.step_rule, "init") and hasattr(self.step_rule, "update")):
            raise StepRuleError(
                f"step_rule must be a StepRule or an optax transform, got {self.step_rule!r}"
            )
        self._blocks_sign = isinstance(self.step_rule, StepRule)
        self._flags = FlagReader()  # the non-finite guard's flags, read on the host
        self._static_policy = SkipPolicy.of(_rules_of(self.step_rule, RemoveNotFinite))
        self._flags.policy = self._static_policy
        self._live = LiveParameters(self)  # what bricks read through to while bound
        self._bound: list[Any] = []  # root bricks bound to self._live
        self.on_unused_sources = on_unused_sources
        self.seed = int(seed)
        self.total_gradient_norm = _quantity("total_gradient_norm")
        self.total_step_norm = _quantity("total_step_norm")
        known = {p.path: p for p in self.graph.parameters}
        if parameters is None:
            chosen = [p.path for p in self.graph.parameters if has_role(p.roles, PARAMETER)]
        else:
            chosen = []
            for p in parameters:
                path = getattr(p, "path", p)
                if path not in known:
                    raise AlgorithmError(
                        f"parameter {path!r} is not read by the cost{did_you_mean(path, known)}"
                    )
                chosen.append(path)
        if not chosen:
            raise AlgorithmError("no parameters to train: the cost reads no PARAMETER variable")
        self.parameter_paths: list[str] = chosen
        self.gradients = gradient_variables(self.graph, chosen, self._gradient_fns)
        self._monitors: list[list[Variable]] = []
        self._discovered = False
        self._state: dict[str, Any] | None = None
        self._step_fn: Callable | None = None
        self._multi_fn: Callable | None = None
        self._batch_keys: tuple | None = None
        self.compilations = 0
        if updates is not None:
            self.add_updates(updates)

    # -- monitoring requests -------------------------------------------------
    @property
    def quantities(self) -> list[Variable]:
        """What the step can monitor: outputs, graph variables, gradient/step norms."""
        return (
            list(self.graph.outputs)
            + list(getattr(self.graph, "variables", []))
            + [self.total_gradient_norm, self.total_step_norm]
            + list(self.gradients.values())
        )

    def resolve(self, variable: Any) -> Variable:
        """The monitorable Variable for a Variable or a name (``"cost"``...)."""
        if isinstance(variable, Variable):
            return variable
        found = find_by_name(self.quantities, variable)
        if found is not None:
            return found
        if isinstance(variable, str) and not getattr(self.graph, "outputs_known", True):
            # a name of a dict the cost function returns: known at the first batch
            return pending_output(variable)
        names = [v.name for v in self.quantities]
        raise AlgorithmError(
            f"nothing named {variable!r} to monitor{did_you_mean(variable, names)}; "
            f"known: {sorted(set(names))}"
        )

    def add_monitor(self, variables: Sequence[Any]) -> int:
        """Accumulate ``variables`` on device every step; returns a slot id.

        Call before training starts (extensions do it in ``before_training``);
        a later call re-compiles the step.
        """
        resolved = [self.resolve(v) for v in variables]
        check_monitorable(self.graph, resolved, "monitoring during training")
        self._monitors.append(resolved)
        if self._state is not None:
            self._state["acc"] = self._state["acc"] + (self._zero_acc(len(self._monitors) - 1),)
            self._step_fn = self._multi_fn = None
        return len(self._monitors) - 1

    def _discover(self, inputs: Mapping[str, Any]) -> None:
        """Before the first step: learn a cost function's outputs from the batch
        and resolve the monitored names that only they define."""
        if self._discovered or not hasattr(self.graph, "discover"):
            return
        state = self._require_state()
        self.graph.discover(state["params"], {n: inputs[n] for n in self.graph.inputs})
        check_cost(self.graph, "GradientDescent")
        for i, slot in enumerate(self._monitors):
            self._monitors[i] = resolve_outputs(self.graph, slot, self.quantities)
            size = sum(self._sizes(i)) + 1
            if state["acc"][i].shape != (size,):
                state["acc"] = state["acc"][:i] + (self._zero_acc(i),) + state["acc"][i + 1 :]
        self._discovered = True
        self._step_fn = self._multi_fn = None

    def _sizes(self, slot: int) -> list[int]:
        return _sizes_of(tuple(tuple(v.shape or ()) for v in self._monitors[slot]))

    def _zero_acc(self, slot: int) -> jax.Array:
        # a compiled zeros maker: an eager jnp.zeros or a device_put of host
        # zeros costs ~10x a jitted call, and this runs at every report
        return _zeros_maker(sum(self._sizes(slot)) + 1)()

    def read_monitor(self, slot: int, log: Any = None) -> dict[str, Any]:
        """Means of the slot's variables since its last read (per element); resets it.

        This is the only device-to-host transfer of monitoring. It also reads
        the non-finite guard's counters: logs ``skipped_steps`` when it
        changed and raises :class:`NonFiniteCostError` (or
        :class:`TooManySkippedStepsError`) if training stopped.
        """
        state = self._require_state()
        # start both copies at once, then wait: one round trip on a GPU;
        # np.asarray skips device_get's pytree machinery (5x cheaper on CPU)
        pending = (state["acc"][slot], flags_of(state))
        for array in pending:
            array.copy_to_host_async()
        acc, flags = (np.asarray(array) for array in pending)
        self._flags.read(flags, log)
        state["acc"] = state["acc"][:slot] + (self._zero_acc(slot),) + state["acc"][slot + 1 :]
        count = acc[-1]
        out: dict[str, Any] = {}
        offset = 0
        for var, size in zip(self._monitors[slot], self._sizes(slot), strict=True):
            chunk = acc[offset : offset + size] / max(count, 1)
            offset += size
            out[var.name] = chunk.reshape(var.shape or ()) if var.shape else float(chunk[0])
        return out

    # -- building ------------------------------------------------------------
    def _require_state(self) -> dict[str, Any]:
        if self._state is None:
            self.initialize()
        return self._state  # type: ignore[return-value]

    def initialize(self) -> None:
        """Read the parameter values and build the optimizer state (once).

        Binds the graph's bricks to this algorithm's parameters (at every
        call): until :meth:`write_back`, a brick reads the values of the
        last step, and a value written into a brick is trained from.
        """
        if self._state is not None:
            self._bind(adopt=True)
            return
        values = self.graph.parameter_values()
        params = {k: jnp.array(v, copy=True) for k, v in values.items()}
        train = {k: params[k] for k in self.parameter_paths}
        self._state = {
            "params": params,
            "opt": self.step_rule.init(train),
            "acc": tuple(self._zero_acc(i) for i in range(len(self._monitors))),
            "step": jnp.zeros((), jnp.int32),
            **initial_counters(),
        }
        self._base_key = jax.random.key_data(jax.random.key(self.seed))
        self._locate_hyperparameters()
        self._bind(adopt=False)

    def _bind(self, adopt: bool) -> None:
        roots = {}
        for v in self.graph.parameters:
            brick = getattr(v, "brick", None)
            if brick is not None:
                roots.setdefault(id(brick.root), brick.root)
        self._bound = list(roots.values())
        bind_values(self._bound, self._live, adopt=adopt)

    def _extra_variables(self) -> list[Variable]:
        seen: dict[str, Variable] = {}
        outputs = {v.tag for v in self.graph.outputs}
        for slot in self._monitors:
            for v in slot:
                if v.tag not in outputs and not v.tag.startswith("algorithm:"):
                    seen[v.tag] = v
        for _, v, _ in getattr(self.graph, "state_updates", []):
            seen[v.tag] = v
        return list(seen.values())

    def _make_step(self) -> Callable:
        graph, rule = self.graph, self.step_rule
        train_paths = list(self.parameter_paths)
        extra = self._extra_variables()
        monitors = [list(s) for s in self._monitors]
        state_updates = list(getattr(graph, "state_updates", []))
        blocks_sign = self._blocks_sign
        needs_key = bool(getattr(graph, "needs_key", False))
        wanted = {v.tag for slot in monitors for v in slot}
        want_gradient_norm = "algorithm:total_gradient_norm" in wanted
        want_step_norm = "algorithm:total_step_norm" in wanted
        gradient_fns = dict(self._gradient_fns)
        user_updates = list(self._updates)
        graph_inputs = list(graph.inputs)

        def step(state, batch, base_key):
            params = state["params"]
            train = {k: params[k] for k in train_paths}
            fixed = {k: v for k, v in params.items() if k not in train}
            key = None
            if needs_key:
                key = jax.random.fold_in(jax.random.wrap_key_data(base_key), state["step"])

            graph_batch = {n: batch[n] for n in graph_inputs}

            def loss(train):
                outs, extras = graph.evaluate(
                    {**fixed, **train}, graph_batch, key=key, extra=extra
                )
                return outs[0], (outs, extras)

            (cost, (outs, extras)), grads = jax.value_and_grad(loss, has_aux=True)(train)
            for path, fn in gradient_fns.items():
                grads[path] = jnp.asarray(call_update(fn, params, batch), train[path].dtype)
            updated = {
                name: jnp.asarray(call_update(fn, params, batch), params[name].dtype)
                for name, fn in user_updates
            }
            values = {v.tag: x for v, x in zip(graph.outputs, outs, strict=True)}
            values.update({v.tag: x for v, x in zip(extra, extras, strict=True)})
            for path in train_paths:
                values[f"algorithm:gradient:{path}"] = grads[path]
            if want_gradient_norm:
                values["algorithm:total_gradient_norm"] = l2_norm(grads.values())

            def apply(operands):
                params, opt_state, grads = operands
                train = {k: params[k] for k in train_paths}
                if blocks_sign:
                    steps, opt = rule.update(grads, opt_state, train)
                    new_train = {k: train[k] - steps[k].astype(train[k].dtype) for k in train}
                else:
                    steps, opt = rule.update(grads, opt_state, train)
                    new_train = optax.apply_updates(train, steps)  # optax's sign; same norm
                new_params = {**params, **new_train, **updated}
                for path, var, fn in state_updates:
                    value = fn(new_params[path], values[var.tag])
                    new_params[path] = value.astype(params[path].dtype)
                norm = l2_norm(steps.values()) if want_step_norm else jnp.float32(0)
                return new_params, opt, norm

            operands = (params, state["opt"], grads)
            with collect_non_finite() as guards:  # the RemoveNotFinite rules that ran
                new_params, opt, step_norm = apply(operands)
            policy = self._trace_policy([rule for _, rule in guards])
            new_params, opt, ok, counters = settle(
                state,
                new_params,
                opt,
                cost,
                grads.values(),
                [*(p for p, _, _ in state_updates), *updated],
                train_paths,
                [f for f, _ in guards],
                policy,
            )
            step_norm = jnp.where(ok, step_norm, jnp.float32(0))
            if want_step_norm:
                values["algorithm:total_step_norm"] = step_norm
            acc = tuple(
                a
                + jnp.concatenate(
                    [flat_monitored(values[v.tag], v) for v in slot]
                    + [jnp.ones(1, jnp.float32)]
                )
                for a, slot in zip(state["acc"], monitors, strict=True)
            )
            new_state = {
                "params": new_params,
                "opt": opt,
                "acc": acc,
                "step": state["step"] + 1,
                **counters,
            }
            return new_state, flags_of(counters)

        return step

    def _compile(self) -> None:
        step = self._make_step()

        def single(state, batch, base_key):
            self.compilations += 1
            return step(state, batch, base_key)

        def multi(state, batches, base_key):
            self.compilations += 1

            def body(s, b):
                s, bad = step(s, b, base_key)
                return s, bad

            state, flags = jax.lax.scan(body, state, batches)
            return state, flags[-1]

        self._step_fn = jax.jit(single, donate_argnums=(0,))
        self._multi_fn = jax.jit(multi, donate_argnums=(0,))

    # -- training ------------------------------------------------------------
    def _inputs(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        keys = tuple(batch)
        names = self.inputs
        if keys != self._batch_keys:
            missing = [n for n in names if n not in batch]
            if missing:
                raise AlgorithmError(
                    f"the batch lacks source(s) {missing} that the cost reads; "
                    f"batch sources: {list(batch)}; cost inputs: {names}"
                )
            unused = [k for k in batch if k not in names]
            if unused and self.on_unused_sources == "raise":
                raise AlgorithmError(
                    f"batch source(s) {unused} are not read by the cost (inputs: {names}); "
                    "select sources on the stream, or pass on_unused_sources='ignore' "
                    "(or 'warn') to GradientDescent"
                )
            if unused and self.on_unused_sources == "warn":
                logger.warning("batch sources %s are not read by the cost", unused)
            self._batch_keys = keys
        return {n: batch[n] for n in names}

    def process_batch(self, batch: Mapping[str, Any]) -> None:
        """Run one training step on ``batch`` (asynchronously: nothing is read back)."""
        state = self._require_state()
        inputs = self._inputs(batch)
        self._discover(inputs)
        if self._step_fn is None:
            self._compile()
        self._live.forget()
        self._state, flags = self._step_fn(state, inputs, self._base_key)
        self._flags.called(flags)

    def process_batches(self, batches: Sequence[Mapping[str, Any]]) -> None:
        """Run ``len(batches)`` steps in one compiled ``lax.scan`` call.

        Same results as calling :meth:`process_batch` on each; batches of
        different shapes fall back to one call each.
        """
        inputs = [self._inputs(b) for b in batches]
        shapes = {tuple((k, np.shape(v)) for k, v in b.items()) for b in inputs}
        if len(batches) == 1 or len(shapes) != 1:
            for b in batches:
                self.process_batch(b)
            return
        state = self._require_state()
        self._discover(inputs[0])
        if self._multi_fn is None:
            self._compile()
        stacked = {k: np.stack([np.asarray(b[k]) for b in inputs]) for k in inputs[0]}
        self._live.forget()
        self._state, flags = self._multi_fn(state, stacked, self._base_key)
        self._flags.called(flags)

    def check_finite(self, log: Any = None, wait: bool = True) -> None:
        """Raise if training stopped on a non-finite step; log ``skipped_steps``.

        Raises :class:`NonFiniteCostError` (no ``RemoveNotFinite``: a step had
        a non-finite cost or gradient) or :class:`TooManySkippedStepsError`
        (``RemoveNotFinite`` skipped ``max_consecutive`` steps in a row). The
        failing step and every later one left parameters and optimizer state
        unchanged, so what is saved afterwards is finite. With ``wait=False``
        this never blocks: every 8 step calls it looks at the flags of a
        recent step if they are computed already (see
        :mod:`bricks.algorithms.non_finite`).
        """
        self._flags.check(log, wait)

    @property
    def skipped_steps(self) -> int:
        """How many steps ``RemoveNotFinite`` skipped so far (reads the device)."""
        return int(self._require_state()["skipped"])

    @property
    def skip_policy(self) -> SkipPolicy | None:
        """The ``RemoveNotFinite`` settings in force (``None``: freeze and stop instead)."""
        return self._flags.policy

    def _trace_policy(self, found: Sequence[Any]) -> SkipPolicy | None:
        """At trace time: the skip policy of the RemoveNotFinite rules that ran."""
        policy = SkipPolicy.of([*_rules_of(self.step_rule, RemoveNotFinite), *found])
        self._flags.policy = policy
        return policy

    # -- values --------------------------------------------------------------
    def current_parameters(self) -> dict[str, jax.Array]:
        """The device arrays of all parameters now (do not keep them: they are donated)."""
        return dict(self._require_state()["params"])

    def parameter_values(self) -> dict[str, np.ndarray]:
        """Host copies of all parameters."""
        return jax.device_get(self.current_parameters())

    def write_back(self) -> None:
        """Unbind the graph's bricks: they keep the values of now (the main loop's end).

        Until then the bricks read through to this algorithm's parameters;
        afterwards they hold their own copies, and :meth:`initialize` binds
        them again (training a value written into a brick meanwhile). A
        graph without bricks (a cost function) gets the values set.
        """
        if self._state is None:
            return
        unbind_values(self._bound, self._live)
        self._bound = []
        held = {
            v.path for v in self.graph.parameters if getattr(v, "brick", None) is not None
        }
        rest = {k: v for k, v in self.current_parameters().items() if k not in held}
        if rest:
            self.graph.set_parameter_values(jax.device_get(rest))

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
        state["opt"] = set_at(state["opt"], path, jnp.asarray(value, old.dtype))

    # -- checkpointing -------------------------------------------------------
    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(json, arrays)``: parameters, optimizer state, key, accumulators, counters."""
        return self._host_payload(jax.device_get(self._require_state()), self._base_key)

    def snapshot(self) -> StateSnapshot:
        """The training state of this moment, copied on the device without waiting.

        One compiled copy is queued behind the steps already dispatched, so
        the snapshot holds the values of this call although later steps
        donate (overwrite) the originals; nothing waits for the device. Read
        it later, from any thread, with :meth:`StateSnapshot.get_state`,
        which returns what :meth:`get_state` would have returned now.
        Asynchronous checkpoints are built on this.
        """
        return StateSnapshot(self, device_copy(self._require_state()))

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
            "bad": int(host["bad"]),
            "skipped": int(host["skipped"]),
            "consecutive": int(host["consecutive"]),
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
            else self._zero_acc(i)
            for i in range(len(self._monitors))
        )
        self._state = {
            "params": params,
            "opt": jax.tree_util.tree_unflatten(treedef, new_leaves),
            "acc": acc,
            "step": jnp.asarray(meta["step"], jnp.int32),
            "bad": jnp.asarray(meta.get("bad", -1), jnp.int32),
            "skipped": jnp.asarray(meta.get("skipped", 0), jnp.int32),
            "consecutive": jnp.asarray(meta.get("consecutive", 0), jnp.int32),
        }
        if "rng_key" in arrays:
            self._base_key = jnp.asarray(arrays["rng_key"], jnp.uint32)
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


def _rules_of(rule: Any, kind: type) -> list[Any]:
    """The rules of class ``kind`` in a step rule (``rule`` itself and its sub-rules)."""
    if not isinstance(rule, StepRule):
        return []
    found = [rule] if isinstance(rule, kind) else []
    for _, child in rule.children():
        found.extend(_rules_of(child, kind))
    return found
