#!/usr/bin/env python
"""How far from input-dependent a model's logits are at initialisation, per variant and seed.

Builds each variant the way ``polypseg train`` does (``seed_everything(seed)`` then
``build_model``: the same initial weights as a run of that seed), runs one batch of real
validation images through it in train mode (batch statistics, as the first training step
sees them) and prints, over every pixel of the batch, the logits' mean and standard deviation,
their ratio (the *offset*: large when the model starts with an input-independent, nearly
constant prediction) and the share of pixels above the 0.5 threshold (1.00: it predicts all
foreground, 0.00: all background).

In the CPU study the runs that sat at their starting score for 6 or more epochs (or never left
it) start with an offset of 2 or more at 96 px, depth 3 (docs/results.md, Convergence). Models
built since then have the head norm (``zoo.unet``: a batch norm on the invariant map before the
1x1 head, whose bias starts at 0), which makes the train-mode offset 0 up to rounding; the
last column, the spread over images of each image's foreground share, says how much the first
prediction varies with its input. ``--no-head-norm`` builds the models as the CPU study did.

    .venv/bin/python scripts/init_offsets.py --data ../shared/data/CVC-ClinicDB \\
        --split-file results/cpu/runs/splits/cvc.json --model unet:8 --model p4:4 \\
        --model p4m:3 --model se2n12:2 --model steerable:3 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from polypseg.training.loop import seed_everything
from polypseg.training.models import build_model


def validation_batch(data: str, split_file: str | None, size: int, depth: int,
                     n_images: int) -> torch.Tensor:
    """``(N, 3, size, size)``: the first ``n_images`` validation images of the split (the
    dataset's default split when ``split_file`` is None), through the evaluation transforms."""
    from polypseg.data import (
        SegmentationDataset,
        build_transforms,
        discover,
        load_split,
        make_split,
    )
    from polypseg.training.datasets import subset_pairs

    index = discover(data)
    split = load_split(split_file) if split_file else make_split(index, seed=0)
    pairs = subset_pairs(index, split, "val", n_images)
    dataset = SegmentationDataset(pairs, build_transforms(size, depth=depth))
    return torch.stack([dataset[i]["image"] for i in range(len(dataset))])


def logit_stats(logits: torch.Tensor) -> dict[str, float]:
    """Mean, std, ``|mean| / std`` (the offset), the share above 0 (foreground at 0.5) and
    the std over images of each image's foreground share (``logits``: ``(N, 1, H, W)``)."""
    mean, std = logits.mean().item(), logits.std().item()
    per_image = (logits > 0).float().flatten(1).mean(dim=1) if logits.dim() > 1 else None
    spread = per_image.std().item() if per_image is not None and len(per_image) > 1 else 0.0
    return {"mean": mean, "std": std, "offset": abs(mean) / max(std, 1e-12),
            "foreground": (logits > 0).float().mean().item(), "image_spread": spread}


def initial_logits(variant: str, width: int, depth: int, seed: int,
                   images: torch.Tensor, head_norm: bool = True) -> torch.Tensor:
    """The logits of a freshly initialised model of this seed on ``images`` (train mode)."""
    seed_everything(seed)
    model, _ = build_model(variant, width, depth, {"head_norm": head_norm})
    model.train()
    with torch.no_grad():
        return model(images)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="dataset folder")
    parser.add_argument("--split-file", help="split JSON (default: the dataset's default split)")
    parser.add_argument("--model", action="append", required=True, metavar="VARIANT:WIDTH")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--images", type=int, default=8, help="validation images in the batch")
    parser.add_argument("--no-head-norm", action="store_true",
                        help="build the models without the head norm (as the CPU study did)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    images = validation_batch(args.data, args.split_file, args.size, args.depth, args.images)
    rows = []
    print(f"{'model':<14} {'seed':>4} {'mean':>8} {'std':>7} {'offset':>7} {'foreground':>10} "
          f"{'spread':>7}")
    for item in args.model:
        variant, _, width = item.partition(":")
        for seed in args.seeds:
            logits = initial_logits(variant, int(width), args.depth, seed, images,
                                    head_norm=not args.no_head_norm)
            stats = logit_stats(logits)
            rows.append({"model": item, "seed": seed, **stats})
            print(f"{item:<14} {seed:>4} {stats['mean']:>+8.3f} {stats['std']:>7.3f} "
                  f"{stats['offset']:>7.2f} {stats['foreground']:>10.2f} "
                  f"{stats['image_spread']:>7.3f}", flush=True)
    return rows


if __name__ == "__main__":
    main()
