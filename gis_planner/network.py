"""Walking graph from a roads layer, snapping points onto its edges, and multi-source shortest paths."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.sparse import csr_array
from scipy.sparse.csgraph import connected_components, dijkstra

from ._errors import ConfigError, LayerError
from .datafiles import default_setting
from .standards import Standards, load_standards

__all__ = [
    "WalkGraph",
    "walk_graph",
    "snap_points",
    "snap_access",
    "main_components",
    "attach_points",
    "nearest_sources",
    "check_metric_crs",
    "crossings_noded",
]

_FALSE_WORDS = {"false", "f", "0", "no", "n", "否", "无", "×"}


def crossings_noded(roads: gpd.GeoDataFrame, setting: str = "auto") -> bool:
    """Whether :func:`walk_graph` should split lines where they cross (the ``[network] node_crossings`` setting).

    ``"auto"``: yes, unless every ``road_id`` comes from OpenStreetMap (``osm_…``), whose crossings without a
    shared node are bridges and tunnels; ``"yes"`` / ``"no"`` force it.
    """
    if setting == "auto":
        ids = roads["road_id"].astype(str) if "road_id" in roads.columns else pd.Series([], dtype=str)
        return not (len(ids) > 0 and bool(ids.str.startswith("osm_").all()))
    if setting not in ("yes", "no"):
        raise ConfigError(f"[network] node_crossings must be 'auto', 'yes' or 'no', got {setting!r}")
    return setting == "yes"


@dataclass(frozen=True, eq=False)
class WalkGraph:
    """An undirected walking graph with straight-segment edges (walking ignores one-way rules).

    Attributes
    ----------
    matrix : symmetric ``scipy.sparse.csr_array`` (n_nodes × n_nodes) of edge lengths in metres.
    x, y : node coordinates in the graph's metric CRS (metres).
    edge_u, edge_v : node indices of each edge (``edge_u < edge_v`` for road edges).
    edge_length : edge lengths in metres (the straight distance between the end nodes).
    edge_road : ``road_id`` each edge comes from (``None`` for access legs added by snapping).
    crs : the CRS of the coordinates (metric), or None.
    n_road_nodes : number of nodes that lie on roads (virtual nodes from snapping included); nodes with a
        higher index are access-leg leaves at the snapped features themselves.
    """

    matrix: csr_array
    x: np.ndarray
    y: np.ndarray
    edge_u: np.ndarray
    edge_v: np.ndarray
    edge_length: np.ndarray
    edge_road: np.ndarray
    crs: object = None
    n_road_nodes: int = 0
    _lines: np.ndarray | None = None

    @property
    def n_nodes(self) -> int:
        """Number of nodes."""
        return len(self.x)

    @property
    def n_edges(self) -> int:
        """Number of undirected edges."""
        return len(self.edge_u)

    @cached_property
    def lines(self) -> np.ndarray:
        """Edge geometries: one two-point LineString per edge (array of shapely geometries)."""
        if self._lines is not None and len(self._lines) == self.n_edges:
            return self._lines
        return _segments(self.x, self.y, self.edge_u, self.edge_v)

    @cached_property
    def tree(self) -> shapely.STRtree:
        """STRtree over the edge lines (positions = edge indices), for snapping."""
        return shapely.STRtree(self.lines)

    @cached_property
    def components(self) -> np.ndarray:
        """Connected-component label of every node."""
        return connected_components(self.matrix, directed=False)[1]

    @cached_property
    def component_length(self) -> np.ndarray:
        """Total street length (metres) of every connected component, indexed by component label."""
        labels = self.components
        if self.n_edges == 0:
            return np.zeros(int(labels.max()) + 1 if len(labels) else 0)
        return np.bincount(labels[self.edge_u], weights=self.edge_length, minlength=int(labels.max()) + 1)

    @cached_property
    def edges(self) -> gpd.GeoDataFrame:
        """The edge table: ``u, v, length_m, road_id, kind`` (``road`` / ``access``) and geometry."""
        road = self.edge_road
        kind = np.where(np.maximum(self.edge_u, self.edge_v) >= self.n_road_nodes, "access", "road")
        return gpd.GeoDataFrame(
            {"u": self.edge_u, "v": self.edge_v, "length_m": self.edge_length, "road_id": road, "kind": kind},
            geometry=self.lines,
            crs=self.crs,
        )


def _segments(x: np.ndarray, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    coords = np.stack([np.c_[x[u], y[u]], np.c_[x[v], y[v]]], axis=1)
    return shapely.linestrings(coords)


def _build(x, y, u, v, road, crs, n_road_nodes=None, lines=None) -> WalkGraph:
    """Assemble a WalkGraph from edge arrays (lengths from node coordinates)."""
    length = np.hypot(x[v] - x[u], y[v] - y[u])
    return _build_with_lengths(x, y, u, v, length, road, crs, n_road_nodes, lines)


def _build_with_lengths(x, y, u, v, length, road, crs, n_road_nodes=None, lines=None) -> WalkGraph:
    n = len(x)
    rows = np.concatenate([u, v])
    cols = np.concatenate([v, u])
    data = np.concatenate([length, length])
    # explicit zero lengths (a feature lying exactly on a road) are kept as zero-cost edges by csgraph
    matrix = csr_array((data, (rows, cols)), shape=(n, n))
    return WalkGraph(
        matrix=matrix,
        x=x,
        y=y,
        edge_u=u,
        edge_v=v,
        edge_length=length,
        edge_road=road,
        crs=crs,
        n_road_nodes=n if n_road_nodes is None else n_road_nodes,
        _lines=lines,
    )


def check_metric_crs(gdf: gpd.GeoDataFrame | gpd.GeoSeries, layer: str) -> None:
    """Raise LayerError if ``gdf`` has a geographic (lon/lat) CRS; distances need metres."""
    crs = gdf.crs
    if crs is not None and crs.is_geographic:
        raise LayerError(
            f"layer {layer!r}: CRS {crs.to_string()} is geographic (degrees); project it to a metric CRS "
            f"first (e.g. gdf.to_crs(gdf.estimate_utm_crs()) or a CGCS2000 Gauss-Krüger zone)"
        )
    if crs is not None and not crs.is_projected:
        raise LayerError(f"layer {layer!r}: CRS {crs.to_string()} is not a projected (metric) CRS")


def _walkable_mask(roads: gpd.GeoDataFrame, non_walkable_classes) -> np.ndarray:
    keep = np.ones(len(roads), dtype=bool)
    if "walkable" in roads:
        w = roads["walkable"]
        as_text = w.astype(str).str.strip().str.lower()
        is_false = w.eq(False).fillna(False).to_numpy(dtype=bool) | (w.notna() & as_text.isin(_FALSE_WORDS)).to_numpy()
        keep &= ~is_false
    if non_walkable_classes and "road_class" in roads:
        keep &= ~roads["road_class"].isin(list(non_walkable_classes)).to_numpy()
    return keep


def _row_label(roads: gpd.GeoDataFrame, pos: int) -> str:
    rid = roads["road_id"].iloc[pos] if "road_id" in roads else None
    return f"row {pos + 1}" + (f" (road_id {rid!r})" if rid is not None and not pd.isna(rid) else "")


def walk_graph(
    roads: gpd.GeoDataFrame,
    standards: Standards | None = None,
    *,
    node_crossings: str | bool = "auto",
    non_walkable_classes: list[str] | tuple[str, ...] | None = None,
    precision_m: float | None = None,
) -> WalkGraph:
    """Build the walking graph from a roads layer — the one recipe every stage, batch run and map uses.

    Lines are cut into straight segments at every vertex; vertices closer than ``precision_m`` become one
    node (so lines sharing a vertex are joined). Where crossings are noded (see :func:`crossings_noded`),
    lines that cross or touch without sharing a vertex (a T-junction drawn onto the middle of another street,
    an X crossing) are split at the intersection too. One-way tags are ignored (pedestrians walk both ways);
    every connected component is kept.

    Parameters
    ----------
    roads : line layer in a metric CRS with ``road_class`` and optional ``walkable`` (null = walkable) and
        ``road_id`` columns.
    standards : the run's standards; ``[network] non_walkable_classes`` and ``precision_m`` of
        ``data/standards.toml`` come from it (None: the bundled standards).
    node_crossings : the ``[network] node_crossings`` setting: ``"auto"`` (split crossings unless every
        ``road_id`` comes from OpenStreetMap, whose crossings without a shared node are bridges and tunnels),
        ``"yes"`` / ``"no"``, or a bool.
    non_walkable_classes : ``road_class`` values pedestrians cannot use (dropped); overrides the standards'.
    precision_m : coordinate tolerance in metres for merging vertices and detecting crossings; overrides
        the standards'.

    Returns
    -------
    WalkGraph with lengths in metres.

    Raises
    ------
    LayerError
        for a geographic CRS or a geometry that is not a line (naming the row and road_id).

    Examples
    --------
    >>> from shapely import LineString
    >>> roads = gpd.GeoDataFrame({"road_id": ["a", "b"], "road_class": ["local", "local"]},
    ...     geometry=[LineString([(0, 0), (100, 0)]), LineString([(50, -50), (50, 50)])], crs=3857)
    >>> g = walk_graph(roads)
    >>> g.n_nodes, g.n_edges, float(g.edge_length.sum())
    (5, 4, 200.0)
    >>> walk_graph(roads, node_crossings="no").n_edges
    2
    """
    if standards is None:
        standards = load_standards()
    if non_walkable_classes is None:
        non_walkable_classes = standards.network["non_walkable_classes"]
    if precision_m is None:
        precision_m = float(standards.network["precision_m"])
    if isinstance(roads, gpd.GeoDataFrame) and not isinstance(node_crossings, bool):
        node_crossings = crossings_noded(roads, node_crossings)
    if not isinstance(roads, gpd.GeoDataFrame):
        raise LayerError(f"layer 'roads': expected a GeoDataFrame, got {type(roads).__name__}")
    check_metric_crs(roads, "roads")
    geoms = roads.geometry.array.to_numpy() if len(roads) else np.array([], dtype=object)
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms)) if len(geoms) else np.array([], bool)
    type_id = shapely.get_type_id(geoms) if len(geoms) else np.array([], int)
    bad = present & ~np.isin(type_id, [1, 2, 5])
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise LayerError(
            f"layer 'roads': {_row_label(roads, pos)} field 'geometry': expected a LineString or "
            f"MultiLineString, got {geoms[pos].geom_type}"
        )
    keep = present & _walkable_mask(roads, non_walkable_classes)
    road_ids = (
        roads["road_id"].astype(object).where(roads["road_id"].notna(), None).to_numpy()
        if "road_id" in roads
        else np.array([str(i) for i in range(len(roads))], dtype=object)
    )
    rows = np.flatnonzero(keep)
    parts, part_row = shapely.get_parts(geoms[rows], return_index=True)
    coords, coord_part = shapely.get_coordinates(parts, return_index=True)
    if len(coords) < 2:
        empty_i = np.array([], dtype=np.int64)
        return _build(np.array([], float), np.array([], float), empty_i, empty_i,
                      np.array([], dtype=object), roads.crs)
    same = coord_part[1:] == coord_part[:-1]
    seg_a = np.flatnonzero(same)
    seg_road = road_ids[rows[part_row[coord_part[seg_a]]]]

    # merge vertices on a precision grid → node ids
    q = np.round(coords / precision_m).astype(np.int64)
    qmin = q.min(axis=0)
    q -= qmin
    span = int(q[:, 1].max()) + 1
    key = q[:, 0] * span + q[:, 1]
    ukey, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    x = coords[first, 0].copy()
    y = coords[first, 1].copy()
    u = inverse[seg_a]
    v = inverse[seg_a + 1]
    u, v, seg_road = _clean_edges(u, v, seg_road)

    lines = _segments(x, y, u, v)
    tree = None
    if node_crossings and len(u) > 1:
        tree = shapely.STRtree(lines)
        splits = _find_splits(tree, lines, x, y, u, v, precision_m, qmin, span, ukey)
        if splits is not None:
            seg, param, node, new_x, new_y = splits
            x = np.concatenate([x, new_x])
            y = np.concatenate([y, new_y])
            u, v, seg_road, lines = _split_edges(x, y, u, v, seg_road, lines, seg, param, node)
            tree = None
    graph = _build(x, y, u, v, seg_road, roads.crs, lines=lines)
    if tree is not None:
        graph.__dict__["tree"] = tree  # the crossing search's tree indexes exactly these edges: reuse it
    return graph


def _clean_edges(u, v, road, lines=None):
    """Drop zero-length edges, orient u < v and remove duplicate node pairs (first one kept)."""
    ok = u != v
    u, v, road = u[ok], v[ok], road[ok]
    if lines is not None:
        lines = lines[ok]
    lo, hi = np.minimum(u, v), np.maximum(u, v)
    n = int(hi.max()) + 1 if len(hi) else 1
    _, idx = np.unique(lo.astype(np.int64) * n + hi, return_index=True)
    idx.sort()
    out = (lo[idx], hi[idx], road[idx])
    return out if lines is None else (*out, lines[idx])


def _cross(ax, ay, bx, by):
    return ax * by - ay * bx


def _find_splits(tree, lines, x, y, u, v, tol, qmin, span, ukey):
    """Where segments meet without a shared node: (segment, parameter 0–1, node id) to split at.

    Candidate pairs come from the STRtree (bounding boxes); pairs that share an end node are skipped (so
    collinear overlaps of two segments from one common node are not split).
    """
    i, j = tree.query(lines)
    ui, vi, uj, vj = u[i], v[i], u[j], v[j]
    k = (ui != uj) & (ui != vj) & (vi != uj) & (vi != vj)
    if not k.any():
        return None
    i, j, ui, vi, uj, vj = i[k], j[k], ui[k], vi[k], uj[k], vj[k]
    ax, ay = x[ui], y[ui]
    rx, ry = x[vi] - ax, y[vi] - ay
    seglen = np.hypot(rx, ry)
    seg_out, par_out, node_out = [], [], []
    # (1) an end node of segment j lies on the interior of segment i (T-junction, collinear overlap)
    for end in (uj, vj):
        px, py = x[end] - ax, y[end] - ay
        s = (px * rx + py * ry) / (seglen * seglen)
        off = np.abs(_cross(rx, ry, px, py)) / seglen
        hit = (off <= tol) & (s * seglen > tol) & ((1 - s) * seglen > tol)
        seg_out.append(i[hit])
        par_out.append(s[hit])
        node_out.append(end[hit])
    # (2) proper crossings away from both segments' ends (each unordered pair once)
    k = np.flatnonzero(i < j)
    new_x = new_y = np.array([], float)
    if len(k):
        ii, jj = i[k], j[k]
        cx, cy = x[uj[k]], y[uj[k]]
        sx, sy = x[vj[k]] - cx, y[vj[k]] - cy
        arx, ary, aax, aay = rx[k], ry[k], ax[k], ay[k]
        denom = _cross(arx, ary, sx, sy)
        acx, acy = cx - aax, cy - aay
        with np.errstate(divide="ignore", invalid="ignore"):
            t = _cross(acx, acy, sx, sy) / denom
            w = _cross(acx, acy, arx, ary) / denom
        li, lj = seglen[k], np.hypot(sx, sy)
        hit = (denom != 0) & (t * li > tol) & ((1 - t) * li > tol) & (w * lj > tol) & ((1 - w) * lj > tol)
        if hit.any():
            t, w, ii, jj = t[hit], w[hit], ii[hit], jj[hit]
            px = aax[hit] + t * arx[hit]
            py = aay[hit] + t * ary[hit]
            # a crossing point is an existing node if it falls in that node's grid cell, else a new node
            qk = np.round(np.c_[px, py] / tol).astype(np.int64) - qmin
            key = qk[:, 0] * span + qk[:, 1]
            pos = np.minimum(np.searchsorted(ukey, key), len(ukey) - 1)
            found = ukey[pos] == key
            node = np.where(found, pos, -1)
            _, first, inv = np.unique(key[~found], return_index=True, return_inverse=True)
            node[~found] = len(x) + inv
            new_x, new_y = px[~found][first], py[~found][first]
            seg_out += [ii, jj]
            par_out += [t, w]
            node_out += [node, node]
    seg = np.concatenate(seg_out)
    if not len(seg):
        return None
    return seg, np.concatenate(par_out), np.concatenate(node_out), new_x, new_y


def _split_edges(x, y, u, v, road, lines, seg, param, node):
    """Replace each split segment by its consecutive pieces between the split nodes."""
    cut = np.unique(seg)
    # sequence per cut segment: start node (param 0), split nodes, end node (param 1)
    all_seg = np.concatenate([cut, seg, cut])
    all_par = np.concatenate([np.zeros(len(cut)), param, np.ones(len(cut))])
    all_node = np.concatenate([u[cut], node, v[cut]])
    order = np.lexsort((all_par, all_seg))
    s_seg, s_node = all_seg[order], all_node[order]
    same = s_seg[1:] == s_seg[:-1]
    pu, pv = s_node[:-1][same], s_node[1:][same]
    proad = road[s_seg[:-1][same]]
    keep = np.ones(len(u), dtype=bool)
    keep[cut] = False
    nu = np.concatenate([u[keep], pu])
    nv = np.concatenate([v[keep], pv])
    nroad = np.concatenate([road[keep], proad])
    nlines = np.concatenate([lines[keep], _segments(x, y, pu, pv)])
    return _clean_edges(nu, nv, nroad, nlines)


def _points_on_segments(x, y, u, v, edge, fx, fy):
    """Project points (fx, fy) onto segments ``edge``: position from u (metres), projected x, y."""
    ax, ay = x[u[edge]], y[u[edge]]
    rx, ry = x[v[edge]] - ax, y[v[edge]] - ay
    rr = rx * rx + ry * ry
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.clip(((fx - ax) * rx + (fy - ay) * ry) / rr, 0.0, 1.0)
    s = np.where(rr > 0, s, 0.0)
    return s * np.sqrt(rr), ax + s * rx, ay + s * ry


def _feature_points(g: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The point of each feature ``g`` nearest its target geometry (a point feature is its own point)."""
    is_point = shapely.get_type_id(g) == 0
    fx = np.empty(len(g))
    fy = np.empty(len(g))
    if is_point.any():
        pts = shapely.get_coordinates(g[is_point])
        fx[is_point], fy[is_point] = pts[:, 0], pts[:, 1]
    other = ~is_point
    if other.any():
        # nearest point of the feature to the target (the start of the shortest line between them)
        start = shapely.get_coordinates(shapely.shortest_line(g[other], targets[other]))[0::2]
        fx[other], fy[other] = start[:, 0], start[:, 1]
    return fx, fy


def _project(graph: WalkGraph, g: np.ndarray, edge: np.ndarray):
    """Feature → edge snaps: access point on the feature (fx, fy), position on the edge and projected point."""
    fx, fy = _feature_points(g, graph.lines[edge])
    pos, ex, ey = _points_on_segments(graph.x, graph.y, graph.edge_u, graph.edge_v, edge, fx, fy)
    return fx, fy, pos, ex, ey


def _nearest_edges(graph: WalkGraph, geoms: np.ndarray, radius: float,
                   pairs: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest edge (lowest edge index among ties) and its distance (metres) for each geometry.

    ``pairs``, when given, receives the (geometry, edge, distance) arrays measured within ``radius``.
    """
    n = len(geoms)
    edge = np.full(n, -1, dtype=np.int64)
    dist = np.full(n, np.inf)
    b = shapely.bounds(geoms)
    a, e = graph.tree.query(shapely.box(b[:, 0] - radius, b[:, 1] - radius, b[:, 2] + radius, b[:, 3] + radius))
    if len(a):
        d = shapely.distance(geoms[a], graph.lines[e])
        if pairs is not None:
            pairs.append((a, e, d))
        order = np.lexsort((e, d, a))
        a, e, d = a[order], e[order], d[order]
        first = np.r_[True, a[1:] != a[:-1]]
        edge[a[first]], dist[a[first]] = e[first], d[first]
    # an edge within ``radius`` is surely the nearest; otherwise ask the tree for the nearest at any distance
    rest = np.flatnonzero(dist > radius)
    if len(rest):
        (src, e2), d2 = graph.tree.query_nearest(geoms[rest], return_distance=True, all_matches=True)
        order = np.lexsort((e2, d2, src))
        src, e2, d2 = src[order], e2[order], d2[order]
        first = np.r_[True, src[1:] != src[:-1]]
        edge[rest[src[first]]], dist[rest[src[first]]] = e2[first], d2[first]
    return edge, dist


def snap_points(
    graph: WalkGraph,
    geometry: gpd.GeoSeries | np.ndarray,
    *,
    max_snap_m: float | None = None,
    access: str = "nearest",
    search_m: float = 50.0,
) -> pd.DataFrame:
    """Snap features to the nearest edge of the walking graph (a projected point, not the nearest node).

    Parameters
    ----------
    graph : the walking graph.
    geometry : points or polygons in the graph's CRS.
    max_snap_m : snaps longer than this (metres) are refused (``ok`` False, with a reason).
    access : ``"nearest"`` — a polygon is reached from the point of its outline nearest the network (0 m if
        a street touches or enters it); ``"centroid"`` — from its centroid.
    search_m : first look for edges within this many metres (a fast bounding-box query); features with
        none that close fall back to a nearest-neighbour search of the STRtree. Results do not depend on it.

    Returns
    -------
    DataFrame, one row per input feature: ``edge`` (edge index, -1 if none), ``position_m`` (metres from
    the edge's ``u`` node), ``x``, ``y`` (the projected point on the edge), ``px``, ``py`` (the access point
    on the feature), ``access_m`` (access leg in metres), ``ok`` and ``reason``.
    """
    return _snap_points(graph, geometry, max_snap_m=max_snap_m, access=access, search_m=search_m)[0]


def _snap_points(graph: WalkGraph, geometry, *, max_snap_m: float | None, access: str, search_m: float,
                 pairs: list | None = None) -> tuple[pd.DataFrame, float]:
    """:func:`snap_points`, also filling ``pairs`` (see :func:`_nearest_edges`); returns (snaps, radius used)."""
    geoms = np.asarray(geometry.array if hasattr(geometry, "array") else geometry, dtype=object)
    n = len(geoms)
    out = pd.DataFrame({
        "edge": np.full(n, -1, dtype=np.int64),
        "position_m": np.nan, "x": np.nan, "y": np.nan, "px": np.nan, "py": np.nan,
        "access_m": np.nan, "ok": False, "reason": "",
    })
    if n == 0:
        return out, 0.0
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    if access == "centroid":
        geoms = np.where(missing, geoms, shapely.centroid(geoms))
    elif access != "nearest":
        raise ValueError(f"access must be 'nearest' or 'centroid', got {access!r}")
    out.loc[missing, "reason"] = "no geometry"
    if max_snap_m is None:
        max_snap_m = float(default_setting("network", "max_snap_m"))
    if graph.n_edges == 0:
        out.loc[~missing, "reason"] = "no walkable road"
        return out, 0.0
    idx = np.flatnonzero(~missing)
    radius = min(search_m, max_snap_m)
    found: list = []
    best_edge, best_dist = _nearest_edges(graph, geoms[idx], radius, found)
    if pairs is not None and found:
        pa, pe, pd_ = found[0]
        pairs.append((idx[pa], pe, pd_))
    near = best_dist <= max_snap_m
    src, edge = np.flatnonzero(near), best_edge[near]
    far = np.flatnonzero(~near)
    if len(far):  # farther than max_snap_m: report how far the nearest road is
        too_far = idx[far]
        out.loc[too_far, "access_m"] = best_dist[far]
        out.loc[too_far, "reason"] = [f"nearest walkable road {d:.0f} m away > max_snap_m {max_snap_m:g} m"
                                      for d in best_dist[far]]
        out.loc[too_far, "edge"] = best_edge[far]
    rows = idx[src]
    fx, fy, pos, ex, ey = _project(graph, geoms[rows], edge)
    out.loc[rows, "edge"] = edge
    out.loc[rows, "position_m"] = pos
    out.loc[rows, "x"] = ex
    out.loc[rows, "y"] = ey
    out.loc[rows, "px"] = fx
    out.loc[rows, "py"] = fy
    out.loc[rows, "access_m"] = np.hypot(fx - ex, fy - ey)
    out.loc[rows, "ok"] = True
    return out, radius


def main_components(graph: WalkGraph, main_component_m: float) -> np.ndarray:
    """Which connected components are part of the main street network (bool per component label).

    A component counts as main when its streets total at least ``main_component_m`` metres; the largest
    component always does (so a small test network or a village is its own main network). Smaller pieces —
    a bridge footway, a private driveway, a path cut off by a missing crossing — are fragments.
    """
    length = graph.component_length
    if not len(length):
        return np.zeros(0, dtype=bool)
    return length >= min(float(main_component_m), float(length.max()))


def _snap_rows(feature: np.ndarray, edge: np.ndarray, fx, fy, pos, ex, ey, kind: str) -> pd.DataFrame:
    return pd.DataFrame({"feature": feature, "edge": edge, "position_m": pos, "x": ex, "y": ey, "px": fx,
                         "py": fy, "access_m": np.hypot(fx - ex, fy - ey), "ok": True, "reason": "",
                         "snap": kind})


def _within(tree: shapely.STRtree, edge_of: np.ndarray | None, feature: np.ndarray, geoms: np.ndarray,
            tol: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(feature, edge) pairs of ``feature`` with the edges of ``tree`` within ``tol[feature]`` metres."""
    if not len(feature):
        return feature, feature
    a, j = tree.query(geoms[feature], predicate="dwithin", distance=tol[feature])
    return feature[a], (j if edge_of is None else edge_of[j])


def _stretch_rows(graph: WalkGraph, feat: np.ndarray, e: np.ndarray, geoms: np.ndarray, kind: str) -> pd.DataFrame:
    """Snaps of features ``geoms[feat]`` to edges ``e``: the edge's point nearest the feature, and both ends of
    the stretch of the edge's nearest points (a side running parallel to the edge)."""
    if not len(feat):
        return _snap_rows(*(np.array([], np.int64),) * 2, *(np.array([], float),) * 5, kind)
    g = geoms
    a = feat
    fx, fy, pos, ex, ey = _project(graph, g[a], e)
    # the edge's points nearest the feature form a stretch when a side of the feature runs parallel to it (or
    # along it); the stretch's ends are projections of the side's vertices or the edge's end nodes. A point
    # feature has a single nearest point.
    d_pair = np.hypot(fx - ex, fy - ey)
    n = len(a)
    lo = np.full(n, np.inf)
    hi = np.full(n, -np.inf)
    poly = np.flatnonzero(shapely.get_type_id(g[a]) != 0)
    ue, ve = graph.edge_u[e], graph.edge_v[e]
    ax, ay = graph.x[ue], graph.y[ue]
    rx, ry = graph.x[ve] - ax, graph.y[ve] - ay
    length = graph.edge_length[e]
    if len(poly):
        vert, vi = shapely.get_coordinates(g[a[poly]], return_index=True)
        vi = poly[vi]
        t = ((vert[:, 0] - ax[vi]) * rx[vi] + (vert[:, 1] - ay[vi]) * ry[vi]) / length[vi]
        # a vertex whose perpendicular foot on the edge is as near as the edge gets: an end of the stretch
        off = np.abs(_cross(rx[vi], ry[vi], vert[:, 0] - ax[vi], vert[:, 1] - ay[vi])) / length[vi]
        hit = (t >= 0) & (t <= length[vi]) & (off <= d_pair[vi] + 1e-6)
        np.minimum.at(lo, vi[hit], t[hit])
        np.maximum.at(hi, vi[hit], t[hit])
        # an end node of the edge as near as the edge gets (the side runs past the edge's end)
        for at in (0.0, 1.0):
            nx_, ny_ = ax[poly] + at * rx[poly], ay[poly] + at * ry[poly]
            near = shapely.distance(g[a[poly]], shapely.points(nx_, ny_)) <= d_pair[poly] + 1e-6
            k = poly[near]
            lo[k] = np.minimum(lo[k], at * length[k])
            hi[k] = np.maximum(hi[k], at * length[k])
    stretch = np.isfinite(lo) & (hi - lo > 1e-9)
    keep = ~stretch  # within a stretch its ends are at least as near everywhere along the edge
    parts = [_snap_rows(feat[keep], e[keep], fx[keep], fy[keep], pos[keep], ex[keep], ey[keep], kind)]
    for ends in (lo, hi):
        k = np.flatnonzero(stretch)
        if len(k):
            f = ends[k] / length[k]
            qx, qy = ax[k] + f * rx[k], ay[k] + f * ry[k]
            px, py = _feature_points(g[a[k]], shapely.points(qx, qy))
            parts.append(_snap_rows(feat[k], e[k], px, py, ends[k], qx, qy, kind).assign(
                stretch_lo=lo[k], stretch_hi=hi[k]))
    return pd.concat(parts, ignore_index=True)


def _inside_stretches(graph: WalkGraph, rows: pd.DataFrame, geoms: np.ndarray) -> pd.DataFrame:
    """Rows for every other feature's snap lying inside a feature's stretch (a facility across the street from
    the middle of a compound's side is reached straight across, not from one end of the side)."""
    st = rows.loc[rows["stretch_lo"].notna(), ["feature", "edge", "stretch_lo", "stretch_hi"]].drop_duplicates()
    if not len(st):
        return rows.iloc[:0]
    pts = rows.loc[rows["ok"].to_numpy(bool), ["feature", "edge", "position_m"]].rename(columns={"feature": "other"})
    m = st.merge(pts, on="edge")
    m = m[(m["other"] != m["feature"]) & (m["position_m"] > m["stretch_lo"] + 1e-9)
          & (m["position_m"] < m["stretch_hi"] - 1e-9)].drop_duplicates(["feature", "edge", "position_m"])
    if not len(m):
        return rows.iloc[:0]
    e = m["edge"].to_numpy(np.int64)
    pos = m["position_m"].to_numpy(float)
    f = pos / graph.edge_length[e]
    ue, ve = graph.edge_u[e], graph.edge_v[e]
    qx = graph.x[ue] + f * (graph.x[ve] - graph.x[ue])
    qy = graph.y[ue] + f * (graph.y[ve] - graph.y[ue])
    feat = m["feature"].to_numpy(np.int64)
    px, py = _feature_points(geoms[feat], shapely.points(qx, qy))
    return _snap_rows(feat, e, px, py, pos, qx, qy, "touch")


def snap_access(
    graph: WalkGraph,
    geometry: gpd.GeoSeries | np.ndarray,
    *,
    max_snap_m: float | None = None,
    access: str = "nearest",
    touch_m: float | None = None,
    main_component_m: float | None = None,
    search_m: float = 50.0,
) -> pd.DataFrame:
    """All the points where each feature meets the walking network: one or more snaps per feature.

    A feature (a compound's red line, an entrance, a facility) is reached

    - from its nearest edge (:func:`snap_points`, row ``snap = "nearest"``);
    - from every street within its nearest distance + ``touch_m`` (``"touch"``): the point of each such edge
      nearest the feature — and when a side of the feature runs parallel to (or along) the edge, so that the
      nearest points form a stretch, both ends of that stretch — so a compound that several streets touch is
      reached from all of them, one whose side runs along a street from both ends of that side (never from
      one arbitrary point of it), and a search takes the best;
    - when none of these lies on the main street network (:func:`main_components`) — the nearest street is an
      isolated fragment such as a bridge footway — also from the nearest edge of the main network, if one lies
      within ``max_snap_m`` (``"main"``). A feature that reaches only a fragment keeps its snaps and says so
      in ``reason``.

    Parameters
    ----------
    graph : the walking graph.
    geometry : points or polygons in the graph's CRS.
    max_snap_m : snaps longer than this (metres) are refused; default ``[network] max_snap_m`` of
        ``data/defaults.toml``.
    access : ``"nearest"`` (the outline) or ``"centroid"``, as in :func:`snap_points`.
    touch_m : streets within the nearest distance + this many metres are all access streets; default
        ``[network] access_tolerance_m`` of ``data/standards.toml``.
    main_component_m : street length (metres) from which a connected component is main; default
        ``[network] main_component_m`` of ``data/standards.toml``.
    search_m : as in :func:`snap_points` (speed only).

    Returns
    -------
    DataFrame: the columns of :func:`snap_points` plus ``feature`` (position of the input feature), ``snap``
    (``nearest`` / ``touch`` / ``main``), ``component_m`` (street length of the snapped edge's component, m)
    and ``main`` (bool); sorted by feature, the ``nearest`` row first. A refused feature has one row
    (``ok`` False). Distances stay exact: every row is a real point on an edge with its straight access leg.
    """
    geoms = np.asarray(geometry.array if hasattr(geometry, "array") else geometry, dtype=object)
    if max_snap_m is None:
        max_snap_m = float(default_setting("network", "max_snap_m"))
    net = load_standards().network if touch_m is None or main_component_m is None else {}
    touch_m = float(net["access_tolerance_m"] if touch_m is None else touch_m)
    main_component_m = float(net["main_component_m"] if main_component_m is None else main_component_m)
    measured: list = []
    base, radius = _snap_points(graph, geoms, max_snap_m=max_snap_m, access=access, search_m=search_m,
                                pairs=measured)
    base.insert(0, "feature", np.arange(len(base)))
    base["snap"] = "nearest"
    base["component_m"] = np.nan
    base["main"] = False
    ok = np.flatnonzero(base["ok"].to_numpy(bool))
    if not len(ok):
        return base
    if access == "centroid":
        geoms = np.where(shapely.is_missing(geoms) | shapely.is_empty(geoms), geoms, shapely.centroid(geoms))
    labels = graph.components
    comp_len = graph.component_length
    is_main = main_components(graph, main_component_m)
    touch = min(touch_m, max_snap_m)
    # every edge within (nearest distance + touch) of the feature: its nearest point and both ends of the stretch
    # lying that close (a side parallel to a street is reached at whichever end is nearer the destination)
    tol = np.zeros(len(base))
    tol[ok] = np.minimum(base["access_m"].to_numpy(float)[ok] + touch, max_snap_m)
    # pairs already measured by the nearest-edge search (all edges within ``radius``) need no second query
    reuse = np.zeros(len(base), dtype=bool)
    reuse[ok] = tol[ok] <= radius
    pa, pe, pd_ = measured[0] if measured else (np.array([], np.int64),) * 2 + (np.array([], float),)
    sel = reuse[pa] & (pd_ <= tol[pa])
    ask = ok[~reuse[ok]]
    rows = pd.concat([base, _stretch_rows(graph, pa[sel], pe[sel], geoms, "touch"),
                      _stretch_rows(graph, *_within(graph.tree, None, ask, geoms, tol), geoms, "touch")],
                     ignore_index=True)
    okr = rows["ok"].to_numpy(bool)
    edge = rows["edge"].to_numpy(np.int64)
    lab = np.where(okr, labels[graph.edge_u[np.maximum(edge, 0)]], -1)
    rows["component_m"] = np.where(okr, comp_len[np.maximum(lab, 0)], np.nan)
    rows["main"] = okr & is_main[np.maximum(lab, 0)]
    on_main = np.zeros(len(base), dtype=bool)
    np.logical_or.at(on_main, rows["feature"].to_numpy(), rows["main"].to_numpy(bool))
    frag = ok[~on_main[ok]]
    if len(frag) and is_main.any():
        main_edges = np.flatnonzero(is_main[labels[graph.edge_u]])
        tree = shapely.STRtree(graph.lines[main_edges])
        (src, _), dm = tree.query_nearest(geoms[frag], max_distance=max_snap_m, return_distance=True)
        near = np.full(len(frag), np.inf)
        np.minimum.at(near, src, dm)
        has = np.isfinite(near)
        if has.any():
            feat = frag[has]
            tol[feat] = np.minimum(near[has] + touch, max_snap_m)
            extra = _stretch_rows(graph, *_within(tree, main_edges, feat, geoms, tol), geoms, "main")
            extra["component_m"] = comp_len[labels[graph.edge_u[extra["edge"].to_numpy(np.int64)]]]
            extra["main"] = True
            rows = pd.concat([rows, extra], ignore_index=True)
            on_main[feat] = True
    if "stretch_lo" in rows.columns:
        rows = pd.concat([rows, _inside_stretches(graph, rows, geoms)], ignore_index=True).drop(
            columns=["stretch_lo", "stretch_hi"])
        okr = rows["ok"].to_numpy(bool)
        lab = np.where(okr, labels[graph.edge_u[np.maximum(rows["edge"].to_numpy(np.int64), 0)]], 0)
        rows["component_m"] = np.where(okr, comp_len[lab], np.nan)
        rows["main"] = okr & is_main[lab]
    # one row per point reached: an edge end node is the same point whichever edge it was found from
    edge = rows["edge"].to_numpy(np.int64)
    pos = rows["position_m"].to_numpy(float)
    okr = rows["ok"].to_numpy(bool)
    e0 = np.maximum(edge, 0)
    length = graph.edge_length[e0]
    node = np.where(pos <= 1e-6, graph.edge_u[e0], np.where(length - pos <= 1e-6, graph.edge_v[e0], -1))
    rows["_key"] = np.where(okr & (node >= 0), node, -2 - edge)
    rows["_pos"] = np.where(node >= 0, 0.0, np.round(pos, 6))
    rows["_first"] = (rows["snap"] != "nearest").astype(int)
    rows = rows.sort_values(["feature", "_first", "access_m", "edge", "position_m"], kind="stable")
    rows = rows.drop_duplicates(["feature", "_key", "_pos"]).drop(columns=["_key", "_pos", "_first"])
    rows = rows.reset_index(drop=True)
    isolated = np.zeros(len(base), dtype=bool)
    isolated[ok] = ~on_main[ok]
    if isolated.any():
        sel = rows["feature"].isin(np.flatnonzero(isolated)).to_numpy() & rows["ok"].to_numpy(bool)
        rows.loc[sel, "reason"] = [
            f"isolated street fragment ({m:.0f} m of connected streets < main_component_m {main_component_m:g} m);"
            f" no street of the main network within max_snap_m {max_snap_m:g} m"
            for m in rows.loc[sel, "component_m"]]
    return rows


def attach_points(
    graph: WalkGraph,
    snaps: pd.DataFrame,
    leaf: np.ndarray | bool = False,
    *,
    node_tol_m: float = 1e-6,
) -> tuple[WalkGraph, np.ndarray]:
    """Insert snapped points into the graph as virtual nodes splitting their edges.

    Several points on one edge are sorted along it and the edge is cut into consecutive pieces, so distances
    between them stay exact. A point within ``node_tol_m`` of an edge end uses that node. With ``leaf``, a
    point also gets its own leaf node at the access point on the feature, joined to its virtual node by the
    access leg (so a search can start at the feature itself). The CSR matrix is rebuilt once.

    Parameters
    ----------
    graph : the walking graph the snaps were made on.
    snaps : output of :func:`snap_points` (rows with ``ok`` False are ignored).
    leaf : per snap (or for all), whether to add a leaf node for the access leg.
    node_tol_m : metres within which a projected point coincides with an edge end node.

    Returns
    -------
    (new graph, node index per snap): the leaf node where ``leaf`` is set, else the virtual node on the
    road; -1 for refused snaps. Original node and edge indices of unsplit edges are kept.
    """
    n0 = graph.n_nodes
    ok = snaps["ok"].to_numpy(dtype=bool)
    leaf = np.broadcast_to(np.asarray(leaf, dtype=bool), ok.shape)
    node_of = np.full(len(snaps), -1, dtype=np.int64)
    if not ok.any():
        return graph, node_of
    idx = np.flatnonzero(ok)
    edge = snaps["edge"].to_numpy()[idx]
    pos = snaps["position_m"].to_numpy()[idx]
    length = graph.edge_length[edge]
    at_u = pos <= node_tol_m
    at_v = (length - pos) <= node_tol_m
    node_of[idx[at_u]] = graph.edge_u[edge[at_u]]
    node_of[idx[at_v & ~at_u]] = graph.edge_v[edge[at_v & ~at_u]]
    inner = ~(at_u | at_v)
    x, y = graph.x, graph.y
    u, v, road, lines = graph.edge_u, graph.edge_v, graph.edge_road, graph.lines
    elen = graph.edge_length
    if inner.any():
        ie, ipos = edge[inner], pos[inner]
        pairs = np.stack([ie.astype(float), ipos], axis=1)
        uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
        inv = inv.ravel()
        ue, upos = uniq[:, 0].astype(np.int64), uniq[:, 1]
        new_nodes = n0 + np.arange(len(uniq))
        node_of[idx[inner]] = new_nodes[inv]
        frac = upos / elen[ue]
        nx_ = x[u[ue]] + frac * (x[v[ue]] - x[u[ue]])
        ny_ = y[u[ue]] + frac * (y[v[ue]] - y[u[ue]])
        x = np.concatenate([x, nx_])
        y = np.concatenate([y, ny_])
        cut = np.unique(ue)
        all_e = np.concatenate([cut, ue, cut])
        all_pos = np.concatenate([np.zeros(len(cut)), upos, elen[cut]])
        all_node = np.concatenate([u[cut], new_nodes, v[cut]])
        order = np.lexsort((all_pos, all_e))
        s_e, s_pos, s_node = all_e[order], all_pos[order], all_node[order]
        same = s_e[1:] == s_e[:-1]
        pu, pv = s_node[:-1][same], s_node[1:][same]
        plen = (s_pos[1:] - s_pos[:-1])[same]
        keep = np.ones(len(u), dtype=bool)
        keep[cut] = False
        u = np.concatenate([u[keep], pu])
        v = np.concatenate([v[keep], pv])
        elen = np.concatenate([elen[keep], plen])
        road = np.concatenate([road[keep], road[s_e[:-1][same]]])
        lines = np.concatenate([lines[keep], _segments(x, y, pu, pv)])
    n_road = len(x)
    lf = np.flatnonzero(leaf[idx])
    if len(lf):
        rows = idx[lf]
        leaf_nodes = n_road + np.arange(len(lf))
        lx = snaps["px"].to_numpy()[rows]
        ly = snaps["py"].to_numpy()[rows]
        lu = node_of[rows]
        x = np.concatenate([x, lx])
        y = np.concatenate([y, ly])
        u = np.concatenate([u, lu])
        v = np.concatenate([v, leaf_nodes])
        elen = np.concatenate([elen, snaps["access_m"].to_numpy()[rows]])
        road = np.concatenate([road, np.full(len(lf), None, dtype=object)])
        lines = np.concatenate([lines, _segments(x, y, lu, leaf_nodes)])
        node_of[rows] = leaf_nodes
    new = _build_with_lengths(x, y, u, v, elen, road, graph.crs, n_road_nodes=n_road, lines=lines)
    return new, node_of


def nearest_sources(
    graph: WalkGraph,
    sources: np.ndarray,
    *,
    limit_m: float = np.inf,
) -> tuple[np.ndarray, np.ndarray]:
    """Network distance from every node to its nearest source node, in one multi-source search.

    One call of ``scipy.sparse.csgraph.dijkstra(min_only=True)``: its cost does not grow with the number
    of sources.

    Parameters
    ----------
    graph : the walking graph.
    sources : node indices of the sources (e.g. facility leaf nodes).
    limit_m : search radius in metres; nodes farther from every source get ``inf``.

    Returns
    -------
    (distance in metres per node, position in ``sources`` of the nearest source per node, -1 if none).
    """
    sources = np.asarray(sources, dtype=np.int64)
    n = graph.n_nodes
    if len(sources) == 0 or n == 0:
        return np.full(n, np.inf), np.full(n, -1, dtype=np.int64)
    dist, _, src = dijkstra(graph.matrix, directed=True, indices=sources, min_only=True,
                            limit=limit_m, return_predecessors=True)
    lookup = np.full(n, -1, dtype=np.int64)
    lookup[sources[::-1]] = np.arange(len(sources))[::-1]  # first position for a repeated source
    which = np.where(src >= 0, lookup[np.maximum(src, 0)], -1)
    return dist, which
