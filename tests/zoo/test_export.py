"""model.export(): a plain torch module, equal to the eval-mode model, that runs without zoo.

Parity tolerance: relative (max-abs) 1e-5 in float32; TorchScript copies must match the
exported module to 1e-6.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from equivariance import missing_reason, random_image, relative_error
from torch import nn

import zoo

PARITY = 1e-5
ALLOWED = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Upsample,
           nn.Identity)  # fmt: skip


@pytest.mark.parametrize("name", zoo.available())
def test_export_is_plain_torch_and_matches(tiny_model, name) -> None:
    model = tiny_model(name, 0, torch.float32).train()  # export from train mode too
    exported = model.export()
    assert model.training and not exported.training
    x = random_image((32, 48), torch.float32, 0)
    with torch.no_grad():
        expected = model.eval()(x)
        assert relative_error(exported(x), expected) < PARITY
    for m in exported.modules():
        assert type(m).__module__.split(".")[0] == "torch", type(m)
        if type(m) is not nn.Module and not list(m.children()):  # nn.Module: a plain holder
            assert isinstance(m, ALLOWED), type(m)
    assert "zoo" not in exported.code and "e2cnn" not in exported.code
    n_convs = sum(isinstance(m, nn.Conv2d) for m in exported.modules())
    assert n_convs == zoo.describe(model, (32, 32))["convs"]


@pytest.mark.parametrize("name", ["p4", "p4m"])
def test_exported_model_stays_equivariant(tiny_model, name) -> None:
    model = tiny_model(name, 1, torch.float32)
    exported = model.export()  # a plain GraphModule: the group and the input are passed
    zoo.check_equivariance(exported, random_image((32, 32), torch.float32, 1), group=model.group)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_copies_run_without_zoo_or_e2cnn(tiny_model, tmp_path) -> None:
    """Script exported models, then load and run them where zoo and e2cnn cannot import.

    Every export has the same generated code (the skeleton's) and differs only in Conv2d
    shapes, so one variant per conv family suffices (scripting costs seconds each here).
    """
    x = random_image((32, 32), torch.float32, 2)
    names = [n for n in ("p4m", "se2n12", "steerable-flip") if missing_reason(n) is None]
    for name in names:
        exported = tiny_model(name, 0, torch.float32).export()
        with torch.no_grad():
            expected = exported(x)
            scripted = torch.jit.script(exported)
            assert relative_error(scripted(x), expected) < 1e-6
        torch.jit.save(scripted, str(tmp_path / f"{name}.pt"))
        torch.save({"x": x, "y": expected}, tmp_path / f"{name}.io")
    code = textwrap.dedent(
        f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("zoo", "e2cnn", "polypseg"):
                    raise ImportError(name + " blocked for this test")
        sys.meta_path.insert(0, Block())
        import torch
        for name in {names!r}:
            model = torch.jit.load(r"{tmp_path}/" + name + ".pt")
            io = torch.load(r"{tmp_path}/" + name + ".io")
            with torch.no_grad():
                err = (model(io["x"]) - io["y"]).abs().max() / io["y"].abs().max()
            assert err < 1e-6, (name, float(err))
        assert not any(m.split(".")[0] in ("zoo", "e2cnn") for m in sys.modules)
        print("ok", len({names!r}))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["ok", str(len(names))]


def test_export_fails_clearly_on_foreign_modules() -> None:
    from zoo.export import plain_module

    class Odd(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    with pytest.raises(TypeError, match="cannot export Odd"):
        plain_module(Odd())
