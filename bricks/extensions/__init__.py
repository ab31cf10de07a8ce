"""Training extensions: stopping, monitoring, printing, progress, timing, checkpoints, plots."""

from bricks.extensions.aggregation import (
    BATCH_MEAN,
    CONCATENATE,
    MAX,
    MEAN,
    MIN,
    PERPLEXITY,
    STACK,
    Aggregation,
    MonitoredQuantity,
)
from bricks.extensions.base import CALLBACKS, CONDITION_KEYWORDS, SimpleExtension, TrainingExtension
from bricks.extensions.checkpoint import Checkpoint, Load
from bricks.extensions.composite import CompositeExtension
from bricks.extensions.evaluator import DatasetEvaluator
from bricks.extensions.monitoring import DataStreamMonitoring, TrainingDataMonitoring
from bricks.extensions.plot import Plot
from bricks.extensions.predicates import OnLogRecord
from bricks.extensions.printing import Printing
from bricks.extensions.progress import ProgressBar
from bricks.extensions.rollback import RollbackOnNonFinite
from bricks.extensions.stopping import EarlyStopping, FinishIfNoImprovementAfter
from bricks.extensions.timing import Timestamp, Timing
from bricks.extensions.training import (
    FinishAfter,
    FinishIfNoImprovement,
    SharedVariableModifier,
    TrackTheBest,
)

__all__ = [
    "TrainingExtension",
    "SimpleExtension",
    "CompositeExtension",
    "OnLogRecord",
    "EarlyStopping",
    "FinishIfNoImprovementAfter",
    "CALLBACKS",
    "CONDITION_KEYWORDS",
    "FinishAfter",
    "SharedVariableModifier",
    "TrackTheBest",
    "FinishIfNoImprovement",
    "Checkpoint",
    "Load",
    "RollbackOnNonFinite",
    "Plot",
    "Printing",
    "ProgressBar",
    "Timing",
    "Timestamp",
    "TrainingDataMonitoring",
    "DataStreamMonitoring",
    "DatasetEvaluator",
    "Aggregation",
    "MEAN",
    "BATCH_MEAN",
    "MIN",
    "MAX",
    "CONCATENATE",
    "PERPLEXITY",
    "STACK",
    "MonitoredQuantity",
]
