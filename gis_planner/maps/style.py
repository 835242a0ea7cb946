"""Map style data (``data/map_style.toml``): palettes, label texts, facility icons and legend swatches."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

from .._errors import ConfigError
from ..datafiles import load_toml

__all__ = ["facility_icon_svg", "icon_svg", "labels", "legend_section", "load_style"]


def load_style() -> dict[str, Any]:
    """The map style data (``data/map_style.toml``): palettes, icons, basemaps, labels, popup fields."""
    return load_toml("map_style.toml")


def labels(lang: str) -> dict[str, str]:
    """The label texts of the map in ``lang`` (``"zh"`` or ``"en"``)."""
    if lang not in ("zh", "en"):
        raise ConfigError(f"lang must be 'zh' or 'en', got {lang!r}")
    return load_style()["labels"][lang]


def facility_icon_svg(facility_type: str, lang: str = "zh", size: int = 22) -> str:
    """Inline SVG icon of a facility type: a group-coloured shape with a one-character glyph.

    Parameters
    ----------
    facility_type : a facility type key of the standards (``kindergarten`` …); unknown types get a dot.
    lang : ``"zh"`` draws the Chinese glyph (幼, 医 …), ``"en"`` a Latin abbreviation.
    size : width and height in pixels.
    """
    style = load_style()
    icon = style["icons"].get(facility_type, style["icons"]["other"])
    colour = style["icon_groups"].get(icon["group"], style["icon_groups"]["other"])
    return icon_svg(icon["shape"], colour, icon[f"glyph_{lang}"], size)


def icon_svg(shape: str, colour: str, glyph: str, size: int, ring: str = "#ffffff") -> str:
    """An SVG marker: ``shape`` (square, diamond, triangle, star, else a circle) filled with ``colour``, outlined
    in ``ring``, with ``glyph`` written in white; ``size`` in pixels."""
    s, h = size, size / 2
    if shape == "square":
        body = f'<rect x="1.5" y="1.5" width="{s - 3}" height="{s - 3}" rx="3"'
    elif shape == "diamond":
        body = f'<polygon points="{h},1 {s - 1},{h} {h},{s - 1} 1,{h}"'
    elif shape == "triangle":
        body = f'<polygon points="{h},1 {s - 1},{s - 2} 1,{s - 2}"'
    elif shape == "star":
        pts = []
        for k in range(10):
            r = (h - 1) if k % 2 == 0 else (h - 1) * 0.45
            a = math.pi / 2 + k * math.pi / 5
            pts.append(f"{h + r * math.cos(a):.1f},{h - r * math.sin(a):.1f}")
        body = f'<polygon points="{" ".join(pts)}"'
    else:
        body = f'<circle cx="{h}" cy="{h}" r="{h - 1.5}"'
    fs = s * (0.5 if len(glyph) == 1 else 0.38)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{s}" height="{s}" viewBox="0 0 {s} {s}">'
            f'{body} fill="{html.escape(colour)}" stroke="{ring}" stroke-width="1.5"/>'
            f'<text x="{h}" y="{h}" dy="0.35em" text-anchor="middle" font-size="{fs:.1f}" font-weight="bold" '
            f'fill="#fff" font-family="sans-serif">{html.escape(glyph)}</text></svg>')


def legend_section(title: str, items: Sequence[tuple[str, str, str]]) -> str:
    """Legend HTML: ``items`` are (kind, colour or svg, label) with kind ``fill``, ``line``, ``ring``, ``dash``,
    ``hatch`` (diagonal stripes in a dashed frame: compounds still to verify), ``svg``."""
    parts = [f"<b>{html.escape(title)}</b>"]
    for kind, style, label in items:
        if kind == "svg":
            sw = style
        elif kind == "line":
            sw = f'<span class="gp-ln" style="border-top-color:{html.escape(style)}"></span>'
        elif kind == "ring":
            sw = f'<span class="gp-sw" style="background:none;border:2px solid {html.escape(style)}"></span>'
        elif kind == "hatch":
            c = html.escape(style)
            sw = (f'<span class="gp-sw" style="background:repeating-linear-gradient(45deg,{c} 0 2px,'
                  f'transparent 2px 5px);border:2px dashed {c};box-sizing:border-box"></span>')
        elif kind == "dash":
            sw = f'<span class="gp-ln" style="border-top:3px dashed {html.escape(style)}"></span>'
        else:
            sw = f'<span class="gp-sw" style="background:{html.escape(style)}"></span>'
        parts.append(f'<div class="gp-item">{sw}<span>{html.escape(label)}</span></div>')
    return "".join(parts)

