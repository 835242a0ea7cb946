"""Bundling eligible compounds into 片区 projects: adjacency graph with barriers, contiguity-constrained clustering."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.spatial import cKDTree

from gis_planner import bundle_options, eligibility
from gis_planner._errors import ConfigError, LayerError
from gis_planner.bundle_options import REL_EPS as _REL_EPS
from gis_planner.datafiles import load_toml
from gis_planner.schema import load_schema

__all__ = ["adjacency", "bundle", "connections", "load_settings", "PAIR_COLUMNS", "BUNDLE_COLUMNS",
           "CONNECTION_COLUMNS", "ENTITY_FIELD"]

PAIR_COLUMNS = [
    "compound_a", "compound_b", "gap_m", "adjacent", "reason", "reason_zh", "reason_en",
    "road_barrier", "other_barrier", "barrier_id", "same_unit",
]
BUNDLE_COLUMNS = [
    "bundle_id", "member_ids", "n_compounds", "households", "floor_area_m2", "cost_cny", "area_m2",
    "parcel_ids", "project_ids", "compactness", "subdistrict", "community", "isolated", "over_cap", "split",
    "scattered", "n_secondary", "merged_ids", "diameter_m", "implementing_entity", "common_needs",
    "n_walls_to_open", "n_paths_to_connect", "rationale_zh", "rationale_en", "geometry",
]
#: columns of :func:`connections`
CONNECTION_COLUMNS = ["bundle_id", "compound_a", "compound_b", "kind", "kind_zh", "kind_en", "length_m", "gap_m",
                      "geometry"]
#: the compounds column naming the 实施主体 (implementing entity, B6 [000:757])
ENTITY_FIELD = "implementing_entity"
_UNITS = {"subdistrict": ("街道", "subdistricts", "subdistrict"), "community": ("社区", "communities", "community")}
_RULE_TYPES = {
    "gap_m": float, "barrier_classes": list, "same_unit": str, "max_households": float,
    "max_floor_area_m2": float, "max_cost_cny": float, "min_floor_area_m2": float, "touch_tol_m": float,
    "max_neighbours": float, "merge_scattered": bool, "merge_scattered_within_m": float, "max_diameter_m": float,
    "same_entity": bool, "needs_weight": float, "needs_columns": list, "connect_gap_m": float,
}
_CAP_COLUMNS = (("max_households", "households"), ("max_floor_area_m2", "floor_area_m2"),
                ("max_cost_cny", "cost_cny"))
_NUMBERS = ("gap_m", "max_households", "max_floor_area_m2", "max_cost_cny", "min_floor_area_m2", "touch_tol_m",
            "max_neighbours", "merge_scattered_within_m", "max_diameter_m", "needs_weight", "connect_gap_m")


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
        The options of DOMAIN.md §10.2.4 (each explained in ``data/bundling.toml``): ``merge_scattered``
        (true/false) and ``merge_scattered_within_m`` (metres): a compound under ``min_floor_area_m2`` left
        alone joins the nearest bundle; ``max_diameter_m`` (metres, 0/``None`` = off): the largest straight-line
        distance between two member centroids (one 15-minute circle); ``same_entity`` (true/false): compounds
        of different ``implementing_entity`` are not adjacent; ``needs_weight`` (0–1) and ``needs_columns``:
        common needs as a Ward tie-breaker; ``connect_gap_m`` (metres): gaps between member compounds up to this
        are paths to connect (at most ``gap_m``: only neighbours are connected).

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
        if value is None and key in ("same_unit", "max_households", "max_floor_area_m2", "max_cost_cny",
                                     "max_diameter_m"):
            value = "none" if key == "same_unit" else 0.0
        if want is list and isinstance(value, tuple | list):
            value = list(value)
        elif want is float and isinstance(value, int | float) and not isinstance(value, bool):
            value = float(value)
        elif want is bool and isinstance(value, bool):
            pass
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
    for key in _NUMBERS:
        if not math.isfinite(s[key]) or s[key] < 0:
            raise ConfigError(f"bundling.{key}: expected a finite number ≥ 0, got {s[key]!r}")
    if s["needs_weight"] > 1:
        raise ConfigError(f"bundling.needs_weight: expected a number in [0, 1] (a tie-breaker on the Ward cost, "
                          f"not a criterion of its own), got {s['needs_weight']!r}")
    if not all(isinstance(c, str) and c.strip() for c in s["needs_columns"]):
        raise ConfigError(f"bundling.needs_columns: expected a list of compounds column names (text), got "
                          f"{s['needs_columns']!r}")


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
    same_entity: bool | None = None,
) -> pd.DataFrame:
    """Candidate neighbour pairs of compounds and whether each pair is adjacent, with the reason.

    Candidates are the pairs whose red lines are within ``gap_m`` metres (``STRtree.query(predicate="dwithin")``,
    never all pairs). A candidate pair is *not* adjacent when

    * a road of a class in ``barrier_classes`` (by default arterials) crosses the shortest line between the two
      polygons (crosses its interior, DE-9IM ``0********``; a road merely running along the line or ending
      in the gap does not) → ``barrier_road``;
    * a line or polygon of ``barriers`` (rivers, rail) does so → ``barrier_other``;
    * ``same_unit`` is ``"subdistrict"``/``"community"`` and the two compounds lie in different units
      (the compounds' column; gaps filled from ``boundaries`` polygons of that ``level``) → ``different_unit``;
    * ``same_entity`` is true and both compounds name an ``implementing_entity`` (实施主体), different ones
      (「同一建设单位实施的…捆绑打包」 B6 [000:757]) → ``different_entity``; an empty entity does not block.

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
    same_entity : only compounds of the same ``implementing_entity`` are neighbours (None: ``same_entity`` of
        ``data/bundling.toml``); needs the ``implementing_entity`` column when true.

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
    given = {"gap_m": gap_m, "barrier_classes": barrier_classes, "touch_tol_m": touch_tol_m,
             "same_entity": same_entity}
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


def _entities(compounds: pd.DataFrame) -> np.ndarray:
    """The 实施主体 of every compound (``implementing_entity``, trimmed), None when empty."""
    if ENTITY_FIELD not in compounds.columns:
        raise LayerError(f"compounds: same_entity is set but field {ENTITY_FIELD!r} (实施主体) is missing")
    text = compounds[ENTITY_FIELD].astype("string").str.strip().to_numpy(dtype=object, na_value=None)
    text[text == ""] = None
    return text


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
        road_hit[far], road_id[far] = bundle_options.crossing_barriers(lines, road_geoms, road_labels)
        other_hit[far], other_id[far] = bundle_options.crossing_barriers(lines, other_geoms, other_labels)
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
    other_entity = np.zeros(n, dtype=bool)
    if s["same_entity"]:
        entity = _entities(compounds)
        ea, eb = pd.Series(entity[a]), pd.Series(entity[b])
        other_entity = (ea.notna() & eb.notna() & (ea != eb)).to_numpy()

    reason = np.select([road_hit, other_hit, different, other_entity, unknown_unit],
                       ["barrier_road", "barrier_other", "different_unit", "different_entity",
                        "adjacent_unit_unknown"], default="adjacent").astype(object)
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


def _texts() -> dict:
    """Rationale, reason and connection texts of ``data/bundling.toml``."""
    data = load_toml("bundling.toml")
    return {"rationale": data["rationale"], "not_merged": data["scattered_not_merged"],
            "kinds": data["connection_kinds"]}


def _say(texts: dict, key: str, **fmt) -> tuple[str, str]:
    entry = texts[key]
    return entry["text_zh"].format(**fmt), entry["text_en"].format(**fmt)


def _rationale(row: dict, s: dict, unit_label: str, texts: dict) -> tuple[str, str]:
    gap = f"{s['gap_m']:g}"
    rat = texts["rationale"]
    merged = row["merged"]
    n_core = row["n_compounds"] - len(merged)
    units = [u for u in row[unit_label].split(";") if u] if unit_label else []
    if row["isolated"]:
        zh = f"独立小区：{gap}m内无可捆绑的相邻合格小区，单独成片"
        en = f"isolated compound: no adjacent eligible compound within {gap} m; a bundle of its own"
    elif row["over_cap"]:
        zh = "单个小区已超出片区规模上限，单独成片"
        en = "a single compound already exceeds a bundle cap; a bundle of its own"
    elif n_core == 1 and row["core_isolated"]:
        zh, en = _say(rat, "core_isolated", id=row["core_id"], gap=gap)
    elif n_core == 1 and row["split_diameter"] and not row["split_caps"]:
        zh = f"与相邻片区合并将超出生活圈范围（{_num(s['max_diameter_m'])}m）" + ("" if merged else "，单独成片")
        en = (f"merging with an adjacent bundle would exceed the {_num(s['max_diameter_m'])} m diameter"
              + ("" if merged else "; a bundle of its own"))
    elif n_core == 1:
        zh = "相邻片区已达规模上限" + ("" if merged else "，单独成片")
        en = "adjacent bundles are at their caps" + ("" if merged else "; a bundle of its own")
    else:
        where_zh = where_en = ""
        if len(units) == 1:
            where_zh, where_en = f"，同属{units[0]}", f", all in {units[0]}"
        elif len(units) > 1:
            where_zh, where_en = f"，跨{len(units)}个单元（{'、'.join(units)}）", f", across {len(units)} units"
        zh = f"{n_core}个相邻小区{where_zh}，间距≤{gap}m"
        en = f"{n_core} adjacent compounds{where_en}, gaps ≤ {gap} m"
    parts: list[tuple[str, str]] = []
    if row["split"]:
        caps = [(k, s[k]) for k, _ in _CAP_COLUMNS if s[k] > 0]
        if caps and (row["split_caps"] or not row["split_diameter"]):
            parts.append(("按规模上限（" + "，".join(
                {"max_households": "户数≤", "max_floor_area_m2": "建筑面积≤", "max_cost_cny": "投资≤"}[k]
                + _num(v) for k, v in caps) + "）拆分连片区域",
                "contiguous area split by the caps (" + ", ".join(f"{k} {_num(v)}" for k, v in caps) + ")"))
        if row["split_diameter"]:
            parts.append(_say(rat, "split_diameter", diameter=_num(s["max_diameter_m"])))
    parts += [_say(rat, "merged_scattered", id=cid, floor=_num(fl), distance=_num(d)) for cid, fl, d in merged]
    if row["n_secondary"]:
        parts.append((f"含{row['n_secondary']}个按次要年限联动纳入的小区",
                      f"{row['n_secondary']} admitted under the secondary cutoff"))
    if s["same_entity"] and row["implementing_entity"] and row["n_compounds"] > 1:
        parts.append(_say(rat, "same_entity", entity=row["implementing_entity"]))
    if row["common_needs"] and row["n_compounds"] > 1:
        parts.append(_say(rat, "common_needs", needs=row["common_needs"]))
    items = []
    if row["n_walls_to_open"]:
        items.append(_say(rat, "walls", n=row["n_walls_to_open"], length=_num(row["wall_length_m"])))
    if row["n_paths_to_connect"]:
        items.append(_say(rat, "paths", n=row["n_paths_to_connect"]))
    if items:
        parts.append(_say(rat, "connections", items_zh="、".join(i[0] for i in items),
                          items_en=", ".join(i[1] for i in items)))
    if row["parcel_ids"]:
        k = len(row["parcel_ids"].split(";"))
        parts.append((f"可利用存量用地{k}处", f"{k} vacant parcel(s) attached"))
    if row["project_ids"]:
        k = len(row["project_ids"].split(";"))
        parts.append((f"相邻收益项目{k}个", f"{k} revenue project(s) attached"))
    if row["scattered"]:
        why_zh, why_en = row["not_merged"] or ("", "")
        parts.append((f"建筑面积{_num(row['floor_area_m2'])}m²<{_num(s['min_floor_area_m2'])}m²，属零散片区，"
                      f"{why_zh + '，' if why_zh else ''}宜人工核实归并",
                      f"floor area {_num(row['floor_area_m2'])} m² < {_num(s['min_floor_area_m2'])} m² "
                      f"(scattered), {why_en + ', ' if why_en else ''}review manually"))
    return zh + "".join("；" + p[0] for p in parts), en + "".join("; " + p[1] for p in parts)


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
       With ``max_diameter_m`` no bundle spans more than that between two member centroids (one 15-minute
       circle); with ``needs_weight`` near-ties of the Ward cost go to pairs with common needs
       (:func:`bundle_options.agglomerate`).
    3. ``merge_scattered``: a compound under ``min_floor_area_m2`` left alone joins the nearest bundle within
       ``merge_scattered_within_m`` (no barrier between, same unit / entity, caps and diameter kept;
       :func:`bundle_options.scattered_merges`) — such a bundle is connected on the adjacency graph except for
       its ``merged_ids``.
    4. Vacant parcels and revenue projects within ``gap_m`` of a member compound are attached to the nearest
       bundle; walls to open and paths to connect between members are counted (:func:`connections`).

    Bundle ids are ``B001``, ``B002`` … numbered in the order of each bundle's smallest member ``compound_id``
    (string order, merged scattered compounds included), so the same input gives the same ids; the width grows
    beyond 999 bundles.

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
        ``scattered``, ``n_secondary``, ``merged_ids`` (scattered compounds merged by proximity),
        ``diameter_m`` (largest distance between two member centroids, metres), ``implementing_entity``
        (``;``-joined), ``common_needs`` (items every member needs, from ``needs_columns``),
        ``n_walls_to_open``, ``n_paths_to_connect`` (see :func:`connections`), and ``rationale_zh`` /
        ``rationale_en`` explaining each of these.
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
    needs_col, needs, vocab = bundle_options.needs_matrix(nodes, s["needs_columns"])
    labels, comp = bundle_options.agglomerate(n, ei, ej, xy, area, loads, caps, max_diameter=s["max_diameter_m"],
                                              needs=needs, needs_weight=s["needs_weight"])
    by_caps, by_diameter = bundle_options.split_reasons(labels, ei, ej, xy, loads, caps, s["max_diameter_m"])
    degree = np.bincount(np.r_[ei, ej], minlength=n)
    split_node = (pd.Series(labels).groupby(comp).transform("nunique").to_numpy() > 1) if n else np.zeros(0, bool)
    alone = (degree == 0) & (np.bincount(labels, minlength=n)[labels] == 1) if n else np.zeros(0, bool)
    scattered_nodes = alone & (floor < s["min_floor_area_m2"]) & bool(s["merge_scattered"])
    labels, merges = _merge_scattered(nodes, index, pairs, labels, scattered_nodes, loads, caps, xy, roads,
                                      barriers, boundaries, s)

    # number bundles by their smallest member id: the label is the smallest node index = smallest id
    uniq, region = np.unique(labels, return_inverse=True)
    nb = len(uniq)
    width = max(3, len(str(nb)))
    bundle_ids = np.array([f"B{k + 1:0{width}d}" for k in range(nb)], dtype=object)
    node_bundle = bundle_ids[region]

    bundle_col = np.full(len(out), None, dtype=object)
    bundle_col[elig_pos] = node_bundle
    out["bundle_id"] = bundle_col

    size = np.bincount(region, minlength=nb)
    sums = {name: np.bincount(region, weights=v, minlength=nb)
            for name, v in (("households", households), ("floor_area_m2", floor), ("cost_cny", cost),
                            ("area_m2", area))}
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

    def any_of(flags: np.ndarray) -> np.ndarray:
        return np.bincount(region, weights=flags.astype(float), minlength=nb) > 0

    merged_node = np.zeros(n, dtype=bool)
    merged_node[merges.loc[merges["reason"] == "merged", "node"].to_numpy(dtype=np.int64)] = True
    conn = _connection_table(node_ids, geoms, node_bundle, pairs, s, crs)
    kinds = conn.groupby(["bundle_id", "kind"]).size().unstack(fill_value=0) if len(conn) else pd.DataFrame()
    wall_m = conn[conn["kind"] == "open_wall"].groupby("bundle_id")["length_m"].sum()
    entity = pd.Series(_entities(nodes)) if ENTITY_FIELD in nodes.columns else pd.Series([None] * n, dtype=object)
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
        "split": any_of(split_node),
        "scattered": sums["floor_area_m2"] < s["min_floor_area_m2"],
        "n_secondary": np.bincount(region, weights=admitted[elig_pos].astype(float), minlength=nb).astype(int),
        "merged_ids": _joined_unique(pd.Series(np.where(merged_node, node_ids, None)), region, nb),
        "diameter_m": np.round(bundle_options.group_diameters(xy, region)[1], 1) if n else np.zeros(0),
        "implementing_entity": _joined_unique(entity, region, nb),
        "common_needs": _common_needs(needs, vocab, region, nb) if needs_col else [""] * nb,
        "n_walls_to_open": kinds.get("open_wall", pd.Series(dtype=int)).reindex(bundle_ids, fill_value=0)
        .to_numpy(dtype=np.int64),
        "n_paths_to_connect": kinds.get("connect_path", pd.Series(dtype=int)).reindex(bundle_ids, fill_value=0)
        .to_numpy(dtype=np.int64),
    })
    if "cost_cny" not in nodes.columns:
        tab["cost_cny"] = np.nan
    for col in ("bundle_id", "member_ids", "parcel_ids", "project_ids", "subdistrict", "community", "merged_ids",
                "implementing_entity", "common_needs"):
        tab[col] = tab[col].astype(str)
    for col in ("isolated", "over_cap", "split", "scattered"):
        tab[col] = tab[col].astype(bool)
    unit_label = s["same_unit"] if s["same_unit"] != "none" else "subdistrict"
    if unit_label not in tab or not any(tab[unit_label].astype(object).map(bool)):
        unit_label = ""
    texts = _texts()
    extra = _rationale_inputs(merges, node_ids, floor, region, nb, s, texts)
    extra.update(split_caps=any_of(by_caps), split_diameter=any_of(by_diameter),
                 core_isolated=any_of((degree == 0) & ~merged_node),
                 core_id=pd.Series(node_ids[~merged_node]).groupby(region[~merged_node]).first()
                 .reindex(range(nb)).to_numpy(dtype=object),
                 wall_length_m=wall_m.reindex(bundle_ids, fill_value=0.0).to_numpy())
    rows = tab.assign(**extra).to_dict("records")
    rat = [_rationale(r, s, unit_label, texts) for r in rows]
    tab["rationale_zh"] = pd.Series([t[0] for t in rat], dtype=str, index=tab.index)
    tab["rationale_en"] = pd.Series([t[1] for t in rat], dtype=str, index=tab.index)
    bundles = gpd.GeoDataFrame(tab, geometry=dissolved, crs=crs)[BUNDLE_COLUMNS]
    return out, bundles, pairs


def _common_needs(needs: np.ndarray, vocab: list[str], region: np.ndarray, nb: int) -> list[str]:
    """Items every member of a bundle needs, ``;``-joined in vocabulary order."""
    if not needs.shape[1] or not nb:
        return [""] * nb
    every = pd.DataFrame(needs).groupby(region).min().reindex(range(nb), fill_value=0).to_numpy() > 0
    names = np.array(vocab, dtype=object)
    return [";".join(names[row]) for row in every]


_MERGE_REASON = {"barrier_road": "barrier", "barrier_other": "barrier", "different_unit": "different_unit",
                 "different_entity": "different_entity"}


def _merge_scattered(nodes, index, pairs, labels, scattered_nodes, loads, caps, xy, roads, barriers, boundaries,
                     s) -> tuple[np.ndarray, pd.DataFrame]:
    """:func:`bundle_options.scattered_merges` with the barriers, units, entities and pair verdicts of ``s``."""
    if not scattered_nodes.any():
        return labels, pd.DataFrame({"node": pd.Series(dtype=np.int64), "reason": pd.Series(dtype=object)})
    unit = None if s["same_unit"] == "none" else s["same_unit"]
    units = _units(nodes, boundaries, unit) if unit else None
    entities = _entities(nodes) if s["same_entity"] else None
    road_geoms, _ = _barrier_arrays(roads, "road_id", s["barrier_classes"])
    other_geoms, _ = _barrier_arrays(barriers, None, None)
    blocked = pairs[~pairs["adjacent"].astype(bool) & pairs["compound_a"].isin(index.index)
                    & pairs["compound_b"].isin(index.index)]
    known = pd.DataFrame({"a": index.reindex(blocked["compound_a"]).to_numpy(dtype=np.int64),
                          "b": index.reindex(blocked["compound_b"]).to_numpy(dtype=np.int64),
                          "reason": blocked["reason"].map(_MERGE_REASON).to_numpy(dtype=object)})
    return bundle_options.scattered_merges(
        nodes.geometry.to_numpy(), labels, scattered_nodes, loads, caps, xy,
        within_m=s["merge_scattered_within_m"], max_diameter=s["max_diameter_m"], units=units,
        entities=entities, barriers=np.r_[road_geoms, other_geoms], known_pairs=known.dropna())


def _rationale_inputs(merges: pd.DataFrame, node_ids: np.ndarray, floor: np.ndarray, region: np.ndarray,
                      nb: int, s: dict, texts: dict) -> dict:
    """Per bundle: the scattered compounds merged into it ``[(id, floor m², distance m)]`` and, for a scattered
    compound left alone, why it was not merged ``(zh, en)``."""
    merged: list[list] = [[] for _ in range(nb)]
    why: list = [None] * nb
    if not len(merges) or not s["merge_scattered"]:
        return {"merged": merged, "not_merged": why}
    node = merges["node"].to_numpy(dtype=np.int64)
    done = (merges["reason"] == "merged").to_numpy()
    for k, dist in zip(node[done].tolist(), merges.loc[done, "distance_m"].tolist(), strict=True):
        merged[region[k]].append((node_ids[k], floor[k], dist))
    unit_zh = _UNITS.get(s["same_unit"], ("单元",))[0]
    near = merges["near_node"].to_numpy(dtype=np.int64)
    for k, rsn, member, dist in zip(node[~done].tolist(), merges.loc[~done, "reason"].tolist(),
                                    near[~done].tolist(), merges.loc[~done, "near_distance_m"].tolist(), strict=True):
        # the nearest bundle is named by its nearest member compound: a bundle id is renumbered by a batch run
        fmt = {"within": _num(s["merge_scattered_within_m"]), "diameter": _num(s["max_diameter_m"]),
               "unit": unit_zh, "unit_en": _UNITS.get(s["same_unit"], ("", "units"))[1],
               "compound": node_ids[member] if member >= 0 else "", "distance": _num(dist) if member >= 0 else ""}
        why[region[k]] = _say(texts["not_merged"], rsn, **fmt)
    return {"merged": merged, "not_merged": why}


# ------------------------------------------------------------------------------------------- connections
def _connection_table(ids: np.ndarray, geoms: np.ndarray, bundle_of: np.ndarray, pairs: pd.DataFrame, s: dict,
                      crs) -> gpd.GeoDataFrame:
    """Walls to open and paths to connect between adjacent members of one bundle (see :func:`connections`)."""
    limit = max(min(s["connect_gap_m"], s["gap_m"]), s["touch_tol_m"])
    index = pd.Series(np.arange(len(ids)), index=ids)
    near = pairs[pairs["adjacent"].astype(bool) & (pairs["gap_m"].astype(float) <= limit)
                 & pairs["compound_a"].astype(str).isin(index.index) & pairs["compound_b"].astype(str).isin(index.index)]
    ia = index.reindex(near["compound_a"].astype(str)).to_numpy(dtype=np.int64)
    ib = index.reindex(near["compound_b"].astype(str)).to_numpy(dtype=np.int64)
    same = pd.notna(bundle_of[ia]) & (bundle_of[ia] == bundle_of[ib]) if len(ia) else np.zeros(0, bool)
    ia, ib, gap = ia[same], ib[same], near["gap_m"].to_numpy(dtype=float)[same]
    wall, length, geom = bundle_options.connection_geometries(geoms[ia], geoms[ib], gap, s["touch_tol_m"])
    kind = np.where(wall, "open_wall", "connect_path").astype(object)
    words = _texts()["kinds"]
    table = gpd.GeoDataFrame({
        "bundle_id": pd.Series(bundle_of[ia], dtype=object),
        "compound_a": pd.Series(ids[ia], dtype=object),
        "compound_b": pd.Series(ids[ib], dtype=object),
        "kind": pd.Series(kind, dtype=object),
        "kind_zh": pd.Series([words[k]["text_zh"] for k in kind], dtype=object),
        "kind_en": pd.Series([words[k]["text_en"] for k in kind], dtype=object),
        "length_m": np.where(wall, np.round(length, 2), np.nan),
        "gap_m": np.round(gap, 3),
    }, geometry=gpd.GeoSeries(geom, crs=crs).values, crs=crs)
    return table.sort_values(["bundle_id", "compound_a", "compound_b"], kind="stable").reset_index(drop=True)


def connections(
    compounds: gpd.GeoDataFrame,
    settings: Mapping[str, Any] | None = None,
    *,
    pairs: pd.DataFrame | None = None,
    roads: gpd.GeoDataFrame | None = None,
    barriers: gpd.GeoDataFrame | None = None,
) -> gpd.GeoDataFrame:
    """Walls to open (打通围墙) and paths to connect (连通步行通道) between member compounds of each bundle.

    「通过拆除违建、打通围墙、畅通微循环…归并整合」 B3 [000:307]; 「结合拆墙并院…」 B5 [000:741]. For each pair of
    adjacent compounds of the same bundle: red lines within ``touch_tol_m`` that share an edge → ``open_wall``
    with the shared edge (``length_m``); a gap up to ``connect_gap_m`` (at most ``gap_m``), or a corner contact
    → ``connect_path`` with the shortest connecting segment (``gap_m``). Whether to open or to gate (「实行封闭
    管理」 [000:1263]) stays the planner's choice: these are candidates.

    Parameters
    ----------
    compounds : compounds with ``compound_id`` and ``bundle_id`` (the first output of :func:`bundle`).
    settings : ``[bundling]`` overrides or the output of :func:`load_settings` (``connect_gap_m``,
        ``touch_tol_m``, ``gap_m``, ``barrier_classes``).
    pairs : the adjacency table of :func:`bundle` / :func:`adjacency` (reused: only its ``adjacent`` pairs are
        connected, so no wall is opened across a barrier road). None: computed here among the bundled
        compounds, with ``roads`` and ``barriers``.
    roads, barriers : as in :func:`adjacency`, used only when ``pairs`` is None.

    Returns
    -------
    GeoDataFrame with :data:`CONNECTION_COLUMNS`, sorted by ``bundle_id, compound_a, compound_b``: ``kind``
    (``open_wall`` / ``connect_path``), ``kind_zh`` (打通围墙 / 连通步行通道), ``kind_en``, ``length_m`` (shared
    edge, metres; NaN for a path), ``gap_m`` (metres between the red lines) and the geometry (shared edge or
    connecting segment, a LineString; a MultiLineString where the shared edge is broken).

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> c = gpd.GeoDataFrame({"compound_id": ["a", "b", "c"], "bundle_id": "B001"}, crs=32650, geometry=[
    ...     shapely.box(0, 0, 100, 100), shapely.box(100, 0, 200, 60), shapely.box(204, 0, 300, 100)])
    >>> connections(c)[["compound_a", "compound_b", "kind_zh", "length_m", "gap_m"]].values.tolist()
    [['a', 'b', '打通围墙', 60.0, 0.0], ['b', 'c', '连通步行通道', nan, 4.0]]
    """
    s = load_settings(settings)
    crs = compounds.crs
    _check_layer(compounds, "compounds", "compound_id", ("polygon",), None)
    if "bundle_id" not in compounds.columns:
        raise LayerError("compounds: required field 'bundle_id' is missing — run bundling.bundle() first")
    bundled = compounds[compounds["bundle_id"].notna().to_numpy()]
    if pairs is None:
        _check_layer(roads, "roads", "", ("line",), crs)
        _check_layer(barriers, "barriers", "", ("line", "polygon"), crs)
        near = dict(s, gap_m=max(min(s["connect_gap_m"], s["gap_m"]), s["touch_tol_m"]), same_unit="none",
                    same_entity=False)
        pairs = _pairs(bundled, roads, None, barriers, near)
    missing = [c for c in ("compound_a", "compound_b", "gap_m", "adjacent") if c not in pairs.columns]
    if missing:
        raise LayerError(f"pairs: required field(s) {missing} missing — pass the adjacency table of bundle()")
    ids = bundled["compound_id"].astype(str).to_numpy()
    return _connection_table(ids, bundled.geometry.to_numpy(), bundled["bundle_id"].astype(object).to_numpy(),
                             pairs, s, crs)[CONNECTION_COLUMNS]


#: Former name of :func:`load_settings`, kept so existing notebooks and scripts keep working.
bundle_rules = load_settings
