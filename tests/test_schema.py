"""Layer schemas: aliases, typing, ranges, vocabularies; inputs are never mutated."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
import pytest
import shapely

from gis_planner.schema import normalise_columns, validate_layer


def _compounds(**cols):
    n = len(next(iter(cols.values())))
    return gpd.GeoDataFrame(cols, geometry=[shapely.box(i * 10, 0, i * 10 + 5, 5) for i in range(n)],
                            crs="EPSG:4547")


def test_chinese_aliases_and_truncated_shapefile_names():
    gdf = _compounds(小区编号=["C1"], 小区名称=["幸福小区"], 建成年代=["1990年"], 户数=["120"],
                     floor_area=[9000.0], consent_ra=["80%"], 街道=["城关街道"])
    renamed, mapping, conflicts = normalise_columns(gdf, "compounds")
    assert mapping == {"小区编号": "compound_id", "小区名称": "name", "建成年代": "build_year",
                       "户数": "households", "floor_area": "floor_area_m2", "consent_ra": "consent_rate",
                       "街道": "subdistrict"}
    assert conflicts == []
    out, problems = validate_layer(gdf, "compounds", source="t.gpkg", current_year=2026)
    assert problems == []
    row = out.iloc[0]
    assert (row.build_year, row.households, row.consent_rate) == (1990, 120, 0.8)
    assert str(out["build_year"].dtype) == "Int64"


def test_canonical_column_wins_over_alias():
    gdf = _compounds(compound_id=["C1"], 编号=["X"], name=["a"], build_year=[1990], households=[1],
                     floor_area_m2=[1.0])
    out, problems = validate_layer(gdf, "compounds", current_year=2026)
    assert out["compound_id"].tolist() == ["C1"]
    assert [p.code for p in problems] == ["alias_conflict"]


def test_year_formats():
    gdf = _compounds(compound_id=list("abcde"), name=list("abcde"),
                     build_year=["1998", "1998年", "1998-06", 2001.0, None], households=[1] * 5,
                     floor_area_m2=[1.0] * 5)
    out, problems = validate_layer(gdf, "compounds", current_year=2026)
    assert problems == []
    assert out["build_year"].tolist()[:4] == [1998, 1998, 1998, 2001]
    assert pd.isna(out["build_year"].iloc[4])


def test_boolean_and_vocabulary_values():
    gdf = _compounds(compound_id=["a", "b", "c"], name=["a", "b", "c"], build_year=[1990] * 3,
                     households=[1] * 3, floor_area_m2=[1.0] * 3, is_urban_village=["是", "否", "maybe"])
    out, problems = validate_layer(gdf, "compounds", current_year=2026)
    assert out["is_urban_village"].tolist()[:2] == [True, False]
    assert len(problems) == 1 and problems[0].message.endswith(
        "row 3 (id=c): is_urban_village 'maybe' is not yes/no (是/否, true/false, 1/0)")

    roads = gpd.GeoDataFrame({"道路等级": ["主干路", "支路", "path"]},
                             geometry=[shapely.LineString([(0, 0), (1, 1)])] * 3, crs="EPSG:4547")
    out, problems = validate_layer(roads, "roads")
    assert problems == [] and out["road_class"].tolist() == ["arterial", "local", "path"]


def test_numeric_ids_become_strings():
    gdf = _compounds(compound_id=[17.0, 18], name=["a", "b"], build_year=[1990, 1991], households=[1, 2],
                     floor_area_m2=[1.0, 2.0])
    out, _ = validate_layer(gdf, "compounds", current_year=2026)
    assert out["compound_id"].tolist() == ["17", "18"]


def test_input_is_not_mutated():
    gdf = _compounds(小区编号=["C1"], 小区名称=["x"], 建成年代=["abc"], 户数=[1], 建筑面积=[1.0])
    snapshot = gdf.copy()
    validate_layer(gdf, "compounds")
    pd.testing.assert_frame_equal(pd.DataFrame(gdf), pd.DataFrame(snapshot))


@pytest.mark.parametrize(("value", "fragment"), [(-0.2, "is negative"), (1.5, "is above 1 —"), ("x", "not a fraction")])
def test_consent_rate_range(value, fragment):
    gdf = _compounds(compound_id=["a"], name=["a"], build_year=[1990], households=[1], floor_area_m2=[1.0],
                     consent_rate=[value])
    _, problems = validate_layer(gdf, "compounds", current_year=2026)
    assert len(problems) == 1 and fragment in problems[0].message


def test_every_count_has_a_plausible_range():
    """A whole-number field is a count: finite, with a lower and an upper bound given as data."""
    from gis_planner.schema import LAYER_NAMES, layer_spec

    for layer in LAYER_NAMES:
        for name, spec in layer_spec(layer)["fields"].items():
            if spec["type"] == "int":
                assert "min" in spec and "max" in spec, f"{layer}.{name}"


@pytest.mark.parametrize(("field", "value", "fragment"), [
    ("households", float("inf"), "households inf is not a finite number (a whole number is required)"),
    ("households", "-inf", "households '-inf' is not a finite number"),
    ("households", "1e30", "households '1e30' is above 50000"),
    ("households", "nan", "households 'nan' is not a whole number"),
    ("floor_area_m2", float("inf"), "floor_area_m2 inf is not a finite number (a number is required)"),
    ("build_year", float("inf"), "build_year inf is not a finite number (a year is required)"),
    ("consent_rate", float("-inf"), "consent_rate -inf is not a finite number"),
])
def test_non_finite_and_absurd_numbers_are_errors_not_crashes(field, value, fragment):
    cols = {"compound_id": ["a"], "name": ["a"], "build_year": [1990], "households": [1], "floor_area_m2": [1.0]}
    cols[field] = [value]
    out, problems = validate_layer(_compounds(**cols), "compounds", current_year=2026)
    assert [p.field for p in problems] == [field]
    assert fragment in problems[0].message and "row 1 (id=a)" in problems[0].message
    assert pd.isna(out[field].iloc[0])  # never kept as inf nor cut to some number


def test_build_year_as_float_text():
    gdf = _compounds(compound_id=["a"], name=["a"], build_year=["1995.0"], households=[1], floor_area_m2=[1.0])
    out, problems = validate_layer(gdf, "compounds", current_year=2026)
    assert problems == [] and out["build_year"].tolist() == [1995]


def test_consent_survey_readiness_and_demolition_fields_have_chinese_aliases():
    gdf = _compounds(小区编号=["C1"], 小区名称=["幸福小区"], 建成年代=[1990], 户数=[120], 建筑面积=[9000.0],
                     改造意愿同意率=["92%"], 拆违拆临意愿同意率=["85%"], 物业管理意愿同意率=[0.95],
                     业委会=["是"], 维修资金=["否"], 危房等级=["C"], 危房面积=[1200.0])
    out, problems = validate_layer(gdf, "compounds", source="t.gpkg", current_year=2026)
    assert problems == []
    row = out.iloc[0]
    assert (row.consent_rate_renovation, row.consent_rate_illegal_removal, row.consent_rate_property_mgmt) == (
        0.92, 0.85, 0.95)
    assert (row.has_owners_committee, row.has_maintenance_fund) == (True, False)
    assert (row.danger_grade, row.danger_floor_area_m2) == ("C", 1200.0)


def test_illegal_removal_rate_as_whole_percent_is_an_error():
    gdf = _compounds(compound_id=["C1"], name=["a"], build_year=[1990], households=[1], floor_area_m2=[1.0],
                     consent_rate_illegal_removal=[85])
    _, problems = validate_layer(gdf, "compounds", current_year=2026)
    assert [p.severity for p in problems] == ["error"]
    assert problems[0].message.endswith("row 1 (id=C1): consent_rate_illegal_removal 85 is above 1 — looks like a "
                                       "percentage; give 0–1 or write it as '85%'")


# ----------------------------------------------------------------------- constraint layers and pipeline fields
def _polys(n: int) -> list:
    return [shapely.box(500000 + i * 100, 3385000, 500050 + i * 100, 3385050) for i in range(n)]


def test_heritage_and_green_space_layers_validate_with_chinese_names():
    heritage = gpd.GeoDataFrame({"编号": ["H1", "H2", "H3", "H4"], "名称": ["鼓楼街区", "鼓楼", "县文庙", "粮仓"],
                                 "保护类型": ["历史文化街区", "文物保护范围", "建设控制地带", "historic_building"],
                                 "保护级别": ["省级", "省级", None, "市级"]}, geometry=_polys(4), crs="EPSG:4547")
    out, problems = validate_layer(heritage, "heritage", current_year=2026)
    assert problems == []
    assert out["kind"].tolist() == ["historic_district", "protection_zone", "construction_control",
                                    "historic_building"]
    assert out["heritage_id"].tolist() == ["H1", "H2", "H3", "H4"] and out["protection_level"].iloc[0] == "省级"
    green = gpd.GeoDataFrame({"绿地编号": ["G1", "G2", "G3"], "绿地类型": ["公园", "道路绿化带", "小区绿地"],
                              "是否保护绿地": ["是", "否", None]}, geometry=_polys(3), crs="EPSG:4547")
    out, problems = validate_layer(green, "green_space", current_year=2026)
    assert problems == []
    assert out["kind"].tolist() == ["park", "green_strip", "compound_green"]
    assert out["protected"].tolist()[:2] == [True, False]


def test_a_bad_heritage_kind_is_an_error_naming_row_and_field():
    heritage = gpd.GeoDataFrame({"heritage_id": ["H1", "H2"], "kind": ["historic_district", "古树"]},
                                geometry=_polys(2), crs="EPSG:4547")
    _, problems = validate_layer(heritage, "heritage", source="h.gpkg", current_year=2026)
    assert [(p.severity, p.row, p.feature_id, p.field) for p in problems] == [("error", 2, "H2", "kind")]
    assert problems[0].message.startswith("h.gpkg layer 'heritage' row 2 (id=H2): kind '古树' is not a known value")
    assert "historic_district" in problems[0].message


def test_pipeline_fields_and_road_width():
    gdf = _compounds(compound_id=["a", "b", "c"], name=["a", "b", "c"], build_year=[1990] * 3, households=[1] * 3,
                     floor_area_m2=[1.0] * 3, 项目状态=["储备", "生成一批", "竣工"], 审核编号=[None, "JA-2026-001", None],
                     计划年度=[None, "2027年", 2042], 实施主体=["城关街道办事处"] * 3, 位于历史文化街区=["是", "否", "否"])
    out, problems = validate_layer(gdf, "compounds", current_year=2026)
    assert out["pipeline_status"].tolist() == ["reserve", "generated", "completed"]
    assert out["review_no"].iloc[1] == "JA-2026-001" and out["plan_year"].iloc[1] == 2027  # a future year is fine
    assert out["in_historic_district"].tolist() == [True, False, False]
    # 2042 is more than 15 years ahead of 2026 (schema.toml plan_year max_ahead = 15: 2041 is the last year allowed)
    assert [(p.row, p.field) for p in problems] == [(3, "plan_year")]
    assert problems[0].message.endswith("row 3 (id=c): plan_year 2042 is above 2041 — more than 15 years ahead "
                                        "(now 2026)")

    roads = gpd.GeoDataFrame({"道路等级": ["支路", "支路"], "路面宽度": ["3.5", "abc"]},
                             geometry=[shapely.LineString([(0, 0), (1, 0)])] * 2, crs="EPSG:4547")
    out, problems = validate_layer(roads, "roads", current_year=2026)
    assert out["width_m"].iloc[0] == 3.5
    assert [(p.row, p.field) for p in problems] == [(2, "width_m")]


def test_a_folder_of_chinese_named_files_maps_to_the_constraint_layers(tmp_path):
    from gis_planner.io import read_layers

    compounds = _compounds(compound_id=["C1"], name=["幸福小区"], build_year=[1990], households=[100],
                           floor_area_m2=[8000.0])
    compounds = compounds.set_geometry(gpd.GeoSeries([shapely.box(500000, 3385000, 500100, 3385100)],
                                                     crs="EPSG:4547"))
    compounds.to_file(tmp_path / "小区.geojson")
    gpd.GeoDataFrame({"编号": ["H1"], "类型": ["历史文化街区"]}, geometry=[shapely.box(500050, 3385000, 500150, 3385050)],
                     crs="EPSG:4547").to_file(tmp_path / "历史文化街区.shp", encoding="utf-8")
    gpd.GeoDataFrame({"编号": ["G1"], "类型": ["绿化带"]}, geometry=[shapely.box(500000, 3384990, 500200, 3384998)],
                     crs="EPSG:4547").to_file(tmp_path / "绿地.geojson")
    layers = read_layers(tmp_path)
    assert layers.heritage["heritage_id"].tolist() == ["H1"] and layers.heritage["kind"].item() == "historic_district"
    assert layers.green_space["kind"].item() == "green_strip"
    assert layers.sources["heritage"] == "历史文化街区.shp" and layers.sources["green_space"] == "绿地.geojson"
    assert {"heritage", "green_space"} <= set(layers.as_dict())
    assert not [p for p in layers.report.problems if p.layer in ("heritage", "green_space")]
