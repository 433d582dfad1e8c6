"""The one opened-model type (``polypseg.opened``): what opening a run loads, and committed
checkpoints (written with the old ``model`` key) opening to the logits they always gave."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import zoo
from polypseg.checkpoint import load_into
from polypseg.opened import CHECKPOINT_KIND, OpenedModel, open_run

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
#: The shipped bundles, one per variant and dataset, and one run of the CPU study.
COMMITTED = sorted(p.parent.parent for p in RESULTS.glob("models/*/checkpoints/best.json"))
COMMITTED += sorted(p.parent.parent for p in RESULTS.glob("cpu/runs/kvasir/p4/seed0"
                                                          "/checkpoints/best.json"))
#: Relative tolerance of two computations of the same logits (docs/design.md, testing rules).
SAME = 1e-6

IMPORTS = textwrap.dedent(
    """
    import sys
    from polypseg.opened import open_run
    assert not {"torch", "zoo"} & set(sys.modules), "importing polypseg.opened loaded torch"
    opened = open_run(sys.argv[1])
    from polypseg.deploy.bundle import open_model
    served = open_model(sys.argv[1])
    print(opened.variant, served.kind)
    print(" ".join(sorted(m for m in sys.modules if m.startswith("polypseg.training"))))
    """
)


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-30))


def _as_recorded(run: Path) -> tuple[torch.nn.Module, dict]:
    """The model as the earlier reader rebuilt it: ``zoo.from_config`` of the recorded
    ``variant`` and ``model`` keys (``model_config`` in metadata this version wrote again, as
    ``polypseg calibrate`` does), the safetensors loaded strictly, in eval mode."""
    from safetensors.torch import load_file

    raw = json.loads((run / "checkpoints" / "best.json").read_text())
    config = raw["model"] if "model" in raw else raw["model_config"]
    model = zoo.from_config({"variant": raw["variant"], **config})
    load_into(model, load_file(str(run / "checkpoints" / "best.safetensors")))
    return model.eval(), raw


def test_opening_a_run_imports_no_training_module() -> None:
    """``open_run`` and ``open_model`` of a run folder, in a fresh process: no
    ``polypseg.training`` module (the loop, its package) is imported, and importing
    ``polypseg.opened`` loads neither torch nor zoo."""
    run = RESULTS / "models" / "kvasir-p4"
    if not run.is_dir():
        pytest.skip("no committed kvasir-p4 bundle")
    done = subprocess.run([sys.executable, "-c", IMPORTS, str(run)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == f"p4 {CHECKPOINT_KIND}"
    assert lines[1:] == [""], f"imported: {lines[1:]}"


@pytest.mark.parametrize("run", COMMITTED, ids=lambda p: str(p.relative_to(RESULTS)))
def test_committed_checkpoints_open_to_the_logits_they_gave(run: Path) -> None:
    """A committed checkpoint (most written by an earlier version, whose metadata has
    ``model``, not ``model_config``) opens as the zoo model and as the frozen one that predict
    and serve run; both give the logits of the model rebuilt from the recorded keys, and the
    opened facts are the recorded ones."""
    from polypseg.deploy.bundle import open_model

    reference, raw = _as_recorded(run)
    key = "model" if "model" in raw else "model_config"
    assert ("model" in raw) != ("model_config" in raw)
    opened = open_run(run)
    served = open_model(run)
    size = raw["input"]["size"]
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(x)
        assert _relative_error(opened.model(x), expected) <= SAME
        assert _relative_error(served.model(x), expected) <= SAME
    for model in (opened, served):
        assert isinstance(model, OpenedModel) and model.kind == CHECKPOINT_KIND
        assert (model.variant, model.size, model.threshold) == (
            raw["variant"], size, raw["threshold"])
        assert model.depth == raw[key]["depth"] and model.params == raw["params"]
        assert model.info()["model"] == raw[key]
    assert opened.run_dir == run and opened.split_file == run / "split.json"
    assert opened.checkpoint is not None and opened.checkpoint.model.config == raw[key]


def test_most_committed_checkpoints_are_of_the_earlier_format() -> None:
    """The test above covers the earlier reader's key (``model``) as long as committed
    checkpoints keep it; only those ``polypseg calibrate`` wrote again have ``model_config``."""
    earlier = [run for run in COMMITTED
               if "model" in json.loads((run / "checkpoints" / "best.json").read_text())]
    assert len(earlier) >= len(COMMITTED) // 2 > 0


def test_an_export_has_no_run_facts(tmp_path: Path) -> None:
    """Fields a checkpoint has and an export lacks are ``None``, and the name falls back to
    the variant."""
    from polypseg.checkpoint import InputSpec

    spec = InputSpec(size=16, mean=(0.5,) * 3, std=(0.5,) * 3, threshold=0.3, depth=2)
    opened = OpenedModel(model=torch.nn.Identity(), input=spec, meta={"variant": "p4"},
                         kind="onnx", model_id="p4-x")
    assert (opened.name, opened.split_sha256, opened.split_file) == ("p4", None, None)
    assert (opened.size, opened.threshold, opened.depth) == (16, 0.3, 2)
    assert "test_metrics" not in opened.info() and opened.info()["model"] is None
