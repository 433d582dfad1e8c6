"""``polypseg predict``: images, folders and videos; masks at the original size; clear errors."""

from __future__ import annotations

import csv
import json
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
        # images get overlay JPGs; a video's overlays are a video (test_video_outputs)
        assert (out / "overlays" / f"{name}.jpg").is_file() == (rows[name]["frame"] == "")
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


def read_video(path: Path) -> tuple[float, list[np.ndarray]]:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return fps, frames


def test_video_outputs(run_dir: Path, tmp_path: Path, capsys):
    """A video gives an overlay video (same fps and frame count, the mask drawn on each
    frame), a per-frame table, a summary that agrees with the table, and COCO polygons."""
    clip = tmp_path / "clip.avi"
    write_video(clip, frames=7)
    out = tmp_path / "out"
    assert main(["predict", str(run_dir), str(clip), "-o", str(out), "--batch-size", "3"]) == 0
    assert "video summary" in capsys.readouterr().out
    fps, frames = read_video(out / "videos" / "clip.mp4")
    assert fps == pytest.approx(5.0) and len(frames) == 7
    assert frames[0].shape == (80, 96, 3)
    assert not (out / "overlays").exists()  # no JPG per frame
    with open(out / "videos" / "clip.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [int(r["frame"]) for r in table] == list(range(7))
    assert [float(r["timestamp_s"]) for r in table] == pytest.approx([i / 5 for i in range(7)])
    masks = [cv2.imread(str(out / r["mask"]), cv2.IMREAD_UNCHANGED) for r in table]
    for row, mask in zip(table, masks, strict=True):
        n, _, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8))
        assert int(row["components"]) == n - 1  # 8-connected regions
        boxes = json.loads(row["boxes"])
        assert sorted(map(tuple, boxes)) == sorted(tuple(int(v) for v in s[:4]) for s in stats[1:])
        # no calibrated decision: a region of at least 0.5% of the frame (polypseg.decision)
        largest = int(stats[1:, cv2.CC_STAT_AREA].max()) if n > 1 else 0
        assert row["polyp_present"] == str(int(largest >= 0.005 * mask.size))
        assert float(row["latency_ms"]) > 0
    # where the mask is on, the overlay frame is greener than the input frame
    with_mask = next(i for i, m in enumerate(masks) if m.any() and not m.all())
    source = cv2.VideoCapture(str(clip))
    for _ in range(with_mask + 1):
        _, original = source.read()
    source.release()
    inside = masks[with_mask] > 0
    gain = frames[with_mask][..., 1].astype(float) - original[..., 1].astype(float)
    assert gain[inside].mean() > 20  # green tint (the MPEG-4 coding blurs a little)
    summary = json.loads((out / "videos" / "clip.json").read_text())
    flags = [int(r["polyp_present"]) for r in table]
    assert summary["frames"] == 7 and summary["frames_with_polyp"] == sum(flags)
    longest = max((len(run) for run in "".join(map(str, flags)).split("0")), default=0)
    assert (summary["longest_run"] or {"frames": 0})["frames"] == longest
    assert summary["mean_latency_ms"] == pytest.approx(  # the summary rounds to 0.01 ms
        np.mean([float(r["latency_ms"]) for r in table]), abs=0.0051)
    assert summary["overlay_video"] == "videos/clip.mp4"
    coco = json.loads((out / "coco" / "clip.json").read_text())
    assert [image["frame_index"] for image in coco["images"]] == list(range(7))
    assert len(coco["annotations"]) == sum(int(r["components"]) for r in table)
    for annotation in coco["annotations"]:
        polygon = annotation["segmentation"][0]
        assert len(polygon) >= 6 and len(polygon) % 2 == 0
        x, y, w, h = annotation["bbox"]
        xs, ys = polygon[0::2], polygon[1::2]
        assert x <= min(xs) and max(xs) <= x + w and y <= min(ys) and max(ys) <= y + h


def test_no_overlay_video_writes_frame_overlays(run_dir: Path, tmp_path: Path):
    clip = tmp_path / "clip.avi"
    write_video(clip, frames=3)
    out = tmp_path / "out"
    assert main(["predict", str(run_dir), str(clip), "-o", str(out), "--no-overlay-video"]) == 0
    assert not (out / "videos" / "clip.mp4").exists()
    assert sorted(p.name for p in (out / "overlays").iterdir()) == [
        f"clip_f{i:06d}.jpg" for i in range(3)]
    assert json.loads((out / "videos" / "clip.json").read_text())["overlay_video"] is None


def test_images_get_the_table_and_coco(run_dir: Path, image_dir: Path, tmp_path: Path):
    out = tmp_path / "out"
    assert main(["predict", str(run_dir), str(image_dir), "-o", str(out)]) == 0
    rows = {row["name"]: row for row in read_rows(out)}
    for name, row in rows.items():
        assert row["timestamp_s"] == "" and row["polyp_present"] in {"0", "1"}
        coco = json.loads((out / "coco" / f"{name}.json").read_text())
        assert [image["file_name"] for image in coco["images"]] == [Path(row["source"]).name]
        assert len(coco["annotations"]) == int(row["components"])
        assert coco["categories"] == [{"id": 1, "name": "polyp", "supercategory": "lesion"}]


def test_polyp_present_uses_a_calibrated_decision():
    from polypseg.deploy.predict import decision_of, polyp_present

    prob = np.zeros((10, 10), np.float32)
    prob[0, 0] = 0.6  # one pixel above the threshold: 1% of the image, over the default 0.5%
    assert polyp_present(prob, None, 0.5)
    assert not polyp_present(np.pad(prob, 5), None, 0.5)  # 0.25%: under it
    assert not polyp_present(np.full((4, 4), 0.49, np.float32), None, 0.5)
    decision = decision_of({"decision": {"min_area_fraction": 0.05, "min_peak_probability": 0.5}})
    assert decision == {"min_area_fraction": 0.05, "min_peak_probability": 0.5}
    assert not polyp_present(prob, decision, 0.5)  # 1% of the image < 5%
    prob[:3, :3] = 0.7  # 9%, peak 0.7
    assert polyp_present(prob, decision, 0.5)
    assert not polyp_present(prob, {**decision, "min_peak_probability": 0.8}, 0.5)
    assert decision_of({"decision": {"min_area_fraction": "x"}}) is None
    assert decision_of({}) is None


def test_predicting_with_tta_uses_the_thresholds_chosen_for_it():
    from polypseg.deploy.predict import decision_label, decision_of

    rot90 = {"min_area_fraction": 0.01, "min_peak_probability": 0.7}
    meta = {"decision": {"min_area_fraction": 0.05, "min_peak_probability": 0.9,
                         "source": "validation", "by_tta": {"rot90": rot90}}}
    assert decision_of(meta) == {"min_area_fraction": 0.05, "min_peak_probability": 0.9}
    assert decision_of(meta, "none") == decision_of(meta)
    assert decision_of(meta, "rot90") == rot90
    assert decision_label(meta) == "calibrated"
    assert "rot90" in decision_label(meta, "rot90")
    del meta["decision"]["by_tta"]  # calibrated before per-TTA thresholds: the plain ones
    assert decision_of(meta, "rot90") == decision_of(meta)
    assert "without rot90" in decision_label(meta, "rot90")
    assert decision_label({}, "rot90").startswith("default")


def test_predict_reads_exif_orientation(run_dir: Path, tmp_path: Path):
    """An image stored sideways with EXIF orientation 6 gets the mask of the upright image."""
    from PIL import Image

    stored = pattern(200, 256, 5)
    exif = Image.Exif()
    exif[0x0112] = 6
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(stored).save(folder / "tagged.png", exif=exif.tobytes())
    Image.fromarray(np.ascontiguousarray(np.rot90(stored, -1))).save(folder / "upright.png")
    out = tmp_path / "out"
    assert main(["predict", str(run_dir), str(folder), "-o", str(out)]) == 0
    tagged = cv2.imread(str(out / "masks" / "tagged.png"), cv2.IMREAD_UNCHANGED)
    assert tagged.shape == (256, 200)
    np.testing.assert_array_equal(
        tagged, cv2.imread(str(out / "masks" / "upright.png"), cv2.IMREAD_UNCHANGED))


def test_torch_models_get_channels_last_and_onnx_gets_nchw(
    run_dir: Path, exports: dict[str, Path]
) -> None:
    """predict/serve's model call: a torch module is fed channels-last (the CPU default, as in
    training), onnxruntime the NCHW batch it reads; both give the checkpoint's probabilities."""
    import torch

    from polypseg.deploy.bundle import OnnxModule, open_model
    from polypseg.deploy.predict import predict_probabilities, preprocess

    seen: list[tuple[str, bool]] = []

    def probe(module: torch.nn.Module, label: str) -> None:
        def hook(_module: torch.nn.Module, args: tuple) -> None:
            x = args[0]
            seen.append((label, not x.is_contiguous() and x.is_contiguous(
                memory_format=torch.channels_last)))

        module.register_forward_pre_hook(hook)

    torch_bundle, onnx_bundle = open_model(run_dir), open_model(exports["onnx"])
    assert isinstance(onnx_bundle.model, OnnxModule)
    probe(torch_bundle.model, "torch")
    probe(onnx_bundle.model, "onnx")
    batch, _ = preprocess([pattern(70, 90, seed=s) for s in range(2)], torch_bundle)
    from_torch = predict_probabilities(torch_bundle.model, batch)
    from_onnx = predict_probabilities(onnx_bundle.model, batch)
    assert seen == [("torch", True), ("onnx", False)]
    torch.testing.assert_close(from_onnx, from_torch, atol=1e-4, rtol=0)
