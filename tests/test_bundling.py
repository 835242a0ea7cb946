"""Tests of the adjacency graph and 片区 bundling on hand-drawn layouts, plus property tests on random grids."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from gis_planner import bundle_options, bundling, eligibility
from gis_planner._errors import ConfigError, LayerError

CRS = 32650


def row_of_compounds(n: int, *, households=400, floor=20_000.0, subdistrict="和平里街道", pitch=120.0,
                     **columns) -> gpd.GeoDataFrame:
    """``n`` squares of 100 m in a row, ``pitch`` apart (gap = pitch - 100 m), all eligible."""
    hh = households if isinstance(households, list) else [households] * n
    data = {
        "compound_id": [f"C{i}" for i in range(n)],
        "name": [f"小区{i}" for i in range(n)],
        "eligible": [True] * n,
        "households": hh,
        "floor_area_m2": floor if isinstance(floor, list) else [floor] * n,
        "cost_cny": [1e6] * n,
        "subdistrict": subdistrict if isinstance(subdistrict, list) else [subdistrict] * n,
    }
    data.update(columns)
    geoms = [shapely.box(i * pitch, 0, i * pitch + 100, 100) for i in range(n)]
    return gpd.GeoDataFrame(data, geometry=geoms, crs=CRS)


def streets(xs, classes, ids=None) -> gpd.GeoDataFrame:
    """Vertical street centre lines at ``xs``."""
    return gpd.GeoDataFrame(
        {"road_id": ids or [f"R{i}" for i in range(len(xs))], "road_class": classes},
        geometry=[shapely.LineString([(x, -50), (x, 150)]) for x in xs], crs=CRS)


def members(bundles: gpd.GeoDataFrame) -> list[list[str]]:
    return [m.split(";") for m in bundles["member_ids"]]


# ----------------------------------------------------------------------------------------- adjacency
def test_branch_road_bundles_arterial_separates():
    c = row_of_compounds(3)
    roads = streets([110, 230], ["local", "arterial"])
    pairs = bundling.adjacency(c, roads)
    assert pairs[["compound_a", "compound_b", "adjacent", "reason", "barrier_id"]].values.tolist() == [
        ["C0", "C1", True, "adjacent", None],
        ["C1", "C2", False, "barrier_road", "R1"],
    ]
    assert pairs["gap_m"].tolist() == [20.0, 20.0]
    assert pairs["reason_zh"].iloc[1] == "之间有主干路阻隔"
    out, bundles, _ = bundling.bundle(c, roads)
    assert members(bundles) == [["C0", "C1"], ["C2"]]
    assert out["bundle_id"].tolist() == ["B001", "B001", "B002"]
    assert bundles["isolated"].tolist() == [False, True]
    assert bundles["rationale_zh"].iloc[0] == "2个相邻小区，同属和平里街道，间距≤30m"


def test_secondary_road_barrier_is_configurable():
    c = row_of_compounds(2)
    roads = streets([110], ["secondary"])
    assert bundling.adjacency(c, roads)["adjacent"].item()
    pairs = bundling.adjacency(c, roads, barrier_classes=("arterial", "secondary"))
    assert (pairs["adjacent"].item(), pairs["reason"].item()) == (False, "barrier_road")


def test_gap_threshold_and_no_all_pairs():
    c = row_of_compounds(3, pitch=135.0)  # gaps of 35 m
    assert bundling.adjacency(c).empty
    pairs = bundling.adjacency(c, gap_m=40)
    assert pairs[["compound_a", "compound_b"]].values.tolist() == [["C0", "C1"], ["C1", "C2"]]  # not C0–C2


def test_river_barrier_polygon_and_line():
    c = row_of_compounds(2, pitch=125.0)
    river = gpd.GeoDataFrame(geometry=[shapely.box(103, -100, 122, 200)], crs=CRS)
    pairs = bundling.adjacency(c, barriers=river)
    assert (pairs["adjacent"].item(), pairs["reason"].item(), pairs["barrier_id"].item()) == (
        False, "barrier_other", "row 1")
    canal = gpd.GeoDataFrame(geometry=[shapely.LineString([(112, -100), (112, 200)])], crs=CRS)
    assert bundling.adjacency(c, barriers=canal)["reason"].item() == "barrier_other"


def test_road_ending_in_the_gap_or_touching_an_endpoint_does_not_cut():
    c = row_of_compounds(2)
    # an arterial that stops before reaching the line between the two compounds
    stub = gpd.GeoDataFrame({"road_class": ["arterial"]}, crs=CRS,
                            geometry=[shapely.LineString([(110, 130), (110, 300)])])
    assert bundling.adjacency(c, stub)["adjacent"].item()
    # an arterial along the front of both compounds (touches their edges, does not run between them)
    front = gpd.GeoDataFrame({"road_class": ["arterial"]}, crs=CRS,
                             geometry=[shapely.LineString([(-50, 100), (300, 100)])])
    assert bundling.adjacency(c, front)["adjacent"].item()


def test_touching_compounds_split_only_by_a_barrier_along_the_shared_edge():
    c = row_of_compounds(2, pitch=100.0)  # red lines drawn to the road centre line (OSM style)
    on_edge = streets([100], ["arterial"])
    pairs = bundling.adjacency(c, on_edge)
    assert (pairs["gap_m"].item(), pairs["adjacent"].item(), pairs["reason"].item()) == (0.0, False,
                                                                                         "barrier_road")
    assert bundling.adjacency(c, streets([100], ["local"]))["adjacent"].item()
    # an arterial crossing the compounds' far ends only (perpendicular to the shared edge) does not separate
    across = gpd.GeoDataFrame({"road_class": ["arterial"]}, crs=CRS,
                              geometry=[shapely.LineString([(50, 95), (150, 95)])])
    assert bundling.adjacency(c, across)["adjacent"].item()


def test_same_unit_subdistrict_and_community():
    c = row_of_compounds(3, subdistrict=["甲街道", "甲街道", "乙街道"], community=["一社区", "二社区", None])
    pairs = bundling.adjacency(c, same_unit="subdistrict")
    assert pairs["reason"].tolist() == ["adjacent", "different_unit"]
    assert pairs["reason_zh"].tolist() == ["间距≤30m，无阻隔，同属一个街道", "分属不同街道"]
    pairs = bundling.adjacency(c, same_unit="community")
    assert pairs["reason"].tolist() == ["different_unit", "adjacent_unit_unknown"]
    assert pairs["adjacent"].tolist() == [False, True]
    pairs = bundling.adjacency(c, same_unit=None)
    assert pairs["adjacent"].tolist() == [True, True]
    assert pairs["same_unit"].tolist() == [None, None]


def test_boundaries_fill_missing_units():
    c = row_of_compounds(2, subdistrict=[None, None])
    bounds = gpd.GeoDataFrame({"boundary_id": ["b1", "b2"], "name": ["东街道", "西街道"],
                               "level": ["subdistrict", "subdistrict"]}, crs=CRS,
                              geometry=[shapely.box(-10, -10, 110, 110), shapely.box(110, -10, 300, 110)])
    pairs = bundling.adjacency(c, boundaries=bounds, same_unit="subdistrict")
    assert (pairs["adjacent"].item(), pairs["reason"].item()) == (False, "different_unit")
    _, bundles, _ = bundling.bundle(c, boundaries=bounds)
    assert bundles["subdistrict"].tolist() == ["东街道", "西街道"]
    assert bundles["isolated"].all()


# ------------------------------------------------------------------------------------------ bundling
def test_household_cap_splits_chain_into_contiguous_parts():
    c = row_of_compounds(5, households=400)
    out, bundles, _ = bundling.bundle(c, rules={"max_households": 1000, "same_unit": "none"})
    assert members(bundles) == [["C0", "C1"], ["C2", "C3"], ["C4"]]
    assert bundles["households"].tolist() == [800.0, 800.0, 400.0]
    assert bundles["split"].all() and not bundles["isolated"].any()
    assert bundles["rationale_zh"].iloc[0].endswith("按规模上限（户数≤1,000）拆分连片区域")
    assert bundles["rationale_zh"].iloc[2].startswith("相邻片区已达规模上限")


def test_floor_area_and_cost_caps():
    c = row_of_compounds(4, floor=[10_000.0, 10_000.0, 10_000.0, 10_000.0])
    _, b, _ = bundling.bundle(c, rules={"max_households": 0, "max_floor_area_m2": 20_000})
    assert members(b) == [["C0", "C1"], ["C2", "C3"]]
    _, b, _ = bundling.bundle(c, rules={"max_households": None, "max_cost_cny": 3e6})
    assert (b["cost_cny"] <= 3e6).all() and b["n_compounds"].sum() == 4 and len(b) == 2


def test_island_compound_is_its_own_flagged_bundle():
    c = row_of_compounds(3)
    c.geometry = [shapely.box(0, 0, 100, 100), shapely.box(120, 0, 220, 100), shapely.box(600, 600, 700, 700)]
    out, bundles, _ = bundling.bundle(c)
    assert members(bundles) == [["C0", "C1"], ["C2"]]
    assert bundles["isolated"].tolist() == [False, True]
    assert bundles["rationale_zh"].iloc[1].startswith("独立小区：30m内无可捆绑的相邻合格小区")
    assert out.set_index("compound_id")["bundle_id"].to_dict() == {"C0": "B001", "C1": "B001", "C2": "B002"}


def test_single_compound_over_cap_is_flagged():
    c = row_of_compounds(3, households=[6000, 300, 300])
    _, bundles, _ = bundling.bundle(c, rules={"max_households": 5000})
    assert members(bundles) == [["C0"], ["C1", "C2"]]
    assert bundles["over_cap"].tolist() == [True, False]
    assert bundles["rationale_zh"].iloc[0].startswith("单个小区已超出片区规模上限")


def test_ineligible_compounds_are_not_bundled_and_break_chains():
    c = row_of_compounds(3, eligible=[True, False, True])
    out, bundles, pairs = bundling.bundle(c)
    assert members(bundles) == [["C0"], ["C2"]]
    assert out["bundle_id"].isna().tolist() == [False, True, False]
    assert pairs.empty  # pairs are computed among the compounds considered only


def test_secondary_candidates_resolved_by_adjacency():
    c = row_of_compounds(4)
    c = c.drop(columns=["eligible", "cost_cny"])
    c["build_year"] = pd.array([1990, 2003, 2004, 2003], dtype="Int64")
    c["consent_rate"] = 0.9
    c.geometry = [shapely.box(0, 0, 100, 100), shapely.box(120, 0, 220, 100), shapely.box(240, 0, 340, 100),
                  shapely.box(900, 0, 1000, 100)]
    screened = eligibility.screen(c, year=2024)
    out, bundles, _ = bundling.bundle(screened)
    assert out["eligible"].tolist() == [True, True, False, False]
    assert out["reasons"].tolist() == ["E-YEAR-PRIMARY", "E-YEAR-SECONDARY;B-ADJACENT-PRIMARY",
                                       "E-YEAR-SECONDARY;X-NOT-ADJACENT", "E-YEAR-SECONDARY;X-NOT-ADJACENT"]
    assert members(bundles) == [["C0", "C1"]]
    assert bundles["n_secondary"].item() == 1
    assert "含1个按次要年限联动纳入的小区" in bundles["rationale_zh"].item()
    assert bundles["cost_cny"].item() == 20_000.0 * 600 + 20_000.0 * 400


def test_vacant_parcels_and_projects_attach_to_nearest_bundle():
    c = row_of_compounds(4)
    roads = streets([230], ["arterial"])
    vacant = gpd.GeoDataFrame({"parcel_id": ["V1", "V2", "V3"], "kind": ["vacant_land"] * 3}, crs=CRS,
                              geometry=[shapely.box(20, 110, 60, 140),  # 10 m north of C0
                                        shapely.box(215, 110, 245, 140),  # 10 m from C1 and C2: tie → B001
                                        shapely.box(20, 300, 60, 340)])  # too far
    projects = gpd.GeoDataFrame({"project_id": ["P1"], "kind": ["land_sale"], "net_revenue_cny": [5e6]},
                                crs=CRS, geometry=[shapely.Point(300, 120)])  # 20 m north of C2
    _, bundles, _ = bundling.bundle(c, roads, vacant, projects)
    assert members(bundles) == [["C0", "C1"], ["C2", "C3"]]
    assert bundles["parcel_ids"].tolist() == ["V1;V2", ""]
    assert bundles["project_ids"].tolist() == ["", "P1"]
    assert "可利用存量用地2处" in bundles["rationale_zh"].iloc[0]


def test_bundle_table_columns_geometry_and_compactness():
    c = row_of_compounds(2, pitch=100.0, floor=[5_000.0, 6_000.0])
    _, bundles, _ = bundling.bundle(c)
    assert list(bundles.columns) == bundling.BUNDLE_COLUMNS
    b = bundles.iloc[0]
    assert b["geometry"].equals(shapely.box(0, 0, 200, 100).normalize()) or b["geometry"].area == 20_000
    assert b["area_m2"] == 20_000.0 and b["floor_area_m2"] == 11_000.0
    # Reock score of a 200 × 100 rectangle: 20000 / (π · (√(100² + 50²))²)
    assert b["compactness"] == pytest.approx(20_000 / (np.pi * 12_500), abs=1e-4)
    assert b["scattered"]  # 11,000 m² < 15,000 m²
    assert "属零散片区" in b["rationale_zh"]
    assert bundles.crs == c.crs


def test_ids_stable_under_row_order_and_input_not_mutated():
    c = row_of_compounds(6, households=[500, 600, 700, 800, 900, 400])
    before = c.copy()
    rules = {"max_households": 1500}
    out1, b1, p1 = bundling.bundle(c, rules=rules)
    shuffled = c.iloc[[3, 0, 5, 1, 4, 2]]
    out2, b2, p2 = bundling.bundle(shuffled, rules=rules)
    pd.testing.assert_frame_equal(c, before)
    pd.testing.assert_frame_equal(b1, b2)
    pd.testing.assert_frame_equal(p1, p2)
    assert out2.set_index("compound_id")["bundle_id"].sort_index().equals(
        out1.set_index("compound_id")["bundle_id"].sort_index())
    assert "bundle_id" not in c.columns


def test_bundle_ids_ordered_by_smallest_member_and_widen():
    c = row_of_compounds(3, pitch=500.0)  # three isolated compounds
    c["compound_id"] = ["z", "a", "m"]
    out, bundles, _ = bundling.bundle(c)
    assert bundles[["bundle_id", "member_ids"]].values.tolist() == [["B001", "a"], ["B002", "m"], ["B003", "z"]]
    big = row_of_compounds(1001, pitch=200.0)
    _, bundles, _ = bundling.bundle(big)
    assert bundles["bundle_id"].iloc[-1] == "B1001" and bundles["bundle_id"].iloc[0] == "B0001"


def test_no_eligible_compounds_gives_empty_tables():
    c = row_of_compounds(2, eligible=[False, False])
    out, bundles, pairs = bundling.bundle(c)
    assert bundles.empty and list(bundles.columns) == bundling.BUNDLE_COLUMNS
    assert out["bundle_id"].isna().all() and pairs.empty


@pytest.mark.parametrize(
    ("rules", "match"),
    [
        ({"gap": 30}, "unknown setting 'gap'"),
        ({"same_unit": "district"}, "same_unit"),
        ({"barrier_classes": ["motorway"]}, "unknown road class"),
        ({"gap_m": -1}, "gap_m"),
        ({"max_households": "many"}, "expected float"),
    ],
)
def test_bad_rules_raise_config_error(rules, match):
    with pytest.raises(ConfigError, match=match):
        bundling.bundle(row_of_compounds(2), rules=rules)


def test_bad_layers_raise_layer_error():
    c = row_of_compounds(2)
    with pytest.raises(LayerError, match="'eligible' is missing — run eligibility.screen"):
        bundling.bundle(c.drop(columns="eligible"))
    with pytest.raises(LayerError, match="geographic"):
        bundling.bundle(c.set_crs(4326, allow_override=True))
    bad = c.copy()
    bad.loc[1, "geometry"] = shapely.Point(0, 0)
    with pytest.raises(LayerError, match=r"compounds row 2 \(compound_id 'C1'\), field 'geometry': a Point"):
        bundling.bundle(bad)
    bad = c.copy()
    bad["households"] = [100, -3]
    with pytest.raises(LayerError, match=r"row 2 \(compound_id 'C1'\), field 'households'"):
        bundling.bundle(bad)
    with pytest.raises(LayerError, match="roads: CRS"):
        bundling.bundle(c, streets([110], ["local"]).set_crs(3857, allow_override=True))
    with pytest.raises(LayerError, match="road_class"):
        bundling.bundle(c, streets([110], ["local"]).drop(columns="road_class"))


# ----------------------------------------------------------------------------------- property tests
@st.composite
def grid_layouts(draw):
    nx = draw(st.integers(1, 6))
    ny = draw(st.integers(1, 5))
    n = nx * ny
    present = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    if not any(present):
        present[0] = True
    sizes = draw(st.lists(st.floats(70, 120), min_size=n, max_size=n))
    households = draw(st.lists(st.integers(0, 900), min_size=n, max_size=n))
    eligible = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    units = draw(st.lists(st.sampled_from(["甲街道", "乙街道"]), min_size=n, max_size=n))
    art_x = draw(st.lists(st.integers(1, max(nx - 1, 1)), max_size=2, unique=True))
    cap = draw(st.sampled_from([600.0, 1000.0, 1500.0, 3000.0]))
    same_unit = draw(st.sampled_from(["none", "subdistrict"]))
    keep = np.flatnonzero(present)
    col, row = keep % nx, keep // nx
    geoms = [shapely.box(c * 140, r * 140, c * 140 + s, r * 140 + s)
             for c, r, s in zip(col, row, np.asarray(sizes)[keep], strict=True)]
    compounds = gpd.GeoDataFrame({
        "compound_id": [f"K{i:03d}" for i in keep],
        "eligible": np.asarray(eligible)[keep],
        "households": np.asarray(households)[keep],
        "floor_area_m2": np.asarray(households, dtype=float)[keep] * 80,
        "subdistrict": np.asarray(units, dtype=object)[keep],
    }, geometry=geoms, crs=CRS)
    roads = gpd.GeoDataFrame({"road_class": ["arterial"] * len(art_x)}, crs=CRS,
                             geometry=[shapely.LineString([(x * 140 - 10, -50), (x * 140 - 10, ny * 140)])
                                       for x in art_x])
    return compounds, roads, {"max_households": cap, "same_unit": same_unit, "gap_m": 30.0}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grid_layouts())
def test_properties_on_random_layouts(layout):
    compounds, roads, rules = layout
    out, bundles, pairs = bundling.bundle(compounds, roads, rules=rules)
    cap = rules["max_households"]
    eligible = set(compounds.loc[compounds["eligible"], "compound_id"])

    # every eligible compound is in exactly one bundle; no other compound is
    listed = [m for ms in members(bundles) for m in ms]
    assert sorted(listed) == sorted(eligible) and len(listed) == len(set(listed))
    assert set(out.loc[out["bundle_id"].notna(), "compound_id"]) == eligible
    assert bundles["n_compounds"].sum() == len(eligible)

    # every bundle is connected on the adjacency graph, but for the scattered compounds merged by proximity:
    # each of those had no adjacent eligible compound, is under min_floor_area_m2 and within reach of a member
    adj = pairs[pairs["adjacent"]]
    bid = out.set_index("compound_id")["bundle_id"]
    degree = pd.concat([adj["compound_a"], adj["compound_b"]]).value_counts()
    geom = compounds.set_index("compound_id").geometry
    floor = compounds.set_index("compound_id")["floor_area_m2"]
    s = bundling.load_settings(rules)
    for merged, listed in zip(bundles["merged_ids"], members(bundles), strict=True):
        ms = [m for m in listed if m not in merged.split(";")]
        for m in filter(None, merged.split(";")):
            assert degree.get(m, 0) == 0 and floor[m] < s["min_floor_area_m2"]
            assert geom[ms].distance(geom[m]).min() <= s["merge_scattered_within_m"]
        if len(ms) == 1:
            continue
        pos = {m: i for i, m in enumerate(ms)}
        inner = adj[adj["compound_a"].isin(pos) & adj["compound_b"].isin(pos)]
        g = coo_matrix((np.ones(len(inner)), (inner["compound_a"].map(pos), inner["compound_b"].map(pos))),
                       shape=(len(ms), len(ms)))
        assert connected_components(g, directed=False)[0] == 1

    # no constraint violated: caps hold for multi-compound bundles; single over-cap compounds are flagged
    multi = bundles["n_compounds"] > 1
    assert (bundles.loc[multi, "households"] <= cap).all()
    assert (bundles["over_cap"] == (~multi & (bundles["households"] > cap))).all()
    # with same_unit, a bundle never spans two 街道
    if rules["same_unit"] == "subdistrict":
        assert not bundles["subdistrict"].str.contains(";").any()
    # maximal: no two adjacent bundles could be merged within the cap
    hh = bundles.set_index("bundle_id")["households"]
    across = adj[adj["compound_a"].map(bid) != adj["compound_b"].map(bid)]
    sums = hh.loc[across["compound_a"].map(bid)].to_numpy() + hh.loc[across["compound_b"].map(bid)].to_numpy()
    assert (sums > cap).all()
    # isolated flag = no adjacent eligible compound
    for _, b in bundles.iterrows():
        assert b["isolated"] == (b["n_compounds"] == 1 and degree.get(b["member_ids"], 0) == 0)

    # deterministic, and independent of row order
    again = bundling.bundle(compounds.iloc[::-1], roads, rules=rules)
    pd.testing.assert_frame_equal(bundles, again[1])
    pd.testing.assert_frame_equal(pairs, again[2])



@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grid_layouts(), st.data())
def test_secondary_admission_properties(layout, data):
    compounds, roads, rules = layout
    n = len(compounds)
    years = data.draw(st.lists(st.sampled_from([1985, 1998, 2002, 2004, 2012]), min_size=n, max_size=n))
    c = compounds.drop(columns="eligible").assign(build_year=pd.array(years, dtype="Int64"), consent_rate=0.9)
    screened = eligibility.screen(c, year=2024)
    out, bundles, pairs = bundling.bundle(screened, roads, rules=rules)
    primary = set(screened.loc[screened["eligible"], "compound_id"])
    candidates = set(screened.loc[screened["eligibility"] == "secondary_candidate", "compound_id"])
    adj = pairs[pairs["adjacent"]]
    touching_primary = set(adj.loc[adj["compound_b"].isin(primary), "compound_a"]) | set(
        adj.loc[adj["compound_a"].isin(primary), "compound_b"])
    admitted = set(out.loc[out["eligible"], "compound_id"]) - primary
    assert admitted == candidates & touching_primary
    assert out.loc[out["compound_id"].isin(admitted), "reasons"].str.endswith("B-ADJACENT-PRIMARY").all()
    rejected = candidates - admitted
    assert out.loc[out["compound_id"].isin(rejected), "reasons"].str.endswith("X-NOT-ADJACENT").all()
    listed = sorted(m for ms in members(bundles) for m in ms)
    assert listed == sorted(primary | admitted)
    assert bundles["n_secondary"].sum() == len(admitted)


def test_adjacency_defaults_come_from_bundling_toml():
    """``adjacency`` called alone uses the numbers of data/bundling.toml (no default repeated in its signature)."""
    c = row_of_compounds(4, pitch=135.0)  # gaps of 35 m: apart at 30 m, neighbours at 40 m
    s = bundling.load_settings()
    alone = bundling.adjacency(c)
    explicit = bundling.adjacency(c, gap_m=s["gap_m"], barrier_classes=s["barrier_classes"],
                                  touch_tol_m=s["touch_tol_m"])
    pd.testing.assert_frame_equal(alone, explicit)
    assert alone.empty
    assert len(bundling.adjacency(c, gap_m=40)) == 3


def test_stacked_compounds_stay_near_linear_and_bundle_under_the_cap():
    """2,000 identical red lines (a duplicated layer): n − 1 chained pairs, not n², and bundles of 50 × 100 hh."""
    import resource

    n = 2000
    compounds = gpd.GeoDataFrame(
        {"compound_id": [f"C{i:04d}" for i in range(n)], "households": 100, "floor_area_m2": 9000.0,
         "cost_cny": 1e6, "eligible": True, "subdistrict": "S"},
        geometry=[shapely.box(0, 0, 100, 100)] * n, crs="EPSG:32650")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out, bundles, pairs = bundling.bundle(compounds)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert len(pairs) == n - 1 and pairs["adjacent"].all()
    assert len(bundles) == 40 and (bundles["households"] == 5000).all()  # cap 5,000 hh = 50 compounds
    assert out["bundle_id"].notna().all()
    assert grown_mb < 500  # all pairs of a 2,000 clique took 8.6 GB before


def test_candidate_pairs_keep_the_nearest_neighbours_of_overlapping_compounds():
    rng = np.random.default_rng(1)
    n, k = 400, 8
    x, y = rng.uniform(0, 20, n), rng.uniform(0, 20, n)
    geoms = shapely.box(x, y, x + 100, y + 100)  # all overlap: a clique of 400
    ids = np.array([f"C{i:03d}" for i in range(n)])
    a, b, d = bundling.candidate_pairs(geoms, ids, 30.0, k)
    assert (ids[a] < ids[b]).all() and (d == 0).all()
    degree = np.bincount(np.r_[a, b], minlength=n)
    assert degree.min() >= k and len(a) <= n * k  # each keeps its k nearest; a pair stays if either side keeps it
    centre = np.c_[x, y]
    nearest = np.argsort(np.hypot(*(centre[:, None] - centre[None]).transpose(2, 0, 1)), axis=1)[:, 1:k + 1]
    kept = set(zip(a.tolist(), b.tolist(), strict=True))
    assert all((min(i, j), max(i, j)) in kept for i in range(n) for j in nearest[i])
    # a sparse layout is untouched by the limit: the same pairs as every pair within the gap
    far = shapely.box(np.arange(50) * 120.0, 0, np.arange(50) * 120.0 + 100, 100)
    fa, fb, fd = bundling.candidate_pairs(far, ids[:50], 30.0, 2)  # two neighbours each: the limit is not hit
    assert len(fa) == 49 and np.allclose(fd, 20.0)


# ------------------------------------------------------------------------- options of DOMAIN.md §10.2.4
def scattered_layout(**columns) -> gpd.GeoDataFrame:
    """C0–C1 (20 m apart), then C2 — 9,000 m² — 100 m east of C1, then C3–C4 150 m east of C2 (20 m apart)."""
    xs = [0, 120, 320, 570, 690]
    data = {"compound_id": [f"C{i}" for i in range(5)], "eligible": True, "households": 400,
            "floor_area_m2": [20_000.0, 20_000.0, 9_000.0, 20_000.0, 20_000.0], "cost_cny": 1e6,
            "subdistrict": "和平里街道"}
    data.update(columns)
    return gpd.GeoDataFrame(data, crs=CRS, geometry=[shapely.box(x, 0, x + 100, 100) for x in xs])


def test_isolated_scattered_compound_merges_into_the_nearest_bundle():
    c = scattered_layout()
    out, bundles, pairs = bundling.bundle(c)
    # C2 has no neighbour within 30 m; C1's bundle is 320 − 220 = 100 m away, C3's 570 − 420 = 150 m
    assert members(bundles) == [["C0", "C1", "C2"], ["C3", "C4"]]
    assert bundles["merged_ids"].tolist() == ["C2", ""]
    assert out.set_index("compound_id")["bundle_id"]["C2"] == "B001"
    assert bundles["households"].tolist() == [1200, 800] and bundles["floor_area_m2"].iloc[0] == 49_000.0
    assert not bundles["isolated"].any() and not bundles["scattered"].any()
    assert bundles["rationale_zh"].iloc[0] == ("2个相邻小区，同属和平里街道，间距≤30m；"
                                               "零散小区 C2（9,000 m²）就近并入（相距 100 m）")
    assert "scattered compound C2 (9,000 m²) merged into the nearest bundle (100 m away)" in \
        bundles["rationale_en"].iloc[0]
    assert not pairs["compound_a"].eq("C2").any() and not pairs["compound_b"].eq("C2").any()  # not adjacent
    # switched off: C2 stays a scattered bundle of its own, flagged for a manual check as before
    _, off, _ = bundling.bundle(c, rules={"merge_scattered": False})
    assert members(off) == [["C0", "C1"], ["C2"], ["C3", "C4"]]
    assert off["rationale_zh"].iloc[1] == ("独立小区：30m内无可捆绑的相邻合格小区，单独成片；"
                                           "建筑面积9,000m²<15,000m²，属零散片区，宜人工核实归并")


def test_scattered_merge_respects_reach_barriers_units_and_caps():
    c = scattered_layout()
    # out of reach: 100 m > 50 m
    _, b, _ = bundling.bundle(c, rules={"merge_scattered_within_m": 50})
    assert members(b) == [["C0", "C1"], ["C2"], ["C3", "C4"]]
    assert "属零散片区，50m内无可就近并入的片区，宜人工核实归并" in b["rationale_zh"].iloc[1]
    # an arterial between C1 and C2: C2 goes to the next nearest bundle, 150 m east
    _, b, _ = bundling.bundle(c, streets([270], ["arterial"]))
    assert members(b) == [["C0", "C1"], ["C2", "C3", "C4"]]
    assert "零散小区 C2（9,000 m²）就近并入（相距 150 m）" in b["rationale_zh"].iloc[1]
    # arterials on both sides: it stays alone and the rationale says why (the nearest bundle, 100 m)
    _, b, _ = bundling.bundle(c, streets([270, 495], ["arterial", "arterial"]))
    assert members(b) == [["C0", "C1"], ["C2"], ["C3", "C4"]]
    assert "与最近的小区C1所在片区（相距 100 m）之间有道路或河流阻隔" in b["rationale_zh"].iloc[1]
    # another 街道 than both bundles
    c2 = scattered_layout(subdistrict=["甲街道", "甲街道", "乙街道", "甲街道", "甲街道"])
    _, b, _ = bundling.bundle(c2)
    assert members(b) == [["C0", "C1"], ["C2"], ["C3", "C4"]]
    assert "与最近的小区C1所在片区（相距 100 m）分属不同街道" in b["rationale_zh"].iloc[1]
    # caps: 800 + 400 hh > 1,000 for either bundle
    _, b, _ = bundling.bundle(c, rules={"max_households": 1000})
    assert members(b) == [["C0", "C1"], ["C2"], ["C3", "C4"]]
    assert "并入最近的小区C1所在片区（相距 100 m）将超出规模上限" in b["rationale_zh"].iloc[1]
    # the cap refuses the nearest bundle only: C0–C1 1,000 + 400 > 1,200 hh; C3–C4 600 + 400 ≤ 1,200 hh
    c3 = scattered_layout(households=[500, 500, 400, 300, 300])
    _, b, _ = bundling.bundle(c3, rules={"max_households": 1200})
    assert members(b) == [["C0", "C1"], ["C2", "C3", "C4"]]
    assert "相距 150 m" in b["rationale_zh"].iloc[1]


def test_scattered_compound_joins_a_lone_compound_and_ids_follow_the_smallest_member():
    # a 9,000 m² compound "A" 60 m from a 30,000 m² compound "Z" standing alone
    c = gpd.GeoDataFrame({"compound_id": ["Z", "A"], "eligible": True, "households": 300,
                          "floor_area_m2": [30_000.0, 9_000.0], "subdistrict": "和平里街道"}, crs=CRS,
                         geometry=[shapely.box(0, 0, 100, 100), shapely.box(160, 0, 200, 40)])
    out, b, _ = bundling.bundle(c)
    assert b[["bundle_id", "member_ids", "merged_ids"]].values.tolist() == [["B001", "A;Z", "A"]]
    assert not b["isolated"].item()
    assert b["rationale_zh"].item() == "小区Z：30m内无相邻合格小区；零散小区 A（9,000 m²）就近并入（相距 60 m）"
    # a second scattered compound near A only is not chained through A (targets are the bundles of the others)
    c = pd.concat([c, gpd.GeoDataFrame({"compound_id": ["B"], "eligible": True, "households": 300,
                                        "floor_area_m2": [5_000.0], "subdistrict": "和平里街道"}, crs=CRS,
                                       geometry=[shapely.box(260, 0, 300, 40)])], ignore_index=True)
    _, b, _ = bundling.bundle(c, rules={"merge_scattered_within_m": 100})
    assert members(b) == [["A", "Z"], ["B"]]  # B is 60 m from A but 160 m from Z
    assert "100m内无可就近并入的片区" in b["rationale_zh"].iloc[1]


def test_max_diameter_keeps_each_bundle_within_one_circle():
    c = row_of_compounds(5)  # centroids 120 m apart: 0, 120, …, 480
    _, one, _ = bundling.bundle(c)
    assert members(one) == [["C0", "C1", "C2", "C3", "C4"]] and one["diameter_m"].item() == 480.0
    _, b, _ = bundling.bundle(c, rules={"max_diameter_m": 250})
    # Ward (all areas equal, w = 10,000 m²): the five pairs tie at w/2·120² → C0–C1 first (id order); then C2–C3
    # (w/2·120² = 7,200 w) beats C1C0+C2 (2w·w/3w·180² = 21,600 w); then C4 joins C2C3 (21,600 w, extent 240 m);
    # C0C1 + C2C3C4 would span 480 m > 250 m
    assert members(b) == [["C0", "C1"], ["C2", "C3", "C4"]]
    assert b["diameter_m"].tolist() == [120.0, 240.0]
    assert b["split"].all()
    assert b["rationale_zh"].iloc[1] == ("3个相邻小区，同属和平里街道，间距≤30m；"
                                         "按15分钟生活圈范围（成员小区中心直线距离≤250m）拆分连片区域")
    # split by a cap and by the diameter: both are said
    _, b, _ = bundling.bundle(c, rules={"max_diameter_m": 250, "max_households": 1000})
    assert members(b) == [["C0", "C1"], ["C2", "C3"], ["C4"]]  # 3 × 400 hh > 1,000
    assert "按规模上限（户数≤1,000）拆分连片区域" in b["rationale_zh"].iloc[1]
    # a scattered compound is not merged past the diameter: C5 (9,000 m²) 100 m east of C4
    c6 = pd.concat([c, gpd.GeoDataFrame({"compound_id": ["C5"], "eligible": True, "households": 100,
                                         "floor_area_m2": [9_000.0], "cost_cny": 1e6, "subdistrict": "和平里街道"},
                                        crs=CRS, geometry=[shapely.box(680, 0, 780, 100)])], ignore_index=True)
    _, b, _ = bundling.bundle(c6, rules={"max_diameter_m": 250})
    # C5's centroid (730) is 730 − 240 = 490 m from C2's: too wide for C2–C4
    assert members(b) == [["C0", "C1"], ["C2", "C3", "C4"], ["C5"]]
    assert "并入最近的小区C4所在片区（相距 100 m）将超出生活圈范围（250m）" in b["rationale_zh"].iloc[2]
    # one bundle C0–C4 (480 m ≤ 500 m); with C5 it would span 730 − 50 = 680 m
    _, b, _ = bundling.bundle(c6, rules={"max_diameter_m": 500})
    assert members(b) == [["C0", "C1", "C2", "C3", "C4"], ["C5"]]
    assert "将超出生活圈范围（500m）" in b["rationale_zh"].iloc[1]
    _, b, _ = bundling.bundle(c6, rules={"max_diameter_m": 700})
    assert members(b) == [["C0", "C1", "C2", "C3", "C4", "C5"]]
    assert (b["merged_ids"].item(), b["diameter_m"].item()) == ("C5", 680.0)


def test_same_implementing_entity_as_a_rule():
    c = row_of_compounds(4, implementing_entity=["城投公司", "城投公司", "安居公司", None])
    pairs = bundling.adjacency(c, same_entity=True)
    assert pairs["reason"].tolist() == ["adjacent", "different_entity", "adjacent"]  # an empty entity never blocks
    assert pairs["reason_zh"].iloc[1] == "分属不同实施主体"
    assert pairs["adjacent"].tolist() == [True, False, True]
    _, b, _ = bundling.bundle(c, rules={"same_entity": True})
    assert members(b) == [["C0", "C1"], ["C2", "C3"]]
    assert b["implementing_entity"].tolist() == ["城投公司", "安居公司"]
    assert b["rationale_zh"].iloc[0] == "2个相邻小区，同属和平里街道，间距≤30m；同一实施主体（城投公司），可一次报批、分批实施"
    _, b, _ = bundling.bundle(c)  # off by default
    assert members(b) == [["C0", "C1", "C2", "C3"]] and b["implementing_entity"].item() == "城投公司;安居公司"
    with pytest.raises(LayerError, match="'implementing_entity'"):
        bundling.bundle(row_of_compounds(2), rules={"same_entity": True})


def test_common_needs_break_near_ties_of_the_ward_cost():
    # C1 in the middle; the cap (800 hh) takes two of the three 400-hh compounds; C0 is `g` metres from C1,
    # C2 20 m. Centroid distances 100 + g and 120: Ward costs ∝ (100 + g)² and 120² = 14,400
    def run(g, weight, **needs):
        c = row_of_compounds(3, **needs)
        c.geometry = [shapely.box(0, 0, 100, 100), shapely.box(100 + g, 0, 200 + g, 100),
                      shapely.box(220 + g, 0, 320 + g, 100)]
        return members(bundling.bundle(c, rules={"max_households": 800, "needs_weight": weight})[1])

    needs = {"renovation_classes": ["提升", "基础;完善", "基础; 完善"]}  # Jaccard C0–C1 = 0, C1–C2 = 1
    assert run(20, 0.0, **needs) == [["C0", "C1"], ["C2"]]  # exact tie, no weight: id order
    assert run(20, 0.05, **needs) == [["C0"], ["C1", "C2"]]  # tie: common needs win
    assert run(19, 0.05, **needs) == [["C0"], ["C1", "C2"]]  # 119² · 1.05 = 14,869 > 14,400
    assert run(10, 0.05, **needs) == [["C0", "C1"], ["C2"]]  # 110² · 1.05 = 12,705 < 14,400: Ward wins
    assert run(20, 0.05) == [["C0", "C1"], ["C2"]]  # no needs column: as before
    # needs_signature, when given, is read first
    sig = {"needs_signature": ["A1;B2", "C3", "A1;B2"], "renovation_classes": ["基础", "基础", "提升"]}
    assert run(20, 0.05, **sig) == [["C0", "C1"], ["C2"]]  # both pairs dissimilar (0): tie → id order
    sig["needs_signature"] = ["A1", "A1;B2", "A1;B2"]  # C0–C1: 1/2, C1–C2: 1
    assert run(20, 0.05, **sig) == [["C0"], ["C1", "C2"]]
    c = row_of_compounds(3, renovation_classes=["基础;完善", "基础;完善;提升", "基础;完善"])
    _, b, _ = bundling.bundle(c)
    assert b["common_needs"].item() == "基础;完善"
    assert b["rationale_zh"].item() == "3个相邻小区，同属和平里街道，间距≤30m；共同改造需求：基础;完善"


def test_connections_walls_and_paths_between_member_compounds():
    c = gpd.GeoDataFrame({"compound_id": ["A", "B", "C", "D", "E"], "eligible": True, "households": 300,
                          "floor_area_m2": 20_000.0, "subdistrict": "和平里街道"}, crs=CRS, geometry=[
        shapely.box(0, 0, 100, 100),  # A
        shapely.box(100, 0, 200, 60),  # B: shares A's edge x = 100 for y 0–60 → a 60 m wall
        shapely.box(204, 0, 300, 100),  # C: 4 m from B → a path
        shapely.box(320, 0, 400, 100),  # D: 20 m from C: neighbours, too far for a path
        shapely.box(0, 100, 50, 150),  # E: on A's top edge x 0–50 → a 50 m wall
    ])
    out, b, pairs = bundling.bundle(c)
    assert members(b) == [["A", "B", "C", "D", "E"]]
    conn = bundling.connections(out, pairs=pairs)
    assert list(conn.columns) == bundling.CONNECTION_COLUMNS
    assert conn[["bundle_id", "compound_a", "compound_b", "kind", "kind_zh"]].values.tolist() == [
        ["B001", "A", "B", "open_wall", "打通围墙"],
        ["B001", "A", "E", "open_wall", "打通围墙"],
        ["B001", "B", "C", "connect_path", "连通步行通道"],
    ]
    assert conn["length_m"].iloc[:2].tolist() == [60.0, 50.0] and np.isnan(conn["length_m"].iloc[2])
    assert conn["gap_m"].tolist() == [0.0, 0.0, 4.0]
    assert conn.geometry.iloc[0].equals(shapely.LineString([(100, 0), (100, 60)]))
    assert conn.geometry.iloc[2].length == 4.0 and conn.crs == c.crs
    assert (b["n_walls_to_open"].item(), b["n_paths_to_connect"].item()) == (2, 1)
    assert "成员小区间可打通围墙2处（共110 m）、可连通步行通道1处" in b["rationale_zh"].item()
    # computed without the pairs: the same table; connect_gap_m = 3 drops the path
    pd.testing.assert_frame_equal(bundling.connections(out), conn)
    assert bundling.connections(out, {"connect_gap_m": 3})["kind"].tolist() == ["open_wall", "open_wall"]
    # an arterial along the shared edge A|B: no wall through it (and no bundle across it here)
    out2, b2, pairs2 = bundling.bundle(c, streets([100], ["arterial"]))
    conn2 = bundling.connections(out2, pairs=pairs2)
    assert not ((conn2["compound_a"] == "A") & (conn2["compound_b"] == "B")).any()
    with pytest.raises(LayerError, match="'bundle_id'"):
        bundling.connections(c)


def test_connection_geometry_near_touching_and_corner():
    a = np.array([shapely.box(0, 0, 100, 100)] * 2, dtype=object)
    b = np.array([shapely.box(100.5, 0, 200, 100), shapely.box(100, 100, 200, 200)], dtype=object)
    wall, length, geom = bundle_options.connection_geometries(a, b, np.array([0.5, 0.0]), 1.0)
    # 0.5 m apart: A's boundary within 1 m of B = the edge x = 100 (100 m) + 0.5 m of the top and bottom edges
    # (x ≥ 99.5 lies within 1 m of B's corners) = 101 m, less 2 · (1 − 0.5) for those stubs = 100 m
    assert wall.tolist() == [True, False] and length[0] == pytest.approx(100.0)
    assert geom[0].length == pytest.approx(101.0)  # the geometry keeps the stubs
    # touching in a corner only: a path of length 0 at the corner
    assert geom[1].length == 0.0 and shapely.get_coordinates(geom[1]).tolist()[0] == [100.0, 100.0]


def test_new_settings_are_checked_and_sourced():
    s = bundling.load_settings({"merge_scattered": False, "max_diameter_m": None, "same_entity": True,
                                "needs_weight": 0, "needs_columns": ("needs_signature",), "connect_gap_m": 3})
    assert (s["merge_scattered"], s["max_diameter_m"], s["same_entity"], s["needs_weight"], s["connect_gap_m"]) == (
        False, 0.0, True, 0.0, 3.0)
    for bad, match in [({"merge_scattered": "yes"}, "merge_scattered: expected bool"),
                       ({"same_entity": 1}, "same_entity: expected bool"),
                       ({"max_diameter_m": -1}, "max_diameter_m"), ({"needs_weight": 2}, "needs_weight"),
                       ({"needs_columns": [3]}, "needs_columns"), ({"connect_gap_m": float("nan")}, "connect_gap_m"),
                       ({"merge_scattered_within_m": True}, "merge_scattered_within_m")]:
        with pytest.raises(ConfigError, match=match):
            bundling.load_settings(bad)
    from gis_planner.datafiles import load_toml

    data = load_toml("bundling.toml")
    keys = set(data["settings"]) - {"source", "verified"}
    assert keys == set(data["provenance"])
    assert all(v["source"] and v["verified"] is False for v in data["provenance"].values())


def test_a_compound_left_alone_by_the_diameter_says_so():
    c = row_of_compounds(3)  # centroids 0, 120, 240 m
    _, b, _ = bundling.bundle(c, rules={"max_diameter_m": 200})
    # C0–C1 tie with C1–C2 (id order): C0C1; adding C2 would span 240 m > 200 m
    assert members(b) == [["C0", "C1"], ["C2"]]
    assert b["rationale_zh"].iloc[1].startswith("与相邻片区合并将超出生活圈范围（200m），单独成片")
    assert "规模上限" not in b["rationale_zh"].iloc[1]
