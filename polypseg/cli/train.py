"""CLI commands ``polypseg train | evaluate | sweep | plot | demo``: thin layers over
:mod:`polypseg.training`, :mod:`polypseg.evaluation`, :mod:`polypseg.sweep`,
:mod:`polypseg.plotting` and :mod:`polypseg.demo`. Heavy imports happen inside each command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Dataset folder (e.g. ../shared/data/Kvasir-SEG); default: the run's own data.",
    ),
]
SplitFileOption = Annotated[
    Path | None,
    typer.Option("--split-file", help="Split JSON to use instead of the run's split.json."),
]
SubsetOption = Annotated[
    str, typer.Option("--split", help="Which set of the split: train, val or test.")
]
DeviceOption = Annotated[
    str, typer.Option("--device", help="auto (CUDA when available), cpu, cuda or cuda:N.")
]
WhichOption = Annotated[
    str, typer.Option("--which", help="Checkpoint of the run to use: best or last.")
]
LimitOption = Annotated[
    int | None, typer.Option("--limit", min=1, help="Use only the first N images of the set.")
]
TtaOption = Annotated[
    str | None,
    typer.Option("--tta", help="Test-time augmentation: rot90 (average of the 4 rotations)."),
]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("calibrate")(calibrate)
    app.command("sweep")(sweep)
    app.command("plot")(plot)
    app.command("demo")(demo)


def _data_of_run(run: Path, data: Path | None) -> Path:
    """``data`` if given, else the dataset folder recorded in the run's ``config.json``."""
    from polypseg.errors import RunError
    from polypseg.training.config import read_json_config

    if data is not None:
        return data
    config = run / "config.json"
    if config.is_file():
        recorded = read_json_config(config).get("data")
        if recorded:
            return Path(recorded)
    raise RunError(f"{run}: pass --data DIR (the run folder does not record its dataset)")


def train(
    model: Annotated[
        str | None, typer.Option("--model", help="Variant: unet, p4, p4m, se2n12, steerable, ...")
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="Dataset folder, e.g. ../shared/data/Kvasir-SEG.")
    ] = None,
    split_file: Annotated[
        Path | None,
        typer.Option("--split-file", help="Split JSON; default: the dataset's default split."),
    ] = None,
    split_seed: Annotated[
        int | None,
        typer.Option("--split-seed", min=0, help="Seed of the default split (default 0)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="YAML file of options (keys as below, - or _); "
                     "command-line options override it."),
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Epochs (default 50).")] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Images per step per process (default 8).")
    ] = None,
    lr: Annotated[
        float | None, typer.Option("--lr", help="Peak AdamW learning rate (default 1e-3).")
    ] = None,
    weight_decay: Annotated[
        float | None, typer.Option("--weight-decay", help="AdamW weight decay (default 1e-4).")
    ] = None,
    warmup_epochs: Annotated[
        float | None,
        typer.Option("--warmup-epochs", help="Linear warm-up, in epochs (default 1)."),
    ] = None,
    size: Annotated[
        int | None, typer.Option("--size", help="Input side in px, divisible by 2**depth "
                                 "(default 256).")
    ] = None,
    width: Annotated[
        int | None, typer.Option("--width", help="Fields of the first U-Net stage (zoo default).")
    ] = None,
    depth: Annotated[
        int | None, typer.Option("--depth", help="Poolings of the U-Net (zoo default).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of init, data order, augmentation (0).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Run folder (default runs/MODEL).")
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N (default auto).")
    ] = None,
    amp: Annotated[
        bool | None, typer.Option("--amp/--no-amp", help="Mixed precision (CUDA only).")
    ] = None,
    deterministic: Annotated[
        bool | None,
        typer.Option("--deterministic/--no-deterministic",
                     help="Deterministic algorithms (default on; turn off on CUDA: bilinear "
                     "upsampling has no deterministic CUDA backward)."),
    ] = None,
    rot_aug: Annotated[
        bool | None,
        typer.Option("--rot-aug/--no-rot-aug", help="Random rotation augmentation (+rotaug)."),
    ] = None,
    negatives: Annotated[
        float | None,
        typer.Option("--negatives", min=0.0, max=0.9,
                     help="Share of each epoch that is background-only views (crops of the "
                     "training images clear of the polyp, empty target); 0: none (default)."),
    ] = None,
    negatives_dir: Annotated[
        Path | None,
        typer.Option("--negatives-dir", help="A folder of polyp-free frames to use among the "
                     "negatives as well (needs --negatives)."),
    ] = None,
    target_specificity: Annotated[
        float | None,
        typer.Option("--target-specificity",
                     help="Frame-level specificity the 'polyp present' thresholds are chosen "
                     "for on validation (default 0.95)."),
    ] = None,
    channels_last: Annotated[
        bool | None,
        typer.Option("--channels-last/--no-channels-last",
                     help="NHWC batches (default: on CPU, where it is faster)."),
    ] = None,
    compile_model: Annotated[
        bool | None,
        typer.Option("--compile/--no-compile", help="torch.compile the model (default off)."),
    ] = None,
    prefetch: Annotated[
        bool | None,
        typer.Option("--prefetch/--no-prefetch",
                     help="With --workers 0, load batches in a thread during steps (on)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last state.")
    ] = False,
    patience: Annotated[
        int | None,
        typer.Option("--patience", help="Early stop after N epochs without a better val Dice "
                     "(0: off, the default)."),
    ] = None,
    min_epochs: Annotated[
        int | None,
        typer.Option("--min-epochs", help="Early stopping waits until N epochs have run "
                     "(a warm-up; 0: none, the default)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="DataLoader worker processes (default: 0 on CPU; on "
                     "CUDA min(4, CPUs per process - 1))."),
    ] = None,
    epoch_repeats: Annotated[
        int | None,
        typer.Option("--epoch-repeats", help="Draw every training image N times per epoch, so "
                     "a small training set's epoch takes a large one's optimiser steps "
                     "(default 1)."),
    ] = None,
    limit_train: Annotated[
        int | None, typer.Option("--limit-train", help="Train on the first N images only.")
    ] = None,
    limit_val: Annotated[
        int | None, typer.Option("--limit-val", help="Validate on the first N images only.")
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress bars (default: on a terminal)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Print nothing.")] = False,
) -> None:
    """Train a model; writes RUN/{config.json,split.json,checkpoints/,metrics.csv,tb/}.

    Multi-GPU: torchrun --nproc-per-node N -m polypseg train ...
    """
    from polypseg.errors import RunError
    from polypseg.training.config import build_config, read_json_config

    overrides: dict[str, Any] = {
        "model": model, "data": str(data) if data else None,
        "split_file": str(split_file) if split_file else None, "split_seed": split_seed,
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
        "warmup_epochs": warmup_epochs, "size": size, "width": width, "depth": depth,
        "seed": seed, "out": str(out) if out else None, "device": device, "amp": amp,
        "deterministic": deterministic,
        "rot_aug": rot_aug, "patience": patience, "min_epochs": min_epochs,
        "negatives": negatives, "negatives_dir": str(negatives_dir) if negatives_dir else None,
        "target_specificity": target_specificity,
        "workers": workers, "epoch_repeats": epoch_repeats,
        "limit_train": limit_train, "limit_val": limit_val, "progress": progress,
        "quiet": quiet or None, "resume": resume or None,
        "channels_last": channels_last, "compile": compile_model, "prefetch": prefetch,
    }
    base: dict[str, Any] = {}
    if resume:
        run_dir = out or (Path("runs") / model if model else None)
        if run_dir is None:
            raise RunError("--resume needs --out RUN (the run folder to continue)")
        saved = Path(run_dir) / "config.json"
        if not saved.is_file():
            raise RunError(f"cannot resume: {saved} not found (is {run_dir} a run folder?)")
        base = read_json_config(saved)
        for key in ("resume", "quiet", "progress", "split_file"):  # split: RUN/split.json
            base.pop(key, None)
        base["out"] = str(run_dir)
    if out is not None:  # before any work: a file in the way, a read-only disk
        from polypseg.atomic import check_output_folder

        check_output_folder(out)
    from polypseg.training import train as run_training

    run_training(build_config(config, overrides, base=base))


def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder (or checkpoint stem).")],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Dataset folder; default: the run's own data. A folder the run's split does "
            "not describe (a test set: images/ + masks/) is evaluated whole.",
        ),
    ] = None,
    split: Annotated[
        str,
        typer.Option("--split", help="Which set of the split: train, val or test; all: every "
                     "image of --data, without a split."),
    ] = "test",
    split_file: SplitFileOption = None,
    tta: TtaOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder of the results (default RUN/eval).")
    ] = None,
    which: WhichOption = "best",
    device: DeviceOption = "auto",
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Images per forward pass.")
    ] = 8,
    limit: LimitOption = None,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress bar (default: on a terminal)."),
    ] = None,
    channels_last: Annotated[
        bool | None,
        typer.Option("--channels-last/--no-channels-last",
                     help="NHWC images through the model (default: on CPU, where it is faster; "
                     "as in train)."),
    ] = None,
    save_maps: Annotated[
        bool,
        typer.Option("--save-maps", help="Also write each probability map as an 8-bit PNG at "
                     "its mask's size, OUT/maps/STEM.png (the field's toolboxes read them)."),
    ] = False,
) -> None:
    """Per-image metrics at each mask's own size (Dice, IoU, precision, recall, HD95; mDice,
    mIoU, S-measure, weighted F, E-measure, MAE), mean ± std -> JSON + CSV."""
    from polypseg.evaluation import evaluate_run, format_summary

    if out is not None:  # before any work: a file in the way, a read-only disk
        from polypseg.atomic import check_output_folder

        check_output_folder(out)
    result = evaluate_run(
        run, _data_of_run(run, data), subset=split, split_file=split_file, tta=tta, out=out,
        which=which, device=device, batch_size=batch_size, limit=limit, progress=progress,
        channels_last=channels_last,
        save_maps=save_maps,
    )
    typer.echo(format_summary(result))
    typer.echo(f"wrote {result['files']['json']} and {result['files']['csv']}")
    if "maps" in result["files"]:
        typer.echo(f"wrote {result['n_images']} maps to {result['files']['maps']}")


def calibrate(
    run: Annotated[Path, typer.Argument(help="Run folder (or checkpoint stem).")],
    data: DataOption = None,
    split_file: SplitFileOption = None,
    which: WhichOption = "best",
    target_specificity: Annotated[
        float, typer.Option("--target-specificity", min=0.01, max=1.0,
                            help="Frame-level specificity to reach on the validation negatives.")
    ] = 0.95,
    device: DeviceOption = "auto",
) -> None:
    """Choose a checkpoint's 'polyp present' thresholds on its validation images and their
    negatives, and write them into its metadata (training does this for new runs)."""
    from polypseg.checkpoint import resolve_checkpoint
    from polypseg.data import discover
    from polypseg.errors import RunError
    from polypseg.negatives_eval import calibrate_checkpoint
    from polypseg.training.datasets import choose_split, subset_pairs

    stem = resolve_checkpoint(run, which)
    run_dir = stem.parent.parent if stem.parent.name == "checkpoints" else None
    given = split_file or (run_dir / "split.json" if run_dir is not None else None)
    if given is None or not Path(given).is_file():
        raise RunError(f"{run}: no split.json beside the checkpoint; pass --split-file")
    index = discover(_data_of_run(run_dir or run, data))
    pairs = subset_pairs(index, choose_split(index, given).split, "val")
    decision = calibrate_checkpoint(stem, pairs, target_specificity, device)

    def rate(key: str) -> str:
        value = decision.get(key)
        return "n/a" if value is None else f"{value:.3f}"

    typer.echo(
        f"{stem}: polyp present when the largest region covers >= "
        f"{decision['min_area_fraction']:.2%} and the peak is >= "
        f"{decision['min_peak_probability']:.3f} (validation: sensitivity "
        f"{rate('val_sensitivity')}, specificity {rate('val_specificity')}, "
        f"{decision['n_val_negatives']} negatives)"
    )


def sweep(
    runs: Annotated[list[Path], typer.Argument(help="One or more run folders to compare.")],
    data: DataOption = None,
    angles: Annotated[
        str, typer.Option("--angles", help="START:STOP:STEP in degrees (STOP excluded) or a "
                          "comma list.")
    ] = "0:360:5",
    split: SubsetOption = "test",
    split_file: SplitFileOption = None,
    limit: LimitOption = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder of the results (default RUN/sweep for one run, "
                     "PARENT/sweep for several)."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Rotated copies per forward pass.")
    ] = 24,
    which: WhichOption = "best",
    device: DeviceOption = "auto",
    tta: TtaOption = None,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress bar (default: on a terminal)."),
    ] = None,
    channels_last: Annotated[
        bool | None,
        typer.Option("--channels-last/--no-channels-last",
                     help="NHWC images through the model (default: on CPU, where it is faster; "
                     "as in train)."),
    ] = None,
) -> None:
    """Consistency and accuracy Dice versus rotation angle, inside the inscribed disc."""
    from polypseg.errors import RunError
    from polypseg.geometry import parse_angles
    from polypseg.sweep import format_summary, sweep_runs

    try:
        angle_list = parse_angles(angles)
    except ValueError as err:
        raise RunError(str(err)) from None
    result = sweep_runs(
        runs, _data_of_run(runs[0], data), angle_list, subset=split, split_file=split_file,
        limit=limit, out=out, batch_size=batch_size, device=device, which=which, tta=tta,
        progress=progress, channels_last=channels_last,
    )
    typer.echo(format_summary(result))
    typer.echo(f"wrote {result['files']['json']} and {result['files']['csv']}")


def plot(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Sweep results (sweep.json or its folder) for Dice vs angle, or "
                       "run folders (with metrics.csv) for training curves."),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Figure path; .png and .svg are both written (default: "
                     "beside the first input)."),
    ] = None,
    title: Annotated[str | None, typer.Option("--title", help="Figure title.")] = None,
) -> None:
    """Draw Dice-vs-angle curves from sweeps, or training curves from run folders."""
    from polypseg.errors import RunError
    from polypseg.plotting import load_sweep, plot_sweeps, plot_training

    is_run = [p.is_dir() and (p / "metrics.csv").is_file() for p in paths]
    if all(is_run):
        written = plot_training(paths, out or paths[0] / "training.png")
    elif not any(is_run):
        sweeps = [load_sweep(p) for p in paths]
        first = paths[0] if paths[0].is_dir() else paths[0].parent
        written = plot_sweeps(sweeps, out or first / "dice_vs_angle.png", title=title)
    else:
        raise RunError("plot takes either sweep results or run folders, not both at once")
    typer.echo("wrote " + " and ".join(str(p) for p in written))


def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Folder of the demo's runs and figures.")
    ] = Path("runs/demo"),
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Dataset folder; default: ../shared/data/Kvasir-SEG (or "
                     "CVC-ClinicDB) when found, else a generated synthetic set."),
    ] = None,
    synthetic: Annotated[
        bool, typer.Option("--synthetic", help="Use the generated synthetic set even when real "
                           "data is found.")
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress bars (default: on a terminal)."),
    ] = None,
) -> None:
    """Offline demo (a few minutes on CPU): train unet and p4, evaluate, sweep, plot."""
    from polypseg.demo import DemoSettings, run_demo

    run_demo(DemoSettings(out=out, data=data, synthetic=synthetic, progress=progress))
