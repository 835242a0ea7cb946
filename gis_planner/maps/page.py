"""The map page: Leaflet and the map runtime (``data/map/gp.css``, ``gp.js``) inlined for offline use, the
elements the runtime builds layers from, and saving one self-contained HTML file."""

from __future__ import annotations

import base64
import html
import json
import os
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import folium
from branca.element import Element, MacroElement
from folium.map import Layer
from jinja2 import Template

from ..datafiles import read_text
from ..io import atomic_path

__all__ = ["Controls", "Dataset", "JsLayer", "RawHtml", "js_json", "make_offline", "offline_assets", "save_map"]


@cache
def offline_assets() -> dict[str, str]:
    """Leaflet's JS and CSS read from the installed ``xstatic-leaflet`` package, images inlined as data URIs.

    Returns
    -------
    ``{"leaflet_js": ..., "leaflet_css": ..., "leaflet_version": ...}``; nothing is fetched from the network.
    """
    try:
        import xstatic.pkg.leaflet as xleaflet
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ImportError("offline maps need the 'xstatic-leaflet' package (pip install xstatic-leaflet)") from exc
    base = Path(xleaflet.BASE_DIR)
    js = (base / "leaflet.js").read_text(encoding="utf-8")
    css = (base / "leaflet.css").read_text(encoding="utf-8")
    for img in ("layers.png", "layers-2x.png", "marker-icon.png"):
        data = base64.b64encode((base / "images" / img).read_bytes()).decode("ascii")
        css = css.replace(f"url(images/{img})", f"url(data:image/png;base64,{data})")
    return {"leaflet_js": js.replace("</script", "<\\/script"), "leaflet_css": css,
            "leaflet_version": str(getattr(xleaflet, "VERSION", ""))}


class RawHtml(Element):
    """A verbatim piece of HTML (not parsed as a Jinja template)."""

    def __init__(self, text: str):
        super().__init__()
        self._text = text

    def render(self, **kwargs: Any) -> str:
        return self._text


def make_offline(m: folium.Map) -> folium.Map:
    """Replace folium's CDN links by Leaflet inlined from the installed package, plus the map runtime
    (``data/map/gp.css`` and ``data/map/gp.js``)."""
    assets = offline_assets()
    m.default_js = []
    m.default_css = []
    header = m.get_root().header
    header.add_child(RawHtml(f"<style>{assets['leaflet_css']}</style>"), name="gp_leaflet_css")
    header.add_child(RawHtml(f"<script>{assets['leaflet_js']}</script>"), name="gp_leaflet_js")
    header.add_child(RawHtml(f"<style>{read_text('map/gp.css')}</style>"), name="gp_css")
    header.add_child(RawHtml(f"<script>{read_text('map/gp.js')}</script>"), name="gp_runtime")
    return m


def js_json(obj: Any) -> str:
    """JSON that is safe inside a ``<script>`` block (no ``<``, ``>``, ``&`` or line separators)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


class Dataset(MacroElement):
    """A dataset (geometries, tooltips, popup rows) declared once and shared by several layers.

    The data go into a ``<script type="application/json">`` block that the runtime parses only when a
    layer using it is first shown: JSON.parse is much faster than a JavaScript object literal of the same
    size, and hidden layers cost nothing at load time.
    """

    _template = Template("{% macro script(this, kwargs) %}var {{ this.get_name() }} = {_id: "
                         "{{ this.get_name()|tojson }}};{% endmacro %}")

    def __init__(self, js: str):
        super().__init__()
        self._name = "gp_data"
        self.js = js

    def render(self, **kwargs: Any) -> None:
        name = self.get_name()
        self.get_root().html.add_child(
            RawHtml(f'<script type="application/json" id="{name}">{self.js}</script>'), name=name)
        super().render(**kwargs)


class JsLayer(Layer):
    """An overlay built by the map runtime (``GP.shapes`` / ``GP.points`` …) from a shared dataset."""

    _template = Template("{% macro script(this, kwargs) %}var {{ this.get_name() }} = {{ this.builder }}({{ "
                         "this.data.get_name() }}, {{ this.options_js }});{% endmacro %}")

    def __init__(self, name: str, data: Dataset, builder: str, options: Mapping[str, Any], show: bool = True,
                 overlay: bool = True):
        super().__init__(name=name, overlay=overlay, control=True, show=show)
        self._name = "gp_layer"
        self.data = data
        self.builder = builder
        self.options_js = js_json(dict(options))


class Controls(MacroElement):
    """Title, scale bar, north arrow, full-screen and measure controls, legend and initial view."""

    _template = Template("""{% macro script(this, kwargs) %}
GP.controls({{ this._parent.get_name() }}, {
  title: {{ this.title|tojson }}, north: {{ this.north|tojson }}, text: {{ this.text|tojson }},
  labelMinZoom: {{ this.label_min_zoom }}, bounds: {{ this.bounds|tojson }},
  order: [{% for l in this.order %}{{ l.get_name() }},{% endfor %}],
  legend: [{% for layer, sec in this.legend %}{layer: {{ layer.get_name() }}, html: {{ sec|tojson }}},{% endfor %}]
});
{% endmacro %}""")

    def __init__(self, title: str, text: dict[str, str], legend: list[tuple[Layer, str]],
                 bounds: list[list[float]] | None, label_min_zoom: int, order: list[Layer]):
        super().__init__()
        self._name = "gp_controls"
        self.title = title
        self.north = (f'<svg xmlns="http://www.w3.org/2000/svg" width="26" height="34" viewBox="0 0 26 34">'
                      f'<polygon points="13,2 21,26 13,21 5,26" fill="#222"/><polygon points="13,2 13,21 5,26" '
                      f'fill="#fff" stroke="#222" stroke-width="1"/><text x="13" y="34" text-anchor="middle" '
                      f'font-size="9" font-weight="bold">{html.escape(text["north"])}</text></svg>')
        self.text = text
        self.legend = legend
        self.bounds = bounds
        self.label_min_zoom = int(label_min_zoom)
        self.order = order


def _external_refs(text: str) -> list[str]:
    refs = re.findall(r'<script[^>]+src="(https?:[^"]+)"', text)
    refs += re.findall(r'<link[^>]+href="(https?:[^"]+)"', text)
    return refs


def save_map(m: folium.Map, path: str | os.PathLike) -> tuple[Path, int]:
    """Write a map as one self-contained HTML file (atomically) and return ``(path, size in bytes)``.

    Raises
    ------
    ValueError
        if the page would still load a script or stylesheet from the network (a folium plugin with CDN
        assets added by hand): review-meeting laptops are often offline.
    """
    path = Path(path)
    text = m.get_root().render()
    refs = _external_refs(text)
    if refs:
        raise ValueError("the map would load assets from the network (not available offline): " + ", ".join(refs))
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path, path.stat().st_size
