"""Where a result came from: configuration, command, library versions, hardware, split hash.

Read from what the library wrote: ``RUN/config.json`` (the resolved training configuration),
``RUN/checkpoints/best.json`` (epoch, metrics, ``split_sha256``, ``versions``, weights hash),
``RUN/bench/train.json`` (hardware and wall time of a bench run) and the quality document
(command, date, plan, hardware, settings).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from polypseg.report.inputs import read_json, run_meta

#: ``TrainConfig`` fields that the equivalent command names as options (``TrainConfig``'s
#: metadata gives each its flag).
TRAIN_OPTIONS: tuple[str, ...] = (
    "variant", "data", "split_file", "split_seed", "epochs", "batch_size", "lr", "weight_decay",
    "warmup_epochs", "size", "width", "depth", "seed", "out", "device", "amp", "rot_aug",
    "patience", "min_epochs", "workers", "limit_train", "limit_val",
)
#: Fields that only describe how a run was watched, never what it computed.
_NOT_SHOWN = frozenset({"progress", "quiet", "resume"})


def train_command(config: dict[str, Any]) -> str:
    """An equivalent ``polypseg train`` command line for a run's ``config.json``: every option
    whose value differs from the default (model, data and out always), and the keys only a
    ``--config`` YAML file can set, named when they differ from their defaults."""
    from polypseg.training.config import TrainConfig, option_flags, upgrade_keys

    config = upgrade_keys(config, "run config")  # a run written before the rename: 'model'
    defaults = TrainConfig().to_dict()
    parts = ["polypseg", "train"]
    for key in TRAIN_OPTIONS:
        value = config.get(key)
        if key not in ("variant", "data", "out") and value == defaults.get(key):
            continue
        if value is None:
            continue
        on, off = option_flags(key)
        if isinstance(value, bool):
            parts.append(on if value else off)
        else:
            parts += [on, str(value)]
    command = shlex.join(parts)
    extra = sorted(k for k, v in config.items()
                   if k in defaults and k not in TRAIN_OPTIONS and k not in _NOT_SHOWN
                   and v != defaults[k])
    if extra:
        command += "  # and in a --config file: " + ", ".join(f"{k}: {config[k]}" for k in extra)
    return command


def _read(path: Path) -> dict[str, Any]:
    return read_json(path) if path.is_file() else {}


def run_provenance(run_dir: Path) -> dict[str, Any]:
    """``items`` (label -> text, in display order) and ``config`` (the whole ``config.json``)
    of one run folder."""
    config = _read(run_dir / "config.json")
    meta = run_meta(run_dir)
    trained = _read(run_dir / "bench" / "train.json")
    items: dict[str, str] = {"run folder": str(run_dir)}
    if config:
        items["equivalent command"] = train_command(config)
    if meta is not None:
        metrics = meta.metrics or {}
        items["best checkpoint"] = (
            f"epoch {meta.epoch}, validation Dice "
            + (f"{metrics['val_dice']:.4f}" if isinstance(metrics.get("val_dice"), float)
               else "n/a")
            + f", written {meta.created or '?'}"
        )
        split = meta.split or {}
        items["split"] = ", ".join(str(x) for x in (split.get("dataset"), split.get("rule")) if x)
        items["split sha256"] = str(meta.split_sha256 or config.get("split_sha256", "?"))
        items["weights sha256"] = str(meta.weights_sha256 or "?")
        versions = meta.versions or {}
        items["versions"] = ", ".join(f"{k} {v}" for k, v in versions.items())
    hardware = trained.get("hardware") or {}
    if hardware:
        items["hardware"] = hardware_text(hardware)
        items["training wall time"] = f"{trained.get('seconds', 0):.0f} s"
    return {"items": {k: v for k, v in items.items() if v}, "config": config}


def hardware_text(hardware: dict[str, Any]) -> str:
    """``cpu: Intel Xeon (2 cores, 1 torch threads), torch 2.13.0+cpu, python 3.11.7``."""
    parts = [f"{hardware.get('device', '?')}: {hardware.get('device_name', '?')}"]
    details = [f"{hardware[k]} {label}" for k, label in
               (("cores", "cores"), ("threads", "torch threads"), ("gpus", "GPUs"))
               if hardware.get(k) is not None]
    if details:
        parts[0] += f" ({', '.join(details)})"
    parts += [f"{k} {hardware[k]}" for k in ("torch", "cuda", "python") if hardware.get(k)]
    return ", ".join(parts)


def quality_provenance(doc: dict[str, Any], split_hashes: dict[str, str]) -> dict[str, str]:
    """Label -> text of a bench quality document, in display order; ``split_hashes`` maps a
    dataset key to the split sha256 its runs recorded."""
    settings = doc.get("settings") or {}
    items = {
        "plan": f"{doc.get('label', doc.get('plan', '?'))}"
                + (f" ({doc['plan_file']})" if doc.get("plan_file") else ""),
        "description": str(doc.get("description") or ""),
        "date": str(doc.get("date") or ""),
        "command": str(doc.get("command") or ""),
        "hardware": hardware_text(doc.get("hardware") or {}),
        "schedule": ", ".join(f"{k} {v}" for k, v in settings.items()
                              if v not in (None, {}, [], "")),
    }
    for key, info in (doc.get("datasets") or {}).items():
        counts = ", ".join(f"{k} {v}" for k, v in (info.get("counts") or {}).items())
        items[f"split of {info.get('label', key)}"] = "; ".join(x for x in (
            info.get("rule"), counts, info.get("split_file"),
            f"sha256 {split_hashes[key]}" if key in split_hashes else None) if x)
    if doc.get("missing"):
        items["unfinished, left out"] = ", ".join(doc["missing"])
    return {k: v for k, v in items.items() if v}
