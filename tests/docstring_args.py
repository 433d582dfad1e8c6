"""The ``Args:`` parser shared by the docstring rules of zoo and polypseg (tests/zoo/
test_docstrings.py, tests/test_polypseg_docstrings.py)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable


def args_names(docs: Iterable[str | None]) -> set[str]:
    """Names listed in the ``Args:`` sections of ``docs`` (``a, b:`` names both; ``**kw``)."""
    names: set[str] = set()
    for doc in docs:
        if not doc or "Args:" not in doc:
            continue
        section = inspect.cleandoc(doc.split("Args:", 1)[1].split("\n\n", 1)[0] + "\n")
        for line in section.splitlines():
            match = re.match(r"(\*{0,2}\w+(?:, \w+)*):", line)
            if match:
                names |= {n.strip() for n in match.group(1).split(",")}
    return names
