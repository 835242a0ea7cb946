"""Tests of the buildings layer (楼栋): checks, per-compound summary, refining compounds before screening."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from gis_planner import buildings, eligibility
from gis_planner._errors import LayerError

CRS = 32650


def layer(**columns) -> gpd.GeoDataFrame:
    """Buildings of compound 'c', each a 40 m × 12 m slab (480 m² footprint), 20 m apart."""
    n = len(next(iter(columns.values())))
    data = {"building_id": [f"b{i + 1}" for i in range(n)], "compound_id": ["c"] * n}
    data.update(columns)
    geoms = [shapely.box(i * 60, 0, i * 60 + 40, 12) for i in range(n)]
    return gpd.GeoDataFrame(data, geometry=geoms, crs=CRS)


def test_floor_area_from_footprint_and_grades():
    b = layer(floors=[6, None, 3], floor_area_m2=[None, None, 1000.0], danger_grade=["A", " c级 ", None])
    t = buildings.building_table(b)
    # 480 m² × 6 storeys = 2,880; b2 no floors → default 6 → 2,880; b3 given 1,000
    assert t["floor_area_m2"].tolist() == [2880.0, 2880.0, 1000.0]
    assert t["floor_area_from_footprint"].tolist() == [True, True, False]
    assert t["danger_grade"].tolist()[:2] == ["A", "C"] and pd.isna(t["danger_grade"].iloc[2])
    assert t["demolished"].tolist() == [False, True, False]
    # perimeter 2 × (40 + 12) = 104 m
    assert t["perimeter_m"].tolist() == [104.0, 104.0, 104.0]


def test_footprint_in_a_geographic_crs_is_measured_in_metres():
    # a 0.001° × 0.001° square near Wuhan (114.3E, 30.6N): ≈ 96 m × 111 m ≈ 10,700 m²
    b = gpd.GeoDataFrame({"building_id": ["b1"], "compound_id": ["c"], "floors": [1]},
                         geometry=[shapely.box(114.3, 30.6, 114.301, 30.601)], crs=4326)
    area = buildings.building_table(b)["floor_area_m2"].item()
    assert 10_000 < area < 11_500


def test_compound_summary_hand_values():
    b = layer(floors=[6, 6, 6, 3, 6, 7], units=[3, 2, 2, 1, 2, None],
              households=[36, 24, None, 6, 24, 28],
              has_elevator=[False, True, False, False, False, None],
              elevator_feasible=[True, None, False, None, None, None],
              danger_grade=["B", "A", None, "A", "C", "D级"],
              floor_area_m2=[3000.0, 2000.0, 2000.0, 500.0, 1800.0, 2100.0])
    b.loc[5, "compound_id"] = "d"
    s = buildings.compound_summary(b).set_index("compound_id")
    c = s.loc["c"]
    assert c["n_buildings"] == 5
    assert c["households"] == 36 + 24 + 6 + 24            # b3 gives none
    assert c["units"] == 3 + 2 + 2 + 1 + 2
    assert c["floor_area_m2"] == 3000 + 2000 + 2000 + 500 + 1800
    assert c["danger_floor_area_m2"] == 1800.0           # b5 is C
    assert c["danger_grade"] == "C"
    assert c["floors"] == 6.0                            # median of 6, 6, 6, 3, 6
    # eligible for an elevator: b1 only (b2 has one, b3 not feasible, b4 3 storeys < 4, b5 C) → 3 单元
    assert (c["elevator_buildings"], c["elevator_units"]) == (1, 3.0)
    d = s.loc["d"]
    # b6: D → no elevator even at 7 storeys; units not given → default 2
    assert (d["danger_grade"], d["danger_floor_area_m2"], d["elevator_units"], d["units"]) == ("D", 2100.0, 0.0, 2.0)
    assert list(s.reset_index().columns) == list(buildings.SUMMARY_COLUMNS)


def test_min_floors_is_a_setting():
    b = layer(floors=[3], units=[2])
    assert buildings.compound_summary(b)["elevator_units"].item() == 0.0
    assert buildings.compound_summary(b, min_floors=3)["elevator_units"].item() == 2.0


def compounds() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"compound_id": ["c", "e"], "build_year": [1990, 1990],
                             "floor_area_m2": [10_000.0, 8_000.0], "households": [100, 80],
                             "n_buildings": pd.array([None, 3], dtype="Int64"), "danger_grade": [None, "B"]},
                            geometry=[shapely.box(0, 0, 100, 100), shapely.box(200, 0, 300, 100)], crs=CRS)


def test_refine_fills_only_missing_fields_and_copies():
    c = compounds()
    before = c.copy()
    b = layer(floors=[5, 6], danger_grade=["B", "C"], floor_area_m2=[2400.0, 2880.0])
    out = buildings.refine_compounds(c, b)
    pd.testing.assert_frame_equal(c, before)              # input untouched
    row = out.set_index("compound_id").loc["c"]
    assert (row["danger_floor_area_m2"], row["danger_grade"], row["n_buildings"], row["floors"]) == (
        2880.0, "C", 2, 5.5)
    assert row["from_buildings"] == "danger_floor_area_m2;danger_grade;n_buildings;floors"
    other = out.set_index("compound_id").loc["e"]         # no buildings: unchanged
    assert other["n_buildings"] == 3 and other["danger_grade"] == "B" and other["from_buildings"] == ""
    assert out["n_buildings"].dtype == "Int64"


def test_refine_keeps_given_values():
    c = compounds()
    c["danger_floor_area_m2"] = [500.0, np.nan]
    c["danger_grade"] = ["D", "B"]
    b = layer(floors=[6], danger_grade=["C"], floor_area_m2=[2880.0])
    row = buildings.refine_compounds(c, b).set_index("compound_id").loc["c"]
    assert (row["danger_floor_area_m2"], row["danger_grade"]) == (500.0, "D")
    assert row["from_buildings"] == "n_buildings;floors"


def test_refined_compound_is_screened_with_the_surveyed_demolished_area():
    b = layer(floors=[6, 6], danger_grade=["A", "C"], floor_area_m2=[3000.0, 2000.0])
    out = eligibility.screen(buildings.refine_compounds(compounds(), b), year=2026)
    row = out.set_index("compound_id").loc["c"]
    # 拆改结合 with the C building's 2,000 m² (not the 10 % default share): cost on 10,000 − 2,000 = 8,000 m²
    assert row["renovation_mode"] == "partial_demolition"
    assert row["demolished_floor_area_m2"] == 2000.0
    assert row["cost_basic_cny"] == 8000 * 400.0


@pytest.mark.parametrize(("column", "value", "words"), [
    ("danger_grade", "E", "'danger_grade': 'E' is not a danger grade"),
    ("floors", -2, "'floors': -2 is below 1"),
    ("households", -1, "'households': -1 is negative"),
    ("units", "two", "'units': 'two' is not a finite number"),
    ("has_elevator", "maybe", "'has_elevator': 'maybe' is not a yes/no value"),
])
def test_bad_values_name_layer_building_and_field(column, value, words):
    b = layer(**{column: [None, value]})
    b[column] = b[column].astype(object)
    with pytest.raises(LayerError) as err:
        buildings.building_table(b)
    assert "buildings row 2 (building_id 'b2')" in str(err.value)
    assert words in str(err.value)


def test_missing_ids_and_area():
    with pytest.raises(LayerError, match="required field 'compound_id'"):
        buildings.building_table(pd.DataFrame({"building_id": ["b1"]}))
    with pytest.raises(LayerError, match="'building_id': duplicate id 'b1'"):
        buildings.building_table(pd.DataFrame({"building_id": ["b1", "b1"], "compound_id": ["c", "c"],
                                               "floor_area_m2": [1.0, 1.0]}))
    with pytest.raises(LayerError, match="building_id 'b1'.*'floor_area_m2': not given"):
        buildings.building_table(pd.DataFrame({"building_id": ["b1"], "compound_id": ["c"]}))
