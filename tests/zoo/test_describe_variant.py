"""describe_variant: the counts of a variant at any width from its small models, and describe()
leaves the model as it found it."""

from __future__ import annotations

import subprocess
import sys

import pytest

import zoo
from zoo.describe import describe, describe_variant


@pytest.mark.parametrize("name", zoo.available())
def test_counts_at_a_width_equal_the_built_models(name: str) -> None:
    expected = describe(zoo.create(name, width=6, depth=2), (32, 32))
    assert describe_variant(name, (32, 32), width=6, depth=2) == expected


def test_describe_restores_modes_and_forwards() -> None:
    model = zoo.create("p4", width=2, depth=1).train()
    model.encoder[0][0][0].eval()  # a mixed state must survive too
    describe(model, (16, 16))
    assert model.training and not model.encoder[0][0][0].training
    assert all("forward" not in vars(m) for m in model.modules())


def test_steerable_import_defers_sympy_and_keeps_e2cnn_diffops() -> None:
    code = (
        "import sys\n"
        "import zoo.steerable\n"
        "print('sympy' in sys.modules)\n"
        "import e2cnn.diffops.utils as u\n"
        "print(u._SYMPY_AVAILABLE, u.finite_diff_weights(1, [-1, 0, 1], 0)[1][-1])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[0] == "False"
    assert out[1] == "True [-1/2, 0, 1/2]"


def test_uninitialized_is_scoped() -> None:
    """Inside, expanded convs skip their init; outside (and after an error) they initialise."""
    import torch

    from zoo.base import init_skipped, uninitialized

    with pytest.raises(RuntimeError), uninitialized():
        assert init_skipped()
        raise RuntimeError
    assert not init_skipped()
    torch.manual_seed(0)
    a = zoo.create("p4", width=1, depth=1).state_dict()
    torch.manual_seed(0)
    b = zoo.create("p4", width=1, depth=1).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # seeded init, as before
