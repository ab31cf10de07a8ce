"""The experiment runner (``python -m experiments.run CONFIG.py``) and example configs.

Configs live in ``experiments/configs/``; helpers they share are in
:mod:`experiments.common`. See ``docs/experiments.md``.
"""
