"""Static HTML: plain strings, every value through `html.escape`, every link relative,
no script, one shared `style.css`. The pages sit side by side in the gallery folder,
thumbnails in `thumbs/`, plots in `plots/`, so a link is a bare name and the folder
opens from disk anywhere (a link to an original image is relative to it as well).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from engine.atomic import write_text_atomically
from engine.review.draw import CENTRE, FALSE_COLOR, LEFT, MISSED_COLOR, RIGHT, Color

CSS = """\
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.5em; margin: 0 0 .3em; } h2 { font-size: 1.2em; margin: 1.4em 0 .4em; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
nav { margin: .6em 0; } nav a, nav span { margin-right: .5em; }
.grid { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; padding: 6px; background: #fff; border: 1px solid #ddd; max-width: 332px; }
figure img { display: block; max-width: 320px; height: auto; background: #eee; }
figcaption { font-size: 12px; overflow-wrap: anywhere; }
.problem { color: #b00; }
.swatch { display: inline-block; width: 1.4em; height: .8em; margin: 0 .3em 0 .8em; border: 1px solid #888; }
.dashed { border-style: dashed; border-width: 2px; }
.plots img { margin: 0 8px 8px 0; border: 1px solid #ddd; background: #fff; }
.note { color: #555; }
"""


class Raw(str):
    """HTML written by this module, not to be escaped again."""


def esc(value: object) -> str:
    """HTML-escaped text of `value` (a Raw passes unchanged)."""
    return value if isinstance(value, Raw) else html.escape(str(value))


def href(path: str) -> str:
    """A relative path as an attribute value: percent-encoded, then HTML-escaped."""
    return html.escape(quote(path, safe="/"), quote=True)


def link(path: str, text: object) -> Raw:
    return Raw(f'<a href="{href(path)}">{esc(text)}</a>')


def document(title: str, body: str) -> str:
    return ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<title>{esc(title)}</title><link rel="stylesheet" href="style.css"></head>\n'
            f"<body>\n{body}\n</body></html>\n")


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> Raw:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>\n" for row in rows)
    return Raw(f"<table><tr>{head}</tr>\n{body}</table>")


def number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _swatch(color: Color, text: str, dashed: bool = False) -> str:
    r, g, b = color
    style = f"border-color: rgb({r},{g},{b})" if dashed else f"background: rgb({r},{g},{b})"
    return f'<span class="swatch{" dashed" if dashed else ""}" style="{style}"></span>{esc(text)}'


def legend(colors: dict[str, Color], keypoints: bool, gt: bool, almost: bool) -> Raw:
    """The colour key of the thumbnails (see engine.review.draw)."""
    parts = [_swatch(c, name) for name, c in colors.items()]
    if keypoints:
        parts += [_swatch(LEFT, "left joints"), _swatch(RIGHT, "right joints"), _swatch(CENTRE, "centre")]
    if gt:
        parts += [_swatch(FALSE_COLOR, "false label"), _swatch(MISSED_COLOR, "missed (GT)", dashed=True)]
    if almost:
        parts.append(_swatch((128, 128, 128), "almost-label (category colour)", dashed=True))
    return Raw(f'<p class="legend">{"".join(parts)}</p>')


@dataclass
class Card:
    """One image on a page: its thumbnail (relative path and size), a title, the link to
    the original (None when it does not exist) and caption lines."""

    thumb: str
    width: int
    height: int
    title: str
    link: str | None
    lines: list[str] = field(default_factory=list)
    problem: str | None = None


def _figure(card: Card) -> str:
    image = (f'<img src="{href(card.thumb)}" width="{card.width}" height="{card.height}" '
             f'alt="{esc(card.title)}">')
    if card.link is not None:
        image = f'<a href="{href(card.link)}">{image}</a>'
    lines = [f"<b>{esc(card.title)}</b>"] + [esc(line) for line in card.lines]
    if card.problem:
        lines.append(f'<span class="problem">unreadable: {esc(card.problem)}</span>')
    return f'<figure>{image}<figcaption>{"<br>".join(lines)}</figcaption></figure>'


def page_name(key: str, number: int) -> str:
    return f"{key}-{number}.html"


def _pager(key: str, number: int, pages: int) -> str:
    parts = [link("index.html", "index")]
    if number > 1:
        parts.append(link(page_name(key, number - 1), "\u2039 previous"))
    for n in range(1, pages + 1):
        parts.append(f"<span>{n}</span>" if n == number else link(page_name(key, n), n))
    if number < pages:
        parts.append(link(page_name(key, number + 1), "next \u203a"))
    return f"<nav>{' '.join(parts)}</nav>"


def write_section(out: Path, key: str, title: str, intro: str, cards: list[Card], per_page: int) -> list[str]:
    """Pages `KEY-1.html`, ... of `cards`, `per_page` to a page (at least one page);
    `intro` (HTML) heads the first page. Returns the file names."""
    pages = max(1, math.ceil(len(cards) / per_page))
    names = []
    for number in range(1, pages + 1):
        chunk = cards[(number - 1) * per_page:number * per_page]
        grid = "\n".join(_figure(card) for card in chunk) or '<p class="note">No image.</p>'
        pager = _pager(key, number, pages)
        body = (f"{pager}\n<h1>{esc(title)}</h1>\n<p class=\"note\">page {number} of {pages}</p>\n"
                f"{intro if number == 1 else ''}\n<main class=\"grid\">\n{grid}\n</main>\n{pager}")
        name = page_name(key, number)
        write_text_atomically(out / name, document(f"{title} ({number}/{pages})", body))
        names.append(name)
    return names


def write_page(out: Path, name: str, title: str, body: str) -> None:
    write_text_atomically(out / name, document(title, f"<h1>{esc(title)}</h1>\n{body}"))


def write_style(out: Path) -> None:
    write_text_atomically(out / "style.css", CSS)
