"""bricks: Blocks, the composable-bricks deep learning toolkit, rebuilt on JAX.

The package root stays light so that ``bricks.data`` (host-side numpy and
h5py only) never imports jax; the bricks themselves live in
:mod:`bricks.core`, :mod:`bricks.recurrent` and :mod:`bricks.graph`.
"""

__version__ = "0.1.0.dev0"
