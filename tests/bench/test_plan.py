"""Plan validation: a bad plan is a clear PlanError naming the key and the value."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from polypseg.bench.plan import PlanError, load_plan, parse_angles, parse_plan

VARIANTS = {"unet", "p4", "p4m", "se2n12", "steerable", "steerable-flip"}


def _raw(tmp_path: Path, **changes: object) -> dict:
    (tmp_path / "data").mkdir(exist_ok=True)
    raw = {
        "name": "t",
        "size": 32,
        "epochs": 1,
        "batch_size": 2,
        "lr": 1e-3,
        "seeds": [0],
        "datasets": {"kvasir": {"data_dir": "data"}},
        "entries": [
            {"name": "unet", "variant": "unet", "width": 4},
            {"name": "unet+tta", "from": "unet", "tta": "rot90"},
            {"name": "p4", "variant": "p4", "match": "unet"},
        ],
    }
    raw.update(changes)
    return raw


def _write(tmp_path: Path, raw: object) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(raw) if not isinstance(raw, str) else raw)
    return path


def test_valid_plan(tmp_path: Path) -> None:
    plan = load_plan(_write(tmp_path, _raw(tmp_path, reduced=True)), variants=VARIANTS)
    assert plan.label == "t (REDUCED)"
    assert plan.datasets[0].data_dir == tmp_path / "data"
    assert plan.datasets[0].label == "Kvasir-SEG"
    assert [e.name for e in plan.training_entries()] == ["unet", "p4"]
    assert plan.entry("unet+tta").source == "unet"
    assert plan.angles[:3] == (0.0, 5.0, 10.0) and len(plan.angles) == 72
    assert plan.runs == tmp_path / "runs/bench/t"


def test_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="not valid YAML"):
        load_plan(_write(tmp_path, "name: [unclosed\n"), variants=VARIANTS)


def test_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="YAML mapping"):
        load_plan(_write(tmp_path, "- 1\n- 2\n"), variants=VARIANTS)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="no such plan file"):
        load_plan(tmp_path / "nope.yaml")


def test_unknown_variant(tmp_path: Path) -> None:
    raw = _raw(tmp_path, entries=[{"name": "x", "variant": "p5", "width": 4}])
    with pytest.raises(PlanError, match=r"unknown variant 'p5'.*known: p4, p4m"):
        load_plan(_write(tmp_path, raw), variants=VARIANTS)


def test_unknown_variant_checked_against_zoo(tmp_path: Path) -> None:
    raw = _raw(tmp_path, entries=[{"name": "x", "variant": "no-such-variant", "width": 4}])
    with pytest.raises(PlanError, match="unknown variant 'no-such-variant'"):
        load_plan(_write(tmp_path, raw))


def test_missing_data_dir(tmp_path: Path) -> None:
    raw = _raw(tmp_path, datasets={"cvc": {"data_dir": "missing/CVC"}})
    with pytest.raises(PlanError, match=r"datasets.cvc.data_dir: no such folder .*missing/CVC"):
        load_plan(_write(tmp_path, raw), variants=VARIANTS)
    # the check can be left out (e.g. listing the runs of a plan for another machine)
    assert load_plan(_write(tmp_path, raw), variants=VARIANTS, check_paths=False)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"lr": "fast"}, "lr must be a positive number"),
        ({"seeds": []}, "seeds must be a non-empty list"),
        ({"name": "a b"}, "name must be letters"),
        ({"colour": 1}, r"unknown plan keys \['colour'\]"),
        ({"angles": "0:360"}, "angles must be 'start:stop:step'"),
        ({"entries": [{"name": "u", "variant": "unet"}]}, "give width .* or match"),
        ({"entries": [{"name": "u", "variant": "unet", "width": 4},
                      {"name": "u", "variant": "p4", "width": 4}]}, "used twice"),
        ({"entries": [{"name": "t", "from": "unet", "tta": "rot90"}]},
         "from 'unet' is not an entry"),
        ({"entries": [{"name": "u", "variant": "unet", "width": 4},
                      {"name": "t", "from": "u", "tta": "rot45"}]}, "tta must be one of"),
        ({"entries": [{"name": "u", "variant": "unet", "width": 4},
                      {"name": "t", "from": "u", "tta": "rot90", "width": 3}]},
         "cannot set"),
    ],
)
def test_bad_values(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        parse_plan(_raw(tmp_path, **changes), tmp_path, variants=VARIANTS)


def test_missing_keys(tmp_path: Path) -> None:
    raw = _raw(tmp_path)
    del raw["epochs"], raw["lr"]
    with pytest.raises(PlanError, match=r"lacks required keys \['epochs', 'lr'\]"):
        parse_plan(raw, tmp_path, variants=VARIANTS)


def test_angles() -> None:
    assert parse_angles("0:360:90") == ((0.0, 90.0, 180.0, 270.0), "0:360:90")
    assert parse_angles([0, 45])[0] == (0.0, 45.0)


@pytest.mark.parametrize("name", ["smoke", "reduced-cpu", "full"])
def test_shipped_plans_are_valid(name: str) -> None:
    root = Path(__file__).resolve().parents[2]
    plan = load_plan(root / "plans" / f"{name}.yaml", check_paths=False)
    assert plan.name == name
    assert plan.reduced == (name != "full")
    if name != "smoke":
        names = {e.name for e in plan.entries}
        assert {"unet", "unet+rotaug", "unet+tta", "p4", "p4m", "se2n12", "steerable"} <= names
        assert {d.key for d in plan.datasets} == {"kvasir", "cvc"}


def test_relative_paths_for_committed_results(tmp_path: Path) -> None:
    """Paths in committed results are relative to the project root: under it, or beside it
    (the shared data, ``../shared/data/...``), whatever the form they were given in."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("")
    (tmp_path / "shared" / "data").mkdir(parents=True)
    raw = _raw(project)
    plan = load_plan(_write(project, raw), variants=VARIANTS)
    assert plan.relative(project / "runs" / "a") == "runs/a"
    assert plan.relative(project / ".." / "shared" / "data") == "../shared/data"
    assert plan.relative(tmp_path / "shared" / "data") == "../shared/data"


def test_negatives_of_an_entry_reach_its_training_only(tmp_path: Path) -> None:
    import json

    from polypseg.bench.runs import plan_runs, spec_mismatch

    raw = _raw(tmp_path)
    raw["entries"].append({"name": "p4+neg", "variant": "p4", "match": "unet", "negatives": 0.2})
    plan = load_plan(_write(tmp_path, raw), variants=VARIANTS)
    assert plan.entry("p4+neg").negatives == 0.2 and plan.entry("p4").negatives == 0.0
    specs = {s.entry: s for s in plan_runs(plan, {e: {"width": 4} for e in ("unet", "p4",
                                                                           "p4+neg")})}
    assert specs["p4+neg"].train["negatives"] == 0.2
    assert "negatives" not in specs["p4"].train  # the settings of before, unchanged
    run = Path(specs["p4"].run_dir)
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"model": "p4", "negatives": 0.0}))
    assert spec_mismatch(specs["p4"]) == {}
    (run / "config.json").write_text(json.dumps({"model": "p4", "negatives": 0.3}))
    assert spec_mismatch(specs["p4"]) == {"negatives": (0.0, 0.3)}
    (run / "config.json").write_text(json.dumps({"model": "unet"}))  # the old key, read as new
    assert spec_mismatch(specs["p4"]) == {"variant": ("p4", "unet")}


def test_committed_runs_agree_with_their_specs_and_build_their_configs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run folders under results/ were written before ``model`` became ``variant``: their
    ``bench/spec.json`` and ``config.json`` still read as a run of the spec, and the spec still
    builds the TrainConfig a worker trains (``bench.worker``)."""
    import json

    from polypseg.bench.runs import RunSpec, spec_mismatch
    from polypseg.training import TrainConfig

    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)  # the specs' paths are relative to the project root
    specs = sorted((root / "results").rglob("bench/spec.json"))
    if not specs:
        pytest.skip("no committed bench runs under results/")
    for path in specs:
        raw = json.loads(path.read_text(encoding="utf-8"))
        spec = RunSpec.from_dict(raw)
        assert spec.train["variant"] == raw["train"].get("model", raw["train"].get("variant"))
        assert spec_mismatch(spec) == {}, path
        config = TrainConfig(**dict(spec.train, quiet=True, device="cpu")).validate()
        assert config.variant == spec.train["variant"] and config.run_dir() == Path(spec.run_dir)


@pytest.mark.parametrize("value", [1.0, -0.1, "lots", True])
def test_bad_negatives_are_refused(tmp_path: Path, value: object) -> None:
    raw = _raw(tmp_path)
    raw["entries"][0]["negatives"] = value
    with pytest.raises(PlanError, match="negatives must be"):
        load_plan(_write(tmp_path, raw), variants=VARIANTS)
    raw = _raw(tmp_path)
    raw["entries"][1]["negatives"] = 0.2  # an evaluation-only entry trains nothing
    with pytest.raises(PlanError, match="cannot set"):
        load_plan(_write(tmp_path, raw), variants=VARIANTS)


def test_the_negatives_plan_pairs_every_variant_with_and_without() -> None:
    root = Path(__file__).resolve().parents[2]
    plan = load_plan(root / "plans" / "cpu-negatives.yaml", check_paths=False)
    cpu = load_plan(root / "plans" / "cpu.yaml", check_paths=False)
    # the arm without: the CPU protocol with today's head norm, as the scarce-labels study's
    # 100% point (whose runs it may reuse)
    data = load_plan(root / "plans" / "cpu-data.yaml", check_paths=False)
    without = [e for e in plan.entries if not e.negatives]
    assert {e.name for e in without} == {"unet", "unet-wide", "p4", "p4m"}
    for entry in without:  # the CPU study's protocol and widths
        twin = plan.entry(f"{entry.name}+neg")
        assert twin.negatives > 0
        assert (twin.variant, twin.width, twin.match) == (entry.variant, entry.width, entry.match)
        assert (entry.variant, entry.width, entry.match) == (
            cpu.entry(entry.name).variant, cpu.entry(entry.name).width, cpu.entry(entry.name).match)
    for key in ("size", "depth", "epochs", "batch_size", "lr", "seeds", "split_seed",
                "cross_dataset", "angles"):
        assert getattr(plan, key) == getattr(cpu, key) == getattr(data, key), key
    assert plan.train_options == data.train_options == {"patience": 8, "min_epochs": 16}
    assert "model_options" not in plan.train_options  # the head norm's default: on
    assert {d.key for d in plan.datasets} == {"kvasir", "cvc"}


def test_an_entry_trained_on_some_datasets_only(tmp_path: Path) -> None:
    from polypseg.bench.runs import plan_runs

    (tmp_path / "cvc").mkdir()
    raw = _raw(tmp_path, datasets={"kvasir": {"data_dir": "data"}, "cvc": {"data_dir": "cvc"}})
    raw["entries"][2]["datasets"] = ["kvasir"]  # p4 on Kvasir-SEG only
    plan = load_plan(_write(tmp_path, raw), variants=VARIANTS)
    runs = plan_runs(plan, {"unet": {"width": 4}, "p4": {"width": 2}})
    assert sorted(s.key for s in runs) == ["cvc/unet/seed0", "kvasir/p4/seed0",
                                           "kvasir/unet/seed0"]
    unet = next(s for s in runs if s.key == "cvc/unet/seed0")  # its tta entry still follows it
    assert [e.entry for e in unet.evaluations if e.dataset is None] == ["unet", "unet+tta"]
    raw["entries"][2]["datasets"] = ["etis"]
    with pytest.raises(PlanError, match=r"datasets \['etis'\] are not datasets of the plan"):
        load_plan(_write(tmp_path, raw), variants=VARIANTS)
    raw["entries"][2]["datasets"] = "kvasir"
    with pytest.raises(PlanError, match="datasets must be a non-empty list"):
        load_plan(_write(tmp_path, raw), variants=VARIANTS)
    raw["entries"][2]["datasets"] = ["kvasir"]
    raw["entries"][1]["datasets"] = ["kvasir"]  # an evaluation-only entry follows its source
    with pytest.raises(PlanError, match="cannot set"):
        load_plan(_write(tmp_path, raw), variants=VARIANTS)
