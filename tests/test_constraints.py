"""Constraint checks (gis_planner.constraints): heritage, green space, fire lanes, land tenure — on hand-drawn layers
whose overlaps are computed by hand, and on the planted features of the sample district."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import LineString, box

from gis_planner import constraints
from gis_planner._errors import ConfigError
from gis_planner.constraints import FINDING_COLUMNS, check, load_settings, summary

CRS = "EPSG:4547"
X0, Y0 = 500000.0, 3385000.0   # hand-drawn layers sit near the sample district, in metres
SAMPLE = Path(__file__).resolve().parents[1] / "layers" / "sample_district.gpkg"


def _b(x0, y0, x1, y1):
    """A box in local metres (offset to the CRS's coordinates)."""
    return box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def _line(*pts):
    return LineString([(X0 + x, Y0 + y) for x, y in pts])


def _gdf(rows: list[dict]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=CRS)


def _vacant(*rows) -> gpd.GeoDataFrame:
    """Parcels: (parcel_id, kind, owner_type, geometry[, extra fields])."""
    return _gdf([{"parcel_id": pid, "kind": kind, "owner_type": owner, "geometry": g, **(extra[0] if extra else {})}
                 for pid, kind, owner, g, *extra in rows])


def _proposed(*rows) -> gpd.GeoDataFrame:
    """Proposals: (parcel_id, facility_type[, served_bundle_id]); the geometry is the parcel's (from vacant)."""
    return _gdf([{"facility_id": f"N-{pid}-{ftype}", "parcel_id": pid, "facility_type": ftype,
                  "served_bundle_id": rest[0] if rest else None, "geometry": shapely.Point(X0, Y0)}
                 for pid, ftype, *rest in rows])


def _compounds(*rows) -> gpd.GeoDataFrame:
    return _gdf([{"compound_id": cid, "bundle_id": bid, "geometry": g} for cid, bid, g in rows])


NO_COMPOUNDS = _compounds(("C0", None, _b(-5000, -5000, -4900, -4900)))
NO_BUNDLES = pd.DataFrame({"bundle_id": pd.Series(dtype=object)})


def _only(findings: pd.DataFrame, rule: str) -> pd.DataFrame:
    return findings[findings["rule_id"] == rule].reset_index(drop=True)


# ------------------------------------------------------------------------------------------------ heritage
def test_a_bundle_overlapping_a_historic_district_is_flagged_with_the_overlap_area():
    compounds = _compounds(("C1", "B1", _b(0, 0, 100, 100)), ("C2", "B1", _b(110, 0, 210, 100)),
                           ("C3", None, _b(0, 200, 100, 300)))      # C3 is in no bundle
    heritage = _gdf([
        {"heritage_id": "H1", "name": "鼓楼街区", "kind": "historic_district", "geometry": _b(80, 50, 130, 150)},
        {"heritage_id": "H2", "name": "文庙", "kind": "protection_zone", "geometry": _b(50, 250, 60, 260)},
        # a digitising sliver: 1 m × 0.5 m = 0.5 m² over C1, under the 1 m² tolerance
        {"heritage_id": "H3", "name": "碎片", "kind": "historic_building", "geometry": _b(0, 99.5, 1, 101)},
    ])
    found = check(compounds=compounds, bundles=pd.DataFrame({"bundle_id": ["B1"]}), heritage=heritage)
    assert list(found.columns) == [*FINDING_COLUMNS, "geometry"] and found.crs == CRS
    assert len(found) == 1
    f = found.iloc[0]
    # H1 over C1: x 80–100 × y 50–100 = 20 × 50 = 1,000 m²; over C2: x 110–130 × y 50–100 = 1,000 m²
    assert (f.rule_id, f.object_kind, f.object_id, f.bundle_id, f.feature_id) == ("K-HERITAGE", "bundle", "B1",
                                                                                  "B1", "H1")
    assert f.measure == pytest.approx(2000.0) and f.geometry.area == pytest.approx(2000.0)
    assert f.unit == "m²" and f.threshold == 1.0
    assert f.rule_zh == "涉及历史文化保护" and f.action_zh.startswith("一事一议")
    assert "C1（1,000平方米）、C2（1,000平方米）" in f.detail_zh and "鼓楼街区（历史文化街区）" in f.detail_zh


def test_a_proposed_facility_on_a_heritage_site_is_flagged():
    vacant = _vacant(("V1", "vacant_land", "government", _b(300, 0, 400, 50)))
    heritage = _gdf([{"heritage_id": "H4", "name": "粮仓", "kind": "historic_building",
                      "geometry": _b(350, 0, 450, 100)}])
    found = check(compounds=NO_COMPOUNDS, bundles=NO_BUNDLES, proposed=_proposed(("V1", "kindergarten")),
                  vacant=vacant, heritage=heritage)
    f = _only(found, "K-HERITAGE")
    # the parcel x 300–400 × y 0–50 against x 350–450 × y 0–100: 50 × 50 = 2,500 m²
    assert f[["object_kind", "object_id", "feature_id"]].values.tolist() == [
        ["proposed_facility", "N-V1-kindergarten", "H4"]]
    assert f["measure"].item() == pytest.approx(2500.0)
    assert f["bundle_id"].isna().all()  # no bundle: a district-level (区级统筹) finding


# ------------------------------------------------------------------------------------------------ green space
def test_a_facility_half_on_a_park_loses_that_green_area():
    vacant = _vacant(("V2", "vacant_land", "government", _b(0, 0, 100, 60)))
    park = _gdf([{"green_id": "G1", "name": "人民公园", "kind": "park", "protected": True,
                  "geometry": _b(50, -20, 200, 100)}])
    proposed = _proposed(("V2", "elderly_daycare"), ("V2", "park"))
    found = check(compounds=NO_COMPOUNDS, bundles=NO_BUNDLES, proposed=proposed, vacant=vacant, green_space=park)
    loss = _only(found, "K-GREEN-LOSS")
    # parcel 100 × 60 = 6,000 m²; the park covers x 50–100 × y 0–60 = 50 × 60 = 3,000 m², half of it.
    # A park proposed there keeps the land green: no finding for N-V2-park.
    assert loss["object_id"].tolist() == ["N-V2-elderly_daycare"]
    assert loss["measure"].item() == pytest.approx(3000.0) and loss.geometry.area.item() == pytest.approx(3000.0)
    assert loss["feature_id"].item() == "G1" and "属保护绿地" in loss["detail_zh"].item()


def test_a_facility_on_green_land_loses_the_whole_parcel():
    vacant = _vacant(("V5", "green_land", "government", _b(0, 0, 40, 30)))
    found = check(compounds=NO_COMPOUNDS, bundles=NO_BUNDLES, proposed=_proposed(("V5", "nursery")), vacant=vacant)
    loss = _only(found, "K-GREEN-LOSS")
    assert loss[["object_id", "feature_id"]].values.tolist() == [["N-V5-nursery", "V5"]]
    assert loss["measure"].item() == pytest.approx(40 * 30)   # 1,200 m²: the parcel is green land


def test_parking_on_a_green_strip_is_flagged():
    vacant = _vacant(("V3", "scattered_plot", "government", _b(0, 0, 40, 10)),
                     ("V4", "green_land", "government", _b(100, 0, 130, 20)),
                     ("V6", "vacant_land", "government", _b(200, 0, 220, 20)))
    green = _gdf([
        {"green_id": "G2", "name": "解放大道绿化带", "kind": "green_strip", "geometry": _b(-10, 5, 100, 12)},
        {"green_id": "G3", "name": "街头游园", "kind": "pocket_park", "geometry": _b(210, 0, 260, 20)},
    ])
    uses = pd.DataFrame({"parcel_id": ["V4", "V6"], "bundle_id": ["B7", "B8"], "use": ["parking", "parking"]})
    found = check(compounds=NO_COMPOUNDS, bundles=pd.DataFrame({"bundle_id": ["B7", "B8", "B9"]}),
                  proposed=_proposed(("V3", "parking", "B9")), vacant=vacant, green_space=green, parcel_uses=uses)
    parking = _only(found, "K-GREEN-PARKING")
    # V3 (a proposed car park, served bundle B9) on the strip: x 0–40 × y 5–10 = 40 × 5 = 200 m²;
    # V4 (the balance's surface car park) on green land: the whole 30 × 20 = 600 m²
    assert parking[["object_kind", "object_id", "bundle_id", "feature_id"]].values.tolist() == [
        ["parking", "V4", "B7", "V4"], ["parking", "N-V3-parking", "B9", "G2"]]
    assert parking["measure"].tolist() == pytest.approx([600.0, 200.0])
    # parking on a pocket park (not a strip) is a green loss: x 210–220 × y 0–20 = 200 m²
    loss = _only(found, "K-GREEN-LOSS")
    assert loss[["object_kind", "object_id", "feature_id"]].values.tolist() == [["parking", "V6", "G3"]]
    assert loss["measure"].item() == pytest.approx(200.0)


# ------------------------------------------------------------------------------------------------ fire lanes
def _fire_case(**overrides):
    vacant = _vacant(("VA", "vacant_land", "government", _b(0, 0, 50, 50)),        # a 3.5 m road only
                     ("VB", "vacant_land", "government", _b(1000, 0, 1050, 50)),   # a 6 m road only
                     ("VC", "vacant_land", "government", _b(2000, 0, 2050, 50)),   # 3.5 m and 6 m
                     ("VD", "vacant_land", "government", _b(3000, 0, 3050, 50)),   # a road of unknown width
                     ("VE", "vacant_land", "government", _b(4000, 0, 4050, 50)),   # 3.5 m local + 6 m path
                     ("VF", "vacant_land", "government", _b(5000, 0, 5050, 50)))   # 3.5 m; 6 m beyond 40 m
    roads = _gdf([
        {"road_id": "R1", "road_class": "local", "name": "财神巷", "width_m": 3.5, "geometry": _line((0, -10), (50, -10))},
        {"road_id": "R2", "road_class": "local", "name": "学府路", "width_m": 6.0,
         "geometry": _line((1000, -10), (1050, -10))},
        {"road_id": "R3", "road_class": "local", "name": "南巷", "width_m": 3.5, "geometry": _line((2000, -10), (2050, -10))},
        {"road_id": "R4", "road_class": "secondary", "name": "北路", "width_m": 6.0,
         "geometry": _line((2000, 60), (2050, 60))},
        {"road_id": "R5", "road_class": "local", "name": "无名路", "width_m": np.nan,
         "geometry": _line((3000, -10), (3050, -10))},
        {"road_id": "R6", "road_class": "local", "name": "东巷", "width_m": 3.5, "geometry": _line((4000, -10), (4050, -10))},
        {"road_id": "R7", "road_class": "path", "name": "步道", "width_m": 6.0, "geometry": _line((4000, 60), (4050, 60))},
        {"road_id": "R8", "road_class": "local", "name": "西巷", "width_m": 3.5, "geometry": _line((5000, -10), (5050, -10))},
        {"road_id": "R9", "road_class": "local", "name": "远路", "width_m": 6.0, "geometry": _line((5000, 110), (5050, 110))},
    ])
    proposed = _proposed(*[(p, "kindergarten") for p in ("VA", "VB", "VC", "VD", "VE", "VF")], ("VA", "parking"))
    return check(compounds=NO_COMPOUNDS, bundles=NO_BUNDLES, proposed=proposed, vacant=vacant, roads=roads,
                 settings=load_settings(overrides))


def test_a_narrow_road_next_to_a_proposed_facility_is_flagged_a_wide_one_not():
    fire = _only(_fire_case(), "K-FIRE-LANE")
    # VA: only R1 (3.5 m, 10 m away) → flagged; VB: R2 6 m → not; VC: R4 (6 m, 10 m north) is the better way in;
    # VD: a road without a width cannot be judged; VE: the 6 m footpath carries no fire engine → flagged on R6;
    # VF: the 6 m road is 60 m away, beyond the 40 m search → flagged on R8. The car park needs no fire lane.
    assert fire[["object_id", "feature_id"]].values.tolist() == [
        ["N-VA-kindergarten", "R1"], ["N-VE-kindergarten", "R6"], ["N-VF-kindergarten", "R8"]]
    assert fire["measure"].tolist() == [3.5, 3.5, 3.5] and fire["threshold"].tolist() == [4.0, 4.0, 4.0]
    assert fire["unit"].eq("m").all()
    assert "财神巷路面宽3.5米" in fire["detail_zh"].iloc[0] and "小于消防车道净宽4米" in fire["detail_zh"].iloc[0]
    # the finding's geometry is the road's piece within 40 m of the parcel: all of R1's 50 m
    assert fire.geometry.iloc[0].length == pytest.approx(50.0)


def test_fire_lane_width_and_search_distance_are_settings():
    fire = _only(_fire_case(fire_lane_min_width_m=7.0), "K-FIRE-LANE")
    # at 7 m even the 6 m roads are too narrow: VB and VC too (VD stays unjudged)
    assert fire["object_id"].tolist() == ["N-VA-kindergarten", "N-VB-kindergarten", "N-VC-kindergarten",
                                          "N-VE-kindergarten", "N-VF-kindergarten"]
    wide = _only(_fire_case(fire_lane_search_m=70.0), "K-FIRE-LANE")
    assert wide["object_id"].tolist() == ["N-VA-kindergarten", "N-VE-kindergarten"]  # VF now reaches R9 (60 m)


# ------------------------------------------------------------------------------------------------ tenure
def test_collective_land_for_a_public_facility_needs_land_procedures():
    vacant = _vacant(
        ("VC1", "vacant_land", "collective", _b(0, 0, 30, 30), {"landuse_nature": "collective_construction"}),
        ("VG", "vacant_land", "government", _b(100, 0, 130, 30)),
        ("VU", "vacant_land", "unknown", _b(200, 0, 230, 30)),
        ("VS", "idle_building", "soe", _b(300, 0, 330, 30)),
        ("VS2", "idle_building", "soe", _b(400, 0, 430, 30)),
        ("VN", "vacant_land", "soe", _b(500, 0, 530, 30), {"landuse_nature": "collective_agricultural"}),
        ("VC2", "vacant_land", "collective", _b(600, 0, 630, 30), {"needs_tenure_change": False}),
    )
    proposed = _proposed(("VC1", "kindergarten", "B1"), ("VG", "kindergarten"), ("VU", "health_station"),
                         ("VS", "convenience_store"), ("VS2", "elderly_daycare"), ("VS2", "market"),
                         ("VN", "market"), ("VC2", "kindergarten"))
    tenure = _only(check(compounds=NO_COMPOUNDS, bundles=pd.DataFrame({"bundle_id": ["B1"]}), proposed=proposed,
                         vacant=vacant), "K-TENURE")
    # government land: none; soe land for an operating shop: a lease, none; a surveyed "no change": none
    assert tenure[["object_kind", "object_id", "bundle_id"]].values.tolist() == [
        ["parcel", "VC1", "B1"], ["parcel", "VN", None], ["parcel", "VS2", None], ["parcel", "VU", None]]
    by_id = tenure.set_index("object_id")
    assert by_id.loc["VC1", "detail_zh"].endswith("需办理用地手续") and "集体，集体建设用地" in by_id.loc["VC1", "detail_zh"]
    assert "幼儿园（公共服务用途）" in by_id.loc["VC1", "detail_zh"]
    assert "需办理用地手续" in by_id.loc["VC1", "action_zh"]
    assert "农用地转用" in by_id.loc["VN", "detail_zh"]           # the land nature raises an SOE lease
    assert "老年人日间照料中心、菜市场或生鲜超市（公共服务用途）" in by_id.loc["VS2", "detail_zh"]  # one public use decides
    assert by_id.loc["VU", "detail_zh"].endswith("权属不明，需核实是否涉及权属变化")
    assert by_id["measure"].isna().all() and by_id["unit"].eq("").all()


# ------------------------------------------------------------------------------------------------ settings
@pytest.mark.parametrize(("overrides", "fragment"), [
    ({"fire_lane_width": 5}, "constraints: unknown key 'fire_lane_width'"),
    ({"fire_lane_min_width_m": float("nan")}, "constraints.fire_lane_min_width_m: nan is outside 0.5–50 m"),
    ({"fire_lane_min_width_m": "4"}, "constraints.fire_lane_min_width_m: expected a number (m), got '4'"),
    ({"heritage_tolerance_m2": True}, "constraints.heritage_tolerance_m2: expected a number"),
    ({"green_strip_kinds": ["hedge"]}, "constraints.green_strip_kinds: unknown value(s) 'hedge'"),
    ({"green_strip_kinds": "green_strip"}, "constraints.green_strip_kinds: expected a list of names"),
    ({"disabled_rules": ["K-SUNLIGHT"]}, "constraints.disabled_rules: unknown value(s) 'K-SUNLIGHT'"),
    ({"tenure": {"church": {"public": "none"}}}, "constraints.tenure: unknown owner type 'church'"),
    ({"tenure": {"soe": {"public": "maybe"}}}, "constraints.tenure.soe.public: 'maybe' is not one of"),
    ({"tenure": {"soe": {"leisure": "none"}}}, "constraints.tenure.soe: unknown key 'leisure'"),
])
def test_settings_errors_name_the_key(overrides, fragment):
    with pytest.raises(ConfigError) as err:
        load_settings(overrides)
    assert fragment in str(err.value)


def test_disabled_rules_and_tenure_overrides():
    vacant = _vacant(("VS", "idle_building", "soe", _b(0, 0, 30, 30)))
    proposed = _proposed(("VS", "convenience_store"))
    assert _only(check(compounds=NO_COMPOUNDS, bundles=NO_BUNDLES, proposed=proposed, vacant=vacant),
                 "K-TENURE").empty
    stricter = load_settings({"tenure": {"soe": {"operating": "required"}}})
    assert len(check(compounds=NO_COMPOUNDS, bundles=NO_BUNDLES, proposed=proposed, vacant=vacant,
                     settings=stricter)) == 1
    off = load_settings({"tenure": {"soe": {"operating": "required"}}, "disabled_rules": ["K-TENURE"]})
    assert check(compounds=NO_COMPOUNDS, bundles=NO_BUNDLES, proposed=proposed, vacant=vacant, settings=off).empty


# ------------------------------------------------------------------------------------------------ order, summary
def test_membership_from_member_ids_sorting_and_summary():
    compounds = _gdf([{"compound_id": c, "geometry": g} for c, g in
                      (("C1", _b(0, 0, 100, 100)), ("C2", _b(200, 0, 300, 100)), ("C3", _b(400, 0, 500, 100)))])
    bundles = pd.DataFrame({"bundle_id": ["B2", "B1"], "member_ids": ["C2;C3", "C1"], "parcel_ids": ["V9", ""]})
    heritage = _gdf([{"heritage_id": "H1", "kind": "historic_district", "geometry": _b(50, 0, 450, 10)}])
    vacant = _vacant(("V9", "vacant_land", "collective", _b(200, 200, 230, 230)),
                     ("V8", "vacant_land", "collective", _b(300, 200, 330, 230)))
    proposed = _proposed(("V9", "kindergarten"), ("V8", "kindergarten"))
    kw = dict(compounds=compounds, bundles=bundles, proposed=proposed, vacant=vacant, heritage=heritage)
    found = check(**kw)
    # H1 is 10 m deep: over C1 x 50–100 (500 m²), over C2 x 200–300 (1,000 m²) and C3 x 400–450 (500 m²)
    assert found["rule_id"].tolist() == ["K-HERITAGE", "K-HERITAGE", "K-TENURE", "K-TENURE"]
    assert found["object_id"].tolist() == ["B1", "B2", "V9", "V8"]    # by rule, then bundle (none last)
    assert found["measure"].iloc[:2].tolist() == pytest.approx([500.0, 1500.0])
    assert found["bundle_id"].tolist()[:3] == ["B1", "B2", "B2"] and pd.isna(found["bundle_id"].iloc[3])
    # the same findings whatever the input order
    shuffled = check(**{**kw, "compounds": compounds.iloc[::-1], "bundles": bundles.iloc[::-1],
                        "proposed": proposed.iloc[::-1]})
    pd.testing.assert_frame_equal(pd.DataFrame(found.drop(columns="geometry")),
                                  pd.DataFrame(shuffled.drop(columns="geometry")))
    s = summary(found)
    assert s.columns.tolist() == ["bundle_id", "K-HERITAGE", "K-GREEN-LOSS", "K-GREEN-PARKING", "K-FIRE-LANE",
                                  "K-TENURE", "n_findings", "summary_zh"]
    assert s[["bundle_id", "K-HERITAGE", "K-TENURE", "n_findings", "summary_zh"]].values.tolist() == [
        ["B1", 1, 0, 1, "涉及历史文化保护1项"], ["B2", 1, 1, 2, "涉及历史文化保护1项；涉及土地权属变化1项"],
        [None, 0, 1, 1, "涉及土地权属变化1项"]]
    assert constraints.rule_labels()["K-FIRE-LANE"] == "消防车道宽度不足"
    empty = summary(found.iloc[:0])
    assert empty.empty and empty.columns.tolist() == s.columns.tolist()


def test_no_constraint_layers_no_findings():
    found = check(compounds=NO_COMPOUNDS, bundles=NO_BUNDLES)
    assert found.empty and list(found.columns) == [*FINDING_COLUMNS, "geometry"]


# ------------------------------------------------------------------------------------------------ the sample
@pytest.mark.skipif(not SAMPLE.exists(), reason="layers/sample_district.gpkg not generated")
def test_the_sample_district_flags_its_planted_constraints():
    """Proposals where the sample's siting puts them (V03 granary land, V30 reserve land) and the car park the
    funding balance makes of the strip V18 meet the planted heritage and green features."""
    import gis_planner as gp

    layers = gp.read_layers(SAMPLE)
    c = layers.compounds.assign(bundle_id=None)
    c.loc[c["compound_id"].isin(["C065", "C070", "C071"]), "bundle_id"] = "B014"
    proposed = _proposed(("V03", "primary_school"), ("V30", "middle_school"))
    uses = pd.DataFrame({"parcel_id": ["V18"], "bundle_id": ["B015"], "use": ["parking"]})
    found = check(compounds=c, bundles=pd.DataFrame({"bundle_id": ["B014", "B015"]}), proposed=proposed,
                  vacant=layers.vacant, roads=layers.roads, heritage=layers.heritage,
                  green_space=layers.green_space, parcel_uses=uses)
    rows = found.set_index(["rule_id", "object_id"])
    assert rows.loc[("K-HERITAGE", "B014"), "feature_id"] == "H01"           # 鼓楼历史文化街区
    assert rows.loc[("K-HERITAGE", "N-V03-primary_school"), "measure"] == pytest.approx(24 * 40)  # the granary
    x0, y0, _, y1 = layers.vacant.set_index("parcel_id").loc["V30", "geometry"].bounds
    # the belt G09 (local x 12–46 m, east of the district's origin E 500,000) spans V30's whole depth:
    # (belt's east edge − V30's west edge) × V30's height = (46 − 26) × 193 ≈ 3,860 m²
    expected = (500046.0 - x0) * (y1 - y0)
    assert expected == pytest.approx(3860, rel=0.02)
    assert rows.loc[("K-GREEN-LOSS", "N-V30-middle_school"), "measure"] == pytest.approx(expected)
    assert rows.loc[("K-GREEN-PARKING", "V18"), "measure"] == pytest.approx(8 * 120)  # the 8 m × 120 m strip
    assert rows.loc[("K-TENURE", "V30"), "action_zh"].startswith("一事一议：权属不明")
