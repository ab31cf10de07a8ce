"""Recurrent bricks against a hand-written ``lax.scan`` LSTM, in one run.

A 2-layer LSTM character language model (vocabulary 64, hidden 256,
sequences of 100, batches of 32): embedding (``LookupTable`` into the gate
space) → ``RecurrentStack([LSTM, LSTM])`` (a ``Fork`` between the layers) →
``Linear`` readout → softmax cross-entropy (workload "W2" of issue 21). The
floor is the same model and equations written by hand with ``lax.scan`` and
differentiated by ``jax.grad``. Two cells: Blocks' (peepholes, learned
initial states; the default ``LSTM``) and the plain cell (``LSTM(peepholes=
False, learn_initial_states=False)``), each against a floor with its own
equations. All train with one jitted step (forward, backward and an optax
Adam update, parameters and optimizer state donated).

Printed: compile seconds; tokens/s (median and range over ``--rounds``
interleaved repetitions of ``--steps`` steps, so every variant sees the same
machine load); the process CPU time per step (all threads; steadier than
wall time on a loaded machine); the ratios bricks / floor per repetition
(median and range); bricks with ``fused_backward=False`` as a third
variant; and the compiled temporary memory of the backward pass (``jax.grad`` of the loss) at
sequence length ``--long`` with and without ``remat`` (for the LM also
with the embedding lookup inside the scanned step, ``input_transforms``; for
the stack alone also with the forks between layers outside the layers'
scans, ``fuse_forks=False``).

Run: ``python bench/bench_recurrent.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bricks.core import Constant, IsotropicGaussian, Linear, LookupTable, apply_with
from bricks.recurrent import LSTM, RecurrentStack


def bricks_model(
    vocab: int, hidden: int, peepholes: bool = True, fused: bool = True, unroll: int = 1
):
    embed = LookupTable(vocab, 4 * hidden, name="embed", weights_init=IsotropicGaussian(0.1))

    def lstm():
        return LSTM(hidden, peepholes=peepholes, learn_initial_states=peepholes)

    stack = RecurrentStack(
        [lstm(), lstm()],
        name="stack",
        weights_init=IsotropicGaussian(0.1),
        biases_init=Constant(0.0),
    )
    readout = Linear(
        hidden,
        vocab,
        name="readout",
        weights_init=IsotropicGaussian(0.1),
        biases_init=Constant(0.0),
    )
    params = {}
    for i, brick in enumerate((embed, stack, readout)):
        brick.initialize(seed=i)
        params.update(brick.get_parameter_values())

    def loss(params, tokens, targets, remat=False, low_memory=False, in_step=False):
        option = None if fused else False  # None: the default (off under remat)

        def forward():
            if in_step:  # the lookup runs inside the scan: recomputed per step under remat
                outputs = stack.apply(
                    tokens,
                    remat=remat,
                    low_memory=low_memory,
                    input_transforms={"inputs": embed.apply},
                    fused_backward=option,
                    unroll=unroll,
                )
            else:
                outputs = stack.apply(
                    embed.apply(tokens),
                    remat=remat,
                    low_memory=low_memory,
                    fused_backward=option,
                    unroll=unroll,
                )
            logits = readout.apply(outputs[stack.apply.outputs.index("states#1")])
            return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

        return apply_with(params, forward)

    return params, loss


def handwritten_model(vocab: int, hidden: int, peepholes: bool = True):
    h = hidden
    keys = iter(jax.random.split(jax.random.key(0), 16))
    normal = lambda shape: 0.1 * jax.random.normal(next(keys), shape)  # noqa: E731

    def layer():
        if not peepholes:
            return {"W": normal((h, 4 * h))}
        return {
            "W": normal((h, 4 * h)),
            "p_in": normal((h,)),
            "p_forget": normal((h,)),
            "p_out": normal((h,)),
            "h0": jnp.zeros((h,)),
            "c0": jnp.zeros((h,)),
        }

    params = {
        "embed": normal((vocab, 4 * h)),
        "l0": layer(),
        "l1": layer(),
        "fork_W": normal((h, 4 * h)),
        "fork_b": jnp.zeros((4 * h,)),
        "out_W": normal((h, vocab)),
        "out_b": jnp.zeros((vocab,)),
    }

    def lstm(p, x, remat=False):
        batch = x.shape[1]

        def step(carry, x_t):
            hs, cs = carry
            a = x_t + hs @ p["W"]
            if peepholes:
                i = jax.nn.sigmoid(a[:, :h] + cs * p["p_in"][None])
                f = jax.nn.sigmoid(a[:, h : 2 * h] + cs * p["p_forget"][None])
            else:
                i, f = jax.nn.sigmoid(a[:, :h]), jax.nn.sigmoid(a[:, h : 2 * h])
            c_new = f * cs + i * jnp.tanh(a[:, 2 * h : 3 * h])
            if peepholes:
                o = jax.nn.sigmoid(a[:, 3 * h :] + c_new * p["p_out"][None])
            else:
                o = jax.nn.sigmoid(a[:, 3 * h :])
            h_new = o * jnp.tanh(c_new)
            return (h_new, c_new), h_new

        if peepholes:
            init = (
                jnp.broadcast_to(p["h0"][None], (batch, h)),
                jnp.broadcast_to(p["c0"][None], (batch, h)),
            )
        else:
            init = (jnp.zeros((batch, h)), jnp.zeros((batch, h)))
        _, hs = jax.lax.scan(jax.checkpoint(step) if remat else step, init, x)
        return hs

    def loss(params, tokens, targets, remat=False):
        x = jnp.take(params["embed"], tokens, axis=0)
        h0 = lstm(params["l0"], x, remat)
        h1 = lstm(params["l1"], h0 @ params["fork_W"] + params["fork_b"][None, None], remat)
        logits = h1 @ params["out_W"] + params["out_b"][None, None]
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

    return params, loss


def train_step(loss, optimizer):
    def step(params, opt_state, tokens, targets):
        value, grads = jax.value_and_grad(loss)(params, tokens, targets)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return jax.jit(step, donate_argnums=(0, 1))


def batch(vocab: int, seq: int, size: int, seed: int):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, vocab, size=(seq + 1, size))
    return jnp.asarray(data[:-1], jnp.int32), jnp.asarray(data[1:], jnp.int32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--seq", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per repetition")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved repetitions (>= 3)")
    ap.add_argument(
        "--cells", nargs="+", default=["blocks", "plain"], choices=["blocks", "plain"]
    )
    ap.add_argument("--long", type=int, default=1000, help="sequence length of the memory test")
    ap.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="PyTorch's intra-op threads (its OpenMP threads spin: on a loaded machine 2 threads "
        "took 10x the CPU time of 1)",
    )
    ap.add_argument(
        "--unroll", type=int, nargs="*", default=[], help="also bricks with lax.scan unroll=K"
    )
    ap.add_argument(
        "--malloc",
        action="store_true",
        help="tune glibc's malloc first (bricks.core.allocator.tune_cpu_allocator, as "
        "python -m experiments.run --malloc-tuning does on CPU): no page faults of XLA's "
        "per-step scratch",
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.hidden, args.seq, args.batch, args.steps, args.rounds, args.long = 32, 20, 4, 2, 3, 100

    if args.malloc:  # before jax's backend starts its threads
        from bricks.core.allocator import tune_cpu_allocator

        print(f"malloc tuned: {tune_cpu_allocator()}")
    device = jax.devices()[0]
    print(f"device: {device.device_kind} ({jax.default_backend()}), jax {jax.__version__}")
    print(
        f"model: 2-layer LSTM LM, vocab {args.vocab}, hidden {args.hidden}, "
        f"seq {args.seq}, batch {args.batch}"
    )
    if args.skip_throughput:
        return memory(args)
    print(f"load average before: {os.getloadavg()[0]:.1f} (1 min), {os.cpu_count()} CPUs")
    tokens, targets = batch(args.vocab, args.seq, args.batch, 0)
    optimizer = optax.adam(1e-3)
    cells = {"blocks": True, "plain": False}
    for cell in args.cells:
        throughput(args, cell, cells[cell], tokens, targets, optimizer)
    print(f"load average after: {os.getloadavg()[0]:.1f} (1 min)")

    if not args.skip_memory:
        memory(args)


def _jax_runner(step, params, opt_state, tokens, targets):
    """Compile ``step``; return its compile seconds and ``run(n)``, which takes
    ``n`` steps and waits for the last one."""
    start = time.perf_counter()
    compiled = step.lower(params, opt_state, tokens, targets).compile()
    compile_s = time.perf_counter() - start
    state = [params, opt_state]

    def run(n: int) -> None:
        value = None
        for _ in range(n):
            state[0], state[1], value = compiled(state[0], state[1], tokens, targets)
        value.block_until_ready()

    run(1)  # warm up
    return compile_s, run


def torch_runner(args, tokens, targets):
    """PyTorch's fused LSTM (``nn.LSTM``, oneDNN on CPU) on W2 with
    ``--torch-threads`` threads, or ``None`` when torch is not installed. Its
    layer 0 has an input matrix (embedding 256 -> 4 x 256) where bricks looks
    the tokens up in the gate space directly."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    torch.set_num_threads(args.torch_threads)

    class LM(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(args.vocab, args.hidden)
            self.lstm = torch.nn.LSTM(args.hidden, args.hidden, num_layers=2)
            self.readout = torch.nn.Linear(args.hidden, args.vocab)

        def forward(self, tokens):
            return self.readout(self.lstm(self.embed(tokens))[0])

    model = LM()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.as_tensor(np.array(tokens), dtype=torch.long)
    y = torch.as_tensor(np.array(targets), dtype=torch.long).reshape(-1)

    def run(n: int) -> None:
        for _ in range(n):
            optimizer.zero_grad(set_to_none=True)
            logits = model(x).reshape(-1, args.vocab)
            loss = torch.nn.functional.cross_entropy(logits, y)
            loss.backward()
            optimizer.step()
        loss.item()

    run(3)  # warm up (oneDNN builds its primitives on the first calls)
    return 0.0, run


def throughput(args, cell: str, peepholes: bool, tokens, targets, optimizer) -> None:
    """Interleaved repetitions of bricks (fused and unfused backward, ``--unroll``
    variants), the floor and (plain cell) PyTorch's fused LSTM."""
    builds = {
        "bricks": lambda: bricks_model(args.vocab, args.hidden, peepholes),
        "bricks, fused_backward=False": lambda: bricks_model(
            args.vocab, args.hidden, peepholes, fused=False
        ),
        "floor (lax.scan)": lambda: handwritten_model(args.vocab, args.hidden, peepholes),
    }
    for k in args.unroll:
        builds[f"bricks, unroll={k}"] = lambda k=k: bricks_model(
            args.vocab, args.hidden, peepholes, unroll=k
        )
    runs = {}
    for name, build in builds.items():
        params, loss = build()
        step = train_step(loss, optimizer)
        compile_s, run = _jax_runner(step, params, optimizer.init(params), tokens, targets)
        runs[name] = {"run": run, "compile_s": compile_s, "wall": [], "cpu": [], "faults": []}
    if not peepholes:
        found = torch_runner(args, tokens, targets)
        if found is None:
            print("  (torch is not installed: no PyTorch nn.LSTM side by side)")
        else:
            runs["PyTorch nn.LSTM (oneDNN)"] = {
                "run": found[1], "compile_s": 0.0, "wall": [], "cpu": [], "faults": []
            }
    for _ in range(args.rounds):  # interleaved, so all see the same machine load
        for run in runs.values():
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start, cpu = time.perf_counter(), time.process_time()
            run["run"](args.steps)
            run["wall"].append((time.perf_counter() - start) / args.steps)
            run["cpu"].append((time.process_time() - cpu) / args.steps)
            run["faults"].append(
                (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / args.steps
            )
    tokens_per_step = args.seq * args.batch
    print(f"{cell} cell ({'peepholes, learned' if peepholes else 'no peepholes, zero'} initial "
          f"states), {args.rounds} interleaved repetitions of {args.steps} steps:")
    for name, run in runs.items():
        rates = [tokens_per_step / w for w in run["wall"]]
        print(
            f"  {name:>29}: compile {run['compile_s']:5.2f} s, tokens/s median "
            f"{statistics.median(rates):,.0f} (range {min(rates):,.0f}-{max(rates):,.0f}), "
            f"CPU {statistics.median(run['cpu']) * 1e3:.0f} ms/step, "
            f"{statistics.median(run['faults']):,.0f} page faults/step"
        )
    floor = runs["floor (lax.scan)"]
    for name in runs:
        if name == "floor (lax.scan)":
            continue
        wall = [f / b for f, b in zip(floor["wall"], runs[name]["wall"], strict=True)]
        cpu = [f / b for f, b in zip(floor["cpu"], runs[name]["cpu"], strict=True)]
        print(
            f"  ratio {name} / floor: tokens/s median {statistics.median(wall):.3f} "
            f"(range {min(wall):.3f}-{max(wall):.3f}); CPU time median "
            f"{statistics.median(cpu):.3f} (range {min(cpu):.3f}-{max(cpu):.3f})"
        )


def memory(args: argparse.Namespace) -> None:
    """Compiled temporary memory of the backward pass at sequence ``--long``."""
    long_tokens, long_targets = batch(args.vocab, args.long, args.batch, 1)
    params, loss = bricks_model(args.vocab, args.hidden)
    stack = RecurrentStack(
        [LSTM(args.hidden), LSTM(args.hidden)],
        name="stack",
        weights_init=IsotropicGaussian(0.1),
        biases_init=Constant(0.0),
    )
    stack.initialize(seed=0)
    stack_params = stack.get_parameter_values()
    inputs = jax.ShapeDtypeStruct((args.long, args.batch, 4 * args.hidden), jnp.float32)

    def lm(low_memory, remat, in_step=False):
        def fn(p):
            return loss(
                p, long_tokens, long_targets, remat=remat, low_memory=low_memory, in_step=in_step
            )

        return jax.jit(jax.grad(fn)).lower(params)

    def stack_only(low_memory, remat, fuse_forks=None):
        def fn(p, x):
            out = apply_with(
                p,
                lambda: stack.apply(
                    x,
                    remat=remat,
                    low_memory=low_memory,
                    **({} if low_memory else {"fuse_forks": fuse_forks}),
                ),
            )
            return jnp.sum(out[2])

        return jax.jit(jax.grad(fn)).lower(stack_params, inputs)

    def temp(lowered):
        return lowered.compile().memory_analysis().temp_size_in_bytes

    print(
        f"backward temp memory (MiB), sequence {args.long}, batch {args.batch}, "
        f"hidden {args.hidden}:"
    )
    for what, lower, variants in (
        # (label, remat, extra keywords)
        ("LM", lm, (("remat", True, {}), ("remat + lookup in step", True, {"in_step": True}))),
        (
            "stack only",
            stack_only,
            (("remat, unfused fork", True, {"fuse_forks": False}), ("remat", True, {})),
        ),
    ):
        for low_memory in (False, True):
            mode = "low_memory" if low_memory else "per-layer scans"
            base = temp(lower(low_memory, False))
            print(f"  {what:>10}, {mode:>15}: no remat {base / 2**20:7.1f}", flush=True)
            for label, remat, extra in variants:
                if low_memory and "fuse_forks" in extra:
                    continue  # one scan for all layers: the forks are in it already
                size = temp(lower(low_memory, remat, **extra))
                print(
                    f"  {'':>10}  {'':>15}  {label:>24} {size / 2**20:7.1f}, "
                    f"ratio {size / base:.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
