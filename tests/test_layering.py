"""The import-floor table of ``docs/design.md`` (section 1) holds what the modules import: every
module of ``polypseg`` has a row, and what a module imports of ``polypseg`` at module level is
named in its row's "imports at module level" column (imports inside functions are free)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "polypseg"


def _table() -> dict[str, set[str]]:
    """``{module: the polypseg modules its row allows at module level}``."""
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    rows: dict[str, set[str]] = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].isdigit():
            continue
        allowed = {name.split(".")[0] for name in re.findall(r"`([\w.]+)`", cells[2])}
        for module in re.findall(r"`(\w+)`", cells[1]):
            rows[module] = allowed
    return rows


def _module_level_imports(path: Path) -> set[str]:
    """The first names after ``polypseg.`` that ``path`` imports outside functions (not under
    ``if TYPE_CHECKING``)."""
    found: set[str] = set()

    def walk(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                parts = node.module.split(".")
                if parts[0] == "polypseg":
                    found.add(parts[1] if len(parts) > 1 else node.names[0].name)
            elif isinstance(node, ast.Import):
                found.update(
                    a.name.split(".")[1] for a in node.names if a.name.startswith("polypseg.")
                )
            elif isinstance(node, ast.Try):
                walk(node.body)
                for handler in node.handlers:
                    walk(handler.body)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                walk(node.body)
                walk(node.orelse)

    walk(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


def _unit(path: Path) -> str:
    """The table's name of the module ``path`` belongs to (its top-level module or package)."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def test_every_module_has_a_row() -> None:
    units = {_unit(path) for path in PACKAGE.rglob("*.py")} - {"__init__"}
    assert units - set(_table()) == set()


def test_module_level_imports_are_those_of_the_row() -> None:
    table = _table()
    wrong = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = _unit(path)
        if unit == "__init__":
            continue
        extra = _module_level_imports(path) - table[unit] - {unit}
        if extra:
            wrong[str(path.relative_to(ROOT))] = sorted(extra)
    assert not wrong, f"imports the design's table does not name: {wrong}"


def test_the_table_is_read() -> None:
    """A table the parser misread would pass the tests above: it reads known rows."""
    table = _table()
    assert table["atomic"] == {"errors"}
    assert {"checkpoint", "devices", "zoo"} <= table["training"]
