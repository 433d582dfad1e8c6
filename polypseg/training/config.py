"""The training configuration: one dataclass, filled from defaults < YAML file < CLI options.

A YAML config file holds a mapping whose keys are :class:`TrainConfig` field names (``-`` may
stand for ``_``), e.g.::

    model: p4
    data: ../shared/data/Kvasir-SEG
    epochs: 50
    batch_size: 8
    lr: 0.001
    model_options: {}

Unknown keys, values of the wrong type and out-of-range values are a
:class:`~polypseg.errors.RunError` that names the file, the key and what is expected.
The resolved configuration is written to ``RUN/config.json``.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zoo
from polypseg.errors import RunError


@dataclass
class TrainConfig:
    """Everything :func:`polypseg.training.train` needs; JSON-serialisable as it stands."""

    model: str = ""
    """Variant name from ``zoo.available()`` (``unet``, ``p4``, ``p4m``, ...)."""
    data: str = ""
    """Dataset folder (e.g. ``../shared/data/Kvasir-SEG``)."""
    out: str | None = None
    """Run folder; ``runs/MODEL`` when not given."""
    split_file: str | None = None
    """Split JSON to use; when absent the dataset's default split (``split_seed``) is made."""
    split_seed: int = 0
    """Seed of the default split (separate from ``seed``, so all model seeds share a split)."""
    epochs: int = 50
    batch_size: int = 8
    lr: float = 1e-3
    """Peak learning rate of AdamW (reached at the end of the warm-up)."""
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    """Linear warm-up length in epochs (fractions allowed), then cosine decay per step."""
    min_lr_ratio: float = 0.01
    """Final learning rate as a fraction of ``lr``."""
    size: int = 256
    """Input side in pixels (divisible by ``2**depth``)."""
    width: int | None = None
    """Fields in the first level of the U-Net; the zoo's default when ``None``."""
    depth: int | None = None
    """Number of poolings of the U-Net; the zoo's default when ``None``."""
    model_options: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of ``zoo.create`` for the variant."""
    seed: int = 0
    """Seed of initialisation, data order and augmentation."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    amp: bool = False
    """Mixed precision (float16 autocast + gradient scaling); CUDA only, ignored on CPU."""
    rot_aug: bool = False
    """Random rotation augmentation (the ``+rotaug`` baseline)."""
    negatives: float = 0.0
    """Share of each epoch that is background-only views (``polypseg.data.negatives``: crops of
    the training images clear of the mask, with an empty target), added to the training images:
    ``round(n * f / (1 - f))`` of them for ``n`` images. 0 (the default): none, training exactly
    as without the option. In [0, 0.9]."""
    negatives_dir: str | None = None
    """A folder of polyp-free frames drawn among the negatives as whole frames (needs
    ``negatives`` > 0)."""
    target_specificity: float = 0.95
    """Frame-level specificity the "polyp present" thresholds are chosen for, on the validation
    images and their negatives, at the end of training (``polypseg.decision``)."""
    resume: bool = False
    """Continue the run in ``out`` from ``checkpoints/last_state.pt``."""
    patience: int = 0
    """Stop after this many epochs without a better validation Dice (0: never stop early)."""
    min_epochs: int = 0
    """Early stopping waits until this many epochs have run: a warm-up in which a run may sit
    at its starting score (e.g. the all-foreground mask) before it takes off. A run that
    patience would have ended sooner trains on to this epoch (then stops if patience still
    holds); runs that patience ends at or after it are unchanged."""
    workers: int | None = None
    """DataLoader worker processes (0: load in the training process); ``None``: 0 on CPU, on
    CUDA ``min(4, CPUs per process - 1)`` (:func:`polypseg.training.distributed.auto_workers`)."""
    epoch_repeats: int = 1
    """Each epoch draws every training image this many times (one shuffled order over the
    copies, each copy augmented on its own). A run on a 10% subset with 10 repeats takes as
    many optimiser steps per epoch as a run on the whole split, so epochs, warm-up, patience,
    ``min_epochs`` and the cosine schedule count the same steps (the scarce-labels study,
    ``plans/cpu-data.yaml``)."""
    limit_train: int | None = None
    """Use only the first N training images (quick runs)."""
    limit_val: int | None = None
    """Use only the first N validation images (quick runs)."""
    val_batch_size: int | None = None
    """Batch size of validation; ``batch_size`` when ``None``."""
    threshold: float = 0.5
    """Probability threshold of the validation Dice and of the saved checkpoints."""
    deterministic: bool = True
    """Call ``torch.use_deterministic_algorithms(True, warn_only=True)``."""
    progress: bool | None = None
    """Rich progress bars; ``None``: only when stdout is a terminal."""
    channels_last: bool | None = None
    """Channels-last (NHWC) batches through the model; ``None``: on CPU only (measured faster
    there; the same model, outputs equal to float rounding). See ``training.performance``."""
    compile: bool = False
    """``torch.compile`` the model (off by default: measured no faster on CPU)."""
    prefetch: bool = True
    """With ``workers = 0``, load the next batches in a background thread during each step."""
    quiet: bool = False
    """Print nothing (progress and per-epoch lines)."""

    # -- derived ----------------------------------------------------------------------------
    def run_dir(self) -> Path:
        """The run folder."""
        return Path(self.out) if self.out else Path("runs") / self.model

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    def validate(self) -> TrainConfig:
        """Check ranges and required values; return ``self`` or raise :class:`RunError`."""
        problems: list[str] = []
        if not self.model:
            problems.append("'model' is required (e.g. --model p4)")
        if not self.data:
            problems.append("'data' is required (a dataset folder, e.g. --data DIR)")
        for name in ("epochs", "batch_size", "size"):
            if getattr(self, name) < 1:
                problems.append(f"'{name}' must be >= 1, got {getattr(self, name)}")
        if self.epoch_repeats < 1:
            problems.append(f"'epoch_repeats' must be >= 1, got {self.epoch_repeats}")
        for name in ("width", "depth", "limit_train", "limit_val", "val_batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"'{name}' must be >= 1, got {value}")
        if self.workers is not None and self.workers < 0:
            problems.append(f"'workers' must be >= 0, got {self.workers}")
        for name in ("patience", "min_epochs", "split_seed", "seed"):
            if getattr(self, name) < 0:
                problems.append(f"'{name}' must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            problems.append(f"'lr' must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.warmup_epochs < 0:
            problems.append("'weight_decay' and 'warmup_epochs' must be >= 0")
        if not 0 <= self.min_lr_ratio <= 1:
            problems.append(f"'min_lr_ratio' must be in [0, 1], got {self.min_lr_ratio}")
        if not 0 <= self.negatives <= 0.9:
            problems.append(f"'negatives' must be in [0, 0.9], got {self.negatives}")
        if self.negatives_dir is not None and self.negatives <= 0:
            problems.append("'negatives_dir' needs 'negatives' > 0 (e.g. --negatives 0.2)")
        if not 0 < self.target_specificity <= 1:
            problems.append(
                f"'target_specificity' must be in (0, 1], got {self.target_specificity}"
            )
        if not 0 < self.threshold < 1:
            problems.append(f"'threshold' must be in (0, 1), got {self.threshold}")
        depth = zoo.DEFAULT_DEPTH if self.depth is None else self.depth
        if self.size >= 1 and depth >= 1:
            try:
                zoo.check_input_size(self.size, depth, name="'size'")
            except ValueError as err:
                problems.append(str(err))
        device = self.device
        if not (device in ("auto", "cpu", "cuda") or _is_cuda_index(device)):
            problems.append(f"'device' must be auto, cpu, cuda or cuda:N, got {device!r}")
        if problems:
            raise RunError("invalid training configuration: " + "; ".join(problems))
        return self


def _is_cuda_index(device: str) -> bool:
    prefix, _, index = device.partition(":")
    return prefix == "cuda" and index.isdigit()


def field_names() -> list[str]:
    """Names of the :class:`TrainConfig` fields."""
    return [f.name for f in dataclasses.fields(TrainConfig)]


def _hint_types(name: str) -> tuple[type, ...]:
    """The plain types a field's annotation allows (``int | None`` -> ``(int, NoneType)``)."""
    hint = typing.get_type_hints(TrainConfig)[name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
    else:
        args = (hint,)
    return tuple(typing.get_origin(arg) or arg for arg in args)


def _check_value(name: str, value: Any, source: str) -> Any:
    """``value`` if its type fits field ``name`` (an int is widened to a float field)."""
    allowed = _hint_types(name)
    if isinstance(value, bool):
        ok = bool in allowed
    elif isinstance(value, int) and float in allowed and int not in allowed:
        return float(value)
    else:
        ok = isinstance(value, allowed)
    if not ok:
        expected = " or ".join(sorted({"null" if t is type(None) else t.__name__ for t in allowed}))
        raise RunError(
            f"{source}: '{name}' must be {expected}, got {type(value).__name__} {value!r}"
        )
    return value


def normalize_keys(values: dict[str, Any], source: str) -> dict[str, Any]:
    """Keys with ``-`` turned into ``_``, checked against the field names and types."""
    known = set(field_names())
    out: dict[str, Any] = {}
    for raw_key, value in values.items():
        key = str(raw_key).replace("-", "_")
        if key not in known:
            raise RunError(
                f"{source}: unknown key {raw_key!r}; valid keys: {', '.join(sorted(known))}"
            )
        out[key] = _check_value(key, value, source)
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file, keys checked; :class:`RunError` on any problem."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise RunError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise RunError(f"cannot read config file {path}: {err}") from None
    except yaml.YAMLError as err:
        where = ""
        mark = getattr(err, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise RunError(f"config file {path} is not valid YAML{where}: {problem}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise RunError(
            f"config file {path} must hold a mapping of option: value, "
            f"not a {type(loaded).__name__}"
        )
    return normalize_keys(loaded, f"config file {path}")


def read_json_config(path: str | Path) -> dict[str, Any]:
    """The fields stored in a run's ``config.json`` (unknown keys dropped, for old runs)."""
    path = Path(path)
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunError(f"cannot read run config {path}: {err}") from None
    if not isinstance(loaded, dict):
        raise RunError(f"run config {path} must hold a JSON object")
    known = set(field_names())
    return {k: v for k, v in loaded.items() if k in known}


def build_config(
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> TrainConfig:
    """Defaults, then ``base`` (a resumed run's saved config), then the YAML file's values,
    then ``overrides`` (``None`` values skipped: options not given on the command line)."""
    values: dict[str, Any] = {}
    if base:
        values.update(normalize_keys(base, "run config"))
    if config_file is not None:
        values.update(read_yaml(config_file))
    if overrides:
        given = {k: v for k, v in overrides.items() if v is not None}
        values.update(normalize_keys(given, "options"))
    return TrainConfig(**values)
