"""Image transformers: random flips and crops, and Fuel's ``fuel.transformers.image``.

``ImagesFromBytes``, ``MinimumImageDimensions``, ``RandomFixedSizeCrop`` and
``Random2DRotation`` port Fuel's transformers of the same names. Pillow is
an optional dependency (``pip install 'bricks[image]'``), imported only
when one of the transformers that need it is built.

Randomness: in a stream, item ``k`` of epoch ``e`` draws from
``numpy.random.RandomState([seed, e, k])``, so a run resumes exactly and
prefetching never changes it. Fuel's ``rng=`` argument (a
``numpy.random.RandomState``) is accepted: ``transform_source_example`` /
``transform_source_batch`` called directly draw from it as Fuel did, and
streams use a seed drawn once from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from io import BytesIO
from typing import Any

import numpy as np

from bricks.errors import ConfigurationError, DataShapeError, UnsupportedLayoutError

from ._streams import AbstractDataStream
from ._transformers import ExpectsAxisLabels, SourcewiseTransformer, _check_bytes

__all__ = [
    "ImagesFromBytes",
    "MinimumImageDimensions",
    "Random2DRotation",
    "RandomCrop",
    "RandomFixedSizeCrop",
    "RandomFlip",
]


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - pillow is in the test extra
        raise ImportError(
            "this image transformer needs Pillow: pip install 'bricks[image]' (or pillow>=10)"
        ) from e
    return Image


def _resample(name: str, where: str) -> Any:
    image = _pil()
    try:
        return image.Resampling[str(name).upper()]
    except KeyError:
        known = [m.name.lower() for m in image.Resampling]
        raise ConfigurationError(
            f"{where}: unknown resampling filter {name!r}; expected one of {known}"
        ) from None


class _Random(SourcewiseTransformer):
    """A sourcewise transformer whose draws come from ``(seed, epoch, count)``."""

    def _init_random(self, seed: int | None, rng: Any) -> None:
        if rng is not None and seed is not None:
            raise ConfigurationError(f"{type(self).__name__}: give seed or rng, not both")
        self._rng = rng
        self._seed = None if seed is None and rng is not None else int(1 if seed is None else seed)

    @property
    def seed(self) -> int:
        """The seed of the stream's draws (drawn once from ``rng`` when one was given)."""
        if self._seed is None:
            self._seed = int(self._rng.randint(0, 2**31 - 1))
        return self._seed

    @property
    def rng(self) -> np.random.RandomState:
        """The ``RandomState`` of direct calls (the one given, or one seeded by ``seed``)."""
        if self._rng is None:
            self._rng = np.random.RandomState(self.seed)
        return self._rng

    def _example(self, x: Any, name: str, rng: np.random.RandomState) -> Any:
        raise NotImplementedError

    def _batch(self, x: Any, name: str, rng: np.random.RandomState) -> Any:
        raise NotImplementedError

    def transform_source_example(self, source_example: Any, source_name: str) -> Any:
        return self._example(source_example, source_name, self.rng)

    def transform_source_batch(self, source_batch: Any, source_name: str) -> Any:
        return self._batch(source_batch, source_name, self.rng)

    def transform(self, data: tuple, epoch: int, count: int) -> tuple:
        rng = np.random.RandomState([self.seed, int(epoch), int(count)])
        fn = self._example if self.produces_examples else self._batch
        return tuple(
            fn(x, s, rng) if s in self.which_sources else x
            for s, x in zip(self.data_stream.sources, data, strict=True)
        )


class RandomFlip(SourcewiseTransformer):
    """Flip each example along ``axis`` (of the example) with ``probability``.

    The draws of batch ``k`` of epoch ``e`` come from
    ``default_rng([seed, e, k])``: reproducible and resumable.

    Args:
        data_stream: stream of images, e.g. ``(batch, channel, height, width)``.
        which_sources: sources to flip (default ``("features",)``).
        axis: axis of one example to flip (``-1``: horizontal for CHW).
        probability: chance of flipping each example.
        seed: seed of the draws.
    """

    def __init__(
        self,
        data_stream: AbstractDataStream,
        which_sources: Sequence[str] = ("features",),
        axis: int = -1,
        probability: float = 0.5,
        seed: int = 1,
    ) -> None:
        super().__init__(data_stream, which_sources=which_sources)
        self.axis, self.probability, self.seed = axis, probability, seed

    def transform(self, data: tuple, epoch: int, count: int) -> tuple:
        rng = np.random.default_rng([int(self.seed), int(epoch), int(count)])
        n = 1 if self.produces_examples else len(data[0])
        flips = rng.random(n) < self.probability
        out = []
        for s, x in zip(self.sources, data, strict=True):
            if s not in self.which_sources:
                out.append(x)
                continue
            x = np.array(x, copy=True)
            if self.produces_examples:
                out.append(np.flip(x, self.axis) if flips[0] else x)
                continue
            ax = self.axis if self.axis < 0 else self.axis + 1
            x[flips] = np.flip(x[flips], ax)
            out.append(x)
        return tuple(out)


class RandomCrop(SourcewiseTransformer):
    """Crop a random ``window_shape`` window from the last axes of each example.

    Args:
        data_stream: stream of images ``(batch, channel, height, width)``.
        window_shape: ``(height, width)`` of the crops.
        which_sources: sources to crop (default ``("features",)``).
        padding: zeros added on each side of the last two axes first (CIFAR's 4).
        seed: seed of the draws (``default_rng([seed, epoch, count])``).
    """

    def __init__(
        self,
        data_stream: AbstractDataStream,
        window_shape: tuple[int, int],
        which_sources: Sequence[str] = ("features",),
        padding: int = 0,
        seed: int = 1,
    ) -> None:
        super().__init__(data_stream, which_sources=which_sources)
        self.window_shape = tuple(int(w) for w in window_shape)
        self.padding, self.seed = int(padding), seed

    def _crop(self, x: np.ndarray, rng: np.random.Generator, name: str) -> np.ndarray:
        p = self.padding
        if p:
            x = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(p, p), (p, p)])
        h, w = x.shape[-2:]
        wh, ww = self.window_shape
        if wh > h or ww > w:
            raise DataShapeError(
                f"RandomCrop: source {name!r} has images of {h}x{w} (after padding {p}), "
                f"smaller than the window {wh}x{ww}"
            )
        i = int(rng.integers(0, h - wh + 1))
        j = int(rng.integers(0, w - ww + 1))
        return x[..., i : i + wh, j : j + ww]

    def transform(self, data: tuple, epoch: int, count: int) -> tuple:
        rng = np.random.default_rng([int(self.seed), int(epoch), int(count)])
        out = []
        for s, x in zip(self.sources, data, strict=True):
            if s not in self.which_sources:
                out.append(x)
            elif self.produces_examples:
                out.append(self._crop(np.asarray(x), rng, s))
            else:
                out.append(np.stack([self._crop(np.asarray(e), rng, s) for e in x]))
        return tuple(out)


class ImagesFromBytes(SourcewiseTransformer):
    """Decode encoded images (PNG, JPEG, ...) given as ``bytes`` into arrays.

    Each image becomes a ``(channel, height, width)`` array (a grayscale
    image gets a channel axis of 1); a batch becomes a *list* of them, since
    images may differ in size.

    Args:
        data_stream: a stream whose sources hold ``bytes`` (or lists of them).
        color_mode: Pillow mode to convert to (``'RGB'``, ``'L'``, ...), or
            ``None`` to keep each image's own mode.
        which_sources: the sources to decode (default: all).
    """

    def __init__(
        self,
        data_stream: AbstractDataStream,
        color_mode: str | None = "RGB",
        which_sources: Sequence[str] | None = None,
    ) -> None:
        _pil()
        super().__init__(data_stream, which_sources=which_sources)
        self.color_mode = color_mode
        old = data_stream.axis_labels or {}
        image = ("channel", "height", "width")
        self.axis_labels = {
            s: ((image if self.produces_examples else ("batch", *image))
                if s in self.which_sources else old.get(s))
            for s in data_stream.sources
        }

    def transform_source_example(self, source_example: Any, source_name: str) -> np.ndarray:
        data = _check_bytes(source_example, f"ImagesFromBytes, source {source_name!r}")
        image = _pil().open(BytesIO(data))
        if self.color_mode is not None:
            image = image.convert(self.color_mode)
        array = np.array(image)
        if array.ndim == 3:
            return array.transpose(2, 0, 1)
        if array.ndim == 2:
            return array[np.newaxis]
        raise DataShapeError(  # pragma: no cover - Pillow gives 2 or 3 axes
            f"ImagesFromBytes, source {source_name!r}: decoded an image of shape {array.shape}"
        )

    def transform_source_batch(self, source_batch: Any, source_name: str) -> list[np.ndarray]:
        return [self.transform_source_example(x, source_name) for x in source_batch]


def _resize_channel(channel: np.ndarray, height: int, width: int, resample: Any) -> np.ndarray:
    image = _pil()
    if resample == image.Resampling.NEAREST:  # exact for every dtype
        rows = np.minimum(((np.arange(height) + 0.5) * channel.shape[0] / height).astype(int),
                          channel.shape[0] - 1)
        cols = np.minimum(((np.arange(width) + 0.5) * channel.shape[1] / width).astype(int),
                          channel.shape[1] - 1)
        return channel[rows[:, None], cols[None, :]]
    work = channel if channel.dtype == np.uint8 else channel.astype(np.float32)
    out = np.asarray(image.fromarray(work).resize((width, height), resample=resample))
    return out.astype(channel.dtype)


class MinimumImageDimensions(SourcewiseTransformer, ExpectsAxisLabels):
    """Upsample images smaller than ``minimum_shape`` (height, width); larger ones pass.

    The aspect ratio is kept: both sides are multiplied by the smallest
    factor that reaches the minimum, and rounded up.

    Args:
        data_stream: a stream of images ``(channel, height, width)`` or
            ``(height, width)`` (batches: lists or arrays of them).
        minimum_shape: the minimum ``(height, width)``.
        resample: Pillow's filter: ``'nearest'`` (the default), ``'bilinear'``,
            ``'bicubic'``, ...
        which_sources: the sources to resize (default: all).
    """

    def __init__(
        self,
        data_stream: AbstractDataStream,
        minimum_shape: tuple[int, int],
        resample: str = "nearest",
        which_sources: Sequence[str] | None = None,
    ) -> None:
        self.resample = _resample(resample, "MinimumImageDimensions")
        super().__init__(data_stream, which_sources=which_sources)
        self.minimum_shape = tuple(int(x) for x in minimum_shape)

    def _labels(self, name: str) -> Any:
        return (self.data_stream.axis_labels or {}).get(name)

    def transform_source_batch(self, source_batch: Any, source_name: str) -> list:
        self.verify_axis_labels(
            ("batch", "channel", "height", "width"), self._labels(source_name), source_name
        )
        return [self._resize(x, source_name) for x in source_batch]

    def transform_source_example(self, source_example: Any, source_name: str) -> np.ndarray:
        self.verify_axis_labels(("channel", "height", "width"), self._labels(source_name),
                                source_name)
        return self._resize(source_example, source_name)

    def _resize(self, example: Any, name: str) -> np.ndarray:
        example = np.asarray(example)
        if example.ndim not in (2, 3):
            raise UnsupportedLayoutError(
                f"MinimumImageDimensions, source {name!r}: expected an image of 2 or 3 axes "
                f"((channel,) height, width), found shape {example.shape}"
            )
        min_h, min_w = self.minimum_shape
        h, w = example.shape[-2:]
        if h >= min_h and w >= min_w:
            return example
        factor = max(1.0, min_w / w, min_h / h)
        new_h, new_w = int(math.ceil(h * factor)), int(math.ceil(w * factor))
        if example.ndim == 2:
            return _resize_channel(example, new_h, new_w, self.resample)
        return np.stack([_resize_channel(c, new_h, new_w, self.resample) for c in example])


def _is_image_list(source: Any) -> bool:
    return (
        isinstance(source, list)
        or (isinstance(source, np.ndarray) and source.dtype == object)
    ) and all(isinstance(x, np.ndarray) and x.ndim == 3 for x in source)


class RandomFixedSizeCrop(_Random, ExpectsAxisLabels):
    """Crop a random ``window_shape`` (height, width) window from each image.

    Takes single images ``(channel, height, width)``, batches as 4-D arrays,
    or batches as lists of 3-D arrays of different sizes (which stay lists).

    Args:
        data_stream: the stream of images.
        window_shape: ``(height, width)`` of the crops.
        which_sources: the sources to crop (default: all).
        seed: seed of the draws (default 1).
        rng: Fuel's ``RandomState`` instead of ``seed`` (see the module docstring).
    """

    def __init__(
        self,
        data_stream: AbstractDataStream,
        window_shape: tuple[int, int],
        which_sources: Sequence[str] | None = None,
        seed: int | None = None,
        rng: Any = None,
    ) -> None:
        super().__init__(data_stream, which_sources=which_sources)
        self.window_shape = tuple(int(x) for x in window_shape)
        self._init_random(seed, rng)

    def _labels(self, name: str) -> Any:
        return (self.data_stream.axis_labels or {}).get(name)

    def _batch(self, source: Any, name: str, rng: np.random.RandomState) -> Any:
        self.verify_axis_labels(("batch", "channel", "height", "width"), self._labels(name), name)
        wh, ww = self.window_shape
        if isinstance(source, np.ndarray) and source.ndim == 4:
            h, w = source.shape[2:]
            if h < wh or w < ww:
                raise DataShapeError(
                    f"RandomFixedSizeCrop, source {name!r}: images of {h}x{w} are smaller than "
                    f"the window {wh}x{ww}"
                )
            offsets_w = rng.randint(0, w - ww + 1, size=len(source))
            offsets_h = rng.randint(0, h - wh + 1, size=len(source))
            return np.stack([
                x[:, i : i + wh, j : j + ww]
                for x, i, j in zip(source, offsets_h, offsets_w, strict=True)
            ]) if len(source) else source[:, :, :wh, :ww]
        if _is_image_list(source):
            return [self._crop(x, name, rng) for x in source]
        raise DataShapeError(
            f"RandomFixedSizeCrop, source {name!r}: expected a batch as a list of 3-D arrays "
            f"or a 4-D array, found {type(source).__name__} "
            f"{getattr(source, 'shape', [np.shape(x) for x in source])}"
        )

    def _example(self, example: Any, name: str, rng: np.random.RandomState) -> np.ndarray:
        self.verify_axis_labels(("channel", "height", "width"), self._labels(name), name)
        return self._crop(example, name, rng)

    def _crop(self, example: Any, name: str, rng: np.random.RandomState) -> np.ndarray:
        if not isinstance(example, np.ndarray) or example.ndim != 3:
            raise DataShapeError(
                f"RandomFixedSizeCrop, source {name!r}: expected an image (channel, height, "
                f"width), found shape {np.shape(example)}"
            )
        wh, ww = self.window_shape
        h, w = example.shape[1:]
        if h < wh or w < ww:
            raise DataShapeError(
                f"RandomFixedSizeCrop, source {name!r}: cannot take a {wh}x{ww} window from "
                f"an image of {h}x{w}"
            )
        i = rng.randint(0, h - wh + 1) if h > wh else 0
        j = rng.randint(0, w - ww + 1) if w > ww else 0
        return example[:, i : i + wh, j : j + ww]


def _rotate(example: np.ndarray, degrees: float, resample: Any) -> np.ndarray:
    image = _pil()
    out = []
    for channel in example:
        work = channel if channel.dtype == np.uint8 else channel.astype(np.float32)
        rotated = image.fromarray(work).rotate(degrees, resample=resample)
        out.append(np.asarray(rotated).astype(example.dtype))
    return np.stack(out) if out else example.copy()


class Random2DRotation(_Random, ExpectsAxisLabels):
    """Rotate each image by a random angle in ``[-maximum_rotation, maximum_rotation]``.

    All channels of an image turn together; uncovered corners are 0.
    Takes images ``(channel, height, width)``, 4-D batches, or batches as
    lists or object arrays of 3-D arrays (the format is kept).

    Args:
        data_stream: the stream of images.
        maximum_rotation: the largest angle in radians, in ``(0, pi]``.
        resample: Pillow's filter (``'nearest'``, ``'bilinear'``, ``'bicubic'``).
        which_sources: the sources to rotate (default: all).
        seed: seed of the draws (default 1).
        rng: Fuel's ``RandomState`` instead of ``seed`` (see the module docstring).
    """

    def __init__(
        self,
        data_stream: AbstractDataStream,
        maximum_rotation: float = math.pi,
        resample: str = "nearest",
        which_sources: Sequence[str] | None = None,
        seed: int | None = None,
        rng: Any = None,
    ) -> None:
        if not 0 < maximum_rotation <= math.pi:
            raise ConfigurationError(
                f"Random2DRotation: maximum_rotation must be in (0, pi] radians, found "
                f"{maximum_rotation:.5f}"
            )
        self.resample = _resample(resample, "Random2DRotation")
        super().__init__(data_stream, which_sources=which_sources)
        self.maximum_rotation = float(np.rad2deg(maximum_rotation))
        self._init_random(seed, rng)

    def _labels(self, name: str) -> Any:
        return (self.data_stream.axis_labels or {}).get(name)

    def _batch(self, source: Any, name: str, rng: np.random.RandomState) -> Any:
        self.verify_axis_labels(("batch", "channel", "height", "width"), self._labels(name), name)
        m = self.maximum_rotation
        if isinstance(source, np.ndarray) and source.ndim == 4 and source.dtype != object:
            angles = rng.uniform(-m, m, len(source))
            return np.array(
                [_rotate(x, a, self.resample) for x, a in zip(source, angles, strict=True)],
                dtype=source.dtype,
            ).reshape(source.shape)
        if _is_image_list(source):
            angles = rng.uniform(-m, m, len(source))
            rotated = [_rotate(x, a, self.resample) for x, a in zip(source, angles, strict=True)]
            if isinstance(source, list):
                return rotated
            out = np.empty(len(rotated), dtype=object)
            for i, x in enumerate(rotated):
                out[i] = x
            return out
        raise DataShapeError(
            f"Random2DRotation, source {name!r}: expected a batch as a list of 3-D arrays or "
            f"a 4-D array, found {type(source).__name__} "
            f"{getattr(source, 'shape', [np.shape(x) for x in source])}"
        )

    def _example(self, example: Any, name: str, rng: np.random.RandomState) -> np.ndarray:
        self.verify_axis_labels(("channel", "height", "width"), self._labels(name), name)
        if not isinstance(example, np.ndarray) or example.ndim != 3:
            raise DataShapeError(
                f"Random2DRotation, source {name!r}: expected an image (channel, height, "
                f"width), found shape {np.shape(example)}"
            )
        angle = rng.uniform(-self.maximum_rotation, self.maximum_rotation)
        return _rotate(example, angle, self.resample)
