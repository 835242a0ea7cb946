"""Plan-map scale benchmark: a 20,000-compound synthetic city → map.html size, build time, Chromium load time,
and the 5/10/15-minute service areas the old way (per-tile union, line-merge, buffer) against the new one
(faces of the planar street graph minus their cores) on the same street pieces.

Targets (issue 7): under 15 MB and under 3 s to first render in headless Chromium with the network off.
Run: ``python benchmarks/map_scale.py [--compounds 20000] [--out DIR] [--no-browser]
[--sa-network map|city-quick|city|none]``. The service-area network is the mapped city's street grid by
default; ``city`` is the 450 × 450 grid of ``benchmarks/city.py`` (202,500 nodes, 20,000 compounds: the old
method alone takes about 7 minutes there), ``city-quick`` its 150 × 150 grid (2,500 compounds).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gis_planner import maps
from gis_planner import service_areas as areas
from gis_planner.maps import layers as map_layers
from gis_planner.maps.context import walking_graph
from gis_planner.standards import load_standards

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/city.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/browser.py: the Chromium check

CRS = "EPSG:4547"  # CGCS2000 / 3-degree GK CM 114E; false easting 500 km
X0, Y0 = 480_000.0, 3_300_000.0


def synthetic_city(n_compounds: int = 20_000, seed: int = 7) -> SimpleNamespace:
    """A result-like object with every layer the plan map draws, for ``n_compounds`` compounds."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n_compounds)))
    block = 130.0  # metres per grid cell (compound + half a street each side)
    ii, jj = np.divmod(np.arange(n_compounds), side)
    cx, cy = X0 + jj * block, Y0 + ii * block
    geoms = []
    for x, y in zip(cx, cy, strict=True):
        w, h = rng.uniform(70, 105, 2)
        k = int(rng.integers(2, 5))  # extra vertices per side → 12–20 vertex outlines
        ring = []
        for (ax, ay), (bx, by) in (((0, 0), (w, 0)), ((w, 0), (w, h)), ((w, h), (0, h)), ((0, h), (0, 0))):
            for t in np.linspace(0, 1, k, endpoint=False):
                ring.append((x + ax + (bx - ax) * t + rng.normal(0, 1.5), y + ay + (by - ay) * t + rng.normal(0, 1.5)))
        geoms.append(shapely.make_valid(shapely.Polygon(ring)))
    statuses = np.array(["eligible", "excluded", "deferred", "verify"])
    status = statuses[rng.choice(4, n_compounds, p=[0.6, 0.3, 0.05, 0.05])]
    bundle = np.where(status == "excluded", None,
                      np.char.add("B", np.char.zfill(((ii // 3) * (side // 3 + 1) + jj // 3).astype(str), 5)))
    types = list(load_standards().profile_types())
    cov = rng.random((n_compounds, len(types))) < 0.75
    compounds = gpd.GeoDataFrame({
        "compound_id": [f"C{i:05d}" for i in range(n_compounds)],
        "name": [f"小区{i}" for i in range(n_compounds)],
        "subdistrict": [f"街道{i % 25}" for i in range(n_compounds)],
        "community": [f"社区{i % 400}" for i in range(n_compounds)],
        "build_year": rng.integers(1970, 2015, n_compounds),
        "households": rng.integers(60, 1500, n_compounds),
        "floor_area_m2": rng.uniform(5e3, 1.2e5, n_compounds).round(1),
        "eligibility": status,
        "eligibility_zh": pd.Series(status).map({"eligible": "纳入", "excluded": "不纳入", "deferred": "暂缓",
                                                 "verify": "纳入（待核实）"}).to_numpy(),
        "renovation_classes": rng.choice(["基础", "基础;完善", "基础;完善;提升"], n_compounds),
        "cost_cny": rng.uniform(2e6, 6e7, n_compounds).round(0),
        "bundle_id": bundle,
        **{f"cov_{t}": cov[:, k] for k, t in enumerate(types)},
    }, geometry=geoms, crs=CRS)
    b = compounds[compounds["bundle_id"].notna()].dissolve("bundle_id", aggfunc={"households": "sum",
                                                                               "cost_cny": "sum"})
    b["n_compounds"] = compounds.groupby("bundle_id").size()
    bundles = b.reset_index()
    # roads: the street grid between the blocks
    xs = X0 - 15 + np.arange(side + 1) * block
    ys = Y0 - 15 + np.arange(side + 1) * block
    lines = [shapely.LineString([(x, ys[0]), (x, ys[-1])]) for x in xs]
    lines += [shapely.LineString([(xs[0], y), (xs[-1], y)]) for y in ys]
    roads = gpd.GeoDataFrame({"road_id": [f"R{i}" for i in range(len(lines))], "road_class": "local"},
                             geometry=lines, crs=CRS)
    n_fac = n_compounds // 6
    ftypes = list(load_standards().facility_types.index)
    fac = gpd.GeoDataFrame({"facility_id": [f"F{i:05d}" for i in range(n_fac)],
                            "facility_type": rng.choice(ftypes, n_fac), "name": [f"设施{i}" for i in range(n_fac)]},
                           geometry=gpd.points_from_xy(rng.uniform(xs[0], xs[-1], n_fac),
                                                       rng.uniform(ys[0], ys[-1], n_fac)), crs=CRS)
    n_vac = n_compounds // 40
    pick = rng.choice(n_compounds, n_vac, replace=False)
    vacant = gpd.GeoDataFrame({"parcel_id": [f"V{i:04d}" for i in range(n_vac)],
                               "kind": rng.choice(["vacant_land", "idle_building", "old_factory"], n_vac)},
                              geometry=[shapely.box(cx[k] + 10, cy[k] + 10, cx[k] + 40, cy[k] + 40) for k in pick],
                              crs=CRS)
    n_prop = n_compounds // 50
    prop = fac.sample(n_prop, random_state=1).assign(facility_id=[f"N{i:04d}" for i in range(n_prop)])
    n_proj = 60
    projects = gpd.GeoDataFrame({"project_id": [f"P{i:02d}" for i in range(n_proj)], "name": "收益项目",
                                 "kind": "old_factory", "net_revenue_cny": rng.uniform(1e7, 1e8, n_proj)},
                                geometry=[shapely.box(x, y, x + 200, y + 150) for x, y in
                                          zip(rng.uniform(xs[0], xs[-1], n_proj), rng.uniform(ys[0], ys[-1], n_proj),
                                              strict=True)], crs=CRS)
    pairings = pd.DataFrame({"bundle_id": bundles["bundle_id"].sample(150, random_state=2).to_numpy(),
                             "project_id": rng.choice(projects["project_id"], 150),
                             "amount_cny": rng.uniform(1e6, 3e7, 150)})
    outputs = {"compounds": compounds, "bundles": bundles, "vacant": vacant, "facilities": fac,
               "proposed_facilities": prop}
    layers = SimpleNamespace(roads=roads, projects=projects, boundaries=None, compounds=compounds)
    config = SimpleNamespace(name="合成城市", settings={}, standards=None)
    return SimpleNamespace(outputs=outputs, tables={"pairings": pairings}, layers=layers, config=config,
                           standards=load_standards())


# ---------------------------------------------------------------------------------------------- service areas
def old_service_band(segs: np.ndarray, buffer_m: float, tol_m: float) -> list[shapely.Polygon]:
    """The former map service-area geometry step, verbatim: per 2 km tile (by piece midpoint) the
    pieces are unioned, line-merged, buffered (3 segments per quarter circle) and simplified."""
    lines = shapely.linestrings(segs)
    mid = segs.mean(axis=1)
    tile = np.floor(mid / 2000.0).astype(np.int64)
    key = tile[:, 0] * 1_000_003 + tile[:, 1]
    pieces = []
    for k in np.unique(key):
        part = shapely.buffer(shapely.line_merge(shapely.union_all(lines[key == k])), buffer_m, quad_segs=3)
        pieces.append(shapely.simplify(part, tol_m, preserve_topology=True))
    return [p for g in pieces for p in getattr(g, "geoms", [g]) if not p.is_empty]


def symdiff_area(a: list[shapely.Polygon], b: list[shapely.Polygon], tile_m: float = 2000.0) -> tuple[float, float]:
    """(area of the symmetric difference of two polygon sets, area of ``a``'s union) in m², tile by tile
    (the old method's tile polygons overlap, so each set is unioned per tile first)."""
    a_arr, b_arr = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    x0, y0, x1, y1 = shapely.total_bounds(np.r_[a_arr, b_arr])
    ta, tb = shapely.STRtree(a_arr), shapely.STRtree(b_arr)
    sym = area = 0.0
    for x in np.arange(np.floor(x0 / tile_m) * tile_m, x1, tile_m):
        for y in np.arange(np.floor(y0 / tile_m) * tile_m, y1, tile_m):
            box = shapely.box(x, y, x + tile_m, y + tile_m)
            pa = shapely.union_all(shapely.clip_by_rect(a_arr[ta.query(box)], x, y, x + tile_m, y + tile_m))
            pb = shapely.union_all(shapely.clip_by_rect(b_arr[tb.query(box)], x, y, x + tile_m, y + tile_m))
            sym += shapely.symmetric_difference(pa, pb).area
            area += pa.area
    return sym, area


def service_area_context(network: str, city: SimpleNamespace) -> tuple[object, gpd.GeoDataFrame, int, str]:
    """(map context, facility points, number of compounds, description) of the chosen street network."""
    if network == "map":
        ctx = maps.map_context(city)
        n_compounds = len(city.outputs["compounds"])
        desc = f"the mapped city's street grid ({len(city.layers.roads)} lines)"
    else:
        import city as city_bench  # benchmarks/city.py

        n, n_compounds = (150, 2500) if network == "city-quick" else (450, 20_000)
        raw = city_bench.synthetic_city(n, n_compounds)
        ctx = maps.MapContext(name="city", compounds=raw["compounds"], bundles=None, vacant=None,
                              facilities=raw["facilities"], proposed=None, projects=None, pairings=None,
                              boundaries=None, roads=raw["roads"], coverage=None, standards=load_standards(),
                              settings={}, crs=raw["roads"].crs)
        desc = f"benchmarks/city.py {n}×{n} street grid ({n * n:,} nodes, {len(raw['roads']):,} road lines)"
    return ctx, map_layers.service_points(ctx, "plan", None), n_compounds, desc


def compare_service_areas(network: str, city: SimpleNamespace, old: bool = True) -> bool:
    """Time the service areas (5/10/15 minutes) old way and new way on the same street pieces; print both."""
    ctx, pts, n_compounds, desc = service_area_context(network, city)
    display = maps.load_style()["display"]
    large = n_compounds > int(display["large_map_features"])
    tol = float(display["large_map_service_area_tol_m" if large else "service_area_tol_m"])  # as the map builder
    buffer_m = float(ctx.standards.network["isochrone_buffer_m"])
    t = time.perf_counter()
    graph, noded = walking_graph(ctx)
    bands = areas.band_pieces(graph, pts, areas.band_minutes(ctx.standards), standards=ctx.standards,
                              crossings_noded=noded)
    t_search = time.perf_counter() - t
    print(f"service areas on {desc}: {len(pts):,} facilities, buffer {buffer_m:g} m, simplified to {tol:g} m; "
          f"graph + snapping + one multi-source search {t_search:.1f} s")
    cache: dict = {}
    tot_old = tot_new = 0.0
    ok = True
    for minutes, segs, ends in bands:
        t = time.perf_counter()
        new = areas.planar_buffer(segs, buffer_m, ends=ends, tol_m=tol, quad_segs=3, cache=cache)
        t_new = time.perf_counter() - t
        tot_new += t_new
        line = f"  {minutes:>4g} min: {len(segs):>9,} street pieces — new {t_new:6.2f} s"
        if old:
            t = time.perf_counter()
            before = old_service_band(segs, buffer_m, tol)
            t_old = time.perf_counter() - t
            tot_old += t_old
            sym, area = symdiff_area(before, new)
            line += (f", old {t_old:7.2f} s (old / new {t_old / t_new:5.1f}×); symmetric difference "
                     f"{sym / area:.2%} of the old area")
            ok = ok and sym / area < 0.05
        print(line)
    total = f"  all bands: new {tot_new:.2f} s (+ {t_search:.1f} s search)"
    if old:
        total += f", old {tot_old:.1f} s: {tot_old / tot_new:.0f}× faster"
    print(total)
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--compounds", type=int, default=20_000)
    p.add_argument("--out", help="folder for map.html and the screenshot (default: a temporary folder)")
    p.add_argument("--no-browser", action="store_true", help="skip the Chromium load test")
    p.add_argument("--sa-network", choices=["map", "city-quick", "city", "none"], default="map",
                   help="street network of the service-area comparison (default: the mapped city's)")
    p.add_argument("--no-old", action="store_true", help="time only the new service-area method")
    args = p.parse_args(argv)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="map_scale_"))
    t = time.perf_counter()
    city = synthetic_city(args.compounds)
    t_data = time.perf_counter() - t
    sa_times: list[float] = []
    service_bands = map_layers.service_bands

    def timed_service_bands(*a, **k):  # the service-area share of the build
        t0 = time.perf_counter()
        try:
            return service_bands(*a, **k)
        finally:
            sa_times.append(time.perf_counter() - t0)

    map_layers.service_bands = timed_service_bands
    t = time.perf_counter()
    try:
        m = maps.plan_map(city, basemap=None)
    finally:
        map_layers.service_bands = service_bands
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    path, size = maps.save_map(m, out / "map.html")
    t_save = time.perf_counter() - t
    print(f"synthetic city: {args.compounds} compounds, {len(city.outputs['bundles'])} bundles, "
          f"{len(city.outputs['facilities'])} facilities ({t_data:.1f} s to generate)")
    print(f"map.html: {size / 1e6:.2f} MB (target < 15 MB) — build {t_build:.1f} s (service areas "
          f"{sum(sa_times):.1f} s), render+write {t_save:.1f} s")
    ok = size < 15e6
    if not args.no_browser:
        from browser import browser_check, find_chromium  # tests/browser.py

        if find_chromium() is None:
            print("Chromium not found: load test skipped")
        else:
            r = browser_check(path, screenshot=out / "map.png", timeout=120)
            print(f"headless Chromium (network off): load event {r['load_s']:.2f} s, first render "
                  f"{r['render_s']:.2f} s (target < 3 s); console errors {len(r['console_errors'])}; "
                  f"network requests {len(r['requests'])}; overlays {len(r['check'].get('overlays', []))}")
            ok = ok and r["render_s"] is not None and r["render_s"] < 3.0 and not r["console_errors"]
    if args.sa_network != "none":
        ok = compare_service_areas(args.sa_network, city, old=not args.no_old) and ok
    print(f"outputs in {out}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
