"""What a trained run learned about its symmetry (``polypseg inspect RUN``).

For the variants that learn how much rotation symmetry to keep
(:func:`zoo.learned.learned_symmetry`):

* ``*-partial`` (partial G-CNN): per layer, the probability ``p(g)`` of every group element and
  the subset the model uses at evaluation (``p > 0.5``; the identity always);
* ``p4-rpp`` (residual pathway prior): per layer, ``||W_free|| / ||W_eq||``, how large the free
  (non-equivariant) filter bank grew next to the equivariant one.

Every other variant imposes its group (or none) everywhere: there is nothing learned to show,
and the result says so. Writes ``RUN/symmetry.json`` (format ``polypseg-symmetry/1``,
atomically) unless told otherwise; :func:`polypseg.plotting.plot_symmetry` draws one or more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polypseg.atomic import atomic_write_json
from polypseg.paths import default_output, portable_tree

FORMAT = "polypseg-symmetry/1"
FILE_NAME = "symmetry.json"


def summarize(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """A few numbers over the layers: how many left (part of) their group and how far.

    ``{"kind": None}`` when nothing is learned; for subsets ``layers``, ``layers_reduced``
    (layers whose eval subset is not the whole group), ``elements_dropped`` / ``elements``
    (non-identity elements) and ``min_probability``; for residual pathways ``layers``,
    ``mean_ratio`` and ``max_ratio``.
    """
    subsets = [row for row in layers if row["kind"] == "subset"]
    residual = [row for row in layers if row["kind"] == "residual"]
    if subsets:
        probs = [p for row in subsets for p in row["probabilities"][1:]]
        dropped = sum(len(row["elements"]) - len(row["kept"]) for row in subsets)
        return {
            "kind": "subset",
            "layers": len(subsets),
            "layers_reduced": sum(len(row["kept"]) < len(row["elements"]) for row in subsets),
            "elements": len(probs),
            "elements_dropped": dropped,
            "min_probability": min(probs, default=1.0),
        }
    if residual:
        ratios = [row["ratio"] for row in residual]
        return {
            "kind": "residual",
            "layers": len(residual),
            "mean_ratio": sum(ratios) / len(ratios),
            "max_ratio": max(ratios),
        }
    return {"kind": None}


def learned_summary(model: Any) -> dict[str, Any] | None:
    """``{"summary", "layers"}`` of a model that learns its symmetry, else ``None``."""
    from zoo.learned import learned_symmetry

    layers = learned_symmetry(model)
    return {"summary": summarize(layers), "layers": layers} if layers else None


def inspect_run(
    run: str | Path, which: str = "best", out: str | Path | None = None, write: bool = True
) -> dict[str, Any]:
    """Open run folder (or checkpoint) ``run`` and list what its model learned.

    With ``write`` the result goes to ``out`` (default ``RUN/symmetry.json`` for the best
    checkpoint, ``RUN/symmetry-last.json`` for the last, ``STEM-symmetry.json`` beside a bare
    checkpoint) and its ``file`` names it.

    Args:
        run: a run folder or checkpoint stem.
        which: the run folder's checkpoint, ``best`` or ``last``.
        out: the JSON file to write; ``None``: the default beside the run.
        write: write the result (else only return it).
    """
    from polypseg.opened import open_run

    loaded = open_run(run, which, "cpu")
    learned = learned_summary(loaded.model)
    result: dict[str, Any] = {
        "format": FORMAT,
        "run": str(loaded.run_dir or loaded.stem),
        "name": loaded.name,
        "checkpoint": str(loaded.stem),
        "variant": loaded.variant,
        "dataset": (loaded.checkpoint.split or {}).get("dataset"),  # what it was trained on
        "epoch": loaded.checkpoint.epoch,
        "params": loaded.checkpoint.params,
        "summary": learned["summary"] if learned else {"kind": None},
        "layers": learned["layers"] if learned else [],
    }
    if write:
        if out is not None:
            path = Path(out)
        elif loaded.run_dir is not None:
            suffix = "" if loaded.stem.name == "best" else f"-{loaded.stem.name}"
            path = loaded.run_dir / f"{Path(FILE_NAME).stem}{suffix}.json"
        else:
            path = loaded.stem.parent / f"{loaded.stem.name}-{FILE_NAME}"
        path = default_output(path)
        atomic_write_json(path, portable_tree(result))
        result["file"] = str(path)
    return result


def format_inspection(result: dict[str, Any]) -> str:
    """Lines for the terminal: one per layer, then a one-line summary."""
    head = f"{result['name']} ({result['variant']}, epoch {result.get('epoch')}):"
    layers = result["layers"]
    summary = result["summary"]
    if summary["kind"] is None:
        return (
            f"{head} nothing learned to inspect: {result['variant']} imposes its symmetry in "
            "every layer (only the *-partial and *-rpp variants learn how much to keep)"
        )
    width = max(len(row["layer"]) for row in layers)
    lines = [head]
    if summary["kind"] == "subset":
        names = layers[0]["elements"]
        lines.append(f"  {'layer':<{width}}  " + "  ".join(f"{n:>6}" for n in names) + "  kept")
        for row in layers:
            probs = "  ".join(f"{p:>6.3f}" for p in row["probabilities"])
            kept = "all" if len(row["kept"]) == len(row["elements"]) else ", ".join(row["kept"])
            lines.append(f"  {row['layer']:<{width}}  {probs}  {kept}")
        lines.append(
            f"  p = probability of keeping each group element (identity always kept); the model "
            f"evaluates on p > 0.5: {summary['layers_reduced']} of {summary['layers']} layers "
            f"reduced, {summary['elements_dropped']} of {summary['elements']} elements dropped"
        )
    else:
        lines.append(f"  {'layer':<{width}}  {'free/equivariant':>16}  {'|W_free|':>9}  "
                     f"{'|W_eq|':>9}")  # fmt: skip
        for row in layers:
            lines.append(f"  {row['layer']:<{width}}  {row['ratio']:>16.4f}  "
                         f"{row['free_norm']:>9.4f}  {row['equivariant_norm']:>9.4f}")  # fmt: skip
        lines.append(
            f"  ratio of the Frobenius norms of the free and equivariant filter banks: mean "
            f"{summary['mean_ratio']:.4f}, max {summary['max_ratio']:.4f} (0: exactly equivariant)"
        )
    return "\n".join(lines)
