"""MNIST, CIFAR10 and TextCorpus over converter-written files, with Fuel's default transformers."""

import json

import numpy as np
import pytest
from test_converters import cifar_batch, write_cifar, write_mnist

from bricks.data import (
    CIFAR10,
    MNIST,
    DataStream,
    SequentialScheme,
    ShuffledScheme,
    TextCorpus,
    convert,
)
from bricks.errors import DataFileError


@pytest.fixture
def mnist(tmp_path, monkeypatch):
    arrays = write_mnist(tmp_path, n_train=6, n_test=3)
    convert("mnist", tmp_path)  # writes <dir>/mnist.hdf5
    monkeypatch.setenv("BRICKS_DATA_PATH", str(tmp_path))
    return arrays


def test_mnist_default_stream_scales_pixels_to_unit_float32(mnist):
    imgs, labels = mnist["train"]
    stream = DataStream.default_stream(MNIST(("train",)), iteration_scheme=SequentialScheme(6, 4))
    batches = list(stream.get_epoch_iterator())
    features = np.concatenate([b[0] for b in batches])
    targets = np.concatenate([b[1] for b in batches])
    assert features.dtype == np.float32 and features.shape == (6, 1, 28, 28)
    np.testing.assert_allclose(features[:, 0], imgs.astype(np.float64) / 255.0, rtol=1e-6)
    assert 0.0 <= features.min() and features.max() <= 1.0
    np.testing.assert_array_equal(targets[:, 0], labels)  # targets are left alone


def test_plain_stream_of_mnist_still_gives_the_stored_uint8(mnist):
    imgs, _ = mnist["t10k"]
    stream = DataStream(MNIST(("test",)), iteration_scheme=SequentialScheme(3, 3))
    (features, _), = list(stream.get_epoch_iterator())
    assert features.dtype == np.uint8
    np.testing.assert_array_equal(features[:, 0], imgs)


def test_mnist_loads_in_memory_unless_told_otherwise(mnist):
    assert MNIST(("train",)).load_in_memory  # Fuel's default for MNIST
    assert not MNIST(("train",), load_in_memory=False).load_in_memory


def test_mnist_default_stream_resumes_mid_epoch(mnist):
    def build():
        return DataStream.default_stream(
            MNIST(("train",)), iteration_scheme=ShuffledScheme(6, 2, seed=3)
        )

    full = [b[0] for b in build().get_epoch_iterator()]
    a = build()
    it = a.get_epoch_iterator()
    next(it)
    b = build()
    b.set_state(json.loads(json.dumps(a.get_state())))
    for x, y in zip(full[1:], [b[0] for b in b.get_epoch_iterator()], strict=True):
        np.testing.assert_array_equal(x, y)


def test_cifar10_default_stream(tmp_path):
    batches = [cifar_batch(2, i) for i in range(6)]
    write_cifar(tmp_path, batches)
    out = convert("cifar10", tmp_path, tmp_path / "c.hdf5")
    dataset = CIFAR10(("test",), path=out)
    assert dataset.load_in_memory  # Fuel's default for CIFAR10
    (features, targets), = list(
        DataStream.default_stream(dataset, iteration_scheme=SequentialScheme(2, 2))
        .get_epoch_iterator()
    )
    expected = batches[5][b"data"].reshape(2, 3, 32, 32).astype(np.float64) / 255.0
    assert features.dtype == np.float32
    np.testing.assert_allclose(features, expected, rtol=1e-6)
    np.testing.assert_array_equal(targets[:, 0], batches[5][b"labels"])


def test_text_corpus_has_its_vocabulary_and_no_scaling(tmp_path):
    (tmp_path / "input.txt").write_text("abc\nba\ncab\n")
    convert("text", tmp_path)
    dataset = TextCorpus(("train",), path=tmp_path / "text.hdf5")
    assert TextCorpus.default_transformers == ()
    vocab = dataset.vocabulary
    (first,) = dataset.get_data(None, [0])
    assert vocab.decode(first[0]) == "abc"
    assert dataset.dictionary["a"] == vocab.index["a"]


def test_missing_file_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.setenv("BRICKS_DATA_PATH", str(tmp_path))
    with pytest.raises(DataFileError, match="python -m bricks.data convert mnist"):
        MNIST(("train",))
