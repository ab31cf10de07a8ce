"""Text datasets (public module path ``bricks.data.text``); see :mod:`bricks.data._text`."""

from ._text import TextFile, Vocabulary, default_corpus_files

__all__ = ["TextFile", "Vocabulary", "default_corpus_files"]
