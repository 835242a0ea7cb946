"""Plan maps: layers, legends, escaping, offline HTML, basemaps and GCJ-02 shift, one-bundle and coverage maps."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import gis_planner as gp
from gis_planner import maps
from gis_planner import service_areas as areas

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def result(hostile_run):
    return hostile_run[1]


@pytest.fixture(scope="module")
def page(result) -> str:
    return maps.plan_map(result, basemap=None).get_root().render()


def _datasets(text: str) -> list[dict]:
    return [json.loads(m) for m in re.findall(r'<script type="application/json" id="\w+">(.*?)</script>', text, re.S)]


def _decode(g: dict) -> list[np.ndarray]:
    """The coordinates of every geometry of a delta-coded dataset (Python twin of GP.decode)."""
    c = np.cumsum(np.asarray(g["c"]).reshape(-1, 2), axis=0) / g["s"]
    return [c[a:b] for a, b in zip(g["o"][0][:-1], g["o"][0][1:], strict=True)]


def test_offline_no_cdn_and_leaflet_inlined(page):
    assert "https://cdn" not in page and "cdnjs" not in page and "code.jquery" not in page
    assert not re.search(r'<script[^>]+src="https?:', page)
    assert not re.search(r'<link[^>]+href="https?:', page)
    assert "Leaflet" in page and "L.control.layers" in page
    assert "data:image/png;base64" in page  # the layer-control icon is inlined too


def _js(text: str) -> str:
    from jinja2.utils import htmlsafe_json_dumps

    return str(htmlsafe_json_dumps(text))[1:-1]


def test_layers_and_legend_entries(page, result):
    for name in ("小区（按片区着色）", "小区（按改造资格）", "小区（设施覆盖缺口）", "片区边界", "存量用地", "现状设施",
                 "收益项目", "步行5分钟服务范围", "步行10分钟服务范围", "步行15分钟服务范围"):
        assert _js(name) in page, name  # the layer control's names
    # legend sections: a title per layer, eligibility labels, bundle swatches, facility types with icons
    assert _js("<b>存量用地</b>") in page
    c = result.outputs["compounds"]
    for status, label in (("eligible", "确认纳入"), ("excluded", "不纳入")):
        rows = c[c["eligibility"] == status]
        assert len(rows)
        assert _js(f"<span>{label}（{len(rows)}个小区，{int(rows['households'].sum()):,}户）</span>") in page, label
    assert _js("<span>B001</span>") in page
    assert _js("<span>幼儿园</span>") in page and _js("<svg") in page
    assert "L.control.scale" in page and "gp-fullscreen" in page and "gp-measure" in page


def test_values_escaped(page, hostile_name):
    assert hostile_name not in page and "<script>alert(1)" not in page
    data = _datasets(page)
    tips = [t for d in data for t in d.get("t", [])]
    assert "&lt;img src=x onerror=alert(1)&gt;（C001）" in tips or any("&lt;img src=x" in t for t in tips)


def test_geometry_encoding_round_trips(result, page):
    comp = _datasets(page)[0]
    assert comp["g"]["enc"] == "mp"
    rings = _decode(comp["g"])
    wgs = result.outputs["compounds"].to_crs(4326)
    first = np.asarray(wgs.geometry.iloc[0].exterior.coords)
    assert np.abs(rings[0] - first).max() < 2e-6  # 6 decimals, simplified by < half a pixel at zoom 18


def test_english_labels(result):
    text = maps.plan_map(result, basemap=None, lang="en", service_areas=False).get_root().render()
    assert "Compounds by bundle" in text and "Kindergarten" in text and "小区（按片区着色）" not in text


def test_amap_shifts_layers_to_gcj02(result):
    plain = _decode(_datasets(maps.plan_map(result, basemap="osm", service_areas=False).get_root().render())[0]["g"])
    page = maps.plan_map(result, basemap="amap", service_areas=False).get_root().render()
    assert "autonavi.com" in page
    shifted = _decode(_datasets(page)[0]["g"])
    d = shifted[0][0] - plain[0][0]
    assert 1e-3 < abs(d[0]) < 1e-2 and 1e-4 < abs(d[1]) < 1e-2  # GCJ-02 offsets are a few hundred metres


def test_tianditu_needs_a_key(result, monkeypatch):
    monkeypatch.delenv("TIANDITU_KEY", raising=False)
    with pytest.raises(ValueError, match="Tianditu"):
        maps.plan_map(result, basemap="tianditu", service_areas=False)
    page = maps.plan_map(result, basemap="tianditu", tianditu_key="abc123", service_areas=False).get_root().render()
    assert "tianditu.gov.cn" in page and "tk=abc123" in page


def test_bundle_and_coverage_maps(result, tmp_path):
    bid = str(result.outputs["bundles"]["bundle_id"].iloc[0])
    page = maps.bundle_map(result, bid, basemap=None).get_root().render()
    assert _js(f"片区 {bid}") in page
    cov = maps.coverage_map(result, "幼儿园", basemap=None).get_root().render()
    assert _js("小区（幼儿园可达性）") in cov and _js("5分钟内") in cov and _js("超过15分钟") in cov
    path, size = maps.save_map(maps.coverage_map(result, "kindergarten", basemap=None), tmp_path / "cov.html")
    assert path.exists() and size == path.stat().st_size > 100_000
    with pytest.raises(KeyError):
        maps.bundle_map(result, "NOPE")


def test_save_map_refuses_cdn_assets(result, tmp_path):
    import folium.plugins

    m = maps.plan_map(result, basemap=None, service_areas=False)
    folium.plugins.Fullscreen().add_to(m)  # folium's plugin loads its JS from a CDN
    with pytest.raises(ValueError, match="offline"):
        maps.save_map(m, tmp_path / "m.html")
    assert not (tmp_path / "m.html").exists()


def test_redraw_from_finished_run(tmp_path):
    res = gp.Plan(str(ROOT / "layers" / "sample_district.gpkg")).run(tmp_path)
    maps.write_run_map(res)
    before = (tmp_path / "map.html").stat().st_size
    run = maps.load_run(tmp_path)
    assert run.layers.roads is not None and "bundles" in run.outputs
    assert run.standards.speed_kmh == res.standards.speed_kmh  # the run's standards, read back
    from gis_planner.cli import main

    assert main(["map", str(tmp_path), "--basemap", "none"]) == 0
    assert abs((tmp_path / "map.html").stat().st_size - before) < before * 0.2


def test_icon_svg_escaped():
    svg = maps.facility_icon_svg("kindergarten")
    assert svg.startswith("<svg") and "幼" in svg
    assert "·" in maps.facility_icon_svg("no_such_type")


# --------------------------------------------------------------------------------------------- service areas
def _pieces(*lines) -> np.ndarray:
    """(n, 2, 2) straight pieces of polylines given as vertex lists (metres)."""
    return np.concatenate([np.stack([np.asarray(c, float)[:-1], np.asarray(c, float)[1:]], axis=1) for c in lines])


def _square(x: float, y: float, side: float) -> list[tuple[float, float]]:
    return [(x, y), (x + side, y), (x + side, y + side), (x, y + side), (x, y)]


def _exact_area(segs: np.ndarray, buffer_m: float):
    """The reference: every piece buffered (16 segments per quarter circle), unioned."""
    import shapely

    point = (segs[:, 0] == segs[:, 1]).all(axis=1)
    geoms = np.r_[shapely.linestrings(segs[~point]), shapely.points(segs[point, 0])]
    return shapely.union_all(shapely.buffer(geoms, buffer_m, quad_segs=16))


def _along(segs: np.ndarray, n: int = 11) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[None, :, None]
    return (segs[:, None, 0] * (1 - t) + segs[:, None, 1] * t).reshape(-1, 2)


def _jittered_grid(n: int, spacing: float, seed: int, drop: float = 0.15) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.arange(n) * spacing, np.arange(n) * spacing)
    gx, gy = gx + rng.normal(0, spacing / 9, gx.shape), gy + rng.normal(0, spacing / 9, gy.shape)
    segs = [[(gx[i, j], gy[i, j]), (gx[i, j + 1], gy[i, j + 1])] for i in range(n) for j in range(n - 1)
            if rng.random() > drop]
    segs += [[(gx[i, j], gy[i, j]), (gx[i + 1, j], gy[i + 1, j])] for i in range(n - 1) for j in range(n)
             if rng.random() > drop]
    return np.asarray(segs, dtype=float)


_GRID = [[(0, y), (300, y)] for y in (0, 100, 200, 300)] + [[(x, 0), (x, 300)] for x in (0, 100, 200, 300)]
_CASES = {
    # blocks with dead ends into them, a piece cut part-way, a dead end outside
    "grid and dead ends": lambda: np.concatenate([areas.node_segments(_pieces(*_GRID)), _pieces(
        [(150, 100), (150, 160)], [(300, 150), (380, 150)], [(50, 0), (50, 30)])]),
    # a street loop inside a large block, not connected to it, with a dead end, and a lone point
    "nested component": lambda: np.concatenate([_pieces(_square(0, 0, 400), _square(150, 150, 100),
                                                        [(250, 200), (330, 200)]), [[(60.0, 300.0)] * 2]]),
    "nested twice": lambda: _pieces(_square(0, 0, 600), _square(100, 100, 400), _square(250, 250, 100)),
    # a loop hanging into a block from one of its corners; two blocks meeting at one corner
    "loop touching a corner": lambda: _pieces(_square(0, 0, 400), [(0, 0), (150, 100), (100, 150), (0, 0)]),
    "blocks meeting at a corner": lambda: _pieces(_square(0, 0, 100), _square(100, 100, 100)),
    # a reflex corner and a sharp angle; a tree with a duplicated piece; neighbouring components
    "L-shape and sharp angle": lambda: areas.node_segments(_pieces(
        [(0, 0), (300, 0), (300, 100), (100, 100), (100, 300), (0, 300), (0, 0)], [(300, 0), (600, 20), (300, 10)])),
    "tree with duplicate": lambda: _pieces([(0, 0), (100, 0), (200, 50)], [(100, 0), (100, 90)], [(0, 0), (100, 0)]),
    "close components": lambda: _pieces(_square(0, 0, 100), _square(130, 0, 100), [(0, 140), (230, 140)]),
    # one street (with a dead end off it) joining two blocks, and joining a block to a loop inside a larger one
    "two blocks joined by a street": lambda: areas.node_segments(_pieces(
        _square(0, 0, 100), _square(300, 0, 100), [(100, 50), (200, 60), (300, 50)], [(200, 60), (200, 120)])),
    "loop joined to its block": lambda: areas.node_segments(_pieces(
        _square(0, 0, 500), _square(250, 250, 100), [(0, 300), (100, 320), (250, 300)], [(100, 320), (100, 400)])),
    "jittered grid": lambda: _jittered_grid(15, 70.0, seed=1),
}


@pytest.mark.parametrize("case", list(_CASES))
def test_planar_buffer_equals_buffered_union(case):
    import shapely

    segs = _CASES[case]()
    polys = areas.planar_buffer(segs, 25.0)
    area = shapely.multipolygons(np.asarray(polys, dtype=object))
    ref = _exact_area(segs, 25.0)
    assert area.is_valid  # disjoint polygons
    assert shapely.symmetric_difference(area, ref).area <= 0.01 * ref.area
    assert shapely.covers(area, shapely.points(_along(segs))).all()  # every street point is inside
    # holes are kept: a 100 m block leaves a 50 m core
    if case == "grid and dead ends":
        assert not area.covers(shapely.Point(50, 250)) and area.covers(shapely.Point(50, 224))


def test_planar_buffer_reuses_faces_of_a_larger_band():
    import shapely

    segs = _jittered_grid(15, 70.0, seed=2)
    cache: dict = {}
    areas.planar_buffer(segs, 25.0, tol_m=2.0, cache=cache)
    n_cached = len(cache["keys"])
    assert n_cached > 100 and len(cache["holes"]) > 100
    for small_segs in (segs[:-60], segs[60:]):  # a smaller band: most faces as before
        small = shapely.multipolygons(np.asarray(areas.planar_buffer(small_segs, 25.0, tol_m=2.0, cache=cache),
                                                 dtype=object))
        ref = _exact_area(small_segs, 25.0)
        assert shapely.symmetric_difference(small, ref).area <= 0.02 * ref.area
        assert shapely.covers(small, shapely.points(_along(small_segs))).all()
        fresh = shapely.multipolygons(np.asarray(areas.planar_buffer(small_segs, 25.0, tol_m=2.0), dtype=object))
        assert shapely.symmetric_difference(small, fresh).area < 1e-6  # the same with or without the cache
    assert len(cache["keys"]) < n_cached + 60  # only faces changed by the cuts are new


def test_crossing_segments_and_noding():
    import shapely

    segs = _pieces([(0, 0), (200, 200)], [(0, 200), (200, 0)], [(0, 0), (0, 200)], [(200, 0), (200, 100)],
                   [(200, 100), (200, 200)], [(200, 100), (300, 100)], [(200, 100), (250, 100)],
                   [(300, 0), (300, 50)], [(300, 0), (300, 50)])
    ends = np.array([[0, 1], [2, 3], [0, 2], [3, 4], [4, 1], [4, 5], [4, 6], [7, 8], [7, 8]])
    # an X crossing (0, 1) and a collinear overlap from a shared node (5, 6); a duplicate (7, 8) is fine
    assert areas.crossing_segments(segs, ends).tolist() == [True, True, False, False, False, True, True, False,
                                                           False]
    noded = areas.node_segments(segs[:2])
    assert len(noded) == 4 and np.isclose(noded, 100.0).all(axis=2).any(axis=1).all()  # split at (100, 100)
    area = shapely.multipolygons(np.asarray(areas.planar_buffer(areas.node_segments(segs), 20.0), dtype=object))
    ref = _exact_area(segs, 20.0)
    assert shapely.symmetric_difference(area, ref).area <= 0.01 * ref.area


def test_reached_segments_with_node_ids_match_coverage():
    from gis_planner.coverage import reached_segments

    rng = np.random.default_rng(3)
    n = 400
    pu, pv = rng.uniform(0, 1000, (n, 2)), rng.uniform(0, 1000, (n, 2))
    pv[:10] = pu[:10]  # zero-length edges
    length = np.hypot(*(pv - pu).T)
    with np.errstate(invalid="ignore", divide="ignore"):
        step = np.where(length[:, None] > 0, (pv - pu) / length[:, None], 0.0)
    du, dv = rng.uniform(0, 900, n), rng.uniform(0, 900, n)
    du[rng.random(n) < 0.2] = np.inf
    segs, ends = areas.reached_segments(pu, pv, step, length, du, dv, 500.0,
                                        node_ids=(np.arange(n), n + np.arange(n)))
    assert np.array_equal(segs, reached_segments(pu, pv, step, length, du, dv, 500.0))  # coverage's name
    whole = (ends >= 0).all(axis=1)
    assert np.array_equal(segs[whole, 0], pu[ends[whole, 0]]) and (ends[~whole] >= -1).all()
    assert ((ends == -1).sum(axis=1) <= 1).all() and (~whole).sum() > 20


def _small_city(bridge: bool = False):
    """Jittered 14 × 14 street grid (75 m) with dead ends, a separate loop and six facilities (EPSG:4547)."""
    import geopandas as gpd
    import shapely

    segs = _jittered_grid(14, 75.0, seed=5, drop=0.12) + (500_000.0, 3_300_000.0)
    lines = list(shapely.linestrings(segs))
    lines.append(shapely.LineString([(501_200.0, 3_301_200.0), (501_260, 3_301_200), (501_260, 3_301_240)]))
    if bridge:  # crosses the grid with no junction
        lines.append(shapely.LineString([(499_980.0, 3_300_300.0), (501_000.0, 3_300_700.0)]))
    roads = gpd.GeoDataFrame({"road_id": [f"r{i}" for i in range(len(lines))], "road_class": "local"},
                             geometry=lines, crs="EPSG:4547")
    fac = gpd.GeoDataFrame({"facility_id": [f"f{i}" for i in range(6)]}, geometry=gpd.points_from_xy(
        [500_100.0, 500_700, 500_400, 500_950, 501_230, 500_500],
        [3_300_100.0, 3_300_300, 3_300_800, 3_300_950, 3_301_210, 3_300_500]), crs="EPSG:4547")
    return roads, fac


@pytest.mark.parametrize("bridge", [False, True])
def test_service_bands_agree_with_exact_isochrones(bridge):
    """The map's service areas against the union of the exact single-facility isochrones."""
    import shapely

    from gis_planner.coverage import service_areas
    from gis_planner.maps.context import walking_graph
    from gis_planner.network import walk_graph
    from gis_planner.standards import load_standards

    roads, fac = _small_city(bridge)
    standards = load_standards()
    ctx = maps.MapContext(name="t", compounds=None, bundles=None, vacant=None, facilities=fac, proposed=None,
                          projects=None, pairings=None, boundaries=None, roads=roads, coverage=None,
                          standards=standards, settings={}, crs=roads.crs)
    # the OSM way: crossings are bridges (no junction), so the map has to split the pieces where they cross
    graph = walk_graph(roads, node_crossings=not bridge)
    # without a bridge: the graph the map builds from the roads (crossings split, the drawn-data default)
    used, noded = (graph, False) if bridge else walking_graph(ctx)
    assert noded is not bridge
    bands = areas.service_bands(used, fac, (5, 10, 15), standards=standards, tol_m=2.0, crossings_noded=noded)
    assert bands["minutes"].tolist() == [15.0, 10.0, 5.0]
    exact = service_areas(graph, fac, (5, 10, 15), standards=standards)
    pieces = {m: segs for m, segs, _ in areas.band_pieces(graph, fac, (5, 10, 15), standards=standards)}
    band_areas = []
    for m in (15.0, 10.0, 5.0):
        got = bands.loc[bands["minutes"] == m, "geometry"].iloc[0]
        ref = shapely.union_all(exact.loc[exact["minutes"] == m, "geometry"].to_numpy())
        assert shapely.symmetric_difference(got, ref).area <= 0.02 * ref.area, m
        assert shapely.covers(got, shapely.points(_along(pieces[m]))).all()
        band_areas.append(got.area)
    assert band_areas[0] > band_areas[1] > band_areas[2] > 0.15e6  # nested bands, 5 minutes ≈ 333 m round six facilities
    # the loop off the grid is reached from its own facility (150 m away)
    assert bands.iloc[-1].geometry.covers(shapely.Point(501_260, 3_301_230))


def test_capsule_union_fallback_matches():
    import shapely

    segs = _jittered_grid(12, 70.0, seed=4) * 4.0  # 2.8 km: several 2 km tiles
    a = shapely.union_all(np.asarray(areas.capsule_union(segs, 25.0), dtype=object))
    b = shapely.multipolygons(np.asarray(areas.planar_buffer(segs, 25.0), dtype=object))
    assert shapely.symmetric_difference(a, b).area <= 1e-3 * b.area


def test_small_holes_are_filled_on_large_maps():
    import shapely

    shell = shapely.box(0, 0, 1000, 1000)
    small, big = shapely.box(100, 100, 150, 150), shapely.box(400, 400, 600, 600)  # 2,500 m² and 40,000 m²
    holed = shell.difference(small).difference(big)
    plain = shapely.box(2000, 0, 2100, 100)
    out = areas.fill_holes(np.array([holed, plain], dtype=object), 5000.0)
    assert [shapely.get_num_interior_rings(p) for p in out] == [1, 0]
    assert out[0].area == pytest.approx(1_000_000 - 40_000)
    assert out[1].equals(plain)
    same = areas.fill_holes(np.array([holed], dtype=object), 0.0)
    assert same[0].area == pytest.approx(holed.area)


def test_map_reuses_the_run_graph_and_honours_node_crossings(result):
    """The service areas walk the very graph the coverage stage used; a redraw builds it with the plan's
    [network] node_crossings setting (not the map section's)."""
    import dataclasses

    from gis_planner.maps.context import walking_graph

    ctx = maps.map_context(result)
    assert result.graph is not None and ctx.standards is result.standards
    graph, noded = walking_graph(ctx)
    assert graph is result.graph and noded is True  # sample roads are not from OpenStreetMap: crossings split
    rebuilt, noded = walking_graph(dataclasses.replace(ctx, graph=None, network={"node_crossings": "no"}))
    assert noded is False and rebuilt is not result.graph
    assert rebuilt.n_nodes < result.graph.n_nodes  # crossings without a shared vertex stay apart


def test_map_uses_the_runs_standards_never_a_fallback(tmp_path, result):
    """A result without standards is refused; a run whose recorded overrides no longer load says so."""
    from types import SimpleNamespace

    from gis_planner._errors import ConfigError
    from gis_planner.io import load_run

    bare = SimpleNamespace(outputs=result.outputs, tables=result.tables, layers=result.layers, config=result.config)
    with pytest.raises(ValueError, match="standards"):
        maps.plan_map(bare, basemap=None, service_areas=False)
    gp.Plan(str(ROOT / "layers" / "sample_district.gpkg"), {"map": {"enabled": False, "reports": False}}).run(tmp_path)
    manifest = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))
    manifest["config"]["standards_overrides"] = {"walk": {"no_such_key": 1}}
    (tmp_path / "run.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ConfigError, match="run.json"):
        load_run(tmp_path)


def test_bands_come_from_the_standards_tiers():
    from gis_planner.standards import load_standards

    assert areas.band_minutes(load_standards()) == [5.0, 10.0, 15.0]
    assert areas.band_minutes(load_standards({"tiers": {"5min": {"minutes": 6}}})) == [6.0, 10.0, 15.0]


def test_hatch_lines_of_compounds_to_verify():
    import shapely

    from gis_planner.maps.layers import hatch_lines
    from gis_planner.maps.style import legend_section

    square, ring = shapely.box(0, 0, 100, 100), shapely.box(200, 0, 300, 100).difference(shapely.box(230, 30, 270, 70))
    lines = hatch_lines([square, ring], 20.0)
    assert [g.geom_type for g in lines] == ["MultiLineString", "MultiLineString"]
    # the outline (400 m) plus 45° hatch lines 20 m apart (along x): total hatch length = area / (20 / √2)
    assert lines[0].length == pytest.approx(400 + 100 * 100 / (20 / np.sqrt(2)), rel=0.02)
    assert shapely.covers(square.buffer(1e-6), lines[0]) and not shapely.intersects(lines[1], shapely.box(
        231, 31, 269, 69))  # nothing drawn in the hole
    html = legend_section("待核实小区", [("hatch", "#7a0177", "待核实（2个小区，300户）")])
    assert "repeating-linear-gradient(45deg,#7a0177" in html and "<span>待核实（2个小区，300户）</span>" in html
