"""The compiled training step of :class:`~bricks.algorithms.GradientDescent`.

:func:`make_step` builds the pure function ``step(state, batch, base_key)``
that runs the forward and backward pass, the step rule, the parameter and
state updates, the non-finite guard and the on-device accumulation of the
monitored quantities; GradientDescent jits it (one step, or a ``lax.scan``
of several) with the state donated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from bricks.algorithms.early_select import run_selecting, trace_update
from bricks.algorithms.monitor_slots import accumulate
from bricks.algorithms.non_finite import (
    all_finite,
    chains,
    collect_non_finite,
    decide,
    select_state,
    settle,
)
from bricks.algorithms.rules import l2_norm
from bricks.algorithms.step_rule import StepRule
from bricks.algorithms.updates import call_update
from bricks.core.tracing import Variable

__all__ = ["extra_variables", "jit_local", "make_step", "rules_of", "step_compiler_options"]


def extra_variables(algorithm: Any) -> list[Variable]:
    seen: dict[str, Variable] = {}
    outputs = {v.tag for v in algorithm.graph.outputs}
    for slot in algorithm._monitors:
        for v in slot:
            if v.tag not in outputs and not v.tag.startswith("algorithm:"):
                seen[v.tag] = v
    for _, v, _ in getattr(algorithm.graph, "state_updates", []):
        seen[v.tag] = v
    return list(seen.values())


#: XLA options of the step on CPU. Copy insertion by region analysis: the step's
#: non-finite guard selects between the optimizer state the step rule computed
#: and the old one, which is donated (overwritten in place); the default
#: analysis copies every old optimizer-state array first (13 copies on an MLP
#: with Adam; the 784-500-500-10 step spent 20% longer than the same step
#: without the guard), region analysis sees the order that needs no copy.
CPU_STEP_OPTIONS = {"xla_cpu_copy_insertion_use_region_analysis": True}


def step_compiler_options() -> dict[str, Any] | None:
    """:data:`CPU_STEP_OPTIONS` on CPU (one device or a mesh), else ``None``."""
    return CPU_STEP_OPTIONS if jax.default_backend() == "cpu" else None


def jit_local(fn: Callable) -> Callable:
    """``jax.jit(fn)`` of a one-device step, the state (argument 0) donated, with
    :func:`step_compiler_options`."""
    return jax.jit(fn, donate_argnums=(0,), compiler_options=step_compiler_options())


def make_step(algorithm: Any) -> Callable:
    graph, rule = algorithm.graph, algorithm.step_rule
    train_paths = list(algorithm.parameter_paths)
    extra = extra_variables(algorithm)
    monitors = [list(s) for s in algorithm._monitors]
    state_updates = list(getattr(graph, "state_updates", []))
    blocks_sign = algorithm._blocks_sign
    needs_key = bool(getattr(graph, "needs_key", False))
    wanted = {v.tag for slot in monitors for v in slot}
    want_gradient_norm = "algorithm:total_gradient_norm" in wanted
    want_step_norm = "algorithm:total_step_norm" in wanted
    gradient_fns = dict(algorithm._gradient_fns)
    user_updates = list(algorithm._updates)
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
            outs, extras = graph.evaluate({**fixed, **train}, graph_batch, key=key, extra=extra)
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

        def finish(train, steps):
            """The trained parameters' new values (unselected) and the step norm."""
            if blocks_sign:
                new_train = {k: train[k] - steps[k].astype(train[k].dtype) for k in train}
            else:
                new_train = optax.apply_updates(train, steps)  # optax's sign; same norm
            norm = l2_norm(steps.values()) if want_step_norm else jnp.float32(0)
            return new_train, norm

        def set_beside(new_params):
            """``new_params`` with the values set beside the step rule: the user's
            updates, then the state updates (batch-norm statistics)."""
            new_params = {**new_params, **updated}
            for path, var, fn in state_updates:
                value = fn(new_params[path], values[var.tag])
                new_params[path] = value.astype(params[path].dtype)
            return new_params

        train = {k: params[k] for k in train_paths}
        args = (grads, state["opt"], train)
        checked = [*(p for p, _, _ in state_updates), *updated]  # set beside the rule
        traced, guards = None, []
        ordered = chains(jax.tree_util.tree_leaves((params, state["opt"])))  # small, CPU
        if not ordered and not set(checked) & set(train_paths):
            with collect_non_finite() as guards:  # the RemoveNotFinite rules that run
                traced = trace_update(rule.update, args)
        if traced is not None and not guards:
            # nothing the check reads comes from the rule: decide first and select
            # each new state array where the rule computes it (see early_select)
            beside = set_beside(params)
            finite = all_finite([cost, *grads.values(), *(beside[k] for k in checked)])
            policy = algorithm._trace_policy([])
            ok, counters, fallback = decide(state, finite, train_paths, [], policy)
            steps, opt = run_selecting(traced, args, ok)
            new_train, step_norm = finish(train, steps)
            new_params = select_state(ok, {**beside, **new_train}, fallback)
        else:  # select after the rule (a RemoveNotFinite rule's flag decides too)
            with collect_non_finite() as guards:  # the RemoveNotFinite rules that run
                steps, opt = rule.update(*args)
            policy = algorithm._trace_policy([r for _, r in guards])
            new_train, step_norm = finish(train, steps)
            new_params = set_beside({**params, **new_train})
            new_params, opt, ok, counters = settle(
                state,
                new_params,
                opt,
                cost,
                grads.values(),
                checked,
                train_paths,
                [f for f, _ in guards],
                policy,
            )
        step_norm = jnp.where(ok, step_norm, jnp.float32(0))
        if want_step_norm:
            values["algorithm:total_step_norm"] = step_norm
        acc = accumulate(state["acc"], values, monitors)
        new_state = {
            "params": new_params,
            "opt": opt,
            "acc": acc,
            "step": state["step"] + 1,
            "counters": counters,
        }
        return new_state, counters  # the flags: XLA writes them beside the state's copy

    return step


def rules_of(rule: Any, kind: type) -> list[Any]:
    """The rules of class ``kind`` in a step rule (``rule`` itself and its sub-rules)."""
    if not isinstance(rule, StepRule):
        return []
    found = [rule] if isinstance(rule, kind) else []
    for _, child in rule.children():
        found.extend(rules_of(child, kind))
    return found
