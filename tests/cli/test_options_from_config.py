"""``polypseg.cli.options_from_config``: ``polypseg train``'s options are ``TrainConfig``'s fields
(names, help, bounds), and what the command line gives reaches the fields by name."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from polypseg.cli import app, main
from polypseg.cli.options_from_config import given_values, option_parameters, options_from
from polypseg.training.config import TrainConfig
from polypseg.training.fields import Bound, CliOption, cli_option, setting


def _train_command() -> Any:
    return typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]


def test_the_train_command_takes_exactly_the_fields_with_an_option() -> None:
    exposed = {f.name for f in dataclasses.fields(TrainConfig) if cli_option(f) is not None}
    params = {p.name for p in _train_command().params}
    assert params == exposed | {"config"}
    assert {"min_lr_ratio", "model_options", "val_batch_size", "threshold"}.isdisjoint(params)
    flags = {p.name: p.opts for p in _train_command().params}
    assert flags["variant"] == ["--model", "--variant"] and flags["compile"] == ["--compile"]


def test_an_option_shows_its_fields_help_and_cli_bound() -> None:
    by_name = {p.name: p for p in _train_command().params}
    assert by_name["epochs"].help == cli_option(
        next(f for f in dataclasses.fields(TrainConfig) if f.name == "epochs")).help
    assert (by_name["negatives"].min, by_name["negatives"].max) == (0.0, 0.9)
    assert by_name["split_seed"].min == 0
    assert by_name["epochs"].min is None  # checked by TrainConfig.validate alone


@pytest.mark.parametrize("flag", ["--model", "--variant"])
def test_model_and_variant_reach_the_variant_field(
    flag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import polypseg.training

    seen: list[TrainConfig] = []
    monkeypatch.setattr(polypseg.training, "train", seen.append, raising=False)
    out = tmp_path / "run"
    assert main(["train", flag, "p4", "--data", str(tmp_path), "--out", str(out), "--size",
                 "64", "--no-amp", "--compile", "--quiet"]) == 0
    [config] = seen
    assert config.variant == "p4" and config.size == 64 and config.out == str(out)
    assert (config.amp, config.compile, config.quiet, config.resume) == (False, True, True, False)
    assert config.epochs == TrainConfig.epochs  # not given: the default


def test_command_line_options_override_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import polypseg.training

    seen: list[TrainConfig] = []
    monkeypatch.setattr(polypseg.training, "train", seen.append, raising=False)
    path = tmp_path / "train.yaml"
    path.write_text("model: unet\nepochs: 7\nlr: 0.5\n")  # the old key of the variant
    assert main(["train", "--config", str(path), "--variant", "p4", "--lr", "0.1"]) == 0
    assert (seen[0].variant, seen[0].epochs, seen[0].lr) == ("p4", 7, 0.1)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--split-seed", "-1"], "--split-seed"),  # typer checks this bound
        (["--negatives", "0.95"], "--negatives"),
        (["--epochs", "0"], "'epochs' must be >= 1, got 0"),  # TrainConfig.validate does
        (["--lr", "0"], "'lr' must be > 0, got 0.0"),
    ],
)
def test_a_fields_bound_is_enforced_in_one_line(
    argv: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--model", "p4", "--data", str(tmp_path), "--out",
                 str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1, err


def test_train_help_loads_no_torch() -> None:
    """``train --help`` loads no torch and no zoo layer: of zoo only the lazy package and its
    string options (standard library only; ``--tta`` is :class:`polypseg.options.Tta`)."""
    code = ("import sys\nfrom polypseg.cli import main\nmain(['train', '--help'])\n"
            "print('torch' in sys.modules, sorted(m for m in sys.modules\n"
            "                                     if m.split('.')[0] == 'zoo'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parents[2])
    assert "--model,--variant" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "False ['zoo', 'zoo.options']"


class Colour(str, enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class _Settings:
    # setting() returns a dataclasses.field, which ruff cannot see for a type it does not know
    colour: Colour = setting(Colour.RED, cli=CliOption(("--colour",), "A colour."))  # noqa: RUF009
    folder: str | None = setting(None, cli=CliOption(("--folder",), "A folder.", path=True))
    count: int = setting(1, bound=Bound(low=1, high=3),
                         cli=CliOption(("--count",), "How many.", bound_on_cli=True))
    loud: bool = setting(False, cli=CliOption(("--loud",), "Shout."))
    hidden: int = 0


def _settings_app(seen: list[dict[str, Any]]) -> typer.Typer:
    settings_app = typer.Typer()

    @settings_app.command()
    @options_from(_Settings)
    def run(**values: Any) -> None:
        seen.append(given_values(_Settings, values))

    return settings_app


def test_a_dataclass_becomes_typed_options() -> None:
    seen: list[dict[str, Any]] = []
    runner = CliRunner()
    done = runner.invoke(_settings_app(seen), ["--colour", "blue", "--folder", "x/y", "--loud"])
    assert done.exit_code == 0, done.output
    assert seen == [{"colour": Colour.BLUE, "folder": "x/y", "loud": True}]  # a str, no count
    assert runner.invoke(_settings_app(seen), ["--colour", "green"]).exit_code == 2  # choices
    assert runner.invoke(_settings_app(seen), ["--count", "4"]).exit_code == 2  # the bound
    assert runner.invoke(_settings_app(seen), ["--hidden", "1"]).exit_code == 2  # no option
    assert [p.name for p in option_parameters(_Settings)] == ["colour", "folder", "count", "loud"]


def test_a_parameter_named_as_a_field_or_an_open_cli_bound_is_refused() -> None:
    clash = inspect.Parameter("count", inspect.Parameter.KEYWORD_ONLY, default=None)
    with pytest.raises(TypeError, match="count"):
        options_from(_Settings, leading=[clash])

    @dataclasses.dataclass
    class Open:
        share: float = setting(0.5, bound=Bound(low=0, low_open=True),
                               cli=CliOption(("--share",), "A share.", bound_on_cli=True))

    with pytest.raises(TypeError, match="open bound"):
        option_parameters(Open)
