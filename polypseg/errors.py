"""User-facing errors.

Library code raises :class:`PolypsegError` (or a subclass) with a message a person can act on:
it names the file, the value and what was expected. The CLI prints the message without a
traceback and exits with status 2; the HTTP server maps it to a 4xx. Anything else is a bug.
"""

from __future__ import annotations


class PolypsegError(Exception):
    """An error caused by the user's input (files, options, checkpoints), not by a bug."""


class DataError(PolypsegError):
    """A dataset folder, image or mask that cannot be used as it is."""


class ModelError(PolypsegError):
    """An unknown variant, a bad model option, or a checkpoint that does not fit."""


class RunError(PolypsegError):
    """A run folder, split file or config that is missing or inconsistent."""
