"""Text datasets from plain files, offline."""

import json

import numpy as np
import pytest

from bricks.data import (
    Batch,
    ConstantScheme,
    DataStream,
    Padding,
    TextFile,
    Vocabulary,
    Window,
    default_corpus_files,
)
from bricks.data.text import default_corpus_files as from_text_module
from bricks.errors import DataFileError


def test_default_corpus_is_offline_and_stable():
    files = default_corpus_files(5)
    assert files == from_text_module(5) and 1 <= len(files) <= 5
    assert all(f.is_file() and f.stat().st_size > 0 for f in files)


def test_word_vocabulary_and_text_file(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("the cat sat\n\nthe dog\n")
    v = Vocabulary.from_files([p], level="word")
    assert v.tokens[:3] == ["<UNK>", "<S>", "</S>"] and v.tokens[3] == "the"
    assert v.decode(v.encode("the dog")) == "the dog"
    assert v.encode("the bird") == [3, 0]
    v.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json").tokens == v.tokens
    json.dumps(v.to_dict())
    ds = TextFile([p], v)
    lines = [x.tolist() for (x,) in DataStream(ds).get_epoch_iterator()]
    assert lines == [[1] + v.encode("the cat sat") + [2], [1] + v.encode("the dog") + [2]]
    with pytest.raises(DataFileError, match="missing.txt"):
        TextFile([tmp_path / "missing.txt"], v)
    assert ds.dictionary["the"] == 3 and ds.dictionary["<UNK>"] == 0  # Fuel's attribute


def test_char_level_language_model_stream():
    files = default_corpus_files(2)
    v = Vocabulary.from_files(files, level="character")
    stream = Window(DataStream(TextFile(files, v)), 8, 8, 1, overlapping=False)
    batches = Padding(Batch(stream, ConstantScheme(16)), mask_sources=())
    x, y = next(batches.get_epoch_iterator())
    assert x.shape == (16, 8) and y.shape == (16, 8)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    assert x.max() < len(v)
