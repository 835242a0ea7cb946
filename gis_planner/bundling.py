"""Bundling eligible compounds into 片区 projects: adjacency graph with barriers, contiguity-constrained clustering."""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from gis_planner import eligibility
from gis_planner._errors import ConfigError, LayerError
from gis_planner.datafiles import load_toml
from gis_planner.schema import load_schema

__all__ = ["adjacency", "bundle", "load_settings", "PAIR_COLUMNS", "BUNDLE_COLUMNS"]

PAIR_COLUMNS = [
    "compound_a", "compound_b", "gap_m", "adjacent", "reason", "reason_zh", "reason_en",
    "road_barrier", "other_barrier", "barrier_id", "same_unit",
]
BUNDLE_COLUMNS = [
    "bundle_id", "member_ids", "n_compounds", "households", "floor_area_m2", "cost_cny", "area_m2",
    "parcel_ids", "project_ids", "compactness", "subdistrict", "community", "isolated", "over_cap", "split",
    "scattered", "n_secondary", "rationale_zh", "rationale_en", "geometry",
]
_UNITS = {"subdistrict": ("街道", "subdistricts", "subdistrict"), "community": ("社区", "communities", "community")}
_RULE_TYPES = {
    "gap_m": float, "barrier_classes": list, "same_unit": str, "max_households": float,
    "max_floor_area_m2": float, "max_cost_cny": float, "min_floor_area_m2": float, "touch_tol_m": float,
    "max_neighbours": float,
}
_CAP_COLUMNS = (("max_households", "households"), ("max_floor_area_m2", "floor_area_m2"),
                ("max_cost_cny", "cost_cny"))
_REL_EPS = 1e-9


# --------------------------------------------------------------------------------------------- settings
@cache
def _road_classes() -> dict[str, str]:
    """Road class vocabulary of ``data/schema.toml`` → its first Chinese name (arterial → 主干路)."""
    vocab = load_schema()["values"]["road_classes"]
    return {key: names[0] for key, names in vocab.items()}


def load_settings(overrides: Mapping[str, Any] | None = None) -> dict:
    """Bundling settings: ``[settings]`` of ``data/bundling.toml`` with the ``[bundling]`` overrides of a plan.

    Parameters
    ----------
    overrides : e.g. ``{"gap_m": 50, "max_households": 3000, "same_unit": "community"}``. ``same_unit``
        is ``"subdistrict"``, ``"community"`` or ``"none"``/``None``; caps of 0 or ``None`` mean no cap.

    Returns
    -------
    dict of settings (without the ``source``/``verified`` bookkeeping keys).

    Raises
    ------
    ConfigError naming ``bundling`` and the key, for unknown keys, values of the wrong type or out of range.

    Examples
    --------
    >>> load_settings({"gap_m": 50})["gap_m"], load_settings()["same_unit"]
    (50.0, 'subdistrict')
    """
    base = load_toml("bundling.toml")["settings"]
    out = {k: v for k, v in base.items() if k in _RULE_TYPES}
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ConfigError(f"bundling: expected a table of settings, got {overrides!r}")
    for key, value in (overrides or {}).items():
        if key not in _RULE_TYPES:
            raise ConfigError(f"bundling: unknown setting {key!r}; known: {', '.join(sorted(_RULE_TYPES))}")
        want = _RULE_TYPES[key]
        if value is None and key in ("same_unit", "max_households", "max_floor_area_m2", "max_cost_cny"):
            value = "none" if key == "same_unit" else 0.0
        if want is list and isinstance(value, tuple | list):
            value = list(value)
        elif want is float and isinstance(value, int | float) and not isinstance(value, bool):
            value = float(value)
        elif not isinstance(value, want) or isinstance(value, bool):
            raise ConfigError(f"bundling.{key}: expected {want.__name__}, got {value!r}")
        out[key] = value
    _check_settings(out)
    return out


def _check_settings(s: dict) -> None:
    if s["same_unit"] not in ("subdistrict", "community", "none"):
        raise ConfigError(f"bundling.same_unit: {s['same_unit']!r} is not 'subdistrict', 'community' or 'none'")
    classes = _road_classes()
    if not all(isinstance(c, str) for c in s["barrier_classes"]):
        raise ConfigError(f"bundling.barrier_classes: expected a list of road classes (text), got "
                          f"{s['barrier_classes']!r}")
    bad = [c for c in s["barrier_classes"] if c not in classes]
    if bad:
        raise ConfigError(f"bundling.barrier_classes: unknown road class(es) {bad}; known: "
                          f"{', '.join(sorted(classes))}")
    for key in ("gap_m", "max_households", "max_floor_area_m2", "max_cost_cny", "min_floor_area_m2",
                "touch_tol_m", "max_neighbours"):
        if not math.isfinite(s[key]) or s[key] < 0:
            raise ConfigError(f"bundling.{key}: expected a finite number ≥ 0, got {s[key]!r}")


# ------------------------------------------------------------------------------------------- validation
def _check_layer(gdf: gpd.GeoDataFrame | None, name: str, id_col: str, kinds: Sequence[str],
                 crs) -> None:
    if gdf is None:
        return
    if not isinstance(gdf, gpd.GeoDataFrame):
        raise LayerError(f"{name}: expected a GeoDataFrame, got {type(gdf).__name__}")
    if gdf.crs is not None and gdf.crs.is_geographic:
        raise LayerError(f"{name}: CRS {gdf.crs.to_string()} is geographic (degrees); reproject to a metric CRS")
    if crs is not None and gdf.crs is not None and gdf.crs != crs:
        raise LayerError(f"{name}: CRS {gdf.crs.to_string()} differs from the compounds CRS {crs.to_string()}")
    if id_col and id_col not in gdf.columns:
        raise LayerError(f"{name}: required field {id_col!r} is missing")
    geoms = gdf.geometry.to_numpy()
    bad = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    if kinds:
        types = shapely.get_type_id(geoms)
        allowed = {"polygon": (3, 6), "line": (1, 2, 5)}
        ok = np.isin(types, [t for k in kinds for t in allowed[k]])
        bad |= ~ok
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        fid = gdf[id_col].iloc[pos] if id_col else gdf.index[pos]
        geom = geoms[pos]
        what = "empty geometry" if geom is None or shapely.is_empty(geom) else f"a {geom.geom_type}"
        raise LayerError(f"{name} row {pos + 1} ({id_col or 'index'} {fid!r}), field 'geometry': {what}; "
                         f"expected {' or '.join(kinds)}")
    if id_col:
        ids = gdf[id_col]
        dup = ids.isna().to_numpy() | ids.astype(str).duplicated().to_numpy()
        if dup.any():
            pos = int(np.flatnonzero(dup)[0])
            raise LayerError(f"{name} row {pos + 1}, field {id_col!r}: empty or duplicate id {ids.iloc[pos]!r}")


def _load(gdf: pd.DataFrame, field: str, name: str = "compounds") -> np.ndarray:
    """A non-negative numeric column as float64, NaN → 0."""
    values = pd.to_numeric(gdf[field], errors="coerce").astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    bad = np.flatnonzero((values < 0) | (np.isnan(values) & gdf[field].notna().to_numpy()))
    if bad.size:
        pos = int(bad[0])
        raise LayerError(f"{name} row {pos + 1} (compound_id {gdf['compound_id'].iloc[pos]!r}), field "
                         f"{field!r}: {gdf[field].iloc[pos]!r} is not a number ≥ 0")
    return np.nan_to_num(values, nan=0.0)


# -------------------------------------------------------------------------------------------- adjacency
def _units(compounds: gpd.GeoDataFrame, boundaries: gpd.GeoDataFrame | None, level: str) -> np.ndarray:
    """The 街道/社区 name of every compound: its own column, gaps filled from the boundaries layer."""
    n = len(compounds)
    values = (compounds[level].astype(object).where(compounds[level].notna(), None).to_numpy()
              if level in compounds.columns else np.full(n, None, dtype=object))
    if boundaries is not None and len(boundaries) and {"level", "name"} <= set(boundaries.columns):
        polys = boundaries[boundaries["level"] == level].sort_values("name", kind="stable")
        if len(polys):
            pts = shapely.point_on_surface(compounds.geometry.to_numpy())
            tree = shapely.STRtree(polys.geometry.to_numpy())
            ci, bi = tree.query(pts, predicate="within")
            first = pd.Series(bi, index=ci).groupby(level=0).min()
            names = np.full(n, None, dtype=object)
            names[first.index.to_numpy()] = polys["name"].to_numpy()[first.to_numpy()]
            empty = pd.isna(pd.Series(values)).to_numpy()
            values = np.where(empty, names, values)
    return np.array([None if pd.isna(v) else str(v) for v in values], dtype=object)


def _crossing(lines: np.ndarray, barriers: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which connecting lines a barrier cuts (DE-9IM: a line barrier crosses the interior in a point, a polygon
    barrier overlaps the interior), and the first such barrier's label."""
    hit = np.zeros(len(lines), dtype=bool)
    first = np.full(len(lines), None, dtype=object)
    if not len(lines) or not len(barriers):
        return hit, first
    li, bi = shapely.STRtree(barriers).query(lines, predicate="intersects")
    # a line barrier must cross the connecting line (interiors meet in a point, not run along it);
    # a polygon barrier (river area) must contain part of its interior
    polygonal = np.isin(shapely.get_type_id(barriers[bi]), (3, 6))
    keep = np.where(polygonal, shapely.relate_pattern(lines[li], barriers[bi], "T********"),
                    shapely.relate_pattern(lines[li], barriers[bi], "0********"))
    li, bi = li[keep], bi[keep]
    hit[li] = True
    if li.size:
        order = np.lexsort((bi, li))
        li, bi = li[order], bi[order]
        start = np.r_[True, li[1:] != li[:-1]]
        first[li[start]] = labels[bi[start]]
    return hit, first


def _along(corridors: np.ndarray, barriers: np.ndarray, labels: np.ndarray,
           tol: float) -> tuple[np.ndarray, np.ndarray]:
    """For touching compounds: does a barrier run along at least half of the shared edge (corridor of width 2·tol)?"""
    hit = np.zeros(len(corridors), dtype=bool)
    first = np.full(len(corridors), None, dtype=object)
    if not len(corridors) or not len(barriers):
        return hit, first
    ci, bi = shapely.STRtree(barriers).query(corridors, predicate="intersects")
    if not ci.size:
        return hit, first
    inter = shapely.intersection(barriers[bi], corridors[ci])
    corr_area = shapely.area(corridors[ci])
    polygonal = np.isin(shapely.get_type_id(barriers[bi]), (3, 6))
    share = np.where(polygonal, shapely.area(inter) / np.maximum(corr_area, 1e-12),
                     shapely.length(inter) / np.maximum(corr_area / (2 * tol), 1e-12))
    total = np.bincount(ci, weights=share, minlength=len(corridors))
    hit = total >= 0.5
    order = np.lexsort((bi, ci))
    ci_s, bi_s = ci[order], bi[order]
    start = np.r_[True, ci_s[1:] != ci_s[:-1]]
    first[ci_s[start]] = labels[bi_s[start]]
    first[~hit] = None
    return hit, first


def _barrier_arrays(gdf: gpd.GeoDataFrame | None, id_col: str | None,
                    classes: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """Barrier geometries (roads of ``classes``, or all features) and a label for each: its id or row number."""
    if gdf is None or not len(gdf):
        return np.empty(0, dtype=object), np.empty(0, dtype=object)
    keep = np.ones(len(gdf), dtype=bool)
    if classes is not None:
        if "road_class" not in gdf.columns:
            raise LayerError("roads: required field 'road_class' is missing")
        keep = gdf["road_class"].isin(list(classes)).to_numpy()
    if id_col and id_col in gdf.columns:
        labels = gdf[id_col].astype(str).to_numpy()[keep]
    else:
        labels = np.array([f"row {i + 1}" for i in np.flatnonzero(keep)], dtype=object)
    return gdf.geometry.to_numpy()[keep], labels


def adjacency(
    compounds: gpd.GeoDataFrame,
    roads: gpd.GeoDataFrame | None = None,
    boundaries: gpd.GeoDataFrame | None = None,
    *,
    barriers: gpd.GeoDataFrame | None = None,
    gap_m: float | None = None,
    barrier_classes: Sequence[str] | None = None,
    same_unit: str | None = None,
    touch_tol_m: float | None = None,
) -> pd.DataFrame:
    """Candidate neighbour pairs of compounds and whether each pair is adjacent, with the reason.

    Candidates are the pairs whose red lines are within ``gap_m`` metres (``STRtree.query(predicate="dwithin")``,
    never all pairs). A candidate pair is *not* adjacent when

    * a road of a class in ``barrier_classes`` (by default arterials) crosses the shortest line between the two
      polygons (crosses its interior, DE-9IM ``0********``; a road merely running along the line or ending
      in the gap does not) → ``barrier_road``;
    * a line or polygon of ``barriers`` (rivers, rail) does so → ``barrier_other``;
    * ``same_unit`` is ``"subdistrict"``/``"community"`` and the two compounds lie in different units
      (the compounds' column; gaps filled from ``boundaries`` polygons of that ``level``) → ``different_unit``.

    Compounds closer than ``touch_tol_m`` (touching red lines, e.g. OSM areas drawn to road centre lines) are
    separated only by a barrier running along at least half of their shared edge.

    Parameters
    ----------
    compounds : compounds layer (polygons, metric CRS) with ``compound_id``.
    roads : roads layer with ``road_class`` (arterial / secondary / local / path), optional ``road_id``.
    boundaries : optional 街道/社区 polygons with ``level`` and ``name``.
    barriers : optional lines/polygons (rivers, rail) that always cut adjacency.
    gap_m : neighbour distance between red lines, metres (None: ``gap_m`` of ``data/bundling.toml``).
    barrier_classes : road classes that cut adjacency (None: ``barrier_classes`` of
        ``data/bundling.toml``).
    same_unit : ``"subdistrict"``, ``"community"`` or ``None``/``"none"`` (no unit check: unlike
        :func:`bundle`, a pair table alone does not split by 街道 unless asked).
    touch_tol_m : red lines closer than this (metres) count as touching (None: ``touch_tol_m`` of
        ``data/bundling.toml``).

    Returns
    -------
    DataFrame, one row per candidate pair sorted by ``compound_a, compound_b`` (``compound_a`` <
    ``compound_b``): ``gap_m`` (metres), ``adjacent`` (bool), ``reason`` (code), ``reason_zh``, ``reason_en``,
    ``road_barrier``, ``other_barrier`` (bool), ``barrier_id`` (first barrier found), ``same_unit``
    (True/False, None when unknown or not checked).

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> c = gpd.GeoDataFrame({"compound_id": ["a", "b", "c"]}, crs=3857, geometry=[
    ...     shapely.box(0, 0, 100, 100), shapely.box(120, 0, 220, 100), shapely.box(240, 0, 340, 100)])
    >>> r = gpd.GeoDataFrame({"road_class": ["local", "arterial"]}, crs=3857, geometry=[
    ...     shapely.LineString([(110, -50), (110, 150)]), shapely.LineString([(230, -50), (230, 150)])])
    >>> adjacency(c, r)[["compound_a", "compound_b", "gap_m", "adjacent", "reason"]].values.tolist()
    [['a', 'b', 20.0, True, 'adjacent'], ['b', 'c', 20.0, False, 'barrier_road']]
    """
    given = {"gap_m": gap_m, "barrier_classes": barrier_classes, "touch_tol_m": touch_tol_m}
    settings = load_settings({"same_unit": same_unit, **{k: v for k, v in given.items() if v is not None}})
    crs = compounds.crs
    _check_layer(compounds, "compounds", "compound_id", ("polygon",), None)
    _check_layer(roads, "roads", "", ("line",), crs)
    _check_layer(barriers, "barriers", "", ("line", "polygon"), crs)
    _check_layer(boundaries, "boundaries", "", ("polygon",), crs)
    return _pairs(compounds, roads, boundaries, barriers, settings)


def candidate_pairs(geoms: np.ndarray, ids: np.ndarray, gap_m: float, max_neighbours: int,
                    chunk_pairs: int = 2_000_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of compounds whose red lines are within ``gap_m`` metres, in memory near-linear in their number.

    Identical red lines (duplicated compounds) are searched once: the copies are chained in id order and only the
    first searches its neighbours. The other red lines are found with an STRtree query on bounding boxes grown
    by ``gap_m``, in chunks of at most ``chunk_pairs`` hits; a compound with more box hits than ``max_neighbours`` (stacked
    or overlapping polygons) takes its ``max_neighbours`` nearest by centre instead (a KD-tree query), so the work
    stays near-linear; the exact distance decides (a pair stays if either side keeps it; 0 = no limit). Real layouts have far fewer neighbours within a few tens of metres, so the
    limit only bites on stacked or heavily overlapping polygons, which validation warns about.

    Parameters
    ----------
    geoms : red lines (metric CRS); ids : compound ids (str), the tie-break order.
    gap_m : neighbour distance, metres; max_neighbours : neighbours kept per compound (0 = all).
    chunk_pairs : the largest number of candidate hits held at once.

    Returns
    -------
    (a, b, distance_m): positions with ``ids[a] < ids[b]``, each unordered pair once, and their gap in metres.
    """
    n = len(geoms)
    order_key = np.argsort(np.argsort(ids, kind="stable"), kind="stable")
    _, group = np.unique(shapely.to_wkb(geoms), return_inverse=True)
    group = group.ravel()
    by_group = np.lexsort((order_key, group))  # members of each group of identical red lines, in id order
    same_as_prev = np.r_[False, group[by_group][1:] == group[by_group][:-1]]
    dup, prev = by_group[same_as_prev], by_group[np.flatnonzero(same_as_prev) - 1]
    reps = np.sort(by_group[~same_as_prev])
    box = shapely.bounds(geoms)
    centre = (box[:, :2] + box[:, 2:]) / 2
    tree = shapely.STRtree(shapely.box(*(box[reps] + np.array([-gap_m, -gap_m, gap_m, gap_m])).T))
    k = int(max_neighbours) if max_neighbours and max_neighbours > 0 else n
    centres = None
    lefts, rights = [], []
    lo, chunk = 0, 1024
    while lo < len(reps):
        q = reps[lo:lo + chunk]
        ql, qr = tree.query(shapely.box(*box[q].T))
        lo += len(q)
        chunk = int(np.clip(chunk_pairs / max(len(ql) / max(len(q), 1), 1.0), 1, 65536))
        dense = np.bincount(ql, minlength=len(q)) > k + 1  # more box hits than neighbours kept (self included)
        sparse = ~dense[ql]
        left, right = q[ql[sparse]], reps[qr[sparse]]
        if dense.any():  # stacked / overlapping polygons: the k nearest centres instead of every box hit
            if centres is None:
                centres = cKDTree(centre[reps])
            _, nearest = centres.query(centre[q[dense]], k=min(k + 1, len(reps)))
            nearest = np.atleast_2d(nearest.reshape(int(dense.sum()), -1))
            left = np.r_[left, np.repeat(q[dense], nearest.shape[1])]
            right = np.r_[right, reps[nearest.ravel()]]
        other = left != right
        left, right = left[other], right[other]
        box_gap = np.hypot(np.maximum(0, np.maximum(box[left, 0] - box[right, 2], box[right, 0] - box[left, 2])),
                           np.maximum(0, np.maximum(box[left, 1] - box[right, 3], box[right, 1] - box[left, 3])))
        near = box_gap <= gap_m
        lefts.append(left[near])
        rights.append(right[near])
    a = np.concatenate(lefts) if lefts else np.zeros(0, np.int64)
    b = np.concatenate(rights) if rights else np.zeros(0, np.int64)
    swap = order_key[a] > order_key[b]
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    pairs = pd.DataFrame({"a": a, "b": b}).drop_duplicates()
    a, b = pairs["a"].to_numpy(np.int64), pairs["b"].to_numpy(np.int64)
    dist = shapely.distance(geoms[a], geoms[b])
    within = dist <= gap_m
    a, b, dist = a[within], b[within], dist[within]
    a, b = np.r_[a, prev], np.r_[b, dup]
    dist = np.r_[dist, np.zeros(len(dup))]
    return a.astype(np.int64), b.astype(np.int64), dist


def _pairs(compounds, roads, boundaries, barriers, s: dict) -> pd.DataFrame:
    gap, tol = s["gap_m"], s["touch_tol_m"]
    unit = None if s["same_unit"] == "none" else s["same_unit"]
    ids = compounds["compound_id"].astype(str).to_numpy()
    geoms = compounds.geometry.to_numpy()
    if len(compounds) < 2:
        empty = {c: pd.Series(dtype=object) for c in PAIR_COLUMNS}
        empty.update(gap_m=pd.Series(dtype=float), adjacent=pd.Series(dtype=bool),
                     road_barrier=pd.Series(dtype=bool), other_barrier=pd.Series(dtype=bool))
        return pd.DataFrame(empty)
    a, b, dist = candidate_pairs(geoms, ids, gap, int(s["max_neighbours"]))
    ga, gb = geoms[a], geoms[b]
    touching = dist <= tol

    road_geoms, road_labels = _barrier_arrays(roads, "road_id", s["barrier_classes"])
    other_geoms, other_labels = _barrier_arrays(barriers, None, None)
    n = len(a)
    road_hit = np.zeros(n, dtype=bool)
    other_hit = np.zeros(n, dtype=bool)
    road_id = np.full(n, None, dtype=object)
    other_id = np.full(n, None, dtype=object)
    far = np.flatnonzero(~touching)
    if far.size and (len(road_geoms) or len(other_geoms)):
        lines = shapely.shortest_line(ga[far], gb[far])
        road_hit[far], road_id[far] = _crossing(lines, road_geoms, road_labels)
        other_hit[far], other_id[far] = _crossing(lines, other_geoms, other_labels)
    near = np.flatnonzero(touching)
    if near.size and tol > 0 and (len(road_geoms) or len(other_geoms)):
        corr = shapely.intersection(shapely.buffer(ga[near], tol), shapely.buffer(gb[near], tol))
        road_hit[near], road_id[near] = _along(corr, road_geoms, road_labels, tol)
        other_hit[near], other_id[near] = _along(corr, other_geoms, other_labels, tol)

    same = np.full(n, None, dtype=object)
    if unit:
        names = _units(compounds, boundaries, unit)
        ua, ub = names[a], names[b]
        known = np.array([x is not None and y is not None for x, y in zip(ua, ub, strict=True)], dtype=bool)
        same[known] = ua[known] == ub[known]
    different = np.array([v is False for v in same], dtype=bool)
    unknown_unit = np.array([v is None for v in same], dtype=bool) & (unit is not None)

    reason = np.select([road_hit, other_hit, different, unknown_unit],
                       ["barrier_road", "barrier_other", "different_unit", "adjacent_unit_unknown"],
                       default="adjacent").astype(object)
    texts = load_toml("bundling.toml")["adjacency_reasons"]
    unit_names = _UNITS.get(unit, ("单元", "units", "unit"))
    fmt = {"gap": f"{gap:g}", "classes": "/".join(_road_classes()[c] for c in s["barrier_classes"]) or "道路",
           "unit": unit_names[0], "unit_en": unit_names[1], "unit_one": unit_names[2]}
    fmt_en = dict(fmt, classes="/".join(s["barrier_classes"]) or "road")
    zh = {k: v["text_zh"].format(**fmt) for k, v in texts.items()}
    en = {k: v["text_en"].format(**fmt_en) for k, v in texts.items()}
    if unit is None:
        zh["adjacent"], en["adjacent"] = zh["adjacent_no_unit"], en["adjacent_no_unit"]
    out = pd.DataFrame({
        "compound_a": ids[a],
        "compound_b": ids[b],
        "gap_m": np.round(dist, 3),
        "adjacent": np.isin(reason, ["adjacent", "adjacent_unit_unknown"]),
        "reason": reason,
        "reason_zh": [zh[r] for r in reason],
        "reason_en": [en[r] for r in reason],
        "road_barrier": road_hit,
        "other_barrier": other_hit,
        "barrier_id": pd.Series(np.where(road_hit, road_id, other_id), dtype=object),
        "same_unit": pd.Series(same, dtype=object),
    })
    return out.sort_values(["compound_a", "compound_b"], kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------------------------------- clustering
def _agglomerate(n: int, ei: np.ndarray, ej: np.ndarray, xy: np.ndarray, area: np.ndarray,
                 loads: np.ndarray, caps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Contiguity-constrained Ward merging under caps.

    Components of the adjacency graph whose totals fit every cap become one region each. In a component that
    does not fit, regions start as single compounds and the adjacent pair with the smallest Ward cost
    (increase of area-weighted spatial inertia, m⁴) whose merged totals fit every cap is merged, until no
    adjacent pair fits. Regions are therefore connected by construction, compact (Ward), and maximal: no two
    adjacent regions can be merged within the caps. Ties are broken by node index (= compound_id order).

    Returns
    -------
    (labels, comp): region label per node (the smallest node index of the region) and component per node.
    """
    if n == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(ei)), (ei, ej)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    tot = np.zeros((comp.max() + 1 if n else 0, loads.shape[1]))
    np.add.at(tot, comp, loads)
    fits = np.all(tot <= caps * (1 + _REL_EPS), axis=1)
    # label of a fitting component = its smallest node index
    first = np.full(len(tot), n, dtype=np.int64)
    np.minimum.at(first, comp, np.arange(n))
    labels = first[comp]
    big = ~fits[comp]
    if not big.any():
        return labels, comp

    labels[big] = np.flatnonzero(big)
    sel = big[ei] & big[ej]
    ei, ej = ei[sel], ej[sel]
    # per-region state as Python lists (fast scalar access in the merge loop)
    cx, cy = xy[:, 0].tolist(), xy[:, 1].tolist()
    w = area.tolist()
    ld = loads.tolist()
    cap = caps.tolist()
    d = len(cap)
    nbrs: dict[int, set[int]] = {int(i): set() for i in np.flatnonzero(big)}
    for i, j in zip(ei.tolist(), ej.tolist(), strict=True):
        nbrs[i].add(j)
        nbrs[j].add(i)
    version = [0] * n
    alive = big.tolist()
    parent = list(range(n))

    def fits_pair(i: int, j: int) -> bool:
        li, lj = ld[i], ld[j]
        return all(li[k] + lj[k] <= cap[k] * (1 + _REL_EPS) for k in range(d))

    def cost(i: int, j: int) -> float:
        dx, dy = cx[i] - cx[j], cy[i] - cy[j]
        return w[i] * w[j] / (w[i] + w[j]) * (dx * dx + dy * dy)

    heap = [(cost(i, j), i, j, 0, 0) for i, j in zip(ei.tolist(), ej.tolist(), strict=True)
            if i < j and fits_pair(i, j)]
    heapq.heapify(heap)
    while heap:
        _, i, j, vi, vj = heapq.heappop(heap)
        if not (alive[i] and alive[j]) or version[i] != vi or version[j] != vj:
            continue
        # merge j into i (i < j, so every region is labelled by its smallest node index)
        wt = w[i] + w[j]
        cx[i] = (cx[i] * w[i] + cx[j] * w[j]) / wt
        cy[i] = (cy[i] * w[i] + cy[j] * w[j]) / wt
        w[i] = wt
        ld[i] = [ld[i][k] + ld[j][k] for k in range(d)]
        alive[j] = False
        parent[j] = i
        merged = (nbrs[i] | nbrs.pop(j)) - {i, j}
        for k in merged:
            nb = nbrs[k]
            nb.discard(j)
            nb.add(i)
        nbrs[i] = merged
        version[i] += 1
        for k in merged:
            if fits_pair(i, k):
                a, b = (i, k) if i < k else (k, i)
                heapq.heappush(heap, (cost(a, b), a, b, version[a], version[b]))

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    labels[big] = [find(x) for x in np.flatnonzero(big).tolist()]
    return labels, comp


# ---------------------------------------------------------------------------------------------- bundling
def _attach(layer: gpd.GeoDataFrame | None, id_col: str, member_geoms: np.ndarray, member_label: np.ndarray,
            gap: float, n_labels: int) -> list[str]:
    """``;``-joined ids of the features of ``layer`` attached to each bundle: within ``gap`` metres of a member,
    to the nearest bundle (ties: the smaller bundle number)."""
    out = [""] * n_labels
    if layer is None or not len(layer) or not len(member_geoms):
        return out
    geoms = layer.geometry.to_numpy()
    li, mi = shapely.STRtree(member_geoms).query(geoms, predicate="dwithin", distance=gap)
    if not li.size:
        return out
    dist = shapely.distance(geoms[li], member_geoms[mi])
    best = (pd.DataFrame({"item": li, "bundle": member_label[mi], "d": dist})
            .sort_values(["item", "d", "bundle"], kind="stable").drop_duplicates("item"))
    best["fid"] = layer[id_col].astype(str).to_numpy()[best["item"].to_numpy()]
    for b, fids in best.groupby("bundle")["fid"]:
        out[int(b)] = ";".join(sorted(fids))
    return out


def _joined_unique(values: pd.Series, groups: np.ndarray, n_groups: int) -> list[str]:
    df = pd.DataFrame({"g": groups, "v": values.to_numpy()}).dropna()
    df["v"] = df["v"].astype(str)
    joined = df.drop_duplicates().sort_values(["g", "v"]).groupby("g")["v"].agg(";".join)
    out = [""] * n_groups
    for g, v in joined.items():
        out[int(g)] = v
    return out


def _num(x: float) -> str:
    return f"{x:,.0f}"


def _rationale(row: dict, s: dict, unit_label: str) -> tuple[str, str]:
    gap = f"{s['gap_m']:g}"
    n = row["n_compounds"]
    units = [u for u in row[unit_label].split(";") if u] if unit_label else []
    if row["isolated"]:
        zh = f"独立小区：{gap}m内无可捆绑的相邻合格小区，单独成片"
        en = f"isolated compound: no adjacent eligible compound within {gap} m; a bundle of its own"
    elif row["over_cap"]:
        zh = "单个小区已超出片区规模上限，单独成片"
        en = "a single compound already exceeds a bundle cap; a bundle of its own"
    elif n == 1:
        zh = "相邻片区已达规模上限，单独成片"
        en = "adjacent bundles are at their caps; a bundle of its own"
    else:
        where_zh = where_en = ""
        if len(units) == 1:
            where_zh, where_en = f"，同属{units[0]}", f", all in {units[0]}"
        elif len(units) > 1:
            where_zh, where_en = f"，跨{len(units)}个单元（{'、'.join(units)}）", f", across {len(units)} units"
        zh = f"{n}个相邻小区{where_zh}，间距≤{gap}m"
        en = f"{n} adjacent compounds{where_en}, gaps ≤ {gap} m"
    if row["split"]:
        caps = [(k, s[k]) for k, _ in _CAP_COLUMNS if s[k] > 0]
        zh += "；按规模上限（" + "，".join(
            {"max_households": "户数≤", "max_floor_area_m2": "建筑面积≤", "max_cost_cny": "投资≤"}[k]
            + _num(v) for k, v in caps) + "）拆分连片区域"
        en += "; contiguous area split by the caps (" + ", ".join(f"{k} {_num(v)}" for k, v in caps) + ")"
    if row["n_secondary"]:
        zh += f"；含{row['n_secondary']}个按次要年限联动纳入的小区"
        en += f"; {row['n_secondary']} admitted under the secondary cutoff"
    if row["parcel_ids"]:
        k = len(row["parcel_ids"].split(";"))
        zh += f"；可利用存量用地{k}处"
        en += f"; {k} vacant parcel(s) attached"
    if row["project_ids"]:
        k = len(row["project_ids"].split(";"))
        zh += f"；相邻收益项目{k}个"
        en += f"; {k} revenue project(s) attached"
    if row["scattered"]:
        zh += f"；建筑面积{_num(row['floor_area_m2'])}m²<{_num(s['min_floor_area_m2'])}m²，属零散片区，宜人工核实归并"
        en += (f"; floor area {_num(row['floor_area_m2'])} m² < {_num(s['min_floor_area_m2'])} m² (scattered), "
               "review manually")
    return zh, en


def bundle(
    compounds: gpd.GeoDataFrame,
    roads: gpd.GeoDataFrame | None = None,
    vacant: gpd.GeoDataFrame | None = None,
    projects: gpd.GeoDataFrame | None = None,
    boundaries: gpd.GeoDataFrame | None = None,
    *,
    barriers: gpd.GeoDataFrame | None = None,
    rules: dict | None = None,
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, pd.DataFrame]:
    """Bundle adjacent eligible compounds into 片区 projects (捆绑统筹, 连片改造, 归并整合; DOMAIN.md §5).

    1. Adjacency (:func:`adjacency`) among eligible compounds and secondary-cutoff candidates; candidates
       adjacent to a compound eligible on its own are admitted (``eligibility.admit_secondary``), the others
       are excluded with ``X-NOT-ADJACENT``.
    2. Contiguity-constrained clustering on the adjacency graph: a connected component that fits every cap
       (``max_households``, ``max_floor_area_m2``, ``max_cost_cny``) is one bundle; a larger one is split by
       Ward merging of adjacent regions under the caps, which keeps every bundle connected by construction,
       compact, and maximal (no two adjacent bundles could be merged within the caps — so a small, scattered
       bundle is merged into a touching one whenever the caps allow). A compound with no adjacent eligible
       compound is its own bundle (``isolated``); one exceeding a cap alone is its own bundle (``over_cap``);
       a bundle below ``min_floor_area_m2`` (default 15,000 m², [001:669]) is flagged ``scattered``.
    3. Vacant parcels and revenue projects within ``gap_m`` of a member compound are attached to the nearest
       bundle.

    Bundle ids are ``B001``, ``B002`` … numbered in the order of each bundle's smallest member ``compound_id``
    (string order), so the same input gives the same ids; the width grows beyond 999 bundles.

    Parameters
    ----------
    compounds : output of ``eligibility.screen`` (needs ``compound_id``, ``eligible``, ``households``,
        ``floor_area_m2``; ``cost_cny`` when ``max_cost_cny`` is set; ``subdistrict``/``community`` optional).
    roads : roads layer with ``road_class``; classes in ``barrier_classes`` cut adjacency.
    vacant : vacant parcels with ``parcel_id``.
    projects : revenue projects with ``project_id``.
    boundaries : optional 街道/社区 polygons (``level``, ``name``) filling missing unit names.
    barriers : optional rivers / rail (lines or polygons) that cut adjacency.
    rules : overrides of the ``[bundling]`` settings (see :func:`load_settings`).

    Returns
    -------
    compounds : a new GeoDataFrame (input row order) with ``bundle_id`` (None when not bundled) and
        eligibility columns updated for secondary candidates.
    bundles : GeoDataFrame sorted by ``bundle_id``, geometry = dissolved members, with ``member_ids``
        (``;``-joined, sorted), ``n_compounds``, ``households``, ``floor_area_m2`` (m²), ``cost_cny`` (CNY),
        ``area_m2`` (land area of the members, m²), ``parcel_ids``, ``project_ids``, ``compactness`` (Reock
        score of the bundle's convex hull: hull area / area of its minimum bounding circle, 0–1; 1 = disc,
        square ≈ 0.64), ``subdistrict``, ``community``, flags ``isolated``, ``over_cap``, ``split``,
        ``scattered``, ``n_secondary``, and ``rationale_zh`` / ``rationale_en``.
    pairs : the adjacency table of :func:`adjacency` for the compounds considered.

    Examples
    --------
    Four compounds in a row, 20 m apart, an arterial between the second and the third:

    >>> import geopandas as gpd, shapely
    >>> c = gpd.GeoDataFrame({"compound_id": ["a", "b", "c", "d"], "eligible": True,
    ...                       "households": [300, 400, 500, 600], "floor_area_m2": 30000.0,
    ...                       "subdistrict": "和平里街道"}, crs=32650,
    ...                      geometry=[shapely.box(i * 120, 0, i * 120 + 100, 100) for i in range(4)])
    >>> r = gpd.GeoDataFrame({"road_class": ["arterial"]}, crs=32650,
    ...                      geometry=[shapely.LineString([(230, -50), (230, 150)])])
    >>> out, bundles, pairs = bundle(c, r)
    >>> bundles[["bundle_id", "member_ids", "households"]].values.tolist()
    [['B001', 'a;b', 700], ['B002', 'c;d', 1100]]
    >>> bundles["rationale_zh"].iloc[0]
    '2个相邻小区，同属和平里街道，间距≤30m'
    """
    s = load_settings(rules)
    crs = compounds.crs
    _check_layer(compounds, "compounds", "compound_id", ("polygon",), None)
    _check_layer(roads, "roads", "", ("line",), crs)
    _check_layer(vacant, "vacant", "parcel_id", (), crs)
    _check_layer(projects, "projects", "project_id", (), crs)
    _check_layer(boundaries, "boundaries", "", ("polygon",), crs)
    _check_layer(barriers, "barriers", "", ("line", "polygon"), crs)
    for field in ("eligible", "households", "floor_area_m2"):
        if field not in compounds.columns:
            hint = " — run eligibility.screen() first" if field == "eligible" else ""
            raise LayerError(f"compounds: required field {field!r} is missing{hint}")
    if s["max_cost_cny"] > 0 and "cost_cny" not in compounds.columns:
        raise LayerError("compounds: max_cost_cny is set but field 'cost_cny' is missing — run "
                         "eligibility.screen() first")

    status = compounds["eligibility"] if "eligibility" in compounds.columns else pd.Series(
        "", index=compounds.index)
    pool = (compounds["eligible"].fillna(False).astype(bool) | (status == "secondary_candidate")).to_numpy()
    pairs = _pairs(compounds[pool], roads, boundaries, barriers, s)
    out = eligibility.admit_secondary(compounds, pairs) if "eligibility" in compounds.columns else compounds.copy()
    admitted = (status == "secondary_candidate").to_numpy() & out["eligible"].to_numpy(dtype=bool)

    # nodes: eligible compounds in compound_id order
    elig_pos = np.flatnonzero(out["eligible"].fillna(False).to_numpy(dtype=bool))
    ids_all = out["compound_id"].astype(str).to_numpy()
    elig_pos = elig_pos[np.argsort(ids_all[elig_pos], kind="stable")]
    nodes = out.iloc[elig_pos]
    n = len(nodes)
    node_ids = ids_all[elig_pos]
    index = pd.Series(np.arange(n), index=node_ids)
    adj = pairs[pairs["adjacent"].astype(bool) & pairs["compound_a"].isin(index.index)
                & pairs["compound_b"].isin(index.index)]
    ei = index.loc[adj["compound_a"]].to_numpy(dtype=np.int64)
    ej = index.loc[adj["compound_b"]].to_numpy(dtype=np.int64)

    geoms = nodes.geometry.to_numpy()
    cent = shapely.centroid(geoms)
    xy = np.column_stack([shapely.get_x(cent), shapely.get_y(cent)]) if n else np.empty((0, 2))
    area = np.maximum(shapely.area(geoms), 1e-6) if n else np.empty(0)
    households = _load(nodes, "households")
    floor = _load(nodes, "floor_area_m2")
    cost = _load(nodes, "cost_cny") if "cost_cny" in nodes.columns else np.zeros(n)
    loads = np.column_stack([households, floor, cost]) if n else np.empty((0, 3))
    caps = np.array([s[k] if s[k] > 0 else np.inf for k, _ in _CAP_COLUMNS])
    labels, comp = _agglomerate(n, ei, ej, xy, area, loads, caps)

    # number bundles by their smallest member id: the label is the smallest node index = smallest id
    uniq, region = np.unique(labels, return_inverse=True)
    nb = len(uniq)
    width = max(3, len(str(nb)))
    bundle_ids = np.array([f"B{k + 1:0{width}d}" for k in range(nb)], dtype=object)
    node_bundle = bundle_ids[region]

    bundle_col = np.full(len(out), None, dtype=object)
    bundle_col[elig_pos] = node_bundle
    out["bundle_id"] = bundle_col

    degree = np.bincount(np.r_[ei, ej], minlength=n)
    size = np.bincount(region, minlength=nb)
    regions_per_comp = pd.Series(region).groupby(comp).nunique().to_numpy() if n else np.empty(0, int)
    sums = {name: np.bincount(region, weights=v, minlength=nb)
            for name, v in (("households", households), ("floor_area_m2", floor), ("cost_cny", cost),
                            ("area_m2", area))}
    comp_of_region = np.zeros(nb, dtype=np.int64)
    comp_of_region[region] = comp
    single_over = (size == 1) & np.any(np.column_stack([sums["households"], sums["floor_area_m2"],
                                                        sums["cost_cny"]]) > caps * (1 + _REL_EPS), axis=1)
    iso = np.zeros(nb, dtype=bool)
    iso[region[degree == 0]] = True
    iso &= size == 1

    members = gpd.GeoDataFrame({"bundle_id": node_bundle}, geometry=geoms, crs=crs)
    if nb:
        dissolved = members.dissolve(by="bundle_id", method="unary").geometry.reindex(bundle_ids).to_numpy()
    else:
        dissolved = np.empty(0, dtype=object)
    hull = shapely.convex_hull(dissolved)
    radius = shapely.minimum_bounding_radius(hull)
    with np.errstate(invalid="ignore", divide="ignore"):
        compact = np.where(radius > 0, shapely.area(hull) / (np.pi * radius**2), 0.0)

    tab = pd.DataFrame({
        "bundle_id": bundle_ids,
        "member_ids": pd.Series(node_ids).groupby(region).agg(";".join).reindex(range(nb)).to_numpy(),
        "n_compounds": size,
        "households": np.round(sums["households"]).astype(np.int64),
        "floor_area_m2": sums["floor_area_m2"],
        "cost_cny": sums["cost_cny"],
        "area_m2": np.round(sums["area_m2"], 2),
        "parcel_ids": _attach(vacant, "parcel_id", geoms, region, s["gap_m"], nb),
        "project_ids": _attach(projects, "project_id", geoms, region, s["gap_m"], nb),
        "compactness": np.round(compact, 4),
        "subdistrict": _joined_unique(pd.Series(_units(nodes, boundaries, "subdistrict")), region, nb),
        "community": _joined_unique(pd.Series(_units(nodes, boundaries, "community")), region, nb),
        "isolated": iso,
        "over_cap": single_over,
        "split": regions_per_comp[comp_of_region] > 1 if nb else np.empty(0, bool),
        "scattered": sums["floor_area_m2"] < s["min_floor_area_m2"],
        "n_secondary": np.bincount(region, weights=admitted[elig_pos].astype(float), minlength=nb).astype(int),
    })
    if "cost_cny" not in nodes.columns:
        tab["cost_cny"] = np.nan
    for col in ("bundle_id", "member_ids", "parcel_ids", "project_ids", "subdistrict", "community"):
        tab[col] = tab[col].astype(str)
    for col in ("isolated", "over_cap", "split", "scattered"):
        tab[col] = tab[col].astype(bool)
    unit_label = s["same_unit"] if s["same_unit"] != "none" else "subdistrict"
    if unit_label not in tab or not any(tab[unit_label].astype(object).map(bool)):
        unit_label = ""
    texts = [_rationale(r, s, unit_label) for r in tab.to_dict("records")]
    tab["rationale_zh"] = pd.Series([t[0] for t in texts], dtype=str, index=tab.index)
    tab["rationale_en"] = pd.Series([t[1] for t in texts], dtype=str, index=tab.index)
    bundles = gpd.GeoDataFrame(tab, geometry=dissolved, crs=crs)[BUNDLE_COLUMNS]
    return out, bundles, pairs


#: Former name of :func:`load_settings`, kept so existing notebooks and scripts keep working.
bundle_rules = load_settings
