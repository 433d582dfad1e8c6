"""How option types show in ``--help``: a flag (``--help``, ``--amp/--no-amp``) takes no value,
so it shows no type.

typer 0.29 prints the type of every option in its rich help, flags included, as ``<bool>``,
which reads as if ``--help`` took a value; :func:`hide_flag_types` makes flags show none (what
click's plain help does). Typer versions without the behaviour are left as they are.
"""

from __future__ import annotations

from typing import Any


def hide_flag_types() -> None:
    """Patch typer's option class so that flags show no type in the rich help."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover - an older typer
        return
    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "_polypseg_flags", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        if getattr(self, "is_flag", False) or getattr(self, "is_bool_flag", False):
            return None
        return original(self, ctx)

    display_type_rich._polypseg_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]
