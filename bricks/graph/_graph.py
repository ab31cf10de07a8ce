"""The :class:`ComputationGraph`: a traced function plus its annotations."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from bricks.core.roles import AUXILIARY, OUTPUT, has_role
from bricks.core.tracing import Frame, Intervention, Recorder, Variable, current_frame, use_frame
from bricks.errors import GraphError, ShapeError, did_you_mean

__all__ = ["ComputationGraph", "InputSpec"]

InputSpec = Any

_PLACEHOLDER_DIMS = (5, 7, 11, 13, 17, 19)


def _to_spec(name: str, spec: Any) -> tuple[tuple[int | None, ...], Any]:
    """Normalize an input spec to ``(shape with None for free dims, dtype)``."""
    if isinstance(spec, jax.ShapeDtypeStruct) or hasattr(spec, "dtype"):
        return tuple(spec.shape), jnp.dtype(spec.dtype)
    if (
        isinstance(spec, tuple)
        and len(spec) == 2
        and isinstance(spec[0], (tuple, list))
        and not isinstance(spec[1], (tuple, list))
    ):
        return tuple(spec[0]), jnp.dtype(spec[1])
    if isinstance(spec, (tuple, list)) and all(d is None or isinstance(d, int) for d in spec):
        return tuple(spec), jnp.dtype(jnp.float32)
    raise GraphError(
        f"input {name!r}: expected a shape tuple with None for free dimensions (e.g. (None, 784)),"
        f" a (shape, dtype) pair or a jax.ShapeDtypeStruct, got {spec!r}"
    )


def _abstract_inputs(specs: Mapping[str, tuple], symbolic: bool) -> dict[str, jax.ShapeDtypeStruct]:
    if symbolic:
        from jax import export

        ndim = max((len(s) for s, _ in specs.values()), default=0)
        syms = export.symbolic_shape(",".join(f"d{i}" for i in range(ndim))) if ndim else ()
        dim = lambda i: syms[i]  # noqa: E731
    else:
        dim = lambda i: _PLACEHOLDER_DIMS[i % len(_PLACEHOLDER_DIMS)]  # noqa: E731
    return {
        name: jax.ShapeDtypeStruct(
            tuple(dim(i) if d is None else d for i, d in enumerate(shape)), dtype
        )
        for name, (shape, dtype) in specs.items()
    }


def _output_values(out: Any, keys: Sequence[str] | None, where: str) -> list[Any]:
    """The outputs of one call of a graph function as a list, paired by name.

    A dict is read **by key** in the order of ``keys`` (the names the graph
    was traced with), never by flattening: ``jax.tree`` flattening sorts
    dict keys, so values taken in flattening order would pair with the
    wrong names.
    """
    if isinstance(out, Mapping):
        if keys is None:
            keys = list(out)
        if set(out) != set(keys) or len(out) != len(keys):
            raise GraphError(
                f"{where} returned the outputs {list(out)}, but the graph was traced with "
                f"{list(keys)}; a graph function must return the same names every time"
            )
        values = [out[k] for k in keys]
    elif isinstance(out, (tuple, list)):
        values = list(out)
        if keys is not None and len(values) != len(keys):
            raise GraphError(
                f"{where} returned {len(values)} outputs, but the graph was traced with "
                f"{len(keys)} ({list(keys)})"
            )
    else:
        values = [out]
    return values


def _output_names(out: Any, fn: Callable[..., Any]) -> list[str]:
    """Names of the outputs of ``fn`` from one (traced) result, in the order returned."""
    where = f"the graph function {getattr(fn, '__name__', fn)!r}"
    if isinstance(out, Mapping):
        bad = [k for k in out if not isinstance(k, str)]
        if bad:
            raise GraphError(f"{where} returned a dict with non-string keys {bad}; name outputs")
        names = list(out)
    elif isinstance(out, tuple) and hasattr(out, "_fields"):  # a namedtuple names its fields
        names = list(out._fields)
    elif isinstance(out, (tuple, list)):
        names = [f"output_{i}" for i in range(len(out))]
    else:
        fname = getattr(fn, "__name__", "output")
        names = ["output" if fname == "<lambda>" else fname]
    for name, value in zip(names, _output_values(out, None, where), strict=True):
        if not (hasattr(value, "shape") or isinstance(value, (bool, int, float, complex))):
            raise GraphError(
                f"{where} returned {type(value).__name__} {value!r:.60} as output {name!r}; "
                "each output must be one array (return a flat dict or tuple of arrays)"
            )
    return names


def _constant_like(constant: Any, like: Any) -> Any:
    constant = jnp.asarray(constant, jnp.result_type(like))
    return jnp.broadcast_to(constant, jnp.shape(like)) if constant.ndim == 0 else constant


def _compose(first: Intervention, second: Intervention) -> Intervention:
    def fn(value: Any, key: Any) -> Any:
        k1 = k2 = None
        if key is not None:
            k1, k2 = jax.random.fold_in(key, 1), jax.random.fold_in(key, 2)
        return second.fn(first.fn(value, k1), k2)

    return Intervention(
        fn,
        stochastic=first.stochastic or second.stochastic,
        per_step=first.per_step or second.per_step,
    )


class ComputationGraph:
    """A function of bricks, traced once, whose annotated variables can be
    selected, monitored and transformed.

    Args:
        fn: a Python function of keyword inputs that applies bricks and
            returns an array (the cost), a tuple, or a dict of named arrays.
        **inputs: one spec per input of ``fn``: a shape with ``None`` for
            free dimensions (float32), a ``(shape, dtype)`` pair, or a
            ``jax.ShapeDtypeStruct``.

    Attributes:
        inputs: names of the inputs, in the order given.
        outputs: :class:`~bricks.core.Variable` per output. A single output
            is named after ``fn`` (``def cost(...)`` gives ``"cost"``); dict
            outputs are named by their keys, in the order ``fn`` returns them
            (the first is the cost for training), and their values are read
            by key, so names and values always pair.
        parameters: the parameters ``fn`` reads, with paths and roles.
        variables: every annotated variable (application inputs and outputs,
            auxiliary variables, those computed inside scans) and the
            parameters, in trace order.

    >>> import jax.numpy as jnp
    >>> from bricks.core import MLP, Tanh, Softmax, IsotropicGaussian, Constant, WEIGHT
    >>> from bricks.graph import ComputationGraph, VariableFilter
    >>> mlp = MLP([Tanh(), Softmax()], [4, 3, 2], weights_init=IsotropicGaussian(0.1),
    ...           biases_init=Constant(0.0))
    >>> mlp.initialize(seed=1)
    >>> def cost(features):
    ...     return mlp.apply(features).sum()
    >>> cg = ComputationGraph(cost, features=(None, 4))
    >>> [v.path for v in VariableFilter(roles=[WEIGHT])(cg.variables)]
    ['/mlp/linear_0.W', '/mlp/linear_1.W']
    >>> float(cg(features=jnp.ones((2, 4))))
    2.0
    """

    def __init__(self, fn: Callable[..., Any], **inputs: InputSpec) -> None:
        self._init(fn, {k: _to_spec(k, v) for k, v in inputs.items()}, {}, {}, [])

    def _init(
        self,
        fn: Callable[..., Any],
        specs: dict[str, tuple],
        interventions: dict[str, Intervention],
        modes: dict[str, Any],
        state_updates: list,
    ) -> None:
        self.fn = fn
        self._specs = specs
        self._interventions = interventions
        self._modes = modes
        self.state_updates = list(state_updates)
        self._compiled: dict[tuple[str, ...], Callable[..., Any]] = {}
        self._trace()

    def _derive(self, **changes: Any) -> ComputationGraph:
        new = object.__new__(ComputationGraph)
        args = dict(
            fn=self.fn,
            specs=self._specs,
            interventions=dict(self._interventions),
            modes=dict(self._modes),
            state_updates=self.state_updates,
        )
        args.update(changes)
        new._init(**args)
        return new

    # -- tracing --------------------------------------------------------------
    def _trace(self) -> None:
        last_error: Exception | None = None
        for symbolic in (True, False):
            rec = Recorder(interventions=self._interventions, discovery=True)
            returned: dict[str, list[str]] = {}
            abstract = _abstract_inputs(self._specs, symbolic)

            def run(inputs: dict[str, Any], rec: Recorder = rec, returned: dict = returned) -> Any:
                with use_frame(Frame(params={}, recorder=rec, extra=self._modes)):
                    out = self.fn(**inputs)
                # the names in the order ``fn`` returned them: eval_shape's
                # result is a re-built pytree whose dicts have sorted keys
                returned["names"] = _output_names(out, self.fn)
                return out

            try:
                out = jax.eval_shape(run, abstract)
            except (GraphError, ShapeError):
                raise
            except Exception as exc:  # noqa: BLE001 - symbolic shapes unsupported by some op
                if not symbolic:
                    raise
                last_error = exc
                continue
            break
        else:  # pragma: no cover
            raise GraphError(f"could not trace {self.fn!r}: {last_error}")
        # some ops cannot trace symbolic sizes: then free sizes got placeholders
        self._placeholder_sizes = not symbolic and any(
            d is None for shape, _ in self._specs.values() for d in shape
        )
        names = returned["names"]
        self._output_keys = names if isinstance(out, Mapping) else None
        self._output_kind = type(out) if isinstance(out, (tuple, list)) else None
        values = _output_values(out, self._output_keys, "the graph function")
        self.outputs = [
            Variable(
                tag=f"output:{n}", name=n, roles=(OUTPUT,), shape=tuple(v.shape), dtype=v.dtype
            )
            for n, v in zip(names, values, strict=True)
        ]
        self.parameters: list[Variable] = list(rec.parameters.values())
        self._intermediates: dict[str, Variable] = dict(rec.variables)
        self.variables: list[Variable] = list(rec.variables.values()) + self.parameters
        self.bricks = list(rec.bricks.values())
        self.scans: list[str] = list(rec.scans)
        replaced = {t for t, iv in self._interventions.items() if iv.replaces_parameter}
        unknown = (
            set(self._interventions) - set(self._intermediates) - set(rec.parameters) - replaced
        )
        if unknown:
            raise GraphError(f"transformed variables not found in the graph: {sorted(unknown)}")
        paths: dict[str, Any] = {}
        for brick in self.bricks:
            other = paths.setdefault(brick.path, brick)
            if other is not brick:
                raise GraphError(
                    f"two different bricks have the path {brick.path!r}; give one of them "
                    "another name so every parameter path is unique"
                )

    # -- inspection -------------------------------------------------------------
    def describe_shape(self, shape: Sequence[Any]) -> str:
        """A variable's shape as text; a free size is named by the input axis it
        comes from (``(features.shape[0], 10)``) instead of JAX's ``d0``."""
        free: dict[str, str] = {}
        for name, (spec, _dtype) in self._specs.items():
            for i, d in enumerate(spec):
                if d is None:
                    free.setdefault(f"d{i}", f"{name}.shape[{i}]")
        parts = [
            str(d)
            if isinstance(d, int)
            else re.sub(r"\bd\d+\b", lambda m: free.get(m[0], m[0]), str(d))
            for d in shape
        ]
        text = "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
        if self._placeholder_sizes:
            sizes = ", ".join(map(str, _PLACEHOLDER_DIMS[:3]))
            text += f" (traced with placeholder sizes {sizes}, ... for the free input sizes)"
        return text

    def _where(self) -> str:
        return f"the graph function {getattr(self.fn, '__name__', self.fn)!r}"

    @property
    def inputs(self) -> list[str]:
        return list(self._specs)

    @property
    def auxiliary_variables(self) -> list[Variable]:
        return [v for v in self.variables if has_role(v.roles, AUXILIARY)]

    @property
    def needs_key(self) -> bool:
        """Whether evaluating needs a PRNG key (dropout or noise installed)."""
        return any(iv.stochastic for iv in self._interventions.values())

    def get_variable(self, tag_or_variable: Any) -> Variable:
        tag = tag_or_variable.tag if isinstance(tag_or_variable, Variable) else tag_or_variable
        for v in self.variables + self.outputs:
            if v.tag == tag:
                return v
        known = [v.tag for v in self.variables]
        raise GraphError(f"no variable {tag!r} in this graph{did_you_mean(tag, known)}")

    def __str__(self) -> str:
        """The variables grouped by brick, scan steps and repeated calls
        collapsed (see :meth:`summary`); :meth:`table` is the flat list."""
        return self.summary()

    def summary(self, max_rows: int | None = None) -> str:
        """A readable view: inputs, outputs and counts, then the variables
        under their brick paths (parameters first, with sizes), a row per
        scan-step variable (``[scan k ×T]``, per-step shape) and per
        repeated call (``applied n×``). ``max_rows`` shortens the table."""
        from ._graph_format import graph_summary

        return graph_summary(self, max_rows)

    def table(self) -> str:
        """Every variable and output, one row each (tag, roles, name, shape,
        dtype): the flat format ``str(cg)`` had before the summary."""
        from ._graph_format import graph_table

        return graph_table(self)

    def __repr__(self) -> str:
        from ._graph_format import graph_repr

        return graph_repr(self)

    # -- evaluation ---------------------------------------------------------------
    def parameter_values(self) -> dict[str, jax.Array]:
        """Current values of :attr:`parameters`, read from the bricks."""
        return {v.path: v.brick.parameter_value(v.name) for v in self.parameters}

    def set_parameter_values(self, values: Mapping[str, Any]) -> None:
        """Write values (by path) back into the bricks."""
        by_path = {v.path: v for v in self.parameters}
        for path, value in values.items():
            if path not in by_path:
                raise GraphError(
                    f"no parameter {path!r} in this graph{did_you_mean(path, by_path)}"
                )
            by_path[path].brick.set_parameter_values({path: value})

    def _check_inputs(self, inputs: Mapping[str, Any]) -> None:
        missing = [n for n in self._specs if n not in inputs]
        if missing:
            raise GraphError(f"missing inputs {missing}; this graph takes {self.inputs}")
        extra = [n for n in inputs if n not in self._specs]
        if extra:
            raise GraphError(
                f"unexpected inputs {extra}{did_you_mean(extra[0], self._specs)}; this graph "
                f"takes {self.inputs}"
            )
        for name, (shape, _dtype) in self._specs.items():
            got = tuple(jnp.shape(inputs[name]))
            if len(got) != len(shape) or any(
                d is not None and d != g for d, g in zip(shape, got, strict=False)
            ):
                want = tuple("?" if d is None else d for d in shape)
                raise ShapeError(f"input {name!r}: expected shape {want}, got {got}")

    def evaluate(
        self,
        params: Mapping[str, Any],
        inputs: Mapping[str, Any],
        key: Any = None,
        extra: Sequence[Variable] = (),
    ) -> tuple[list[Any], list[Any]]:
        """Run the function once: output values and values of ``extra``.

        Pure and jittable: parameter values come from ``params`` (keyed by
        path), never from the bricks.

        Returns:
            ``(outputs, extras)``: lists of arrays, in the order of
            :attr:`outputs` and of ``extra``.
        """
        self._check_inputs(inputs)
        extra_vars = [self.get_variable(v) for v in extra]
        requested = {
            v.tag for v in extra_vars if v.path is None and not v.tag.startswith("output:")
        }
        if self.needs_key and key is None:
            raise GraphError(
                "this graph has stochastic transforms (dropout or noise): pass a PRNG key, "
                "e.g. evaluate(..., key=jax.random.key(0))"
            )
        rec = Recorder(interventions=self._interventions, requested=requested, key=key)
        with use_frame(Frame(params=params, recorder=rec, extra=self._modes)):
            out = self.fn(**inputs)
        outputs = _output_values(out, self._output_keys, self._where())
        by_name = {v.tag: o for v, o in zip(self.outputs, outputs, strict=True)}
        extras = []
        for v in extra_vars:
            if v.path is not None:
                extras.append(params[v.path])
            elif v.tag in by_name:
                extras.append(by_name[v.tag])
            elif v.tag in rec.collected:
                extras.append(rec.collected[v.tag])
            else:
                raise GraphError(f"variable {v.tag!r} was not computed in this evaluation")
        return outputs, extras

    def compile(self, extra: Sequence[Variable] = ()) -> Callable[..., tuple[list, list]]:
        """One jitted ``f(params, inputs, key=None) -> (outputs, extras)``.

        Requested intermediates come from the same forward pass as the
        outputs. Compiled once per input shape; cached per ``extra``.
        """
        extra_vars = tuple(self.get_variable(v) for v in extra)
        cache_key = tuple(v.tag for v in extra_vars)
        if cache_key not in self._compiled:
            self._compiled[cache_key] = jax.jit(
                lambda params, inputs, key=None: self.evaluate(params, inputs, key, extra_vars)
            )
        return self._compiled[cache_key]

    def __call__(self, key: Any = None, /, **inputs: Any) -> Any:
        """Evaluate with the bricks' current values; returns what ``fn`` returns.

        ``key`` (positional only, so an input may be called ``key``) is the
        PRNG key of stochastic graphs; ``key=`` works too when no input has
        that name.
        """
        if "key" in inputs and "key" not in self._specs:
            key = inputs.pop("key")
        outputs, _ = self.compile()(self.parameter_values(), inputs, key)
        if self._output_keys is not None:
            return dict(zip(self._output_keys, outputs, strict=True))
        if self._output_kind is not None:
            if hasattr(self._output_kind, "_fields"):  # a namedtuple
                return self._output_kind(*outputs)
            return self._output_kind(outputs)
        return outputs[0]

    # -- transforms (each returns a new graph) -----------------------------------
    def _with_interventions(self, new: Mapping[str, Intervention]) -> ComputationGraph:
        interventions = dict(self._interventions)
        for tag, iv in new.items():
            self.get_variable(tag)
            interventions[tag] = _compose(interventions[tag], iv) if tag in interventions else iv
        return self._derive(interventions=interventions)

    def replace(self, replacements: Any) -> ComputationGraph:
        """A new graph in which each variable is replaced.

        Args:
            replacements: ``{variable or tag: value}`` (or ``(variable,
                value)`` pairs, as Blocks took them) where value is an array
                of the variable's shape or a function ``old -> new``. A
                variable may be an intermediate, a parameter, an output
                (``graph.outputs[0]``) or an input, by name (``"x"``: every
                use of it sees the new value).

        As in Blocks, a variable that is not part of this graph is a warning
        (its replacement is left out), and so is replacing an auxiliary
        variable (nothing computed from it changes, unless it is an output).
        """
        from ._extras import replace

        return replace(self, replacements)

    @property
    def scan_variables(self) -> list[Variable]:
        """The variables computed inside the scans of :attr:`scans`."""
        return [v for v in self.variables if v.scan_scope is not None]

    def get_snapshot(self, data: Mapping[str, Any], key: Any = None) -> dict[Variable, Any]:
        """The value of every variable (and parameter) for the inputs ``data``."""
        _, values = self.evaluate(self.parameter_values(), data, key, extra=self.variables)
        return dict(zip(self.variables, values, strict=True))

    def with_modes(self, **modes: Any) -> ComputationGraph:
        """A new graph traced with extra frame modes (e.g. batch-norm training)."""
        return self._derive(modes={**self._modes, **modes})

    def add_updates(self, updates: Sequence[tuple[str, Variable, Callable]]) -> ComputationGraph:
        """A new graph with ``(path, variable, fn)`` state updates to run after
        each training step (``params[path] = fn(params[path], value)``)."""
        for path, var, _ in updates:
            self.get_variable(var)
            if path not in {p.path for p in self.parameters}:
                raise GraphError(f"state update for unknown parameter {path!r}")
        return self._derive(state_updates=[*self.state_updates, *updates])

    def transform_outputs(
        self, fn: Callable[..., Any], variables: Sequence[Variable] = ()
    ) -> ComputationGraph:
        """A new graph whose outputs are ``fn(outputs, *values_of(variables))``.

        Blocks users modified the cost symbolically after selecting
        variables; this is the traced equivalent, e.g. L2 regularization:

        >>> # weights = VariableFilter(roles=[WEIGHT])(cg.variables)
        >>> # cg = cg.transform_outputs(
        >>> #     lambda cost, *ws: cost + 1e-3 * sum((w ** 2).sum() for w in ws), weights)
        """
        vars_ = [self.get_variable(v) for v in variables]
        inner = self.fn

        def transformed(**inputs: Any) -> Any:
            with contextlib.ExitStack() as stack:
                frame = current_frame()
                rec = frame.recorder
                if rec is None:  # called outside a graph: listen ourselves
                    rec = Recorder()
                    stack.enter_context(
                        use_frame(Frame(params=frame.params, recorder=rec, extra=frame.extra))
                    )
                rec.requested |= {v.tag for v in vars_ if v.path is None}
                out = inner(**inputs)
                vals = []
                for v in vars_:
                    if v.path is None:
                        vals.append(rec.collected[v.tag])
                        continue
                    params = current_frame().params
                    vals.append(
                        params[v.path] if params and v.path in params else v.brick.parameter(v.name)
                    )
                return fn(out, *vals)

        transformed.__name__ = getattr(inner, "__name__", "output")
        return self._derive(fn=transformed)
