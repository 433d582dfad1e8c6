"""Finding the image/mask pairs of a dataset folder in any of the layouts the datasets ship in.

Supported layouts (folder names are matched ignoring case, spaces, ``_`` and ``-``):

========================  ===========================================  ==========================
layout                    folders                                      where it comes from
========================  ===========================================  ==========================
``images-masks``          ``images/``, ``masks/``                      official Kvasir-SEG (with
                                                                       ``kavsir_bboxes.json``) and
                                                                       the re-encoded shared data
``original-groundtruth``  ``Original/``, ``Ground Truth/``             official CVC-ClinicDB (TIFF)
``tif-original``          ``TIF/Original/``, ``TIF/Ground Truth/``     CVC-ClinicDB re-distributions
``png-original``          ``PNG/Original/``, ``PNG/Ground Truth/``     CVC-ClinicDB re-distributions
========================  ===========================================  ==========================

Images and masks are paired by file stem (``12.tif`` with ``12.tif``, ``a.jpg`` with ``a.png``).
Which dataset a folder holds is decided by :mod:`polypseg.data.registry` (folder name, a layout
only one dataset ships in, CVC-ClinicDB's frame-number file names), unless given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from polypseg.data import registry
from polypseg.data.clinicdb import frame_number, sequence_of
from polypseg.data.formats import IMAGE_SUFFIXES
from polypseg.errors import DataError

KVASIR = "kvasir-seg"
CLINICDB = "cvc-clinicdb"
#: Canonical dataset names (:func:`polypseg.data.registry.names`).
DATASETS: tuple[str, ...] = registry.names()

#: Files that operating systems leave in folders; skipped without a note.
_JUNK_FILES = frozenset({"thumbs.db", "desktop.ini"})


@dataclass(frozen=True)
class Layout:
    """One folder layout: where the images and the masks are, relative to the dataset root."""

    name: str
    images: tuple[str, ...]
    masks: tuple[str, ...]

    @property
    def dataset(self) -> str | None:
        """The dataset this layout implies: the one registry record that ships in it."""
        record = registry.by_layout(self.name)
        return record.name if record is not None else None

    def describe(self) -> str:
        """``"images/ + masks/"`` style description."""
        return f"{'/'.join(self.images)}/ + {'/'.join(self.masks)}/"


LAYOUTS: tuple[Layout, ...] = (
    Layout("images-masks", ("images",), ("masks",)),
    Layout("original-groundtruth", ("Original",), ("Ground Truth",)),
    Layout("tif-original", ("TIF", "Original"), ("TIF", "Ground Truth")),
    Layout("png-original", ("PNG", "Original"), ("PNG", "Ground Truth")),
)


@dataclass(frozen=True)
class Pair:
    """An image and its mask; ``sequence`` is the CVC-ClinicDB video sequence (else None)."""

    stem: str
    image: Path
    mask: Path
    sequence: int | None = None


@dataclass
class DatasetIndex:
    """The pairs found in a dataset folder, and what was wrong with the folder.

    ``problems`` lists what makes the folder unfit as it is (an image without a mask, two files
    with one stem, a ClinicDB file that is not a frame number); ``unmatched`` the images and
    masks without a partner; ``ignored`` the files that are not images (README.txt, ...).
    ``detected_by`` says how ``name`` was decided.
    """

    root: Path
    name: str
    layout: str
    pairs: list[Pair]
    problems: list[str] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)
    unmatched: list[Path] = field(default_factory=list)
    image_dir: Path | None = None
    mask_dir: Path | None = None
    bboxes: Path | None = None
    detected_by: str = "given"

    @property
    def sequences(self) -> list[int]:
        """The ClinicDB video sequences present, sorted (empty for Kvasir-SEG)."""
        return sorted({p.sequence for p in self.pairs if p.sequence is not None})

    @property
    def stems(self) -> list[str]:
        """The stems of all pairs, in index order."""
        return [p.stem for p in self.pairs]


def canonical_dataset(name: str) -> str:
    """``"Kvasir-SEG"``, ``"kvasir"`` -> ``"kvasir-seg"``; ``"CVC-ClinicDB"``, ``"clinicdb"`` ->
    ``"cvc-clinicdb"`` (:func:`polypseg.data.registry.canonical`). DataError for other names."""
    return registry.canonical(name)


def natural_key(stem: str) -> tuple[int, int, str]:
    """Sort key putting numeric stems first, in numeric order (``2`` before ``10``)."""
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def _squash(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.lower())


def _child(folder: Path, parts: tuple[str, ...]) -> Path | None:
    """The sub-folder ``folder/parts[0]/parts[1]...`` matched loosely, or None."""
    current = folder
    for part in parts:
        if not current.is_dir():
            return None
        wanted = _squash(part)
        matches = sorted(c for c in current.iterdir() if c.is_dir() and _squash(c.name) == wanted)
        if not matches:
            return None
        current = matches[0]
    return current


def detect_layout(folder: Path) -> tuple[Layout, Path, Path] | None:
    """The first layout of :data:`LAYOUTS` found directly in ``folder``, with its two folders."""
    for layout in LAYOUTS:
        images, masks = _child(folder, layout.images), _child(folder, layout.masks)
        if images is not None and masks is not None:
            return layout, images, masks
    return None


def _visible_subfolders(folder: Path) -> list[Path]:
    return sorted(
        c for c in folder.iterdir() if c.is_dir() and not c.name.startswith((".", "__MACOSX"))
    )


def find_dataset_root(folder: Path, depth: int = 1) -> Path | None:
    """``folder`` if it holds a layout, else the one sub-folder (up to ``depth`` levels) that does.

    Raises DataError when several sub-folders hold one: the choice is the user's.
    """
    if detect_layout(folder) is not None:
        return folder
    if depth <= 0:
        return None
    found = [r for c in _visible_subfolders(folder) if (r := find_dataset_root(c, depth - 1))]
    if len(found) > 1:
        names = ", ".join(str(f) for f in found)
        raise DataError(f"{folder}: holds several datasets ({names}); pass one of them")
    return found[0] if found else None


def _list_images(folder: Path, ignored: list[Path], problems: list[str]) -> dict[str, Path]:
    """Image files of ``folder`` by stem; non-images go to ``ignored``, duplicates to problems."""
    by_stem: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name.lower() in _JUNK_FILES:
            continue
        if path.is_dir() or path.suffix.lower() not in IMAGE_SUFFIXES:
            ignored.append(path)
            continue
        if path.stem in by_stem:
            problems.append(f"{path}: same name as {by_stem[path.stem]}; only the first is used")
            continue
        by_stem[path.stem] = path
    return by_stem


def _identify(root: Path, layout: Layout, stems: list[str], dataset: str | None) -> tuple[str, str]:
    """Dataset name and how it was decided: given > folder name > layout > stems > default
    (:mod:`polypseg.data.registry`)."""
    if dataset is not None:
        return canonical_dataset(dataset), "given"
    named = registry.by_folder_name(root.name)
    if named is not None:
        return named.name, "folder name"
    if layout.dataset is not None:
        return layout.dataset, "layout"
    if stems and all(frame_number(s) is not None for s in stems):
        return CLINICDB, "frame-number file names"
    return registry.FALLBACK, "default: file names are not frame numbers"


def discover(root: str | Path, dataset: str | None = None) -> DatasetIndex:
    """Index the dataset folder ``root`` (or the one dataset folder inside it).

    ``dataset`` (``"kvasir-seg"`` or ``"cvc-clinicdb"``, aliases accepted) overrides the
    detection from folder name, layout and file names. Raises DataError when the folder is
    missing, has no known layout, holds no images, or no image has a mask.
    """
    given = Path(root).expanduser()
    if not given.exists():
        raise DataError(f"{given}: no such folder")
    if not given.is_dir():
        raise DataError(f"{given}: not a folder")
    base = find_dataset_root(given)
    detected = detect_layout(base) if base is not None else None
    if base is None or detected is None:
        expected = "; ".join(layout.describe() for layout in LAYOUTS)
        raise DataError(f"{given}: unknown dataset layout (expected one of: {expected})")
    layout, image_dir, mask_dir = detected
    problems: list[str] = []
    ignored: list[Path] = []
    images = _list_images(image_dir, ignored, problems)
    masks = _list_images(mask_dir, ignored, problems)
    if not images:
        raise DataError(f"{image_dir}: holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    unmatched = [images[s] for s in sorted(set(images) - set(masks), key=natural_key)]
    problems += [f"{path}: image has no mask in {mask_dir}" for path in unmatched]
    lonely_masks = [masks[s] for s in sorted(set(masks) - set(images), key=natural_key)]
    problems += [f"{path}: mask has no image in {image_dir}" for path in lonely_masks]
    unmatched += lonely_masks
    stems = sorted(set(images) & set(masks), key=natural_key)
    if not stems:
        raise DataError(
            f"{base}: no image in {image_dir} has a mask of the same name in {mask_dir}"
        )
    name, detected_by = _identify(base, layout, stems, dataset)
    pairs = []
    for stem in stems:
        sequence = None
        if registry.get(name).by_sequence:
            frame = frame_number(stem)
            if frame is None:
                problems.append(
                    f"{images[stem]}: not a CVC-ClinicDB frame number (1-612), so its video "
                    "sequence is unknown"
                )
            else:
                sequence = sequence_of(frame)
        pairs.append(Pair(stem, images[stem], masks[stem], sequence))
    bboxes = next((p for p in sorted(base.glob("*.json")) if "bbox" in p.name.lower()), None)
    return DatasetIndex(
        root=base,
        name=name,
        layout=layout.name,
        pairs=pairs,
        problems=problems,
        ignored=ignored,
        unmatched=unmatched,
        image_dir=image_dir,
        mask_dir=mask_dir,
        bboxes=bboxes,
        detected_by=detected_by,
    )
