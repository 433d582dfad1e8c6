"""CLI commands ``polypseg train | evaluate | sweep | plot | demo``: thin layers over
:mod:`polypseg.training`, :mod:`polypseg.evaluation`, :mod:`polypseg.sweep`,
:mod:`polypseg.plotting` and :mod:`polypseg.demo`. Heavy imports happen inside each command.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from polypseg.cli.options_from_config import given_values, options_from
from polypseg.options import Tta
from polypseg.training.config import TrainConfig

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
    Tta | None,
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


ConfigFileOption = Annotated[
    Path | None,
    typer.Option("--config", help="YAML file of options (keys as below, - or _); "
                 "command-line options override it."),
]


@options_from(TrainConfig, leading=[inspect.Parameter(
    "config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ConfigFileOption)])
def train(config: ConfigFileOption = None, **values: Any) -> None:
    """Train a model; writes RUN/{config.json,split.json,checkpoints/,metrics.csv,tb/}.

    Multi-GPU: torchrun --nproc-per-node N -m polypseg train ...\f

    Args:
        config: a YAML file of TrainConfig fields; ``None``: none.
        **values: one value per :class:`~polypseg.training.config.TrainConfig` field with a
            command-line option (its flags, help and bound are the field's metadata), ``None``
            (or ``False`` for a bare flag) where the command line did not give it.
    """
    from polypseg.errors import RunError
    from polypseg.training.config import build_config, resume_base

    given = given_values(TrainConfig, values)  # field name -> value, as TrainConfig holds it
    out = given.get("out")
    base: dict[str, Any] = {}
    if given.get("resume"):
        variant = given.get("variant")
        run_dir = out or (str(Path("runs") / variant) if variant else None)
        if run_dir is None:
            raise RunError("--resume needs --out RUN (the run folder to continue)")
        base = resume_base(run_dir)
    if out is not None:  # before any work: a file in the way, a read-only disk
        from polypseg.atomic import check_output_folder

        check_output_folder(Path(out))
    from polypseg.training import train as run_training

    run_training(build_config(config, given, base=base))


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
    mIoU, S-measure, weighted F, E-measure, MAE), mean ± std -> JSON + CSV.\f

    Args:
        run: a run folder or checkpoint stem.
        data: the dataset folder; ``None``: the run's own. A folder the split does not describe is
            evaluated whole.
        split: the set of the split: ``train``, ``val``, ``test``, or ``all`` (every image of
            ``data``).
        split_file: the split file; ``None``: the run's ``split.json``.
        tta: ``rot90`` for test-time averaging; ``None``: one forward pass.
        out: the results folder; ``None``: ``RUN/eval``.
        which: the checkpoint, ``best`` or ``last``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: images per forward pass.
        limit: only the first N images of the set; ``None``: all.
        progress: show a progress bar; ``None``: only on a terminal.
        channels_last: NHWC images through the model; ``None``: on CPU only.
        save_maps: also write each probability map as an 8-bit PNG at its mask's size.
    """
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
    negatives, and write them into its metadata (training does this for new runs).\f

    Args:
        run: a run folder or checkpoint stem.
        data: the dataset folder; ``None``: the run's own.
        split_file: the split file; ``None``: the run's ``split.json``.
        which: the checkpoint, ``best`` or ``last``.
        target_specificity: frame-level specificity (0.01 to 1) to reach on the validation
            negatives.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    """
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

    def rule(chosen: dict[str, Any]) -> str:
        def rate(key: str) -> str:
            value = chosen.get(key)
            return "n/a" if value is None else f"{value:.3f}"

        return (f"the largest region covers >= {chosen['min_area_fraction']:.2%} and the peak "
                f"is >= {chosen['min_peak_probability']:.3f} (validation: sensitivity "
                f"{rate('val_sensitivity')}, specificity {rate('val_specificity')})")

    typer.echo(f"{stem}: polyp present when {rule(decision)}; "
               f"{decision['n_val_positives']} images, {decision['n_val_negatives']} negatives")
    for mode, chosen in sorted((decision.get("by_tta") or {}).items()):
        typer.echo(f"  with --tta {mode}: when {rule(chosen)}")


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
    """Consistency and accuracy Dice versus rotation angle, inside the inscribed disc.\f

    Args:
        runs: run folders (or checkpoint stems) swept on the same images.
        data: the dataset folder; ``None``: the first run's own.
        angles: ``START:STOP:STEP`` in degrees (STOP excluded) or a comma list.
        split: the set of the split: ``train``, ``val`` or ``test``.
        split_file: the split file; ``None``: the first run's ``split.json``.
        limit: only the first N images of the set; ``None``: all.
        out: the results folder; ``None``: ``RUN/sweep`` for one run, ``PARENT/sweep`` for several.
        batch_size: rotated copies per forward pass.
        which: each run's checkpoint, ``best`` or ``last``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        tta: ``rot90`` for test-time averaging; ``None``: one forward pass.
        progress: show a progress bar; ``None``: only on a terminal.
        channels_last: NHWC images through the models; ``None``: on CPU only.
    """
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
    """Offline demo (a few minutes on CPU): train unet and p4, evaluate, sweep, plot.\f

    Args:
        out: the folder of the demo's runs and figures.
        data: the dataset folder; ``None``: ``../shared/data/Kvasir-SEG`` (or CVC-ClinicDB) when
            found, else a generated synthetic set.
        synthetic: use the generated synthetic set even when real data is found.
        progress: show progress bars; ``None``: only on a terminal.
    """
    from polypseg.demo import DemoSettings, run_demo

    run_demo(DemoSettings(out=out, data=data, synthetic=synthetic, progress=progress))
