"""City-scale benchmark: the full pipeline in one process vs partitioned on a 2-worker Dask LocalCluster.

Run ``python benchmarks/city.py`` (450 × 450 street grid = 202,500 road nodes, 20,000 compounds in 4 districts
of 4 街道 each) or ``--quick``. The single-process run forks a child so its peak memory is measured alone; the
partitioned run reports each worker process's peak RSS. Both write their outputs (plan.gpkg, CSVs) to a
temporary folder, as ``gis-planner run`` and ``gis-planner batch`` do. Prints wall time, peak memory and the
time per stage, the ratio partitioned / single, and checks that both runs give the same coverage and bundles.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _synthetic import CRS, facilities_beside_streets, jittered_grid, street_lines  # noqa: E402

CAPACITY = {"kindergarten": (90, 360), "primary_school": (540, 1800)}  # places (2SFCA), uniform range


def synthetic_city(n: int = 450, n_compounds: int = 20_000, spacing: float = 60.0, grid: int = 4,
                   seed: int = 42) -> dict[str, gpd.GeoDataFrame]:
    """A synthetic city: the six input layers of a plan, in a metric CRS.

    A jittered ``n × n`` street grid (every 10th line an arterial, the rest local streets cut into pieces of
    1–12 blocks, 3 % dropped); compounds inset in random blocks with the eligibility fields; facilities of
    twelve types beside streets (kindergartens and primary schools with a capacity); vacant parcels and
    revenue projects in free blocks; ``grid × grid`` 街道 (subdistrict polygons) grouped 2 × 2 into districts.

    Returns
    -------
    layer name → GeoDataFrame (compounds, vacant, facilities, roads, projects, boundaries).
    """
    rng = np.random.default_rng(seed)
    gx, gy = jittered_grid(n, spacing, rng)
    lines, classes = street_lines(gx, gy, rng, arterial_every=10)
    roads = gpd.GeoDataFrame({"road_id": [f"r{i}" for i in range(len(lines))], "road_class": classes},
                             geometry=[shapely.linestrings(c) for c in lines], crs=CRS)

    cells = rng.choice((n - 1) * (n - 1), size=n_compounds + n_compounds // 20, replace=False)
    ci, cj = np.divmod(cells, n - 1)
    x0 = np.maximum(gx[ci, cj], gx[ci, cj + 1]) + rng.uniform(8, 15, len(cells))
    y0 = np.maximum(gy[ci, cj], gy[ci + 1, cj]) + rng.uniform(8, 15, len(cells))
    x1 = np.minimum(gx[ci + 1, cj], gx[ci + 1, cj + 1]) - rng.uniform(8, 15, len(cells))
    y1 = np.minimum(gy[ci, cj + 1], gy[ci + 1, cj + 1]) - rng.uniform(8, 15, len(cells))
    boxes = shapely.box(x0, y0, x1, y1)
    side = n * spacing / grid
    sx = np.clip(((x0 + x1) / 2 // side).astype(int), 0, grid - 1)
    sy = np.clip(((y0 + y1) / 2 // side).astype(int), 0, grid - 1)
    sub_names = np.array([[f"街道{i}{j}" for j in range(grid)] for i in range(grid)], dtype=object)
    dist_names = np.array([[f"区{i // 2}{j // 2}" for j in range(grid)] for i in range(grid)], dtype=object)
    m = n_compounds
    households = rng.integers(80, 1500, m)
    compounds = gpd.GeoDataFrame({
        "compound_id": [f"c{i:05d}" for i in range(m)],
        "name": [f"小区{i}" for i in range(m)],
        "build_year": rng.integers(1975, 2012, m),
        "households": households,
        "floor_area_m2": households * rng.uniform(55, 90, m),
        "n_buildings": rng.integers(1, 30, m),
        "district": dist_names[sx[:m], sy[:m]],
        "subdistrict": sub_names[sx[:m], sy[:m]],
        "consent_rate": np.round(rng.uniform(0.5, 1.0, m), 3),
    }, geometry=boxes[:m], crs=CRS)
    k = len(cells) - m
    vacant = gpd.GeoDataFrame({
        "parcel_id": [f"v{i:05d}" for i in range(k)],
        "kind": rng.choice(["vacant_land", "idle_building", "low_efficiency_land"], k),
        "floor_area_m2": rng.uniform(200, 3000, k),
    }, geometry=boxes[m:], crs=CRS)
    n_proj = max(4, k // 10)
    pick = rng.choice(k, n_proj, replace=False)
    projects = gpd.GeoDataFrame({
        "project_id": [f"p{i:04d}" for i in range(n_proj)],
        "kind": rng.choice(["operating_facility", "land_sale", "change_of_use"], n_proj),
        "net_revenue_cny": np.round(rng.uniform(1e6, 3e7, n_proj), 0),
    }, geometry=shapely.centroid(boxes[m:][pick]), crs=CRS)

    fx, fy, ftype = facilities_beside_streets(gx, gy, rng)
    total = len(fx)
    capacity = np.full(total, np.nan)
    for typ, (lo, hi) in CAPACITY.items():
        sel = ftype == typ
        capacity[sel] = rng.integers(lo, hi, int(sel.sum()))
    facilities = gpd.GeoDataFrame({"facility_id": [f"f{i:06d}" for i in range(total)], "facility_type": ftype,
                                   "capacity": capacity}, geometry=shapely.points(fx, fy), crs=CRS)
    cells_i, cells_j = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    cells_i, cells_j = cells_i.ravel(), cells_j.ravel()
    boundaries = gpd.GeoDataFrame({
        "boundary_id": [f"S{i}{j}" for i, j in zip(cells_i, cells_j, strict=True)],
        "name": sub_names[cells_i, cells_j], "level": "subdistrict",
        "parent": dist_names[cells_i, cells_j],
    }, geometry=shapely.box(cells_i * side - spacing, cells_j * side - spacing, (cells_i + 1) * side,
                            (cells_j + 1) * side), crs=CRS)
    return {"compounds": compounds, "vacant": vacant, "facilities": facilities, "roads": roads,
            "projects": projects, "boundaries": boundaries}


def city_layers(raw: dict[str, gpd.GeoDataFrame]):
    """Validate the synthetic layers as ``read_layers`` would (same CRS kept)."""
    from gis_planner.schema import LAYER_NAMES, Layers, validate_layers

    cleaned, report = validate_layers(raw, source={k: f"synthetic:{k}" for k in raw})
    if report.errors:
        raise SystemExit(f"synthetic city does not validate:\n{report}")
    return Layers(**{name: cleaned.get(name) for name in LAYER_NAMES}, report=report,
                  sources={k: f"synthetic:{k}" for k in raw})


# ---------------------------------------------------------------------------------------------- timing
def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return 0.0


def _single(layers, config, outdir, conn):
    from gis_planner.plan import Plan

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            result = Plan(layers, config).run(outdir)
            wall = time.perf_counter() - t0
        conn.send({"wall": wall, "timings": dict(result.timings), "peak_mb": _rss_mb("VmHWM:"),
                   "map_mb": (result.map_bytes or 0) / 1e6, **_compared(result)})
    except Exception as exc:  # report, don't hang the parent
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
    conn.close()


def _compared(result) -> dict:
    """The tables both runs must agree on: coverage, bundles, proposals, pairings, the ledger per bundle."""
    t = result.tables
    return {"coverage": t["coverage"][["compound_id", "facility_type", "distance_m", "covered"]],
            "bundles": t["bundles"][["bundle_id", "member_ids"]],
            "proposals": t.get("proposed_facilities", pd.DataFrame()).reset_index(drop=True),
            "pairings": t.get("pairings", pd.DataFrame()).reset_index(drop=True),
            "ledger": t["bundles"].filter(regex="^(bundle_id|.*_cny|balance_mode)$").reset_index(drop=True)}


def run_single(layers, config, outdir) -> dict:
    """The whole pipeline in one (forked) process; its peak RSS is the process's high-water mark."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_single, args=(layers, config, outdir, child))
    proc.start()
    child.close()
    out = parent.recv()
    proc.join()
    if "error" in out:
        raise SystemExit(f"single-process run failed: {out['error']}")
    return out


def run_partitioned(layers, config, outdir, by: str, workers: int) -> dict:
    from gis_planner.batch import run_batch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        b = run_batch(config, outdir, layers=layers, by=by, scheduler="local", workers=workers, force=True,
                      progress=False)
        wall = time.perf_counter() - t0
    if not b.ok:
        raise SystemExit(b.summary())
    per_worker = b.report.groupby("worker")["peak_rss_mb"].max()
    return {"wall": wall, "phases": b.timings, "timings": dict(b.result.timings), "per_worker": per_worker,
            "report": b.report, "client_peak_mb": _rss_mb("VmHWM:"), **_compared(b.result)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="150 × 150 grid, 2,500 compounds")
    ap.add_argument("--by", default="district", choices=["subdistrict", "district"], help="partition level")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    from gis_planner.config import load_config

    n, m = (150, 2500) if args.quick else (450, 20_000)
    t0 = time.perf_counter()
    raw = synthetic_city(n, m)
    layers = city_layers(raw)
    gen = time.perf_counter() - t0
    # snaps beyond 100 m are refused (streets every 60 m); the halo is then search radius + 2 × 100 m
    # per-bundle review reports are for meetings, not city batches: the map is still drawn
    config = load_config({"name": "synthetic_city", "network": {"max_snap_m": 100.0}, "map": {"reports": False}})
    from gis_planner.batch import halo_width

    halo = halo_width(config, layers.facilities)
    print(f"synthetic city: {n}×{n} street grid ({n * n:,} road nodes), {len(layers.roads):,} road lines, "
          f"{len(layers.compounds):,} compounds, {len(layers.facilities):,} facilities, "
          f"{layers.compounds['subdistrict'].nunique()} 街道 in {layers.compounds['district'].nunique()} districts "
          f"(generated and validated in {gen:.1f} s)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"halo {halo[0]:.0f} m (network) / {halo[1]:.0f} m (compounds)")
    with tempfile.TemporaryDirectory() as tmp:
        single = run_single(layers, config, os.path.join(tmp, "single"))
        part = run_partitioned(layers, config, os.path.join(tmp, "batch"), args.by, args.workers)
    print()
    print(f"single process: wall {single['wall']:.1f} s, peak memory {single['peak_mb']:.0f} MB, "
          f"map.html {single['map_mb']:.1f} MB")
    print("  stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in single["timings"].items()))
    print(f"partitioned --by {args.by} on a {args.workers}-worker LocalCluster: wall {part['wall']:.1f} s "
          f"({len(part['report'])} partitions)")
    print("  phases (wall s): " + ", ".join(f"{k} {v:.2f}" for k, v in part["phases"].items()))
    print("  stages (s, summed over partitions): " +
          ", ".join(f"{k} {v:.2f}" for k, v in part["timings"].items()))
    for worker, mb in part["per_worker"].items():
        print(f"  peak memory of worker {worker}: {mb:.0f} MB")
    print(f"  peak memory of the client (generates the city, merges, runs siting + funding once, writes): "
          f"{part['client_peak_mb']:.0f} MB")
    ratio = part["wall"] / single["wall"]
    print(f"ratio partitioned / single: {ratio:.2f} (target ≤ 1.3); single under 2 min: "
          f"{'yes' if single['wall'] < 120 else 'NO'}; peak under 4 GB: "
          f"{'yes' if max(single['peak_mb'], part['per_worker'].max()) < 4096 else 'NO'}")
    same = {}
    for name in ("coverage", "bundles", "proposals", "pairings", "ledger"):
        a, b = single[name].reset_index(drop=True), part[name].reset_index(drop=True)
        same[name] = a.shape == b.shape and a.equals(b)
    print("same as the single run: " + "; ".join(f"{k} {'yes' if v else 'NO'} ({len(single[k]):,} rows)"
                                                  for k, v in same.items()))
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
