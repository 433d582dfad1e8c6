"""What the paths given to ``polypseg report`` hold, and how their models are tied together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_helpers import quality_doc, write_json

from polypseg.errors import RunError
from polypseg.report.inputs import collect, resolve_recorded


def test_a_demo_folder_gives_its_runs_and_sweep(demo: Path) -> None:
    study = collect([demo])
    assert sorted(p.name for p in study.runs) == ["p4", "unet"]
    assert [s.path for s in study.sweeps] == [demo / "sweep" / "sweep.json"]
    views = {v.label: v for v in study.models}
    assert set(views) == {"unet", "p4"}
    for name, view in views.items():
        assert view.run_dir == demo / name and view.source == "run"
        assert view.eval_file == demo / name / "eval" / "test.json"
        assert view.sweep_file == demo / "sweep" / "sweep.json" and view.sweep_name == name
        assert view.images_csv == demo / "sweep" / "sweep_images.csv"
        assert view.data_dir is not None and (view.data_dir / "images").is_dir()
        assert view.dataset  # recorded in the checkpoint
    assert study.notes == []


def test_the_same_input_twice_counts_once(demo: Path) -> None:
    study = collect([demo / "p4", demo / "p4", demo / "sweep" / "sweep.json", demo / "sweep"])
    assert len(study.runs) == 1 and len(study.sweeps) == 1
    assert [v.label for v in study.models] == ["p4", "unet"]  # unet from the sweep alone


def test_a_run_without_sweep_or_evaluation(demo: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "bare"
    shutil.copytree(demo / "p4", run, ignore=shutil.ignore_patterns("eval"))
    (view,) = collect([run]).models
    assert view.eval_file is None and view.sweep_file is None and view.images_csv is None


def test_paths_recorded_relative_to_an_ancestor_are_found(tmp_path: Path) -> None:
    target = tmp_path / "runs" / "a"
    target.mkdir(parents=True)
    recorded_in = tmp_path / "results" / "deep" / "quality-x.json"
    assert resolve_recorded("runs/a", recorded_in) == target
    assert resolve_recorded("runs/missing", recorded_in) is None
    assert resolve_recorded(None, recorded_in) is None


def test_a_bench_result_whose_runs_are_elsewhere(tmp_path: Path) -> None:
    path = write_json(tmp_path / "results" / "quality-hand.json", quality_doc())
    study = collect([path.parent])  # a folder holding quality-*.json works too
    assert [q.path for q in study.quality] == [path]
    assert [(v.label, v.dataset, v.source) for v in study.models] == [
        ("unet", "Kvasir-SEG", "bench"), ("p4", "Kvasir-SEG", "bench")]
    assert all(v.run_dir is None for v in study.models)
    (note,) = study.notes
    assert "2 of 2 models have no run folder here" in note and "runs/gone/" in note


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "nothing", "no such file or folder"),
    (lambda d: write_json(d / "other.json", {"format": "something else"}), "is not a run folder"),
    (lambda d: (d / "notes.txt").write_text("x") and d / "notes.txt", "is not a run folder"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "holds no run folder"),
])
def test_other_paths_are_refused_by_name(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(RunError, match=message) as caught:
        collect([path])
    assert str(path) in str(caught.value)


def test_broken_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "sweep.json").write_text("{not json")
    with pytest.raises(RunError, match="cannot read"):
        collect([tmp_path])
    (tmp_path / "sweep.json").write_text(json.dumps([1, 2]))
    with pytest.raises(RunError, match="JSON object"):
        collect([tmp_path])


def test_data_folders_by_dataset_key(demo: Path, tmp_path: Path) -> None:
    from polypseg.report.build import parse_data
    from polypseg.report.inputs import apply_data

    kvasir, cvc = tmp_path / "k", tmp_path / "c"
    kvasir.mkdir()
    cvc.mkdir()
    assert parse_data([f"kvasir={kvasir}", f"CVC-ClinicDB={cvc}"]) == {"kvasir": kvasir,
                                                                      "cvc": cvc}
    assert parse_data([str(kvasir)]) == {None: kvasir}
    views = collect([demo]).models  # runs of kvasir-seg, as their checkpoints record
    apply_data(views, {"cvc": cvc})
    assert all(v.data_dir != cvc for v in views)  # another dataset's folder is not theirs
    apply_data(views, {"kvasir": kvasir, None: cvc})
    assert all(v.data_dir == kvasir for v in views)


@pytest.mark.parametrize("value, message", [
    ("nope=/tmp", "unknown dataset 'nope'"),
    ("kvasir=/no/such/folder", "no such folder /no/such/folder"),
])
def test_bad_data_folders_are_one_line_errors(demo: Path, tmp_path: Path, value: str,
                                              message: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from polypseg.cli import main

    out = tmp_path / "r.html"
    assert main(["report", str(demo / "p4"), "--data", value, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
