"""Checkpoints committed under ``results/`` by earlier versions load through today's code: one
per variant, rebuilt from its metadata and loaded strictly (``polypseg.checkpoint``), its
tensors exactly those of the file. Unlike ``test_shipped_models.py`` this needs no dataset.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from polypseg.checkpoint import load_checkpoint, load_weights, read_meta, train_mode

REPO = Path(__file__).resolve().parents[2]
#: The variants the committed studies trained (``results/cpu``, ``results/models``).
TRAINED = ("unet", "p4", "p4m", "se2n12", "steerable", "p4-partial", "p4-rpp")


def _one_checkpoint_per_variant() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for meta in sorted((REPO / "results").glob("**/checkpoints/best.json")):
        found.setdefault(read_meta(meta).variant, meta.with_suffix(""))
    return found


CHECKPOINTS = _one_checkpoint_per_variant()


def test_every_trained_variant_has_a_committed_checkpoint() -> None:
    assert set(TRAINED) <= set(CHECKPOINTS)


@pytest.mark.parametrize("variant", sorted(CHECKPOINTS))
def test_a_committed_checkpoint_loads_strictly(variant: str) -> None:
    if variant.startswith("steerable"):
        pytest.importorskip("e2cnn")
    stem = CHECKPOINTS[variant]
    model, meta = load_checkpoint(stem, expected_variant=variant)
    stored = load_weights(stem)
    with train_mode(model):
        state = model.state_dict()
    assert set(state) == set(stored)
    for key, value in stored.items():
        assert torch.equal(state[key], value), key
    assert not model.training and meta.variant == variant
