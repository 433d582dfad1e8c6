"""``polypseg export``: formats, metadata, parity, atomicity, and inference without zoo/e2cnn."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from deploy_helpers import REPO, SIDE

from polypseg.cli import main
from polypseg.deploy import export as export_module
from polypseg.deploy.bundle import EXPORT_META, open_model
from polypseg.deploy.export import parity_input
from polypseg.hashing import file_sha256


def test_export_folders_hold_artifact_and_metadata(exports: dict[str, Path], run_dir: Path):
    source_sha = file_sha256(run_dir / "checkpoints" / "best.safetensors")
    for fmt, folder in exports.items():
        meta = json.loads((folder / EXPORT_META).read_text())
        assert meta["export_format"] == fmt
        assert meta["variant"] == "p4"
        assert meta["input"]["size"] == SIDE and len(meta["input"]["mean"]) == 3
        assert meta["metrics"] == {"dice": 0.42, "iou": 0.3}
        assert meta["source"]["sha256"] == source_sha
        assert meta["sha256"] == file_sha256(folder / meta["file"])
        assert meta["parity"]["max_abs_diff"] <= meta["parity"]["tolerance"] == 1e-4
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [EXPORT_META, meta["file"], "README.md"])
    assert json.loads((exports["onnx"] / EXPORT_META).read_text())["opset"] == 18


def test_exports_carry_the_model_card_and_an_id(exports: dict[str, Path], run_dir: Path):
    """A float export answers with its checkpoint's model id (parity-checked: it computes the
    same), has an export id naming its artifact, and carries a card with the licence."""
    ids = set()
    for fmt, folder in exports.items():
        meta = json.loads((folder / EXPORT_META).read_text())
        assert meta["precision"] == "float32"
        assert meta["model_id"] == open_model(run_dir).model_id == open_model(folder).model_id
        assert meta["export_id"] == f"{fmt}-{meta['sha256'][:12]}"
        ids.add(meta["export_id"])
        card = meta["card"]
        assert card["research_use_only"] is True and "Research use only" in card["licence"]
        assert card["metrics"] == {"dice": 0.42, "iou": 0.3}
        readme = (folder / "README.md").read_text()
        assert "## Licence" in readme and card["licence"] in readme
        assert meta["model_id"] in readme and meta["export_id"] in readme
    assert len(ids) == len(exports)


def test_an_exported_bundle_keeps_its_own_card(run_dir: Path, tmp_path: Path):
    """A run folder with a model card (a committed bundle): the export's README is that card
    plus a section on the export, and the licence quoted is the card's."""
    bundle = tmp_path / "kvasir-p4"
    (bundle / "checkpoints").mkdir(parents=True)
    for suffix in (".safetensors", ".json"):
        (bundle / "checkpoints" / f"best{suffix}").write_bytes(
            (run_dir / "checkpoints" / f"best{suffix}").read_bytes())
    licence = ("Research use only. The weights were trained on Kvasir-SEG, which its authors "
               "release for research use.")
    (bundle / "README.md").write_text(
        f"# kvasir-p4: p4 trained on Kvasir-SEG\n\nText.\n\n## Licence and limits\n\n"
        f"{licence}\n\nMore limits.\n")
    out = tmp_path / "exp"
    assert main(["export", str(bundle), "-f", "state", "-o", str(out)]) == 0
    meta = json.loads((out / EXPORT_META).read_text())
    assert meta["card"]["licence"] == licence and meta["card"]["name"] == "kvasir-p4"
    readme = (out / "README.md").read_text()
    assert readme.startswith("# kvasir-p4: p4 trained on Kvasir-SEG")
    assert "More limits." in readme and "## This export" in readme


def test_exports_match_the_checkpoint(exports: dict[str, Path], run_dir: Path):
    reference = open_model(run_dir)
    x = parity_input(SIDE, batch=3, seed=7)
    with torch.no_grad():
        expected = reference.model(x)
        for folder in exports.values():
            bundle = open_model(folder)
            assert bundle.model_id == reference.model_id
            assert (bundle.model(x) - expected).abs().max().item() < 1e-4


def test_state_export_round_trips(run_dir: Path, tmp_path: Path):
    assert main(["export", str(run_dir), "--format", "state", "--out", str(tmp_path / "s")]) == 0
    bundle = open_model(tmp_path / "s")
    assert bundle.kind == "state"
    with torch.no_grad():
        assert bundle.model(parity_input(SIDE)).shape == (2, 1, SIDE, SIDE)


def test_a_state_export_of_an_earlier_version_opens(run_dir: Path, tmp_path: Path):
    """``export.json`` records the model config as ``model_config``; one written before, under
    ``model``, still opens (a "state" export rebuilds its module from it) and computes what
    the checkpoint does."""
    out = tmp_path / "s"
    assert main(["export", str(run_dir), "--format", "state", "--out", str(out)]) == 0
    meta = json.loads((out / EXPORT_META).read_text())
    assert "model" not in meta and meta["model_config"]["depth"] == 2
    old = {("model" if key == "model_config" else key): v for key, v in meta.items()}
    (out / EXPORT_META).write_text(json.dumps(old))
    bundle, reference = open_model(out), open_model(run_dir)
    assert (bundle.kind, bundle.depth, bundle.size) == ("state", 2, SIDE)
    assert bundle.info()["model"] == meta["model_config"] == reference.info()["model"]
    x = parity_input(SIDE, batch=2, seed=3)
    with torch.no_grad():
        assert (bundle.model(x) - reference.model(x)).abs().max().item() < 1e-4


def test_broken_parity_fails_and_leaves_nothing(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    real_frozen = export_module.frozen

    def perturbed(model: torch.nn.Module) -> torch.nn.Module:
        plain = real_frozen(model)
        with torch.no_grad():
            next(plain.parameters()).view(-1)[0] += 10.0
        return plain

    monkeypatch.setattr(export_module, "frozen", perturbed)
    out = tmp_path / "exports" / "broken"
    status = main(["export", str(run_dir), "-f", "torchscript", "-o", str(out)])
    assert status == 2
    assert "parity check failed" in capsys.readouterr().err
    assert not out.exists()
    assert list((tmp_path / "exports").iterdir()) == []  # no temporary folder left either


def test_existing_output_is_refused(run_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["export", str(run_dir), "-f", "state", "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"


BLOCKED = textwrap.dedent(
    """
    import sys, importlib.abc

    # zoo's string options (standard library only; polypseg.options declares its own on
    # them) are all of zoo that serving may load: no layer, no torch code of zoo's, no e2cnn
    LIGHT = {"zoo", "zoo.options"}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"zoo", "e2cnn"} and name not in LIGHT:
                raise ImportError("blocked: " + name)
            return None

    sys.meta_path.insert(0, Block())
    import numpy as np
    import torch
    from polypseg.deploy.bundle import open_model
    from polypseg.deploy.predict import segment

    torchscript, onnx = sys.argv[1:3]
    # the bare artifact, as any torch program would load it
    out = torch.jit.load(torchscript + "/model.pt")(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, 1, 64, 64), out.shape
    for folder in (torchscript, onnx):
        bundle = open_model(folder)
        prob = segment(bundle, [np.zeros((50, 70, 3), np.uint8)])[0]
        assert prob.shape == (50, 70), prob.shape
        print("ok", bundle.kind)
    assert {m for m in sys.modules if m.split(".")[0] in {"zoo", "e2cnn"}} <= LIGHT
    """
)


def test_exports_run_without_zoo_or_e2cnn(exports: dict[str, Path]):
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED, str(exports["torchscript"]), str(exports["onnx"])],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ok", "torchscript", "ok", "onnx"]


def test_onnx_auto_falls_back_to_legacy(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    real_export = torch.onnx.export

    def no_dynamo(*args, **kwargs):
        if kwargs.get("dynamo"):
            raise RuntimeError("dynamo exporter unavailable")
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", no_dynamo)
    result = export_module.export_run(run_dir, "onnx", tmp_path / "o", onnx_exporter="auto")
    assert result.meta["onnx_exporter"] == "legacy"
    with pytest.raises(export_module.ExportError, match="dynamo exporter unavailable"):
        export_module.export_run(run_dir, "onnx", tmp_path / "p", onnx_exporter="dynamo")
    assert not (tmp_path / "p").exists()


def test_the_card_states_the_frame_level_thresholds(run_dir: Path, tmp_path: Path):
    """A checkpoint's decision (polypseg.decision) travels into export.json and its card; one
    without says the default rule runs."""
    import shutil
    from dataclasses import replace

    from polypseg.checkpoint import read_meta, write_meta

    plain = tmp_path / "plain"
    assert main(["export", str(run_dir), "-f", "state", "-o", str(plain)]) == 0
    assert "no calibrated thresholds" in (plain / "README.md").read_text()
    assert "decision" not in json.loads((plain / EXPORT_META).read_text())
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    stem = run / "checkpoints" / "best"
    decision = {"min_area_fraction": 0.0123, "min_peak_probability": 0.875,
                "target_specificity": 0.95, "val_sensitivity": 0.9, "val_specificity": 0.96,
                "n_val_positives": 90, "n_val_negatives": 84}
    write_meta(stem, replace(read_meta(stem), decision=decision))
    out = tmp_path / "calibrated"
    assert main(["export", str(run), "-f", "state", "-o", str(out)]) == 0
    assert json.loads((out / EXPORT_META).read_text())["decision"] == decision
    readme = (out / "README.md").read_text()
    assert "largest region covers at least 1.23% of the image" in readme
    assert "peak probability is at least 0.875" in readme and "specificity 0.960" in readme
    assert open_model(out).meta["decision"] == decision


@pytest.mark.parametrize("opset", [11, 13])
def test_an_older_opset_is_honoured_and_the_file_s_own_opset_recorded(
    run_dir: Path, tmp_path: Path, opset: int
):
    """``auto`` exports an opset other than 18 with the legacy exporter (dynamo writes 18
    whatever it is asked for: before, ``--opset 13`` gave an opset-18 file recorded as 13)."""
    from polypseg.deploy.export import export_run, file_opset

    result = export_run(run_dir, "onnx", tmp_path / "o", opset=opset)
    assert file_opset(result.artifact) == opset
    meta = json.loads((result.out / "export.json").read_text())
    assert meta["opset"] == opset and meta["onnx_exporter"] == "legacy"


SHIPPED = REPO / "results" / "models" / "cvc-p4"


@pytest.mark.skipif(not (SHIPPED / "checkpoints" / "best.safetensors").is_file(),
                    reason="the shipped bundle results/models/cvc-p4 is absent")
def test_a_shipped_bundle_exports_and_segments_through_the_option_enums(tmp_path: Path):
    """A run folder an earlier version wrote (committed under results/models) exports with
    the enum or its string, records plain strings, and segments as the run folder does."""
    import numpy as np

    from polypseg.deploy.predict import segment
    from polypseg.options import ExportFormat, Tta

    result = export_module.export_run(SHIPPED, ExportFormat.STATE, tmp_path / "state")
    written = json.loads((result.out / EXPORT_META).read_text())
    assert written["export_format"] == "state" and type(written["export_format"]) is str
    assert written["export_id"].startswith("state-")
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    exported = segment(open_model(result.out), [image], tta=Tta.ROT90)[0]
    original = segment(open_model(SHIPPED), [image], tta="rot90")[0]
    assert exported.shape == (50, 70)
    assert float(np.abs(exported - original).max()) < 1e-4


@pytest.mark.parametrize("training", [True, False])
def test_freezing_leaves_the_callers_model_in_its_mode(training: bool):
    import zoo

    for model in (zoo.create("p4", width=2, depth=1),
                  torch.nn.Sequential(torch.nn.Conv2d(3, 1, 1), torch.nn.BatchNorm2d(1))):
        model.train(training)
        plain = export_module.frozen(model)
        assert not plain.training and model.training is training
