"""Helpers of the bench tests: a tiny synthetic Kvasir-SEG-like dataset and a plan over it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml


def write_dataset(root: Path, count: int = 20, size: int = 24, seed: int = 0) -> Path:
    """``root/Kvasir-SEG/{images,masks}/NAME.png``: a bright disc ("polyp") on a textured
    background, at a seeded random place and radius, and its mask."""
    from PIL import Image

    folder = root / "Kvasir-SEG"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for i in range(count):
        cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
        radius = rng.uniform(size * 0.15, size * 0.3)
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2).astype(np.uint8) * 255
        image = rng.integers(40, 120, (size, size, 3), dtype=np.uint8)
        image[mask > 0] = (220, 120, 110)
        Image.fromarray(image).save(folder / "images" / f"img{i:03d}.png")
        Image.fromarray(mask).save(folder / "masks" / f"img{i:03d}.png")
    return folder


def tiny_plan(root: Path, data_dir: Path, **changes: object) -> Path:
    """A plan of two trained variants (+ the tta entry): 1 epoch at 16 px, 4 angles."""
    raw = {
        "name": "tiny",
        "reduced": True,
        "size": 16,
        "depth": 2,
        "epochs": 1,
        "batch_size": 4,
        "lr": 0.01,
        "seeds": [0],
        "angles": [0, 45, 90],
        "limit_train": 8,
        "sweep_limit": 1,
        "out": "results",
        "runs": "runs",
        "datasets": {"kvasir": {"data_dir": str(data_dir)}},
        "entries": [
            {"name": "unet", "variant": "unet", "width": 2},
            {"name": "unet+tta", "from": "unet", "tta": "rot90"},
            {"name": "p4", "variant": "p4", "match": "unet"},
        ],
    }
    raw.update(changes)
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def write_dataset_at(root: Path, name: str, seed: int = 0) -> Path:
    """``root/NAME/{images,masks}``: :func:`write_dataset`'s discs under another name."""
    root.mkdir(parents=True, exist_ok=True)
    folder = write_dataset(root, seed=seed)
    return folder.rename(root / name) if folder.name != name else folder
