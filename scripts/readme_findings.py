"""Write the findings of the committed CPU study into README.md, between its markers.

The box is generated from ``results/quality-cpu.json`` (and ``results/cost-cpu.json``) by
:func:`polypseg.report.findings.findings_markdown`, never typed; a test fails when the README's
copy differs. Run from the project root after the study's results change::

    python scripts/readme_findings.py            # rewrite README.md
    python scripts/readme_findings.py --check    # exit 1 when it is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from polypseg.atomic import atomic_write_text  # noqa: E402
from polypseg.report.findings import findings_markdown, load_findings  # noqa: E402

START, END = "<!-- findings:start -->\n", "<!-- findings:end -->"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "quality-cpu.json")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        print(f"{args.readme}: no {START.strip()} ... {END} markers", file=sys.stderr)
        return 2
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    new = head + START + findings_markdown(load_findings(args.results)) + END + tail
    if new == text:
        print("README findings up to date")
        return 0
    if args.check:
        print("README findings out of date: python scripts/readme_findings.py")
        return 1
    atomic_write_text(args.readme, new)
    print(f"wrote the findings into {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
