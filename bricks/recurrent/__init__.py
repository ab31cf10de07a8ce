"""Recurrent bricks: the ``recurrent`` decorator, the classic transitions,
:class:`Bidirectional` and :class:`RecurrentStack`.

Sequences are time-major ``(time, batch, features)`` with ``(time, batch)``
masks; every loop is one :func:`bricks.core.scan`.
"""

from bricks.recurrent._architectures import LSTM, GatedRecurrent, SimpleRecurrent
from bricks.recurrent._attention import (
    AttentionRecurrent,
    SequenceContentAttention,
    masked_softmax,
)
from bricks.recurrent._beam_search import BeamSearch, BeamSearchResult
from bricks.recurrent._bidirectional import Bidirectional
from bricks.recurrent._emitters import AbstractEmitter, SoftmaxEmitter, TrivialEmitter
from bricks.recurrent._feedback import AbstractFeedback, LookupFeedback, TrivialFeedback
from bricks.recurrent._fused_backward import recurrent_dot
from bricks.recurrent._readout import Readout
from bricks.recurrent._recurrent import BaseRecurrent, RecurrentApplication, recurrent
from bricks.recurrent._sequence_generator import FakeAttentionRecurrent, SequenceGenerator
from bricks.recurrent._stack import RECURRENTSTACK_SEPARATOR, RecurrentStack

__all__ = [
    "recurrent",
    "recurrent_dot",
    "BaseRecurrent",
    "RecurrentApplication",
    "SimpleRecurrent",
    "LSTM",
    "GatedRecurrent",
    "Bidirectional",
    "RecurrentStack",
    "RECURRENTSTACK_SEPARATOR",
    "SequenceContentAttention",
    "AttentionRecurrent",
    "masked_softmax",
    "SequenceGenerator",
    "Readout",
    "AbstractEmitter",
    "SoftmaxEmitter",
    "TrivialEmitter",
    "AbstractFeedback",
    "LookupFeedback",
    "TrivialFeedback",
    "FakeAttentionRecurrent",
    "BeamSearch",
    "BeamSearchResult",
]
