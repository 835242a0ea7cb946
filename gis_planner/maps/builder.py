"""The map builder and the public maps: :func:`plan_map`, :func:`bundle_map`, :func:`coverage_map` and
:func:`write_run_map` (``map.html`` of a run)."""

from __future__ import annotations

import dataclasses
import html
import os
from pathlib import Path
from typing import Any

import folium
import geopandas as gpd
import shapely

from .._errors import ConfigError
from .context import MapContext, facility_type_name, map_context
from .encode import tolerance_m
from .layers import LAYERS, Drawing
from .page import Controls, make_offline, save_map
from .style import labels, load_style

__all__ = ["BASEMAPS", "bundle_map", "coverage_map", "plan_map", "write_run_map"]

#: basemap keys accepted by ``basemap=`` (``None`` / ``"none"``: no basemap).
BASEMAPS = ("osm", "tianditu", "amap")


def _basemap(m: folium.Map, basemap: str | None, lang: str, tianditu_key: str | None) -> str:
    """Add the basemap tile layer(s); return the coordinate system the layers must be drawn in."""
    if basemap in (None, "", "none"):
        return "wgs84"
    if basemap not in BASEMAPS:
        raise ConfigError(f"basemap must be one of {', '.join(BASEMAPS)} or None, got {basemap!r}")
    spec = load_style()["basemaps"][basemap]
    text = labels(lang)
    kwargs: dict[str, Any] = {"max_zoom": 20, "max_native_zoom": spec["max_zoom"]}
    if "subdomains" in spec:
        kwargs["subdomains"] = spec["subdomains"]
    url = spec["url"]
    if basemap == "tianditu":
        key = tianditu_key or os.environ.get("TIANDITU_KEY")
        if not key:
            raise ConfigError("the Tianditu basemap needs a key: tianditu_key=..., [map] tianditu_key in "
                             "plan.toml or the TIANDITU_KEY environment variable")
        url = url.replace("{key}", key)
    folium.TileLayer(url, attr=spec["attribution"], name=text[f"basemap_{basemap}"], overlay=False,
                     control=True, **kwargs).add_to(m)
    if basemap == "tianditu" and "labels_url" in spec:
        folium.TileLayer(spec["labels_url"].replace("{key}", tianditu_key or os.environ.get("TIANDITU_KEY", "")),
                         attr=spec["attribution"], name=text["basemap_tianditu"] + " 注记", overlay=True,
                         control=False, **kwargs).add_to(m)
    return str(spec["coord_system"])


def _build(ctx: MapContext, *, lang: str, basemap: str | None, tianditu_key: str | None, focus: Any = None,
           mode: str = "plan", facility_type: str | None = None, service_areas: Any = True,
           title: str | None = None, detail_zoom: int | None = None, height: str = "100%") -> folium.Map:
    """A map of ``ctx``: every layer of :data:`~gis_planner.maps.layers.LAYERS` that ``mode`` draws, the
    controls and legend, zoomed to ``focus`` (default: the compounds)."""
    style = load_style()
    disp = style["display"]
    text = labels(lang)
    compounds = ctx.compounds
    lat = float(gpd.GeoSeries([shapely.box(*compounds.total_bounds).centroid], crs=ctx.crs).to_crs(4326).y.iloc[0])
    large = len(compounds) > int(disp["large_map_features"])
    if detail_zoom is None:
        detail_zoom = int(disp["detail_zoom"]) - (1 if large else 0)

    m = folium.Map(location=None, tiles=None, prefer_canvas=True, control_scale=False, zoom_start=14,
                   height=height, max_zoom=20)
    make_offline(m)
    coord_system = _basemap(m, basemap, lang, tianditu_key)
    drawing = Drawing(m=m, ctx=ctx, mode=mode, lang=lang, style=style, text=text, coord_system=coord_system,
                      tol_m=tolerance_m(lat, detail_zoom), precision=int(disp["precision"]), large=large,
                      facility_type=facility_type, service_areas=service_areas)
    for layer in LAYERS:
        if mode in layer.kinds:
            layer.draw(drawing)

    folium.LayerControl(collapsed=False, position="topright").add_to(m)
    fb = focus if focus is not None else compounds
    b = gpd.GeoSeries([shapely.box(*fb.total_bounds)], crs=ctx.crs).to_crs(4326).total_bounds
    bounds = [[float(b[1]), float(b[0])], [float(b[3]), float(b[2])]]
    ctext = {k: html.escape(text[k]) for k in ("fullscreen", "measure", "measure_hint", "measure_clear",
                                               "distance", "area", "legend", "north")}
    if title is None:
        title = text["title"] if ctx.name in ("", "plan") else f"{ctx.name} · {text['title']}"
    m.add_child(Controls(html.escape(title), ctext, drawing.legend, bounds, int(disp["label_min_zoom"]),
                         drawing.order))
    m.fit_bounds(bounds)
    return m


def _map_settings(result: Any, basemap: Any, tianditu_key: str | None) -> tuple[str | None, str | None]:
    cfg = _run_map_settings(result)
    if basemap == "config":
        basemap = cfg.get("basemap", "osm")
    if basemap in ("none", ""):
        basemap = None
    return basemap, tianditu_key or cfg.get("tianditu_key") or None


def _run_map_settings(result: Any) -> dict[str, Any]:
    """The plan's ``[map]`` settings."""
    config = getattr(result, "config", None)
    settings = getattr(config, "settings", None) if config is not None else None
    return dict((settings or {}).get("map") or {})


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
    result : a :class:`~gis_planner.plan.PlanResult` (or :func:`gis_planner.io.load_run` of a finished run).
    lang : ``"zh"`` (Chinese labels, popups and legend) or ``"en"``.
    basemap : ``"osm"``, ``"tianditu"`` (needs ``tianditu_key``), ``"amap"`` (GCJ-02 tiles: every layer is
        shifted to GCJ-02 so it lines up), ``None`` for no basemap, or ``"config"`` for the plan's ``[map]``
        settings.
    tianditu_key : the 天地图 key (default: ``[map] tianditu_key`` or ``$TIANDITU_KEY``).
    service_areas : True computes the walk-time areas of the living-circle tiers (5/10/15 minutes,
        :func:`gis_planner.service_areas.band_minutes`) of the facilities the plan checks (and of proposed
        facilities) along the road network; False leaves them out; or a GeoDataFrame with ``minutes`` and
        geometry to draw.
    detail_zoom : geometries are simplified to half a pixel at this zoom (default 18, 17 for large maps).
    title : map title (default: plan name · 片区化改造规划图).

    Examples
    --------
    >>> m = plan_map(result, basemap=None)         # doctest: +SKIP
    >>> save_map(m, "outputs/sample/map.html")     # doctest: +SKIP
    """
    basemap, tianditu_key = _map_settings(result, basemap, tianditu_key)
    ctx = map_context(result)
    return _build(ctx, lang=lang, basemap=basemap, tianditu_key=tianditu_key, service_areas=service_areas,
                  detail_zoom=detail_zoom, title=title)


def bundle_map(result: Any, bundle_id: str, *, lang: str = "zh", basemap: str | None = "osm",
               tianditu_key: str | None = None, margin_m: float | None = None,
               service_areas: bool = False) -> folium.Map:
    """Map of one bundle (片区): its compounds by eligibility, outline, nearby vacant land, facilities,
    proposed facilities and its pairing lines, zoomed to the bundle plus ``margin_m`` metres.

    Parameters
    ----------
    result : a PlanResult (or :func:`gis_planner.io.load_run`).
    bundle_id : the bundle to show (``"B001"``).
    margin_m : features within this distance of the bundle are drawn too (metres; default
        ``[display] bundle_margin_m`` of ``data/map_style.toml``, 500 m).
    service_areas : draw the walk-time service areas of the facilities shown.
    """
    basemap, tianditu_key = _map_settings(result, basemap, tianditu_key)
    ctx = map_context(result)
    if margin_m is None:
        margin_m = float(load_style()["display"]["bundle_margin_m"])
    if ctx.bundles is None or str(bundle_id) not in set(ctx.bundles["bundle_id"].astype(str)):
        raise KeyError(f"no bundle {bundle_id!r} in the result")
    bundle = ctx.bundles[ctx.bundles["bundle_id"].astype(str) == str(bundle_id)]
    area = shapely.buffer(bundle.union_all(), margin_m)

    def near(g: gpd.GeoDataFrame | None) -> gpd.GeoDataFrame | None:
        if g is None:
            return None
        g2 = g.to_crs(ctx.crs)
        return g2[g2.intersects(area)]

    sub = dataclasses.replace(ctx, compounds=near(ctx.compounds), bundles=bundle, vacant=near(ctx.vacant),
                              facilities=near(ctx.facilities), proposed=near(ctx.proposed), boundaries=None)
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
    type (≤5, ≤10, ≤15, beyond, unreachable: the living-circle tiers' minutes), the facilities and proposed
    facilities of the type, and their 5/10/15-minute service areas.

    Parameters
    ----------
    result : a PlanResult (or :func:`gis_planner.io.load_run`).
    facility_type : a facility type key (``kindergarten``) or its Chinese / English name (``幼儿园``).
    """
    basemap, tianditu_key = _map_settings(result, basemap, tianditu_key)
    ctx = map_context(result)
    key = ctx.standards.type_key(facility_type) or str(facility_type)
    tname = facility_type_name(ctx.standards, key, lang)
    title = f"{ctx.name} · {tname}{'服务覆盖' if lang == 'zh' else ' coverage'}"
    return _build(ctx, lang=lang, basemap=basemap, tianditu_key=tianditu_key, mode="coverage",
                  facility_type=key, service_areas=service_areas, title=title)


def write_run_map(result: Any, outdir: str | os.PathLike | None = None, *, lang: str | None = None) -> tuple[Path, int]:
    """Draw ``map.html`` of a run with the plan's ``[map]`` settings (basemap, key, language) and save it.

    Parameters
    ----------
    result : the PlanResult (or :func:`gis_planner.io.load_run`).
    outdir : the run's output folder (default ``result.outdir``).
    lang : label language (default: the plan's ``[map] lang``).
    """
    outdir = Path(outdir if outdir is not None else result.outdir)
    cfg = _run_map_settings(result)
    m = plan_map(result, lang=lang or cfg.get("lang", "zh"), basemap="config")
    return save_map(m, outdir / "map.html")
