"""Re-evaluate the finished runs of a bench plan with the current metrics (no training).

Every evaluation file of every finished run (``bench/ENTRY/test*.json`` and
``cross-OTHER/test*.json``) is computed again, one run after another in this one process,
with torch on one thread; sweeps and checkpoints are left as they are. Then collect the
tables again with ``polypseg bench quality --plan PLAN --collect``.

    python scripts/reevaluate_study.py plans/cpu.yaml [--only 'kvasir/unet/*'] [--tta-only]

``--tta-only`` redoes only the evaluations with test-time augmentation (after the runs were
calibrated again for it: ``polypseg calibrate`` chooses ``decision.by_tta``).

Run it from the project root (paths are written relative to it).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan")
    parser.add_argument("--only", action="append", default=None, help="run-key patterns")
    parser.add_argument("--tta-only", action="store_true",
                        help="only the evaluations with test-time augmentation")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from polypseg.bench.plan import load_plan
    from polypseg.bench.runs import eval_file, is_complete, plan_runs
    from polypseg.evaluation import evaluate_run

    plan = load_plan(args.plan)
    specs = [s for s in plan_runs(plan) if is_complete(s)]
    if args.only:
        specs = [s for s in specs if any(fnmatch.fnmatch(s.key, p) for p in args.only)]
    def rel(path: object) -> str:  # committed results hold no absolute paths
        return os.path.relpath(str(path))

    start = time.monotonic()
    for number, spec in enumerate(specs, 1):
        for evaluation in spec.evaluations:
            if args.tta_only and not evaluation.tta:
                continue
            data_dir, split_file = spec.data_dir, spec.split_file
            if evaluation.cross:
                other = spec.others[str(evaluation.dataset)]
                data_dir, split_file = other["data_dir"], other["split_file"]
            out = eval_file(spec, evaluation).parent
            evaluate_run(rel(spec.run_dir), rel(data_dir), subset="test",
                         split_file=rel(split_file), tta=evaluation.tta, out=rel(out),
                         device="cpu")
        print(f"[{number}/{len(specs)}] {spec.key} ({time.monotonic() - start:.0f} s)",
              flush=True)


if __name__ == "__main__":
    main()
