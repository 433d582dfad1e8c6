"""polypseg.options (tests/zoo/test_options.py: zoo's): each string option declared once; the CLI
and the library take its values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from polypseg.errors import DataError
from polypseg.evaluation import result_stem
from polypseg.options import ExportFormat, Overlay, Tta, look_up_option, look_up_tta

REPO = Path(__file__).resolve().parents[1]
#: An evaluation with rot90 test-time averaging, written by an earlier version.
COMMITTED_TTA = REPO / "results/cpu/runs/kvasir/unet/seed1/bench/unet+tta"


def test_tta_none_in_any_form_is_none_and_rot90_is_its_string() -> None:
    for none in (None, "none", Tta.NONE):
        assert look_up_tta(none) is None
    assert look_up_tta("rot90") is Tta.ROT90 == "rot90"
    assert json.dumps({"tta": look_up_tta("rot90")}) == '{"tta": "rot90"}'
    with pytest.raises(DataError, match=r"^tta is 'none' or 'rot90', got 'rot45'$"):
        look_up_tta("rot45", error=DataError)


def test_a_member_and_its_string_are_the_same_key() -> None:
    files = {ExportFormat.ONNX: "model.onnx"}
    assert files["onnx"] == "model.onnx" and "onnx" in files
    assert f"{ExportFormat.STATE}-x" == "state-x"


def test_a_look_up_raises_the_callers_error_naming_every_value() -> None:
    assert look_up_option("tint", Overlay, "overlay", error=DataError) is Overlay.TINT
    with pytest.raises(DataError, match=r"^overlay is 'outline', 'tint' or 'none', got 'fill'$"):
        look_up_option("fill", Overlay, "overlay", error=DataError)


@pytest.mark.skipif(not COMMITTED_TTA.is_dir(), reason="the committed CPU study runs are absent")
def test_committed_tta_evaluations_keep_their_names_and_values() -> None:
    path = COMMITTED_TTA / f"{result_stem('test', look_up_tta('rot90'))}.json"
    assert path.name == "test-tta-rot90.json"
    assert look_up_tta(json.loads(path.read_text())["tta"]) is Tta.ROT90
    assert result_stem("test", look_up_tta("none")) == "test"


def test_the_options_and_the_help_load_no_torch() -> None:
    code = (
        "import sys\n"
        "import polypseg.options\n"
        "from polypseg.cli import main\n"
        "for command in ([], ['export'], ['predict'], ['serve'], ['evaluate'], ['sweep']):\n"
        "    assert main([*command, '--help']) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'zoo')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == "['zoo', 'zoo.options']"
