"""Named error classes of bricks.

Every error says what was expected, what arrived, where (brick path, source
name, shape, file) and, where it can, how to fix it. Each layer keeps its own
section below; this module imports nothing from bricks so every layer
(including the jax-free data layer) may import it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["BricksError", "did_you_mean"]


class BricksError(Exception):
    """Base class of every error raised by bricks."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return a ``" (did you mean 'x'?)"`` suffix, or ``""`` when nothing is close."""
    candidates = [str(c) for c in candidates]
    same_but_case = [c for c in candidates if c.lower() == str(name).lower()]
    close = same_but_case or difflib.get_close_matches(str(name), candidates, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- core: bricks, lifecycle, parameters ------------------------------------


class ConfigurationError(BricksError, AttributeError, ValueError):
    """A brick lacks a configuration attribute it needs (e.g. ``input_dim``).

    Also a ``ValueError``, as Blocks raised one for missing configuration
    and unknown dimensions, so ``except ValueError`` in ported code works.
    """


class LazyArgumentError(BricksError, ValueError):
    """A lazy constructor argument (``@lazy``) was given twice or is unknown."""


class ConfigurationConflict(BricksError, ValueError):
    """A parent pushed a value that contradicts one the user set on a child."""


class NotInitializedError(BricksError, RuntimeError):
    """A brick's parameters were read before ``initialize()`` gave them values."""


class ParameterError(BricksError, KeyError):
    """An unknown parameter path, or a value of the wrong shape or dtype."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ShapeError(BricksError, ValueError):
    """An input of the wrong shape reached a brick."""


class BrickTreeError(BricksError, ValueError):
    """The brick hierarchy is malformed (two parents, duplicate names, ...)."""


class InputTypeError(BricksError, TypeError):
    """An input of the wrong dtype reached a brick (e.g. float indices for a lookup)."""


class SelectionError(BricksError, ValueError):
    """A :class:`~bricks.core.Selector` path is malformed or matches nothing."""


# --- graph -------------------------------------------------------------------


class GraphError(BricksError, ValueError):
    """A computation graph was built, selected or evaluated with bad arguments."""


class GraphTypeError(GraphError, TypeError):
    """A graph function got an argument of the wrong type (a bare role where a
    list of roles goes); also a ``TypeError``, as Blocks raised."""


# --- recurrent ---------------------------------------------------------------


class RecurrentError(BricksError, ValueError):
    """A recurrent application was declared or called inconsistently (a state
    that is not an output, sequences of different lengths, a bad mask ...)."""


class SequenceShapeError(RecurrentError, ShapeError):
    """A sequence, state or mask of a recurrent application has the wrong shape:
    a missing batch axis (sequences are time-major ``(time, batch, features)``),
    a feature size that is not the brick's, batches that disagree."""


class InitialStateError(RecurrentError, KeyError):
    """A state of a recurrent application has no initial value: none was passed
    and the brick's ``initial_states`` application does not produce it.

    Also a ``KeyError``, as Blocks raised for a state it could not find."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


# --- sequence generators -----------------------------------------------------


class AttentionError(RecurrentError):
    """An attention brick got states or an attended sequence it cannot use
    (a missing state, no ``attended``, clashing glimpse names)."""


class SequenceGeneratorError(RecurrentError):
    """A sequence generator, readout, emitter or beam search was configured or
    called inconsistently (missing key, unknown source, bad ``eos``)."""


# --- data (sections below are appended by each layer) ------------------------


class DataError(BricksError):
    """Base class of the errors raised by :mod:`bricks.data`."""


class SourceError(DataError, KeyError, ValueError):
    """An unknown source name, or streams whose sources do not match.

    Also a ``ValueError``: Fuel raised ``KeyError`` (``Rename``) or
    ``ValueError`` (datasets, ``FilterSources``, ``Merge``) for these."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataShapeError(DataError, ValueError):
    """A source holds data of another shape or dtype than expected."""


class BucketError(DataShapeError):
    """A sequence is longer than the largest length bucket of ``Padding(buckets=...)``
    (or a buckets function gave a shorter length); sequences are never cut."""


class RequestError(DataError, ValueError):
    """A request (or dataset state) that does not fit what is read: a request
    given to a transformer, ``None`` given to an indexable dataset."""


class DataTypeError(DataError, TypeError):
    """Data of the wrong Python type (bytes expected, unsorted indices for an
    HDF5 read without ``sort_indices``)."""


class AxisLabelsError(DataError, ValueError):
    """A source's axis labels are not those a transformer expects."""


class UnsupportedLayoutError(DataError, NotImplementedError):
    """Data of a layout a transformer does not handle (e.g. an image of 4 axes),
    or a transformer asked to turn batches into examples without saying how."""


class DataIndexError(DataError, IndexError):
    """A request asks for an example outside a dataset or split."""


class DataFileError(DataError, OSError):
    """A data file is missing, truncated, corrupt or not in the Fuel HDF5 layout."""


class SchemeError(DataError, ValueError):
    """An iteration scheme was configured with impossible arguments."""


class BatchStrictnessError(DataError, ValueError):
    """``Batch(strictness=2)`` met an incomplete last batch."""


class IterationStateError(DataError, ValueError):
    """A ``get_state()`` value that does not fit the stream it is given to."""


class WorkerError(DataError, RuntimeError):
    """A prefetching worker raised, or died without a word."""


class DownloadError(DataError, OSError):
    """A download failed (offline, HTTP error) or its checksum did not match."""


class ConversionError(DataError, ValueError):
    """An original dataset file (idx, CIFAR pickle, text) is malformed or unsafe."""


# --- training: algorithms, main loop, log, extensions ------------------------


class StepRuleError(BricksError, ValueError):
    """A step rule got bad hyperparameters, an unknown name, or an unusable state."""


class AlgorithmError(BricksError, ValueError):
    """A training algorithm was set up or fed wrongly (unknown source, no parameters, ...)."""


class CostShapeError(AlgorithmError, TypeError):
    """The cost given to training or monitoring is not a scalar (e.g. per-example
    costs of shape ``(batch,)`` where their ``.mean()`` was meant)."""


class ExampleMaskError(BricksError, ValueError):
    """Batches padded to full size (an ``example_mask`` source, from ``PadBatch``)
    meet a cost or monitored value that does not read the mask, so the padded
    rows would count: the message names the value and how to honour the mask."""


class NonFiniteCostError(BricksError, FloatingPointError):
    """The cost (or a step) became NaN or infinite while training without RemoveNotFinite."""


class CostSpikeError(NonFiniteCostError):
    """A monitored cost jumped above ``spike_factor`` times its running median
    (``RollbackOnNonFinite(spike_factor=...)``); handled like a non-finite cost."""


class RollbackLimitError(NonFiniteCostError):
    """Training diverged again after ``RollbackOnNonFinite`` had rolled back
    ``max_rollbacks`` times; the message lists every rollback."""


class TooManySkippedStepsError(NonFiniteCostError):
    """RemoveNotFinite skipped ``max_consecutive`` non-finite steps in a row."""


class MainLoopError(BricksError, RuntimeError):
    """The main loop was run, resumed or restored wrongly."""


class MissingAttributeError(BricksError, AttributeError):
    """An attribute that does not exist here was asked for (``MainLoop.model``
    without a model, ``Checkpoint(save_separately=[...])`` naming something
    the main loop lacks)."""


class ExtensionError(BricksError, ValueError):
    """An extension was configured wrongly (unknown condition, missing record, ...)."""


class RecordNameError(ExtensionError):
    """Two monitored quantities would write the same log record, so one would
    silently replace the other; the message names both."""


class LogError(BricksError, ValueError):
    """A training log could not be written, read or followed."""


# --- checkpoint --------------------------------------------------------------


class CheckpointError(BricksError):
    """Base class of the errors raised by :mod:`bricks.checkpoint`."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No (complete) checkpoint exists at the given path."""


class CheckpointCorruptError(CheckpointError, ValueError):
    """A checkpoint file is missing, truncated or fails its sha256 check; the
    message names the checkpoint and the file."""


class UnsafeCheckpointError(CheckpointError, ValueError):
    """A checkpoint holds something that could execute code when loaded (a
    pickle, an object array, metadata naming a class); it is refused unopened."""


class CheckpointLockedError(CheckpointError, RuntimeError):
    """Another process (its pid is named) holds the lock of a checkpoint directory."""


class CheckpointMismatchError(CheckpointError, ValueError):
    """A checkpoint does not fit the model it is restored into (a parameter
    path missing, or a shape that differs: both shapes are named)."""


class CheckpointWriteError(CheckpointError, TypeError):
    """A value cannot be written to a checkpoint in an open format (an object
    array, a non-JSON value in the state)."""


class CheckpointWaitTimeoutError(CheckpointError, TimeoutError):
    """The end of training waited longer than ``Checkpoint(exit_wait_s=...)``
    for a checkpoint being written; the previous checkpoint stays valid."""


# --- plot --------------------------------------------------------------------


class PlotError(BricksError, ValueError):
    """A live plot was configured wrongly (a document name that is no URL path,
    an empty channel group, a non-loopback address without ``allow_remote``)."""


class PlotServerError(BricksError, OSError):
    """The live-plot server could not start (port taken, address unknown) or died."""


# --- experiments -------------------------------------------------------------


class ExperimentError(BricksError, ValueError):
    """An experiment config or run directory is unusable (no ``get_config``,
    ``build`` returned no main loop, nothing to resume ...)."""


class OverrideError(ExperimentError):
    """A ``--set key=value`` override names an unknown key, is not a plain
    literal (code is never evaluated), or has the wrong type for its key."""


class RunRefusedError(ExperimentError):
    """The runner refused to touch a run directory: it is locked by a live run,
    or a ``--resume`` would change the experiment (config, step rule, batch size)."""


# --- distributed: meshes, shardings, process groups --------------------------


class DistributedError(BricksError, RuntimeError):
    """The process group could not start, or a collective step went wrong."""


class MeshError(DistributedError, ValueError):
    """A device mesh was asked for devices that do not exist (or none)."""


class BatchShardingError(DistributedError, ValueError):
    """A batch cannot be split evenly over the devices (or processes) of a mesh."""


class ShardingError(DistributedError, ValueError):
    """Sharded (FSDP-style) parameters were asked for wrongly: without a mesh, with a
    bad size threshold, or with settings that contradict the mesh's own."""


class CheckpointCommitError(CheckpointError, DistributedError):
    """A checkpoint of a multi-process run was not committed: the processes disagree
    on the step or the data position of the save, or one did not reach the commit
    barrier (lost, or past the timeout); the previous checkpoint stays the newest."""


class ProcessSliceError(SchemeError):
    """A global batch cannot be split evenly over the processes that read it."""


class ProcessLostError(DistributedError):
    """A process of the group died or stopped answering: the message names it (its
    index, the step it last reached) and the runtime error that revealed it."""


class DeviceAssignmentError(DistributedError, ValueError):
    """The local GPUs cannot be split evenly over the local processes of ``--processes``."""
