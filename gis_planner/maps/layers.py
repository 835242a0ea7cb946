"""The map's layers: one helper per layer kind, and :data:`LAYERS`, the table of which layers each kind of map
draws and in which order (later layers are drawn on top)."""

from __future__ import annotations

import html
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from folium.map import Layer

from .._errors import ConfigError
from ..eligibility import load_rules
from ..service_areas import band_minutes, service_bands
from .context import (
    MapContext,
    eligibility_labels,
    facility_type_name,
    missing_types,
    walking_graph,
)
from .encode import dataset, display_frame, encode_geometries, encode_points, popup_rows, tooltips
from .page import Dataset, JsLayer
from .style import icon_svg, legend_section

__all__ = ["LAYERS", "Drawing", "MapLayer", "greedy_colours", "hatch_lines", "service_points", "walk_minutes"]

#: the kinds of map (:func:`~gis_planner.maps.plan_map`, ``bundle_map``, ``coverage_map``)
MAP_KINDS = frozenset({"plan", "bundle", "coverage"})


@dataclass
class Drawing:
    """A map being drawn: the folium map, what to draw and how, and the legend and layer order so far.

    Attributes
    ----------
    m : the folium map the layers are added to.
    ctx : the run's layers, standards and settings.
    mode : the kind of map: ``"plan"``, ``"bundle"`` or ``"coverage"``.
    lang : label language (``"zh"`` / ``"en"``).
    style : ``data/map_style.toml``; ``text`` its labels in ``lang``.
    coord_system : ``"wgs84"`` or ``"gcj02"`` (an Amap basemap).
    tol_m : geometries are simplified to this tolerance (metres, half a pixel at the detail zoom).
    precision : decimals of the coordinates written.
    large : a large map (more compounds than ``[display] large_map_features``).
    facility_type : the facility type of a coverage map (None: every type).
    service_areas : True to compute the service areas, False / None for none, or a GeoDataFrame to draw.
    legend : (layer, legend HTML) per layer with a legend section, in drawing order.
    order : layers kept on top when others are switched on.
    """

    m: folium.Map
    ctx: MapContext
    mode: str
    lang: str
    style: dict[str, Any]
    text: dict[str, str]
    coord_system: str
    tol_m: float
    precision: int
    large: bool
    facility_type: str | None = None
    service_areas: Any = True
    legend: list[tuple[Layer, str]] = field(default_factory=list)
    order: list[Layer] = field(default_factory=list)
    compound_data: Dataset | None = None
    compounds_shown: gpd.GeoDataFrame | None = None
    n_missing: np.ndarray | None = None

    @property
    def display(self) -> dict[str, Any]:
        """The ``[display]`` style settings."""
        return self.style["display"]

    @property
    def smooth(self) -> float:
        """Leaflet's path smoothing factor of polygon layers (coarser on large maps)."""
        return float(self.display["large_map_smooth" if self.large else "smooth"])

    def show(self, g: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        """A layer as drawn: simplified to :attr:`tol_m`, in the basemap's coordinate system."""
        return display_frame(g, self.tol_m, self.coord_system)

    def add_data(self, shown: gpd.GeoDataFrame, tips: list[str], section: str | None = None,
                 popup_source: pd.DataFrame | None = None) -> Dataset:
        """Add a shared dataset of ``shown``'s geometries with tooltips and (for ``section``) popup rows."""
        fields = rows = None
        if section is not None:
            fields, rows = popup_rows(shown if popup_source is None else popup_source, section, self.lang)
        data = dataset(encode_geometries(shown.geometry.values, self.precision), tips, fields, rows)
        self.m.add_child(data)
        return data

    def add_layer(self, name: str, data: Dataset, options: dict[str, Any], *, legend: Sequence[tuple[str, str, str]]
                  | None, show: bool = True, on_top: bool = False, builder: str = "GP.shapes") -> JsLayer:
        """Add an overlay built by the runtime's ``builder`` from ``data``, with its legend section (``legend``
        items, see :func:`~gis_planner.maps.style.legend_section`; None: no section)."""
        lay = JsLayer(name, data, builder, options, show=show)
        self.m.add_child(lay)
        if on_top:
            self.order.append(lay)
        if legend is not None:
            self.legend.append((lay, legend_section(name, legend)))
        return lay


@dataclass(frozen=True)
class MapLayer:
    """One row of the layer table: the layer kind, the maps that draw it, the helper that draws it."""

    key: str
    kinds: frozenset[str]
    draw: Callable[[Drawing], None]


# --------------------------------------------------------------------------------------------- compounds
def _compound_data(d: Drawing) -> None:
    """The compounds dataset, shared by the compound colourings."""
    cd = d.show(d.ctx.compounds)
    d.n_missing, names = missing_types(cd, d.ctx.standards, d.lang)
    d.compounds_shown = cd
    d.compound_data = d.add_data(cd, tooltips(cd, "compound_id"), "compounds", cd.assign(missing_types=names))


def _bin(values: np.ndarray, bins: Sequence[float]) -> np.ndarray:
    return np.clip(np.searchsorted(np.asarray(bins, float), values, side="right") - 1, 0, len(bins) - 1)


def walk_minutes(ctx: MapContext, cd: pd.DataFrame, facility_type: str) -> np.ndarray:
    """Walk minutes from each compound to the nearest facility of the type (NaN = none reachable)."""
    mpm = ctx.standards.metres_per_minute
    if ctx.coverage is not None and {"compound_id", "facility_type", "distance_m"} <= set(ctx.coverage.columns):
        t = ctx.coverage[ctx.coverage["facility_type"].astype(str) == facility_type]
        dist = dict(zip(t["compound_id"].astype(str), pd.to_numeric(t["distance_m"], errors="coerce"), strict=True))
        return np.array([dist.get(str(c), np.nan) for c in cd["compound_id"]], dtype=float) / mpm
    col = f"dist_{facility_type}_m"
    if col in cd.columns:
        return pd.to_numeric(cd[col], errors="coerce").to_numpy(float) / mpm
    raise ConfigError(f"no coverage results for facility type {facility_type!r} (not in the plan's profile?)")


def _compounds_by_coverage(d: Drawing) -> None:
    """Compounds by the walk to the nearest facility of the type: within each band, beyond, unreachable."""
    minutes = walk_minutes(d.ctx, d.compounds_shown, d.facility_type)
    bands = band_minutes(d.ctx.standards)
    cv = d.style["coverage"]
    lang = d.lang
    names = [cv[f"within_{lang}"].format(minutes=f"{b:g}") for b in bands]
    names += [cv[f"beyond_{lang}"].format(minutes=f"{bands[-1]:g}"), cv[f"unreachable_{lang}"]]
    if len(cv["colors"]) != len(names):
        raise ValueError(f"map_style.toml [coverage] colors: {len(names)} colours needed (one per band of "
                         f"{bands}, beyond, unreachable), got {len(cv['colors'])}")
    cat = np.where(np.isnan(minutes), len(bands) + 1, _bin(np.nan_to_num(minutes, nan=0.0), [0, *bands]))
    cat = np.where(~np.isnan(minutes) & (minutes <= bands[0]), 0, cat)
    tname = facility_type_name(d.ctx.standards, d.facility_type, lang)
    d.add_layer(d.text["compounds_coverage"].format(type=tname), d.compound_data,
                {"cat": cat.tolist(), "colors": cv["colors"], "weight": 0.6, "stroke": "#555", "smooth": d.smooth},
                legend=[("fill", c, lab) for c, lab in zip(cv["colors"], names, strict=True)])


def greedy_colours(bundles: gpd.GeoDataFrame, n_colours: int, gap_m: float) -> np.ndarray:
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


def _compounds_by_bundle(d: Drawing) -> None:
    """Compounds coloured by bundle, neighbouring bundles in different colours."""
    cd, bundles, palette = d.compounds_shown, d.ctx.bundles, d.style["palette"]
    pal = list(palette["qualitative"])
    grey = palette["unbundled"]
    bid = cd["bundle_id"].astype("object").where(cd["bundle_id"].notna(), None) if "bundle_id" in cd.columns \
        else pd.Series([None] * len(cd), index=cd.index)
    bundle_colour: dict[str, int] = {}
    if bundles is not None:
        ci = greedy_colours(bundles, len(pal), float(palette["bundle_colour_gap_m"]))
        bundle_colour = dict(zip(bundles["bundle_id"].astype(str), ci.tolist(), strict=True))
    cat = np.array([bundle_colour.get(str(b), zlib.crc32(str(b).encode()) % len(pal)) if b else len(pal) for b in bid])
    items = []
    if bundles is not None:
        ids = sorted(bundles["bundle_id"].astype(str))
        shown = ids if len(ids) <= 12 else ids[:10]
        items += [("fill", pal[bundle_colour[b]], b) for b in shown]
        if len(ids) > len(shown):
            items.append(("fill", pal[0], d.text["more_bundles"].format(n=len(ids))))
    items.append(("fill", grey, d.text["unbundled"]))
    d.add_layer(d.text["compounds_bundle"], d.compound_data,
                {"cat": cat.tolist(), "colors": [*pal, grey], "weight": 0.6, "stroke": "#666",
                 "fillOpacity": 0.65, "smooth": d.smooth}, legend=items, show=d.mode == "plan")


def _counted(label: str, n: int, households: float, lang: str) -> str:
    """A legend label with its number of compounds and households (``待核实（12个小区，3,400户）``)."""
    if lang == "zh":
        return f"{label}（{n}个小区，{int(households):,}户）"
    return f"{label} ({n} compounds, {int(households):,} hh)"


def _households(cd: pd.DataFrame) -> np.ndarray:
    if "households" not in cd.columns:
        return np.zeros(len(cd))
    return pd.to_numeric(cd["households"], errors="coerce").fillna(0).to_numpy(float)


def hatch_lines(polygons: Any, spacing_m: float) -> np.ndarray:
    """Per polygon (metric CRS), its outline and 45° hatch lines ``spacing_m`` apart clipped to it, as one
    MultiLineString: a hatch the map draws on any renderer (canvas or SVG) and the site plans match.

    Parameters
    ----------
    polygons : (Multi)Polygons in a metric CRS, none empty.
    spacing_m : distance between hatch lines along the x axis, metres (> 0).

    Examples
    --------
    >>> g = hatch_lines([shapely.box(0, 0, 10, 10)], 5.0)[0]
    >>> g.geom_type, round(g.length - 40.0, 3) > 0
    ('MultiLineString', True)
    """
    polys = np.asarray(polygons, dtype=object)
    n = len(polys)
    if not n:
        return np.empty(0, dtype=object)
    b = shapely.bounds(polys)
    lo = np.floor((b[:, 0] - b[:, 3]) / spacing_m)
    hi = np.ceil((b[:, 2] - b[:, 1]) / spacing_m)
    counts = (hi - lo + 1).astype(np.int64)
    idx = np.repeat(np.arange(n), counts)
    k = lo[idx] + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    c, y0, y1 = k * spacing_m, b[idx, 1], b[idx, 3]  # lines x − y = c across each bounding box
    lines = shapely.linestrings(np.stack([np.stack([c + y0, y0], 1), np.stack([c + y1, y1], 1)], 1))
    parts, where = shapely.get_parts(shapely.intersection(lines, polys[idx]), return_index=True)
    keep = shapely.get_type_id(parts) == 1
    outline, owner = shapely.get_parts(shapely.boundary(polys), return_index=True)
    geoms = np.concatenate([outline, parts[keep]])
    owners = np.concatenate([owner, idx[where[keep]]])
    order = np.argsort(owners, kind="stable")
    return shapely.multilinestrings(geoms[order], indices=owners[order])


def _compounds_by_eligibility(d: Drawing) -> None:
    """Compounds coloured by eligibility status; 待核实 (``verify``) hatched, each legend entry with its number
    of compounds and households."""
    cd, el = d.compounds_shown, d.style["eligibility"]
    status = eligibility_labels(d.lang)
    keys = list(el)
    ekey = cd["eligibility"].astype("object").fillna("unknown") if "eligibility" in cd.columns else \
        pd.Series(["unknown"] * len(cd), index=cd.index)
    ekey = ekey.where(ekey.isin(keys), "unknown")
    ecat = ekey.map({k: i for i, k in enumerate(keys)}).to_numpy(int)
    present = [k for k in keys if (ekey == k).any()]
    colours = [el[k] for k in keys]
    hh = _households(cd)
    legend = [("fill", el[k],
               _counted(status.get(k, k), int((ekey == k).sum()), hh[(ekey == k).to_numpy()].sum(), d.lang))
              for k in present]
    d.add_layer(d.text["compounds_eligibility"], d.compound_data,
                {"cat": ecat.tolist(), "colors": colours, "weight": 0.6, "stroke": "#666",
                 "fillOpacity": 0.7, "smooth": d.smooth},
                legend=legend, show=d.mode == "bundle")


def _compounds_to_verify(d: Drawing) -> None:
    """Compounds still to verify (status ``verify``: bundled and costed provisionally) hatched and outlined over
    the other compound layers, shown from the start so a reviewer sees them on every plan and bundle map."""
    comp = d.ctx.compounds
    if comp is None or "eligibility" not in comp.columns:
        return
    sub = comp[comp["eligibility"].eq("verify").to_numpy(bool) & comp.geometry.notna().to_numpy()
               & ~comp.geometry.is_empty.to_numpy()]
    if not len(sub):
        return
    spec = load_rules()["status"]["verify"]
    hatched = sub.set_geometry(gpd.GeoSeries(hatch_lines(sub.geometry.values, float(spec["hatch_spacing_m"])),
                                             index=sub.index, crs=sub.crs))
    shown = d.show(hatched)
    _, names = missing_types(shown, d.ctx.standards, d.lang)
    data = d.add_data(shown, tooltips(shown, "compound_id"), "compounds", shown.assign(missing_types=names))
    colour = str(spec["hatch_colour"])
    name = str(spec.get(f"layer_{d.lang}", spec.get(f"text_{d.lang}", "verify")))
    d.add_layer(name, data, {"color": colour, "fill": False, "weight": 1.4, "opacity": 0.95, "smooth": d.smooth},
                legend=[("hatch", colour, _counted(eligibility_labels(d.lang)["verify"], len(shown),
                                                   _households(shown).sum(), d.lang))])


def _compounds_by_gaps(d: Drawing) -> None:
    """Compounds by the number of facility types they miss."""
    gp = d.style["gaps"]
    gcat = _bin(d.n_missing.astype(float), gp["bins"])
    d.add_layer(d.text["compounds_gaps"], d.compound_data,
                {"cat": gcat.tolist(), "colors": gp["colors"], "weight": 0.6, "stroke": "#666",
                 "fillOpacity": 0.7, "smooth": d.smooth},
                legend=[("fill", c, lab) for c, lab in zip(gp["colors"], gp[f"labels_{d.lang}"], strict=True)],
                show=False)


# --------------------------------------------------------------------------------------------- other layers
def _outlined(d: Drawing, source: gpd.GeoDataFrame, section: str, id_col: str, colour_key: str,
              options: dict[str, Any], legend: tuple[str, str], *, name_col: str = "name", show: bool = True,
              on_top: bool = False) -> gpd.GeoDataFrame:
    """A layer of ``source`` in one colour (``[palette] colour_key``) named ``text[section]``, with popups of
    ``[fields.section]``; ``legend`` is (swatch kind, label key). Returns the frame as drawn."""
    shown = d.show(source)
    data = d.add_data(shown, tooltips(shown, id_col, name_col), section)
    colour = d.style["palette"][colour_key]
    d.add_layer(d.text[section], data, {"color": colour, **options}, legend=[(legend[0], colour, d.text[legend[1]])],
                show=show, on_top=on_top)
    return shown


def _bundles(d: Drawing) -> None:
    """Bundle outlines (red dashed lines), with their labels from the label zoom on."""
    if d.ctx.bundles is None:
        return
    bd = _outlined(d, d.ctx.bundles, "bundles", "bundle_id", "bundle_outline",
                   {"fill": False, "weight": 2.5, "dash": "8 4", "smooth": d.smooth}, ("dash", "bundles"),
                   name_col="bundle_id", on_top=True)
    labels = dataset(encode_points(bd.geometry.values, d.precision), [html.escape(str(b)) for b in bd["bundle_id"]])
    d.m.add_child(labels)
    d.add_layer(d.text["bundle_labels"], labels, {"minZoom": int(d.display["label_min_zoom"]) if d.large else 0},
                legend=None, builder="GP.labels")


def _vacant(d: Drawing) -> None:
    """Vacant land (存量用地) by kind."""
    if d.ctx.vacant is None:
        return
    vd = d.show(d.ctx.vacant)
    vc, vl = d.style["vacant"], d.style["vacant_labels_zh"]
    kinds = vd["kind"].astype("object").fillna("other").astype(str) if "kind" in vd.columns else \
        pd.Series(["other"] * len(vd), index=vd.index)
    ktypes = sorted(set(kinds))

    def kind_label(k: str) -> str:
        return vl.get(k, k) if d.lang == "zh" else k.replace("_", " ")

    vd = vd.assign(kind_label=[kind_label(k) for k in kinds])
    data = d.add_data(vd, tooltips(vd, "parcel_id", extra=vd["kind_label"]), "vacant")
    colours = [vc.get(k, vc["other"]) for k in ktypes]
    d.add_layer(d.text["vacant"], data, {"cat": [ktypes.index(k) for k in kinds], "colors": colours,
                                         "stroke": "#54278f", "weight": 1.2, "fillOpacity": 0.75, "dash": "3 2"},
                legend=[("fill", c, kind_label(k)) for k, c in zip(ktypes, colours, strict=True)])


def _boundaries(d: Drawing) -> None:
    """Administrative boundaries (hidden at first)."""
    if d.ctx.boundaries is not None:
        _outlined(d, d.ctx.boundaries, "boundaries", "boundary_id", "boundary",
                  {"fill": False, "weight": 1.5, "dash": "2 6", "popup": False}, ("dash", "boundaries"), show=False)


def service_points(ctx: MapContext, mode: str, facility_type: str | None) -> gpd.GeoDataFrame | None:
    """The facilities (and proposed facilities) whose service areas a map draws, as points in ``ctx.crs``: of
    ``facility_type``, or on a plan map of the types the plan checks."""
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


def _service_areas(d: Drawing) -> None:
    """The walk-time service areas (one layer per band of :func:`~gis_planner.service_areas.band_minutes`)."""
    if d.service_areas is False or d.service_areas is None:
        return
    disp, ctx = d.display, d.ctx
    if isinstance(d.service_areas, gpd.GeoDataFrame):
        bands = d.service_areas
        if not len(bands):
            return
        shown = d.show(bands)
    else:
        pts = service_points(ctx, d.mode, d.facility_type)
        graph, noded = walking_graph(ctx) if pts is not None else (None, False)
        if graph is None:
            return
        bands = service_bands(
            graph, pts, band_minutes(ctx.standards), standards=ctx.standards,
            tol_m=float(disp["large_map_service_area_tol_m" if d.large else "service_area_tol_m"]),
            crossings_noded=noded, max_snap_m=float(ctx.network_setting("max_snap_m")),
            min_hole_m2=float(disp["large_map_min_hole_m2"]) if d.large else 0.0)
        if bands is None or not len(bands):
            return
        # computed bands are simplified already (to more than half a pixel): a topology-preserving simplify
        # of polygons with ~10⁵ holes would take longer than computing them
        shown = display_frame(bands, 0.0, d.coord_system)
    colours = d.style["palette"]["service_area"]
    for _, row in shown.sort_values("minutes", ascending=False).iterrows():
        mins = int(row["minutes"]) if float(row["minutes"]).is_integer() else row["minutes"]
        colour = colours.get(str(mins), d.style["palette"]["service_area_other"])
        name = d.text["service_area"].format(minutes=mins)
        data = dataset(encode_geometries([row.geometry], d.precision), [html.escape(name)])
        d.m.add_child(data)
        d.add_layer(name, data, {"color": colour, "weight": 0, "fillOpacity": 0.18, "popup": False,
                                 "interactive": False},
                    legend=[("fill", colour, name)], show=d.mode == "coverage")


def _projects(d: Drawing) -> None:
    """Revenue projects (收益项目)."""
    if d.ctx.projects is not None:
        _outlined(d, d.ctx.projects, "projects", "project_id", "project", {"weight": 2, "fillOpacity": 0.25},
                  ("ring", "project_default"))


def _pairings(d: Drawing) -> None:
    """Pairing lines bundle → revenue project, labelled with the amount (万元)."""
    if d.ctx.pairings is None or not len(d.ctx.pairings):
        return
    pr = d.show(d.ctx.pairings)
    amounts = pr["amount_cny"] if "amount_cny" in pr.columns else pd.Series([np.nan] * len(pr), index=pr.index)
    labels = [html.escape(d.text["pairing_label"].format(
        bundle=b, project=p, amount="—" if pd.isna(a) else f"{float(a) / 1e4:,.0f}"))
        for b, p, a in zip(pr.get("bundle_id", [""] * len(pr)), pr.get("project_id", [""] * len(pr)), amounts,
                           strict=True)]
    data = d.add_data(pr, labels, "pairings")
    colour = d.style["palette"]["pairing"]
    d.add_layer(d.text["pairings"], data, {"color": colour, "fill": False, "weight": 3, "dash": "10 6",
                                           "labels": labels},
                legend=[("dash", colour, d.text["pairings"])], on_top=True)


def _add_points(d: Drawing, g: gpd.GeoDataFrame, name: str, section: str, star: bool = False) -> None:
    """Facilities as icons by type (stars for proposed ones; canvas circles beyond ``max_icon_markers``)."""
    style, lang, standards = d.style, d.lang, d.ctx.standards
    types = g["facility_type"].astype("object").fillna("other").astype(str) if "facility_type" in g.columns else \
        pd.Series(["other"] * len(g), index=g.index)
    names = {t: facility_type_name(standards, t, lang) for t in set(types)}
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
        icons.append(icon_svg("star" if star else icon["shape"], colour, icon[f"glyph_{lang}"], size,
                              ring="#222" if star else "#fff"))
    tips = tooltips(g, "facility_id", extra=pd.Series(tnames, index=g.index))
    if star:
        default = d.text["proposed_default"]
        tips = [f"{html.escape(default)} · {t}" for t in tips]
    fields, rows = popup_rows(g, section, lang)
    data = dataset(encode_points(g.geometry.values, d.precision), tips, fields, rows)
    d.m.add_child(data)
    key_index = {k: i for i, k in enumerate(keys)}
    legend = [("svg", ic.replace(f'width="{size}" height="{size}"', 'width="16" height="16"'),
               facility_type_name(standards, k, lang)) for k, ic in zip(keys, icons, strict=True)]
    d.add_layer(name, data, {"cat": [key_index[t] for t in types], "icons": icons, "colors": colours,
                             "size": size, "canvas": len(g) > int(d.display["max_icon_markers"])},
                legend=legend, builder="GP.points")


def _of_type(g: gpd.GeoDataFrame | None, facility_type: str | None) -> gpd.GeoDataFrame | None:
    if g is not None and facility_type is not None and "facility_type" in g.columns:
        return g[g["facility_type"].astype(str) == facility_type]
    return g


def _facilities(d: Drawing) -> None:
    """Existing facilities (of the map's type, if any)."""
    fac = _of_type(d.ctx.facilities, d.facility_type)
    if fac is None or not len(fac):
        return
    name = d.text["facilities"] if d.facility_type is None else d.text["facilities_type"].format(
        type=facility_type_name(d.ctx.standards, d.facility_type, d.lang))
    _add_points(d, d.show(fac), name, "facilities")


def _proposed(d: Drawing) -> None:
    """Facilities proposed by the siting stage (of the map's type, if any)."""
    prop = _of_type(d.ctx.proposed, d.facility_type)
    if prop is None or not len(prop):
        return
    _add_points(d, d.show(prop), d.text["proposed"], "proposed", star=True)


def _phasing(d: Drawing) -> None:
    """Bundles by the year the phasing puts them in (分期实施; off at first), unplaced bundles grey."""
    b = d.ctx.bundles
    if b is None or "phase_year" not in b.columns:
        return
    shown = d.show(b)
    years = pd.to_numeric(shown["phase_year"], errors="coerce")
    placed = sorted(int(y) for y in years.dropna().unique())
    ramp = d.style["phasing"]["years"]
    colour_of = {y: ramp[min(k, len(ramp) - 1)] for k, y in enumerate(placed)}
    unplaced = d.style["phasing"]["unplaced"]
    palette = [*(colour_of[y] for y in placed), unplaced]
    cat = [placed.index(int(y)) if pd.notna(y) else len(placed) for y in years]
    tips = [html.escape(f"{bid} · " + (d.text["phase_year"].format(year=int(y)) if pd.notna(y)
                                       else d.text["phase_unplaced"]))
            for bid, y in zip(shown["bundle_id"].astype(str), years, strict=True)]
    data = d.add_data(shown, tips, "bundles")
    legend = [("fill", colour_of[y], d.text["phase_year"].format(year=y)) for y in placed]
    if years.isna().any():
        legend.append(("fill", unplaced, d.text["phase_unplaced"]))
    d.add_layer(d.text["phasing"], data, {"cat": cat, "colors": palette, "weight": 1, "fillOpacity": 0.6,
                                          "smooth": d.smooth}, legend=legend, show=False)


def _connections(d: Drawing) -> None:
    """Walls to open (打通围墙) and footpaths to connect (连通步行通道) between member compounds of a bundle."""
    c = d.ctx.connections
    if c is None:
        return
    shown = d.show(c)
    kinds = shown["kind_zh" if d.lang == "zh" else "kind_en"].astype(str)
    tips = [html.escape(f"{b} {a}–{z} · {k}") for b, a, z, k in zip(
        shown["bundle_id"].astype(str), shown["compound_a"].astype(str), shown["compound_b"].astype(str), kinds,
        strict=True)]
    data = d.add_data(shown, tips)
    colour = d.style["palette"]["connection"]
    d.add_layer(d.text["connections"], data, {"color": colour, "fill": False, "weight": 5},
                legend=[("line", colour, d.text["connections"])], on_top=True)


def _constraints(d: Drawing) -> None:
    """Constraint findings flagged for 一事一议 (heritage overlap, green space lost, narrow fire lane, tenure)."""
    f = d.ctx.constraints
    if f is None:
        return
    shown = d.show(f[f.geometry.notna() & ~f.geometry.is_empty])
    if not len(shown):
        return
    label = shown["rule_zh" if d.lang == "zh" else "rule_id"].astype(str)
    tips = [html.escape(f"{o} · {r}") for o, r in zip(shown["object_id"].astype(str), label, strict=True)]
    data = d.add_data(shown, tips)
    colour = d.style["palette"]["constraint"]
    d.add_layer(d.text["constraints"], data, {"color": colour, "weight": 3, "fillOpacity": 0.35, "dash": "4 3"},
                legend=[("fill", colour, d.text["constraints"])], on_top=True)


_PLAN_AND_BUNDLE = frozenset({"plan", "bundle"})

#: The layer table, in drawing order: which kinds of map draw each layer (a layer without data is skipped).
LAYERS: tuple[MapLayer, ...] = (
    MapLayer("compounds", MAP_KINDS, _compound_data),
    MapLayer("compounds_coverage", frozenset({"coverage"}), _compounds_by_coverage),
    MapLayer("compounds_bundle", _PLAN_AND_BUNDLE, _compounds_by_bundle),
    MapLayer("compounds_eligibility", _PLAN_AND_BUNDLE, _compounds_by_eligibility),
    MapLayer("compounds_gaps", _PLAN_AND_BUNDLE, _compounds_by_gaps),
    MapLayer("compounds_verify", _PLAN_AND_BUNDLE, _compounds_to_verify),
    MapLayer("phasing", frozenset({"plan"}), _phasing),
    MapLayer("bundles", _PLAN_AND_BUNDLE, _bundles),
    MapLayer("connections", _PLAN_AND_BUNDLE, _connections),
    MapLayer("vacant", MAP_KINDS, _vacant),
    MapLayer("boundaries", frozenset({"plan"}), _boundaries),
    MapLayer("service_areas", MAP_KINDS, _service_areas),
    MapLayer("projects", _PLAN_AND_BUNDLE, _projects),
    MapLayer("pairings", _PLAN_AND_BUNDLE, _pairings),
    MapLayer("facilities", MAP_KINDS, _facilities),
    MapLayer("proposed", MAP_KINDS, _proposed),
    MapLayer("constraints", _PLAN_AND_BUNDLE, _constraints),
)
