"""Benchmark: gis_planner.bundling vs PySAL spopt MaxPHeuristic / Skater on the same adjacency graph.

Synthetic districts of 2,000 and 20,000 compounds on a street grid (local streets, an arterial every sixth
street, 街道 tiles between arterials). Both tools get the same graph (our adjacency pairs → libpysal W) and the
same eligible compounds; quality is measured the same way for all: cap violations, non-contiguous bundles,
mean compactness (Reock score of the convex hull), number of bundles. spopt runs in a child process under a
time-out. Run: ``python benchmarks/bundling.py [--sizes 2000 20000] [--timeout 600]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from gis_planner import bundling, eligibility

PITCH = 140.0  # block pitch, metres (block ≤ 120 m + street ≥ 20 m)
ARTERIAL_EVERY = 6  # every sixth street is an arterial
UNIT_BLOCKS = 12  # 街道 tiles of 12 × 12 blocks (edges on arterials)
MAX_HOUSEHOLDS = 3000.0
CRS = 32650


def make_layout(n: int, seed: int = 0) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """A synthetic district of ``n`` compounds (one per block) and its street grid, metric CRS."""
    rng = np.random.default_rng(seed)
    nx = int(np.ceil(np.sqrt(n)))
    ny = int(np.ceil(n / nx))
    col, row = np.arange(n) % nx, np.arange(n) // nx
    w = rng.uniform(108, 120, n)  # gaps between neighbours: 20–44 m
    h = rng.uniform(108, 120, n)
    x0 = col * PITCH + rng.uniform(0, 120 - w)
    y0 = row * PITCH + rng.uniform(0, 120 - h)
    geoms = shapely.box(x0, y0, x0 + w, y0 + h)
    households = rng.integers(80, 600, n)
    ids = np.array([f"C{i:05d}" for i in range(n)], dtype=object)
    compounds = gpd.GeoDataFrame({
        "compound_id": ids,
        "name": ids,
        "build_year": pd.array(rng.integers(1970, 2009, n), dtype="Int64"),
        "households": households,
        "floor_area_m2": np.round(households * rng.uniform(70, 100, n), 1),
        "subdistrict": [f"S{r // UNIT_BLOCKS}-{c // UNIT_BLOCKS}街道" for r, c in zip(row, col, strict=True)],
        "is_urban_village": rng.random(n) < 0.03,
        "consent_rate": np.where(rng.random(n) < 0.7, rng.uniform(0.6, 1.0, n), np.nan),
    }, geometry=geoms, crs=CRS)
    xs = np.arange(1, nx) * PITCH - 10.0
    ys = np.arange(1, ny) * PITCH - 10.0
    lines = [shapely.LineString([(x, -20), (x, ny * PITCH)]) for x in xs]
    lines += [shapely.LineString([(-20, y), (nx * PITCH, y)]) for y in ys]
    klass = ["arterial" if (i + 1) % ARTERIAL_EVERY == 0 else "local" for i in range(len(xs))]
    klass += ["arterial" if (i + 1) % ARTERIAL_EVERY == 0 else "local" for i in range(len(ys))]
    roads = gpd.GeoDataFrame({"road_id": [f"R{i:04d}" for i in range(len(lines))], "road_class": klass},
                             geometry=lines, crs=CRS)
    return compounds, roads


def quality(labels: np.ndarray, households: np.ndarray, geoms: np.ndarray, ei: np.ndarray, ej: np.ndarray,
            cap: float) -> dict:
    """Cap violations (multi-compound bundles over the cap), non-contiguous bundles, mean compactness, count."""
    uniq, region = np.unique(labels, return_inverse=True)
    nb = len(uniq)
    hh = np.bincount(region, weights=households, minlength=nb)
    size = np.bincount(region, minlength=nb)
    over = int(np.sum((hh > cap) & (size > 1)))
    same = region[ei] == region[ej]
    g = coo_matrix((np.ones(int(same.sum())), (ei[same], ej[same])), shape=(len(labels), len(labels)))
    _, comp = connected_components(g, directed=False)
    pieces = pd.Series(comp).groupby(region).nunique().to_numpy()
    order = np.argsort(region, kind="stable")
    hulls = shapely.convex_hull(shapely.multipolygons(geoms[order], indices=region[order]))
    rad = shapely.minimum_bounding_radius(hulls)
    compact = np.where(rad > 0, shapely.area(hulls) / (np.pi * rad**2), 0.0)
    return {"bundles": nb, "cap_violations": over, "non_contiguous": int(np.sum(pieces > 1)),
            "mean_compactness": float(compact.mean())}


def _spopt_worker(kind: str, gdf: gpd.GeoDataFrame, neighbors: dict, param: float, queue) -> None:
    warnings.filterwarnings("ignore")
    from libpysal.weights import W
    from spopt.region import MaxPHeuristic, Skater

    w = W(neighbors, silence_warnings=True)
    t0 = time.perf_counter()
    if kind == "maxp":
        model = MaxPHeuristic(gdf, w, ["x", "y"], "households", param)
    else:
        model = Skater(gdf, w, ["x", "y"], n_clusters=int(param), islands="increase")
    model.solve()
    queue.put((time.perf_counter() - t0, np.asarray(model.labels_)))


def run_spopt(kind: str, gdf: gpd.GeoDataFrame, neighbors: dict, param: float, timeout: float):
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_spopt_worker, args=(kind, gdf, neighbors, param, queue))
    t0 = time.perf_counter()
    proc.start()
    try:
        result = queue.get(timeout=timeout)
    except Exception:  # queue.Empty on time-out, or the child died
        result = None
    elapsed = time.perf_counter() - t0
    if result is None and proc.is_alive():
        proc.terminate()
    proc.join()
    if result is None:
        return None, elapsed
    return result[1], result[0]


def run(n: int, timeout: float) -> None:
    compounds, roads = make_layout(n, seed=n)
    t0 = time.perf_counter()
    screened = eligibility.screen(compounds, year=2024)
    t1 = time.perf_counter()
    out, bundles, pairs = bundling.bundle(screened, roads, rules={"max_households": MAX_HOUSEHOLDS})
    t2 = time.perf_counter()

    elig = out[out["bundle_id"].notna()].sort_values("compound_id")
    ids = elig["compound_id"].to_numpy()
    pos = pd.Series(np.arange(len(ids)), index=ids)
    adj = pairs[pairs["adjacent"] & pairs["compound_a"].isin(pos.index) & pairs["compound_b"].isin(pos.index)]
    ei = pos.loc[adj["compound_a"]].to_numpy()
    ej = pos.loc[adj["compound_b"]].to_numpy()
    geoms = elig.geometry.to_numpy()
    hh = elig["households"].to_numpy(dtype=float)
    ours = quality(elig["bundle_id"].to_numpy(), hh, geoms, ei, ej, MAX_HOUSEHOLDS)

    # the same graph for spopt
    neighbors = {i: [] for i in range(len(ids))}
    for a, b in zip(ei.tolist(), ej.tolist(), strict=True):
        neighbors[a].append(b)
        neighbors[b].append(a)
    cent = shapely.centroid(geoms)
    gdf = gpd.GeoDataFrame({"x": shapely.get_x(cent), "y": shapely.get_y(cent), "households": hh},
                           geometry=geoms, crs=CRS).reset_index(drop=True)
    n_islands = sum(1 for v in neighbors.values() if not v)
    print(f"\n=== {n:,} compounds: {len(ids):,} eligible, {len(adj):,} adjacent pairs "
          f"({len(pairs):,} candidate pairs), {n_islands} isolated eligible compounds ===")
    print(f"gis_planner  screen {t1 - t0:6.2f} s | bundle (adjacency + clustering + dissolve) {t2 - t1:6.2f} s | "
          f"total {t2 - t0:6.2f} s")
    g = coo_matrix((np.ones(len(ei)), (ei, ej)), shape=(len(ids), len(ids)))
    _, comp = connected_components(g, directed=False)
    lower = int(np.ceil(np.bincount(comp, weights=hh) / MAX_HOUSEHOLDS).clip(min=1).sum())
    print(f"lower bound on the number of bundles within the cap (Σ ⌈component households / cap⌉): {lower:,}; "
          f"gis_planner: {ours['bundles']:,} ({bundles['split'].sum():,} bundles from split components)")
    rows = [("gis_planner", t2 - t1, ours)]
    for kind, label, param in (("maxp", f"spopt MaxPHeuristic (households ≥ {MAX_HOUSEHOLDS / 2:,.0f})",
                                 MAX_HOUSEHOLDS / 2),
                               ("skater", f"spopt Skater (n_clusters = {ours['bundles']})", ours["bundles"])):
        labels, secs = run_spopt(kind, gdf, neighbors, param, timeout)
        if labels is None:
            print(f"{label}: TIMED OUT after {secs:.0f} s (limit {timeout:.0f} s)")
            rows.append((label, None, None))
        else:
            rows.append((label, secs, quality(labels, hh, geoms, ei, ej, MAX_HOUSEHOLDS)))
    print(f"{'method':44s} {'time s':>9s} {'bundles':>8s} {'cap viol.':>9s} {'non-contig':>10s} "
          f"{'compact':>8s} {'time ratio':>10s}")
    for label, secs, q in rows:
        if q is None:
            print(f"{label:44s} {'timeout':>9s}")
            continue
        ratio = f"{secs / (t2 - t1):9.1f}x" if label != "gis_planner" else "     1.0x"
        print(f"{label:44s} {secs:9.2f} {q['bundles']:8d} {q['cap_violations']:9d} {q['non_contiguous']:10d} "
              f"{q['mean_compactness']:8.3f} {ratio:>10s}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 20000])
    parser.add_argument("--timeout", type=float, default=600.0, help="time-out per spopt run, seconds")
    args = parser.parse_args()
    import spopt

    print(f"spopt {spopt.__version__}; household cap per bundle {MAX_HOUSEHOLDS:,.0f}; gap 30 m; "
          "arterials and 街道 boundaries cut adjacency; time ratio = method time / gis_planner bundle time")
    for n in args.sizes:
        run(n, args.timeout)


if __name__ == "__main__":
    main()
