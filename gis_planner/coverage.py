"""Living-circle coverage per compound and facility type along the walking network, 2SFCA, service areas."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.sparse.csgraph import dijkstra

from ._errors import ConfigError, LayerError
from .datafiles import default_setting
from .network import (
    WalkGraph,
    attach_points,
    check_metric_crs,
    nearest_sources,
    snap_access,
    walk_graph,
)

# Walk-time service areas share their geometry with the map: they live in service_areas.py (re-exported here
# so that ``coverage.service_areas`` and ``coverage.reached_segments`` keep working).
from .service_areas import reached_segments, service_areas
from .standards import Standards, gaussian_decay, load_standards

__all__ = [
    "COVERAGE_COLUMNS",
    "Located",
    "locate",
    "snap_report",
    "assess",
    "summarise",
    "gap_list",
    "add_coverage_columns",
    "access_2sfca",
    "pair_distances",
    "reached_segments",
    "service_areas",
]

#: The columns of coverage.csv (the output contract), in order; ``assess`` adds ``straight_m``, ``method``
#: and ``reason`` after them.
COVERAGE_COLUMNS = ["compound_id", "facility_type", "tier", "threshold_m", "distance_m", "walk_min",
                    "nearest_facility_id", "covered"]

#: ``reason`` codes of the coverage table.
REASONS = {
    "": "covered",
    "beyond_threshold": "nearest facility farther than the service radius",
    "beyond_search_limit": "no facility within the search limit (distance not computed beyond it)",
    "unreachable": "no facility of this type on the compound's part of the street network (snaps.csv says "
                   "when that part is an isolated street fragment with no main-network street within max_snap_m)",
    "no_facility": "no facility of this type in the facilities layer (or none could be snapped)",
    "not_snapped": "compound farther than max_snap_m from every walkable road",
}


@dataclass(frozen=True, eq=False)
class Located:
    """Compounds and facilities placed on the walking graph.

    Attributes
    ----------
    graph : the walking graph with a virtual node where each feature's access point projects onto a street,
        and a leaf node per facility joined by its access leg.
    compound_ids : compound ids (str) in input order.
    compound_geometry : compound geometries in input order.
    access_compound : for every access point, the compound's position; sorted by it. A compound (or each of
        its entrances) has one access point per street it meets (:func:`~gis_planner.network.snap_access`:
        the nearest street, every street within ``[network] access_tolerance_m`` of its red line, and the
        nearest street of the main network when the others are isolated fragments); searches take the best.
    access_geometry : the entrance (or compound) geometry of each access point.
    access_node : virtual node of each access point (-1 if refused).
    access_m : access leg of each access point (metres; from the entrance / outline to the street).
    access_reason : why an access point was refused or is isolated ("" if snapped to the main network).
    facility_ids, facility_types : facility ids (str) and type keys in input order.
    facility_geometry : facility geometries.
    facility_node : leaf node of each facility's nearest snap (-1 if refused).
    facility_capacity : the ``capacity`` column (NaN if absent).
    report : one row per snapped feature (``layer, feature_id, entrance, ok, access_m, reason,
        access_points``: its nearest snap and how many streets it is reached from).
    method : ``"network"`` or ``"euclidean_detour"`` (no usable road layer).
    access_main : per access point, whether it lies on the main street network (None: all).
    facility_access_facility, facility_access_node : every leaf of every snapped facility (a facility meeting
        several streets has a leaf on each) and the facility's position; sorted by facility (None: only
        ``facility_node``).
    """

    graph: WalkGraph | None
    compound_ids: np.ndarray
    compound_geometry: np.ndarray
    access_compound: np.ndarray
    access_geometry: np.ndarray
    access_node: np.ndarray
    access_m: np.ndarray
    access_reason: np.ndarray
    facility_ids: np.ndarray
    facility_types: np.ndarray
    facility_geometry: np.ndarray
    facility_node: np.ndarray
    facility_capacity: np.ndarray
    report: pd.DataFrame
    method: str
    access_main: np.ndarray | None = None
    facility_access_facility: np.ndarray | None = None
    facility_access_node: np.ndarray | None = None

    def facility_leaves(self) -> tuple[np.ndarray, np.ndarray]:
        """(facility position, leaf node) of every snapped facility leaf, sorted by facility position."""
        if self.facility_access_node is not None and self.facility_access_facility is not None:
            return self.facility_access_facility, self.facility_access_node
        ok = np.flatnonzero(self.facility_node >= 0)
        return ok, self.facility_node[ok]


def _ids(gdf: pd.DataFrame, layer: str, column: str, unique: bool = True) -> np.ndarray:
    if column not in gdf:
        raise LayerError(f"layer {layer!r}: missing column {column!r}")
    col = gdf[column]
    missing = col.isna().to_numpy()
    if missing.any():
        pos = int(np.flatnonzero(missing)[0])
        raise LayerError(f"layer {layer!r}: row {pos + 1} field {column!r}: empty id")
    ids = col.astype(str).to_numpy(dtype=object)
    if unique:
        dup = pd.Series(ids).duplicated().to_numpy()
        if dup.any():
            pos = int(np.flatnonzero(dup)[0])
            raise LayerError(f"layer {layer!r}: row {pos + 1} field {column!r}: duplicate id {ids[pos]!r}")
    return ids


def _geometry(gdf: gpd.GeoDataFrame, layer: str, ids: np.ndarray, id_col: str, kinds: tuple[int, ...]) -> np.ndarray:
    if not isinstance(gdf, gpd.GeoDataFrame):
        raise LayerError(f"layer {layer!r}: expected a GeoDataFrame, got {type(gdf).__name__}")
    check_metric_crs(gdf, layer)
    geoms = gdf.geometry.array.to_numpy()
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    bad = missing | ~np.isin(shapely.get_type_id(geoms), kinds)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        what = "empty geometry" if missing[pos] else f"unexpected geometry type {geoms[pos].geom_type}"
        raise LayerError(f"layer {layer!r}: row {pos + 1} ({id_col} {ids[pos]!r}) field 'geometry': {what}")
    return geoms


def _facility_type_keys(facilities: pd.DataFrame, ids: np.ndarray, standards: Standards) -> np.ndarray:
    if "facility_type" not in facilities:
        raise LayerError("layer 'facilities': missing column 'facility_type'")
    raw = facilities["facility_type"].to_numpy(dtype=object)
    uniq = pd.unique(raw)
    resolved = {v: standards.type_key(v) for v in uniq}
    keys = np.array([resolved[v] for v in raw], dtype=object)
    bad = pd.isna(keys)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise LayerError(
            f"layer 'facilities': row {pos + 1} (facility_id {ids[pos]!r}) field 'facility_type': unknown "
            f"facility type {raw[pos]!r}; use a key of the standards ({', '.join(standards.facility_types.index)})"
            f" or its Chinese name"
        )
    return keys


def locate(
    compounds: gpd.GeoDataFrame,
    facilities: gpd.GeoDataFrame | None,
    graph: WalkGraph | gpd.GeoDataFrame | None,
    *,
    standards: Standards | None = None,
    entrances: gpd.GeoDataFrame | None = None,
    max_snap_m: float | None = None,
    access: str = "nearest",
    node_crossings: str | bool = "auto",
) -> Located:
    """Snap compounds (their entrances if given) and facilities onto the walking graph.

    Parameters
    ----------
    compounds : polygons with ``compound_id``.
    facilities : points or polygons with ``facility_id``, ``facility_type`` (key or Chinese name) and
        optional ``capacity``; None = no facilities.
    graph : a :class:`~gis_planner.network.WalkGraph`, a roads layer (then built with
        :func:`~gis_planner.network.walk_graph` and ``node_crossings``, exactly as a run builds it), or None
        for the straight-line fallback.
    standards : resolves facility type names (default: the bundled standards).
    entrances : optional points with ``compound_id``; a compound with entrances is reached through them,
        others through the point of their outline nearest the network (``access="centroid"``: centroid).
    max_snap_m : snaps farther than this from a walkable road (metres) are refused and reported; default
        ``[network] max_snap_m`` of ``data/defaults.toml``.
    node_crossings : the ``[network] node_crossings`` setting used when ``graph`` is a roads layer.

    Returns
    -------
    Located
    """
    standards = standards or load_standards()
    if facilities is None:  # no facilities layer: every type is a gap
        facilities = gpd.GeoDataFrame({"facility_id": [], "facility_type": []}, geometry=[], crs=compounds.crs)
    cids = _ids(compounds, "compounds", "compound_id")
    cgeom = _geometry(compounds, "compounds", cids, "compound_id", (0, 3, 6))
    fids = _ids(facilities, "facilities", "facility_id")
    fgeom = _geometry(facilities, "facilities", fids, "facility_id", (0, 3, 4, 6))
    ftypes = _facility_type_keys(facilities, fids, standards)
    capacity = (pd.to_numeric(facilities["capacity"], errors="coerce").to_numpy(dtype=float)
                if "capacity" in facilities else np.full(len(fids), np.nan))
    if compounds.crs is not None and facilities.crs is not None and compounds.crs != facilities.crs:
        raise LayerError(f"layers 'compounds' and 'facilities' have different CRS "
                         f"({compounds.crs.to_string()} vs {facilities.crs.to_string()})")

    # access points: entrances where given, else the compound itself
    acc_comp = np.arange(len(cids))
    acc_geom = cgeom
    acc_label = np.full(len(cids), "", dtype=object)
    if entrances is not None and len(entrances):
        ent_cid = _ids(entrances, "entrances", "compound_id", unique=False)
        egeom = _geometry(entrances, "entrances", ent_cid, "compound_id", (0,))
        pos_of = pd.Series(np.arange(len(cids)), index=cids)
        known = pd.Series(ent_cid).isin(pos_of.index).to_numpy()
        if not known.all():
            pos = int(np.flatnonzero(~known)[0])
            raise LayerError(f"layer 'entrances': row {pos + 1} field 'compound_id': {ent_cid[pos]!r} is not "
                             f"a compound_id of the compounds layer")
        ent_comp = pos_of.loc[ent_cid].to_numpy()
        with_ent = np.zeros(len(cids), dtype=bool)
        with_ent[ent_comp] = True
        acc_comp = np.concatenate([ent_comp, np.flatnonzero(~with_ent)])
        acc_geom = np.concatenate([egeom, cgeom[~with_ent]])
        ent_no = pd.Series(ent_comp).groupby(ent_comp).cumcount().to_numpy() + 1
        acc_label = np.concatenate([ent_no.astype(str).astype(object),
                                    np.full(int((~with_ent).sum()), "", dtype=object)])
        order = np.argsort(acc_comp, kind="stable")
        acc_comp, acc_geom, acc_label = acc_comp[order], acc_geom[order], acc_label[order]

    if isinstance(graph, gpd.GeoDataFrame):
        graph = walk_graph(graph, standards, node_crossings=node_crossings)
    if max_snap_m is None:
        max_snap_m = float(default_setting("network", "max_snap_m"))
    if graph is not None and not isinstance(graph, WalkGraph):
        raise TypeError(f"graph must be a WalkGraph, a roads GeoDataFrame or None, not {type(graph).__name__}")
    if graph is not None and graph.crs is not None and compounds.crs is not None and graph.crs != compounds.crs:
        raise LayerError(f"layers 'roads' and 'compounds' have different CRS "
                         f"({graph.crs.to_string()} vs {compounds.crs.to_string()})")

    n_acc, n_fac = len(acc_comp), len(fids)
    rep_comp, rep_label = acc_comp, acc_label
    acc_main = fac_leaf_pos = fac_leaf_node = None
    acc_count = np.ones(n_acc, dtype=np.int64)  # straight lines: each feature is its own access point
    fac_count = np.ones(n_fac, dtype=np.int64)
    if graph is None or graph.n_edges == 0:
        method = "euclidean_detour"
        acc_node = np.full(n_acc, -1, dtype=np.int64)
        fac_node = np.full(n_fac, -1, dtype=np.int64)
        acc_m = np.zeros(n_acc)
        acc_reason = np.full(n_acc, "", dtype=object)
        fac_ok = np.ones(n_fac, dtype=bool)
        fac_m = np.zeros(n_fac)
        fac_reason = np.full(n_fac, "", dtype=object)
        acc_ok = np.ones(n_acc, dtype=bool)
    else:
        method = "network"
        net = standards.network
        snaps = snap_access(graph, np.concatenate([acc_geom, fgeom]), max_snap_m=max_snap_m, access=access,
                            touch_m=float(net["access_tolerance_m"]),
                            main_component_m=float(net["main_component_m"]))
        feat = snaps["feature"].to_numpy(np.int64)
        is_fac = feat >= n_acc
        graph, nodes = attach_points(graph, snaps, is_fac)
        ok_rows = snaps["ok"].to_numpy(bool)
        first = np.r_[True, feat[1:] != feat[:-1]]  # the nearest snap of each feature comes first
        base = snaps[first]
        base_node = nodes[first]
        acc_m = base["access_m"].to_numpy()[:n_acc]
        acc_ok = base["ok"].to_numpy()[:n_acc]
        acc_reason = base["reason"].to_numpy(dtype=object)[:n_acc]
        fac_node = base_node[n_acc:]
        fac_ok = base["ok"].to_numpy()[n_acc:]
        fac_m = base["access_m"].to_numpy()[n_acc:]
        fac_reason = base["reason"].to_numpy(dtype=object)[n_acc:]
        counts = np.bincount(feat[ok_rows], minlength=n_acc + n_fac)
        acc_count, fac_count = counts[:n_acc], counts[n_acc:]
        fl = ok_rows & is_fac
        fac_leaf_pos, fac_leaf_node = feat[fl] - n_acc, nodes[fl]
        # every snap of a compound (or entrance) is an access point of it
        ar = np.flatnonzero(~is_fac)
        af = feat[ar]
        acc_comp, acc_geom, acc_label = acc_comp[af], acc_geom[af], acc_label[af]
        acc_node = nodes[ar]
        acc_main = snaps["main"].to_numpy(bool)[ar]
        all_m = snaps["access_m"].to_numpy()[ar]
        all_reason = snaps["reason"].to_numpy(dtype=object)[ar]
        if not fac_ok.all():
            bad = fids[~fac_ok]
            warnings.warn(
                f"{len(bad)} facilities could not be snapped to a walkable road within {max_snap_m:g} m and are "
                f"left out of the coverage analysis: {', '.join(bad[:10])}{' ...' if len(bad) > 10 else ''}",
                UserWarning, stacklevel=2,
            )
    report = pd.concat([
        pd.DataFrame({"layer": "compounds", "feature_id": cids[rep_comp], "entrance": rep_label,
                      "ok": acc_ok, "access_m": acc_m, "reason": acc_reason, "access_points": acc_count}),
        pd.DataFrame({"layer": "facilities", "feature_id": fids, "entrance": "",
                      "ok": fac_ok, "access_m": fac_m, "reason": fac_reason, "access_points": fac_count}),
    ], ignore_index=True)
    if method == "network":
        acc_m, acc_reason = all_m, all_reason
    return Located(
        graph=graph if method == "network" else None,
        compound_ids=cids, compound_geometry=cgeom,
        access_compound=acc_comp, access_geometry=acc_geom, access_node=acc_node, access_m=acc_m,
        access_reason=acc_reason,
        facility_ids=fids, facility_types=ftypes, facility_geometry=fgeom, facility_node=fac_node,
        facility_capacity=capacity, report=report, method=method, access_main=acc_main,
        facility_access_facility=fac_leaf_pos, facility_access_node=fac_leaf_node,
    )


def snap_report(located: Located) -> pd.DataFrame:
    """The snapping report of :func:`locate`: refused snaps first, then all others, sorted by id.

    Columns: ``layer, feature_id, entrance, ok, access_m, reason``.
    """
    rep = located.report
    return rep.sort_values(["ok", "layer", "feature_id", "entrance"], kind="stable").reset_index(drop=True)


def _per_compound_best(located: Located, total: np.ndarray, extra: np.ndarray):
    """Minimum of ``total`` over each compound's access points, ``extra`` there, and that access point."""
    n = len(located.compound_ids)
    order = np.lexsort((total, located.access_compound))
    comp_sorted = located.access_compound[order]
    first = np.r_[True, comp_sorted[1:] != comp_sorted[:-1]]
    best = np.full(n, np.inf)
    what = np.full(n, -1, dtype=np.int64)
    where = np.zeros(n, dtype=np.int64)
    best[comp_sorted[first]] = total[order][first]
    what[comp_sorted[first]] = extra[order][first]
    where[comp_sorted[first]] = order[first]
    return best, what, where


def _type_search(located: Located, ftype: str, limit_m: float, detour: float):
    """Nearest facility of one type for every compound.

    Returns (distance m, facility position, state code, access point used).
    """
    n = len(located.compound_ids)
    none = (np.full(n, np.inf), np.full(n, -1, dtype=np.int64), np.full(n, 2), np.zeros(n, dtype=np.int64))
    fac = np.flatnonzero(located.facility_types == ftype)
    if located.method == "network":
        leaf_fac, leaf_node = located.facility_leaves()
        sel = np.isin(leaf_fac, fac)
        src_fac, src_node = leaf_fac[sel], leaf_node[sel]
        if not len(src_node):
            return none
        dist, which = nearest_sources(located.graph, src_node, limit_m=limit_m)
        node = located.access_node
        okn = node >= 0
        total = np.full(len(node), np.inf)
        total[okn] = dist[node[okn]] + located.access_m[okn]
        src = np.full(len(node), -1, dtype=np.int64)
        src[okn] = which[node[okn]]
        best, pos, acc = _per_compound_best(located, total, src)
        fpos = np.where(pos >= 0, src_fac[np.maximum(pos, 0)], -1)
        # unreached: is any facility of this type on the same street component?
        state = np.where(np.isfinite(best), 0, 1)
        if (state == 1).any():
            comp = located.graph.components
            have = np.zeros(comp.max() + 1, dtype=bool)
            have[comp[src_node]] = True
            acc_have = np.where(okn, have[comp[np.maximum(node, 0)]], False)
            any_have = np.zeros(n, dtype=bool)
            np.logical_or.at(any_have, located.access_compound, acc_have)
            # 3 (unreachable) is only said after the snapping looked for the main network within max_snap_m
            # (network.snap_access); the compound's snap reason tells an isolated fragment apart
            state = np.where(state == 1, np.where(any_have, 1, 3), 0)
        return best, fpos, state, acc
    if not len(fac):
        return none
    tree = shapely.STRtree(located.facility_geometry[fac])
    (a, f), d = tree.query_nearest(located.access_geometry, return_distance=True, all_matches=False)
    total = np.full(len(located.access_compound), np.inf)
    src = np.full(len(located.access_compound), -1, dtype=np.int64)
    total[a] = d * detour
    src[a] = f
    best, pos, acc = _per_compound_best(located, total, src)
    fpos = np.where(pos >= 0, fac[np.maximum(pos, 0)], -1)
    state = np.where(best <= limit_m, 0, 1)
    best = np.where(best <= limit_m, best, np.inf)
    return best, np.where(state == 0, fpos, -1), state, acc


def assess(
    compounds: gpd.GeoDataFrame,
    facilities: gpd.GeoDataFrame | None,
    graph: WalkGraph | gpd.GeoDataFrame | Located | None,
    standards: Standards | None = None,
    *,
    types: str | Sequence[str] | None = None,
    entrances: gpd.GeoDataFrame | None = None,
    max_snap_m: float | None = None,
    search_limit_m: float | None = None,
    node_crossings: str | bool = "auto",
) -> pd.DataFrame:
    """Living-circle coverage: network distance from every compound to the nearest facility of each type.

    For each facility type one multi-source shortest-path search runs from all its facilities at once
    (``scipy.sparse.csgraph.dijkstra(min_only=True)``), bounded by ``search_limit_m``. Distance = access leg
    of the facility + street distance + access leg of the compound (its best entrance). Tiers do not nest
    (GB 50180-2018 条文说明 5.0.2): each type is judged against its own radius only.

    Parameters
    ----------
    compounds : compounds layer (metric CRS) with ``compound_id``.
    facilities : facilities layer with ``facility_id``, ``facility_type``.
    graph : WalkGraph, roads layer, the result of :func:`locate` (then ``entrances`` and ``max_snap_m`` are
        taken from it), or None. With None or an empty road layer
        the distance is the straight line × the detour factor of the standards data (a screen only; a
        warning is issued and ``method`` says ``euclidean_detour``).
    standards : living-circle standards (default: bundled GB 50180-2018 data).
    types : a profile name (``"gb50180"``, ``"complete_community"``, ``"all"``) or a list of type keys;
        default: the standards' active profile.
    entrances : optional entrance points with ``compound_id``.
    max_snap_m : refuse snaps farther than this from a walkable road (metres; default from
        ``data/defaults.toml``).
    search_limit_m : the search stops at this network distance (metres); default the largest service radius
        of the types checked. Farther facilities are reported as ``beyond_search_limit`` (distance NaN).
    node_crossings : the ``[network] node_crossings`` setting, when ``graph`` is a roads layer (the walking
        graph is then built as :meth:`gis_planner.plan.Plan.run` builds it, so a notebook and a run agree).

    Returns
    -------
    DataFrame with :data:`COVERAGE_COLUMNS` — ``compound_id, facility_type, tier, threshold_m`` (service
    radius, m), ``distance_m`` (network metres, NaN if none within reach), ``walk_min`` (minutes at the
    standards' walking speed), ``nearest_facility_id``, ``covered`` (distance ≤ threshold) — then
    ``straight_m`` (straight line from the compound — the entrance used, if any — to that facility, m; the
    detour gap), ``method``
    (``network`` / ``euclidean_detour``) and ``reason`` (see :data:`REASONS`). One row per compound and
    type, sorted by compound_id and facility_type.

    Examples
    --------
    >>> from shapely import LineString, Point, Polygon
    >>> roads = gpd.GeoDataFrame({"road_id": ["a"], "road_class": ["local"]},
    ...                          geometry=[LineString([(0, 0), (400, 0)])], crs=32650)
    >>> compounds = gpd.GeoDataFrame({"compound_id": ["c1"]},  # its corner (30, 20) is nearest the street
    ...                              geometry=[Polygon([(30, 20), (50, 60), (10, 60)])], crs=32650)
    >>> facilities = gpd.GeoDataFrame({"facility_id": ["k1"], "facility_type": ["幼儿园"]},
    ...                               geometry=[Point(300, -10)], crs=32650)
    >>> t = assess(compounds, facilities, walk_graph(roads), types=["kindergarten"])
    >>> t[["compound_id", "distance_m", "walk_min", "nearest_facility_id", "covered"]].round(2).to_dict("records")
    [{'compound_id': 'c1', 'distance_m': 300.0, 'walk_min': 4.5, 'nearest_facility_id': 'k1', 'covered': True}]
    """
    standards = standards or load_standards()
    keys = standards.profile_types(types)
    located = graph if isinstance(graph, Located) else locate(
        compounds, facilities, graph, standards=standards, entrances=entrances, max_snap_m=max_snap_m,
        node_crossings=node_crossings)
    ft = standards.facility_types.loc[keys]
    limit = float(ft["radius_m"].max()) if search_limit_m is None else float(search_limit_m)
    if limit < ft["radius_m"].max():
        raise ConfigError(f"search_limit_m {limit:g} m is below the largest service radius "
                          f"{ft['radius_m'].max():g} m of the types checked")
    detour = float(standards.network["detour_factor"])
    if located.method != "network":
        warnings.warn(
            f"NO WALKING NETWORK: coverage distances are straight lines × detour factor {detour:g} "
            f"({standards.network.get('detour_source', '')}). They over-claim coverage across rivers, rail "
            f"lines and walls; use them as a screen only and supply a roads layer.",
            UserWarning, stacklevel=2,
        )
    n = len(located.compound_ids)
    comp_ok = np.zeros(n, dtype=bool)
    np.logical_or.at(comp_ok, located.access_compound,
                     located.access_node >= 0 if located.method == "network" else True)
    reason_codes = np.array(["", "beyond_search_limit", "no_facility", "unreachable", "not_snapped",
                             "beyond_threshold"], dtype=object)
    parts = []
    for key in keys:
        best, fpos, state, acc = _type_search(located, key, limit, detour)
        state = np.where(comp_ok, state, 4)
        thr = float(ft.at[key, "radius_m"])
        found = np.isfinite(best) & (state == 0)
        covered = found & (best <= thr)
        state = np.where(found & ~covered, 5, state)
        dist = np.where(found, best, np.nan)
        fid = np.full(n, None, dtype=object)
        fid[found] = located.facility_ids[fpos[found]]
        straight = np.full(n, np.nan)
        if found.any():
            straight[found] = shapely.distance(located.access_geometry[acc[found]],
                                               located.facility_geometry[fpos[found]])
        parts.append(pd.DataFrame({
            "compound_id": located.compound_ids,
            "facility_type": key,
            "tier": ft.at[key, "tier"],
            "threshold_m": thr,
            "distance_m": dist,
            "walk_min": dist / standards.metres_per_minute,
            "nearest_facility_id": fid,
            "covered": covered,
            "straight_m": straight,
            "method": located.method,
            "reason": reason_codes[state],
        }))
    if not parts:
        return pd.DataFrame(columns=[*COVERAGE_COLUMNS, "straight_m", "method", "reason"])
    table = pd.concat(parts, ignore_index=True)
    ids = table["nearest_facility_id"]
    table["nearest_facility_id"] = ids.astype(object).where(ids.notna(), None)  # concat may turn None into NaN
    return table.sort_values(["compound_id", "facility_type"], kind="stable").reset_index(drop=True)


def _compound_attrs(compounds: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    out = pd.DataFrame({"compound_id": compounds["compound_id"].astype(str).to_numpy()})
    for c in columns:
        if c not in compounds:
            raise LayerError(f"layer 'compounds': missing column {c!r}")
        out[c] = compounds[c].to_numpy()
    return out


def summarise(
    table: pd.DataFrame,
    compounds: pd.DataFrame,
    by: str | None = None,
    standards: Standards | None = None,
    *,
    level: str = "type",
) -> pd.DataFrame:
    """Coverage rates per facility type (or per tier), by compounds and weighted by households.

    Parameters
    ----------
    table : output of :func:`assess`.
    compounds : the compounds layer (``compound_id``, ``households``, and the ``by`` column).
    by : None (whole plan), ``"subdistrict"`` (街道), ``"bundle_id"`` or any compounds column.
    standards : for labels (default: bundled standards).
    level : ``"type"`` — one row per facility type; ``"tier"`` — one row per tier, where a compound counts
        as covered only if every checked type of that tier is covered (tiers do not nest).

    Returns
    -------
    DataFrame: [``by``,] [``facility_type, name_zh, name_en``,] ``tier, tier_name_zh,`` [``threshold_m,``
    | ``n_types,``] ``n_compounds, n_covered, rate_compounds, households, households_covered,
    rate_households`` (rates 0–1; households with unknown counts weigh 0), sorted.

    Examples
    --------
    >>> t = pd.DataFrame({"compound_id": ["a", "b"], "facility_type": "kindergarten", "tier": "5min",
    ...                   "threshold_m": 300.0, "covered": [True, False]})
    >>> c = pd.DataFrame({"compound_id": ["a", "b"], "households": [300, 100]})
    >>> summarise(t, c)[["n_covered", "rate_compounds", "rate_households"]].to_dict("records")
    [{'n_covered': 1, 'rate_compounds': 0.5, 'rate_households': 0.75}]
    """
    if level not in ("type", "tier"):
        raise ValueError(f"level must be 'type' or 'tier', got {level!r}")
    standards = standards or load_standards()
    cols = ["households"] + ([by] if by else [])
    attrs = _compound_attrs(compounds, [c for c in cols if c in compounds or c == by])
    if "households" not in attrs:
        attrs["households"] = np.nan
    group = [by] if by else []
    if level == "tier":
        per = (table.groupby(["compound_id", "tier"], sort=True)
               .agg(covered=("covered", "all"), n_types=("facility_type", "size")).reset_index())
    else:
        per = table[["compound_id", "facility_type", "tier", "threshold_m", "covered"]]
    df = per.merge(attrs, on="compound_id", how="left", validate="many_to_one")
    hh = pd.to_numeric(df["households"], errors="coerce").fillna(0.0)
    df = df.assign(_hh=hh, _hh_cov=hh * df["covered"], _cov=df["covered"].astype(int))
    keys = group + (["facility_type", "tier", "threshold_m"] if level == "type" else ["tier", "n_types"])
    out = (df.groupby(keys, dropna=False, sort=True)
           .agg(n_compounds=("compound_id", "size"), n_covered=("_cov", "sum"),
                households=("_hh", "sum"), households_covered=("_hh_cov", "sum")).reset_index())
    out["rate_compounds"] = out["n_covered"] / out["n_compounds"]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["rate_households"] = np.where(out["households"] > 0, out["households_covered"] / out["households"],
                                          np.nan)
    out["tier_name_zh"] = out["tier"].map(standards.tiers["name_zh"])
    stats = ["n_compounds", "n_covered", "rate_compounds", "households", "households_covered", "rate_households"]
    if level == "tier":
        return out[group + ["tier", "tier_name_zh", "n_types", *stats]].reset_index(drop=True)
    ft = standards.facility_types
    out["name_zh"] = out["facility_type"].map(ft["name_zh"])
    out["name_en"] = out["facility_type"].map(ft["name_en"])
    order = group + ["facility_type", "name_zh", "name_en", "tier", "tier_name_zh", "threshold_m", *stats]
    return out[order].reset_index(drop=True)


def gap_list(table: pd.DataFrame, compounds: pd.DataFrame, standards: Standards | None = None) -> pd.DataFrame:
    """Compound × facility type pairs not covered, with how far the nearest facility is.

    Returns
    -------
    DataFrame: ``compound_id, name, subdistrict, households, facility_type, name_zh, tier, tier_name_zh,
    threshold_m, distance_m, shortfall_m`` (distance − radius, NaN if none reached), ``nearest_facility_id,
    reason``; sorted by facility_type, households (descending) and compound_id.
    """
    standards = standards or load_standards()
    attrs = _compound_attrs(compounds, [c for c in ("name", "subdistrict", "households") if c in compounds])
    for c in ("name", "subdistrict", "households"):
        if c not in attrs:
            attrs[c] = None if c != "households" else np.nan
    gaps = table.loc[~table["covered"].astype(bool)].merge(attrs, on="compound_id", how="left")
    gaps["shortfall_m"] = gaps["distance_m"] - gaps["threshold_m"]
    gaps["name_zh"] = gaps["facility_type"].map(standards.facility_types["name_zh"])
    gaps["tier_name_zh"] = gaps["tier"].map(standards.tiers["name_zh"])
    gaps["_hh"] = pd.to_numeric(gaps["households"], errors="coerce").fillna(-1)
    gaps = gaps.sort_values(["facility_type", "_hh", "compound_id"], ascending=[True, False, True], kind="stable")
    cols = ["compound_id", "name", "subdistrict", "households", "facility_type", "name_zh", "tier",
            "tier_name_zh", "threshold_m", "distance_m", "shortfall_m", "nearest_facility_id", "reason"]
    return gaps[cols].reset_index(drop=True)


def add_coverage_columns(
    compounds: gpd.GeoDataFrame,
    table: pd.DataFrame,
    access: pd.DataFrame | None = None,
) -> gpd.GeoDataFrame:
    """A copy of the compounds layer with coverage columns.

    Adds per facility type ``cov_<type>`` (bool: within the service radius) and ``dist_<type>_m`` (network
    metres, NaN if none reached), then ``n_types_covered`` and ``share_types_covered`` (0–1 over the types
    checked); with ``access`` (compound side of :func:`access_2sfca`) also ``access_<type>``. Existing
    columns of those names are replaced. The input is not modified.
    """
    out = compounds.copy()
    types = sorted(table["facility_type"].unique())
    wide_cov = table.pivot(index="compound_id", columns="facility_type", values="covered")
    wide_dist = table.pivot(index="compound_id", columns="facility_type", values="distance_m")
    cid = out["compound_id"].astype(str)
    new: dict[str, pd.Series | np.ndarray] = {}
    for t in types:
        new[f"cov_{t}"] = cid.map(wide_cov[t]).fillna(False).astype(bool).to_numpy()
        new[f"dist_{t}_m"] = cid.map(wide_dist[t]).astype(float).to_numpy()
    cov = np.column_stack([new[f"cov_{t}"] for t in types]) if types else np.zeros((len(out), 0), bool)
    new["n_types_covered"] = cov.sum(axis=1)
    new["share_types_covered"] = cov.mean(axis=1) if types else np.full(len(out), np.nan)
    if access is not None and len(access):
        wide_acc = access.pivot(index="compound_id", columns="facility_type", values="access_2sfca")
        for t in sorted(wide_acc.columns):
            new[f"access_{t}"] = cid.map(wide_acc[t]).astype(float).to_numpy()
    out = out.drop(columns=[c for c in new if c in out.columns])
    return out.assign(**new)


def pair_distances(
    located: Located, fac: np.ndarray, d0: float, detour: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (facility position, compound position, metres) pairs within ``d0`` metres.

    Parameters
    ----------
    located : result of :func:`locate`.
    fac : positions of the facilities (in ``located``) to measure from.
    d0 : largest distance kept (metres, network or straight line × ``detour``).
    detour : detour factor of the straight-line fallback (ignored on a network).
    """
    if located.method != "network":
        tree = shapely.STRtree(located.access_geometry)
        fi, ai = tree.query(located.facility_geometry[fac], predicate="dwithin", distance=d0 / detour)
        d = shapely.distance(located.facility_geometry[fac][fi], located.access_geometry[ai]) * detour
        df = pd.DataFrame({"f": fac[fi], "c": located.access_compound[ai], "d": d})
        df = df.groupby(["f", "c"], sort=True)["d"].min().reset_index()
        return df["f"].to_numpy(), df["c"].to_numpy(), df["d"].to_numpy()
    graph = located.graph
    node = located.access_node
    okn = np.flatnonzero(node >= 0)
    comp_of = located.access_compound[okn]
    starts = np.flatnonzero(np.r_[True, comp_of[1:] != comp_of[:-1]])
    comps = comp_of[starts]
    leaf_fac, leaf_node = located.facility_leaves()  # sorted by facility: a facility's leaves are contiguous
    sel = np.isin(leaf_fac, fac)
    leaf_fac, leaf_node = leaf_fac[sel], leaf_node[sel]
    chunk = max(1, int(4e6 // max(graph.n_nodes, 1)))
    fs, cs, ds = [np.array([], dtype=np.int64)], [np.array([], dtype=np.int64)], [np.array([], float)]
    lo = 0
    while lo < len(leaf_fac):
        hi = min(lo + chunk, len(leaf_fac))
        while hi < len(leaf_fac) and leaf_fac[hi] == leaf_fac[hi - 1]:  # keep a facility's leaves together
            hi += 1
        lf = leaf_fac[lo:hi]
        dist = dijkstra(graph.matrix, directed=True, indices=leaf_node[lo:hi], limit=d0)
        dist = np.atleast_2d(dist)[:, node[okn]] + located.access_m[okn]
        fstart = np.flatnonzero(np.r_[True, lf[1:] != lf[:-1]])
        dist = np.minimum.reduceat(dist, fstart, axis=0)  # best leaf of each facility
        best = np.minimum.reduceat(dist, starts, axis=1) if len(starts) else dist[:, :0]
        fi, ci = np.nonzero(best <= d0)
        fs.append(lf[fstart][fi])
        cs.append(comps[ci])
        ds.append(best[fi, ci])
        lo = hi
    return np.concatenate(fs), np.concatenate(cs), np.concatenate(ds)


def access_2sfca(
    compounds: gpd.GeoDataFrame,
    facilities: gpd.GeoDataFrame,
    graph: WalkGraph | gpd.GeoDataFrame | Located | None,
    standards: Standards | None = None,
    *,
    types: Sequence[str] | None = None,
    entrances: gpd.GeoDataFrame | None = None,
    max_snap_m: float | None = None,
    catchment_factor: float | None = None,
    node_crossings: str | bool = "auto",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Capacity-aware access: Gaussian two-step floating catchment area (2SFCA, Dai 2010).

    Demand of compound k: ``P_k = households × capacity_per_1000_households / 1000`` (e.g. kindergarten
    places needed). Catchment ``d0 = catchment_factor × radius_m`` of the type (network metres), weight
    ``G(d) = (exp(-½(d/d0)²) − exp(-½)) / (1 − exp(-½))`` for d ≤ d0, else 0.
    Step 1: ``R_j = S_j / Σ_k G(d_kj) P_k`` (capacity per weighted demand of facility j).
    Step 2: ``A_i = Σ_j G(d_ij) R_j`` — places available per place needed around compound i (1 = supply
    matches demand; an over-subscribed facility contributes less than an empty one).

    Parameters
    ----------
    types : facility types to score; default every type with ``capacity_per_1000_households`` in the
        standards and at least one facility with a ``capacity``.
    catchment_factor : default from the standards' network data (1.0: d0 = the service radius).

    Returns
    -------
    (compound side, facility side):
    ``compound_id, facility_type, demand, access_2sfca, n_facilities`` (facilities within d0) and
    ``facility_id, facility_type, capacity, weighted_demand, ratio`` (R_j; NaN when no demand in reach),
    ``n_compounds``. Facilities without capacity are left out (with a warning).
    """
    standards = standards or load_standards()
    located = graph if isinstance(graph, Located) else locate(
        compounds, facilities, graph, standards=standards, entrances=entrances, max_snap_m=max_snap_m,
        node_crossings=node_crossings)
    ft = standards.facility_types
    factor = float(catchment_factor if catchment_factor is not None
                   else standards.network["catchment_factor"])
    detour = float(standards.network["detour_factor"])
    cap = located.facility_capacity
    if types is None:
        with_ratio = set(ft.index[ft["capacity_per_1000_households"].notna()])
        types = sorted({t for t, c in zip(located.facility_types, cap, strict=True)
                        if t in with_ratio and np.isfinite(c)})
    for t in types:
        if t not in ft.index:
            raise ConfigError(f"access_2sfca: unknown facility type {t!r}")
        if not np.isfinite(ft.at[t, "capacity_per_1000_households"]):
            raise ConfigError(f"access_2sfca: facility type {t!r} has no capacity_per_1000_households in "
                              f"the standards; set it under [standards.facility_types.{t}]")
    if "households" not in compounds:
        raise LayerError("layer 'compounds': missing column 'households' (needed for 2SFCA demand)")
    hh = pd.to_numeric(compounds["households"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    n = len(located.compound_ids)
    comp_rows, fac_rows = [], []
    for t in types:
        fac = np.flatnonzero(located.facility_types == t)
        no_cap = fac[~np.isfinite(cap[fac])]
        if len(no_cap):
            warnings.warn(f"2SFCA {t}: {len(no_cap)} facilities without capacity left out: "
                          f"{', '.join(located.facility_ids[no_cap][:10])}", UserWarning, stacklevel=2)
        fac = fac[np.isfinite(cap[fac])]
        if located.method == "network":
            fac = fac[located.facility_node[fac] >= 0]
        demand = hh * float(ft.at[t, "capacity_per_1000_households"]) / 1000.0
        d0 = factor * float(ft.at[t, "radius_m"])
        if len(fac):
            f, c, d = pair_distances(located, fac, d0, detour)
        else:
            f = c = np.array([], dtype=np.int64)
            d = np.array([], float)
        g = gaussian_decay(d, d0)
        slot = np.full(len(located.facility_ids), -1, dtype=np.int64)
        slot[fac] = np.arange(len(fac))
        wdem = np.bincount(slot[f], weights=g * demand[c], minlength=len(fac))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(wdem > 0, cap[fac] / wdem, np.nan)
        contrib = g * np.nan_to_num(ratio[slot[f]]) if len(f) else np.array([], float)
        acc = np.bincount(c, weights=contrib, minlength=n)
        n_fac = np.bincount(c, weights=(g > 0).astype(float), minlength=n).astype(int)
        n_comp = np.bincount(slot[f], weights=(g > 0).astype(float), minlength=len(fac)).astype(int)
        comp_rows.append(pd.DataFrame({"compound_id": located.compound_ids, "facility_type": t,
                                       "demand": demand, "access_2sfca": acc, "n_facilities": n_fac}))
        fac_rows.append(pd.DataFrame({"facility_id": located.facility_ids[fac], "facility_type": t,
                                      "capacity": cap[fac], "weighted_demand": wdem, "ratio": ratio,
                                      "n_compounds": n_comp}))
    comp_cols = ["compound_id", "facility_type", "demand", "access_2sfca", "n_facilities"]
    fac_cols = ["facility_id", "facility_type", "capacity", "weighted_demand", "ratio", "n_compounds"]
    comp_df = (pd.concat(comp_rows, ignore_index=True) if comp_rows else pd.DataFrame(columns=comp_cols))
    fac_df = (pd.concat(fac_rows, ignore_index=True) if fac_rows else pd.DataFrame(columns=fac_cols))
    comp_df = comp_df.sort_values(["compound_id", "facility_type"], kind="stable").reset_index(drop=True)
    fac_df = fac_df.sort_values(["facility_type", "facility_id"], kind="stable").reset_index(drop=True)
    return comp_df, fac_df

