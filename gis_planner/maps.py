"""Interactive plan maps (folium / Leaflet): toggled layers, categorical legends, escaped popups, offline HTML."""

from __future__ import annotations

import base64
import html
import json
import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from branca.element import Element, MacroElement
from folium.map import Layer
from jinja2 import Template

from .io import atomic_path

__all__ = [
    "BASEMAPS",
    "browser_check",
    "bundle_map",
    "coverage_map",
    "facility_icon_svg",
    "load_run",
    "load_style",
    "offline_assets",
    "plan_map",
    "save_map",
    "write_run_map",
]

#: basemap keys accepted by ``basemap=`` (``None`` / ``"none"``: no basemap).
BASEMAPS = ("osm", "tianditu", "amap")


# --------------------------------------------------------------------------------------------- style data
@cache
def load_style() -> dict[str, Any]:
    """The map style data (``data/map_style.toml``): palettes, icons, basemaps, labels, popup fields."""
    with resources.files("gis_planner").joinpath("data/map_style.toml").open("rb") as fh:
        return tomllib.load(fh)


def _labels(lang: str) -> dict[str, str]:
    if lang not in ("zh", "en"):
        raise ValueError(f"lang must be 'zh' or 'en', got {lang!r}")
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
    return _icon_svg(icon["shape"], colour, icon[f"glyph_{lang}"], size)


def _icon_svg(shape: str, colour: str, glyph: str, size: int, ring: str = "#ffffff") -> str:
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


# --------------------------------------------------------------------------------------------- offline assets
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


class _Raw(Element):
    """A verbatim piece of HTML (not parsed as a Jinja template)."""

    def __init__(self, text: str):
        super().__init__()
        self._text = text

    def render(self, **kwargs: Any) -> str:
        return self._text


_GP_CSS = """
.gp-pop{border-collapse:collapse;font-size:12px;line-height:1.35}
.gp-pop th{text-align:left;color:#555;font-weight:normal;padding:1px 8px 1px 0;white-space:nowrap;vertical-align:top}
.gp-pop td{padding:1px 0;max-width:240px}
.gp-pop caption{text-align:left;font-weight:bold;font-size:13px;padding-bottom:3px;color:#b2182b}
.gp-legend{background:rgba(255,255,255,.94);padding:6px 10px;border-radius:4px;box-shadow:0 1px 5px rgba(0,0,0,.4);
 font:12px/1.4 "Microsoft YaHei","PingFang SC","Noto Sans CJK SC",sans-serif;max-height:42vh;overflow-y:auto;min-width:150px}
.gp-legend h4{margin:0 0 4px;font-size:13px;border-bottom:1px solid #ccc;padding-bottom:2px}
.gp-legend .gp-sec{margin-bottom:5px}.gp-legend .gp-sec b{display:block;font-size:12px;margin:3px 0 1px}
.gp-legend .gp-item{display:flex;align-items:center;gap:6px;white-space:nowrap}
.gp-sw{display:inline-block;width:18px;height:12px;border:1px solid #777;flex:none}
.gp-ln{display:inline-block;width:18px;height:0;border-top:3px solid #777;flex:none}
.gp-legend svg{flex:none}
.gp-title{position:absolute;top:10px;left:50%;transform:translateX(-50%);z-index:800;background:rgba(255,255,255,.94);
 padding:4px 16px;border:1px solid #999;border-radius:3px;font:bold 16px "Microsoft YaHei","PingFang SC","Noto Sans CJK SC",sans-serif;
 color:#222;pointer-events:none;box-shadow:0 1px 4px rgba(0,0,0,.3);letter-spacing:1px}
.gp-north{background:rgba(255,255,255,.85);border-radius:3px;padding:2px;line-height:0}
.gp-btn{width:30px;height:30px;line-height:30px;text-align:center;font:bold 16px sans-serif;cursor:pointer;display:block;
 background:#fff;color:#333;text-decoration:none}
.gp-btn.gp-on{background:#ffd;color:#b2182b}
.gp-measure-out{background:rgba(255,255,255,.94);padding:3px 8px;font-size:12px;display:none;border-radius:3px;
 box-shadow:0 1px 4px rgba(0,0,0,.3)}
.gp-measure-out a{margin-left:6px;cursor:pointer;color:#2c7fb8}
.gp-icon{background:none;border:none}
.gp-label{background:none;border:none;white-space:nowrap;font:bold 12px "Microsoft YaHei","PingFang SC",sans-serif;
 color:#7f0000;text-shadow:-1px -1px 0 #fff,1px -1px 0 #fff,-1px 1px 0 #fff,1px 1px 0 #fff}
.gp-lowzoom .gp-label,.gp-lowzoom .gp-line-label{display:none}
.gp-line-label{background:rgba(255,255,255,.9);border:1px solid #e6550d;color:#a63603;font-size:11px;padding:1px 4px;box-shadow:none}
.leaflet-container.gp-pseudo-full{position:fixed!important;top:0;left:0;width:100%!important;height:100%!important;z-index:10000}
"""

# The map runtime: builds layers from compact datasets on first display (lazy), legend, controls.
_GP_JS = r"""
(function(){
var GP = window.GP = {timing: []};
GP.decode = function(g){
  if (!g || !g.enc) return g;
  var c = g.c, n = c.length / 2, xy = new Array(n), x = 0, y = 0, k;
  for (k = 0; k < n; k++){ x += c[2 * k]; y += c[2 * k + 1]; xy[k] = [x / g.s, y / g.s]; }
  var o = g.o, out = [], parts = o[o.length - 1], rings = o.length > 2 ? o[o.length - 2] : null, geo = o[0];
  // offsets: mp → [ring→coord, polygon→ring, geometry→polygon]; ml → [line→coord, geometry→line]
  for (var gi = 0; gi + 1 < parts.length; gi++){
    var items = [];
    for (var pi = parts[gi]; pi < parts[gi + 1]; pi++){
      if (rings){ var poly = [];
        for (var ri = rings[pi]; ri < rings[pi + 1]; ri++){ poly.push(xy.slice(geo[ri], geo[ri + 1])); }
        items.push(poly);
      } else { items.push(xy.slice(geo[pi], geo[pi + 1])); }
    }
    out.push({type: rings ? 'MultiPolygon' : 'MultiLineString', coordinates: items});
  }
  return out;
};
GP.load = function(ds){
  if (ds._id && !ds._ok){ var el = document.getElementById(ds._id); var d = JSON.parse(el.textContent);
    for (var k in d) ds[k] = d[k]; ds._ok = true; }
  if (ds.g && ds.g.enc) ds.g = GP.decode(ds.g);
  return ds;
};
GP.feats = function(ds){
  GP.load(ds);
  if(!ds._fc){ ds._fc = {type:'FeatureCollection', features: ds.g.map(function(g,i){
    return {type:'Feature', geometry:g, properties:{i:i}}; })}; }
  return ds._fc;
};
GP.popup = function(ds, i){
  var r = ds.p[i], h = '<table class="gp-pop"><caption>' + (ds.t[i]||'') + '</caption>';
  for (var k = 0; k < ds.f.length; k++){ var v = r[k]; if (ds.d && ds.d[k] && v !== null) v = ds.d[k][v];
    if (v === null || v === undefined || v === '') continue;
    h += '<tr><th>' + ds.f[k] + '</th><td>' + v + '</td></tr>'; }
  return h + '</table>';
};
GP.lazy = function(build){
  var g = L.featureGroup(), built = false;
  g.on('add', function(){ if(!built){ built = true; var t = performance.now(); build(g);
    GP.timing.push(Math.round(performance.now() - t)); } });
  g.gpBuilt = function(){ return built; };
  return g;
};
GP.bind = function(l, ds, i, o){
  if (o.tooltip !== false && ds.t) l.bindTooltip(function(){ return ds.t[i]; }, {sticky: true});
  if (o.popup !== false && ds.p) l.bindPopup(function(){ return GP.popup(ds, i); }, {maxWidth: 380});
};
GP.tag = function(ds, build){ var g = GP.lazy(build); g.gpData = ds; return g; };
GP.index = function(l){ return l.feature ? l.feature.properties.i : l.gpI; };
GP.delegate = function(layer, ds, o){
  // one tooltip and one popup per layer, not one per feature (20,000 compounds stay fast)
  if (o.interactive === false) return;
  var tip = L.tooltip({sticky: true}), pop = L.popup({maxWidth: 380});
  if (o.tooltip !== false && ds.t){
    layer.on('mouseover', function(e){ var i = GP.index(e.layer);
      tip.setContent(ds.t[i]).setLatLng(e.latlng); e.layer._map && tip.openOn(e.layer._map); });
    layer.on('mousemove', function(e){ tip.setLatLng(e.latlng); });
    layer.on('mouseout', function(e){ e.layer._map && e.layer._map.closeTooltip(tip); });
  }
  if (o.popup !== false && ds.p){
    layer.on('click', function(e){ var i = GP.index(e.layer);
      pop.setContent(GP.popup(ds, i)).setLatLng(e.latlng).openOn(e.layer._map); });
  }
};
GP.shapes = function(ds, o){
  return GP.tag(ds, function(g){
    var fill = o.fill !== false;
    var geo = L.geoJSON(GP.feats(ds), {
      smoothFactor: o.smooth || 1.0,
      interactive: o.interactive !== false,
      style: function(f){ var i = f.properties.i, c = o.cat ? o.colors[o.cat[i]] : o.color;
        return {color: o.stroke || c, weight: o.weight === undefined ? 1 : o.weight, opacity: o.opacity || 0.9,
                fillColor: c, fillOpacity: fill ? (o.fillOpacity === undefined ? 0.6 : o.fillOpacity) : 0,
                fill: fill, dashArray: o.dash || null}; },
      onEachFeature: o.labels ? function(f, l){
        l.bindTooltip(o.labels[f.properties.i], {permanent: true, direction: 'center', className: 'gp-line-label'});
      } : null
    });
    GP.delegate(geo, ds, o);
    g.addLayer(geo);
  });
};
GP.points = function(ds, o){
  return GP.tag(ds, function(g){
    GP.load(ds); var icons = {};
    ds.g.forEach(function(xy, i){
      var c = o.cat ? o.cat[i] : 0, ll = [xy[1], xy[0]], m;
      if (o.canvas){
        m = L.circleMarker(ll, {radius: o.radius || 5, color: '#fff', weight: 1, fillColor: o.colors[c], fillOpacity: 0.95});
      } else {
        if (!icons[c]) icons[c] = L.divIcon({html: o.icons[c], className: 'gp-icon', iconSize: [o.size, o.size],
                                             iconAnchor: [o.size / 2, o.size / 2]});
        m = L.marker(ll, {icon: icons[c], keyboard: false});
      }
      m.gpI = i; g.addLayer(m);
    });
    GP.delegate(g, ds, o);
  });
};
GP.labels = function(ds, o){
  // only the labels inside the view are made, and only from labelMinZoom on (thousands of bundles stay fast)
  var g = L.featureGroup(), shown = {};
  function update(){
    var map = g._map; if (!map) return; GP.load(ds);
    if (map.getZoom() < (o.minZoom || 0)){ g.clearLayers(); shown = {}; return; }
    var b = map.getBounds().pad(0.2);
    ds.g.forEach(function(xy, i){
      var inside = b.contains([xy[1], xy[0]]);
      if (inside && !shown[i]){ shown[i] = L.marker([xy[1], xy[0]], {interactive: false, keyboard: false,
          icon: L.divIcon({className: 'gp-label', html: ds.t[i], iconSize: null})}); g.addLayer(shown[i]); }
      else if (!inside && shown[i]){ g.removeLayer(shown[i]); delete shown[i]; }
    });
  }
  g.on('add', function(){ g._map.on('moveend zoomend', update); update(); });
  g.on('remove', function(){ if (g._map) g._map.off('moveend zoomend', update); });
  g.gpCount = function(){ return GP.load(ds).g.length; };
  return g;
};
GP.count = function(layer){
  var n = 0;
  if (layer.eachLayer){ layer.eachLayer(function(l){ n += l.eachLayer ? GP.count(l) : 1; }); } else { n = 1; }
  return n;
};
GP.controls = function(map, cfg){
  GP.map = map; GP.cfg = cfg;
  var cont = map.getContainer();
  if (cfg.title){ var t = L.DomUtil.create('div', 'gp-title', cont); t.innerHTML = cfg.title; }
  L.control.scale({imperial: false, maxWidth: 160, position: 'bottomleft'}).addTo(map);
  var North = L.Control.extend({options: {position: 'bottomleft'}, onAdd: function(){
    var d = L.DomUtil.create('div', 'gp-north'); d.innerHTML = cfg.north; return d; }});
  new North().addTo(map);
  // full screen (Fullscreen API, with a CSS fallback)
  var Full = L.Control.extend({options: {position: 'topleft'}, onAdd: function(){
    var d = L.DomUtil.create('div', 'leaflet-bar'), a = L.DomUtil.create('a', 'gp-btn gp-fullscreen', d);
    a.innerHTML = '<svg width="16" height="16" viewBox="0 0 16 16" style="vertical-align:middle"><path d="M1 5V1h4M11 1h4v4M15 11v4h-4M5 15H1v-4" fill="none" stroke="#333" stroke-width="2"/></svg>'; a.title = cfg.text.fullscreen; a.href = '#'; a.setAttribute('role', 'button');
    L.DomEvent.on(a, 'click', function(e){ L.DomEvent.stop(e);
      if (document.fullscreenElement){ document.exitFullscreen(); }
      else if (cont.requestFullscreen){ cont.requestFullscreen().catch(function(){ cont.classList.toggle('gp-pseudo-full'); map.invalidateSize(); }); }
      else { cont.classList.toggle('gp-pseudo-full'); map.invalidateSize(); } });
    document.addEventListener('fullscreenchange', function(){ map.invalidateSize(); });
    return d; }});
  new Full().addTo(map);
  // measure distance and area
  var Measure = L.Control.extend({options: {position: 'topleft'}, onAdd: function(){
    var d = L.DomUtil.create('div', 'leaflet-bar'), a = L.DomUtil.create('a', 'gp-btn gp-measure', d);
    a.innerHTML = '<svg width="18" height="18" viewBox="0 0 18 18" style="vertical-align:middle"><path d="M2 13 13 2l3 3L5 16z" fill="none" stroke="#333" stroke-width="1.6"/><path d="M5 10l1.5 1.5M7.5 7.5 9 9M10 5l1.5 1.5" stroke="#333" stroke-width="1.4"/></svg>'; a.title = cfg.text.measure + ' — ' + cfg.text.measure_hint; a.href = '#';
    var out = L.DomUtil.create('div', 'gp-measure-out', cont.querySelector('.leaflet-bottom.leaflet-left') || d);
    var on = false, pts = [], grp = L.layerGroup().addTo(map), dbl = map.doubleClickZoom.enabled();
    function fmt(m){ return m >= 1000 ? (m / 1000).toFixed(2) + ' km' : m.toFixed(0) + ' m'; }
    function area(ll){ if (ll.length < 3) return 0; var R = 6378137, s = 0, lat0 = ll[0].lat * Math.PI / 180;
      for (var k = 0; k < ll.length; k++){ var p = ll[k], q = ll[(k + 1) % ll.length];
        s += (p.lng * Math.cos(lat0)) * q.lat - (q.lng * Math.cos(lat0)) * p.lat; }
      return Math.abs(s) / 2 * Math.pow(Math.PI / 180 * R, 2); }
    function draw(){ grp.clearLayers(); if (!pts.length) return;
      L.polyline(pts, {color: '#b2182b', weight: 2, dashArray: '6 4', interactive: false}).addTo(grp);
      if (pts.length > 2) L.polygon(pts, {color: '#b2182b', weight: 0, fillOpacity: 0.1, interactive: false}).addTo(grp);
      pts.forEach(function(p){ L.circleMarker(p, {radius: 3, color: '#b2182b', interactive: false}).addTo(grp); });
      var dsum = 0; for (var k = 1; k < pts.length; k++) dsum += map.distance(pts[k - 1], pts[k]);
      var ar = area(pts);
      out.innerHTML = cfg.text.distance + ' ' + fmt(dsum) + (ar > 0 ? ' · ' + cfg.text.area + ' ' +
        (ar >= 1e6 ? (ar / 1e6).toFixed(2) + ' km²' : ar.toFixed(0) + ' m²') : '') +
        '<a class="gp-measure-clear">' + cfg.text.measure_clear + '</a>';
      var c = out.querySelector('.gp-measure-clear');
      L.DomEvent.on(c, 'click', function(e){ L.DomEvent.stop(e); pts = []; grp.clearLayers(); out.style.display = 'none'; }); }
    function click(e){ pts.push(e.latlng); out.style.display = 'block'; draw(); }
    function finish(){ on = false; a.classList.remove('gp-on'); map.off('click', click); map.off('dblclick', finish);
      cont.style.cursor = ''; if (dbl) setTimeout(function(){ map.doubleClickZoom.enable(); }, 0); }
    L.DomEvent.on(a, 'click', function(e){ L.DomEvent.stop(e);
      if (on){ finish(); return; }
      on = true; pts = []; grp.clearLayers(); a.classList.add('gp-on'); cont.style.cursor = 'crosshair';
      map.doubleClickZoom.disable(); map.on('click', click); map.on('dblclick', finish); });
    return d; }});
  new Measure().addTo(map);
  // categorical legend: one section per overlay, shown while the overlay is on
  if (cfg.legend && cfg.legend.length){
    var Legend = L.Control.extend({options: {position: 'bottomright'}, onAdd: function(){
      var d = L.DomUtil.create('div', 'gp-legend');
      d.innerHTML = '<h4>' + cfg.text.legend + '</h4>';
      cfg.legend.forEach(function(s){ var sec = L.DomUtil.create('div', 'gp-sec', d);
        sec.innerHTML = s.html; s.el = sec; sec.style.display = map.hasLayer(s.layer) ? '' : 'none'; });
      L.DomEvent.disableClickPropagation(d); L.DomEvent.disableScrollPropagation(d);
      return d; }});
    new Legend().addTo(map);
    map.on('overlayadd overlayremove', function(){
      cfg.legend.forEach(function(s){ s.el.style.display = map.hasLayer(s.layer) ? '' : 'none'; }); });
  }
  function zoomClass(){ if (map.getZoom() < cfg.labelMinZoom) cont.classList.add('gp-lowzoom'); else cont.classList.remove('gp-lowzoom'); }
  map.on('zoomend', zoomClass);
  if (cfg.bounds) map.fitBounds(cfg.bounds, {padding: [20, 20]});
  zoomClass();
  if (cfg.order){ map.on('overlayadd', function(){ cfg.order.forEach(function(l){ if (map.hasLayer(l) && l.bringToFront) l.bringToFront(); }); }); }
  window.GP_READY = true;
};
})();
"""


def _make_offline(m: folium.Map) -> folium.Map:
    """Replace folium's CDN links by Leaflet inlined from the installed package, plus the map runtime."""
    assets = offline_assets()
    m.default_js = []
    m.default_css = []
    header = m.get_root().header
    header.add_child(_Raw(f"<style>{assets['leaflet_css']}</style>"), name="gp_leaflet_css")
    header.add_child(_Raw(f"<script>{assets['leaflet_js']}</script>"), name="gp_leaflet_js")
    header.add_child(_Raw(f"<style>{_GP_CSS}</style>"), name="gp_css")
    header.add_child(_Raw(f"<script>{_GP_JS}</script>"), name="gp_runtime")
    return m


# --------------------------------------------------------------------------------------------- JS elements
def _js_json(obj: Any) -> str:
    """JSON that is safe inside a ``<script>`` block (no ``<``, ``>``, ``&`` or line separators)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


class _Data(MacroElement):
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
            _Raw(f'<script type="application/json" id="{name}">{self.js}</script>'), name=name)
        super().render(**kwargs)


class _JsLayer(Layer):
    """An overlay built by the map runtime (``GP.shapes`` / ``GP.points`` …) from a shared dataset."""

    _template = Template("{% macro script(this, kwargs) %}var {{ this.get_name() }} = {{ this.builder }}({{ "
                         "this.data.get_name() }}, {{ this.options_js }});{% endmacro %}")

    def __init__(self, name: str, data: _Data, builder: str, options: Mapping[str, Any], show: bool = True,
                 overlay: bool = True):
        super().__init__(name=name, overlay=overlay, control=True, show=show)
        self._name = "gp_layer"
        self.data = data
        self.builder = builder
        self.options_js = _js_json(dict(options))


class _Controls(MacroElement):
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


# --------------------------------------------------------------------------------------------- inputs
@dataclass
class _Ctx:
    name: str
    compounds: gpd.GeoDataFrame | None
    bundles: gpd.GeoDataFrame | None
    vacant: gpd.GeoDataFrame | None
    facilities: gpd.GeoDataFrame | None
    proposed: gpd.GeoDataFrame | None
    projects: gpd.GeoDataFrame | None
    pairings: gpd.GeoDataFrame | None
    boundaries: gpd.GeoDataFrame | None
    roads: gpd.GeoDataFrame | None
    coverage: pd.DataFrame | None
    standards: Any
    settings: dict[str, Any]
    crs: Any
    graph: Any = None  # the run's walking graph (metric CRS of the layers), reused for service areas
    node_crossings: str = "auto"  # the plan's [network] node_crossings


def _get(obj: Any, name: str) -> Any:
    return getattr(obj, name, None) if obj is not None else None


def _nonempty(g: Any) -> gpd.GeoDataFrame | None:
    return g if isinstance(g, gpd.GeoDataFrame) and len(g) and g.crs is not None else None


def _first(*frames: Any) -> gpd.GeoDataFrame | None:
    """The first non-empty GeoDataFrame with a CRS."""
    for g in frames:
        if _nonempty(g) is not None:
            return g
    return None


def _pairing_lines(pairings: Any, bundles: gpd.GeoDataFrame | None,
                   projects: gpd.GeoDataFrame | None) -> gpd.GeoDataFrame | None:
    """Pairing lines: the pairings layer if it has lines, else bundle → project lines from the table."""
    if isinstance(pairings, gpd.GeoDataFrame) and len(pairings) and pairings.geometry.notna().any():
        return pairings
    if pairings is None or not len(pairings) or bundles is None or projects is None:
        return None
    table = pd.DataFrame(pairings)
    if "geometry" in table.columns:
        table = table.drop(columns="geometry")
    if not {"bundle_id", "project_id"} <= set(table.columns):
        return None
    bpt = dict(zip(bundles["bundle_id"].astype(str), bundles.geometry.representative_point(), strict=True))
    ppt = dict(zip(projects["project_id"].astype(str), projects.geometry.representative_point(), strict=True))
    geoms = [shapely.LineString([bpt[b], ppt[p]]) if b in bpt and p in ppt else None
             for b, p in zip(table["bundle_id"].astype(str), table["project_id"].astype(str), strict=True)]
    out = gpd.GeoDataFrame(table, geometry=geoms, crs=bundles.crs)
    return out[out.geometry.notna()]


def _context(result: Any) -> _Ctx:
    from .standards import load_standards

    outputs = dict(getattr(result, "outputs", {}) or {})
    tables = dict(getattr(result, "tables", {}) or {})
    layers = getattr(result, "layers", None)
    config = getattr(result, "config", None)
    settings = dict(_get(config, "settings") or {})
    compounds = _first(outputs.get("compounds"), _get(layers, "compounds"))
    if compounds is None:
        raise ValueError("the result has no compounds layer to map")
    bundles = _nonempty(outputs.get("bundles"))
    projects = _first(outputs.get("projects"), _get(layers, "projects"))
    pairings = outputs.get("pairings")
    if pairings is None:
        pairings = tables.get("pairings")
    try:
        standards = load_standards(_get(config, "standards") or None)
    except Exception:  # noqa: BLE001 - a run's overrides that no longer load: fall back to the defaults
        standards = load_standards()
    return _Ctx(
        name=str(_get(config, "name") or settings.get("name") or "plan"),
        compounds=compounds, bundles=bundles,
        vacant=_first(outputs.get("vacant"), _get(layers, "vacant")),
        facilities=_first(outputs.get("facilities"), _get(layers, "facilities")),
        proposed=_nonempty(outputs.get("proposed_facilities")),
        projects=projects,
        pairings=_pairing_lines(pairings, bundles, projects),
        boundaries=_first(outputs.get("boundaries"), _get(layers, "boundaries")),
        roads=_first(_get(layers, "roads"), outputs.get("roads")),
        coverage=tables.get("coverage"), standards=standards,
        settings=dict(settings.get("map") or {}), crs=compounds.crs,
        graph=getattr(result, "graph", None),
        node_crossings=str((settings.get("network") or {}).get("node_crossings") or "auto"),
    )


def load_run(outdir: str | os.PathLike) -> Any:
    """A finished run read back from ``OUTDIR`` (``plan.gpkg``, CSV tables, ``run.json``) for re-drawing.

    Returns an object with ``outputs``, ``tables``, ``layers`` (roads, projects and boundaries re-read from
    the run's input GeoPackage when it still exists) and ``config`` (name and settings) — enough for
    :func:`plan_map`, :func:`bundle_map`, :func:`coverage_map` and the reports; nothing is recomputed.
    """
    from types import SimpleNamespace

    import pyogrio

    from .io import read_layer

    outdir = Path(outdir)
    gpkg = outdir / "plan.gpkg"
    if not gpkg.exists():
        raise FileNotFoundError(f"{gpkg}: not found — is {outdir} the output folder of a finished run?")
    outputs = {name: read_layer(gpkg, name) for name, _ in pyogrio.list_layers(gpkg)}
    tables = {}
    for csv in sorted(outdir.glob("*.csv")):
        tables[csv.stem] = pd.read_csv(csv, encoding="utf-8-sig", dtype={"compound_id": str, "bundle_id": str,
                                                                        "project_id": str, "facility_id": str})
    manifest = json.loads((outdir / "run.json").read_text(encoding="utf-8")) if (outdir / "run.json").exists() else {}
    effective = (manifest.get("config") or {}).get("effective") or {}
    layers = SimpleNamespace(roads=None, projects=None, boundaries=None, compounds=outputs.get("compounds"))
    crs = outputs["compounds"].crs if "compounds" in outputs else None
    for src in (manifest.get("inputs") or {}):
        p = Path(src)
        if p.suffix.lower() != ".gpkg" or not p.exists():
            continue
        names = {n for n, _ in pyogrio.list_layers(p)}
        for name in ("roads", "projects", "boundaries"):
            if name in names and getattr(layers, name) is None:
                g = read_layer(p, name)
                setattr(layers, name, g.to_crs(crs) if crs is not None and g.crs is not None else g)
    config = SimpleNamespace(name=manifest.get("plan") or effective.get("name") or outdir.name,
                             settings=effective, standards=(manifest.get("config") or {}).get("standards_overrides"))
    return SimpleNamespace(outputs=outputs, tables=tables, layers=layers, config=config, outdir=outdir)


# --------------------------------------------------------------------------------------------- formatting
def _fmt(col: str, value: Any, lang: str) -> str | None:
    """One popup value, formatted by its unit and HTML-escaped (None = leave the row out)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, (bool, np.bool_)):
        return html.escape(_labels(lang)["yes" if value else "no"])
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
        if col.endswith("_cny"):
            return html.escape(f"{v / 1e4:,.1f}")
        if col.endswith(("_m2", "_m")) or col in ("households", "capacity"):
            return html.escape(f"{v:,.0f}")
        if col.endswith("year") and v == int(v):
            return html.escape(str(int(v)))
        return html.escape(f"{v:,.0f}" if v == int(v) else f"{v:,.2f}")
    text = str(value)
    return html.escape(text) if text.strip() else None


def _rows(gdf: pd.DataFrame, section: str, lang: str) -> tuple[list[str], list[list[str | None]]]:
    spec = load_style()["fields"][section]
    # one language per popup: the Chinese column when lang="zh" and it exists, else the code / English one
    skip = set()
    for c in spec:
        for suffix in ("_zh", "_en"):
            if c.endswith(suffix):
                base = c[: -len(suffix)]
                if lang == "zh" and f"{base}_zh" in gdf.columns:
                    skip |= {base, f"{base}_en"}
                else:
                    skip.add(f"{base}_zh")
                    if f"{base}_en" in gdf.columns:
                        skip.add(base)
    cols = [c for c in spec if c in gdf.columns and c not in skip]
    labels = [html.escape(spec[c][0 if lang == "zh" else 1]) for c in cols]
    columns = [_fmt_column(c, gdf[c].tolist(), lang) for c in cols]
    values = [list(row) for row in zip(*columns, strict=True)] if columns else [[] for _ in range(len(gdf))]
    return labels, values


def _fmt_column(col: str, values: list[Any], lang: str) -> list[str | None]:
    """:func:`_fmt` of a column's values, each distinct value (and type) formatted once."""
    memo: dict[tuple[type, Any], str | None] = {}
    out: list[str | None] = []
    for v in values:
        key = (type(v), v)
        try:
            out.append(memo[key])
        except KeyError:
            out.append(memo.setdefault(key, _fmt(col, v, lang)))
        except TypeError:  # unhashable
            out.append(_fmt(col, v, lang))
    return out


def _tooltips(gdf: pd.DataFrame, id_col: str, name_col: str = "name", extra: Any = None) -> list[str]:
    ids = gdf[id_col].astype(str).tolist() if id_col in gdf.columns else [""] * len(gdf)
    names = gdf[name_col].tolist() if name_col in gdf.columns else [None] * len(gdf)
    extras = list(extra) if extra is not None else [None] * len(gdf)
    out = []
    for i, n, e in zip(ids, names, extras, strict=True):
        text = f"{n}（{i}）" if isinstance(n, str) and n.strip() and n != i else str(i)
        if isinstance(e, str) and e:
            text += f" · {e}"
        out.append(html.escape(text))
    return out


def _type_name(standards: Any, key: Any, lang: str) -> str:
    ft = standards.facility_types
    key = str(key)
    if key in ft.index:
        return str(ft.at[key, "name_zh" if lang == "zh" else "name_en"])
    return key


# --------------------------------------------------------------------------------------------- geometry
def _tolerance_m(lat: float, zoom: int) -> float:
    """Half a screen pixel at ``zoom`` (Web Mercator ground resolution at latitude ``lat``), metres."""
    return 0.5 * 156543.03392 * math.cos(math.radians(lat)) / (2 ** zoom)


def _display(gdf: gpd.GeoDataFrame, tol_m: float, coord_system: str) -> gpd.GeoDataFrame:
    """Simplify (topology-preserving) in the metric CRS, then to WGS-84 (or GCJ-02 for an Amap basemap)."""
    g = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty].copy()
    if tol_m > 0 and g.crs is not None and g.crs.is_projected:
        kinds = shapely.get_type_id(g.geometry.values)
        poly_or_line = np.isin(kinds, (1, 2, 3, 5, 6))
        if poly_or_line.any():
            geoms = np.asarray(g.geometry.values, dtype=object)
            geoms[poly_or_line] = shapely.simplify(geoms[poly_or_line], tol_m, preserve_topology=True)
            g = g.set_geometry(gpd.GeoSeries(geoms, index=g.index, crs=g.crs))
    g = g.to_crs(4326)
    if coord_system == "gcj02":
        from .crs import from_wgs84

        g = from_wgs84(g, "gcj02")
    return g


def _geojson(geoms: Any, precision: int) -> str:
    """Geometries as a compact JS object: coordinates quantised to ``precision`` decimals and delta-coded.

    Polygons go as MultiPolygons, lines as MultiLineStrings (``shapely.to_ragged_array``); the map runtime
    (``GP.decode``) rebuilds GeoJSON geometries. About 2.5× smaller than GeoJSON text with 6 decimals.
    """
    arr = np.asarray(geoms, dtype=object)
    if not len(arr):
        return "[]"
    kinds = shapely.get_type_id(arr)
    if np.isin(kinds, (3, 6)).all():
        arr, single = arr.copy(), kinds == 3
        arr[single] = shapely.multipolygons(arr[single], indices=np.arange(int(single.sum())))
        kind = "mp"
    elif np.isin(kinds, (1, 5)).all():
        arr, single = arr.copy(), kinds == 1
        arr[single] = shapely.multilinestrings(arr[single], indices=np.arange(int(single.sum())))
        kind = "ml"
    else:  # a mixed collection: plain GeoJSON
        arr = shapely.transform(arr, lambda c: np.round(c, precision))
        return "[" + ",".join(shapely.to_geojson(arr).tolist()) + "]"
    _, coords, offsets = shapely.to_ragged_array(arr)
    q = np.rint(coords * 10 ** precision).astype(np.int64).ravel()
    delta = np.empty_like(q)
    delta[1::2] = np.diff(q[1::2], prepend=0)
    delta[0::2] = np.diff(q[0::2], prepend=0)
    offs = ",".join(json.dumps(o.tolist(), separators=(",", ":")) for o in offsets)
    return (f'{{"enc":"{kind}","s":{10 ** precision},"c":' + json.dumps(delta.tolist(), separators=(",", ":")) +
            f',"o":[{offs}]}}')


def _xy(geoms: Any, precision: int) -> str:
    pts = shapely.get_coordinates(shapely.point_on_surface(np.asarray(geoms, dtype=object)))
    pts = np.round(pts, precision)
    return "[" + ",".join(f"[{x:.{precision}f},{y:.{precision}f}]".replace(".000000", "") for x, y in pts) + "]"


def _dataset(geo: str, tips: list[str], fields: list[str] | None = None,
             rows: list[list[str | None]] | None = None) -> _Data:
    body = f'{{"g":{geo},"t":{_js_json(tips)}'
    if fields is not None and rows is not None:
        # dictionary-encode columns with repeated values (街道, 社区, 改造类别 …): rows hold indices
        luts: list[list[str] | None] = []
        if rows:
            cols = list(zip(*rows, strict=True))
            enc_cols = []
            for col in cols:
                values = [v for v in col if v is not None]
                uniq = list(dict.fromkeys(values))
                if len(values) > 20 and len(uniq) <= len(values) // 3:
                    index = {v: i for i, v in enumerate(uniq)}
                    enc_cols.append([None if v is None else index[v] for v in col])
                    luts.append(uniq)
                else:
                    enc_cols.append(list(col))
                    luts.append(None)
            rows = [list(r) for r in zip(*enc_cols, strict=True)]
        body += f',"f":{_js_json(fields)},"p":{_js_json(rows)}'
        if any(lut is not None for lut in luts):
            body += f',"d":{_js_json(luts)}'
    return _Data(body + "}")


# --------------------------------------------------------------------------------------------- legend html
def _legend_section(title: str, items: Sequence[tuple[str, str, str]]) -> str:
    """Legend HTML: ``items`` are (kind, colour or svg, label) with kind ``fill``, ``line``, ``ring``, ``svg``."""
    parts = [f"<b>{html.escape(title)}</b>"]
    for kind, style, label in items:
        if kind == "svg":
            sw = style
        elif kind == "line":
            sw = f'<span class="gp-ln" style="border-top-color:{html.escape(style)}"></span>'
        elif kind == "ring":
            sw = f'<span class="gp-sw" style="background:none;border:2px solid {html.escape(style)}"></span>'
        elif kind == "dash":
            sw = f'<span class="gp-ln" style="border-top:3px dashed {html.escape(style)}"></span>'
        else:
            sw = f'<span class="gp-sw" style="background:{html.escape(style)}"></span>'
        parts.append(f'<div class="gp-item">{sw}<span>{html.escape(label)}</span></div>')
    return "".join(parts)


def _greedy_colours(bundles: gpd.GeoDataFrame, n_colours: int, gap_m: float = 60.0) -> np.ndarray:
    """A colour index per bundle such that bundles within ``gap_m`` of each other differ (greedy, by size)."""
    geoms = bundles.geometry.values
    n = len(geoms)
    if n == 0:
        return np.zeros(0, dtype=int)
    tree = shapely.STRtree(geoms)
    a, b = tree.query(geoms, predicate="dwithin", distance=gap_m)
    neighbours: list[set[int]] = [set() for _ in range(n)]
    for i, j in zip(a.tolist(), b.tolist(), strict=True):
        if i != j:
            neighbours[i].add(j)
            neighbours[j].add(i)
    colour = np.full(n, -1, dtype=int)
    ids = [str(b) for b in bundles["bundle_id"].tolist()]
    order = sorted(range(n), key=lambda k: (-len(neighbours[k]), ids[k]))
    for k in order:
        used = {colour[j] for j in neighbours[k] if colour[j] >= 0}
        free = [c for c in range(n_colours) if c not in used]
        colour[k] = free[0] if free else (k % n_colours)
    return colour


# --------------------------------------------------------------------------------------------- service areas
def _graph(ctx: _Ctx) -> tuple[Any, bool]:
    """The walking graph of the roads, and whether crossings were split (then it is planar but for overlaps).

    The run's own graph when it has one in the map's CRS; else built as the coverage stage builds it.
    """
    from . import network

    roads = ctx.roads
    if roads is None or not len(roads):
        return None, False
    crossings = network.crossings_noded(roads, ctx.node_crossings)
    if ctx.graph is not None and roads.crs == ctx.crs:
        return ctx.graph, crossings
    graph = network.walk_graph(roads.to_crs(ctx.crs), non_walkable_classes=ctx.standards.network.get(
        "non_walkable_classes"), node_crossings=crossings)
    return graph, crossings


def _reached_pieces(pu: np.ndarray, pv: np.ndarray, step: np.ndarray, length: np.ndarray, du: np.ndarray,
                    dv: np.ndarray, limit: float, nu: np.ndarray, nv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`gis_planner.coverage.reached_segments` (same pieces, same order) with the node id of each end.

    Returns
    -------
    ``(segments, ends)``: (k, 2, 2) end points (metres) and (k, 2) node ids ``nu`` / ``nv`` of the ends, -1 for
    the free end of a street piece reached part-way.
    """
    ru = np.clip(np.where(du <= limit, limit - du, 0.0), 0.0, length)
    rv = np.clip(np.where(dv <= limit, limit - dv, 0.0), 0.0, length)
    full = (ru + rv >= length) & ((ru > 0) | (rv > 0) | ((length == 0) & (du <= limit)))
    part_u = ~full & (ru > 0)
    part_v = ~full & (rv > 0)
    segs = np.concatenate([
        np.stack([pu[full], pv[full]], axis=1),
        np.stack([pu[part_u], pu[part_u] + ru[part_u, None] * step[part_u]], axis=1),
        np.stack([pv[part_v] - rv[part_v, None] * step[part_v], pv[part_v]], axis=1),
    ])
    free_u, free_v = np.full(int(part_u.sum()), -1), np.full(int(part_v.sum()), -1)
    ends = np.concatenate([np.c_[nu[full], nv[full]], np.c_[nu[part_u], free_u], np.c_[free_v, nv[part_v]]])
    return segs, ends.astype(np.int64)


def _crossing_segments(segs: np.ndarray, ends: np.ndarray, *, pairs: bool = True,
                       lines: np.ndarray | None = None) -> np.ndarray:
    """Which segments meet another one elsewhere than at a shared end node (a mask).

    Parameters
    ----------
    segs : (n, 2, 2) segment end points (metres).
    ends : (n, 2) node ids (>= 0) of the ends: equal ids for the same point.
    pairs : also look for crossings and touches away from nodes (not needed on a graph whose crossings were
        split, :func:`gis_planner.network.walk_graph` with ``node_crossings``).
    lines : the segments as LineStrings, if at hand.

    Returns
    -------
    True for segments that cross or touch another one away from their shared nodes, or leave a shared node
    in the same direction (overlap); both are then split at their intersections (:func:`_node_segments`).
    Exact duplicates (same two nodes) are not flagged.
    """
    n = len(segs)
    flagged = np.zeros(n, dtype=bool)
    if n < 2:
        return flagged
    # overlaps: two pieces leaving one node at the same angle towards different nodes
    d = segs[:, 1] - segs[:, 0]
    node = ends.ravel()
    other = ends[:, ::-1].ravel()
    ang = np.arctan2(np.c_[d[:, 1], -d[:, 1]].ravel() + 0.0, np.c_[d[:, 0], -d[:, 0]].ravel() + 0.0)  # no -0.0
    seg = np.repeat(np.arange(n), 2)
    ok = np.repeat((d != 0).any(axis=1), 2)
    node, ang, other, seg = node[ok], ang[ok], other[ok], seg[ok]
    o = np.lexsort((ang, node))
    node_o, ang_o, other_o, seg_o = node[o], ang[o], other[o], seg[o]
    same = (node_o[1:] == node_o[:-1]) & (np.abs(ang_o[1:] - ang_o[:-1]) <= 1e-9) & (other_o[1:] != other_o[:-1])
    flagged[seg_o[1:][same]] = True
    flagged[seg_o[:-1][same]] = True
    if not pairs:
        return flagged
    # crossings and touches: pairs of pieces with overlapping boxes and no shared node
    lines = shapely.linestrings(segs) if lines is None else lines
    i, j = shapely.STRtree(lines).query(lines)
    keep = i < j
    i, j = i[keep], j[keep]
    a, b = ends[i], ends[j]
    apart = (a[:, 0] != b[:, 0]) & (a[:, 0] != b[:, 1]) & (a[:, 1] != b[:, 0]) & (a[:, 1] != b[:, 1])
    i, j = i[apart], j[apart]
    p1, p2, q1, q2 = segs[i, 0], segs[i, 1], segs[j, 0], segs[j, 1]

    def orient(o: np.ndarray, d: np.ndarray, p: np.ndarray) -> np.ndarray:
        return (d[:, 0] - o[:, 0]) * (p[:, 1] - o[:, 1]) - (d[:, 1] - o[:, 1]) * (p[:, 0] - o[:, 0])

    meet = (orient(p1, p2, q1) * orient(p1, p2, q2) <= 0) & (orient(q1, q2, p1) * orient(q1, q2, p2) <= 0)
    flagged[i[meet]] = True
    flagged[j[meet]] = True
    return flagged


def _node_segments(segs: np.ndarray) -> np.ndarray:
    """Segments split at every mutual intersection (GEOS noding), as (k, 2, 2) two-point segments."""
    if not len(segs):
        return segs
    parts = shapely.get_parts(shapely.union_all(shapely.linestrings(segs)))
    coords, idx = shapely.get_coordinates(parts[shapely.get_type_id(parts) == 1], return_index=True)
    same = idx[1:] == idx[:-1]
    return np.stack([coords[:-1][same], coords[1:][same]], axis=1)


_HASH_MUL = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93],
                     dtype=np.uint64)


def _coord_hash(xy4: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of four float64 coordinates (for face signatures)."""
    bits = np.ascontiguousarray(xy4, dtype=np.float64).view(np.uint64)
    h = (bits * _HASH_MUL).sum(axis=1, dtype=np.uint64)
    h ^= h >> np.uint64(31)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(29)
    return h


@dataclass
class _Walks:
    """The face walks of a planar straight-line graph (rotation system: half-edges sorted by angle per node).

    Half-edge ``2e`` runs ``u[e] → v[e]``, ``2e + 1`` back. A walk keeps its face on the left: counter-clockwise
    round a bounded face, clockwise round the outside of a connected component.
    """

    node_xy: np.ndarray  # (n_nodes, 2) metres
    u: np.ndarray  # edge end nodes
    v: np.ndarray
    orig: np.ndarray  # half-edge start / end nodes
    dest: np.ndarray
    lab: np.ndarray  # walk of each half-edge
    bridge: np.ndarray  # half-edge with the same walk on both sides (dead end, access leg, piece cut part-way)
    in_ring: np.ndarray  # half-edge drawn in its walk's ring: all but bridges out to dead ends
    bounded: np.ndarray  # per walk: round a bounded face
    seq: np.ndarray  # half-edges walk by walk, in walking order
    first: np.ndarray  # per walk: its first half-edge in ``seq``
    lone: np.ndarray  # nodes of zero-length pieces touching no other piece

    @property
    def n_walks(self) -> int:
        return len(self.bounded)

    def ring_len(self) -> np.ndarray:
        return np.bincount(self.lab, ~self.bridge, minlength=self.n_walks)

    def ring_half_edges(self, walks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ring half-edges of the given walks (increasing), in walking order, and their walk rank."""
        want = np.zeros(self.n_walks, dtype=bool)
        want[walks] = True
        hs = self.seq[want[self.lab[self.seq]] & self.in_ring[self.seq]]
        return hs, np.searchsorted(walks, self.lab[hs])

    def polygons(self, walks: np.ndarray) -> np.ndarray:
        """Polygons of the given walks (increasing), dead ends left out (a ring may touch itself at a node, or
        run both ways along a slit)."""
        if not len(walks):
            return np.empty(0, dtype=object)
        hs, idx = self.ring_half_edges(walks)
        return shapely.polygons(shapely.linearrings(self.node_xy[self.orig[hs]], indices=idx))


def _walks(segs: np.ndarray, ends: np.ndarray | None = None) -> _Walks:
    """Nodes, deduplicated edges and face walks of straight pieces that meet only at shared end points."""
    xy = segs.reshape(-1, 2)
    if ends is None:
        ids, _ = pd.factorize(xy[:, 0] + 1j * xy[:, 1])
    else:
        ids = ends.ravel().copy()
        free = ids < 0
        ids[free] = ids.max(initial=-1) + 1 + np.arange(int(free.sum()))
        present = np.zeros(int(ids.max()) + 1, dtype=bool)
        present[ids] = True
        ids = (np.cumsum(present) - 1)[ids]
    n_nodes = int(ids.max()) + 1
    node_xy = np.empty((n_nodes, 2))
    node_xy[ids] = xy
    ids = ids.reshape(-1, 2)
    u, v = ids.min(axis=1), ids.max(axis=1)
    loop = u == v
    key = np.sort(u[~loop].astype(np.int64) * n_nodes + v[~loop])
    key = key[np.r_[True, key[1:] != key[:-1]]] if len(key) else key
    u, v = key // n_nodes, key % n_nodes
    lone = np.setdiff1d(ids[loop, 0], np.r_[u, v]) if loop.any() else np.zeros(0, dtype=np.int64)
    orig = np.stack([u, v], axis=1).ravel()
    dest = np.stack([v, u], axis=1).ravel()
    n_h = len(orig)
    h = np.arange(n_h)
    lxy = node_xy - node_xy.min(axis=0)  # local coordinates: exact enough for angles and areas
    ang = np.arctan2(lxy[dest, 1] - lxy[orig, 1], lxy[dest, 0] - lxy[orig, 0])
    # half-edges by start node, then angle (quantised to 2π / 2³², ties only for overlapping pieces)
    turn = np.minimum((ang + np.pi) * (2.0 ** 32 / (2 * np.pi)), 2.0 ** 32 - 1).astype(np.uint64)
    order = np.argsort((orig.astype(np.uint64) << np.uint64(32)) | turn)
    pos = np.empty(n_h, dtype=np.int64)
    pos[order] = h
    deg = np.bincount(orig, minlength=n_nodes)
    start = np.cumsum(deg) - deg
    p = pos[h ^ 1] - 1  # at the end node, the next half-edge clockwise from the way back
    nxt = order[np.where(p < start[dest], p + deg[dest], p)]
    from scipy.sparse import csr_array
    from scipy.sparse.csgraph import connected_components

    n_walks, lab = connected_components(csr_array((np.ones(n_h, dtype=np.int8), (h, nxt)), shape=(n_h, n_h)),
                                        directed=True, connection="weak")
    area = 0.5 * np.bincount(lab, lxy[orig, 0] * lxy[dest, 1] - lxy[dest, 0] * lxy[orig, 1], minlength=n_walks)
    bridge = lab == lab[h ^ 1]
    ring_len = np.bincount(lab, ~bridge, minlength=n_walks)
    bounded = (area > 0) & (ring_len >= 3)
    # each walk in order from one of its half-edges: list ranking by pointer jumping (active ones only)
    walk_len = np.bincount(lab, minlength=n_walks)
    first = np.empty(n_walks, dtype=np.int64)
    first[lab] = h
    last = nxt == first[lab]
    succ = np.where(last, h, nxt)
    rest = (~last).astype(np.int64)
    act = np.flatnonzero(~last & ~last[succ])
    while len(act):
        s2 = succ[act]
        rest[act] += rest[s2]
        succ[act] = succ[s2]
        act = act[~last[succ[act]]]
    at = (np.cumsum(walk_len) - walk_len)[lab] + walk_len[lab] - 1 - rest  # position in seq
    seq = np.empty(n_h, dtype=np.int64)
    seq[at] = h
    # a bridge out to a dead end is walked there and back with only bridges in between (or only bridges
    # outside): left out of rings; a bridge joining two parts with faces stays, as a slit
    cum = np.r_[0, np.cumsum(~bridge[seq])]
    p1, p2 = np.minimum(at[0::2], at[1::2]), np.maximum(at[0::2], at[1::2])
    between = cum[p2] - cum[p1 + 1]
    dead_end = bridge[0::2] & ((between == 0) | (between == ring_len[lab[0::2]]))
    in_ring = ~np.repeat(dead_end, 2)
    return _Walks(node_xy, u, v, orig, dest, lab, bridge, in_ring, bounded, seq, first, lone)


def _containing_face(w: _Walks, faces: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Per point, the index into ``faces`` (walk ids) of the smallest face strictly containing it, or -1."""
    out = np.full(len(pts), -1, dtype=np.int64)
    if not len(pts) or not len(faces):
        return out
    hs, idx = w.ring_half_edges(faces)
    xy = w.node_xy[w.orig[hs]]
    at = np.r_[0, np.flatnonzero(np.diff(idx)) + 1]
    lo, hi = np.minimum.reduceat(xy, at), np.maximum.reduceat(xy, at)
    fi, qi = shapely.STRtree(shapely.points(pts)).query(shapely.box(lo[:, 0], lo[:, 1], hi[:, 0], hi[:, 1]))
    if not len(qi):
        return out
    cand = np.unique(fi)
    polys = w.polygons(faces[cand])
    inside = shapely.contains_xy(polys[np.searchsorted(cand, fi)], pts[qi, 0], pts[qi, 1])
    qi, fi = qi[inside], fi[inside]
    o = np.lexsort((shapely.area(polys[np.searchsorted(cand, fi)]), qi))
    qi, fi = qi[o], fi[o]
    first = np.r_[True, qi[1:] != qi[:-1]] if len(qi) else np.zeros(0, dtype=bool)
    out[qi[first]] = fi[first]
    return out


def _convex_cores(w: _Walks, faces: np.ndarray, b: float, tol_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Cores of (nearly) convex faces in numpy: the face shrunk by ``b`` (edges moved inwards, corners mitred).

    Returns
    -------
    (mask of the faces done, their core rings): a face is left to GEOS when it has a reflex corner (over 3°),
    a near-reversal, or an edge that the shrinking would turn round (the core is then not the mitred polygon).
    Near-collinear core corners within ``tol_m`` of the line through their neighbours are dropped (not two in a
    row).
    """
    done = np.zeros(len(faces), dtype=bool)
    if not len(faces):
        return done, np.empty(0, dtype=object)
    hs, idx = w.ring_half_edges(faces)
    origin = w.node_xy.min(axis=0)
    p = w.node_xy[w.orig[hs]] - origin
    n = np.bincount(idx, minlength=len(faces))
    start = np.cumsum(n) - n
    k = np.arange(len(hs))
    at_first, at_last = k == start[idx], k == start[idx] + n[idx] - 1
    nxt = np.where(at_last, start[idx], k + 1)
    prv = np.where(at_first, start[idx] + n[idx] - 1, k - 1)
    d = p[nxt] - p
    t = d / np.hypot(d[:, 0], d[:, 1])[:, None]
    t_in = t[prv]
    sin = t_in[:, 0] * t[:, 1] - t_in[:, 1] * t[:, 0]
    cos = (t_in * t).sum(axis=1)
    nrm_in = np.c_[-t_in[:, 1], t_in[:, 0]]
    nrm = np.c_[-t[:, 1], t[:, 0]]
    with np.errstate(divide="ignore", invalid="ignore"):
        q = p + b * (nrm_in + nrm) / (1.0 + cos)[:, None]
    e = q[nxt] - q
    ok = (sin >= -0.05) & (cos > -0.5) & ((e * t).sum(axis=1) > 0) & np.isfinite(q).all(axis=1)
    done = np.logical_and.reduceat(ok, start) & (n >= 3)
    keep = done[idx]
    if tol_m > 0:
        c = q[nxt] - q[prv]
        with np.errstate(divide="ignore", invalid="ignore"):
            off = np.abs(c[:, 0] * (q - q[prv])[:, 1] - c[:, 1] * (q - q[prv])[:, 0]) / np.hypot(c[:, 0], c[:, 1])
        drop = off < tol_m
        drop &= ~drop[prv]
        left = n - np.bincount(idx, drop, minlength=len(faces))
        keep &= ~(drop & (left >= 3)[idx])
    if not done.any():
        return done, np.empty(0, dtype=object)
    rings = shapely.linearrings(q[keep] + origin, indices=np.searchsorted(np.flatnonzero(done), idx[keep]))
    return done, rings


def _planar_buffer(segs: np.ndarray, buffer_m: float, *, ends: np.ndarray | None = None, tol_m: float = 0.0,
                   quad_segs: int = 3, cache: dict[str, Any] | None = None) -> list[shapely.Polygon]:
    """The area within ``buffer_m`` of straight street pieces, built from the faces of the planar street graph.

    A point inside a face (a block enclosed by streets) is farther than ``buffer_m`` from every street piece
    exactly when it is farther than that from the face's own boundary and from the pieces lying inside the
    face: any other piece is behind the boundary. So the area is the buffered outlines of the street
    components with, per face, a hole: the *core* ``buffer(face, -buffer_m)`` less the buffered pieces inside
    the face — many small negative buffers (convex ones in numpy) instead of one large union. Faces come from
    the rotation system of the graph (half-edges sorted by angle round each node), in numpy.

    Parameters
    ----------
    segs : (n, 2, 2) straight pieces (metres) meeting only at shared end points (see :func:`_node_segments`).
    buffer_m : half-width of the area around the pieces (metres).
    ends : (n, 2) node ids of the piece ends (-1: a point of that piece only); default: ids from equal
        coordinates.
    tol_m : cores and outlines are simplified to this tolerance (metres); pieces stay covered while
        ``tol_m < buffer_m``.
    quad_segs : segments per quarter circle of the buffers.
    cache : core rings by face signature, shared by calls on nested bands (a face of a smaller band with the
        same walk, bridges included, as one of a larger band reuses its rings).

    Returns
    -------
    Disjoint polygons whose union is the buffered area (holes: the cores).
    """
    b = float(buffer_m)
    arc_tol = min(tol_m, 0.1 * b)  # buffer arcs (30° steps at quad_segs 3) keep their vertices
    if not len(segs):
        return []
    w = _walks(segs, ends)
    ring_len = w.ring_len()
    face_walks = np.flatnonzero(w.bounded)
    comp_walks = np.flatnonzero(~w.bounded)
    outline_walks = comp_walks[ring_len[comp_walks] >= 3]
    face_of = np.full(w.n_walks, -1, dtype=np.int64)
    face_of[face_walks] = np.arange(len(face_walks))
    # a component (any node on its walk) or a lone point lies in a face (nested) or outside all faces (-1)
    pts = np.r_[w.node_xy[w.orig[w.first[comp_walks]]], w.node_xy[w.lone]]
    container = _containing_face(w, face_walks, pts) if len(pts) > 1 else np.full(len(pts), -1, dtype=np.int64)
    owner = face_of.copy()
    owner[comp_walks] = container[: len(comp_walks)]
    # what a core keeps clear of: the face's bridges, nested components (their outlines), lone points
    br = np.flatnonzero(w.bridge[0::2])
    att = np.concatenate([
        shapely.linestrings(np.stack([w.node_xy[w.u[br]], w.node_xy[w.v[br]]], axis=1)) if len(br)
        else np.empty(0, dtype=object), w.polygons(outline_walks), shapely.points(w.node_xy[w.lone])])
    att_owner = np.r_[owner[w.lab[2 * br]], owner[outline_walks], container[len(comp_walks):]].astype(np.int64)
    inside = att_owner >= 0
    has_att = np.zeros(len(face_walks), dtype=bool)
    has_att[att_owner[inside]] = True
    nested = np.zeros(len(face_walks), dtype=bool)
    nested[att_owner[inside & (np.arange(len(att)) >= len(br))]] = True
    # faces seen in a larger band keep their core rings (signature: the hashed half-edges of the walk)
    todo = np.ones(len(face_walks), dtype=bool)
    holes, islands = [], []
    sig = np.zeros(len(face_walks), dtype=np.uint64)
    if cache is not None and len(face_walks):
        by_walk = np.argsort(w.lab, kind="stable")
        walk_len = np.bincount(w.lab, minlength=w.n_walks)
        hh = _coord_hash(np.c_[w.node_xy[w.orig], w.node_xy[w.dest]])[by_walk]
        sig = np.add.reduceat(hh, np.cumsum(walk_len) - walk_len)[face_walks]
        sig ^= walk_len[face_walks].astype(np.uint64) * _HASH_MUL[1]
        if len(cache.get("keys", ())):
            at = pd.Index(cache["keys"]).get_indexer(sig)
            hit = (at >= 0) & ~nested
            todo = ~hit
            used = np.isin(cache["hole_of"], at[hit])
            holes.append(cache["holes"][used])
            used = np.isin(cache["island_of"], at[hit])
            islands.append(cache["islands"][used])
    # new cores: convex faces without attachments in numpy, the others by GEOS
    fast = np.zeros(len(face_walks), dtype=bool)
    cand = np.flatnonzero(todo & ~has_att)
    done, fast_rings = _convex_cores(w, face_walks[cand], b, tol_m)
    fast[cand[done]] = True
    slow = np.flatnonzero(todo & ~fast)
    core = shapely.buffer(w.polygons(face_walks[slow]), -b, quad_segs=quad_segs)
    sel = inside.copy()
    sel[inside] = np.isin(att_owner[inside], slow)
    if sel.any():
        o = np.argsort(att_owner[sel], kind="stable")
        grp, gi = np.unique(att_owner[sel][o], return_inverse=True)
        blobs = shapely.buffer(shapely.geometrycollections(att[sel][o], indices=gi), b, quad_segs=quad_segs)
        at = np.searchsorted(slow, grp)
        core[at] = shapely.difference(core[at], blobs)
    if tol_m > 0:
        core = shapely.simplify(core, arc_tol, preserve_topology=True)
    parts, part_of = shapely.get_parts(core, return_index=True)
    nonempty = ~shapely.is_empty(parts)
    parts, part_of = parts[nonempty], part_of[nonempty]
    slow_holes = shapely.get_exterior_ring(parts)
    n_int = shapely.get_num_interior_rings(parts)
    ring_part = np.repeat(np.arange(len(parts)), n_int)
    ring_no = np.arange(len(ring_part)) - np.repeat(np.cumsum(n_int) - n_int, n_int)
    slow_islands = shapely.get_interior_ring(parts[ring_part], ring_no) if len(ring_part) \
        else np.empty(0, dtype=object)
    new_holes = np.concatenate([fast_rings, slow_holes])
    new_islands = slow_islands
    holes.append(new_holes)
    islands.append(new_islands)
    if cache is not None:
        hole_face = np.r_[cand[done], slow[part_of]].astype(np.int64)
        island_face = slow[part_of[ring_part]].astype(np.int64)
        new_faces = np.flatnonzero(todo & ~nested)
        keys, first_at = np.unique(sig[new_faces], return_index=True)  # a rare hash clash: one kept
        new_faces = new_faces[first_at]
        n_old = len(cache.get("keys", ()))
        key_of = np.full(len(face_walks), -1, dtype=np.int64)
        key_of[new_faces] = n_old + np.arange(len(new_faces))
        hk, ik = key_of[hole_face], key_of[island_face]
        cache["keys"] = np.r_[cache.get("keys", np.zeros(0, dtype=np.uint64)), keys]
        cache["holes"] = np.r_[cache.get("holes", np.empty(0, dtype=object)), new_holes[hk >= 0]]
        cache["hole_of"] = np.r_[cache.get("hole_of", np.zeros(0, dtype=np.int64)), hk[hk >= 0]]
        cache["islands"] = np.r_[cache.get("islands", np.empty(0, dtype=object)), new_islands[ik >= 0]]
        cache["island_of"] = np.r_[cache.get("island_of", np.zeros(0, dtype=np.int64)), ik[ik >= 0]]
    # outside every face: the buffered outlines, bridges and lone points of the top-level components
    ext = att[~inside]
    fill = shapely.union_all(shapely.buffer(ext, b, quad_segs=quad_segs)) if len(ext) else shapely.Polygon()
    if tol_m > 0:
        fill = shapely.simplify(fill, arc_tol, preserve_topology=True)
    # assemble: each core ring is a hole of the shell round it; a core's own holes (round a nested
    # component) are shells in turn
    hole_rings = np.concatenate(holes)
    shells = shapely.get_parts(fill)
    shells = np.concatenate([shells[~shapely.is_empty(shells)], shapely.polygons(np.concatenate(islands))])
    if not len(shells):
        return []
    home = np.zeros(len(hole_rings), dtype=np.int64) if len(shells) == 1 else \
        _smallest_containing(shells, shapely.get_coordinates(shapely.get_point(hole_rings, 0)))
    n_int = shapely.get_num_interior_rings(shells)
    shell_of = np.repeat(np.arange(len(shells)), n_int)
    ring_no = np.arange(len(shell_of)) - np.repeat(np.cumsum(n_int) - n_int, n_int)
    ok = home >= 0
    rings = np.concatenate([shapely.get_exterior_ring(shells), shapely.get_interior_ring(shells[shell_of], ring_no)
                            if len(shell_of) else np.empty(0, dtype=object), hole_rings[ok]])
    ring_home = np.r_[np.arange(len(shells)), shell_of, home[ok]]
    kind = np.r_[np.zeros(len(shells)), np.ones(len(rings) - len(shells))]
    o = np.lexsort((kind, ring_home))
    return list(shapely.polygons(rings[o], indices=ring_home[o]))


def _smallest_containing(polys: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Per point, the index of the smallest polygon strictly containing it (-1 for none)."""
    out = np.full(len(pts), -1, dtype=np.int64)
    if not len(pts) or not len(polys):
        return out
    qi, pi = shapely.STRtree(polys).query(shapely.points(pts))
    shapely.prepare(polys)  # point-in-polygon tests on large shells with many holes
    inside = shapely.contains_xy(polys[pi], pts[qi, 0], pts[qi, 1])
    qi, pi = qi[inside], pi[inside]
    if len(qi):
        o = np.lexsort((shapely.area(polys)[pi], qi))
        qi, pi = qi[o], pi[o]
        first = np.r_[True, qi[1:] != qi[:-1]]
        out[qi[first]] = pi[first]
    return out


def _capsule_union(segs: np.ndarray, buffer_m: float, *, tol_m: float = 0.0, quad_segs: int = 3,
                   tile_m: float = 2000.0) -> list[shapely.Polygon]:
    """The area within ``buffer_m`` of the pieces the direct way: each piece buffered, unioned tile by tile.

    The slow, assumption-free twin of :func:`_planar_buffer` (its fallback). Each ``tile_m`` tile unions the
    buffers reaching into it and keeps the part inside the tile, so the polygons are disjoint.
    """
    if not len(segs):
        return []
    caps = shapely.buffer(shapely.linestrings(segs), buffer_m, quad_segs=quad_segs)
    lo = np.floor((segs.min(axis=1) - buffer_m) / tile_m).astype(np.int64)
    hi = np.floor((segs.max(axis=1) + buffer_m) / tile_m).astype(np.int64)
    span = (hi - lo).max(axis=0)
    touched = [lo[(lo + (dx, dy) <= hi).all(axis=1)] + (dx, dy)
               for dx in range(int(span[0]) + 1) for dy in range(int(span[1]) + 1)]
    out = []
    for tx, ty in np.unique(np.concatenate(touched), axis=0).tolist():
        near = (lo[:, 0] <= tx) & (hi[:, 0] >= tx) & (lo[:, 1] <= ty) & (hi[:, 1] >= ty)
        part = shapely.clip_by_rect(shapely.union_all(caps[near]), tx * tile_m, ty * tile_m, (tx + 1) * tile_m,
                                    (ty + 1) * tile_m)
        if tol_m > 0:
            part = shapely.simplify(part, tol_m, preserve_topology=True)
        out += [g for g in shapely.get_parts(part) if shapely.get_type_id(g) == 3 and not g.is_empty]
    return out


def _band_pieces(ctx: _Ctx, points: gpd.GeoDataFrame, minutes: Sequence[float], graph: Any = None,
                 max_snap_m: float = 500.0) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """The street pieces reached within each band from the nearest of ``points`` (one multi-source search).

    Returns
    -------
    ``[(minutes, segments, ends), ...]`` largest band first: (k, 2, 2) piece end points (metres, the map's
    metric CRS) and (k, 2) node ids (-1 for a free end). Where streets cross away from a node (a bridge over a
    street with no junction) the pieces are split at the crossings and every end gets its id from its point.
    """
    from scipy.sparse.csgraph import dijkstra

    from .network import attach_points, snap_points

    if points is None or not len(points):
        return []
    noded = False
    if graph is None:
        graph, noded = _graph(ctx)
    if graph is None:
        return []
    pts = points.to_crs(ctx.crs)
    speed = float(ctx.standards.speed_kmh)
    bands = np.sort(np.asarray(list(minutes), dtype=float))[::-1]
    limits = bands * speed * 1000.0 / 60.0
    snaps = snap_points(graph, pts.geometry.reset_index(drop=True), max_snap_m=max_snap_m)
    g2, nodes = attach_points(graph, snaps, leaf=True)
    sources = np.unique(nodes[nodes >= 0])
    if not len(sources):
        return []
    dist = np.asarray(dijkstra(g2.matrix, directed=True, indices=sources, limit=limits[0], min_only=True))
    u, v, length = g2.edge_u, g2.edge_v, g2.edge_length
    pu = np.c_[g2.x[u], g2.y[u]]
    pv = np.c_[g2.x[v], g2.y[v]]
    with np.errstate(invalid="ignore", divide="ignore"):
        step = np.where(length[:, None] > 0, (pv - pu) / length[:, None], 0.0)
    node_id, _ = pd.factorize(g2.x + 1j * g2.y)  # one id per point: coincident graph nodes are one node
    nu, nv = node_id[u], node_id[v]
    reach = np.isfinite(dist[u]) | np.isfinite(dist[v])
    crossing = np.zeros(len(u), dtype=bool)
    crossing[reach] = _crossing_segments(np.stack([pu[reach], pv[reach]], axis=1), np.c_[nu[reach], nv[reach]],
                                         pairs=not noded, lines=g2.lines[reach])
    out = []
    for m, lim in zip(bands, limits, strict=True):
        segs, ends = _reached_pieces(pu[~crossing], pv[~crossing], step[~crossing], length[~crossing],
                                     dist[u[~crossing]], dist[v[~crossing]], lim, nu[~crossing], nv[~crossing])
        if crossing.any():
            c = crossing
            extra, _ = _reached_pieces(pu[c], pv[c], step[c], length[c], dist[u[c]], dist[v[c]], lim, nu[c], nv[c])
            extra = _node_segments(extra)
            xy = np.concatenate([segs.reshape(-1, 2), extra.reshape(-1, 2)])
            ids, _ = pd.factorize(xy[:, 0] + 1j * xy[:, 1])
            segs = np.concatenate([segs, extra])
            ends = ids.reshape(-1, 2).astype(np.int64)
        out.append((float(m), segs, ends))
    return out


def _fill_holes(polys: np.ndarray, min_hole_m2: float) -> np.ndarray:
    """Polygons without their interior rings smaller than ``min_hole_m2`` (m²)."""
    if min_hole_m2 <= 0 or not len(polys):
        return polys
    n_holes = shapely.get_num_interior_rings(polys)
    if not n_holes.any():
        return polys
    shells = shapely.get_exterior_ring(polys)
    owner = np.repeat(np.arange(len(polys)), n_holes)
    idx = np.concatenate([np.arange(k) for k in n_holes]) if len(owner) else np.zeros(0, int)
    holes = shapely.get_interior_ring(polys[owner], idx)
    keep = shapely.area(shapely.polygons(holes)) >= min_hole_m2
    rings = np.concatenate([shells, holes[keep]])
    ring_owner = np.concatenate([np.arange(len(polys)), owner[keep]])
    order = np.lexsort((np.r_[np.zeros(len(polys)), np.ones(int(keep.sum()))], ring_owner))  # shell first
    return shapely.polygons(rings[order], indices=ring_owner[order])


def _service_bands(ctx: _Ctx, points: gpd.GeoDataFrame, minutes: Sequence[float], graph: Any = None,
                   tol_m: float = 2.0, max_snap_m: float = 500.0, min_hole_m2: float = 0.0) -> gpd.GeoDataFrame | None:
    """Walk-time service areas of all ``points`` together, one dissolved polygon per band (largest first).

    The union of the single-facility isochrones of :func:`gis_planner.coverage.service_areas` equals the
    area reached from the *nearest* facility, so one multi-source shortest-path search replaces one search
    per facility: the street pieces within each band's walking distance (standards' speed × minutes), widened
    by the standards' isochrone buffer (``isochrone_buffer_m``, 25 m). The widening is computed face by face
    of the planar street graph (:func:`_planar_buffer`; about 3 s for the three bands of a 202,500-node city
    grid where buffering and dissolving the pieces tile by tile took 8 minutes), and a face a smaller band
    shares with a larger one reuses its core. Should GEOS fail on a degenerate face, the band falls back to
    buffering the pieces one by one and unioning them tile by tile (:func:`_capsule_union`).

    Parameters
    ----------
    points : facilities (any CRS).
    minutes : band limits in minutes.
    graph : the walking graph (default: built from the roads; a graph given here is checked for crossings).
    tol_m : simplification tolerance of the area outlines (metres), at most half the isochrone buffer.
    max_snap_m : points farther than this from a walkable road reach nothing (metres).
    min_hole_m2 : unreached patches inside an area smaller than this are filled (m²; 0 keeps them all).

    Returns
    -------
    GeoDataFrame ``minutes, geometry`` (MultiPolygon, the map's metric CRS), or None when nothing is reached.
    """
    buffer_m = float(ctx.standards.network.get("isochrone_buffer_m", 25.0))
    tol_m = min(float(tol_m), 0.5 * buffer_m)
    cache: dict[str, Any] = {}
    rows = []
    for m, segs, ends in _band_pieces(ctx, points, minutes, graph, max_snap_m):
        try:
            polys = _planar_buffer(segs, buffer_m, ends=ends, tol_m=tol_m, quad_segs=3, cache=cache)
        except shapely.errors.GEOSException:  # pragma: no cover - a degenerate face GEOS cannot shrink
            polys = _capsule_union(segs, buffer_m, tol_m=tol_m, quad_segs=3)
        if polys:
            polys = _fill_holes(np.asarray(polys, dtype=object), min_hole_m2)
            rows.append({"minutes": m, "geometry": shapely.multipolygons(polys)})
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=ctx.crs) if rows else None


# --------------------------------------------------------------------------------------------- the builder
def _basemap(m: folium.Map, basemap: str | None, lang: str, tianditu_key: str | None) -> str:
    """Add the basemap tile layer(s); return the coordinate system the layers must be drawn in."""
    if basemap in (None, "", "none"):
        return "wgs84"
    if basemap not in BASEMAPS:
        raise ValueError(f"basemap must be one of {', '.join(BASEMAPS)} or None, got {basemap!r}")
    spec = load_style()["basemaps"][basemap]
    text = _labels(lang)
    kwargs: dict[str, Any] = {"max_zoom": 20, "max_native_zoom": spec["max_zoom"]}
    if "subdomains" in spec:
        kwargs["subdomains"] = spec["subdomains"]
    url = spec["url"]
    if basemap == "tianditu":
        key = tianditu_key or os.environ.get("TIANDITU_KEY")
        if not key:
            raise ValueError("the Tianditu basemap needs a key: tianditu_key=..., [map] tianditu_key in "
                             "plan.toml or the TIANDITU_KEY environment variable")
        url = url.replace("{key}", key)
    folium.TileLayer(url, attr=spec["attribution"], name=text[f"basemap_{basemap}"], overlay=False,
                     control=True, **kwargs).add_to(m)
    if basemap == "tianditu" and "labels_url" in spec:
        folium.TileLayer(spec["labels_url"].replace("{key}", tianditu_key or os.environ.get("TIANDITU_KEY", "")),
                         attr=spec["attribution"], name=text["basemap_tianditu"] + " 注记", overlay=True,
                         control=False, **kwargs).add_to(m)
    return str(spec["coord_system"])


def _missing_types(compounds: pd.DataFrame, standards: Any, lang: str) -> tuple[np.ndarray, pd.Series]:
    cols = [c for c in compounds.columns if c.startswith("cov_") and compounds[c].dtype == bool]
    if not cols:
        return np.zeros(len(compounds), dtype=int), pd.Series([""] * len(compounds), index=compounds.index)
    cov = compounds[cols].to_numpy(bool)
    names = np.array([_type_name(standards, c[4:], lang) for c in cols], dtype=object)
    sep = "、" if lang == "zh" else ", "
    missing = pd.Series([sep.join(names[~row]) for row in cov], index=compounds.index)
    return (~cov).sum(axis=1), missing


def _bin(values: np.ndarray, bins: Sequence[float]) -> np.ndarray:
    return np.clip(np.searchsorted(np.asarray(bins, float), values, side="right") - 1, 0, len(bins) - 1)


def _build(ctx: _Ctx, *, lang: str, basemap: str | None, tianditu_key: str | None, focus: Any = None,
           mode: str = "plan", facility_type: str | None = None, service_areas: Any = True,
           title: str | None = None, detail_zoom: int | None = None, height: str = "100%") -> folium.Map:
    style = load_style()
    disp = style["display"]
    text = _labels(lang)
    compounds = ctx.compounds
    lat = float(gpd.GeoSeries([shapely.box(*compounds.total_bounds).centroid], crs=ctx.crs).to_crs(4326).y.iloc[0])
    if detail_zoom is None:
        detail_zoom = int(disp["detail_zoom"]) - (1 if len(compounds) > int(disp["large_map_features"]) else 0)
    tol = _tolerance_m(lat, detail_zoom)
    precision = int(disp["precision"])
    large = len(compounds) > int(disp["large_map_features"])
    smooth = 1.5 if large else 1.0

    m = folium.Map(location=None, tiles=None, prefer_canvas=True, control_scale=False, zoom_start=14,
                   height=height, max_zoom=20)
    _make_offline(m)
    coord_system = _basemap(m, basemap, lang, tianditu_key)
    legend: list[tuple[Layer, str]] = []
    order: list[Layer] = []

    def show(g: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        return _display(g, tol, coord_system)

    # compounds: one dataset, three colourings
    cd = show(compounds)
    miss_n, miss_names = _missing_types(cd, ctx.standards, lang)
    popup_src = cd.assign(missing_types=miss_names)
    fields, rows = _rows(popup_src, "compounds", lang)
    cdata = _dataset(_geojson(cd.geometry.values, precision), _tooltips(cd, "compound_id"), fields, rows)
    m.add_child(cdata)

    if mode == "coverage" and facility_type is not None:
        minutes = _walk_minutes(ctx, cd, facility_type)
        cv = style["coverage"]
        cat = np.where(np.isnan(minutes), 4, _bin(np.nan_to_num(minutes, nan=0.0), [0, 5, 10, 15]))
        cat = np.where(~np.isnan(minutes) & (minutes <= 5), 0, cat)
        tname = _type_name(ctx.standards, facility_type, lang)
        lay = _JsLayer(text["compounds_coverage"].format(type=tname), cdata, "GP.shapes",
                       {"cat": cat.tolist(), "colors": cv["colors"], "weight": 0.6, "stroke": "#555", "smooth": smooth})
        m.add_child(lay)
        legend.append((lay, _legend_section(lay.layer_name, [("fill", c, lab) for c, lab in
                                                             zip(cv["colors"], cv[f"labels_{lang}"], strict=True)])))
    else:
        # by bundle
        pal = list(style["palette"]["qualitative"])
        grey = style["palette"]["unbundled"]
        bid = cd["bundle_id"].astype("object").where(cd["bundle_id"].notna(), None) if "bundle_id" in cd.columns \
            else pd.Series([None] * len(cd), index=cd.index)
        bundle_colour: dict[str, int] = {}
        if ctx.bundles is not None:
            ci = _greedy_colours(ctx.bundles, len(pal))
            bundle_colour = dict(zip(ctx.bundles["bundle_id"].astype(str), ci.tolist(), strict=True))
        cat = np.array([bundle_colour.get(str(b), hash(str(b)) % len(pal)) if b else len(pal) for b in bid])
        lay_b = _JsLayer(text["compounds_bundle"], cdata, "GP.shapes",
                         {"cat": cat.tolist(), "colors": [*pal, grey], "weight": 0.6, "stroke": "#666",
                          "fillOpacity": 0.65, "smooth": smooth}, show=mode == "plan")
        m.add_child(lay_b)
        items = []
        if ctx.bundles is not None:
            ids = sorted(ctx.bundles["bundle_id"].astype(str))
            shown = ids if len(ids) <= 12 else ids[:10]
            items += [("fill", pal[bundle_colour[b]], b) for b in shown]
            if len(ids) > len(shown):
                items.append(("fill", pal[0], text["more_bundles"].format(n=len(ids))))
        items.append(("fill", grey, text["unbundled"]))
        legend.append((lay_b, _legend_section(lay_b.layer_name, items)))
        # by eligibility
        el = style["eligibility"]
        status = _eligibility_labels(lang)
        keys = list(el)
        ekey = cd["eligibility"].astype("object").fillna("unknown") if "eligibility" in cd.columns else \
            pd.Series(["unknown"] * len(cd), index=cd.index)
        ecat = np.array([keys.index(k) if k in keys else keys.index("unknown") for k in ekey])
        lay_e = _JsLayer(text["compounds_eligibility"], cdata, "GP.shapes",
                         {"cat": ecat.tolist(), "colors": [el[k] for k in keys], "weight": 0.6, "stroke": "#666",
                          "fillOpacity": 0.7, "smooth": smooth}, show=mode == "bundle")
        m.add_child(lay_e)
        present = [k for k in keys if (ekey == k).any()]
        legend.append((lay_e, _legend_section(lay_e.layer_name,
                                              [("fill", el[k], status.get(k, k)) for k in present])))
        # coverage gaps
        gp = style["gaps"]
        gcat = _bin(miss_n.astype(float), gp["bins"])
        lay_g = _JsLayer(text["compounds_gaps"], cdata, "GP.shapes",
                         {"cat": gcat.tolist(), "colors": gp["colors"], "weight": 0.6, "stroke": "#666",
                          "fillOpacity": 0.7, "smooth": smooth}, show=False)
        m.add_child(lay_g)
        legend.append((lay_g, _legend_section(lay_g.layer_name, [("fill", c, lab) for c, lab in
                                                                 zip(gp["colors"], gp[f"labels_{lang}"], strict=True)])))

    # bundles outlined, with labels
    if ctx.bundles is not None and mode != "coverage":
        bd = show(ctx.bundles)
        f, r = _rows(bd, "bundles", lang)
        bdata = _dataset(_geojson(bd.geometry.values, precision), _tooltips(bd, "bundle_id", "bundle_id"), f, r)
        m.add_child(bdata)
        colour = style["palette"]["bundle_outline"]
        lay = _JsLayer(text["bundles"], bdata, "GP.shapes",
                       {"color": colour, "fill": False, "weight": 2.5, "dash": "8 4", "smooth": smooth})
        m.add_child(lay)
        order.append(lay)
        legend.append((lay, _legend_section(lay.layer_name, [("dash", colour, text["bundles"])])))
        ldata = _dataset(_xy(bd.geometry.values, precision), [html.escape(str(b)) for b in bd["bundle_id"]])
        m.add_child(ldata)
        m.add_child(_JsLayer(text["bundle_labels"], ldata, "GP.labels",
                             {"minZoom": int(disp["label_min_zoom"]) if large else 0}))

    # vacant parcels
    if ctx.vacant is not None:
        vd = show(ctx.vacant)
        vc = style["vacant"]
        vl = style["vacant_labels_zh"]
        kinds = vd["kind"].astype("object").fillna("other").astype(str) if "kind" in vd.columns else \
            pd.Series(["other"] * len(vd), index=vd.index)
        ktypes = sorted(set(kinds))
        vd = vd.assign(kind_label=[vl.get(k, k) if lang == "zh" else k.replace("_", " ") for k in kinds])
        f, r = _rows(vd, "vacant", lang)
        vdata = _dataset(_geojson(vd.geometry.values, precision), _tooltips(vd, "parcel_id", extra=vd["kind_label"]),
                         f, r)
        m.add_child(vdata)
        colours = [vc.get(k, vc["other"]) for k in ktypes]
        lay = _JsLayer(text["vacant"], vdata, "GP.shapes",
                       {"cat": [ktypes.index(k) for k in kinds], "colors": colours, "stroke": "#54278f",
                        "weight": 1.2, "fillOpacity": 0.75, "dash": "3 2"})
        m.add_child(lay)
        legend.append((lay, _legend_section(lay.layer_name, [
            ("fill", c, vl.get(k, k) if lang == "zh" else k.replace("_", " ")) for k, c in zip(ktypes, colours, strict=True)])))

    # boundaries
    if ctx.boundaries is not None and mode == "plan":
        bo = show(ctx.boundaries)
        f, r = _rows(bo, "boundaries", lang)
        bodata = _dataset(_geojson(bo.geometry.values, precision), _tooltips(bo, "boundary_id"), f, r)
        m.add_child(bodata)
        colour = style["palette"]["boundary"]
        lay = _JsLayer(text["boundaries"], bodata, "GP.shapes",
                       {"color": colour, "fill": False, "weight": 1.5, "dash": "2 6", "popup": False}, show=False)
        m.add_child(lay)
        legend.append((lay, _legend_section(lay.layer_name, [("dash", colour, text["boundaries"])])))

    # service areas
    bands = None
    computed = False
    if service_areas is not False and service_areas is not None:
        if isinstance(service_areas, gpd.GeoDataFrame):
            bands = service_areas
        else:
            pts = _service_points(ctx, mode, facility_type)
            bands = _service_bands(ctx, pts, (5, 10, 15), tol_m=8.0 if large else 2.0,
                                   min_hole_m2=float(disp.get("large_map_min_hole_m2", 0)) if large else 0.0) if pts is not None else None
            computed = True
    if bands is not None and len(bands):
        sa = style["palette"]["service_area"]
        # computed bands are simplified already (to more than half a pixel): a topology-preserving simplify
        # of polygons with ~10⁵ holes would take longer than computing them
        bd = _display(bands, 0.0, coord_system) if computed else show(bands)
        for _, row in bd.sort_values("minutes", ascending=False).iterrows():
            mins = int(row["minutes"]) if float(row["minutes"]).is_integer() else row["minutes"]
            colour = sa.get(str(mins), "#6baed6")
            name = text["service_area"].format(minutes=mins)
            sdata = _dataset(_geojson([row.geometry], precision), [html.escape(name)])
            m.add_child(sdata)
            lay = _JsLayer(name, sdata, "GP.shapes", {"color": colour, "weight": 0, "fillOpacity": 0.18,
                                                      "popup": False, "interactive": False},
                           show=mode == "coverage")
            m.add_child(lay)
            legend.append((lay, _legend_section(name, [("fill", colour, name)])))

    # projects
    if ctx.projects is not None and mode != "coverage":
        pd_ = show(ctx.projects)
        f, r = _rows(pd_, "projects", lang)
        pdata = _dataset(_geojson(pd_.geometry.values, precision), _tooltips(pd_, "project_id"), f, r)
        m.add_child(pdata)
        colour = style["palette"]["project"]
        lay = _JsLayer(text["projects"], pdata, "GP.shapes", {"color": colour, "weight": 2, "fillOpacity": 0.25})
        m.add_child(lay)
        legend.append((lay, _legend_section(lay.layer_name, [("ring", colour, text["project_default"])])))

    # pairing lines with amounts
    if ctx.pairings is not None and len(ctx.pairings) and mode != "coverage":
        pr = show(ctx.pairings)
        f, r = _rows(pr, "pairings", lang)
        amounts = pr["amount_cny"] if "amount_cny" in pr.columns else pd.Series([np.nan] * len(pr), index=pr.index)
        labels = [html.escape(text["pairing_label"].format(
            bundle=b, project=p, amount="—" if pd.isna(a) else f"{float(a) / 1e4:,.0f}"))
            for b, p, a in zip(pr.get("bundle_id", [""] * len(pr)), pr.get("project_id", [""] * len(pr)), amounts,
                               strict=True)]
        prdata = _dataset(_geojson(pr.geometry.values, precision), labels, f, r)
        m.add_child(prdata)
        colour = style["palette"]["pairing"]
        lay = _JsLayer(text["pairings"], prdata, "GP.shapes",
                       {"color": colour, "fill": False, "weight": 3, "dash": "10 6", "labels": labels})
        m.add_child(lay)
        order.append(lay)
        legend.append((lay, _legend_section(lay.layer_name, [("dash", colour, text["pairings"])])))

    # facilities by type (icons), proposed facilities
    fac = ctx.facilities
    if fac is not None and facility_type is not None and "facility_type" in fac.columns:
        fac = fac[fac["facility_type"].astype(str) == facility_type]
    if fac is not None and len(fac):
        _add_points(m, show(fac), text["facilities"] if facility_type is None else text["facilities_type"].format(
            type=_type_name(ctx.standards, facility_type, lang)), "facilities", ctx, lang, precision, legend,
            int(disp["max_icon_markers"]))
    prop = ctx.proposed
    if prop is not None and facility_type is not None and "facility_type" in prop.columns:
        prop = prop[prop["facility_type"].astype(str) == facility_type]
    if prop is not None and len(prop):
        _add_points(m, show(prop), text["proposed"], "proposed", ctx, lang, precision, legend,
                    int(disp["max_icon_markers"]), star=True)

    folium.LayerControl(collapsed=False, position="topright").add_to(m)
    fb = focus if focus is not None else compounds
    b = gpd.GeoSeries([shapely.box(*fb.total_bounds)], crs=ctx.crs).to_crs(4326).total_bounds
    bounds = [[float(b[1]), float(b[0])], [float(b[3]), float(b[2])]]
    ctext = {k: html.escape(text[k]) for k in ("fullscreen", "measure", "measure_hint", "measure_clear",
                                               "distance", "area", "legend", "north")}
    if title is None:
        title = text["title"] if ctx.name in ("", "plan") else f"{ctx.name} · {text['title']}"
    m.add_child(_Controls(html.escape(title),
                          ctext, legend, bounds, int(disp["label_min_zoom"]), order))
    m.fit_bounds(bounds)
    return m


def _eligibility_labels(lang: str) -> dict[str, str]:
    from . import eligibility

    try:
        status = eligibility.load_rules().get("status", {})
    except Exception:  # noqa: BLE001 - labels only
        status = {}
    out = {k: str(v.get(f"text_{lang}", k)) for k, v in status.items()}
    out.setdefault("unknown", "未知" if lang == "zh" else "unknown")
    return out


def _walk_minutes(ctx: _Ctx, cd: pd.DataFrame, facility_type: str) -> np.ndarray:
    """Walk minutes from each compound to the nearest facility of the type (NaN = none reachable)."""
    mpm = ctx.standards.metres_per_minute
    if ctx.coverage is not None and {"compound_id", "facility_type", "distance_m"} <= set(ctx.coverage.columns):
        t = ctx.coverage[ctx.coverage["facility_type"].astype(str) == facility_type]
        d = dict(zip(t["compound_id"].astype(str), pd.to_numeric(t["distance_m"], errors="coerce"), strict=True))
        return np.array([d.get(str(c), np.nan) for c in cd["compound_id"]], dtype=float) / mpm
    col = f"dist_{facility_type}_m"
    if col in cd.columns:
        return pd.to_numeric(cd[col], errors="coerce").to_numpy(float) / mpm
    raise ValueError(f"no coverage results for facility type {facility_type!r} (not in the plan's profile?)")


def _service_points(ctx: _Ctx, mode: str, facility_type: str | None) -> gpd.GeoDataFrame | None:
    frames = []
    for g in (ctx.facilities, ctx.proposed):
        if g is None or not len(g):
            continue
        if facility_type is not None and "facility_type" in g.columns:
            g = g[g["facility_type"].astype(str) == facility_type]
        elif mode == "plan" and "facility_type" in g.columns:
            # the plan map draws the living circles of the types the plan checks
            keys = set(ctx.standards.profile_types())
            g = g[g["facility_type"].astype(str).isin(keys)]
        frames.append(gpd.GeoDataFrame(geometry=g.geometry.to_crs(ctx.crs).centroid.values, crs=ctx.crs))
    frames = [f for f in frames if len(f)]
    if not frames:
        return None
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=ctx.crs)


def _add_points(m: folium.Map, g: gpd.GeoDataFrame, name: str, section: str, ctx: _Ctx, lang: str,
                precision: int, legend: list, max_icons: int, star: bool = False) -> None:
    style = load_style()
    types = g["facility_type"].astype("object").fillna("other").astype(str) if "facility_type" in g.columns else \
        pd.Series(["other"] * len(g), index=g.index)
    names = {t: _type_name(ctx.standards, t, lang) for t in set(types)}
    tnames = [names[t] for t in types]
    g = g.assign(type_label=tnames)
    keys = sorted(set(types))
    size = 26 if star else 22
    icons = []
    colours = []
    for k in keys:
        icon = style["icons"].get(k, style["icons"]["other"])
        colour = style["icon_groups"].get(icon["group"], style["icon_groups"]["other"])
        colours.append(colour)
        icons.append(_icon_svg("star" if star else icon["shape"], colour, icon[f"glyph_{lang}"], size,
                               ring="#222" if star else "#fff"))
    f, r = _rows(g, section, lang)
    default = _labels(lang)["proposed_default"] if star else ""
    tips = _tooltips(g, "facility_id", extra=pd.Series(tnames, index=g.index))
    if star:
        tips = [f"{html.escape(default)} · {t}" for t in tips]
    data = _dataset(_xy(g.geometry.values, precision), tips, f, r)
    m.add_child(data)
    canvas = len(g) > max_icons
    key_index = {k: i for i, k in enumerate(keys)}
    lay = _JsLayer(name, data, "GP.points", {"cat": [key_index[t] for t in types], "icons": icons,
                                             "colors": colours, "size": size, "canvas": canvas})
    m.add_child(lay)
    legend.append((lay, _legend_section(name, [("svg", ic.replace(f'width="{size}" height="{size}"',
                                                                  'width="16" height="16"'),
                                                _type_name(ctx.standards, k, lang)) for k, ic in zip(keys, icons, strict=True)])))


# --------------------------------------------------------------------------------------------- public maps
def _map_settings(result: Any, basemap: Any, tianditu_key: str | None) -> tuple[str | None, str | None]:
    cfg = dict((_get(_get(result, "config"), "settings") or {}).get("map") or {})
    if basemap == "config":
        basemap = cfg.get("basemap", "osm")
    if basemap in ("none", ""):
        basemap = None
    return basemap, tianditu_key or cfg.get("tianditu_key") or None


def plan_map(result: Any, *, lang: str = "zh", basemap: str | None = "osm", tianditu_key: str | None = None,
             service_areas: bool | gpd.GeoDataFrame = True, detail_zoom: int | None = None,
             title: str | None = None) -> folium.Map:
    """The plan map: compounds by bundle / eligibility / coverage gaps, bundles, vacant land, facilities,
    proposed facilities, revenue projects, pairing lines and 5/10/15-minute service areas, each a layer
    that toggles, each with its categorical legend; scale bar, north arrow, full-screen and measure controls.

    Leaflet and every control are inlined from the installed packages, so the map works offline (also in
    Jupyter, where the returned map displays inline).

    Parameters
    ----------
    result : a :class:`~gis_planner.plan.PlanResult` (or :func:`load_run` of a finished run).
    lang : ``"zh"`` (Chinese labels, popups and legend) or ``"en"``.
    basemap : ``"osm"``, ``"tianditu"`` (needs ``tianditu_key``), ``"amap"`` (GCJ-02 tiles: every layer is
        shifted to GCJ-02 so it lines up), ``None`` for no basemap, or ``"config"`` for the plan's ``[map]``
        settings.
    tianditu_key : the 天地图 key (default: ``[map] tianditu_key`` or ``$TIANDITU_KEY``).
    service_areas : True computes the 5/10/15-minute walk areas of the facilities the plan checks (and of
        proposed facilities) along the road network; False leaves them out; or a GeoDataFrame with
        ``minutes`` and geometry to draw.
    detail_zoom : geometries are simplified to half a pixel at this zoom (default 18, 17 for large maps).
    title : map title (default: plan name · 片区化改造规划图).

    Examples
    --------
    >>> m = plan_map(result, basemap=None)         # doctest: +SKIP
    >>> save_map(m, "outputs/sample/map.html")     # doctest: +SKIP
    """
    basemap, tianditu_key = _map_settings(result, basemap, tianditu_key)
    ctx = _context(result)
    return _build(ctx, lang=lang, basemap=basemap, tianditu_key=tianditu_key, service_areas=service_areas,
                  detail_zoom=detail_zoom, title=title)


def bundle_map(result: Any, bundle_id: str, *, lang: str = "zh", basemap: str | None = "osm",
               tianditu_key: str | None = None, margin_m: float = 500.0,
               service_areas: bool = False) -> folium.Map:
    """Map of one bundle (片区): its compounds by eligibility, outline, nearby vacant land, facilities,
    proposed facilities and its pairing lines, zoomed to the bundle plus ``margin_m`` metres.

    Parameters
    ----------
    result : a PlanResult (or :func:`load_run`).
    bundle_id : the bundle to show (``"B001"``).
    margin_m : features within this distance of the bundle are drawn too (metres).
    service_areas : draw the 5/10/15-minute service areas of the facilities shown.
    """
    basemap, tianditu_key = _map_settings(result, basemap, tianditu_key)
    ctx = _context(result)
    if ctx.bundles is None or str(bundle_id) not in set(ctx.bundles["bundle_id"].astype(str)):
        raise KeyError(f"no bundle {bundle_id!r} in the result")
    bundle = ctx.bundles[ctx.bundles["bundle_id"].astype(str) == str(bundle_id)]
    area = shapely.buffer(bundle.union_all(), margin_m)

    def near(g: gpd.GeoDataFrame | None) -> gpd.GeoDataFrame | None:
        if g is None:
            return None
        g2 = g.to_crs(ctx.crs)
        return g2[g2.intersects(area)]

    sub = _Ctx(**{**ctx.__dict__})
    sub.compounds = near(ctx.compounds)
    sub.bundles = bundle
    sub.vacant, sub.facilities, sub.proposed = near(ctx.vacant), near(ctx.facilities), near(ctx.proposed)
    sub.boundaries = None
    if ctx.pairings is not None and "bundle_id" in ctx.pairings.columns:
        sub.pairings = ctx.pairings[ctx.pairings["bundle_id"].astype(str) == str(bundle_id)]
        pids = set(sub.pairings["project_id"].astype(str)) if "project_id" in sub.pairings.columns else set()
        if ctx.projects is not None:
            pr = ctx.projects.to_crs(ctx.crs)
            sub.projects = pr[pr["project_id"].astype(str).isin(pids) | pr.intersects(area)]
    elif ctx.projects is not None:
        sub.projects = near(ctx.projects)
    name = html.unescape(str(bundle_id))
    title = f"{ctx.name} · {'片区' if lang == 'zh' else 'Bundle'} {name}"
    return _build(sub, lang=lang, basemap=basemap, tianditu_key=tianditu_key, focus=bundle, mode="bundle",
                  service_areas=service_areas, title=title)


def coverage_map(result: Any, facility_type: str, *, lang: str = "zh", basemap: str | None = "osm",
                 tianditu_key: str | None = None, service_areas: bool = True) -> folium.Map:
    """Map of one facility type's coverage: compounds by walking minutes to the nearest facility of the
    type (≤5, ≤10, ≤15, beyond, unreachable), the facilities and proposed facilities of the type, and their
    5/10/15-minute service areas.

    Parameters
    ----------
    result : a PlanResult (or :func:`load_run`).
    facility_type : a facility type key (``kindergarten``) or its Chinese / English name (``幼儿园``).
    """
    basemap, tianditu_key = _map_settings(result, basemap, tianditu_key)
    ctx = _context(result)
    key = ctx.standards.type_key(facility_type) or str(facility_type)
    tname = _type_name(ctx.standards, key, lang)
    title = f"{ctx.name} · {tname}{'服务覆盖' if lang == 'zh' else ' coverage'}"
    return _build(ctx, lang=lang, basemap=basemap, tianditu_key=tianditu_key, mode="coverage",
                  facility_type=key, service_areas=service_areas, title=title)


# --------------------------------------------------------------------------------------------- saving
def _external_refs(text: str) -> list[str]:
    import re

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


def write_run_map(result: Any, outdir: str | os.PathLike | None = None, *, lang: str | None = None) -> tuple[Path, int]:
    """Draw ``map.html`` of a run with the plan's ``[map]`` settings (basemap, key, language) and save it.

    Parameters
    ----------
    result : the PlanResult (or :func:`load_run`).
    outdir : the run's output folder (default ``result.outdir``).
    """
    outdir = Path(outdir if outdir is not None else result.outdir)
    cfg = dict((_get(_get(result, "config"), "settings") or {}).get("map") or {})
    m = plan_map(result, lang=lang or cfg.get("lang", "zh"), basemap="config")
    return save_map(m, outdir / "map.html")


# --------------------------------------------------------------------------------------------- browser check
def _find_chromium() -> str | None:
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


_CHECK_JS = r"""
(function(){
  var out = {ready: !!window.GP_READY, overlays: [], legend: [], errors: []};
  var map = window.GP && GP.map;
  if (!map) return JSON.stringify(out);
  var ctl = document.querySelector('.leaflet-control-layers');
  out.layerControl = !!ctl;
  var inputs = ctl ? ctl.querySelectorAll('.leaflet-control-layers-overlays label') : [];
  var secs = document.querySelectorAll('.gp-legend .gp-sec');
  GP.cfg.legend.forEach(function(s){ if (!map.hasLayer(s.layer)) map.addLayer(s.layer); });
  var names = [];
  inputs.forEach(function(l){ names.push(l.textContent.trim()); });
  var i = 0;
  map.eachLayer(function(){ i++; });
  GP.cfg.legend.forEach(function(s){
    out.legend.push({title: s.el.querySelector('b') ? s.el.querySelector('b').textContent : '',
                     items: s.el.querySelectorAll('.gp-item').length, shown: s.el.style.display !== 'none',
                     features: GP.count(s.layer)});
  });
  out.overlays = names;
  out.mapLayers = i;
  out.canvas = document.querySelectorAll('.leaflet-overlay-pane canvas').length;
  out.markers = document.querySelectorAll('.leaflet-marker-pane .leaflet-marker-icon').length;
  out.legendSections = secs.length;
  out.controls = {scale: !!document.querySelector('.leaflet-control-scale'),
                  fullscreen: !!document.querySelector('.gp-fullscreen'), measure: !!document.querySelector('.gp-measure'),
                  north: !!document.querySelector('.gp-north'), title: (document.querySelector('.gp-title')||{}).textContent || ''};
  return JSON.stringify(out);
})()
"""


def browser_check(path: str | os.PathLike, *, screenshot: str | os.PathLike | None = None, offline: bool = True,
                  chromium: str | None = None, timeout: float = 60.0, width: int = 1400, height: int = 900,
                  script: str | None = None) -> dict[str, Any]:
    """Open a saved map in headless Chromium (DevTools protocol over a pipe) and report what rendered.

    Parameters
    ----------
    path : the HTML file.
    screenshot : write a PNG screenshot here.
    offline : emulate a machine with no network (every request fails).
    chromium : the browser executable (default: ``chromium`` / ``google-chrome`` on PATH).
    timeout : seconds to wait for the page.
    script : extra JavaScript evaluated after the checks; its (JSON-serialisable) value is returned as
        ``"script"``.

    Returns
    -------
    ``{"load_s", "render_s", "console_errors", "dialogs", "requests", "check": {...}}`` — ``check`` lists
    the layer-control overlays, every legend section with its item count and the number of features drawn,
    and the controls found. ``render_s`` is the time from navigation to the first render of the map.
    """
    import select
    import subprocess
    import tempfile
    import time

    exe = chromium or _find_chromium()
    if exe is None:
        raise FileNotFoundError("no Chromium found (install the 'chromium' package)")
    url = Path(path).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="gp-chromium-") as profile:
        r_cmd, w_cmd = os.pipe()
        r_out, w_out = os.pipe()

        def child_fds() -> None:
            # our pipe ends become fds 3 (commands in) and 4 (replies out); every other descriptor is
            # close-on-exec (Python's default), so nothing else leaks into the browser
            a, b = os.dup(r_cmd), os.dup(w_out)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={width},{height}",
                "--remote-debugging-pipe", "about:blank"]
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                preexec_fn=child_fds, close_fds=False)  # noqa: PLW1509 - fds 3/4 must survive
        os.close(r_cmd)
        os.close(w_out)
        buf = b""
        counter = 0
        events: list[dict[str, Any]] = []

        def send(method: str, params: dict | None = None, session: str | None = None) -> int:
            nonlocal counter
            counter += 1
            msg: dict[str, Any] = {"id": counter, "method": method, "params": params or {}}
            if session:
                msg["sessionId"] = session
            os.write(w_cmd, json.dumps(msg).encode() + b"\0")
            return counter

        def pump(deadline: float) -> None:
            nonlocal buf
            wait = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([r_out], [], [], wait)
            if ready:
                chunk = os.read(r_out, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium exited")
                buf += chunk
                while b"\0" in buf:
                    raw, buf = buf.split(b"\0", 1)
                    events.append(json.loads(raw))

        def call(method: str, params: dict | None = None, session: str | None = None) -> dict[str, Any]:
            mid = send(method, params, session)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                for k, ev in enumerate(events):
                    if ev.get("id") == mid:
                        events.pop(k)
                        if "error" in ev:
                            raise RuntimeError(f"{method}: {ev['error']}")
                        return ev.get("result", {})
                pump(deadline)
            raise TimeoutError(method)

        console: list[str] = []
        dialogs: list[str] = []
        requests: list[str] = []
        seen: list[dict[str, Any]] = []

        def drain(session: str) -> None:
            keep = []
            for ev in events:
                if "id" in ev:
                    keep.append(ev)
                    continue
                seen.append(ev)
                meth, p = ev.get("method"), ev.get("params", {})
                if meth == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                    console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
                elif meth == "Runtime.exceptionThrown":
                    d = p.get("exceptionDetails", {})
                    console.append(str(d.get("exception", {}).get("description") or d.get("text")))
                elif meth == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                    console.append(str(p["entry"].get("text")) + " " + str(p["entry"].get("url", "")))
                elif meth == "Page.javascriptDialogOpening":
                    dialogs.append(str(p.get("message")))
                    send("Page.handleJavaScriptDialog", {"accept": True}, session)
                elif meth == "Network.requestWillBeSent":
                    u = p.get("request", {}).get("url", "")
                    if not u.startswith(("data:", "file:", "about:")):
                        requests.append(u)
            events[:] = keep

        try:
            target = call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                call(f"{domain}.enable", {}, session)
            if offline:
                call("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1,
                                                          "uploadThroughput": -1}, session)
            call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                        "mobile": False}, session)
            t0 = time.monotonic()
            call("Page.navigate", {"url": url}, session)
            load_s = render_s = None
            deadline = t0 + timeout
            while time.monotonic() < deadline:
                drain(session)
                if load_s is None and any(e.get("method") == "Page.loadEventFired" for e in seen):
                    load_s = time.monotonic() - t0
                if load_s is not None:
                    r = call("Runtime.evaluate", {"expression": "!!window.GP_READY && new Promise(function(res){"
                                                  "requestAnimationFrame(function(){requestAnimationFrame("
                                                  "function(){res(true)})})})", "awaitPromise": True,
                                                  "returnByValue": True}, session)
                    if r.get("result", {}).get("value"):
                        render_s = time.monotonic() - t0
                        break
                pump(min(deadline, time.monotonic() + 0.05))
            if screenshot is not None:  # the map as it opens, before the checks switch every layer on
                png = call("Page.captureScreenshot", {"format": "png"}, session)["data"]
                with atomic_path(screenshot) as tmp:
                    tmp.write_bytes(base64.b64decode(png))
            check = json.loads(call("Runtime.evaluate", {"expression": _CHECK_JS, "returnByValue": True},
                                    session)["result"].get("value") or "{}")
            extra = None
            if script:
                extra = call("Runtime.evaluate", {"expression": script, "returnByValue": True, "awaitPromise": True},
                             session)["result"].get("value")
            settle = time.monotonic() + 0.3
            while time.monotonic() < settle:
                pump(settle)
            drain(session)
            try:
                send("Browser.close")
            except OSError:
                pass
        finally:
            os.close(w_cmd)
            os.close(r_out)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return {"load_s": load_s, "render_s": render_s, "console_errors": console, "dialogs": dialogs,
            "requests": requests, "check": check, "script": extra}
