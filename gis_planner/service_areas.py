"""Walk-time service areas (isochrones): the street pieces reached along the walking graph, widened into areas.

One implementation serves the coverage stage (:func:`service_areas`, one area per facility) and the map
(:func:`service_bands`, one dissolved area per band from the nearest facility): both cut the reached street
pieces with :func:`reached_segments`. The map's widening is computed face by face of the planar street graph
(:func:`planar_buffer`) instead of buffering and dissolving every piece (:func:`capsule_union`, its fallback).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.sparse import csr_array
from scipy.sparse.csgraph import connected_components, dijkstra

from .datafiles import default_setting, load_toml
from .network import WalkGraph, attach_points, check_metric_crs, snap_points, walk_graph
from .standards import Standards, load_standards

__all__ = [
    "band_minutes",
    "band_pieces",
    "capsule_union",
    "crossing_segments",
    "fill_holes",
    "node_segments",
    "planar_buffer",
    "reached_segments",
    "service_areas",
    "service_bands",
]


def band_minutes(standards: Standards) -> list[float]:
    """The walk-time bands drawn as service areas: the minutes of the living-circle tiers listed in
    ``data/map_style.toml`` ``[service_areas] tiers`` (GB 50180-2018 5/10/15-minute circles), as the standards
    (with the plan's overrides) give them, in increasing order.

    Examples
    --------
    >>> band_minutes(load_standards())
    [5.0, 10.0, 15.0]
    """
    tiers = load_toml("map_style.toml")["service_areas"]["tiers"]
    return sorted(float(standards.tiers.at[t, "minutes"]) for t in tiers)


# --------------------------------------------------------------------------------------------- reached pieces
def reached_segments(
    pu: np.ndarray, pv: np.ndarray, step: np.ndarray, length: np.ndarray,
    du: np.ndarray, dv: np.ndarray, limit: float, *,
    node_ids: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The parts of edges walked within ``limit`` metres, as an (n, 2, 2) array of segment end points.

    Parameters
    ----------
    pu, pv : (n, 2) coordinates of each edge's end nodes u and v (metres).
    step : (n, 2) unit vector from u to v (zero for zero-length edges).
    length : (n,) edge lengths (metres).
    du, dv : (n,) network distance from the source(s) to u and to v (metres, inf if unreached).
    limit : the walking distance of the band (metres).
    node_ids : (node id of u, node id of v) per edge; when given, the node ids of the piece ends are returned
        too (as ``return_index`` does in shapely).

    Returns
    -------
    Whole edges reached from both ends (or fully from one), and the partial pieces reached from u or v; with
    ``node_ids``, ``(segments, ends)`` where ``ends`` (k, 2) holds the node ids of the piece ends, -1 for the
    free end of a street piece reached part-way.
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
    if node_ids is None:
        return segs
    nu, nv = node_ids
    free_u, free_v = np.full(int(part_u.sum()), -1), np.full(int(part_v.sum()), -1)
    ends = np.concatenate([np.c_[nu[full], nv[full]], np.c_[nu[part_u], free_u], np.c_[free_v, nv[part_v]]])
    return segs, ends.astype(np.int64)


def service_areas(
    graph: WalkGraph | gpd.GeoDataFrame,
    points: gpd.GeoDataFrame | gpd.GeoSeries,
    minutes: Sequence[float] | None = None,
    speed_kmh: float | None = None,
    *,
    standards: Standards | None = None,
    id_column: str | None = None,
    buffer_m: float | None = None,
    max_snap_m: float | None = None,
    node_crossings: str | bool | None = None,
) -> gpd.GeoDataFrame:
    """Walk-time service areas (isochrones) around points or polygons, from the street pieces reached.

    Every edge reached within the band's distance is kept whole, an edge reached only part-way is cut at the
    remaining distance (from either end), and the pieces are buffered by ``buffer_m`` and dissolved — no
    convex hulls. Bands are nested (0–5, 0–10, 0–15 minutes).

    Parameters
    ----------
    graph : WalkGraph or roads layer (then built by :func:`gis_planner.network.walk_graph`).
    points : features (facilities or compounds) in the graph's CRS.
    minutes : band limits in minutes (default: :func:`band_minutes`, the 5/10/15-minute living circles).
    speed_kmh : walking speed (default: the standards' speed).
    standards : the run's standards (default: the bundled ones).
    id_column : column of ``points`` naming each feature (default: the index).
    buffer_m : half-width of the area drawn around reached streets (default: the standards'
        ``isochrone_buffer_m``, 25 m).
    max_snap_m : features farther than this from a walkable road get an empty area (metres; default: the
        ``[network] max_snap_m`` setting of ``data/defaults.toml``).
    node_crossings : the ``[network] node_crossings`` setting used when ``graph`` is a roads layer (default:
        ``data/defaults.toml``'s).

    Returns
    -------
    GeoDataFrame: ``point_id, minutes, distance_m, speed_kmh, geometry`` — one row per feature and band,
    sorted by point_id and minutes.
    """
    standards = standards or load_standards()
    speed = float(speed_kmh or standards.speed_kmh)
    buffer_m = float(buffer_m if buffer_m is not None else standards.network["isochrone_buffer_m"])
    if max_snap_m is None:
        max_snap_m = float(default_setting("network", "max_snap_m"))
    if minutes is None:
        minutes = band_minutes(standards)
    if isinstance(graph, gpd.GeoDataFrame):
        if node_crossings is None:
            node_crossings = default_setting("network", "node_crossings")
        graph = walk_graph(graph, standards, node_crossings=node_crossings)
    gs = points.geometry if isinstance(points, gpd.GeoDataFrame) else points
    check_metric_crs(gs, "points")
    ids = (points[id_column].astype(str).to_numpy() if id_column is not None
           else np.asarray(points.index.astype(str)))
    bands = np.sort(np.asarray(minutes, dtype=float))
    limits = bands * speed * 1000.0 / 60.0
    snaps = snap_points(graph, gs, max_snap_m=max_snap_m)
    g2, nodes = attach_points(graph, snaps, leaf=True)
    u, v, length = g2.edge_u, g2.edge_v, g2.edge_length
    pu = np.c_[g2.x[u], g2.y[u]]
    pv = np.c_[g2.x[v], g2.y[v]]
    rec_id, rec_min, rec_dist, rec_geom = [], [], [], []
    ok = np.flatnonzero(nodes >= 0)
    chunk = max(1, int(4e6 // max(g2.n_nodes, 1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        step = np.where(length[:, None] > 0, (pv - pu) / length[:, None], 0.0)
    for lo in range(0, len(ok), chunk):
        rows = ok[lo:lo + chunk]
        dist = np.atleast_2d(dijkstra(g2.matrix, directed=True, indices=nodes[rows], limit=limits[-1]))
        for r, d in zip(rows, dist, strict=True):
            du, dv = d[u], d[v]
            for m, lim in zip(bands, limits, strict=True):
                # metres of the edge reached from u and from v within the band
                segs = reached_segments(pu, pv, step, length, du, dv, lim)
                if len(segs):
                    area = shapely.buffer(shapely.multilinestrings(shapely.linestrings(segs)), buffer_m)
                else:
                    area = shapely.buffer(shapely.points(snaps.loc[r, ["px", "py"]].to_numpy(float)), buffer_m)
                rec_id.append(ids[r])
                rec_min.append(m)
                rec_dist.append(lim)
                rec_geom.append(area)
    for r in np.flatnonzero(nodes < 0):
        for m, lim in zip(bands, limits, strict=True):
            rec_id.append(ids[r])
            rec_min.append(m)
            rec_dist.append(lim)
            rec_geom.append(None)
    out = gpd.GeoDataFrame({"point_id": rec_id, "minutes": rec_min, "distance_m": rec_dist,
                            "speed_kmh": speed}, geometry=rec_geom, crs=graph.crs)
    return out.sort_values(["point_id", "minutes"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------------------------- planar buffer
def crossing_segments(segs: np.ndarray, ends: np.ndarray, *, pairs: bool = True,
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
    in the same direction (overlap); both are then split at their intersections (:func:`node_segments`).
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


def node_segments(segs: np.ndarray) -> np.ndarray:
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


def planar_buffer(segs: np.ndarray, buffer_m: float, *, ends: np.ndarray | None = None, tol_m: float = 0.0,
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
    segs : (n, 2, 2) straight pieces (metres) meeting only at shared end points (see :func:`node_segments`).
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


def capsule_union(segs: np.ndarray, buffer_m: float, *, tol_m: float = 0.0, quad_segs: int = 3,
                  tile_m: float = 2000.0) -> list[shapely.Polygon]:
    """The area within ``buffer_m`` of the pieces the direct way: each piece buffered, unioned tile by tile.

    The slow, assumption-free twin of :func:`planar_buffer` (its fallback). Each ``tile_m`` tile unions the
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



# --------------------------------------------------------------------------------------------- bands
def band_pieces(graph: WalkGraph, points: gpd.GeoDataFrame, minutes: Sequence[float], *, standards: Standards,
                crossings_noded: bool = False,
                max_snap_m: float | None = None) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """The street pieces reached within each band from the nearest of ``points`` (one multi-source search).

    Parameters
    ----------
    graph : the walking graph (metric CRS).
    points : the sources (any CRS).
    minutes : band limits in minutes.
    standards : the run's standards (walking speed).
    crossings_noded : the graph was built with its crossings split (:func:`gis_planner.network.walk_graph`
        with ``node_crossings``): only overlaps are looked for, not crossings away from nodes.
    max_snap_m : points farther than this from a walkable road reach nothing (metres; default: the
        ``[network] max_snap_m`` setting of ``data/defaults.toml``).

    Returns
    -------
    ``[(minutes, segments, ends), ...]`` largest band first: (k, 2, 2) piece end points (metres, the graph's
    CRS) and (k, 2) node ids (-1 for a free end). Where streets cross away from a node (a bridge over a
    street with no junction) the pieces are split at the crossings and every end gets its id from its point.
    """
    if points is None or not len(points) or graph is None:
        return []
    if max_snap_m is None:
        max_snap_m = float(default_setting("network", "max_snap_m"))
    pts = points.to_crs(graph.crs)
    speed = float(standards.speed_kmh)
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
    crossing[reach] = crossing_segments(np.stack([pu[reach], pv[reach]], axis=1), np.c_[nu[reach], nv[reach]],
                                        pairs=not crossings_noded, lines=g2.lines[reach])
    out = []
    for m, lim in zip(bands, limits, strict=True):
        c = ~crossing
        segs, ends = reached_segments(pu[c], pv[c], step[c], length[c], dist[u[c]], dist[v[c]], lim,
                                      node_ids=(nu[c], nv[c]))
        if crossing.any():
            c = crossing
            extra = node_segments(reached_segments(pu[c], pv[c], step[c], length[c], dist[u[c]], dist[v[c]], lim))
            xy = np.concatenate([segs.reshape(-1, 2), extra.reshape(-1, 2)])
            ids, _ = pd.factorize(xy[:, 0] + 1j * xy[:, 1])
            segs = np.concatenate([segs, extra])
            ends = ids.reshape(-1, 2).astype(np.int64)
        out.append((float(m), segs, ends))
    return out


def service_bands(graph: WalkGraph, points: gpd.GeoDataFrame, minutes: Sequence[float], *, standards: Standards,
                  tol_m: float, crossings_noded: bool = False, max_snap_m: float | None = None,
                  min_hole_m2: float = 0.0) -> gpd.GeoDataFrame | None:
    """Walk-time service areas of all ``points`` together, one dissolved polygon per band (largest first).

    The union of the single-facility isochrones of :func:`service_areas` equals the area reached from the
    *nearest* facility, so one multi-source shortest-path search replaces one search per facility: the street
    pieces within each band's walking distance (standards' speed × minutes), widened by the standards'
    isochrone buffer (``isochrone_buffer_m``, 25 m). The widening is computed face by face of the planar street
    graph (:func:`planar_buffer`; about 3 s for the three bands of a 202,500-node city grid where buffering and
    dissolving the pieces tile by tile took 8 minutes), and a face a smaller band shares with a larger one
    reuses its core. Should GEOS fail on a degenerate face, the band falls back to buffering the pieces one by
    one and unioning them tile by tile (:func:`capsule_union`).

    Parameters
    ----------
    graph : the walking graph (metric CRS).
    points : facilities (any CRS).
    minutes : band limits in minutes.
    standards : the run's standards (walking speed, isochrone buffer).
    tol_m : simplification tolerance of the area outlines (metres), at most half the isochrone buffer.
    crossings_noded : the graph's crossings were split (see :func:`band_pieces`).
    max_snap_m : points farther than this from a walkable road reach nothing (metres; see :func:`band_pieces`).
    min_hole_m2 : unreached patches inside an area smaller than this are filled (m²; 0 keeps them all).

    Returns
    -------
    GeoDataFrame ``minutes, geometry`` (MultiPolygon, the graph's CRS), or None when nothing is reached.
    """
    buffer_m = float(standards.network["isochrone_buffer_m"])
    tol_m = min(float(tol_m), 0.5 * buffer_m)
    cache: dict[str, Any] = {}
    rows = []
    for m, segs, ends in band_pieces(graph, points, minutes, standards=standards, crossings_noded=crossings_noded,
                                     max_snap_m=max_snap_m):
        try:
            polys = planar_buffer(segs, buffer_m, ends=ends, tol_m=tol_m, quad_segs=3, cache=cache)
        except shapely.errors.GEOSException:  # pragma: no cover - a degenerate face GEOS cannot shrink
            polys = capsule_union(segs, buffer_m, tol_m=tol_m, quad_segs=3)
        if polys:
            polys = fill_holes(np.asarray(polys, dtype=object), min_hole_m2)
            rows.append({"minutes": m, "geometry": shapely.multipolygons(polys)})
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=graph.crs) if rows else None


def fill_holes(polys: np.ndarray, min_hole_m2: float) -> np.ndarray:
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


