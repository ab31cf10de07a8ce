"""Text datasets: a vocabulary and a line-by-line dataset of token ids.

Everything works offline: :func:`default_corpus_files` finds plain-text files
that every Python installation ships (the standard library's ``LICENSE.txt``
and module sources), enough for a character-level language model example.
"""

from __future__ import annotations

import collections
import json
import os
import sysconfig
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bricks.errors import ConversionError, DataFileError

from ._datasets import IterableDataset

__all__ = ["TextFile", "Vocabulary", "default_corpus_files"]


def default_corpus_files(max_files: int = 20) -> list[Path]:
    """Plain-text files shipped with Python: the stdlib ``LICENSE.txt`` and ``.py`` sources.

    Args:
        max_files: how many files at most (``LICENSE.txt`` first, then module
            sources in name order, so the list is the same on every call).

    >>> files = default_corpus_files(3)
    >>> len(files) >= 1 and all(f.is_file() for f in files)
    True
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in [stdlib / "LICENSE.txt"] if p.is_file()]
    files += sorted(p for p in stdlib.glob("*.py") if p.is_file())
    if not files:
        raise DataFileError(f"no text files found in the standard library at {stdlib}")
    return files[:max_files]


def _read(path: str | os.PathLike) -> str:
    try:
        return Path(path).read_text(encoding="utf8", errors="replace")
    except OSError as e:
        raise DataFileError(f"cannot read text file {os.fspath(path)!r}: {e}") from e


def _tokens(text: str, level: str) -> list[str]:
    return list(text) if level == "character" else text.split()


class Vocabulary:
    """Tokens ↔ ids, with special tokens first (``<UNK>``, ``<S>``, ``</S>``).

    Args:
        tokens: the tokens in id order (specials included).
        level: ``"character"`` or ``"word"``.
        unk_token, bos_token, eos_token: the special tokens.

    >>> v = Vocabulary.build(["abca"], level="character")
    >>> v.encode("cab"), v.decode(v.encode("cab"))
    ([5, 3, 4], 'cab')
    """

    def __init__(
        self,
        tokens: Sequence[str],
        level: str = "word",
        unk_token: str = "<UNK>",
        bos_token: str = "<S>",
        eos_token: str = "</S>",
    ) -> None:
        if level not in ("character", "word"):
            raise ConversionError(
                f"Vocabulary: level must be 'character' or 'word', found {level!r}"
            )
        self.tokens = list(tokens)
        self.level = level
        self.unk_token, self.bos_token, self.eos_token = unk_token, bos_token, eos_token
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if unk_token not in self.index:
            raise ConversionError(
                f"Vocabulary: the unknown token {unk_token!r} is not in the tokens"
            )

    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        level: str = "word",
        max_size: int | None = None,
        min_count: int = 1,
        **specials: str,
    ) -> Vocabulary:
        """Count tokens of ``texts``; most frequent first (ties by token), specials before."""
        counts: collections.Counter = collections.Counter()
        for text in texts:
            counts.update(_tokens(text, level))
        names = {"unk_token": "<UNK>", "bos_token": "<S>", "eos_token": "</S>", **specials}
        special = [names["unk_token"], names["bos_token"], names["eos_token"]]
        ranked = sorted(
            (t for t, c in counts.items() if c >= min_count and t not in special),
            key=lambda t: (-counts[t], t),
        )
        if max_size is not None:
            ranked = ranked[: max(0, max_size - len(special))]
        return cls(special + ranked, level, **names)

    @classmethod
    def from_files(
        cls, files: Iterable[str | os.PathLike], level: str = "word", **kwargs: Any
    ) -> Vocabulary:
        """Build from the text of ``files``."""
        return cls.build((_read(f) for f in files), level, **kwargs)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        unk = self.index[self.unk_token]
        return [self.index.get(t, unk) for t in _tokens(text, self.level)]

    def decode(self, ids: Iterable[int]) -> str:
        sep = "" if self.level == "character" else " "
        return sep.join(self.tokens[int(i)] for i in ids)

    def to_dict(self) -> dict:
        return {
            "tokens": self.tokens,
            "level": self.level,
            "unk_token": self.unk_token,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Vocabulary:
        return cls(d["tokens"], d["level"], d["unk_token"], d["bos_token"], d["eos_token"])

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict()), encoding="utf8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf8")))
        except (OSError, ValueError, KeyError) as e:
            raise DataFileError(f"cannot read vocabulary {os.fspath(path)!r}: {e}") from e


class TextFile(IterableDataset):
    """Lines of text files as arrays of token ids (Fuel's ``TextFile``), source ``"features"``.

    Args:
        files: the text files, read in order, line by line.
        vocabulary: maps tokens to ids (see :class:`Vocabulary`).
        bos: prepend the begin-of-sequence id; ``eos``: append the end id.
        skip_empty: drop lines with no tokens.
        preprocess: ``f(line) -> line`` applied first (e.g. ``str.lower``).

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "t.txt")
    >>> with open(path, "w") as f: _ = f.write("ab\\nba\\n")
    >>> v = Vocabulary.from_files([path], level="character")
    >>> [x.tolist() for (x,) in TextFile([path], v).get_iterator()]
    [[1, 4, 5, 2], [1, 5, 4, 2]]
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike],
        vocabulary: Vocabulary,
        bos: bool = True,
        eos: bool = True,
        skip_empty: bool = True,
        preprocess: Callable[[str], str] | None = None,
    ) -> None:
        self.files = [os.fspath(f) for f in files]
        for f in self.files:
            if not os.path.isfile(f):
                raise DataFileError(f"TextFile: text file {f!r} does not exist")
        self.vocabulary = vocabulary
        self.bos, self.eos, self.skip_empty, self.preprocess = bos, eos, skip_empty, preprocess
        super().__init__({"features": self._lines}, axis_labels={"features": ("time",)})

    def _lines(self) -> Iterator[np.ndarray]:
        v = self.vocabulary
        head = [v.index[v.bos_token]] if self.bos else []
        tail = [v.index[v.eos_token]] if self.eos else []
        for path in self.files:
            try:
                with open(path, encoding="utf8", errors="replace") as f:
                    for line in f:
                        line = line.rstrip("\n")
                        if self.preprocess is not None:
                            line = self.preprocess(line)
                        ids = v.encode(line)
                        if not ids and self.skip_empty:
                            continue
                        yield np.asarray(head + ids + tail, dtype=np.int64)
            except OSError as e:
                raise DataFileError(f"TextFile: cannot read {path!r}: {e}") from e

    @property
    def dictionary(self) -> dict[str, int]:
        """Token → id (Fuel's ``TextFile.dictionary``)."""
        return dict(self.vocabulary.index)

    def get_iterator(self) -> Iterator[tuple]:
        """All examples of one pass, as tuples (for quick looks)."""
        handle = self.open()
        while True:
            try:
                yield self.get_data(handle)
            except StopIteration:
                return
