"""Bundling options of DOMAIN.md §10.2.4 on arrays: contiguity-constrained Ward merging with a maximum diameter
and a common-needs tie-breaker, scattered compounds merged into the nearest bundle, walls to open and paths to
connect between member compounds.

The settings, checks, texts and the public ``bundle`` / ``connections`` functions are in
:mod:`gis_planner.bundling`; this module holds the array work they share (metres and m² throughout, metric CRS).
"""

from __future__ import annotations

import heapq

import numpy as np
import pandas as pd
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = [
    "REL_EPS", "agglomerate", "connection_geometries", "crossing_barriers", "group_diameters", "hull_vertices",
    "max_cross_distance", "needs_matrix", "scattered_merges", "split_reasons",
]

#: relative tolerance of every cap and diameter comparison (a bundle exactly at a cap fits)
REL_EPS = 1e-9
_EMPTY_LINE = shapely.from_wkt("LINESTRING EMPTY")


# ---------------------------------------------------------------------------------------------- barriers
def crossing_barriers(lines: np.ndarray, barriers: np.ndarray,
                      labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which connecting lines a barrier cuts, and the first such barrier's label.

    A line barrier must cross the interior of the connecting line in a point (DE-9IM ``0********``: a road
    running along the line or ending in the gap does not cut); a polygon barrier (river area) must contain part of
    its interior (``T********``).

    Parameters
    ----------
    lines : connecting lines (e.g. ``shapely.shortest_line`` between two red lines), metres.
    barriers : barrier lines or polygons; labels : one label per barrier (its id, or ``row k``).

    Returns
    -------
    (hit, first): bool per line, and the label of the first barrier (lowest position) that cuts it, else None.
    """
    hit = np.zeros(len(lines), dtype=bool)
    first = np.full(len(lines), None, dtype=object)
    if not len(lines) or not len(barriers):
        return hit, first
    li, bi = shapely.STRtree(barriers).query(lines, predicate="intersects")
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


# --------------------------------------------------------------------------------------------- diameters
def hull_vertices(xy: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the convex hull of the points of each group (the farthest two points of a set are hull
    vertices, so a diameter needs only these).

    Parameters
    ----------
    xy : (n, 2) point coordinates, metres; groups : (n,) integer group of each point.

    Returns
    -------
    (vertices (m, 2), group of each vertex (m,)).
    """
    if not len(groups):
        return np.empty((0, 2)), np.empty(0, dtype=np.int64)
    uniq, code = np.unique(groups, return_inverse=True)
    order = np.argsort(code, kind="stable")
    hulls = shapely.convex_hull(shapely.multipoints(shapely.points(xy[order]), indices=code[order]))
    coords, idx = shapely.get_coordinates(hulls, return_index=True)
    return coords, uniq[idx]


def max_cross_distance(vertices: np.ndarray, vertex_group: np.ndarray, a: np.ndarray,
                       b: np.ndarray) -> np.ndarray:
    """For each pair of groups ``(a[k], b[k])``, the largest distance between a point of one and a point of
    the other (metres); with ``a == b`` the diameter of the group. Inputs from :func:`hull_vertices`."""
    out = np.zeros(len(a))
    if not len(a):
        return out
    verts = pd.DataFrame({"g": vertex_group, "x": vertices[:, 0], "y": vertices[:, 1]})
    k = np.arange(len(a))
    left = pd.DataFrame({"k": k, "g": a}).merge(verts, on="g")
    right = pd.DataFrame({"k": k, "g": b}).merge(verts, on="g")
    both = left.merge(right, on="k", suffixes=("_a", "_b"))
    dist = np.hypot(both["x_a"].to_numpy() - both["x_b"].to_numpy(), both["y_a"].to_numpy() - both["y_b"].to_numpy())
    np.maximum.at(out, both["k"].to_numpy(), dist)
    return out


def group_diameters(xy: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The diameter of each group of points: the largest straight-line distance between two of its points.

    Returns
    -------
    (groups (sorted unique), diameter_m of each).

    Examples
    --------
    >>> import numpy as np
    >>> group_diameters(np.array([[0, 0], [300, 400], [0, 100], [50, 0]], float), np.array([0, 0, 0, 1]))
    (array([0, 1]), array([500.,   0.]))
    """
    uniq = np.unique(groups)
    vertices, vgroup = hull_vertices(xy, groups)
    return uniq, max_cross_distance(vertices, vgroup, uniq, uniq)


def _cross(a: np.ndarray, b: np.ndarray) -> float:
    diff = a[:, None, :] - b[None, :, :]
    return float(np.sqrt((diff * diff).sum(-1).max()))


def _hull(points: np.ndarray) -> np.ndarray:
    return shapely.get_coordinates(shapely.convex_hull(shapely.multipoints(points)))


# ------------------------------------------------------------------------------------------------- needs
def needs_matrix(frame: pd.DataFrame, columns: list[str]) -> tuple[str | None, np.ndarray, list[str]]:
    """The renovation needs of each compound as a 0/1 matrix, from the first of ``columns`` present.

    Parameters
    ----------
    frame : compounds; the column holds ``;``-joined items (``renovation_classes`` of ``eligibility.screen``,
        e.g. ``基础;完善``, or a ``needs_signature`` of item codes).
    columns : candidate column names, in order of preference.

    Returns
    -------
    (column used or None, (n, k) float matrix, the k item names in sorted order).
    """
    for col in columns:
        if col in frame.columns:
            text = frame[col].astype("string").fillna("").astype(str)
            text = text.str.replace(r"\s*[;；]\s*", ";", regex=True).str.strip().str.strip(";")
            dummies = text.str.get_dummies(sep=";")
            dummies = dummies.loc[:, [c for c in dummies.columns if c.strip()]]
            return col, dummies.to_numpy(dtype=float), [str(c) for c in dummies.columns]
    return None, np.zeros((len(frame), 0)), []


# --------------------------------------------------------------------------------------------- clustering
def agglomerate(n: int, ei: np.ndarray, ej: np.ndarray, xy: np.ndarray, area: np.ndarray, loads: np.ndarray,
                caps: np.ndarray, *, max_diameter: float = 0.0, needs: np.ndarray | None = None,
                needs_weight: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Contiguity-constrained Ward merging under caps and a maximum diameter.

    Components of the adjacency graph whose totals fit every cap (and whose diameter — the largest distance
    between two member centroids — is at most ``max_diameter``) become one region each. In a component that
    does not fit, regions start as single compounds and the adjacent pair with the smallest merge cost whose
    merged region fits every cap and the diameter is merged, until no adjacent pair fits. Regions are therefore
    connected by construction, compact (Ward), and maximal: no two adjacent regions can be merged within the
    limits.

    The merge cost is the Ward cost (increase of area-weighted spatial inertia, m⁴) times
    ``1 + needs_weight · (1 − J)``, where ``J`` is the weighted Jaccard similarity of the two regions' needs
    profiles (share of members needing each item; Σmin / Σmax, 1 when neither needs anything): with a small
    weight (0.05) it only reorders pairs whose Ward costs are within 5 % of each other, preferring the pair with
    common needs. Exact ties go to the more similar pair, then to node index (= compound_id order).

    Parameters
    ----------
    n : number of nodes; ei, ej : adjacent node pairs; xy : (n, 2) centroids, metres; area : (n,) m²;
    loads : (n, d) quantities capped per region; caps : (d,) caps (``inf`` = none).
    max_diameter : metres, 0 = no limit. needs : (n, k) 0/1 needs matrix or None; needs_weight : 0 = off.

    Returns
    -------
    (labels, comp): region label per node (the smallest node index of the region) and component per node.
    """
    if n == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(ei)), (ei, ej)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    tot = np.zeros((comp.max() + 1, loads.shape[1]))
    np.add.at(tot, comp, loads)
    fits = np.all(tot <= caps * (1 + REL_EPS), axis=1)
    limit = float(max_diameter or 0.0)
    if limit > 0:
        fits &= group_diameters(xy, comp)[1] <= limit * (1 + REL_EPS)
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
    weight = float(needs_weight) if needs is not None and needs.shape[1] else 0.0
    prof = needs.tolist() if weight > 0 else None
    count = [1] * n
    hulls = {int(i): xy[i:i + 1] for i in np.flatnonzero(big)} if limit > 0 else {}
    diam = [0.0] * n
    nbrs: dict[int, set[int]] = {int(i): set() for i in np.flatnonzero(big)}
    for i, j in zip(ei.tolist(), ej.tolist(), strict=True):
        nbrs[i].add(j)
        nbrs[j].add(i)
    version = [0] * n
    alive = big.tolist()
    parent = list(range(n))

    def union_diameter(i: int, j: int) -> float:
        return max(diam[i], diam[j], _cross(hulls[i], hulls[j]))

    def fits_pair(i: int, j: int) -> bool:
        li, lj = ld[i], ld[j]
        if not all(li[k] + lj[k] <= cap[k] * (1 + REL_EPS) for k in range(d)):
            return False
        return limit <= 0 or union_diameter(i, j) <= limit * (1 + REL_EPS)

    def entry(i: int, j: int) -> tuple:
        dx, dy = cx[i] - cx[j], cy[i] - cy[j]
        ward = w[i] * w[j] / (w[i] + w[j]) * (dx * dx + dy * dy)
        dissim = 0.0
        if prof is not None:
            hi = sum(map(max, prof[i], prof[j]))
            dissim = 1.0 - (sum(map(min, prof[i], prof[j])) / hi if hi > 0 else 1.0)
        return ward * (1.0 + weight * dissim), dissim, i, j, version[i], version[j]

    heap = [entry(i, j) for i, j in zip(ei.tolist(), ej.tolist(), strict=True) if i < j and fits_pair(i, j)]
    heapq.heapify(heap)
    while heap:
        _, _, i, j, vi, vj = heapq.heappop(heap)
        if not (alive[i] and alive[j]) or version[i] != vi or version[j] != vj:
            continue
        # merge j into i (i < j, so every region is labelled by its smallest node index)
        if limit > 0:
            diam[i] = union_diameter(i, j)
            hulls[i] = _hull(np.vstack([hulls[i], hulls.pop(j)]))
        if prof is not None:
            ci, cj = count[i], count[j]
            prof[i] = [(p * ci + q * cj) / (ci + cj) for p, q in zip(prof[i], prof[j], strict=True)]
            count[i] = ci + cj
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
                heapq.heappush(heap, entry(*((i, k) if i < k else (k, i))))

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    labels[big] = [find(x) for x in np.flatnonzero(big).tolist()]
    return labels, comp


def split_reasons(labels: np.ndarray, ei: np.ndarray, ej: np.ndarray, xy: np.ndarray, loads: np.ndarray,
                  caps: np.ndarray, max_diameter: float) -> tuple[np.ndarray, np.ndarray]:
    """Why adjacent regions of :func:`agglomerate` stayed apart: per node, whether a neighbouring region could
    not be merged with its own because of a cap (``by_caps``) or of the maximum diameter (``by_diameter``)."""
    n = len(labels)
    by_caps, by_diam = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    cross = labels[ei] != labels[ej]
    if not cross.any():
        return by_caps, by_diam
    ra, rb = labels[ei[cross]], labels[ej[cross]]
    pairs = np.unique(np.column_stack([np.minimum(ra, rb), np.maximum(ra, rb)]), axis=0)
    ra, rb = pairs[:, 0], pairs[:, 1]
    tot = np.zeros((n, loads.shape[1]))
    np.add.at(tot, labels, loads)
    caps_block = np.any(tot[ra] + tot[rb] > caps * (1 + REL_EPS), axis=1)
    diam_block = np.zeros(len(ra), dtype=bool)
    if max_diameter > 0:
        vertices, vgroup = hull_vertices(xy, labels)
        union = np.maximum(max_cross_distance(vertices, vgroup, ra, rb),
                           np.maximum(max_cross_distance(vertices, vgroup, ra, ra),
                                      max_cross_distance(vertices, vgroup, rb, rb)))
        diam_block = union > max_diameter * (1 + REL_EPS)
    region_caps, region_diam = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    region_caps[np.r_[ra[caps_block], rb[caps_block]]] = True
    region_diam[np.r_[ra[diam_block], rb[diam_block]]] = True
    return region_caps[labels], region_diam[labels]


# ------------------------------------------------------------------------------------- scattered compounds
def _region_rule(values: np.ndarray | None, labels: np.ndarray, targets: np.ndarray, s: np.ndarray,
                 region: np.ndarray) -> np.ndarray:
    """For candidate rows (scattered node ``s``, target region ``region``): True where both sides know their
    value (街道 / 实施主体) and they differ (a region with several known values differs from any one)."""
    if values is None or not len(s):
        return np.zeros(len(s), dtype=bool)
    known = pd.DataFrame({"region": labels[targets], "v": values[targets]}).dropna().drop_duplicates()
    per_region = known.groupby("region")["v"].agg(["nunique", "first"])
    n_known = per_region["nunique"].reindex(region).fillna(0).to_numpy()
    value = per_region["first"].reindex(region).to_numpy(dtype=object)
    own = values[s]
    has_own = pd.notna(own)
    return has_own & ((n_known > 1) | ((n_known == 1) & (value != own)))


def scattered_merges(geoms: np.ndarray, labels: np.ndarray, scattered: np.ndarray, loads: np.ndarray,
                     caps: np.ndarray, xy: np.ndarray, *, within_m: float, max_diameter: float = 0.0,
                     units: np.ndarray | None = None, entities: np.ndarray | None = None,
                     barriers: np.ndarray | None = None,
                     known_pairs: pd.DataFrame | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """Merge scattered compounds that ended up alone into the nearest bundle (B3 [000:307], B8 [000:1263]).

    Each scattered compound goes, nearest first (then in node order), to the nearest region — by red-line
    distance to its nearest member, at most ``within_m`` metres — that is not itself a scattered compound and
    that it may join: no barrier cuts the shortest line between the two red lines, it is in the same 街道 /
    实施主体 when ``units`` / ``entities`` are given (an unknown value does not block), and the merged region fits
    every cap and ``max_diameter``. Otherwise the next nearest is tried; the reason the nearest one was refused is
    kept.

    Parameters
    ----------
    geoms : red lines of the nodes; labels : region label of each node (:func:`agglomerate`); scattered : bool
        per node, the compounds to place; loads, caps, xy, max_diameter : as in :func:`agglomerate`.
    within_m : largest distance, metres. units, entities : value per node (None = unknown) or None (no rule).
    barriers : barrier geometries (barrier roads, rivers) or None.
    known_pairs : pairs already judged by the adjacency (``a``, ``b`` node positions, ``reason`` in ``barrier``,
        ``different_unit``, ``different_entity``); they keep that reason (a barrier along a shared edge).

    Returns
    -------
    labels : new labels, each region labelled by its smallest node index.
    table : one row per scattered node: ``node``, ``target`` (new label of the region joined, −1 when none),
        ``distance_m``, ``reason`` (``merged``, ``none`` = nothing within reach, ``barrier``,
        ``different_unit``, ``different_entity``, ``caps``, ``diameter``), ``near_target`` / ``near_distance_m``
        (the nearest region considered, −1 / NaN when none) and ``near_node`` (its member nearest to the
        scattered compound, −1 when none).
    """
    n = len(labels)
    cand = np.flatnonzero(scattered)
    targets = np.flatnonzero(~scattered)
    out = labels.copy()
    columns = {"node": cand, "target": np.full(len(cand), -1), "distance_m": np.full(len(cand), np.nan),
               "reason": np.full(len(cand), "none", dtype=object), "near_target": np.full(len(cand), -1),
               "near_node": np.full(len(cand), -1), "near_distance_m": np.full(len(cand), np.nan)}
    if not len(cand) or not len(targets) or within_m <= 0:
        return out, pd.DataFrame(columns)
    si, ti = shapely.STRtree(geoms[targets]).query(geoms[cand], predicate="dwithin", distance=within_m)
    s, t = cand[si], targets[ti]
    dist = shapely.distance(geoms[s], geoms[t])
    region = labels[t]
    reason = np.full(len(s), "ok", dtype=object)
    preset = np.full(len(s), None, dtype=object)
    if known_pairs is not None and len(known_pairs) and len(s):
        kp = pd.concat([known_pairs[["a", "b", "reason"]],
                        known_pairs[["a", "b", "reason"]].rename(columns={"a": "b", "b": "a"})])
        preset = pd.DataFrame({"a": s, "b": t}).merge(kp, on=["a", "b"], how="left")["reason"].to_numpy(object)
    fresh = pd.isna(preset)
    if barriers is not None and len(barriers) and fresh.any():
        lines = shapely.shortest_line(geoms[s[fresh]], geoms[t[fresh]])
        hit, _ = crossing_barriers(lines, barriers, np.arange(len(barriers)))
        reason[np.flatnonzero(fresh)[hit]] = "barrier"
    reason[~fresh] = preset[~fresh]
    ok = reason == "ok"
    reason[ok & _region_rule(units, labels, targets, s, region)] = "different_unit"
    ok = reason == "ok"
    reason[ok & _region_rule(entities, labels, targets, s, region)] = "different_entity"
    rows = pd.DataFrame({"s": s, "t": t, "region": region, "d": dist, "reason": reason, "blocked": reason != "ok"})
    # per (scattered, region): its nearest reachable member, else its nearest member with the reason
    rows = rows.sort_values(["s", "region", "blocked", "d"], kind="stable").drop_duplicates(["s", "region"])
    rows = rows.sort_values(["s", "d", "region"], kind="stable")
    first_d = rows.groupby("s")["d"].min()
    order = first_d.reset_index().sort_values(["d", "s"], kind="stable")["s"].to_numpy()

    tot = np.zeros((n, loads.shape[1]))
    np.add.at(tot, labels, loads)
    limit = float(max_diameter or 0.0)
    hulls: dict[int, np.ndarray] = {}
    diam: dict[int, float] = {}
    if limit > 0:
        vertices, vgroup = hull_vertices(xy[targets], labels[targets])
        starts = np.r_[0, np.flatnonzero(vgroup[1:] != vgroup[:-1]) + 1, len(vgroup)]
        for a, b in zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True):
            hulls[int(vgroup[a])] = vertices[a:b]
        groups, diameters = group_diameters(xy[targets], labels[targets])
        diam = dict(zip(groups.tolist(), diameters.tolist(), strict=True))
    pos = pd.Series(np.arange(len(cand)), index=cand)
    regions, ds, reasons = rows["region"].to_numpy(), rows["d"].to_numpy(), rows["reason"].to_numpy(object)
    nearest_member = rows["t"].to_numpy()
    bounds = rows["s"].to_numpy()
    starts = np.searchsorted(bounds, order, side="left")
    ends = np.searchsorted(bounds, order, side="right")
    cap_tol = caps * (1 + REL_EPS)
    for node, lo, hi in zip(order.tolist(), starts.tolist(), ends.tolist(), strict=True):
        k = int(pos[node])
        columns["near_target"][k], columns["near_distance_m"][k] = regions[lo], ds[lo]
        columns["near_node"][k] = nearest_member[lo]
        why = None
        for r, dd, rsn in zip(regions[lo:hi].tolist(), ds[lo:hi].tolist(), reasons[lo:hi].tolist(), strict=True):
            if rsn != "ok":
                why = why or rsn
                continue
            if np.any(tot[r] + loads[node] > cap_tol):
                why = why or "caps"
                continue
            if limit > 0:
                wide = max(diam[r], _cross(hulls[r], xy[node:node + 1]))
                if wide > limit * (1 + REL_EPS):
                    why = why or "diameter"
                    continue
                diam[r], hulls[r] = wide, _hull(np.vstack([hulls[r], xy[node:node + 1]]))
            tot[r] += loads[node]
            out[node] = r
            columns["target"][k], columns["distance_m"][k], columns["reason"][k] = r, dd, "merged"
            break
        else:
            columns["reason"][k] = why or "none"
    # relabel: every region by its smallest node index
    smallest = np.full(n, n, dtype=np.int64)
    np.minimum.at(smallest, out, np.arange(n))
    out = smallest[out]
    table = pd.DataFrame(columns)
    for col in ("target", "near_target"):
        known = table[col].to_numpy() >= 0
        table.loc[known, col] = out[table.loc[known, col].to_numpy(dtype=np.int64)]
    return out, table


# ------------------------------------------------------------------------------------------- connections
def _line_parts(geoms: np.ndarray) -> np.ndarray:
    """The linear parts of each geometry, merged (points of a boundary intersection dropped)."""
    out = np.full(len(geoms), _EMPTY_LINE, dtype=object)
    parts, idx = shapely.get_parts(geoms, return_index=True)
    parts2, idx2 = shapely.get_parts(parts, return_index=True)  # a collection may hold a multi-line
    parts, idx = parts2, idx[idx2]
    keep = np.isin(shapely.get_type_id(parts), (1, 2)) & (shapely.length(parts) > 0)
    if keep.any():
        uniq, code = np.unique(idx[keep], return_inverse=True)
        order = np.argsort(code, kind="stable")
        merged = shapely.multilinestrings(parts[keep][order], indices=code[order])
        out[uniq] = shapely.line_merge(merged)
    return out


def connection_geometries(ga: np.ndarray, gb: np.ndarray, gap: np.ndarray,
                          tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shared edge (a wall to open) or the connecting segment (a path to connect) of each pair.

    Touching red lines (``gap ≤ tol`` metres) that share an edge: the shared edge is the intersection of the two
    boundaries where they coincide; where they only lie within ``tol`` of each other, the part of ``a``'s
    boundary within ``tol`` of ``b``, its length less the two stubs of ``tol − gap`` where ``a``'s boundary
    turns away from ``b`` (exact when the ends line up, within ``2·tol`` otherwise; the geometry keeps the
    stubs). Other pairs, and touching pairs meeting in a corner only: the shortest line between the two red lines.

    Returns
    -------
    (is_wall bool, length_m of the shared edge (0 for paths), geometry).
    """
    n = len(ga)
    wall = np.zeros(n, dtype=bool)
    length = np.zeros(n)
    geom = np.full(n, None, dtype=object)
    touch = np.flatnonzero(gap <= tol)
    if touch.size:
        a, b = ga[touch], gb[touch]
        ba, bb = shapely.boundary(a), shapely.boundary(b)
        edge = _line_parts(shapely.intersection(ba, bb))
        ln = shapely.length(edge)
        loose = ln <= 0
        if loose.any() and tol > 0:
            edge[loose] = _line_parts(shapely.intersection(ba[loose], shapely.buffer(b[loose], tol)))
            # less the two stubs of (tol − gap) each where a's boundary turns away from b
            ln[loose] = np.maximum(shapely.length(edge[loose]) - 2 * np.maximum(tol - gap[touch][loose], 0), 0)
        wall[touch] = ln > 1e-6
        length[touch] = ln
        geom[touch] = edge
    path = ~wall
    if path.any():
        geom[path] = shapely.shortest_line(ga[path], gb[path])
    length[path] = 0.0
    return wall, length, geom
