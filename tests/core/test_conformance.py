"""Every public brick of bricks.core through jit, grad, vmap, round trip and annotation."""

import pytest

import bricks.core
from bricks.core.testing import REGISTRY, check_conformance, missing_from_registry


def test_every_public_brick_has_an_entry():
    assert missing_from_registry(bricks.core) == []


@pytest.mark.parametrize("example", list(REGISTRY.values()), ids=lambda e: e.cls.__name__)
def test_conformance(example):
    check_conformance(example)


def test_a_new_brick_without_an_entry_is_reported():
    import types

    class Unlisted(bricks.core.Brick):
        pass

    module = types.SimpleNamespace(__all__=["Unlisted", "Linear"], Unlisted=Unlisted,
                                   Linear=bricks.core.Linear)
    assert missing_from_registry(module) == ["Unlisted"]
