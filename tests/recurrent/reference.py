"""Hand-written numpy loops, independent of bricks.recurrent, for the tests."""

from __future__ import annotations

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def simple_step(x, h, p):
    return np.tanh(x + h @ p["W"])


def lstm_step(x, h, c, p):
    d = h.shape[-1]
    a = x + h @ p["W_state"]
    i = sigmoid(a[:, :d] + c * p["W_cell_to_in"])
    f = sigmoid(a[:, d : 2 * d] + c * p["W_cell_to_forget"])
    c_new = f * c + i * np.tanh(a[:, 2 * d : 3 * d])
    o = sigmoid(a[:, 3 * d :] + c_new * p["W_cell_to_out"])
    return o * np.tanh(c_new), c_new


def gru_step(x, g, h, p):
    d = h.shape[-1]
    gates = sigmoid(g + h @ p["state_to_gates"])
    u, r = gates[:, :d], gates[:, d:]
    cand = np.tanh(x + (h * r) @ p["state_to_state"])
    return u * cand + (1 - u) * h


def run(step, seqs, states, mask=None, reverse=False):
    """Loop ``step(*seqs_t, *states) -> states`` over time; masked steps keep
    the old states. Returns a list (one per state) of (T, B, d) arrays."""
    T = seqs[0].shape[0]
    outs = [np.zeros((T,) + s.shape) for s in states]
    order = range(T - 1, -1, -1) if reverse else range(T)
    for t in order:
        new = step(*[s[t] for s in seqs], *states)
        new = new if isinstance(new, tuple) else (new,)
        if mask is not None:
            m = np.asarray(mask[t], dtype=np.float64)[:, None]
            new = tuple(m * n + (1 - m) * o for n, o in zip(new, states, strict=True))
        states = new
        for k, s in enumerate(states):
            outs[k][t] = s
    return outs


def numpy_params(brick):
    """Parameter values of ``brick`` (not its children) keyed by short name."""
    return {
        path.rsplit(".", 1)[1]: np.asarray(v, dtype=np.float64)
        for path, v in brick.get_parameter_values().items()
        if path.rsplit(".", 1)[0] == brick.path
    }
