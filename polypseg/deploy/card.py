"""The model card an export carries: what it was trained on, how good it is, under what terms.

An export folder holds its card twice: as ``card`` in ``export.json`` (data, metrics, licence,
``research_use_only``; served on ``GET /v1/model``) and as ``README.md`` for people. When the
exported run folder has a card of its own (``README.md``, as the committed bundles of
``results/models/`` do), the export's README is that card with a section on the export appended
and its licence paragraph is the one quoted; otherwise the card is made from the checkpoint's
metadata with a generic research-use licence.

Identity (:func:`identity`): a float export computes what its checkpoint computes (the parity
check bounds the difference), so it answers with the checkpoint's model id; an int8 export
computes something else and has an id of its own, ``VARIANT-SOURCE12-int8-ARTIFACT8``. Every
export also has an ``export_id`` naming its artifact (``FORMAT-ARTIFACT12``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

#: The run folder's model card, when it has one.
CARD_FILE = "README.md"
#: The licence of a card made here (no dataset-specific card to quote).
GENERIC_LICENCE = (
    "Research use only. The weights were trained on {dataset}; the terms under which its "
    "authors release it apply to these weights too (the public polyp datasets allow research "
    "and educational use only). This is not a medical device: no output of this model may "
    "inform a clinical decision."
)


def precision_of(meta: dict[str, Any]) -> str:
    """``"int8"`` for a quantised export, else ``"float32"``."""
    quantization = meta.get("quantization")
    if isinstance(quantization, dict) and quantization.get("scheme"):
        return str(quantization["scheme"])
    return "float32"


def identity(variant: str, source_sha: str, artifact_sha: str, fmt: str, precision: str
             ) -> dict[str, str]:
    """``model_id`` (what ``X-Model-Id`` says) and ``export_id`` of an export.

    Args:
        variant: the zoo variant.
        source_sha: SHA-256 of the checkpoint's weights.
        artifact_sha: SHA-256 of the exported artifact.
        fmt: the export format.
        precision: ``"float32"`` or ``"int8"``.
    """
    model_id = f"{variant}-{source_sha[:12]}"
    if precision != "float32":
        model_id += f"-{precision}-{artifact_sha[:8]}"
    return {"model_id": model_id, "export_id": f"{fmt}-{artifact_sha[:12]}"}


def _run_card(run_dir: Path | None) -> str | None:
    if run_dir is None:
        return None
    path = run_dir / CARD_FILE
    try:
        return path.read_text(encoding="utf-8") if path.is_file() else None
    except (OSError, UnicodeDecodeError):
        return None


def _licence_paragraph(card: str) -> str | None:
    """The first paragraph under the card's "Licence" heading."""
    match = re.search(r"^#+ Licen[cs]e[^\n]*\n+(.+?)(?:\n\s*\n|\Z)", card, re.M | re.S)
    return " ".join(match.group(1).split()) if match else None


def _dataset(checkpoint: dict[str, Any]) -> dict[str, Any]:
    split = checkpoint.get("split") if isinstance(checkpoint.get("split"), dict) else {}
    return {"dataset": split.get("dataset"), "split_rule": split.get("rule"),
            "split_sha256": checkpoint.get("split_sha256")}


def make_card(checkpoint: dict[str, Any], run_dir: Path | None, metrics: dict[str, Any],
              metrics_from: str) -> tuple[dict[str, Any], str | None]:
    """The ``card`` of ``export.json`` and the source card's text (``None`` without one).

    Args:
        checkpoint: the exported checkpoint's metadata (its JSON object).
        run_dir: the run folder, where a ``README.md`` card may be.
        metrics: the export's own metrics.
        metrics_from: where they come from, in words.
    """
    text = _run_card(run_dir)
    data = _dataset(checkpoint)
    licence = (_licence_paragraph(text) if text else None) or GENERIC_LICENCE.format(
        dataset=data["dataset"] or "a public polyp dataset")
    card = {
        "name": run_dir.name if run_dir is not None else checkpoint.get("variant"),
        "data": data,
        "metrics": metrics,
        "metrics_from": metrics_from,
        "licence": licence,
        "research_use_only": True,
    }
    return card, text


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def export_readme(card: dict[str, Any], source_text: str | None, meta: dict[str, Any]) -> str:
    """The export's ``README.md``: the source card (or a short one) and a section on the export.

    Args:
        card: the ``card`` of :func:`make_card`.
        source_text: the run's own card, when it has one.
        meta: the export's ``export.json`` object (identity, format, precision, checks).
    """
    if source_text is None:
        data = card["data"]
        source_text = "\n".join([
            f"# {card['name']}: a `{meta.get('variant')}` polyp segmentation model",
            "",
            f"Binary polyp segmentation of RGB colonoscopy frames at "
            f"{meta['input']['size']}x{meta['input']['size']} px, trained on "
            f"{data['dataset'] or 'an unrecorded dataset'}"
            + (f" (split `{data['split_rule']}`)" if data.get("split_rule") else "") + ".",
            "",
            "## Licence and limits",
            "",
            card["licence"],
            "",
        ])
    lines = [
        source_text.rstrip("\n"),
        "",
        "## This export",
        "",
        f"- Model id: `{meta['model_id']}`; export id: `{meta['export_id']}`.",
        f"- Format: {meta['export_format']}, precision {meta['precision']}; "
        f"file `{meta['file']}` (SHA-256 `{meta['sha256'][:16]}...`).",
        "- Metrics (" + card["metrics_from"] + "): "
        + (", ".join(f"{k} {_fmt(v)}" for k, v in card["metrics"].items()) or "none recorded")
        + ".",
    ]
    lines.append(_decision_line(meta.get("decision")))
    parity, quantization = meta.get("parity") or {}, meta.get("quantization")
    if quantization:
        quality = quantization["quality"]
        lines.append(
            f"- int8 quality check: validation Dice {quality['int8_dice']:.4f} against "
            f"{quality['float_dice']:.4f} for the float model on {quality['images']} images.")
    else:
        lines.append(f"- Parity with the checkpoint: logits within {parity.get('max_abs_diff')} "
                     f"(max abs; tolerance {parity.get('tolerance')}).")
    lines += ["- " + card["licence"], ""]
    return "\n".join(lines)


def _decision_line(decision: Any) -> str:
    """The card's line on the frame-level decision "polyp present" (:mod:`polypseg.decision`)."""
    if not isinstance(decision, dict) or "min_area_fraction" not in decision:
        return ("- Polyp present (per frame): no calibrated thresholds, the default rule (a "
                "region of at least 0.5% of the image); `polypseg calibrate RUN` chooses them.")
    line = (f"- Polyp present (per frame): the largest region covers at least "
            f"{float(decision['min_area_fraction']):.2%} of the image and the peak probability "
            f"is at least {float(decision['min_peak_probability']):.3f}")
    sens, spec = decision.get("val_sensitivity"), decision.get("val_specificity")
    if sens is not None and spec is not None:
        line += (f"; chosen on validation for specificity {decision.get('target_specificity')}: "
                 f"sensitivity {float(sens):.3f}, specificity {float(spec):.3f} on "
                 f"{decision.get('n_val_positives')} images and {decision.get('n_val_negatives')}"
                 " background crops")
    for mode, rule in sorted((decision.get("by_tta") or {}).items()):
        line += (f". With `--tta {mode}`: at least {float(rule['min_area_fraction']):.2%} and "
                 f"{float(rule['min_peak_probability']):.3f}, chosen the same way on maps "
                 f"averaged over the {mode} rotations")
    return line + "."
