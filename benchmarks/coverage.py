"""Coverage benchmark: our stage vs bare csgraph.dijkstra, NetworkX and pandana on a synthetic city.

Run ``python benchmarks/coverage.py`` (full size: 450 × 450 street grid = 202,500 nodes, 20,000 compounds,
12 facility types) or ``--quick``. Each contender runs in a forked child process so its peak memory can be
measured on its own (peak RSS above the RSS at the fork, which already holds the input layers).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import time
import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import scipy
import shapely
from scipy.sparse.csgraph import dijkstra

from gis_planner.coverage import assess, locate
from gis_planner.network import nearest_sources, walk_graph
from gis_planner.standards import load_standards

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _synthetic import CRS, TYPES, facilities_beside_streets, jittered_grid, street_lines  # noqa: E402


def synthetic_city(n: int, n_compounds: int, spacing: float = 60.0, seed: int = 42):
    """A jittered n × n street grid cut into LineStrings of 1–12 blocks (3 % dropped), compounds inside
    blocks and facilities beside streets. Returns (roads, compounds, facilities)."""
    rng = np.random.default_rng(seed)
    gx, gy = jittered_grid(n, spacing, rng)
    lines, _ = street_lines(gx, gy, rng)
    geoms = [shapely.linestrings(c) for c in lines]
    roads = gpd.GeoDataFrame({"road_id": [f"r{i}" for i in range(len(geoms))], "road_class": "local"},
                             geometry=geoms, crs=CRS)
    # compounds: rectangles inset 8–15 m inside random blocks
    cells = rng.choice((n - 1) * (n - 1), size=n_compounds, replace=False)
    ci, cj = np.divmod(cells, n - 1)
    x0 = np.maximum(gx[ci, cj], gx[ci, cj + 1]) + rng.uniform(8, 15, n_compounds)
    y0 = np.maximum(gy[ci, cj], gy[ci + 1, cj]) + rng.uniform(8, 15, n_compounds)
    x1 = np.minimum(gx[ci + 1, cj], gx[ci + 1, cj + 1]) - rng.uniform(8, 15, n_compounds)
    y1 = np.minimum(gy[ci, cj + 1], gy[ci + 1, cj + 1]) - rng.uniform(8, 15, n_compounds)
    compounds = gpd.GeoDataFrame({"compound_id": [f"c{i:05d}" for i in range(n_compounds)],
                                  "households": rng.integers(100, 1500, n_compounds),
                                  "subdistrict": [f"s{i % 20}" for i in range(n_compounds)]},
                                 geometry=shapely.box(x0, y0, x1, y1), crs=CRS)
    fx, fy, ftype = facilities_beside_streets(gx, gy, rng)
    total = len(fx)
    facilities = gpd.GeoDataFrame({"facility_id": [f"f{i:06d}" for i in range(total)],
                                   "facility_type": ftype},
                                  geometry=shapely.points(fx, fy), crs=CRS)
    return roads, compounds, facilities


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def _child(fn, args, conn):
    base = _rss_kb("VmRSS:")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fn(*args)
        result["peak_mb"] = (_rss_kb("VmHWM:") - base) / 1024
        conn.send(result)
    except Exception as exc:  # report, don't hang the parent
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
    conn.close()


def isolated(fn, *args):
    """Run ``fn(*args)`` in a forked child; return its result dict with ``peak_mb``."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(fn, args, child))
    proc.start()
    child.close()
    result = parent.recv()
    proc.join()
    return result


def run_ours(roads, compounds, facilities, limit):
    t0 = time.perf_counter()
    graph = walk_graph(roads)
    t1 = time.perf_counter()
    located = locate(compounds, facilities, graph)
    t2 = time.perf_counter()
    table = assess(compounds, facilities, located, types=TYPES, search_limit_m=limit)
    t3 = time.perf_counter()
    return {"build": t1 - t0, "snap": t2 - t1, "search_table": t3 - t2, "total": t3 - t0,
            "n_nodes": graph.n_nodes, "n_edges": graph.n_edges, "covered": float(table["covered"].mean()),
            "dist": table.pivot(index="compound_id", columns="facility_type", values="distance_m")}


def run_search_only(located, limit):
    t0 = time.perf_counter()
    leaf_fac, leaf_node = located.facility_leaves()  # a facility meeting several streets has several leaves
    for ftype in TYPES:
        dist, which = nearest_sources(located.graph, leaf_node[located.facility_types[leaf_fac] == ftype],
                                      limit_m=limit)
        _ = dist[np.maximum(located.access_node, 0)] + located.access_m
        _ = which[np.maximum(located.access_node, 0)]
    return {"total": time.perf_counter() - t0}


def run_bare(located, limit):
    leaf_fac, leaf_node = located.facility_leaves()
    sources = [leaf_node[located.facility_types[leaf_fac] == t] for t in TYPES]
    m = located.graph.matrix
    t0 = time.perf_counter()
    for src in sources:
        dijkstra(m, directed=True, indices=src, min_only=True, limit=limit)
    return {"total": time.perf_counter() - t0}


def run_networkx(located, limit):
    import networkx as nx

    g = located.graph
    t0 = time.perf_counter()
    G = nx.Graph()
    G.add_nodes_from(range(g.n_nodes))
    G.add_weighted_edges_from(zip(g.edge_u.tolist(), g.edge_v.tolist(), g.edge_length.tolist(), strict=True))
    t1 = time.perf_counter()
    found = {}
    leaf_fac, leaf_node = located.facility_leaves()
    for ftype in TYPES:
        src = leaf_node[located.facility_types[leaf_fac] == ftype]
        found[ftype] = nx.multi_source_dijkstra_path_length(G, set(src.tolist()), cutoff=limit)
    t2 = time.perf_counter()
    acc = located.access_node.tolist()
    out = {t: np.array([d.get(a, np.inf) for a in acc]) + located.access_m for t, d in found.items()}
    return {"build": t1 - t0, "search": t2 - t1, "total": t2 - t0, "acc_dist": out}


def run_pandana(base_graph, facilities, compounds, limit):
    try:
        import pandana
    except ImportError as exc:
        return {"error": f"pandana unavailable ({exc})"}
    g = base_graph
    t0 = time.perf_counter()
    nodes = pd.DataFrame({"x": g.x, "y": g.y})
    edges = pd.DataFrame({"from": g.edge_u, "to": g.edge_v, "length": g.edge_length})
    net = pandana.Network(nodes["x"], nodes["y"], edges["from"], edges["to"], edges[["length"]], twoway=True)
    t1 = time.perf_counter()
    net.precompute(limit)
    t2 = time.perf_counter()
    cent = compounds.geometry.centroid
    cnodes = net.get_node_ids(cent.x, cent.y)
    for ftype in TYPES:
        f = facilities[facilities["facility_type"] == ftype]
        net.set_pois(category=ftype, maxdist=limit, maxitems=1, x_col=f.geometry.x, y_col=f.geometry.y)
        res = net.nearest_pois(distance=limit, category=ftype, num_pois=1, include_poi_ids=True)
        _ = res.loc[cnodes.to_numpy()]
    t3 = time.perf_counter()
    return {"build": t1 - t0, "precompute": t2 - t1, "pois": t3 - t2, "total": t3 - t0,
            "version": pandana.__version__}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small city (100 × 100 grid, 1,000 compounds)")
    ap.add_argument("--grid", type=int, default=None, help="grid side (nodes per street)")
    ap.add_argument("--compounds", type=int, default=None)
    ap.add_argument("--no-pandana", action="store_true", help="skip pandana (its CH build takes minutes)")
    args = ap.parse_args(argv)
    n = args.grid or (100 if args.quick else 450)
    nc = args.compounds or (1000 if args.quick else 20000)

    t = time.perf_counter()
    roads, compounds, facilities = synthetic_city(n, nc)
    limit = float(load_standards().facility_types.loc[TYPES, "radius_m"].max())
    print(f"synthetic city: {n}×{n} grid, {len(roads):,} road LineStrings, {len(compounds):,} compounds, "
          f"{len(facilities):,} facilities of {len(TYPES)} types; search limit {limit:g} m "
          f"(generated in {time.perf_counter() - t:.1f} s, not timed)")
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"shapely {shapely.__version__}, {os.cpu_count()} CPUs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = walk_graph(roads)
        located = locate(compounds, facilities, base)
    print(f"walk graph: {base.n_nodes:,} nodes, {base.n_edges:,} edges; with snapped points "
          f"{located.graph.n_nodes:,} nodes\n")

    ours = isolated(run_ours, roads, compounds, facilities, limit)
    search = isolated(run_search_only, located, limit)
    bare = isolated(run_bare, located, limit)
    nxr = isolated(run_networkx, located, limit)
    pdn = {"error": "skipped (--no-pandana)"} if args.no_pandana else isolated(
        run_pandana, base, facilities, compounds, limit)
    for name, r in [("ours", ours), ("search", search), ("bare", bare), ("networkx", nxr)]:
        if "error" in r:
            print(f"{name} failed: {r['error']}")
            return 1

    # agreement of distances: ours vs NetworkX on the same graph
    worst = 0.0
    ours_d = ours["dist"]
    cid = located.compound_ids[located.access_compound]
    for ftype in TYPES:
        ref = pd.Series(nxr["acc_dist"][ftype], index=cid).groupby(level=0).min()
        ref = ref.where(ref <= limit + 1e3)
        a = ours_d[ftype].reindex(ref.index).to_numpy()
        b = ref.to_numpy()
        both = np.isfinite(a) & np.isfinite(b)
        worst = max(worst, float(np.max(np.abs(a[both] - b[both]), initial=0.0)))
    b_total = bare["total"]
    rows = [
        ("bare csgraph.dijkstra, 12 types", bare["total"], bare["peak_mb"]),
        ("our search (nearest_sources, 12 types)", search["total"], search["peak_mb"]),
        ("our whole stage", ours["total"], ours["peak_mb"]),
        ("  graph from road geometries", ours["build"], None),
        ("  snapping (edges, virtual nodes)", ours["snap"], None),
        ("  search + CoverageTable", ours["search_table"], None),
        ("NetworkX multi_source_dijkstra (search)", nxr["search"], nxr["peak_mb"]),
        ("  NetworkX graph build", nxr["build"], None),
    ]
    if "error" not in pdn:
        rows += [
            (f"pandana {pdn['version']} (build+precompute+nearest_pois)", pdn["total"], pdn["peak_mb"]),
            ("  pandana Network() incl. CH build", pdn["build"], None),
            ("  pandana precompute", pdn["precompute"], None),
            ("  pandana set_pois + nearest_pois", pdn["pois"], None),
        ]
    print(f"{'step':<52}{'seconds':>10}{'× bare':>9}{'peak MB':>10}")
    for label, sec, mb in rows:
        print(f"{label:<52}{sec:>10.3f}{sec / b_total:>9.2f}{'' if mb is None else f'{mb:.0f}':>10}")
    print()
    print(f"our search / bare csgraph:        {search['total'] / b_total:6.2f}  (target ≤ 1.5)")
    print(f"our whole stage / bare csgraph:   {ours['total'] / b_total:6.2f}  (target ≤ 10)")
    print(f"NetworkX search / our whole stage: {nxr['search'] / ours['total']:6.2f}  (target ≥ 2)")
    if "error" in pdn:
        print(f"pandana: {pdn['error']}")
    else:
        print(f"pandana / our whole stage:        {pdn['total'] / ours['total']:6.1f}  (target ≥ 50)")
    print(f"max |ours − NetworkX| distance over all compounds and types: {worst:.2e} m")
    print(f"share of compound × type pairs covered: {ours['covered']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
