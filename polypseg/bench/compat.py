"""Stop-gaps for bugs of other modules that block a benchmark, each self-disabling once fixed.

``se2_inference_mode``: ``zoo.se2._SE2Conv._rotate`` computes ``w @ op.t()`` with a sparse COO
operator; under ``torch.inference_mode`` (how ``polypseg.inference`` predicts, so every
evaluation and sweep) the sparse transpose raises "Cannot set version_counter for inference
tensor". ``torch.sparse.mm(op, w.t()).t()`` is the same product without the transpose. The
patch is applied only while a probe shows the bug, so it disappears when zoo is fixed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


def _se2_rotate_fails() -> bool:
    import torch

    try:
        from zoo.se2 import SE2LiftConv
    except ImportError:
        return False
    layer = SE2LiftConv(1, 1, n=12).eval()
    try:
        with torch.inference_mode():
            layer(torch.zeros(1, 1, 5, 5))
    except RuntimeError as err:
        return "version_counter" in str(err)
    return False


@contextlib.contextmanager
def se2_inference_mode() -> Iterator[bool]:
    """Within the block, SE(2,N) layers work under ``inference_mode``; yields whether a patch
    was needed."""
    import torch

    if not _se2_rotate_fails():
        yield False
        return
    from zoo import se2

    original = se2._SE2Conv._rotate

    def _rotate(self: se2._SE2Conv, w: torch.Tensor) -> torch.Tensor:
        op = self.operator if self.operator.dtype == w.dtype else self.operator.to(w.dtype)
        return torch.sparse.mm(op, w.t()).t()

    se2._SE2Conv._rotate = _rotate
    try:
        yield True
    finally:
        se2._SE2Conv._rotate = original
