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


def _nearest_edges(graph: WalkGraph, geoms: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Nearest edge (lowest edge index among ties) and its distance (metres) for each geometry."""
    n = len(geoms)
    edge = np.full(n, -1, dtype=np.int64)
    dist = np.full(n, np.inf)
    b = shapely.bounds(geoms)
    a, e = graph.tree.query(shapely.box(b[:, 0] - radius, b[:, 1] - radius, b[:, 2] + radius, b[:, 3] + radius))
    if len(a):
        d = shapely.distance(geoms[a], graph.lines[e])
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
    geoms = np.asarray(geometry.array if hasattr(geometry, "array") else geometry, dtype=object)
    n = len(geoms)
    out = pd.DataFrame({
        "edge": np.full(n, -1, dtype=np.int64),
        "position_m": np.nan, "x": np.nan, "y": np.nan, "px": np.nan, "py": np.nan,
        "access_m": np.nan, "ok": False, "reason": "",
    })
    if n == 0:
        return out
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
        return out
    idx = np.flatnonzero(~missing)
    best_edge, best_dist = _nearest_edges(graph, geoms[idx], min(search_m, max_snap_m))
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
    g = geoms[rows]
    is_point = shapely.get_type_id(g) == 0
    fx = np.empty(len(rows))
    fy = np.empty(len(rows))
    if is_point.all():
        fx[:], fy[:] = shapely.get_x(g), shapely.get_y(g)
    else:
        pts = shapely.get_coordinates(g[is_point])
        fx[is_point], fy[is_point] = pts[:, 0], pts[:, 1]
        other = ~is_point
        # nearest point of the feature to its edge (the start of the shortest line between them)
        sl = shapely.shortest_line(g[other], graph.lines[edge[other]])
        start = shapely.get_coordinates(sl)[0::2]  # each shortest line has two points
        fx[other], fy[other] = start[:, 0], start[:, 1]
    pos, ex, ey = _points_on_segments(graph.x, graph.y, graph.edge_u, graph.edge_v, edge, fx, fy)
    out.loc[rows, "edge"] = edge
    out.loc[rows, "position_m"] = pos
    out.loc[rows, "x"] = ex
    out.loc[rows, "y"] = ey
    out.loc[rows, "px"] = fx
    out.loc[rows, "py"] = fy
    out.loc[rows, "access_m"] = np.hypot(fx - ex, fy - ey)
    out.loc[rows, "ok"] = True
    return out


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
