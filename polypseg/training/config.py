"""The training configuration: one dataclass, filled from defaults < YAML file < CLI options.

:class:`TrainConfig` owns every training option: each field's type, default, bound and (for
the options ``polypseg train`` takes) the command-line flags and help text
(:mod:`polypseg.training.fields`); the command's options are built from the fields
(``polypseg.cli.options_from_config``).

A YAML config file holds a mapping whose keys are :class:`TrainConfig` field names (``-`` may
stand for ``_``), e.g.::

    variant: p4
    data: ../shared/data/Kvasir-SEG
    epochs: 50
    batch_size: 8
    lr: 0.001
    model_options: {}

Unknown keys, values of the wrong type and out-of-range values are a
:class:`~polypseg.errors.RunError` that names the file, the key and what is expected.
The resolved configuration is written to ``RUN/config.json``. Keys that earlier versions wrote
under another name (``model`` for ``variant``: :data:`RENAMED_KEYS`) are read as the new ones.

Importing this module loads neither torch nor zoo (``polypseg --help`` reads the fields).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polypseg.errors import RunError
from polypseg.training.fields import Bound, CliOption, bound_of, cli_option, setting

#: Keys of configs written by earlier versions -> the field that holds the fact now.
RENAMED_KEYS: dict[str, str] = {"model": "variant"}

#: Fields that only say how a run was watched or started; a resumed run takes them anew.
_NOT_RESUMED = ("resume", "quiet", "progress", "split_file")  # split: RUN/split.json

_AT_LEAST_0 = Bound(low=0)
_AT_LEAST_1 = Bound(low=1)


@dataclass
class TrainConfig:
    """Everything :func:`polypseg.training.train` needs; JSON-serialisable as it stands."""

    variant: str = setting("", cli=CliOption(
        ("--model", "--variant"), "Variant: unet, p4, p4m, se2n12, steerable, ..."))
    """Variant name from ``zoo.available()`` (``unet``, ``p4``, ``p4m``, ...)."""
    data: str = setting("", cli=CliOption(
        ("--data",), "Dataset folder, e.g. ../shared/data/Kvasir-SEG.", path=True))
    """Dataset folder (e.g. ``../shared/data/Kvasir-SEG``)."""
    out: str | None = setting(None, cli=CliOption(
        ("--out",), "Run folder (default runs/MODEL).", path=True))
    """Run folder; ``runs/VARIANT`` when not given."""
    split_file: str | None = setting(None, cli=CliOption(
        ("--split-file",), "Split JSON; default: the dataset's default split.", path=True))
    """Split JSON to use; when absent the dataset's default split (``split_seed``) is made."""
    split_seed: int = setting(0, bound=_AT_LEAST_0, cli=CliOption(
        ("--split-seed",), "Seed of the default split (default 0).", bound_on_cli=True))
    """Seed of the default split (separate from ``seed``, so all model seeds share a split)."""
    epochs: int = setting(50, bound=_AT_LEAST_1, cli=CliOption(
        ("--epochs",), "Epochs (default 50)."))
    batch_size: int = setting(8, bound=_AT_LEAST_1, cli=CliOption(
        ("--batch-size",), "Images per step per process (default 8)."))
    lr: float = setting(1e-3, bound=Bound(low=0, low_open=True), cli=CliOption(
        ("--lr",), "Peak AdamW learning rate (default 1e-3)."))
    """Peak learning rate of AdamW (reached at the end of the warm-up)."""
    weight_decay: float = setting(1e-4, bound=_AT_LEAST_0, cli=CliOption(
        ("--weight-decay",), "AdamW weight decay (default 1e-4)."))
    warmup_epochs: float = setting(1.0, bound=_AT_LEAST_0, cli=CliOption(
        ("--warmup-epochs",), "Linear warm-up, in epochs (default 1)."))
    """Linear warm-up length in epochs (fractions allowed), then cosine decay per step."""
    min_lr_ratio: float = setting(0.01, bound=Bound(low=0, high=1))
    """Final learning rate as a fraction of ``lr``."""
    size: int = setting(256, bound=_AT_LEAST_1, cli=CliOption(
        ("--size",), "Input side in px, divisible by 2**depth (default 256)."))
    """Input side in pixels (divisible by ``2**depth``)."""
    width: int | None = setting(None, bound=_AT_LEAST_1, cli=CliOption(
        ("--width",), "Fields of the first U-Net stage (zoo default)."))
    """Fields in the first level of the U-Net; the zoo's default when ``None``."""
    depth: int | None = setting(None, bound=_AT_LEAST_1, cli=CliOption(
        ("--depth",), "Poolings of the U-Net (zoo default)."))
    """Number of poolings of the U-Net; the zoo's default when ``None``."""
    model_options: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of ``zoo.create`` for the variant."""
    seed: int = setting(0, bound=_AT_LEAST_0, cli=CliOption(
        ("--seed",), "Seed of init, data order, augmentation (0)."))
    """Seed of initialisation, data order and augmentation."""
    device: str = setting("auto", cli=CliOption(
        ("--device",), "auto, cpu, cuda or cuda:N (default auto)."))
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    amp: bool = setting(False, cli=CliOption(("--amp/--no-amp",), "Mixed precision (CUDA only)."))
    """Mixed precision (float16 autocast + gradient scaling); CUDA only, ignored on CPU."""
    rot_aug: bool = setting(False, cli=CliOption(
        ("--rot-aug/--no-rot-aug",), "Random rotation augmentation (+rotaug)."))
    """Random rotation augmentation (the ``+rotaug`` baseline)."""
    negatives: float = setting(0.0, bound=Bound(low=0.0, high=0.9), cli=CliOption(
        ("--negatives",), "Share of each epoch that is background-only views (crops of the "
        "training images clear of the polyp, empty target); 0: none (default).",
        bound_on_cli=True))
    """Share of each epoch that is background-only views (``polypseg.data.negatives``: crops of
    the training images clear of the mask, with an empty target), added to the training images:
    ``round(n * f / (1 - f))`` of them for ``n`` images. 0 (the default): none, training exactly
    as without the option. In [0, 0.9]."""
    negatives_dir: str | None = setting(None, cli=CliOption(
        ("--negatives-dir",), "A folder of polyp-free frames to use among the negatives as "
        "well (needs --negatives).", path=True))
    """A folder of polyp-free frames drawn among the negatives as whole frames (needs
    ``negatives`` > 0)."""
    target_specificity: float = setting(0.95, bound=Bound(low=0, high=1, low_open=True),
                                        cli=CliOption(
        ("--target-specificity",), "Frame-level specificity the 'polyp present' thresholds "
        "are chosen for on validation (default 0.95)."))
    """Frame-level specificity the "polyp present" thresholds are chosen for, on the validation
    images and their negatives, at the end of training (``polypseg.decision``)."""
    resume: bool = setting(False, cli=CliOption(
        ("--resume",), "Continue the run in --out from its last state."))
    """Continue the run in ``out`` from ``checkpoints/last_state.pt``."""
    patience: int = setting(0, bound=_AT_LEAST_0, cli=CliOption(
        ("--patience",), "Early stop after N epochs without a better val Dice (0: off, the "
        "default)."))
    """Stop after this many epochs without a better validation Dice (0: never stop early)."""
    min_epochs: int = setting(0, bound=_AT_LEAST_0, cli=CliOption(
        ("--min-epochs",), "Early stopping waits until N epochs have run (a warm-up; 0: none, "
        "the default)."))
    """Early stopping waits until this many epochs have run: a warm-up in which a run may sit
    at its starting score (e.g. the all-foreground mask) before it takes off. A run that
    patience would have ended sooner trains on to this epoch (then stops if patience still
    holds); runs that patience ends at or after it are unchanged."""
    workers: int | None = setting(None, bound=_AT_LEAST_0, cli=CliOption(
        ("--workers",), "DataLoader worker processes (default: 0 on CPU; on CUDA min(4, CPUs "
        "per process - 1))."))
    """DataLoader worker processes (0: load in the training process); ``None``: 0 on CPU, on
    CUDA ``min(4, CPUs per process - 1)`` (:func:`polypseg.training.distributed.auto_workers`)."""
    epoch_repeats: int = setting(1, bound=_AT_LEAST_1, cli=CliOption(
        ("--epoch-repeats",), "Draw every training image N times per epoch, so a small "
        "training set's epoch takes a large one's optimiser steps (default 1)."))
    """Each epoch draws every training image this many times (one shuffled order over the
    copies, each copy augmented on its own). A run on a 10% subset with 10 repeats takes as
    many optimiser steps per epoch as a run on the whole split, so epochs, warm-up, patience,
    ``min_epochs`` and the cosine schedule count the same steps (the scarce-labels study,
    ``plans/cpu-data.yaml``)."""
    limit_train: int | None = setting(None, bound=_AT_LEAST_1, cli=CliOption(
        ("--limit-train",), "Train on the first N images only."))
    """Use only the first N training images (quick runs)."""
    limit_val: int | None = setting(None, bound=_AT_LEAST_1, cli=CliOption(
        ("--limit-val",), "Validate on the first N images only."))
    """Use only the first N validation images (quick runs)."""
    val_batch_size: int | None = setting(None, bound=_AT_LEAST_1)
    """Batch size of validation; ``batch_size`` when ``None``."""
    threshold: float = setting(0.5, bound=Bound(low=0, high=1, low_open=True, high_open=True))
    """Probability threshold of the validation Dice and of the saved checkpoints."""
    deterministic: bool = setting(True, cli=CliOption(
        ("--deterministic/--no-deterministic",), "Deterministic algorithms (default on; turn "
        "off on CUDA: bilinear upsampling has no deterministic CUDA backward)."))
    """Call ``torch.use_deterministic_algorithms(True, warn_only=True)``."""
    progress: bool | None = setting(None, cli=CliOption(
        ("--progress/--no-progress",), "Progress bars (default: on a terminal)."))
    """Rich progress bars; ``None``: only when stdout is a terminal."""
    channels_last: bool | None = setting(None, cli=CliOption(
        ("--channels-last/--no-channels-last",),
        "NHWC batches (default: on CPU, where it is faster)."))
    """Channels-last (NHWC) batches through the model; ``None``: on CPU only (measured faster
    there; the same model, outputs equal to float rounding). See ``training.performance``."""
    compile: bool = setting(False, cli=CliOption(
        ("--compile/--no-compile",), "torch.compile the model (default off)."))
    """``torch.compile`` the model (off by default: measured no faster on CPU)."""
    prefetch: bool = setting(True, cli=CliOption(
        ("--prefetch/--no-prefetch",),
        "With --workers 0, load batches in a thread during steps (on)."))
    """With ``workers = 0``, load the next batches in a background thread during each step."""
    quiet: bool = setting(False, cli=CliOption(("--quiet",), "Print nothing."))
    """Print nothing (progress and per-epoch lines)."""

    # -- derived ----------------------------------------------------------------------------
    def run_dir(self) -> Path:
        """The run folder."""
        return Path(self.out) if self.out else Path("runs") / self.variant

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    def validate(self) -> TrainConfig:
        """Check ranges and required values; return ``self`` or raise :class:`RunError`."""
        import zoo

        problems: list[str] = []
        if not self.variant:
            problems.append("'model' is required (e.g. --model p4)")
        if not self.data:
            problems.append("'data' is required (a dataset folder, e.g. --data DIR)")
        for item in dataclasses.fields(self):
            bound, value = bound_of(item), getattr(self, item.name)
            if bound is not None and value is not None and not bound.holds(value):
                problems.append(f"'{item.name}' must be {bound.describe()}, got {value}")
        if self.negatives_dir is not None and self.negatives <= 0:
            problems.append("'negatives_dir' needs 'negatives' > 0 (e.g. --negatives 0.2)")
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


def option_flags(name: str) -> tuple[str, str | None]:
    """``(flag, negative flag or None)`` of field ``name`` on the command line: ``("--model",
    None)`` for ``variant``, ``("--amp", "--no-amp")``; :class:`KeyError` for a field that no
    option sets."""
    option = cli_option(next(f for f in dataclasses.fields(TrainConfig) if f.name == name))
    if option is None:
        raise KeyError(f"no command-line option sets {name!r}")
    return option.on_off


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


def upgrade_keys(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``values`` with each key an earlier version wrote (:data:`RENAMED_KEYS`) under its
    field's name; :class:`RunError` when a mapping gives both names of one field."""
    out = dict(values)
    for old, new in RENAMED_KEYS.items():
        if old in out:
            if new in out:
                raise RunError(f"{source}: both {old!r} and {new!r} are given; "
                               f"{old!r} is the old name of {new!r}, keep one")
            out[new] = out.pop(old)
    return out


def normalize_keys(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Keys with ``-`` turned into ``_`` and old names renamed (:func:`upgrade_keys`), checked
    against the field names and types."""
    known = set(field_names())
    keyed: dict[str, Any] = {}
    for raw_key, value in values.items():
        key = str(raw_key).replace("-", "_")
        if key not in known and key not in RENAMED_KEYS:
            raise RunError(
                f"{source}: unknown key {raw_key!r}; valid keys: {', '.join(sorted(known))}"
            )
        keyed[key] = value
    return {key: _check_value(key, value, source)
            for key, value in upgrade_keys(keyed, source).items()}


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
    """The fields stored in a run's ``config.json``, under today's names (``model`` of a run
    written before the rename read as ``variant``); unknown keys dropped, for old runs."""
    path = Path(path)
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunError(f"cannot read run config {path}: {err}") from None
    if not isinstance(loaded, dict):
        raise RunError(f"run config {path} must hold a JSON object")
    known = set(field_names())
    return {k: v for k, v in upgrade_keys(loaded, f"run config {path}").items() if k in known}


def resume_base(run_dir: str | Path) -> dict[str, Any]:
    """The saved configuration a resumed run of ``run_dir`` starts from: its ``config.json``
    without the settings each sitting gives anew (:data:`_NOT_RESUMED`), ``out`` the folder."""
    saved = Path(run_dir) / "config.json"
    if not saved.is_file():
        raise RunError(f"cannot resume: {saved} not found (is {run_dir} a run folder?)")
    base = read_json_config(saved)
    for key in _NOT_RESUMED:
        base.pop(key, None)
    base["out"] = str(run_dir)
    return base


def build_config(
    config_file: str | Path | None = None,
    options: Mapping[str, Any] | None = None,
    base: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """Defaults, then ``base`` (a resumed run's saved config), then the YAML file's values,
    then ``options`` (field name -> value; ``None`` values skipped: options not given on the
    command line), each key and type checked against the fields."""
    values: dict[str, Any] = {}
    if base:
        values.update(normalize_keys(base, "run config"))
    if config_file is not None:
        values.update(read_yaml(config_file))
    given = {k: v for k, v in (options or {}).items() if v is not None}
    return dataclasses.replace(TrainConfig(**values), **normalize_keys(given, "options"))
