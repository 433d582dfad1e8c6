"""Image file formats by suffix: which files are images, and which of them are lossy.

Shared by :mod:`polypseg.data.layouts` (which files of a dataset folder count) and
:mod:`polypseg.data.io` (how a mask file is thresholded), without either importing the other's
dependencies: this module imports nothing.
"""

from __future__ import annotations

#: File name suffixes (lower case) read as images or masks; anything else in a folder is ignored.
IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})

#: Lossy formats: a mask stored in one of them is never read as a 0/1 mask
#: (see :func:`polypseg.data.io.binarize`).
LOSSY_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg"})
