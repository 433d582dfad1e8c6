#!/usr/bin/env python
"""Start-up times of the CLI: each command run as a whole new process, several times.

For every command the script starts a fresh ``python -m polypseg ...`` process, waits for it and
records its wall time and its CPU time (user + system, from ``getrusage`` of the finished
child); the median over ``--repeats`` runs is the figure. On a shared machine the wall time
also counts the time other jobs hold the cores; the CPU time is close to what an idle machine's
wall time would be for these single-threaded start-ups. Commands:

* ``polypseg --help`` and every subcommand's ``--help`` (goal: under 1 s each);
* ``polypseg models`` (goal: under 2 s) with its table cache filled by an untimed run first
  (:mod:`polypseg.cli.tablecache`), and ``polypseg models`` with an empty cache every run
  ("cold": what the first call after an upgrade or a zoo edit costs);
* a training run's first optimiser step (goal: within 10 s of the process start): ``polypseg
  train`` of a p4 U-Net (width 4, depth 3, 96 px, batch 8, one step, one epoch) on the shared
  Kvasir-SEG data; the child reports the moment its first step ends through a training callback,
  and the time from starting the process to that moment is the figure (the whole run, with its
  validation and checkpoints, is timed too).

With ``--baseline TREE`` (a checkout of other code, e.g. ``git worktree add ../base main``)
every command also runs from that tree, alternating (baseline, this tree, baseline, ...), so a
changing load hits both alike; the table then gives both medians and their ratio.

    .venv/bin/python scripts/startup_times.py                      # 5 runs of each
    .venv/bin/python scripts/startup_times.py --repeats 3 --out results/speed-startup
    .venv/bin/python scripts/startup_times.py --baseline ../base --skip-train
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GOALS = {"help": 1.0, "models": 2.0, "models_cold": None, "first_step": 10.0}
FIRST_STEP_MARK = "FIRST-STEP-DONE-AT"


def _child_first_step(args: list[str]) -> int:
    """Child mode: run ``polypseg`` with ``args``, printing the wall clock at the first step."""
    import polypseg.training as training
    from polypseg.cli import main

    real_train = training.train

    class FirstStep(training.TrainCallback):
        seen = False

        def on_step_end(self, info: Any) -> None:
            if not self.seen:
                self.seen = True
                print(f"{FIRST_STEP_MARK} {time.time():.6f} {time.process_time():.6f}",
                      flush=True)

    def train(config: Any, callbacks: Any = ()) -> Any:
        return real_train(config, [*callbacks, FirstStep()])

    training.train = train
    return main(args)


def run_once(
    command: list[str], env: dict[str, str], cwd: Path = REPO
) -> dict[str, float]:
    """Wall and CPU seconds of one process running ``command`` (and the first-step mark)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    wall = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd,
                          check=False)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr}")
    result = {
        "wall_s": wall,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
    }
    for line in proc.stdout.splitlines():
        if line.startswith(FIRST_STEP_MARK):
            _, at, cpu = line.split()
            result["first_step_s"] = float(at) - started
            result["first_step_cpu_s"] = float(cpu)
    return result


def summarize(runs: list[dict[str, float]]) -> dict[str, Any]:
    keys = runs[0].keys()
    return {
        key: {
            "median": statistics.median(r[key] for r in runs),
            "min": min(r[key] for r in runs),
            "max": max(r[key] for r in runs),
        }
        for key in keys
    }


def _cell(stats: dict[str, float]) -> str:
    return f"{stats['median']:.2f} s ({stats['min']:.2f}-{stats['max']:.2f})"


def markdown(doc: dict[str, Any]) -> str:
    baseline = doc.get("baseline")
    lines = [
        "# Start-up: each command as a whole new process",
        "",
        f"- Date {doc['date']}; {doc['cpu']}, {doc['cores']} cores; {doc['repeats']} runs of "
        f"each command; load average before {doc['load_before']}, after {doc['load_after']}.",
        f"- Command: `{doc['command']}`",
        "- Wall: from starting the process to its exit (or to the end of the first training "
        "step). CPU: user + system time of the process (on a shared machine the closer "
        "figure to an idle machine's wall time).",
    ]
    if baseline:
        lines.append(f"- Baseline: {baseline} (its runs alternate with this tree's); ratio = "
                     "baseline median wall / this tree's.")
    lines += ["", "| command | what is timed | goal | wall median (min-max) | CPU median |"
              + (" baseline wall median | ratio |" if baseline else ""),
              "|---|---|--:|--:|--:|" + ("--:|--:|" if baseline else "")]
    for row in doc["commands"]:
        for key, label in (("first_step_s", "start to end of first step"),
                           ("wall_s", "whole process")):
            if key not in row["summary"]:
                continue
            stats = row["summary"][key]
            goal = f"{row['goal']:g} s" if key == row["goal_key"] and row["goal"] else ""
            cpu_key = "cpu_s" if key == "wall_s" else "first_step_cpu_s"
            cpu = f"{row['summary'][cpu_key]['median']:.2f} s"
            line = f"| `{row['display']}` | {label} | {goal} | {_cell(stats)} | {cpu} |"
            if baseline:
                old = row.get("baseline_summary", {}).get(key)
                line += (f" {_cell(old)} | {old['median'] / stats['median']:.2f}x |"
                         if old else " | |")
            lines.append(line)
    return "\n".join(lines) + "\n"


def help_commands() -> list[list[str]]:
    """``[]`` (the top level) and every command and group path of the CLI, e.g. ``["data",
    "check"]``: what ``--help`` is timed for."""
    sys.path.insert(0, str(REPO))
    import typer

    from polypseg.cli import app

    paths: list[list[str]] = [[]]

    def walk(group: Any, prefix: list[str]) -> None:
        for name, command in sorted(getattr(group, "commands", {}).items()):
            paths.append([*prefix, name])
            walk(command, [*prefix, name])

    walk(typer.main.get_command(app), [])
    return paths


def _commands(data: str, shown: str, skip_train: bool) -> list[tuple[str, str, list[str], str]]:
    """``(key, display, argv after python, goal_key)`` of every timed command; the training
    run reads ``data`` and is displayed with ``shown`` in its place."""
    commands = [
        ("help", "polypseg " + " ".join([*path, "--help"]),
         ["-m", "polypseg", *path, "--help"], "wall_s")
        for path in help_commands()
    ]
    commands += [
        ("models", "polypseg models", ["-m", "polypseg", "models"], "wall_s"),
        ("models_cold", "polypseg models (empty cache)", ["-m", "polypseg", "models"], "wall_s"),
    ]
    if not skip_train:
        train_args = [
            "train", "--model", "p4", "--data", data, "--size", "96", "--depth", "3",
            "--width", "4", "--batch-size", "8", "--epochs", "1", "--limit-train", "8",
            "--limit-val", "8", "--no-progress", "--quiet",
        ]
        commands.append(("first_step", "polypseg " + " ".join(train_args).replace(data, shown),
                         ["scripts/startup_times.py", "--child-first-step", *train_args],
                         "first_step_s"))
    return commands


def _time_command(
    key: str, argv: list[str], trees: dict[str, Path], env: dict[str, str], tmp: Path,
    repeats: int, display: str,
) -> dict[str, list[dict[str, float]]]:
    """Runs of one command from each tree, alternating; ``{tree label: [run, ...]}``."""
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in trees}
    caches = {label: tmp / f"cache-{label}" for label in trees}
    if key == "models":  # fill each tree's table cache first (untimed)
        for label, tree in trees.items():
            run_once([sys.executable, *argv], _env(env, tree, caches[label]), tree)
    for i in range(repeats):
        for label, tree in trees.items():
            cache = caches[label] if key != "models_cold" else tmp / f"cold-{label}-{i}"
            cmd = [sys.executable, *argv]
            if key == "first_step":
                cmd += ["--out", str(tmp / f"run-{label}-{i}")]
            runs[label].append(run_once(cmd, _env(env, tree, cache), tree))
            print(f"{label:8s} {display[:40]:40s} run {i + 1}: " + ", ".join(
                f"{k} {v:.2f}" for k, v in runs[label][-1].items()), file=sys.stderr)
    return runs


def _env(env: dict[str, str], tree: Path, cache: Path) -> dict[str, str]:
    return {**env, "PYTHONPATH": str(tree), "POLYPSEG_CACHE_DIR": str(cache)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child-first-step"]:
        return _child_first_step(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", default="../shared/data/Kvasir-SEG")
    parser.add_argument("--out", type=Path, default=None, help="write OUT.json and OUT.md")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a checkout of other code to time alternately with this one")
    parser.add_argument("--skip-train", action="store_true",
                        help="leave out the training run's first step")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    env.pop("PYTHONSTARTUP", None)
    trees = {"new": REPO}
    if args.baseline is not None:
        trees = {"baseline": args.baseline.resolve(), "new": REPO}
    data = str(Path(args.data).resolve())
    load_before = [round(v, 2) for v in os.getloadavg()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="polypseg-startup-") as tmp:
        for key, display, command, goal_key in _commands(data, args.data, args.skip_train):
            runs = _time_command(key, command, trees, env, Path(tmp), args.repeats, display)
            row = {"command": key, "display": display, "goal": GOALS[key],
                   "goal_key": goal_key, "runs": runs["new"], "summary": summarize(runs["new"])}
            if "baseline" in runs:
                row["baseline_runs"] = runs["baseline"]
                row["baseline_summary"] = summarize(runs["baseline"])
            rows.append(row)
    sys.path.insert(0, str(REPO))
    from polypseg.bench.hardware import cpu_model

    doc = {
        "kind": "polypseg-startup/1",
        "date": time.strftime("%Y-%m-%d"),
        "command": "python scripts/startup_times.py " + " ".join(argv),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "repeats": args.repeats,
        "load_before": load_before,
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "baseline": "the code of another checkout (--baseline)" if args.baseline else None,
        "commands": rows,
    }
    text = markdown(doc)
    print(text)
    if args.out is not None:
        from polypseg.atomic import atomic_write_report

        atomic_write_report(args.out, doc, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
