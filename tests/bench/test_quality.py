"""The quality runner end to end on a tiny synthetic dataset: rows, skip-if-finished, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polypseg.bench.plan import load_plan
from polypseg.bench.quality import run_quality
from polypseg.bench.runs import is_complete, plan_runs
from polypseg.cli import main


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in (root / "runs").rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def first_run(tiny_bench: Path) -> dict:
    """The tiny plan run once through the CLI; its results document."""
    code = main(["bench", "quality", "--plan", str(tiny_bench / "tiny.yaml")])
    assert code == 0
    page = (tiny_bench / "results" / "quality-tiny.html").read_text()
    assert page.lower().startswith("<!doctype html>") and "tiny" in page  # written by the CLI
    return json.loads((tiny_bench / "results" / "quality-tiny.json").read_text())


def test_results_have_the_right_rows(tiny_bench: Path, first_run: dict) -> None:
    doc = first_run
    assert doc["label"] == "tiny (REDUCED)" and doc["reduced"] is True
    assert [(r["entry"], r["dataset"], r["n"]) for r in doc["summary"]] == [
        ("unet", "kvasir", 1), ("unet+tta", "kvasir", 1), ("p4", "kvasir", 1)
    ]
    for row in doc["results"]:
        assert set(row["metrics"]) == {"dice", "iou", "precision", "recall", "hd95", "mdice",
                                       "miou", "s_measure", "weighted_f", "e_measure_mean",
                                       "e_measure_max", "mae"}
        assert 0.0 <= row["metrics"]["dice"] <= 1.0
        assert {"accuracy_mean", "accuracy_min", "consistency_off90"} <= set(row["sweep"])
        assert row["sweep_images"] == 1 and row["n_test_images"] == 2  # sweep_limit: 1
    by_entry = {r["entry"]: r for r in doc["results"]}
    assert by_entry["unet+tta"]["tta"] == "rot90" and by_entry["unet+tta"]["train_seconds"] is None
    assert by_entry["unet"]["train_seconds"] > 0
    entries = {e["name"]: e for e in doc["entries"]}
    assert entries["p4"]["match"] == "unet" and entries["p4"]["params"] > 0
    assert entries["unet"]["macs_256"] > 0
    assert doc["hardware"]["device_name"]
    text = (tiny_bench / "results" / "quality-tiny.md").read_text()
    assert "plan tiny (REDUCED)" in text
    for entry in ("unet", "unet+tta", "p4"):
        assert f"\n| {entry} |" in text
    assert (tiny_bench / "results" / "sweep-tiny-kvasir.png").stat().st_size > 1000
    assert (tiny_bench / "results" / "sweep-tiny-kvasir.svg").is_file()
    assert (tiny_bench / "results" / "pareto-tiny-kvasir.png").stat().st_size > 1000
    assert "![Pareto, Kvasir-SEG](pareto-tiny-kvasir.png)" in text


def test_second_invocation_trains_nothing(
    tiny_bench: Path, first_run: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import polypseg.training

    before = _mtimes(tiny_bench)

    def no_training(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(polypseg.training, "train", no_training)
    outcome = run_quality(load_plan(tiny_bench / "tiny.yaml"))
    assert outcome.trained == [] and outcome.failed == {}
    assert sorted(outcome.reused) == ["kvasir/p4/seed0", "kvasir/unet/seed0"]
    after = _mtimes(tiny_bench)
    changed = [p for p, t in after.items() if before.get(p) != t and "/bench/spec.json" not in p]
    assert changed == []


def test_interrupted_run_needs_resume(tiny_bench: Path, first_run: dict) -> None:
    plan = load_plan(tiny_bench / "tiny.yaml")
    spec = next(s for s in plan_runs(plan) if s.entry == "p4")
    marker = spec.bench_dir / "train.json"
    marker.unlink()  # as if killed after the last checkpoint, before the marker
    (spec.bench_dir / "p4" / "sweep.json").unlink()
    assert not is_complete(spec)
    outcome = run_quality(plan)
    assert list(outcome.failed) == ["kvasir/p4/seed0"]
    assert "--resume" in outcome.failed["kvasir/p4/seed0"]
    assert not marker.exists()
    # with resume: training sees a complete run (nothing to do), the sweep is redone
    weights = Path(spec.run_dir) / "checkpoints" / "best.safetensors"
    stamp = weights.stat().st_mtime_ns
    # earlier sittings took an hour per epoch: the row must add those up, not time this sitting
    from polypseg.training.logs import read_metrics_csv, write_metrics_csv

    metrics = Path(spec.run_dir) / "metrics.csv"
    write_metrics_csv(metrics, [{**r, "epoch_seconds": 3600.0} for r in read_metrics_csv(metrics)])
    outcome = run_quality(plan, resume=True)
    assert outcome.trained == ["kvasir/p4/seed0"] and outcome.failed == {}
    assert marker.is_file() and is_complete(spec)
    assert weights.stat().st_mtime_ns == stamp
    # its training time is the sum over its sittings (metrics.csv), not the resumed sitting's
    doc = json.loads((tiny_bench / "results" / "quality-tiny.json").read_text())
    row = next(r for r in doc["results"] if r["entry"] == "p4")
    epochs = read_metrics_csv(metrics)
    assert row["train_seconds"] == pytest.approx(3600.0 * len(epochs))
    assert json.loads(marker.read_text())["seconds"] < 3600.0


def test_parallel_jobs_use_worker_subprocesses(
    tiny_bench: Path, first_run: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--jobs 2`` hands each run to ``python -m polypseg bench worker SPEC``; the worker's
    command is run here in-process (a real subprocess would re-import torch and MONAI)."""
    import subprocess

    from polypseg.bench import quality

    plan = load_plan(tiny_bench / "tiny.yaml")
    specs = plan_runs(plan)
    calls = []

    def fake_run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        assert command[1:5] == ["-m", "polypseg", "bench", "worker"]
        assert int(kwargs["env"][quality.THREADS_ENV]) >= 1
        calls.append(command)
        return subprocess.CompletedProcess(command, main(command[3:]))

    monkeypatch.setattr(quality.subprocess, "run", fake_run)
    errors = quality.run_all(specs, jobs=2, resume=False, device="cpu")
    assert errors == {s.key: None for s in specs}
    assert sorted(Path(c[5]).parent.parent.parent.name for c in calls) == ["p4", "unet"]
    assert all(is_complete(s) for s in specs)


def test_shipped_smoke_plan_on_real_data(tmp_path: Path) -> None:
    """``plans/smoke.yaml`` end to end on the shared data (skipped where it is absent)."""
    import dataclasses

    root = Path(__file__).resolve().parents[2]
    plan = load_plan(root / "plans" / "smoke.yaml", check_paths=False)
    if not all(d.data_dir.is_dir() for d in plan.datasets):
        pytest.skip("the shared data (../shared/data) is not here")
    plan = dataclasses.replace(plan, out=tmp_path / "results", runs=tmp_path / "runs")
    outcome = run_quality(plan)
    assert outcome.failed == {} and len(outcome.trained) == 2
    doc = json.loads((tmp_path / "results" / "quality-smoke.json").read_text())
    assert [r["entry"] for r in doc["summary"]] == ["unet", "unet+tta", "p4"]
    assert doc["datasets"]["kvasir"]["counts"] == {"train": 8, "val": 4, "test": 4}


def test_seeds_finish_first_and_entries_run_in_plan_order(tmp_path: Path) -> None:
    """Runs are ordered seed by seed (one whole seed on every dataset lands first), and
    within a seed by the plan's order of entries, each on every dataset in turn (a study
    stopped part-way then holds whole pairs: the baseline and the variant on both datasets)."""
    from bench_helpers import tiny_plan, write_dataset_at

    other = write_dataset_at(tmp_path / "other", "CVC-ClinicDB")
    kvasir = write_dataset_at(tmp_path, "Kvasir-SEG")
    plan = load_plan(tiny_plan(tmp_path, kvasir, seeds=[3, 1], datasets={
        "kvasir": {"data_dir": str(kvasir)}, "cvc": {"data_dir": str(other)}}))
    order = [e.name for e in plan.training_entries()]
    assert order == ["unet", "p4"]  # the tiny plan's order
    keys = [(s.seed, s.entry, s.dataset) for s in plan_runs(plan)]
    assert [k[0] for k in keys] == [3] * 4 + [1] * 4
    assert [e for _, e, _ in keys[:4]] == ["unet", "unet", "p4", "p4"]
    assert {d for _, e, d in keys[:2]} == {"kvasir", "cvc"}


def test_cross_dataset_evaluations(tmp_path: Path) -> None:
    """With ``cross_dataset: true`` every run (and its tta entry) is also tested on the other
    dataset's test split, written apart from its own evaluation, and counted for completion."""
    from bench_helpers import tiny_plan, write_dataset_at

    kvasir = write_dataset_at(tmp_path, "Kvasir-SEG")
    other = write_dataset_at(tmp_path / "other", "Kvasir-SEG", seed=1)
    plan = load_plan(tiny_plan(tmp_path, kvasir, cross_dataset=True, baselines=["unet", "unet+tta"],
                               entries=[
        {"name": "unet", "variant": "unet", "width": 2},
        {"name": "unet+tta", "from": "unet", "tta": "rot90"}],
        datasets={"a": {"data_dir": str(kvasir)}, "b": {"data_dir": str(other)}}))
    outcome = run_quality(plan)
    assert outcome.failed == {} and sorted(outcome.trained) == ["a/unet/seed0", "b/unet/seed0"]
    spec = next(s for s in plan_runs(plan) if s.dataset == "a")
    cross = [e for e in spec.evaluations if e.cross]
    assert [(e.entry, e.tta, e.dataset) for e in cross] == [
        ("unet", None, "b"), ("unet+tta", "rot90", "b")]
    own = json.loads((spec.bench_dir / "unet" / "test.json").read_text())
    moved = json.loads((spec.bench_dir / "unet" / "cross-b" / "test.json").read_text())
    assert moved["data_dir"] == str(other) and own["data_dir"] == str(kvasir)
    assert {r["stem"] for r in moved["images"]} == set(
        json.loads((plan.runs / "splits" / "b.json").read_text())["sets"]["test"])
    doc = json.loads((tmp_path / "results" / "quality-tiny.json").read_text())
    assert [(r["entry"], r["trained_on"], r["dataset"]) for r in doc["cross"]] == [
        ("unet", "a", "b"), ("unet+tta", "a", "b"), ("unet", "b", "a"), ("unet+tta", "b", "a")]
    assert doc["cross"][0]["metrics"]["dice"] == pytest.approx(moved["summary"]["dice"]["mean"])
    # a baseline is compared with the baselines before it, never with itself or a later one
    assert {(r["entry"], r["dataset"], r["baseline"]) for r in doc["comparisons"]} == {
        ("unet+tta", "a", "unet"), ("unet+tta", "b", "unet")}
    assert all(r["ci_low"] <= r["diff_mean"] <= r["ci_high"] for r in doc["comparisons"])
    assert not Path(doc["results"][0]["run"]).is_absolute()
    text = (tmp_path / "results" / "quality-tiny.md").read_text()
    assert "## Cross-dataset generalisation" in text and "## Paired differences" in text
    # one column per (trained on, tested on), whatever the number of entries
    header = next(line for line in text.splitlines() if "-trained, " in line)
    assert header.count("-trained, ") == 4, header
    (spec.bench_dir / "unet+tta" / "cross-b" / "test-tta-rot90.json").unlink()
    assert not is_complete(spec)


def test_collect_only_trains_nothing(tmp_path: Path) -> None:
    from bench_helpers import tiny_plan, write_dataset_at

    plan = tiny_plan(tmp_path, write_dataset_at(tmp_path, "Kvasir-SEG"))
    assert main(["bench", "quality", "--plan", str(plan), "--collect"]) == 0
    doc = json.loads((tmp_path / "results" / "quality-tiny.json").read_text())
    assert doc["results"] == [] and len(doc["missing"]) == 3
    assert not (tmp_path / "runs" / "kvasir").exists() or not any(
        (tmp_path / "runs" / "kvasir").rglob("*.safetensors"))


def test_a_plan_edited_after_a_run_finished_is_refused(tmp_path: Path) -> None:
    """A finished run folder whose settings the plan no longer asks for (here: another
    width under the same entry name) is named in an error, not reused or overwritten."""
    from bench_helpers import tiny_plan, write_dataset_at

    from polypseg.errors import RunError

    data = write_dataset_at(tmp_path, "Kvasir-SEG")
    entries = [{"name": "unet", "variant": "unet", "width": 2}]
    plan = load_plan(tiny_plan(tmp_path, data, entries=entries))
    assert run_quality(plan).failed == {}
    weights = next((tmp_path / "runs").rglob("best.safetensors"))
    stamp = weights.stat().st_mtime_ns
    entries[0]["width"] = 3
    edited = load_plan(tiny_plan(tmp_path, data, entries=entries))
    with pytest.raises(RunError, match=r"width 2 \(the plan asks 3\)"):
        run_quality(edited)
    assert weights.stat().st_mtime_ns == stamp


def test_dry_run_reports_where_each_run_stands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--dry-run`` reads the run folders as they are (what a fresh clone of a half-finished
    study would do next) and refuses a plan edited after its runs, like the real run."""
    from bench_helpers import tiny_plan, write_dataset_at

    data = write_dataset_at(tmp_path, "Kvasir-SEG")
    plan_file = tiny_plan(tmp_path, data)
    assert run_quality(load_plan(plan_file)).failed == {}
    p4, unet = (next(s for s in plan_runs(load_plan(plan_file)) if s.entry == name)
                for name in ("p4", "unet"))
    (p4.bench_dir / "p4" / "sweep.json").unlink()  # trained and tested, not swept
    (unet.bench_dir / "train.json").unlink()  # interrupted before its training marker
    tiny_plan(tmp_path, data, seeds=[0, 1])
    capsys.readouterr()
    assert main(["bench", "quality", "--plan", str(plan_file), "--dry-run"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "trained" in lines["kvasir/p4/seed0"]
    assert "half-done" in lines["kvasir/unet/seed0"] and "after epoch 1" in lines[
        "kvasir/unet/seed0"]
    assert "to do" in lines["kvasir/p4/seed1"] and "to do" in lines["kvasir/unet/seed1"]
    assert set(lines["plan"].split(": ")[1].split(", ")) == {"1 half-done", "1 trained", "2 to do"}
    assert not (Path(p4.run_dir).parent / "seed1").exists()  # a dry run writes no run folder

    from polypseg.training.state import load_resume_state, save_resume_state, state_path

    saved = load_resume_state(state_path(unet.run_dir))  # as if stopped 2 batches into epoch 2
    saved.pop("format")
    save_resume_state(state_path(unet.run_dir), dict(saved, batches_done=2))
    assert main(["bench", "quality", "--plan", str(plan_file), "--dry-run"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "resumes in epoch 2, after its first 2 batches" in lines["kvasir/unet/seed0"]
    state_path(unet.run_dir).write_bytes(b"not a torch file")
    assert main(["bench", "quality", "--plan", str(plan_file), "--dry-run"]) == 0
    assert "resume state cannot be read" in capsys.readouterr().out

    tiny_plan(tmp_path, data, entries=[{"name": "unet", "variant": "unet", "width": 3}])
    assert main(["bench", "quality", "--plan", str(plan_file), "--dry-run"]) != 0
    assert "width 2 (the plan asks 3)" in capsys.readouterr().err


def test_only_trains_the_selected_runs_and_collects_every_finished_one(tmp_path: Path) -> None:
    from bench_helpers import tiny_plan, write_dataset_at

    from polypseg.bench.plan import PlanError

    plan = load_plan(tiny_plan(tmp_path, write_dataset_at(tmp_path, "Kvasir-SEG"), seeds=[0, 1]))
    with pytest.raises(PlanError, match="matches no run"):
        run_quality(plan, only=["kvasir/p4/seed7"])
    first = run_quality(plan, only=["*/p4/*"])
    assert first.trained == ["kvasir/p4/seed0", "kvasir/p4/seed1"] and first.failed == {}
    runs = {s.key: s for s in plan_runs(plan)}
    assert not any(is_complete(runs[k]) for k in ("kvasir/unet/seed0", "kvasir/unet/seed1"))
    second = run_quality(plan, only=["kvasir/unet/seed1", "*/p4/*"])  # p4's are finished
    assert second.trained == ["kvasir/unet/seed1"] and sorted(second.reused) == [
        "kvasir/p4/seed0", "kvasir/p4/seed1"]
    doc = json.loads((tmp_path / "results" / "quality-tiny.json").read_text())
    assert sorted((r["entry"], r["seed"]) for r in doc["results"]) == [
        ("p4", 0), ("p4", 1), ("unet", 1), ("unet+tta", 1)]


def test_min_epochs_added_to_a_plan_continues_the_runs_it_would_have_kept_going(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run that patience ended before a ``min_epochs`` added to the plan afterwards is not
    finished: ``--resume`` trains it on from its resume state and evaluates it anew; a run
    that the new rule leaves as it was stays finished and untouched."""
    from bench_helpers import tiny_plan, write_dataset_at

    from polypseg.bench.runs import STOPPED_TOO_SOON, run_status
    from polypseg.training.logs import read_metrics_csv
    from polypseg.training.loop import _Trainer
    from polypseg.training.state import state_path

    monkeypatch.setattr(_Trainer, "_validate", lambda self: (0.5, 1.0))  # never improves
    data = write_dataset_at(tmp_path, "Kvasir-SEG")
    entries = [{"name": "unet", "variant": "unet", "width": 2},
               {"name": "p4", "variant": "p4", "match": "unet"}]
    plan_file = tiny_plan(tmp_path, data, entries=entries, epochs=4,
                          train_options={"patience": 1})
    assert run_quality(load_plan(plan_file)).failed == {}
    runs = {s.entry: s for s in plan_runs(load_plan(plan_file))}
    assert len(read_metrics_csv(Path(runs["unet"].run_dir) / "metrics.csv")) == 2
    untouched = Path(runs["unet"].run_dir) / "checkpoints" / "best.safetensors"
    stamp = untouched.stat().st_mtime_ns

    # min_epochs 2 changes nothing (both stopped at epoch 2); 3 reopens both runs
    tiny_plan(tmp_path, data, entries=entries, epochs=4,
              train_options={"patience": 1, "min_epochs": 2})
    assert all(is_complete(s) for s in plan_runs(load_plan(plan_file)))
    tiny_plan(tmp_path, data, entries=entries, epochs=4,
              train_options={"patience": 1, "min_epochs": 3})
    plan = load_plan(plan_file)
    runs = {s.entry: s for s in plan_runs(plan)}
    state_path(runs["unet"].run_dir).unlink()  # unet's resume state is gone (a fresh clone)
    assert [run_status(runs[e])[0] for e in ("unet", "p4")] == [STOPPED_TOO_SOON] * 2
    assert "move the folder away" in run_status(runs["unet"])[1]
    assert "--resume continues it" in run_status(runs["p4"])[1]
    collected = run_quality(plan, collect_only=True)
    doc = json.loads(next(p for p in collected.written if p.suffix == ".json").read_text())
    assert doc["results"] == [] and "kvasir/p4/seed0 (stopped before min_epochs)" in doc[
        "missing"]

    refused = run_quality(plan, only=["*/p4/*"])  # without --resume: an error, nothing lost
    assert "continue it with --resume" in refused.failed["kvasir/p4/seed0"]
    old_test = (runs["p4"].bench_dir / "p4" / "test.json").stat().st_mtime_ns
    resumed = run_quality(plan, resume=True)
    assert "move that folder away" in resumed.failed["kvasir/unet/seed0"]
    assert untouched.stat().st_mtime_ns == stamp and (runs["unet"].bench_dir / "train.json"
                                                      ).is_file()
    assert resumed.trained == ["kvasir/p4/seed0"]
    rows = read_metrics_csv(Path(runs["p4"].run_dir) / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3] and is_complete(runs["p4"])
    assert (runs["p4"].bench_dir / "p4" / "test.json").stat().st_mtime_ns != old_test
    evaluated = json.loads((runs["p4"].bench_dir / "p4" / "test.json").read_text())
    assert evaluated["epoch"] == 1  # made anew from the best checkpoint (still epoch 1)
    assert json.loads((runs["p4"].bench_dir / "train.json").read_text())["resumed"] is True


def test_an_entrys_parameters_are_those_its_runs_trained(tiny_bench: Path, first_run: dict) -> None:
    """Collecting again describes the models that were trained, not today's build of the
    variant (a default added to zoo since, such as head_norm, would change the count)."""
    from polypseg.bench.collect import write_results
    from polypseg.bench.runs import prepare_splits, resolve_entries

    plan = load_plan(tiny_bench / "tiny.yaml")
    specs = [s for s in plan_runs(plan) if s.entry == "p4"]
    recorded = {json.loads((Path(s.run_dir) / "checkpoints" / "best.json").read_text())["params"]
                for s in specs}
    assert {e["params"] for e in first_run["entries"] if e["name"] == "p4"} == recorded
    entries = resolve_entries(plan)
    entries["p4"] = {**entries["p4"], "params": -1}  # what a changed zoo would describe
    write_results(plan, plan_runs(plan), entries, prepare_splits(plan), tiny_bench / "again",
                  "test")
    again = json.loads((tiny_bench / "again" / "quality-tiny.json").read_text())
    assert [e["params"] for e in again["entries"] if e["name"] == "p4"] == list(recorded)
