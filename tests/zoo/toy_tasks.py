"""Two toy segmentation tasks that tell how much rotation symmetry a model needs.

Images ``(B, 1, 24, 24)`` hold up to 9 filled triangles, one per 8 x 8 cell, each pointing up,
left, down or right (a 7 x 7 template turned by ``torch.rot90``, so the four are exact
rotations of each other) at a random offset of 0 or 1 pixel in each axis. The image
distribution is closed under rot90 of the whole image (a cell maps to a cell, an offset ``o``
to ``1 - o``, an orientation to the next), so only the labels tell the tasks apart:

* ``"orientation"``: segment the *upward-pointing* triangles only. A rot90-equivariant model
  gives the rotated image the rotated output, so it cannot mark an up triangle without marking
  the left one that the rotation makes of it: p4 fails, a model must leave the symmetry;
* ``"invariant"``: segment every triangle. The labels rotate with the image; p4 is ideal.

:func:`train_toy` trains a tiny zoo model (width 4, depth 1) on one task for a few seconds the
way ``polypseg train`` does (AdamW over :func:`zoo.optim.param_groups`, the loss plus
:func:`zoo.optim.regularisation`) and reports its Dice on held-out images and what it learned
(:func:`zoo.learned.learned_symmetry`). Run this file to measure the figures over seeds::

    python tests/zoo/toy_tasks.py --seeds 5
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

TASKS = ("orientation", "invariant")
CELLS, CELL, SIDE = 3, 8, 7
STEPS, LR, BATCH = 250, 1e-2, 8
SIZES = {"width": 4, "depth": 1}


def triangle(side: int = SIDE) -> torch.Tensor:
    """``(side, side)`` filled triangle, apex at the top (pointing up), base on row side//2+1."""
    t = torch.zeros(side, side)
    for i in range(side // 2 + 1):
        t[1 + i, side // 2 - i : side // 2 + i + 1] = 1
    return t


def toy_batch(task: str, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, masks)``, both ``(n, 1, 24, 24)`` float; see the module docstring."""
    if task not in TASKS:
        raise ValueError(f"task is one of {TASKS}, got {task!r}")
    template = triangle()
    x = torch.zeros(n, 1, CELLS * CELL, CELLS * CELL)
    y = torch.zeros_like(x)
    draws = torch.randint(0, 5, (n, CELLS, CELLS), generator=gen)  # 4: empty cell
    offsets = torch.randint(0, 2, (n, CELLS, CELLS, 2), generator=gen)
    for b in range(n):
        for i in range(CELLS):
            for j in range(CELLS):
                turns = int(draws[b, i, j])
                if turns == 4:
                    continue
                shape = torch.rot90(template, turns)
                r = i * CELL + int(offsets[b, i, j, 0])
                c = j * CELL + int(offsets[b, i, j, 1])
                x[b, 0, r : r + SIDE, c : c + SIDE] = shape
                if turns == 0 or task == "invariant":
                    y[b, 0, r : r + SIDE, c : c + SIDE] = shape
    return x, y


@dataclass
class ToyResult:
    """What one toy training gave: held-out Dice and the learned-symmetry rows."""

    name: str
    task: str
    seed: int
    dice: float
    rows: list[dict[str, Any]]

    @property
    def min_probability(self) -> float:
        """Smallest ``p(g)`` of a non-identity element over all subset layers (1.0: none)."""
        probs = [p for r in self.rows if r["kind"] == "subset" for p in r["probabilities"][1:]]
        return min(probs, default=1.0)

    @property
    def dropped(self) -> int:
        """Elements the eval-mode model leaves out, summed over the subset layers."""
        return sum(len(r["elements"]) - len(r["kept"]) for r in self.rows if r["kind"] == "subset")

    @property
    def max_ratio(self) -> float:
        """Largest ``||W_free|| / ||W_eq||`` over the residual layers (0.0: none)."""
        return max((r["ratio"] for r in self.rows if r["kind"] == "residual"), default=0.0)


def train_toy(name: str, task: str, seed: int = 0, steps: int = STEPS, lr: float = LR,
              **options: Any) -> ToyResult:  # fmt: skip
    """Train ``zoo.create(name, in_channels=1, width=4, depth=1, **options)`` on ``task``."""
    import zoo
    from zoo.learned import learned_symmetry
    from zoo.optim import param_groups, regularisation

    torch.manual_seed(seed)
    model = zoo.create(name, in_channels=1, **SIZES, **options)
    optimizer = torch.optim.AdamW(param_groups(model, lr, 1e-4))
    gen = torch.Generator().manual_seed(1000 + seed)
    for _ in range(steps):
        x, y = toy_batch(task, BATCH, gen)
        loss = F.binary_cross_entropy_with_logits(model(x), y)
        penalty = regularisation(model)
        if penalty is not None:
            loss = loss + penalty
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    x, y = toy_batch(task, 32, torch.Generator().manual_seed(99))
    with torch.no_grad():
        pred = (model(x) > 0).float()
    dice = float(2 * (pred * y).sum() / (pred.sum() + y.sum()).clamp_min(1))
    return ToyResult(name, task, seed, dice, learned_symmetry(model))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--names", default="p4,p4-partial,p4-rpp")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for name in args.names.split(","):
        for task in TASKS:
            for seed in range(args.seeds):
                started = time.perf_counter()
                r = train_toy(name, task, seed)
                print(f"{name:<11} {task:<11} seed {seed}  dice {r.dice:.3f}  "
                      f"min p {r.min_probability:.3f}  dropped {r.dropped:2d}  "
                      f"max ratio {r.max_ratio:.5f}  {time.perf_counter() - started:.1f}s",
                      flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
