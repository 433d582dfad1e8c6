"""Trained-model bundles: the best run of each entry on each dataset, ready to use.

A bundle is a minimal run folder, so every command that takes a run folder takes it as it is
(``polypseg predict``, ``serve``, ``export``, ``evaluate``, ``sweep``)::

    BUNDLE/checkpoints/best.safetensors   the weights (safetensors: no pickle)
    BUNDLE/checkpoints/best.json          variant, model config, input size/mean/std, threshold
    BUNDLE/config.json                    the training configuration (paths made relative)
    BUNDLE/split.json                     the split it was trained on
    BUNDLE/metrics.csv                    its training curve
    BUNDLE/eval/test.{json,csv}           its test evaluation (what ``polypseg evaluate`` writes)
    BUNDLE/sweep/sweep.json, sweep_images.csv, sweep.csv
                                          its rotation sweep (what ``polypseg sweep`` writes)
    BUNDLE/README.md                      the model card

So ``polypseg report BUNDLE...`` shows its numbers and gallery with nothing computed anew but
the pictures. A bundle is read-only: the commands above write their output elsewhere (see
:func:`polypseg.paths.default_output`).

The run is chosen per (dataset, entry) by validation Dice, never by test (see
:func:`polypseg.bench.collect.best_runs`); its card reports its test metrics and those of
every seed.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from polypseg.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from polypseg.bench.collect import best_runs
from polypseg.bench.plan import Plan
from polypseg.bench.runs import plan_runs

#: Files copied from the run folder into a bundle.
COPIED = ("checkpoints/best.safetensors", "checkpoints/best.json", "split.json", "metrics.csv")
#: Files copied from the run's bench folder of the entry (``bench/ENTRY/``): (from, to).
EVALUATED = (("test.json", "eval/test.json"), ("test.csv", "eval/test.csv"),
             ("sweep.json", "sweep/sweep.json"), ("sweep_images.csv", "sweep/sweep_images.csv"),
             ("sweep.csv", "sweep/sweep.csv"))
LICENCE = (
    "Research use only. The weights were trained on {dataset}, which its authors release for "
    "research and educational use only, not for commercial use; the same terms apply to "
    "these weights. This is not a medical device: no output of this model may inform a "
    "clinical decision."
)


def citation(label: str) -> str:
    """How to cite the dataset a plan labels ``label`` (:mod:`polypseg.data.registry`; the
    label itself when the registry does not know it)."""
    from polypseg.data import registry
    from polypseg.errors import DataError

    try:
        return registry.get(label).citation
    except DataError:
        return label


def bundle_name(dataset: str, entry: str) -> str:
    """``kvasir-p4``, ``cvc-unet-rotaug``: a folder name for the bundle of an entry."""
    return f"{dataset}-{entry.replace('+', '-')}"


def _stopping(options: dict[str, Any]) -> str:
    """The early-stopping rule of a plan's ``train_options``, in words."""
    floor = options.get("min_epochs", 0)
    return f"patience {options.get('patience', 0)}" + (
        f", not before epoch {floor}" if floor else "")


def training_command(train: dict[str, Any], plan: Plan) -> str:
    """The ``polypseg train`` command line that reproduces a plan's run (paths relative to
    the project root)."""
    options = [("model", train["variant"]), ("data", plan.relative(train["data"])),
               ("split-file", plan.relative(train["split_file"])),
               ("out", plan.relative(train["out"]))]
    for key in ("size", "depth", "width", "epochs", "batch_size", "lr", "seed", "patience",
                "min_epochs"):
        if train.get(key) is not None and (key != "min_epochs" or train[key]):
            options.append((key.replace("_", "-"), train[key]))
    words = ["polypseg", "train"]
    for key, value in options:
        words += [f"--{key}", str(value)]
    if train.get("rot_aug"):
        words.append("--rot-aug")
    return " ".join(shlex.quote(w) for w in words)


def _format_metrics(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()
                     if isinstance(v, (int, float)) and k != "hd95") + (
        f", HD95 {metrics['hd95']:.1f} px" if isinstance(metrics.get("hd95"), float) else "")


def _percent(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "n/a"


def _rate(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "n/a"


def frames_without_polyp(row: dict[str, Any], decision: dict[str, Any] | None,
                         negatives_share: float) -> list[str]:
    """The card's section on frames that show no polyp: the false-positive rate on the test
    negatives and the frame-level "polyp present" rule with its thresholds (markdown lines).

    Args:
        row: the bundle's result row (``negatives``: its test evaluation's false-positive rate,
            mean predicted area and frame-level sensitivity/specificity).
        decision: the checkpoint's recorded decision (``None``: the default rule); a row
            evaluated with test-time augmentation states the thresholds chosen for it.
        negatives_share: the share of negative views in its training epochs (0: none).
    """
    from polypseg.decision import for_tta, resolve
    from polypseg.negatives_eval import FP_AREA

    negatives = row.get("negatives") or {}
    rule = resolve(for_tta(decision, row.get("tta")))
    lines = ["", "## Frames without a polyp", ""]
    lines.append(
        "- Training: " + (f"{negatives_share:.0%} of each epoch's views were background-only "
                          "(negatives), with an empty target." if negatives_share else
                          "every training image shows a polyp; no negative examples."))
    if negatives.get("n_negatives"):
        lines.append(
            f"- False-positive rate: {_percent(negatives.get('false_positive_rate'))} of "
            f"{negatives['n_negatives']} test negatives (crops of the test images clear of "
            f"their masks, `polypseg.data.negatives`, seed 0) get predicted foreground over "
            f"{FP_AREA:.1%} of the image; mean predicted area on them "
            f"{_percent(negatives.get('mean_pred_fraction'))}.")
    how = (f"chosen on the validation images and their negatives for specificity "
           f"{rule.get('target_specificity', 0.95):.2f} (validation: sensitivity "
           f"{_rate(rule.get('val_sensitivity'))}, specificity "
           f"{_rate(rule.get('val_specificity'))})"
           + (f", on maps predicted with `--tta {row['tta']}`" if row.get("tta") else "")
           if str(rule.get("source")).startswith("validation")
           else "the default rule, not calibrated (`polypseg calibrate` chooses them)")
    lines.append(
        f"- Frame-level decision (`polyp_present` in `predict`, `serve` and `evaluate`): a "
        f"polyp is present when the largest predicted region covers at least "
        f"{rule['min_area_fraction']:.2%} of the image and its peak probability is at least "
        f"{rule['min_peak_probability']:.3f}; {how}.")
    if not row.get("tta"):
        for mode, chosen in sorted(((decision or {}).get("by_tta") or {}).items()):
            lines.append(
                f"- With `--tta {mode}` the map is the mean over the four quarter turns, "
                f"smoother and less peaked, so the rule has its own thresholds, chosen the same "
                f"way on averaged maps: a region of at least "
                f"{float(chosen['min_area_fraction']):.2%} and a peak of at least "
                f"{float(chosen['min_peak_probability']):.3f} (validation: sensitivity "
                f"{_rate(chosen.get('val_sensitivity'))}, specificity "
                f"{_rate(chosen.get('val_specificity'))}).")
    if negatives.get("n_negatives"):
        lines.append(
            f"- On test, with this rule: sensitivity {_rate(negatives.get('frame_sensitivity'))} "
            f"over the {row.get('n_test_images')} test images, specificity "
            f"{_rate(negatives.get('frame_specificity'))} over the {negatives['n_negatives']} "
            "negatives.")
    return lines


def _sweep_and_seeds(sweep: dict[str, Any], angles: Any, seeds: list[dict[str, Any]]
                     ) -> list[str]:
    """The card's lines on the rotation sweep (when there is one) and on every seed."""
    lines = []
    if sweep:
        lines.append(
            f"- Rotation sweep ({angles} degrees, inscribed disc): mean Dice "
            f"{sweep.get('accuracy_mean', float('nan')):.3f}, worst angle "
            f"{sweep.get('accuracy_min', float('nan')):.3f}, consistency off multiples of 90 "
            f"degrees {sweep.get('consistency_off90', float('nan')):.3f}.")
    lines.append("- Every seed: " + "; ".join(
        f"seed {s['seed']}: test Dice {s['metrics']['dice']:.3f} (val {s['val_dice']:.3f})"
        for s in seeds) + ".")
    return lines


def model_card(doc: dict[str, Any], row: dict[str, Any], seeds: list[dict[str, Any]],
               name: str, command: str, variant: str, params: int | None,
               decision: dict[str, Any] | None = None, negatives_share: float = 0.0) -> str:
    """The README.md of a bundle (markdown).

    Args:
        doc: the collected ``quality-PLAN.json``.
        row: the bundle's result row of ``doc``.
        seeds: every seed's row of the same entry and dataset.
        name: the bundle's folder name.
        command: the ``polypseg train`` command that trained it.
        variant: the zoo variant.
        params: its parameter count.
        decision: the frame-level decision recorded in its checkpoint (``None``: default).
        negatives_share: the share of negative views in its training epochs.
    """
    datasets = doc.get("datasets", {})
    info = datasets.get(row["dataset"], {})
    label = info.get("label", row["dataset"])
    settings = doc.get("settings", {})
    lines = [
        f"# {name}: {row['entry']} trained on {label}",
        "",
        f"A `{variant}` U-Net ({params:,} parameters) from the polypseg benchmark plan "
        f"`{doc.get('plan')}` ({doc.get('date')}): binary polyp segmentation of RGB "
        f"colonoscopy frames at {settings.get('size')}x{settings.get('size')} px.",
        "",
        "## Use",
        "",
        "```sh",
        f"polypseg predict results/models/{name} my_images/ --out predictions/"
        + (" --tta rot90" if row.get("tta") else ""),
        f"polypseg serve results/models/{name} --host 127.0.0.1 --port 8000",
        f"polypseg export results/models/{name} --format onnx --out exports/{name}",
        "```",
        "",
        "Inputs of any size are resized to the model's side; masks come back at the input's "
        "size.",
        "",
        "## Training",
        "",
        f"- Data: {label}, split `{info.get('rule', '?')}` "
        f"({', '.join(f'{k} {v}' for k, v in (info.get('counts') or {}).items())} images), "
        "the split is `split.json` here.",
        f"- Schedule: {settings.get('epochs')} epochs at most, early stopping on validation "
        f"Dice ({_stopping(settings.get('train_options') or {})}), batch "
        f"{settings.get('batch_size')}, AdamW lr {settings.get('lr')} with warm-up and cosine "
        "decay, MONAI Dice + cross-entropy loss, flips/scale/colour augmentation"
        + (" and random rotations" if "rotaug" in row["entry"] else "") + ".",
        f"- This is seed {row['seed']}, chosen among {len(seeds)} by validation Dice "
        f"({row.get('val_dice', float('nan')):.3f} at epoch {row.get('epoch')}).",
        f"- Command: `{command}`",
        f"- Hardware: {(doc.get('hardware') or {}).get('device_name', '?')}.",
        "",
        "## Test results",
        "",
        f"- This model, {row.get('n_test_images')} test images: {_format_metrics(row['metrics'])}.",
        "- Every metric is taken at each test mask's own size (the prediction resized back to "
        "it; HD95 in its pixels). mdice and miou are PraNet's threshold-averaged Dice and IoU; "
        "s_measure, weighted_f, e_measure_mean/max and mae come from pysodmetrics "
        "(docs/results.md, \"Metrics\").",
    ]
    lines += _sweep_and_seeds(row.get("sweep", {}), settings.get("angles"), seeds)
    lines += frames_without_polyp(row, decision, negatives_share)
    lines += [
        "",
        "## Licence and limits",
        "",
        LICENCE.format(dataset=label),
        "",
        f"Trained at {settings.get('size')} px on one dataset: expect lower Dice on other "
        "endoscopes and hospitals (see the cross-dataset table of the benchmark).",
        "",
        f"Cite the data: {citation(label)}",
    ]
    return "\n".join(lines) + "\n"


def write_bundles(plan: Plan, doc: dict[str, Any], out: Path) -> list[Path]:
    """A bundle per (dataset, trained entry) of ``doc`` (a collected ``quality-PLAN.json``)
    in ``out``; returns the bundle folders. Existing bundles are replaced file by file."""
    specs = {(s.dataset, s.entry, s.seed): s for s in plan_runs(plan)}
    entries = {e["name"]: e for e in doc.get("entries", [])}
    own = [r for r in doc.get("results", []) if r["entry"] == r.get("trained_as", r["entry"])]
    written = []
    for (entry, dataset), row in best_runs(own).items():
        spec = specs.get((dataset, entry, row["seed"]))
        if spec is None:
            continue
        run_dir = Path(spec.run_dir)
        name = bundle_name(dataset, entry)
        target = Path(out) / name
        for relative in COPIED:
            atomic_write_bytes(target / relative, (run_dir / relative).read_bytes())
        for source, relative in EVALUATED:
            path = run_dir / "bench" / entry / source
            if path.is_file():
                atomic_write_bytes(target / relative, path.read_bytes())
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        # the plan's paths in this checkout, not where the run happened to be trained (a run
        # committed from another clone records that clone's absolute paths)
        for key in ("data", "out", "split_file"):
            if config.get(key):
                config[key] = plan.relative(spec.train.get(key) or config[key])
        atomic_write_json(target / "config.json", config)
        seeds = [r for r in own if r["entry"] == entry and r["dataset"] == dataset]
        meta = json.loads((target / "checkpoints" / "best.json").read_text(encoding="utf-8"))
        card = model_card(doc, row, seeds, name, training_command(spec.train, plan),
                          spec.train["variant"], entries.get(entry, {}).get("params"),
                          meta.get("decision"), float(config.get("negatives") or 0.0))
        atomic_write_text(target / "README.md", card)
        written.append(target)
    return written
