"""CLI commands: ``polypseg bench quality|speed|report`` (thin wrappers over polypseg.bench)."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import typer

bench_app = typer.Typer(
    name="bench",
    help="Benchmarks: quality (train/evaluate/sweep a plan) and speed (against MONAI UNet).",
    no_args_is_help=True,
)


def _command_line() -> str:
    return "polypseg " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _say(message: str) -> None:
    typer.echo(message, err=True)


@bench_app.command("quality")
def quality(
    plan: Path = typer.Option(..., "--plan", help="YAML benchmark plan (plans/*.yaml)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1,
                             help="Runs at once (subprocesses sharing the cores or the GPU)."),
    out: Path | None = typer.Option(None, "--out",
                                    help="Results folder (default: the plan's 'out')."),
    resume: bool = typer.Option(False, "--resume",
                                help="Resume half-done runs from their last checkpoint."),
    device: str | None = typer.Option(None, "--device",
                                      help="cpu or cuda (default: cuda when available)."),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="Validate the plan and list the runs; train nothing."),
    collect: bool = typer.Option(False, "--collect",
                                 help="Only collect the finished runs into the tables and "
                                      "plots; train and evaluate nothing."),
    only: list[str] | None = typer.Option(
        None, "--only", metavar="PATTERN",
        help="Train only the runs whose key (DATASET/ENTRY/seedN) matches this shell pattern, "
             "e.g. '*/p4*/seed2'; repeatable. The tables still hold every finished run."),
) -> None:
    """Run a quality plan: train, evaluate (test split), sweep and plot; skip finished runs.\f

    Args:
        plan: the YAML plan file (``plans/*.yaml``), read by :func:`polypseg.bench.plan.load_plan`.
        jobs: runs trained at once; above 1 each run is a ``polypseg bench worker`` subprocess with
            ``cores // jobs`` torch threads.
        out: the folder of the collected tables and plots; ``None``: the plan's ``out``.
        resume: continue half-done runs from their resume state (otherwise they are an error).
        device: ``cpu``, ``cuda`` or ``cuda:N``; ``None``: CUDA when available.
        dry_run: list every run with its state and stop; nothing is trained or written.
        collect: only collect the finished runs into the tables and plots.
        only: shell patterns on run keys (``DATASET/ENTRY/seedN``); ``None``: every unfinished run
            is trained.
    """
    from polypseg.bench.plan import load_plan
    from polypseg.bench.quality import run_quality
    from polypseg.bench.runs import (
        FINISHED,
        LEFT_OUT,
        check_spec,
        plan_runs,
        run_status,
        select_runs,
    )

    spec = load_plan(plan)
    if dry_run:  # what a run of the plan would do, from the run folders as they are
        counts: dict[str, int] = {}
        runs = plan_runs(spec)
        selected = {run.key for run in select_runs(runs, only)}
        for run in runs:
            check_spec(run)  # a folder of an edited plan: the same error the real run gives
            state, detail = run_status(run)
            if run.key not in selected and state != FINISHED:
                state, detail = LEFT_OUT, "not selected by --only"
            counts[state] = counts.get(state, 0) + 1
            where = spec.relative(run.run_dir)
            typer.echo(f"{run.key:<28} {state:<16} {where}" + (f"  ({detail})" if detail else ""))
        typer.echo(f"plan {spec.label}: " + ", ".join(f"{n} {state}" for state, n in
                                                      counts.items()))
        return
    outcome = run_quality(spec, jobs=jobs, out=out, resume=resume, device=device,
                          command=_command_line(), progress=_say, collect_only=collect,
                          only=only)
    # the study's HTML page (the report layer reads what bench wrote; bench never imports it)
    from polypseg.report.build import write_quality_report

    results = next(p for p in outcome.written if p.suffix == ".json")
    outcome.written.append(write_quality_report(results, results.with_suffix(".html")))
    typer.echo(f"trained {len(outcome.trained)}, reused {len(outcome.reused)}, "
               f"failed {len(outcome.failed)}")
    for path in outcome.written:
        typer.echo(f"wrote {path}")
    if outcome.failed:
        for key, message in outcome.failed.items():
            typer.secho(f"failed {key}: {message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


@bench_app.command("worker", hidden=True)
def worker(
    spec: Path = typer.Argument(..., help="A run's bench/spec.json."),
    resume: bool = typer.Option(False, "--resume", help="Resume an interrupted run."),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda."),
) -> None:
    """Bring one run of a plan to completion (started by `bench quality --jobs N`)."""
    import json
    import os

    from polypseg.bench.quality import THREADS_ENV
    from polypseg.bench.runs import RunSpec
    from polypseg.bench.worker import execute
    from polypseg.errors import PolypsegError

    threads = os.environ.get(THREADS_ENV)
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    try:
        run = RunSpec.from_dict(json.loads(spec.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise PolypsegError(f"cannot read run spec {spec}: {err}") from None
    execute(run, resume, device, lambda m: typer.echo(m))


@bench_app.command("speed")
def speed(
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    size: int = typer.Option(64, "--size", min=16,
                             help="Input side in pixels (256 on a GPU; smaller on CPU)."),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="Images per step."),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Interleaved timed repeats."),
    warmup: int = typer.Option(1, "--warmup", min=0, help="Untimed steps per model first."),
    params: int = typer.Option(2_000_000, "--params", min=1000,
                               help="Parameter count every model is matched to."),
    variants: str | None = typer.Option(None, "--variants",
                                        help="Comma-separated variants (default: all)."),
    depth: int | None = typer.Option(None, "--depth", help="U-Net depth (default: zoo's)."),
    memory: bool = typer.Option(True, "--memory/--no-memory", help="Measure peak memory."),
    out: Path = typer.Option(Path("results"), "--out", help="Results folder."),
    stem: str | None = typer.Option(None, "--stem",
                                    help="File stem (default speed-DEVICE, e.g. speed-cpu)."),
    side_by_side: bool = typer.Option(
        False, "--side-by-side",
        help="Time each variant's reference path (NCHW, MONAI loss) against the optimised one "
        "(channels-last, polypseg loss), interleaved; writes speed-train-DEVICE by default.",
    ),
    widths: str | None = typer.Option(
        None, "--widths", help="Side by side: comma-separated widths, one per variant "
        "(default: matched to --params)."),
    compile_model: bool = typer.Option(
        False, "--compile", help="Side by side: torch.compile the optimised path."),
    infer_only: bool = typer.Option(
        False, "--infer-only", help="Side by side: time inference only (evaluate/sweep/predict's "
        "path); writes speed-infer-DEVICE-SIZE by default."),
) -> None:
    """Time every variant against a MONAI UNet of similar size (ratios, images/s, memory),
    or (--side-by-side) each variant's optimised training step against its reference path.\f

    Args:
        device: ``cpu`` or ``cuda``: where every model is timed.
        size: side in pixels of the square input batch.
        batch_size: images per timed step.
        repeats: interleaved timed rounds over all models (medians of these).
        warmup: untimed steps per model before the timed rounds.
        params: the parameter count every model's width is matched to.
        variants: comma-separated zoo variants; ``None``: every available one.
        depth: U-Net depth of every model; ``None``: zoo's default.
        memory: also measure each model's peak memory, each in a fresh process.
        out: the folder that receives ``STEM.json`` and ``STEM.md``.
        stem: the file stem; ``None``: ``speed-DEVICE`` (side by side: ``speed-train-DEVICE`` or
            ``speed-infer-DEVICE-SIZE``).
        side_by_side: time each variant's reference path against the optimised one instead
            (:mod:`polypseg.bench.sidebyside`).
        widths: side by side: comma-separated widths, one per variant; ``None``: matched to
            ``params``.
        compile_model: side by side: ``torch.compile`` the optimised path's model.
        infer_only: side by side: time inference only, not training steps.
    """
    from polypseg.bench.speed import run_speed, write_speed

    if side_by_side:
        _side_by_side(device, size, batch_size, repeats, warmup, params, variants, depth,
                      widths, compile_model, out, stem, infer_only)
        return
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            from polypseg.errors import PolypsegError

            raise PolypsegError("--device cuda: no CUDA device is available here")
    doc = run_speed(
        device=device, size=size, batch_size=batch_size, repeats=repeats, warmup=warmup,
        target_params=params, depth=depth, memory=memory, progress=_say,
        variants=[v.strip() for v in variants.split(",") if v.strip()] if variants else None,
    )
    doc["command"] = _command_line()
    if device == "cpu":
        doc["label"] = (f"CPU run at {size} px, batch {batch_size} (not 256 px): ratios are "
                        "indicative of the relative cost; GPU figures need a GPU run")
    paths = write_speed(doc, out, stem or f"speed-{device.split(':')[0]}")
    for path in paths:
        typer.echo(f"wrote {path}")


def _side_by_side(
    device: str, size: int, batch_size: int, repeats: int, warmup: int, params: int,
    variants: str | None, depth: int | None, widths: str | None, compile_model: bool,
    out: Path, stem: str | None, infer_only: bool = False,
) -> None:
    import zoo
    from polypseg.bench.sidebyside import run_side_by_side, side_by_side_markdown
    from polypseg.bench.speed import write_speed
    from polypseg.errors import PolypsegError

    names = [v.strip() for v in (variants or "p4,steerable").split(",") if v.strip()]
    depth = zoo.DEFAULT_DEPTH if depth is None else depth
    if widths:
        try:
            chosen = [int(w) for w in widths.split(",")]
        except ValueError:
            raise PolypsegError(f"--widths must be integers, got {widths!r}") from None
        if len(chosen) != len(names) or min(chosen) < 1:
            raise PolypsegError(f"--widths: give one width >= 1 per variant ({len(names)})")
    else:
        chosen = [zoo.match_params(name, params, depth=depth) for name in names]
    try:
        zoo.check_input_size(size, depth, name="--size")
    except ValueError as err:
        raise PolypsegError(str(err)) from None
    doc = run_side_by_side(
        variants=names, widths=chosen, depth=depth, size=size, batch_size=batch_size,
        repeats=repeats, warmup=warmup, device=device, compile_model=compile_model,
        progress=_say, modes=("infer",) if infer_only else ("train", "infer"),
    )
    doc["command"] = _command_line()
    kind = "infer" if infer_only else "train"
    default_stem = f"speed-{kind}-{device.split(':')[0]}-{size}"
    paths = write_speed(doc, out, stem or default_stem, render=side_by_side_markdown)
    for path in paths:
        typer.echo(f"wrote {path}")


@bench_app.command("cost")
def cost(
    plan: Path = typer.Option(..., "--plan", help="YAML benchmark plan (plans/*.yaml)."),
    repeats: int = typer.Option(7, "--repeats", min=1, help="Interleaved timed repeats."),
    warmup: int = typer.Option(1, "--warmup", min=0, help="Untimed steps per model first."),
    out: Path | None = typer.Option(None, "--out",
                                    help="Results folder (default: the plan's 'out')."),
) -> None:
    """Time one training step of every entry of a plan side by side (CPU, one thread):
    seconds per image and ratios, for the cost columns and the Pareto plot.\f

    Args:
        plan: the YAML plan whose entries are timed (their variant, width and depth at the plan's
            size and batch size).
        repeats: interleaved timed rounds over all entries.
        warmup: untimed steps per entry before the timed rounds.
        out: the folder of ``cost-PLAN.{json,md}``; ``None``: the plan's ``out``.
    """
    from polypseg.atomic import atomic_write_report
    from polypseg.bench.cost import TimedModel, step_times
    from polypseg.bench.hardware import hardware_info
    from polypseg.bench.plan import load_plan
    from polypseg.bench.runs import resolve_entries

    spec = load_plan(plan, check_paths=False)
    widths = resolve_entries(spec)
    models = [TimedModel(e.name, e.variant, widths[e.name]["width"],
                         e.depth if e.depth is not None else spec.depth)
              for e in spec.training_entries()]
    rows = step_times(models, size=spec.size, batch_size=spec.batch_size, repeats=repeats,
                      warmup=warmup, progress=_say)
    reference = rows[0]["step_seconds"]
    for row in rows:
        row["ratio"] = row["step_seconds"] / reference
    doc = {"kind": "polypseg-cost/1", "plan": spec.name, "command": _command_line(),
           "date": time.strftime("%Y-%m-%d"),
           "hardware": hardware_info("cpu"),
           "settings": {"size": spec.size, "batch_size": spec.batch_size, "depth": spec.depth,
                        "repeats": repeats, "warmup": warmup, "threads": 1,
                        "clock": "CPU time of the calling thread"},
           "models": rows}
    folder = out or spec.out
    stem = folder / f"cost-{spec.name}"
    lines = [f"# Training-step cost, plan {spec.name}", "",
             f"- {doc['date']}, {doc['hardware'].get('device_name')}; one torch thread, CPU "
             f"time of one training step (forward, backward, AdamW), batch {spec.batch_size} "
             f"at {spec.size} px, median of {repeats} interleaved repeats.",
             f"- Command: `{doc['command']}`", "",
             f"| entry | variant | width | params | s/step | ms/image | ratio to "
             f"{rows[0]['name']} |", "|---|---|--:|--:|--:|--:|--:|"]
    lines += [f"| {r['name']} | {r['variant']} | {r['width']} | {r['params']:,} | "
              f"{r['step_seconds']:.3f} | {1000 * r['seconds_per_image']:.1f} | "
              f"{r['ratio']:.2f} |" for r in rows]
    atomic_write_report(stem, doc, "\n".join(lines) + "\n")
    typer.echo("\n".join(lines[6:]))
    typer.echo(f"wrote {stem.with_suffix('.json')} and .md")


@bench_app.command("match-time")
def match_time(
    variant: str = typer.Option("unet", "--variant", help="The variant to widen."),
    to: str = typer.Option(..., "--to",
                           help="Reference VARIANT:WIDTH whose step time to match (p4:4)."),
    widths: str = typer.Option("4:25", "--widths", help="Candidate widths, START:STOP or list."),
    size: int = typer.Option(96, "--size", min=8, help="Input side in pixels."),
    depth: int | None = typer.Option(None, "--depth", help="U-Net depth (default: zoo's)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Images per step."),
    repeats: int = typer.Option(7, "--repeats", min=1, help="Interleaved timed repeats."),
) -> None:
    """Find the width of VARIANT whose training step costs what the reference's does
    (the compute-matched baseline of a plan).\f

    Args:
        variant: the variant whose width is searched (``unet`` for the compute-matched baseline).
        to: the reference as ``VARIANT:WIDTH`` (e.g. ``p4:4``).
        widths: the candidate widths: ``START:STOP`` (STOP excluded) or a comma list.
        size: side in pixels of the timed batch.
        depth: U-Net depth of both models; ``None``: zoo's default.
        batch_size: images per timed training step.
        repeats: interleaved timed rounds over the reference and every candidate.
    """
    from polypseg.bench.cost import TimedModel, match_step_time, parse_widths
    from polypseg.errors import PolypsegError

    ref_variant, _, ref_width = to.partition(":")
    if not ref_width.isdigit():
        raise PolypsegError(f"--to must be VARIANT:WIDTH (e.g. p4:4), got {to!r}")
    result = match_step_time(TimedModel(to, ref_variant, int(ref_width), depth), variant,
                             parse_widths(widths), size=size, batch_size=batch_size,
                             depth=depth, repeats=repeats, progress=_say)
    ref = result["reference"]
    typer.echo(f"reference {to}: {ref['params']:,} parameters, {ref['step_seconds']:.3f} s/step")
    for row in result["candidates"]:
        mark = "  <- matched" if row["width"] == result["width"] else ""
        typer.echo(f"{variant} width {row['width']:>3}: {row['params']:>9,} parameters, "
                   f"{row['step_seconds']:.3f} s/step, ratio {row['ratio']:.2f}{mark}")


@bench_app.command("bundle")
def bundle(
    plan: Path = typer.Option(..., "--plan", help="YAML benchmark plan (plans/*.yaml)."),
    out: Path = typer.Option(Path("results/models"), "--out",
                             help="Folder of the bundles (one per dataset and entry)."),
) -> None:
    """Package the best run (by validation Dice) of every entry on every dataset as a ready
    model folder with a model card; reads the plan's collected quality-PLAN.json."""
    import json

    from polypseg.bench.bundles import write_bundles
    from polypseg.bench.plan import load_plan
    from polypseg.errors import PolypsegError

    spec = load_plan(plan, check_paths=False)
    results = spec.out / f"quality-{spec.name}.json"
    try:
        doc = json.loads(results.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise PolypsegError(f"cannot read {results} (run `polypseg bench quality --plan "
                            f"{plan}` first): {err}") from None
    for folder in write_bundles(spec, doc, out):
        typer.echo(f"wrote {folder}")


@bench_app.command("report")
def report(
    results: Path = typer.Argument(..., help="A quality-*.json or speed*.json file."),
) -> None:
    """Re-render the markdown table next to a results JSON file."""
    import json

    from polypseg.atomic import atomic_write_text
    from polypseg.bench.report import quality_markdown, speed_markdown
    from polypseg.errors import PolypsegError

    try:
        doc = json.loads(results.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise PolypsegError(f"cannot read results file {results}: {err}") from None
    kind = str(doc.get("kind", ""))
    render = speed_markdown if kind.startswith("polypseg-speed") else quality_markdown
    if kind.startswith("polypseg-speed-side-by-side"):
        from polypseg.bench.sidebyside import side_by_side_markdown as render
    target = results.with_suffix(".md")
    atomic_write_text(target, render(doc))
    typer.echo(f"wrote {target}")


def register(app: typer.Typer) -> None:
    """Add the ``bench`` sub-app to the main app."""
    app.add_typer(bench_app, name="bench")
