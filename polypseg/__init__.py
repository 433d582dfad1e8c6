"""polypseg: rotation-equivariant polyp segmentation."""

__version__ = "0.1.0"
