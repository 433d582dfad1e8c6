"""The datasets polypseg knows: one record each, the one place a dataset's facts live.

Modelled on :mod:`zoo.registry`: a name maps to a frozen record, lookups go through
:func:`get` (aliases accepted, an unknown name is an error naming the known ones), and
adding a dataset is one entry of :data:`DATASETS` and its tests. A record holds:

* ``name`` (canonical, ``"cvc-clinicdb"``), ``title`` (``"CVC-ClinicDB"``), ``aliases``
  (names a user or a folder may give, compared lower-case without ``-``, ``_`` and spaces)
  and ``folder_keys`` (a folder whose squashed name *contains* one of them is this dataset);
* ``layouts``: the folder layouts it ships in (names of :data:`polypseg.data.layouts.LAYOUTS`);
  a layout that only one record accepts identifies the dataset;
* ``split``: its split rule (:class:`SplitRule`: by image, by video sequence, or a test set
  whose images are all test images);
* ``source`` (download page, direct archive URL when there is a stable one), ``terms`` and
  ``citation``; ``images``: the number of image/mask pairs of the official release.

The five test sets of the field (PraNet's ``TestDataset/<name>/images`` + ``masks``:
Kvasir (100 images of Kvasir-SEG), CVC-ClinicDB (62 frames), CVC-ColonDB, ETIS-LaribPolypDB,
CVC-300) are here too. Kvasir-SEG and CVC-ClinicDB keep one record each, whichever copy a
folder holds: a folder of PraNet's test images of them is recognised by name and, without a
split that describes it, evaluated whole (:mod:`polypseg.evaluation`).

A folder that no record recognises (by name, layout or frame-number file names) is indexed
as :data:`FALLBACK` (Kvasir-SEG's rule: random by image), which ``--dataset`` overrides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from polypseg.errors import DataError

#: How a dataset is split: ``image`` (seeded random by image), ``sequence`` (whole video
#: sequences), ``test`` (a test set: every image is a test image).
SPLIT_UNITS: tuple[str, ...] = ("image", "sequence", "test")


@dataclass(frozen=True)
class SplitRule:
    """A dataset's split rule: the unit kept whole and the target train/val/test fractions."""

    unit: str
    fractions: tuple[float, float, float] = (0.0, 0.0, 1.0)

    def describe(self, k: int | None = None) -> str:
        """The rule in words, as split files record it (``k``: a k-fold split)."""
        if self.unit == "test":
            return "test set: every image"
        unit = "video sequence" if self.unit == "sequence" else "image"
        if k is not None:
            return f"{k}-fold by {unit} (test fold f, val fold f+1 mod {k})"
        train, val, test = (round(100 * f) for f in self.fractions)
        if self.unit == "sequence":
            return f"by video sequence, about {train}/{val}/{test} of frames"
        return f"random by image, {train}/{val}/{test}"


@dataclass(frozen=True)
class DatasetRecord:
    """Everything polypseg knows about one dataset (see the module docstring)."""

    name: str
    title: str
    aliases: tuple[str, ...]
    folder_keys: tuple[str, ...]
    layouts: tuple[str, ...]
    split: SplitRule
    source: str
    terms: str
    citation: str
    images: int | None = None
    url: str | None = None  # a stable direct link to the archive, when there is one
    test_set: bool = False  # one of the field's five test sets (PraNet's TestDataset)

    @property
    def by_sequence(self) -> bool:
        """Whether splits keep the dataset's video sequences whole."""
        return self.split.unit == "sequence"


_TEST_TERMS = "research use only; cite the dataset's authors (below)"
_PRANET = ("Fan et al., \"PraNet: Parallel Reverse Attention Network for Polyp Segmentation\", "
           "MICCAI 2020 (the TestDataset collection)")


def _pranet_test_set(name: str, title: str, aliases: tuple[str, ...],
                     folder_keys: tuple[str, ...], citation: str, images: int) -> DatasetRecord:
    """A test set as PraNet's TestDataset lays it out (images/ + masks/, no split of its own).

    Args:
        name: the registry key.
        title: the dataset's name as its authors write it.
        aliases: other spellings that name it (squashed).
        folder_keys: words in a folder's name that recognise it.
        citation: the dataset's paper (PraNet's, which distributes it, is appended).
        images: its number of images.
    """
    return DatasetRecord(
        name=name, title=title, aliases=aliases, folder_keys=folder_keys,
        layouts=("images-masks",), split=SplitRule("test"),
        source="https://github.com/DengPingFan/PraNet (TestDataset)", terms=_TEST_TERMS,
        citation=f"{citation}; {_PRANET}.", images=images, test_set=True,
    )


DATASETS: tuple[DatasetRecord, ...] = (
    DatasetRecord(
        name="kvasir-seg",
        title="Kvasir-SEG",
        aliases=("kvasirseg", "kvasir"),
        folder_keys=("kvasir",),
        layouts=("images-masks",),
        split=SplitRule("image", (0.8, 0.1, 0.1)),
        source="https://datasets.simula.no/kvasir-seg/",
        url="https://datasets.simula.no/downloads/kvasir-seg.zip",
        terms="research and educational use only; cite Jha et al., MMM 2020",
        citation='Jha et al., "Kvasir-SEG: A Segmented Polyp Dataset", MMM 2020.',
        images=1000,
    ),
    DatasetRecord(
        name="cvc-clinicdb",
        title="CVC-ClinicDB",
        aliases=("cvcclinicdb", "clinicdb", "cvc"),
        folder_keys=("clinicdb",),
        layouts=("original-groundtruth", "tif-original", "png-original", "images-masks"),
        split=SplitRule("sequence", (0.7, 0.15, 0.15)),
        source="https://polyp.grand-challenge.org/CVCClinicDB/",
        terms="research and educational use only; cite Bernal et al., CMIG 43 (2015)",
        citation='Bernal et al., "WM-DOVA maps for accurate polyp highlighting in colonoscopy: '
        'Validation vs. saliency maps from physicians", Computerized Medical Imaging and '
        "Graphics 43 (2015) 99-111.",
        images=612,
    ),
    _pranet_test_set(
        "cvc-colondb", "CVC-ColonDB", ("cvccolondb", "colondb"), ("colondb",),
        'Bernal et al., "Towards automatic polyp detection with a polyp appearance model", '
        "Pattern Recognition 45(9) (2012) 3166-3182", 380,
    ),
    _pranet_test_set(
        "etis-laribpolypdb", "ETIS-LaribPolypDB", ("etislaribpolypdb", "etislarib", "etis"),
        ("etis",),
        'Silva et al., "Toward embedded detection of polyps in WCE images for early '
        'diagnosis of colorectal cancer", IJCARS 9(2) (2014) 283-293', 196,
    ),
    _pranet_test_set(
        "cvc-300", "CVC-300", ("cvc300", "endoscene", "cvcendoscenestill"),
        ("cvc300", "endoscene"),
        'Vázquez et al., "A benchmark for endoluminal scene segmentation of colonoscopy '
        'images", Journal of Healthcare Engineering (2017) 4037190', 60,
    ),
)

#: The record of a folder that no record recognises.
FALLBACK = "kvasir-seg"

_BY_NAME = {record.name: record for record in DATASETS}


def squash(name: str) -> str:
    """``"CVC-ClinicDB"`` -> ``"cvcclinicdb"``: lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


_BY_ALIAS = {squash(alias): r.name for r in DATASETS for alias in (r.name, *r.aliases)}


def names() -> tuple[str, ...]:
    """The canonical names, in registry order."""
    return tuple(_BY_NAME)


def get(name: str) -> DatasetRecord:
    """The record of ``name`` or one of its aliases; DataError naming the known ones."""
    key = squash(name)
    if key not in _BY_ALIAS:
        raise DataError(f"unknown dataset {name!r}: expected one of {', '.join(names())}")
    return _BY_NAME[_BY_ALIAS[key]]


def canonical(name: str) -> str:
    """``"Kvasir-SEG"``, ``"kvasir"`` -> ``"kvasir-seg"`` (:func:`get`'s name)."""
    return get(name).name


def by_folder_name(folder: str) -> DatasetRecord | None:
    """The record a folder's name identifies: an alias exactly, else the record whose
    longest ``folder_keys`` entry the name contains (``"CVC-300"`` is CVC-300, never
    CVC-ClinicDB's ``cvc``); ``None`` when no record matches."""
    key = squash(folder)
    if key in _BY_ALIAS:
        return _BY_NAME[_BY_ALIAS[key]]
    found = [(len(k), r) for r in DATASETS for k in r.folder_keys if k in key]
    return max(found, key=lambda item: item[0])[1] if found else None


def by_layout(layout: str) -> DatasetRecord | None:
    """The one record that ships in ``layout``, or ``None`` when several (or none) do."""
    found = [record for record in DATASETS if layout in record.layouts]
    return found[0] if len(found) == 1 else None


def test_sets() -> tuple[DatasetRecord, ...]:
    """The records of the field's test sets that are only test sets (not trained on)."""
    return tuple(record for record in DATASETS if record.test_set)
