"""The head norm (``zoo.unet``): an untrained model's prediction depends on its input, for every
variant and seed, and models recorded before the option rebuild as they were.

An untrained model is judged in train mode (batch statistics, as the first training step sees
it) on a batch of 4 structured images (a bright disc on noise, placed differently in each):
the *offset* ``|mean| / std`` of its logits over every pixel must stay at most 1.2 (the bound of
``scripts/init_offsets.py``; the CPU study's failed starts had 2.0-3.7), its foreground share at
0.5 must lie inside (0.02, 0.98), and the prediction must differ between images by more than
1% of the logits' spread. Old configs (no ``head_norm`` key) rebuild the old head exactly.
"""

from __future__ import annotations

import pytest
import torch
from equivariance import require_variant

import zoo
from zoo.registry import RECORDED_BEFORE

F32 = torch.float32
SIZE = (32, 32)


def _images(seed: int) -> torch.Tensor:
    """``(4, 3, 32, 32)``: noise plus a bright disc at a different place in each image."""
    gen = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.randn(4, 3, *SIZE, generator=gen)
    rows, cols = torch.meshgrid(torch.arange(SIZE[0]), torch.arange(SIZE[1]), indexing="ij")
    for i, (r, c) in enumerate(((8, 8), (8, 22), (22, 10), (20, 22))):
        x[i, :, ((rows - r) ** 2 + (cols - c) ** 2) < 30] += 2.0
    return x


def _initial_logits(name: str, seed: int, **options) -> torch.Tensor:
    torch.manual_seed(seed)
    model = zoo.create(name, width=2, depth=2, **options).train()
    with torch.no_grad():
        return model(_images(seed))


@pytest.mark.parametrize("name", zoo.available())
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_untrained_prediction_depends_on_the_input(name, seed) -> None:
    require_variant(name)
    logits = _initial_logits(name, seed)
    mean, std = logits.mean().item(), logits.std().item()
    assert abs(mean) / std <= 1.2, f"offset {abs(mean) / std:.2f}"
    foreground = (logits > 0).float().mean().item()
    assert 0.02 < foreground < 0.98, f"foreground share {foreground:.3f}"
    per_image = logits.flatten(1)
    assert (per_image - per_image[:1]).abs().max().item() > 0.01 * std


def test_every_variant_records_its_head_and_defaults_to_the_norm() -> None:
    for name in ("unet", "p4"):
        model = zoo.create(name, width=2, depth=1)
        assert model.config["head_norm"] is True and model.head_norm
        assert isinstance(model.pool_norm, torch.nn.BatchNorm2d)
        assert torch.all(model.head.bias == 0)


@pytest.mark.parametrize("name", ["unet", "p4", "steerable"])
def test_a_config_recorded_before_the_head_norm_rebuilds_the_old_model(name) -> None:
    require_variant(name)
    torch.manual_seed(3)
    old = zoo.create(name, width=2, depth=1, head_norm=False).eval()
    recorded = {k: v for k, v in old.config.items() if k not in RECORDED_BEFORE}
    rebuilt = zoo.from_config(recorded).eval()
    assert not rebuilt.head_norm
    rebuilt.load_state_dict(old.state_dict(), strict=True)  # same tensors, names and shapes
    x = _images(0)[:, :, :16, :16]
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), old(x), atol=1e-6)


def test_the_head_norm_draws_no_random_numbers() -> None:
    """Every weight but the head's zeroed bias is as without the head norm (same seed)."""
    torch.manual_seed(0)
    new = zoo.create("p4", width=2, depth=1)
    torch.manual_seed(0)
    old = zoo.create("p4", width=2, depth=1, head_norm=False)
    old_state = old.state_dict()
    for key, value in new.state_dict().items():
        if key.startswith("pool_norm") or key == "head.bias":
            continue
        assert torch.equal(value, old_state[key]), key
