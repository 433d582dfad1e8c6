"""Training the variants that learn their symmetry: the loop's parameter groups, the zoo
regulariser in the loss, and resume (the subsets' draws come from the saved RNG state)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from polypseg.training import StepInfo, TrainCallback, TrainConfig, train
from polypseg.training.state import load_resume_state, state_path
from zoo.partial import LOGIT_LR_SCALE


class _InterruptAt(TrainCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, info: StepInfo) -> None:
        if info.step == self.step:
            raise KeyboardInterrupt


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / "last.safetensors"))


@pytest.mark.parametrize("model", ["p4-partial", "p4-rpp"])
def test_interrupted_then_resumed_equals_uninterrupted(
    model: str, tiny_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    straight = train(tiny_config(variant=model, out=str(tmp_path / "straight")))
    interrupted = tiny_config(variant=model, out=str(tmp_path / "resumed"))
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, [_InterruptAt(step=3)])  # mid-epoch 2 (2 steps per epoch)
    resumed = train(tiny_config(variant=model, out=str(tmp_path / "resumed"), resume=True))
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    learned = [k for k in a if k.endswith((".subset.logits", ".free"))]
    assert learned and all(not torch.equal(a[k], _initial(model, k)) for k in learned)


def _initial(model: str, key: str) -> torch.Tensor:
    """The untrained value of a learned-symmetry tensor (logits 3.0, free pathways 0)."""
    import zoo

    return zoo.create(model, width=2, depth=2).state_dict()[key]


def test_optimiser_groups_follow_the_zoo_layers(tiny_config: Callable[..., TrainConfig]) -> None:
    config = tiny_config(variant="p4-partial", epochs=1, lr=2e-3, weight_decay=1e-3)
    groups = load_resume_state(state_path(train(config)))["optimizer"]["param_groups"]
    assert [(g["initial_lr"], g["weight_decay"]) for g in groups] == [
        (2e-3, 1e-3), (2e-3 * LOGIT_LR_SCALE, 0.0)
    ]  # fmt: skip


def test_the_zoo_regulariser_is_in_the_loss_but_not_in_the_log(
    tiny_config: Callable[..., TrainConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in regulariser ``-1e3 * sum(W_free)`` outweighs the data: if the loop
    differentiates it, every free weight ends positive; the logged loss stays the data's."""
    from polypseg.training import loop

    def pull_up(model: torch.nn.Module) -> torch.Tensor:
        return -1e3 * sum(p.sum() for n, p in model.named_parameters() if n.endswith(".free"))

    monkeypatch.setattr(loop, "regularisation", pull_up)
    run = train(tiny_config(variant="p4-rpp", epochs=1))
    free = [v for k, v in _weights(run).items() if k.endswith(".free")]
    assert free and all(bool(torch.all(v > 0)) for v in free)
    from polypseg.training.logs import read_metrics_csv

    assert 0 < read_metrics_csv(run / "metrics.csv")[0]["train_loss"] < 10
