"""Rewrite the absolute paths that committed results record into portable, relative ones.

Results written before the writers recorded portable paths name the clone they were made in
(``/work/study/results/cpu/runs/...``, ``/work/study/../shared/data/Kvasir-SEG``). This rewrites,
in every ``*.json`` and ``*.log`` under the given folders, each absolute path under such a
clone, or beside it, relative to that clone's root (``results/cpu/runs/...``,
``../shared/data/Kvasir-SEG``): the form :func:`polypseg.paths.portable` writes now.

The clone's root is found in the path itself: the part before ``/results/``, ``/plans/``,
``/polypseg/`` or ``/..`` (or give it with ``--root``). JSON is rewritten value by value (keys,
numbers and the layout of lists are kept; indent 2 as the writers use), logs line by line.
Rerunning it changes nothing. Run from the project root::

    python scripts/portable_results.py results            # rewrite
    python scripts/portable_results.py results --check    # exit 1 listing files still absolute
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from polypseg.atomic import atomic_write_text
from polypseg.paths import portable

#: Folders of a clone's root that mark where the root ends in a recorded path.
MARKERS = ("results", "plans", "polypseg", "tests", "zoo", "scripts", "data", ".venv", "..")
#: An absolute POSIX path inside text (up to a quote, space, comma or bracket).
ABSOLUTE = re.compile(r"(?<![\w.:/])/(?:[\w.+@=-]+/)*[\w.+@=-]+")


def clone_root(path: str, roots: list[str]) -> str | None:
    """The root of the clone that ``path`` lies in or beside, or None."""
    for root in roots:
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return root
    parts = path.split("/")
    for i in range(2, len(parts)):
        if parts[i] in MARKERS:
            return "/".join(parts[:i])
    return None


def rewrite_text(text: str, roots: list[str]) -> str:
    """``text`` with each absolute path under (or beside) a clone made relative to it."""
    def one(match: re.Match[str]) -> str:
        root = clone_root(match.group(0), roots)
        return match.group(0) if root is None else portable(match.group(0), root)
    return ABSOLUTE.sub(one, text)


def rewrite_json(doc: object, roots: list[str]) -> object:
    """``doc`` with every string value that is an absolute path rewritten."""
    if isinstance(doc, dict):
        return {k: rewrite_json(v, roots) for k, v in doc.items()}
    if isinstance(doc, list):
        return [rewrite_json(v, roots) for v in doc]
    if isinstance(doc, str) and doc.startswith("/"):
        return rewrite_text(doc, roots)
    return doc


def rewrite_file(path: Path, roots: list[str], check: bool) -> bool:
    """Rewrite one file; whether it changed (or, with ``check``, would change)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        new = json.dumps(rewrite_json(json.loads(text), roots), indent=2) + (
            "\n" if text.endswith("\n") else "")
        if json.loads(new) == json.loads(text):
            return False
    else:
        new = rewrite_text(text, roots)
        if new == text:
            return False
    if not check:
        atomic_write_text(path, new)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders to rewrite (results)")
    parser.add_argument("--root", action="append", default=[],
                        help="a clone root the recorded paths start with (found if not given)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; list the files that record absolute paths")
    args = parser.parse_args(argv)
    changed = []
    for folder in args.folders:
        for path in sorted(folder.rglob("*")):
            if (path.is_file() and path.suffix in (".json", ".log")
                    and rewrite_file(path, args.root, args.check)):
                changed.append(path)
    verb = "record absolute paths" if args.check else "rewritten"
    print(f"{len(changed)} files {verb}")
    for path in changed[:20] if args.check else []:
        print(f"  {path}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
