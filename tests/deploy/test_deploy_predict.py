"""``polypseg predict``: images, folders and videos; masks at the original size; clear errors."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from deploy_helpers import pattern, real_image

from polypseg.cli import main


def read_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "predictions.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def write_video(path: Path, frames: int = 5, size: tuple[int, int] = (80, 96)) -> None:
    height, width = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (width, height))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(cv2.cvtColor(pattern(height, width, seed=i), cv2.COLOR_RGB2BGR))
    writer.release()


@pytest.mark.parametrize("model", ["run", "onnx"])
def test_predict_images_and_video(
    model: str, run_dir: Path, exports: dict[str, Path], image_dir: Path, tmp_path: Path
):
    write_video(image_dir / "clip.avi")
    out = tmp_path / "pred"
    source = run_dir if model == "run" else exports["onnx"]
    args = ["predict", str(source), str(image_dir), "--out", str(out), "--batch-size", "3"]
    assert main(args) == 0
    rows = {row["name"]: row for row in read_rows(out)}
    expected = {"a": (50, 70), "b": (81, 45)} | {f"clip_f{i:06d}": (80, 96) for i in range(5)}
    assert set(rows) == set(expected)
    for name, (height, width) in expected.items():
        mask = cv2.imread(str(out / rows[name]["mask"]), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (height, width)
        assert set(np.unique(mask)) <= {0, 255}
        assert (int(rows[name]["height"]), int(rows[name]["width"])) == (height, width)
        fraction = float(rows[name]["foreground_fraction"])
        assert fraction == pytest.approx(np.count_nonzero(mask) / mask.size, abs=1e-6)
        assert (out / "overlays" / f"{name}.jpg").is_file()
    assert rows["clip_f000003"]["frame"] == "3" and rows["a"]["frame"] == ""
    assert any(0 < float(r["foreground_fraction"]) < 1 for r in rows.values())


def test_predict_tta_threshold_and_real_image(run_dir: Path, tmp_path: Path):
    image = real_image()
    if image is None:
        pytest.skip("shared Kvasir-SEG images are absent (../shared/data)")
    out = tmp_path / "pred"
    args = ["predict", str(run_dir), str(image), "-o", str(out), "--tta", "rot90",
            "--threshold", "0", "--overlay", "tint"]  # fmt: skip
    assert main(args) == 0
    mask = cv2.imread(str(out / "masks" / f"{image.stem}.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == cv2.imread(str(image)).shape[:2]
    assert (mask == 255).all()  # threshold 0: every probability is >= 0


def _broken_image(folder: Path) -> Path:
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    return folder / "broken.png"


def _text_file(folder: Path) -> Path:
    (folder / "notes.txt").write_text("hello")
    return folder / "notes.txt"


def _empty_folder(folder: Path) -> Path:
    (folder / "empty").mkdir()
    return folder / "empty"


def _fifo(folder: Path) -> Path:
    os.mkfifo(folder / "pipe.png")
    return folder / "pipe.png"


def _link(folder: Path, target: str) -> Path:
    (folder / "frame.png").symlink_to(target)
    return folder / "frame.png"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_broken_image, "broken.png: not a readable image"),
        (_text_file, "unsupported file"),
        (_empty_folder, "holds no images"),
        (lambda folder: folder / "missing.jpg", "no such file or folder"),
        (_fifo, "pipe.png: a FIFO (named pipe), not a regular file"),
        (lambda folder: _link(folder, "/dev/zero"), "a character device (through a symbolic"),
        (lambda folder: _link(folder, str(folder / "gone.png")), "a broken symbolic link"),
    ],
    ids=["unreadable-image", "unsupported-file", "empty-folder", "missing", "fifo", "dev-zero",
         "broken-link"],
)
def test_predict_errors_are_clear(run_dir: Path, tmp_path: Path, capsys, make, message: str):
    target = make(tmp_path)
    status = main(["predict", str(run_dir), str(target), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing is created before a first result


def test_predict_refuses_a_non_model(tmp_path: Path, image_dir: Path, capsys):
    (tmp_path / "nomodel").mkdir()
    status = main(["predict", str(tmp_path / "nomodel"), str(image_dir), "-o", str(tmp_path / "o")])
    assert status == 2
    assert "nomodel" in capsys.readouterr().err


def test_predict_on_a_truncated_video_says_how_many_frames(
    run_dir: Path, tmp_path: Path, capsys
):
    """A video cut after 3 of its 10 frames: 3 masks and the CSV are written, the command
    says which video lost frames and exits with status 2."""
    full = tmp_path / "full.avi"
    write_video(full, frames=10)
    clip = tmp_path / "clip.avi"
    data = full.read_bytes()
    clip.write_bytes(data[: int(len(data) * 0.35)])
    capture = cv2.VideoCapture(str(clip))
    announced = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    readable = 0
    while capture.read()[0]:
        readable += 1
    capture.release()
    assert 0 < readable < announced == 10  # the premise: OpenCV reads a part of it
    out = tmp_path / "out"
    status = main(["predict", str(run_dir), str(clip), "-o", str(out), "--overlay", "none"])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert f"only {readable} of the {announced} frames" in err and "clip.avi" in err
    assert len(read_rows(out)) == readable == len(list((out / "masks").iterdir()))
