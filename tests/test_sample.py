"""Tests of the synthetic sample district (gis_planner.sample) and the committed layers/sample_district.gpkg."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
from geopandas.testing import assert_geodataframe_equal

from gis_planner.datafiles import load_toml
from gis_planner.sample import LAYER_NAMES, make_sample_district, write_sample_district

GPKG = Path(__file__).resolve().parents[1] / "layers" / "sample_district.gpkg"
ORIGIN_X, ORIGIN_Y = 500000.0, 3384750.0   # south-west corner of the district in EPSG:4547
ID_COLUMNS = {"compounds": "compound_id", "vacant": "parcel_id", "facilities": "facility_id",
              "roads": "road_id", "projects": "project_id", "boundaries": "boundary_id", "buildings": "building_id",
              "heritage": "heritage_id", "green_space": "green_id"}


@pytest.fixture(scope="module")
def layers() -> dict[str, gpd.GeoDataFrame]:
    return make_sample_district()


@pytest.fixture(scope="module")
def schema() -> dict:
    return load_toml("schema.toml")


def _assert_layer_equal(a, b):
    if isinstance(b, gpd.GeoDataFrame):
        assert_geodataframe_equal(a, b)
    else:  # the 问题清单 table has no geometry
        pd.testing.assert_frame_equal(pd.DataFrame(a), b)


def test_layers_crs_and_extent(layers):
    assert tuple(layers) == LAYER_NAMES
    for name, gdf in layers.items():
        if name == "deficits":
            assert not isinstance(gdf, gpd.GeoDataFrame)
            continue
        assert gdf.crs.to_epsg() == 4547, name
    x0, y0, x1, y1 = layers["boundaries"].total_bounds
    assert (x0, y0, x1, y1) == (ORIGIN_X, ORIGIN_Y, ORIGIN_X + 3000, ORIGIN_Y + 2500)
    cx0, cy0, cx1, cy1 = layers["compounds"].total_bounds
    assert x0 < cx0 and y0 < cy0 and cx1 < x1 and cy1 < y1


def test_counts_in_stated_ranges(layers):
    assert 140 <= len(layers["compounds"]) <= 170
    assert 28 <= len(layers["vacant"]) <= 32
    assert 180 <= len(layers["facilities"]) <= 240
    assert len(layers["projects"]) == 8
    levels = layers["boundaries"]["level"].value_counts()
    assert levels["subdistrict"] == 2 and 6 <= levels["community"] <= 8


def test_columns_and_vocabularies_match_schema(layers, schema):
    standards = load_toml("standards.toml")
    for name, gdf in layers.items():
        fields = list(schema["layers"][name]["fields"])
        if name == "deficits":  # a table: no geometry, no id of its own
            assert list(gdf.columns) == fields
            continue
        assert list(gdf.columns) == [*fields, "geometry"], name
        assert gdf[ID_COLUMNS[name]].is_unique, name
        assert gdf[ID_COLUMNS[name]].map(type).eq(str).all(), name
    values = schema["values"]
    assert set(layers["vacant"]["kind"]) <= set(values["vacant_kinds"])
    assert set(layers["vacant"]["owner_type"]) <= set(values["owner_types"])
    assert set(layers["roads"]["road_class"]) == set(values["road_classes"])
    assert set(layers["projects"]["kind"]) <= set(values["project_kinds"])
    assert set(layers["boundaries"]["level"]) <= set(values["boundary_levels"])
    assert set(layers["heritage"]["kind"]) <= set(values["heritage_kinds"])
    assert set(layers["green_space"]["kind"]) <= set(values["green_kinds"])
    assert set(layers["compounds"]["pipeline_status"].dropna()) <= set(values["pipeline_statuses"])
    assert set(layers["vacant"]["landuse_nature"].dropna()) <= set(values["landuse_natures"])
    types = set(standards["facility_types"])
    assert set(layers["facilities"]["facility_type"]) == types  # every type present, no others
    uses = layers["vacant"]["allowed_uses"].dropna()
    assert len(uses) >= 5
    assert all(set(u.split(",")) <= types for u in uses)


def test_dtypes(layers):
    c = layers["compounds"]
    assert c["households"].dtype == np.int64 and c["build_year"].dtype == np.int64
    assert c["n_buildings"].dtype == np.int64 and c["parking_existing"].dtype == np.int64
    assert c["floor_area_m2"].dtype == np.float64 and c["consent_rate"].dtype == np.float64
    for col in ["is_self_built", "is_urban_village", "in_expropriation_plan", "planned_demolish_rebuild",
                "in_shantytown_plan", "structural_safety_ok"]:
        assert c[col].dtype == bool, col
    assert layers["roads"]["walkable"].dtype == bool
    assert layers["projects"]["net_revenue_cny"].dtype == np.float64


def test_compounds_do_not_overlap_each_other_or_roads(layers):
    geoms = np.asarray(layers["compounds"].geometry.values)
    assert shapely.is_valid(geoms).all()
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    assert (left == right).all()  # each compound touches only itself
    roads = shapely.buffer(np.asarray(layers["roads"].geometry.values), 3.0)
    assert not shapely.intersects(geoms[:, None], roads[None, :]).any()
    assert layers["compounds"].distance(layers["roads"].union_all()).min() >= 5.0


def test_households_floor_area_plausible(layers):
    c = layers["compounds"]
    m2_per_household = c["floor_area_m2"] / c["households"]
    plot_ratio = c["floor_area_m2"] / c.area
    assert m2_per_household.between(55, 130).all()
    assert plot_ratio.between(0.5, 3.5).all()
    assert (c["households"] > 0).all() and (c["n_buildings"] >= 1).all()


def test_build_years_and_sizes(layers):
    c = layers["compounds"]
    assert c["build_year"].min() >= 1978 and c["build_year"].max() <= 2015
    assert 0.65 <= (c["build_year"] < 2001).mean() <= 0.85
    assert (c["build_year"] < 2005).mean() > 0.5
    area = c.area
    single = c[c["n_buildings"] == 1]
    assert len(single) >= 5 and (single.area < 3000).all()
    assert (area < 15000).sum() >= 20            # scattered small compounds (零散小区)
    assert ((area >= 80000) & (area <= 120000)).sum() >= 2  # a few large estates
    assert (area.between(10000, 60000)).mean() > 0.5


def test_consent_flags_and_attributes(layers):
    c = layers["compounds"]
    consent = c["consent_rate"]
    assert consent.dropna().between(0.5, 0.98).all()
    assert 3 <= (consent < 2 / 3).sum() <= 25
    assert consent.isna().sum() >= 3
    for flag in ["is_self_built", "is_urban_village", "in_expropriation_plan", "planned_demolish_rebuild",
                 "in_shantytown_plan"]:
        assert 1 <= c[flag].sum() <= 5, flag
    renovated = c["last_renovation_year"].dropna()
    assert 3 <= len(renovated) <= 15 and renovated.between(2019, 2022).all()
    assert c["name"].is_unique
    assert {"商品房", "房改房", "单位自管", "军产"} <= set(c["property_rights"])
    assert (~c["structural_safety_ok"]).sum() >= 1


def test_subdistrict_and_community_match_boundaries(layers):
    c, b = layers["compounds"], layers["boundaries"]
    subs = b[b["level"] == "subdistrict"]
    assert set(subs["boundary_id"]) == {"S1", "S2"}
    assert shapely.equals(subs.union_all(), b.union_all())
    comm = b[b["level"] == "community"]
    assert set(comm["parent"]) == set(subs["name"])
    pts = gpd.GeoDataFrame(geometry=c.centroid, crs=c.crs)
    hit = gpd.sjoin(pts, comm[["name", "parent", "geometry"]], predicate="within")
    assert len(hit) == len(c)
    assert (hit["name"] == c.loc[hit.index, "community"]).all()
    assert (hit["parent"] == c.loc[hit.index, "subdistrict"]).all()
    per_sub = comm.groupby("parent").size()
    assert per_sub.between(3, 4).all()


def test_bundling_gaps(layers):
    c, roads = layers["compounds"], layers["roads"]
    geoms = np.asarray(c.geometry.values)
    d = shapely.distance(geoms[:, None], geoms[None, :])
    np.fill_diagonal(d, np.inf)
    nearest = d.min(axis=1)
    assert (nearest <= 25).mean() > 0.6       # most compounds have a neighbour within a bundling gap
    assert (nearest > 30).sum() >= 1          # and some are isolated
    i, j = np.nonzero(np.triu(d < 60))
    links = shapely.shortest_line(geoms[i], geoms[j])
    classes = roads["road_class"].to_numpy()
    crossed = shapely.intersects(links[:, None], np.asarray(roads.geometry.values)[None, :])
    by_local = crossed[:, classes == "local"].any(axis=1) & ~crossed[:, classes != "local"].any(axis=1)
    by_arterial = crossed[:, classes == "arterial"].any(axis=1)
    within_block = ~crossed.any(axis=1)
    assert d[i, j][within_block].min() >= 5.0 and (d[i, j][within_block] <= 25).sum() >= 50
    across_local = d[i, j][by_local]            # across a 支路: 16–28 m when facing, so they bundle
    assert across_local.min() >= 15 and (across_local <= 30).sum() >= 30
    assert by_arterial.sum() >= 10 and d[i, j][by_arterial].min() >= 40  # across 主干路: never < 40 m


def test_planted_coverage_gaps(layers):
    c, f = layers["compounds"], layers["facilities"]
    centroids = c.centroid
    daycare = f[f["facility_type"] == "elderly_daycare"]
    far = centroids.distance(daycare.union_all()) > 300
    assert far.sum() >= 20
    east = c["subdistrict"] == "东城街道"
    assert (far & east).mean() > 0.8 * east.mean()  # the east sub-district has almost no day-care
    assert daycare.within(layers["boundaries"].query("boundary_id == 'S2'").union_all()).sum() == 1
    # north-west quarter without a kindergarten
    kg = f[f["facility_type"] == "kindergarten"]
    quarter = shapely.box(ORIGIN_X, ORIGIN_Y + 1250, ORIGIN_X + 1500, ORIGIN_Y + 2500)
    assert not kg.within(quarter).any()
    inside = c[centroids.within(quarter)]
    assert len(inside) >= 20
    assert (inside.centroid.distance(kg.union_all()) > 300).all()
    markets = f[f["facility_type"] == "market"]
    assert (markets.geometry.y > ORIGIN_Y + 1700).sum() == 1
    capacity_types = ["kindergarten", "nursery", "primary_school", "middle_school", "elderly_daycare",
                      "elderly_home"]
    assert f.loc[f["facility_type"].isin(capacity_types), "capacity"].gt(0).all()
    assert f.geom_type.eq("Point").all()
    assert f.distance(layers["roads"].union_all()).min() >= 8.0


def test_vacant_parcels(layers):
    v = layers["vacant"]
    area = v.area
    assert area.min() >= 150 and area.max() <= 20000.5
    widths = [min(np.ptp(np.asarray(shapely.oriented_envelope(g).exterior.coords), axis=0)) for g in v.geometry]
    assert min(widths) < 10  # the ≈8 m × 120 m strip
    strip = v.iloc[int(np.argmin(widths))]
    assert 100 <= strip.geometry.length / 2 <= 130
    idle = v[v["kind"] == "idle_building"]
    assert len(idle) >= 3 and idle["floor_area_m2"].gt(0).all()
    assert v["land_value_cny"].notna().sum() >= 5
    assert v["owner_type"].nunique() >= 5
    assert not shapely.intersects(np.asarray(v.geometry.values)[:, None],
                                  np.asarray(layers["compounds"].geometry.values)[None, :]).any()


def test_projects_near_and_far(layers):
    p, c = layers["projects"], layers["compounds"]
    old = c[c["build_year"] < 2001].union_all()
    dist_old = p.distance(old)
    dist_any = p.distance(c.union_all())
    assert (dist_any < 30).sum() >= 4           # adjacent to compound groups (大片区统筹)
    assert (dist_old >= 1000).sum() >= 1        # far from every old compound (跨片区组合)
    net = p["net_revenue_cny"]
    assert (net < 0).sum() in (1, 2)
    assert net[net > 0].between(5e6, 80e6).all()
    assert p["capex_cny"].gt(0).all()
    assert p["project_id"].str.fullmatch(r"P\d").all()


def test_roads(layers):
    r = layers["roads"]
    assert r.geom_type.eq("LineString").all()
    assert r["road_id"].iloc[0] == "R001" and r["road_id"].str.fullmatch(r"R\d{3}").all()
    assert (~r["walkable"]).sum() == 1
    assert r.loc[~r["walkable"], "road_class"].item() == "arterial"
    assert r.loc[r["road_class"] == "arterial"].length.sum() > 15000


def test_deterministic(layers):
    again = make_sample_district()
    for name in LAYER_NAMES:
        _assert_layer_equal(layers[name], again[name])
    other = make_sample_district(seed=7)
    assert not layers["compounds"]["build_year"].equals(other["compounds"]["build_year"])


def test_committed_gpkg_is_current(layers):
    """layers/sample_district.gpkg must equal a fresh make_sample_district() (regenerate it if not)."""
    for name in LAYER_NAMES:
        stored = pyogrio.read_dataframe(GPKG, layer=name)
        if name == "compounds":
            stored["last_renovation_year"] = stored["last_renovation_year"].astype("Int64")
            stored["plan_year"] = stored["plan_year"].astype("Int64")
            for col in ("has_owners_committee", "has_maintenance_fund"):
                stored[col] = stored[col].astype("boolean")
        _assert_layer_equal(stored, layers[name])


def test_write_sample_district(tmp_path):
    path = write_sample_district(tmp_path / "d.gpkg", seed=3)
    assert path.exists()
    assert [name for name, _ in pyogrio.list_layers(path)] == list(LAYER_NAMES)


def test_default_seed_comes_from_the_data_file():
    seed = load_toml("sample_district.toml")["seed"]
    default = make_sample_district()
    seeded = make_sample_district(seed)
    for name in LAYER_NAMES:
        _assert_layer_equal(default[name], seeded[name])


def test_survey_fields_and_planted_consent_failures(layers):
    c = layers["compounds"].set_index("compound_id")
    surveyed = c["consent_rate"].notna()
    # the renovation rate is the older single rate; the two Dezhou rates exist exactly where it was surveyed
    assert c["consent_rate_renovation"].equals(c["consent_rate"])
    for col in ("consent_rate_illegal_removal", "consent_rate_property_mgmt"):
        assert c[col].notna().eq(surveyed).all()
    # clipped to ≥ 90 %: only the two planted compounds fail a 90 % test
    low_removal = c.index[c["consent_rate_illegal_removal"] < 0.9].tolist()
    low_mgmt = c.index[c["consent_rate_property_mgmt"] < 0.9].tolist()
    assert (low_removal, low_mgmt) == (["C030"], ["C075"])
    assert c.loc["C030", "consent_rate_illegal_removal"] == 0.86
    assert c["has_owners_committee"].isna().eq(~surveyed).all()
    assert c["floors"].between(5, 18).all() and (c["n_units"] >= c["n_buildings"] * 2).all()
    assert set(c["utility_assets_owner"]) == {"专营单位", "业主共有", "产权单位"}


def test_buildings_add_up_to_their_compounds(layers):
    b, c = layers["buildings"], layers["compounds"].set_index("compound_id")
    assert set(c.loc[b["compound_id"].unique(), "community"]) == {"西关社区"}
    per = b.groupby("compound_id").agg(n=("building_id", "size"), hh=("households", "sum"),
                                       area=("floor_area_m2", "sum"))
    assert (per["n"] == c.loc[per.index, "n_buildings"]).all()
    assert (per["hh"] == c.loc[per.index, "households"]).all()
    assert np.allclose(per["area"], c.loc[per.index, "floor_area_m2"], atol=0.05 * per["n"])  # rounded to 0.1 m²
    # the one C-grade compound with buildings has exactly one C-grade building
    graded = b[b["danger_grade"] == "C"]
    assert len(graded) == 1 and c.loc[graded["compound_id"].item(), "danger_grade"] == "C"
    red_lines = shapely.buffer(c.loc[b["compound_id"], "geometry"].to_numpy(), 0.01)
    assert shapely.within(b.geometry.to_numpy(), red_lines).all()


def test_deficit_survey_names_menu_items(layers):
    from gis_planner.needs import load_menu

    d = layers["deficits"]
    assert sorted(d["compound_id"].unique()) == ["C111", "C112", "C132"]
    assert set(d["item"]) <= set(load_menu()["item_zh"])
    assert (d["quantity"] > 0).all()


# ----------------------------------------------------------------------- issue 16: pipeline and constraint layers
def test_pipeline_fields(layers):
    c = layers["compounds"].set_index("compound_id")
    cfg = load_toml("sample_district.toml")["pipeline"]
    flags = ["is_self_built", "is_urban_village", "in_expropriation_plan", "planned_demolish_rebuild",
             "in_shantytown_plan"]
    in_pipeline = (c["build_year"] < 2001) & ~c[flags].any(axis=1)
    status = c["pipeline_status"]
    assert status.notna().eq(in_pipeline).all()
    counts = status.value_counts()
    assert set(counts.index) == {"reserve", "planning", "generated", "implementing"} and counts.min() >= 5
    # plan year by status: 实施 2026, 生成 2026–2027, 谋划 2027–2028, 储备 not scheduled
    for key, (first, last) in cfg["plan_years"].items():
        assert c.loc[status == key, "plan_year"].between(first, last).all(), key
    assert c.loc[status == "reserve", "plan_year"].isna().all() and c.loc[~in_pipeline, "plan_year"].isna().all()
    # 审核编号 exactly for 生成 and 实施, JA-<plan year>-NNN numbered by compound id within the year
    numbered = status.isin(["generated", "implementing"])
    assert c["review_no"].notna().eq(numbered).all() and c["review_no"].dropna().is_unique
    filed = c[numbered]
    assert (filed["review_no"].str.slice(3, 7).astype(int) == filed["plan_year"]).all()
    for _, g in filed.groupby("plan_year"):
        assert g["review_no"].str.slice(8).astype(int).tolist() == list(range(1, len(g) + 1))
    assert c.loc[in_pipeline, "implementing_entity"].eq(c.loc[in_pipeline, "community"].map(cfg["entities"])).all()
    assert c.loc[~in_pipeline, "implementing_entity"].isna().all()


def test_heritage_layer_and_historic_district_flag(layers):
    h, c = layers["heritage"].set_index("heritage_id"), layers["compounds"].set_index("compound_id")
    assert h["kind"].to_dict() == {"H01": "historic_district", "H02": "protection_zone", "H03": "historic_building"}
    overlap = c.geometry.intersection(h.loc["H01", "geometry"]).area
    assert c["in_historic_district"].eq(overlap > 1.0).all()
    inside = c[c["in_historic_district"]]
    assert inside.index.tolist() == ["C065", "C070", "C071", "C074"]
    # at least one walk-up compound without an exclusion flag (eligible) lies in the district
    assert (inside["build_year"] < 2001).sum() >= 2 and inside["pipeline_status"].notna().sum() >= 2
    # the district stops short of the urban-village project P3; the drum tower's range touches no compound
    p3 = layers["projects"].set_index("project_id").loc["P3", "geometry"]
    assert h.loc["H01", "geometry"].intersection(p3).area == 0
    assert not c.intersects(h.loc["H02", "geometry"]).any()
    # the granary (24 m × 40 m = 960 m²) stands on the granary land V03
    v03 = layers["vacant"].set_index("parcel_id").loc["V03", "geometry"]
    assert h.loc["H03", "geometry"].within(v03) and h.loc["H03", "geometry"].area == pytest.approx(960.0)


def test_green_space_layer(layers):
    g, f = layers["green_space"].set_index("green_id"), layers["facilities"]
    parks = f[f["facility_type"] == "park"].set_index("name")
    named = g[g["kind"].isin(["park", "pocket_park"])]
    assert sorted(named["name"]) == sorted(parks.index)
    for gid, row in named.iterrows():  # each park's polygon is the lot whose centroid is its facility point
        assert row.geometry.centroid.distance(parks.loc[row["name"], "geometry"]) < 1e-6, gid
    v = layers["vacant"].set_index("parcel_id")
    # the 8 m × 120 m strip V18 lies wholly in 解放大道北侧绿化带; the west belt G09 cuts into the reserve land V30
    assert v.loc["V18", "geometry"].within(g.loc["G08", "geometry"])
    assert g.loc["G09", "geometry"].intersection(v.loc["V30", "geometry"]).area > 3000
    strips = g[~g["kind"].isin(["park", "pocket_park"])]
    assert not shapely.intersects(np.asarray(strips.geometry.values)[:, None],
                                  np.asarray(layers["compounds"].geometry.values)[None, :]).any()
    assert g["protected"].dtype == bool and g.loc["G01", "protected"]


def test_road_widths_and_vacant_tenure_fields(layers):
    r = layers["roads"].set_index("name")
    widths = load_toml("sample_district.toml")["road_widths"]
    for name, row in r.iterrows():
        assert row["width_m"] == widths["by_name"].get(name, widths["by_class"][row["road_class"]]), name
    assert r.loc["财神巷", "width_m"] == 3.5 < 4.0   # an old lane below the fire-lane width
    v = layers["vacant"].set_index("parcel_id")
    assert v.loc["V26", "landuse_nature"] == "collective_unused" and v.loc["V04", "landuse_nature"] == \
        "collective_construction"
    assert v.loc[v["owner_type"].isin(["unknown", "owners_common"]), "landuse_nature"].isna().all()
    assert v.loc["V18", "current_use"] == "道路绿化带" and v["needs_tenure_change"].isna().all()
