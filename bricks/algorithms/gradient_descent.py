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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bricks.algorithms.checks import (
    check_batch_sources,
    check_cost,
    check_monitorable,
    find_by_name,
    pending_output,
    resolve_outputs,
)
from bricks.algorithms.compiled_step import make_step, rules_of
from bricks.algorithms.function_graph import FunctionGraph
from bricks.algorithms.live import LiveParameters, StateSnapshot
from bricks.algorithms.monitor_slots import MonitorSlots
from bricks.algorithms.non_finite import (
    FlagReader,
    SkipPolicy,
    flags_of,
    initial_counters,
)
from bricks.algorithms.parallel import as_parallel, jit_step, place
from bricks.algorithms.ragged import check_mask_is_read, guard_example_mask
from bricks.algorithms.rules import RemoveNotFinite, Scale
from bricks.algorithms.step_rule import StepRule
from bricks.algorithms.training_state import TrainingState
from bricks.algorithms.updates import (
    BlocksUpdates,
    as_update_pairs,
    gradient_variables,
    gradients_only_cost,
)
from bricks.core.roles import AUXILIARY, PARAMETER, has_role
from bricks.core.tracing import Variable
from bricks.core.values import bind_values, unbind_values
from bricks.data._aligned import stack
from bricks.distributed import host_copy
from bricks.errors import AlgorithmError, StepRuleError, did_you_mean

__all__ = ["GradientDescent", "StateSnapshot"]

logger = logging.getLogger(__name__)

_UNUSED = ("raise", "warn", "ignore")


def _quantity(name: str) -> Variable:
    return Variable(tag=f"algorithm:{name}", name=name, roles=(AUXILIARY,), shape=())


class GradientDescent(MonitorSlots, TrainingState, BlocksUpdates):
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
        parallel: train data-parallel (see :mod:`bricks.algorithms.parallel`):
            a number of local devices, ``"all"``, a ``jax.sharding.Mesh`` or a
            :class:`~bricks.distributed.DataParallel`. The state is replicated,
            each batch split along its batch axis (axis 0; ``batch_axes``
            ``{source: axis}`` otherwise); results equal one device's. Default
            ``None``: one device.
        batch_axes: the batch axis of each source, for ``parallel``.
        shard_parameters: with ``parallel``, split the parameters and the
            optimizer state shaped like them over the devices (FSDP-style)
            instead of replicating them (see
            :class:`~bricks.distributed.DataParallel`; its
            ``describe(algorithm.current_parameters())`` says which are split).

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
        parallel: Any = None,
        batch_axes: int | Mapping[str, int] = 0,
        shard_parameters: bool = False,
    ) -> None:
        self.parallel = as_parallel(parallel, batch_axes, shard_parameters)
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
        self._static_policy = SkipPolicy.of(rules_of(self.step_rule, RemoveNotFinite))
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
        self._per_step: list[bool] = []  # add_monitor(per_step=True) of each slot
        self._discovered = False
        self._state: dict[str, Any] | None = None
        self._step_fn: Callable | None = None
        self._multi_fn: Callable | None = None
        self._masked_fn: Callable | None = None
        self._batch_keys: tuple | None = None
        # (step function, batch keys, pass the batch as it is): what the fast path of
        # process_batch checks, set by a slow call that compiled or reused that function
        self._fast: tuple | None = None
        self._batch_names: tuple = ()
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

    def add_monitor(self, variables: Sequence[Any], per_step: bool = False) -> int:
        """Accumulate ``variables`` on device every step; returns a slot id.

        Call before training starts (extensions do it in ``before_training``);
        a later call re-compiles the step.

        Args:
            variables: what to monitor (Variables or names).
            per_step: also keep each step's own values on the device, for up
                to :meth:`steps_kept` steps between two reads, so that
                :meth:`start_read_steps` reads many steps back at once (one
                transfer instead of one a step). Slots too large for that
                (a whole gradient) keep sums only.
        """
        resolved = [self.resolve(v) for v in variables]
        check_monitorable(self.graph, resolved, "monitoring during training")
        self._monitors.append(resolved)
        self._per_step.append(bool(per_step))
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
            if state["acc"][i].shape != self._acc_shape(i):
                state["acc"] = state["acc"][:i] + (self._zero_acc(i),) + state["acc"][i + 1 :]
        self._discovered = True
        self._step_fn = self._multi_fn = None

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
        self._place_state()
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

    def _compile(self) -> None:
        step = guard_example_mask(self, make_step(self))  # a padded batch: checked

        def single(state, batch, base_key):
            self.compilations += 1
            return step(state, batch, base_key)

        def multi(state, batches, base_key):
            self.compilations += 1
            state, flags = jax.lax.scan(lambda s, b: step(s, b, base_key), state, batches)
            return state, flags[-1]

        def masked(state, batches_count, base_key):
            # a scan over stacked batches of which the first ``count`` are real:
            # the others (padding of a short chunk) leave the state as it is, so
            # one program serves every shorter chunk. Only short chunks run it:
            # on a GPU a cond in a loop reads its predicate back to the host
            self.compilations += 1
            batches, count = batches_count

            def body(s, xs):
                # the cond gives the state only: a branch giving its counters twice
                # (as state and as flags) made XLA copy the whole state at every
                # step (784-500-500-10: 31 copies, 12 -> 18 ms a chunk of 4 in 16)
                i, b = xs
                s = jax.lax.cond(i < count, lambda s: step(s, b, base_key)[0], lambda s: s, s)
                return s, None

            length = jax.tree_util.tree_leaves(batches)[0].shape[0]
            steps = jnp.arange(length, dtype=jnp.int32)
            state, _ = jax.lax.scan(body, state, (steps, batches))
            return state, flags_of(state)

        jit = functools.partial(jit_step, parallel=self.parallel, state=self._state)
        self._step_fn, self._multi_fn, self._masked_fn = jit(single), jit(multi), jit(masked)

    def _place_state(self) -> None:
        """On a mesh: the state and key replicated (or sharded) on its devices."""
        if self.parallel is not None and self._state is not None:
            self._state, self._base_key = place(self.parallel, self._state, self._base_key)

    def distribute(
        self,
        parallel: Any,
        batch_axes: int | Mapping[str, int] = 0,
        shard_parameters: bool = False,
    ) -> None:
        """Train data-parallel from now on (what ``parallel=`` of the constructor does).

        The runner calls this for ``--devices``/``--processes`` on the
        algorithm a config built; the state (also a restored one) moves onto
        the mesh and the step is compiled again for it (``shard_parameters``:
        as the constructor's; ``--shard-parameters`` of the runner).
        """
        self.parallel = as_parallel(parallel, batch_axes, shard_parameters)
        self._step_fn = self._multi_fn = None
        if self.parallel is None and self._state is not None:
            device = jax.local_devices()[0]
            self._state, self._base_key = jax.device_put((self._state, self._base_key), device)
        self._place_state()

    # -- training ------------------------------------------------------------
    def _inputs(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        keys = tuple(batch)
        names = self.inputs
        if keys != self._batch_keys:
            check_mask_is_read(batch, names, "GradientDescent")
            check_batch_sources(batch, names, self.on_unused_sources, "the cost", "GradientDescent")
            self._batch_keys = keys
        return {n: batch[n] for n in names}

    def process_batch(self, batch: Mapping[str, Any]) -> None:
        """Run one training step on ``batch`` (asynchronously: nothing is read back).

        After the first call with these sources, a call is the jitted call and
        a tuple comparison: nothing is checked, built or looked up again.
        """
        fast = self._fast
        if fast is not None and fast[0] is self._step_fn and fast[1] == tuple(batch):
            self._live.forget()
            inputs = batch if fast[2] else {n: batch[n] for n in self._batch_names}
            self._state, flags = fast[0](self._state, inputs, self._base_key)
            self._flags.called(flags)
            return
        self._process_batch(batch)

    def _process_batch(self, batch: Mapping[str, Any]) -> None:
        state = self._require_state()
        inputs = self._inputs(batch)
        if self.parallel is not None:
            inputs = self.parallel.shard_batch(inputs)
        self._discover(inputs)
        if self._step_fn is None:
            self._compile()
        self._live.forget()
        self._state, flags = self._step_fn(state, inputs, self._base_key)
        self._flags.called(flags)
        if self.parallel is None:  # a mesh places each batch: no fast path
            keys = tuple(batch)
            self._batch_names = tuple(inputs)
            self._fast = (self._step_fn, keys, type(batch) is dict and keys == tuple(inputs))

    def process_batches(
        self, batches: Sequence[Mapping[str, Any]], length: int | None = None
    ) -> None:
        """Run ``len(batches)`` steps in one compiled ``lax.scan`` call.

        Same results as calling :meth:`process_batch` on each. Batches of
        different shapes (padded to buckets) run as consecutive runs of one
        shape, each in the masked scan of its shape: a run never falls back
        to single steps, and the programs are at most two per shape.

        Args:
            batches: the batches, in order.
            length: the scan's length (default ``len(batches)``); fewer
                batches are padded with masked steps that change nothing, so
                shorter chunks share one more program (the main loop's
                ``steps_per_call``: the end of an epoch), never a single step.
        """
        length = len(batches) if length is None else int(length)
        if len(batches) > length:
            raise AlgorithmError(
                f"process_batches: {len(batches)} batches do not fit a scan of length {length}"
            )
        inputs = [self._inputs(b) for b in batches]
        if length == 1:
            for b in batches:
                self.process_batch(b)
            return
        shapes = [tuple((k, np.shape(v)) for k, v in b.items()) for b in inputs]
        if len(set(shapes)) != 1:  # bucketed sequences: each run of one shape, in order
            start = 0
            for end in range(1, len(batches) + 1):
                if end == len(batches) or shapes[end] != shapes[start]:
                    self.process_batches(batches[start:end], length=length)
                    start = end
            return
        inputs = inputs + [inputs[-1]] * (length - len(inputs))  # masked in the scan
        state = self._require_state()
        self._discover(inputs[0])
        if self._multi_fn is None:
            self._compile()
        stacked = {k: stack([b[k] for b in inputs]) for k in inputs[0]}  # large: aligned
        if self.parallel is not None:
            stacked = self.parallel.shard_batch(stacked, stacked=True)
        self._live.forget()
        if len(batches) == length:
            self._state, flags = self._multi_fn(state, stacked, self._base_key)
        else:
            count = np.int32(len(batches))
            self._state, flags = self._masked_fn(state, (stacked, count), self._base_key)
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
        return int(self._require_state()["counters"][1])  # (bad, skipped, consecutive)

    @property
    def skip_policy(self) -> SkipPolicy | None:
        """The ``RemoveNotFinite`` settings in force (``None``: freeze and stop instead)."""
        return self._flags.policy

    def _trace_policy(self, found: Sequence[Any]) -> SkipPolicy | None:
        """At trace time: the skip policy of the RemoveNotFinite rules that ran."""
        policy = SkipPolicy.of([*rules_of(self.step_rule, RemoveNotFinite), *found])
        self._flags.policy = policy
        return policy

    # -- values --------------------------------------------------------------
    def current_parameters(self) -> dict[str, jax.Array]:
        """The device arrays of all parameters now (do not keep them: they are donated)."""
        return dict(self._require_state()["params"])

    def parameter_values(self) -> dict[str, np.ndarray]:
        """Host copies of all parameters, whatever their sharding (gathered: with
        parameters split over several processes every process must call this)."""
        return host_copy(self.current_parameters())

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
        held = {v.path for v in self.graph.parameters if getattr(v, "brick", None) is not None}
        rest = {k: v for k, v in self.current_parameters().items() if k not in held}
        if rest:
            self.graph.set_parameter_values(jax.device_get(rest))
