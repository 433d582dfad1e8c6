"""scripts/serve_compare.py: two servers started, loaded in alternating rounds, compared."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from deploy_helpers import encode, pattern

from scripts import serve_compare


def test_two_exports_side_by_side(exports: dict[str, Path], tmp_path: Path) -> None:
    twin = tmp_path / "twin"
    shutil.copytree(exports["onnx"], twin)
    image = tmp_path / "image.png"
    image.write_bytes(encode(pattern(64, 64)))
    out = tmp_path / "compare"
    code = serve_compare.main([str(exports["onnx"]), str(twin), "--image", str(image), "-n", "3",
                               "-c", "1", "--rounds", "2", "--threads", "1", "--out", str(out)])
    assert code == 0
    doc = json.loads(out.with_suffix(".json").read_text())
    base, other = doc["servers"]
    assert base["ratio"] == 1.0 and base["paired_ratio"] == 1.0
    assert other["throughput_rps"] > 0 and len(other["rounds"]) == 2
    assert all(r["ok"] == 3 for row in doc["servers"] for r in row["rounds"])
    assert base["export"]["quantization"] == "float32"
    assert "| twin | float32 |" in out.with_suffix(".md").read_text()
