"""Markup of the report: escaped text, tables, figures, the page and its inline style sheet.

Every string that comes from a file goes through :func:`esc`; the page holds no script and
loads nothing (images are ``data:`` URIs; its Content-Security-Policy forbids anything else), so
it opens offline, from a mail attachment or a file share alike.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

STYLE = """
:root { color-scheme: light; --ink: #1d2430; --muted: #5b6574; --line: #d8dde5;
        --band: #f4f6f9; --accent: #1f6feb; --good: #1a7f37; --bad: #cf222e; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans",
       sans-serif; color: var(--ink); background: #fff; }
header { padding: 20px 32px 12px; border-bottom: 1px solid var(--line); background: var(--band); }
h1 { margin: 0 0 4px; font-size: 24px; }
h2 { margin: 32px 0 8px; font-size: 20px; border-bottom: 1px solid var(--line);
     padding-bottom: 4px; }
h3 { margin: 20px 0 6px; font-size: 17px; }
h4 { margin: 14px 0 6px; font-size: 15px; color: var(--muted); }
main { padding: 0 32px 40px; max-width: 1320px; }
nav a { margin-right: 14px; color: var(--accent); text-decoration: none; }
.meta, .note, figcaption { color: var(--muted); font-size: 13px; }
.banner { margin: 12px 0; padding: 10px 14px; border-left: 4px solid #d29922;
          background: #fff8e5; }
.notes { margin: 6px 0; padding-left: 20px; color: var(--muted); font-size: 13px; }
table { border-collapse: collapse; margin: 6px 0 4px; font-size: 14px; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: right;
         white-space: nowrap; }
th { background: var(--band); font-weight: 600; }
td:first-child, th:first-child { text-align: left; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.best { font-weight: 700; }
.findings { margin: 8px 0; padding: 10px 16px; border: 1px solid var(--line);
            border-left: 4px solid var(--accent); background: #f6f9ff; }
.findings ul { margin: 4px 0 8px; padding-left: 18px; }
.findings table { font-size: 13px; }
.findings th { white-space: normal; max-width: 9em; vertical-align: bottom; }
.findings { overflow-x: auto; }
td.better { color: var(--good); font-weight: 600; }
td.worse { color: var(--bad); font-weight: 600; }
figure { margin: 10px 0; }
figure.plot img { max-width: 100%; height: auto; border: 1px solid var(--line); }
.model { margin: 18px 0 28px; }
.row { display: flex; align-items: flex-start; gap: 14px; margin: 8px 0; }
.row .label { width: 220px; flex: none; font-size: 13px; overflow-wrap: anywhere; }
.row .label b { display: block; font-weight: 600; font-size: 12px; white-space: nowrap; }
.tiles { display: flex; gap: 8px; flex-wrap: wrap; }
figure.tile { margin: 0; width: 136px; }
figure.tile img { width: 136px; height: 136px; image-rendering: pixelated;
                  border: 1px solid var(--line); display: block; }
figure.tile figcaption { font-size: 12px; line-height: 1.25; margin-top: 2px; }
figure.tile .name, figure.tile .score { display: block; white-space: nowrap; overflow: hidden;
                                        text-overflow: ellipsis; }
.compare figure.tile, .compare figure.tile img { width: 104px; }
.compare figure.tile img { height: 104px; }
.stalled { color: var(--bad); font-size: 12px; white-space: nowrap; }
.key span { display: inline-block; width: 11px; height: 11px; margin: 0 4px 0 10px;
            vertical-align: -1px; border: 1px solid #999; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; margin: 6px 0; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
details { margin: 8px 0; }
summary { cursor: pointer; font-weight: 600; }
pre, code { font: 12.5px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; }
pre { background: var(--band); padding: 10px; overflow-x: auto; max-height: 360px; }
footer { padding: 12px 32px 24px; color: var(--muted); font-size: 13px;
         border-top: 1px solid var(--line); }
"""


#: The browser loads nothing but the page's own style and ``data:`` images, and runs no script.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def esc(value: object) -> str:
    """HTML-escaped text of ``value``."""
    return html.escape(str(value), quote=True)


def table(header: Sequence[str], rows: Iterable[Sequence[tuple[str, str]]],
          css_class: str) -> str:
    """A table; each cell is ``(escaped html, css class)``."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>"
                         for text, cls in row) + "</tr>"
        for row in rows
    )
    return (f'<table class="{css_class}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def definition_list(items: dict[str, str]) -> str:
    """``<dl>`` of label -> text (both escaped)."""
    return "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items.items()) + \
        "</dl>"


def plot(uri: str, alt: str, caption: str, kind: str) -> str:
    """A figure holding a plot image (``data-kind`` names what it plots).

    Args:
        uri: the image's URI (a ``data:`` URI of the SVG or PNG,
            :func:`~polypseg.report.figures.file_uri`).
        alt: the image's alternative text.
        caption: the figure's caption.
        kind: what it plots, written as ``data-kind``.
    """
    return (f'<figure class="plot" data-kind="{esc(kind)}"><img src="{uri}" alt="{esc(alt)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def tile(uri: str, caption: str) -> str:
    """One gallery picture with its caption; ``name|score`` puts the name on a line of its own
    that never wraps, the score under it."""
    name, _, rest = caption.partition("|")
    text = f'<span class="name">{esc(name)}</span>' + (
        f'<span class="score">{esc(rest)}</span>' if rest else "")
    return (f'<figure class="tile"><img src="{uri}" alt="{esc(caption.replace("|", " "))}">'
            f"<figcaption>{text}</figcaption></figure>")


def notes(lines: Sequence[str]) -> str:
    """A list of muted notes (empty string when there are none)."""
    if not lines:
        return ""
    return '<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in lines) + "</ul>"


def page(title: str, header_html: str, sections: Sequence[tuple[str, str, str]],
         footer_html: str) -> str:
    """The whole document: ``sections`` are ``(id, heading, html)``; empty ones are left out.

    Args:
        title: the document's ``<title>``.
        header_html: HTML of the header, before the section links.
        sections: ``(id, heading, html)`` of each section, in order.
        footer_html: HTML of the footer.
    """
    shown = [(i, h, body) for i, h, body in sections if body]
    nav = "".join(f'<a href="#{esc(i)}">{esc(h)}</a>' for i, h, _ in shown)
    parts = "".join(f'<section id="{esc(i)}"><h2>{esc(h)}</h2>{body}</section>'
                    for i, h, body in shown)
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        f"<header>{header_html}<nav>{nav}</nav></header><main>{parts}</main>"
        f"<footer>{footer_html}</footer></body></html>\n"
    )
