"""Tests of the renovation-item menu, the item list (问题清单), class-split cost and the buildings layer's use."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from gis_planner import eligibility, needs
from gis_planner._errors import ConfigError, LayerError

CRS = 32650
NATIONAL = {
    ("basic", "main"): ["roof_waterproofing", "facade_repair", "stairwell_repair"],
    ("basic", "infra"): ["rain_sewage_separation", "water_supply", "power_supply", "gas_supply", "telecom_lines",
                         "roads", "fire_safety", "street_lighting", "security"],
    ("improve", ""): ["behind_meter", "windows_doors", "energy_retrofit", "elevator", "accessibility", "parking",
                      "ev_charging", "greening", "illegal_removal", "property_rooms"],
    ("upgrade", ""): ["elderly_care_room", "childcare_room", "smart_community", "parcel_station", "fitness_culture"],
}


def screened(**columns) -> gpd.GeoDataFrame:
    """Screened compounds C0, C1 … (defaults: built 1985, 10,000 m², 100 households)."""
    n = len(next(iter(columns.values())))
    data = {"compound_id": [f"C{i}" for i in range(n)], "name": [f"小区{i}" for i in range(n)],
            "build_year": [1985] * n, "households": [100] * n, "floor_area_m2": [10_000.0] * n}
    data.update(columns)
    data["build_year"] = pd.array(data["build_year"], dtype="Int64")
    geoms = [shapely.box(i * 120, 0, i * 120 + 100, 100) for i in range(n)]
    return eligibility.screen(gpd.GeoDataFrame(data, geometry=geoms, crs=CRS), year=2026)


def quantities(items: pd.DataFrame, cid: str) -> dict[str, float]:
    rows = items[items["compound_id"] == cid]
    return dict(zip(rows["item"], rows["quantity"], strict=True))


# ------------------------------------------------------------------------------------------------ menu
def test_national_menu_keys_classes_parts_and_payers():
    m = needs.load_menu()
    assert m["item"].tolist() == [k for keys in NATIONAL.values() for k in keys]
    for (cls, part), keys in NATIONAL.items():
        rows = m.set_index("item").loc[keys]
        assert set(rows["class"]) == {cls} and set(rows["part"]) == {part}
    payer = m.set_index("item")["payer"]
    assert set(payer[payer == "residents"].index) == {"behind_meter", "windows_doors", "elevator"}
    assert set(payer[payer == "utility"].index) == {"water_supply", "power_supply", "gas_supply", "telecom_lines"}
    assert set(m["class_zh"]) == {"基础类", "完善类", "提升类"}
    assert set(m["part_zh"]) == {"主体改造修缮", "配套基础设施", ""}
    assert (m["group_zh"] == "").all() and not m["verified"].any()
    assert m["source"].str.contains(r"DOMAIN\.md §3\.\d.*\[\d{3}:\d+").all()


def test_fenggang_menu_groups_and_reused_costs():
    m = needs.load_menu("fenggang")
    national = needs.load_menu().set_index("item")
    assert set(m["group_zh"]) == {"必改项", "提升项"} and set(m["scope_zh"]) == {"楼栋", "公共区域"}
    assert set(m["class"]) <= {"basic", "improve", "upgrade"}
    assert ((m["class"] == "basic") == m["part"].isin(["main", "infra"])).all()
    roof = m.set_index("item").loc["roof_waterproofing"]
    assert roof["item_zh"] == "屋面修缮"
    assert roof["unit_cost_cny"] == national.loc["roof_waterproofing", "unit_cost_cny"]
    # same_as overrides only what it gives: the building half of 私搭乱建 halves the national factor
    half = m.set_index("item").loc["building_illegal_removal"]
    assert half["factor"] * 2 == national.loc["illegal_removal", "factor"]
    assert m["source"].str.contains(r"\[003:\d+\]").all()


def test_settings_overrides_and_errors():
    s = needs.load_settings({"unit_costs": {"elevator": 700000}, "factors": {"elevator": 0.5},
                             "defaults": {"floors": 5}, "disabled_items": ["gas_supply"]})
    elevator = next(i for i in s.items if i.key == "elevator")
    assert (elevator.unit_cost_cny, elevator.factor, elevator.overridden) == (700000.0, 0.5, True)
    assert s.defaults["floors"] == 5.0 and "gas_supply" not in [i.key for i in s.items]
    with pytest.raises(ConfigError, match=r"needs: unknown key\(s\) \['profil'\]"):
        needs.load_settings({"profil": "fenggang"})
    with pytest.raises(ConfigError, match=r"needs.unit_costs: unknown item\(s\) \['lift'\]; known: roof_"):
        needs.load_settings({"unit_costs": {"lift": 1}})
    with pytest.raises(ConfigError, match="needs.profile: unknown profile 'beijing'"):
        needs.load_settings({"profile": "beijing"})
    with pytest.raises(ConfigError, match="needs.unit_costs.elevator: expected a finite number"):
        needs.load_settings({"unit_costs": {"elevator": -1}})
    with pytest.raises(ConfigError, match=r"needs.defaults: unknown default\(s\) \['storeys'\]"):
        needs.load_settings({"defaults": {"storeys": 5}})
    with pytest.raises(ConfigError, match="needs.defaults.floors: expected a finite number > 0"):
        needs.load_settings({"defaults": {"floors": 0}})
    with pytest.raises(ConfigError, match="contradicts"):
        needs.load_menu("national", {"profile": "fenggang"})
    assert needs.load_menu(overrides={"profile": "fenggang"})["profile"].eq("fenggang").all()


# ------------------------------------------------------------------------------------------ calibration
def test_typical_compound_lands_near_the_wuxi_presets():
    # Dezhou averages [004:8–10]: 13,870 m², 139 households, 5.2 buildings; 6 storeys, 2 单元 per building, 1980s
    c = screened(floor_area_m2=[13_870.0], households=[139], n_buildings=[5.2], floors=[6.0], n_units=[10.4])
    items = needs.item_list(c)
    q = quantities(items, "C0")
    # rule quantities are rounded half up to whole units ([defaults] quantity_decimals = 0)
    assert q["roof_waterproofing"] == 2312.0                                       # 13,870 / 6 = 2,311.7 m²
    assert q["stairwell_repair"] == 10.0                                           # 10.4 单元
    assert q["facade_repair"] == round(5.2 * 2 * (13_870 / 6 / 5.2 / 12 + 12) * 6 * 2.8)  # 8,569.3 m²
    assert q["parking"] == 42.0                                           # 139 × 0.5 − 139 × 0.2 = 41.7 spaces
    # the calibration is of expected quantities (1.56 elevators, not 2): unrounded
    costs = needs.class_costs(needs.item_list(c, settings={"defaults": {"quantity_decimals": 6}})).iloc[0]
    presets = {k: v["unit_cost_cny_m2"] for k, v in eligibility.load_costs()["classes"].items()}
    for cls, col in (("basic", "cost_basic_cny"), ("improve", "cost_improve_cny"), ("upgrade", "cost_upgrade_cny")):
        assert costs[col] / 13_870 == pytest.approx(presets[cls], rel=0.05)
    assert costs["cost_cny"] / 13_870 == pytest.approx(800, rel=0.02)


# ------------------------------------------------------------------------------------- quantities
COSTS = {"unit_costs": {"roof_waterproofing": 100, "water_supply": 4000, "elevator": 500000,
                        "elderly_care_room": 5000}}


def test_surveyed_deficits_give_exactly_those_items_and_costs():
    c = screened(build_year=[1985, 1985])
    d = pd.DataFrame({"compound_id": ["C0", "C0", "C0", "C0"], "item": ["屋面防水", "water_supply", "加装电梯",
                                                                       "elderly_care_room"],
                      "quantity": [1500, 80, 2, 0]})
    items = needs.item_list(c, deficits=d, settings=COSTS)
    mine = items[items["compound_id"] == "C0"]
    assert mine["item"].tolist() == ["roof_waterproofing", "water_supply", "elevator"]   # 0 = no deficit
    assert mine["quantity"].tolist() == [1500.0, 80.0, 2.0]
    assert not mine["estimated"].any() and set(mine["basis_zh"]) == {"调查"}
    # 1,500 m² × 100 = 150,000 (主体); 80 户 × 4,000 = 320,000 (配套); 2 部 × 500,000 = 1,000,000 (完善)
    assert mine["cost_cny"].tolist() == [150_000.0, 320_000.0, 1_000_000.0]
    cc = needs.class_costs(items).set_index("compound_id").loc["C0"]
    assert (cc["cost_basic_main_cny"], cc["cost_basic_infra_cny"], cc["cost_basic_cny"]) == (
        150_000.0, 320_000.0, 470_000.0)
    assert (cc["cost_improve_cny"], cc["cost_upgrade_cny"], cc["cost_cny"]) == (1_000_000.0, 0.0, 1_470_000.0)
    assert (cc["n_items"], cc["n_items_estimated"]) == (3, 0)
    assert items.loc[items["compound_id"] == "C1", "estimated"].all()   # not surveyed: the rules
    assert list(items.columns) == list(needs.ITEM_COLUMNS)


RULES = {"factors": {"elevator": 0.5, "windows_doors": 0.2},
         "defaults": {"storey_height_m": 3.0, "building_depth_m": 10.0}}


def test_default_rule_quantities():
    c = screened(floors=[5.0], n_buildings=[4], n_units=[10], parking_existing=[30])
    q = quantities(needs.item_list(c, settings=RULES), "C0")
    assert q["roof_waterproofing"] == 2000.0                 # 10,000 m² ÷ 5 storeys
    # 4 buildings of 2,000/4 = 500 m² footprint, 10 m deep → 50 m long; 2 × (50 + 10) × 5 × 3.0 m = 1,800 m² each
    assert q["facade_repair"] == pytest.approx(7200.0)
    assert q["stairwell_repair"] == 10.0
    assert q["water_supply"] == 100.0 and q["windows_doors"] == pytest.approx(20.0)     # 100 户 × 0.2
    assert q["elevator"] == 5.0                              # 5 storeys ≥ 4: 10 单元 × 0.5
    assert q["parking"] == 20.0                              # 100 × 0.5 − 30
    assert q["fire_safety"] == 4.0 and q["security"] == 1.0
    assert q["roads"] == 2500.0                              # 10,000 × 0.25
    assert q["energy_retrofit"] == pytest.approx(7200.0)     # built 1985 < 1996
    assert "elderly_care_room" in q                          # 1985: 基础;完善;提升


def test_defaults_fill_what_the_compound_does_not_give():
    # 10,000 m² → round(10,000 / 2,700) = 4 buildings × 2 单元; 6 storeys; households not given → 10,000 ÷ 100
    c = screened(households=[None])
    items = needs.item_list(c)
    q = quantities(items, "C0")
    assert q["stairwell_repair"] == 8.0 and q["roof_waterproofing"] == 1667.0     # 10,000 / 6 = 1,666.7 m²
    assert q["water_supply"] == 100.0
    text = items.set_index("item").loc["stairwell_repair", "basis_zh"]
    assert text == "按规则估算：单元数（单元数按每栋2个） × 1"


def test_rule_quantities_keep_the_decimals_asked_for():
    c = screened(floor_area_m2=[13_870.0], floors=[6.0])
    q = quantities(needs.item_list(c, settings={"defaults": {"quantity_decimals": 2}}), "C0")
    assert q["roof_waterproofing"] == 2311.67                                       # 13,870 / 6 = 2,311.666…


def test_partial_demolition_scales_rule_quantities_by_the_renovated_share():
    c = screened(floors=[5.0], n_buildings=[4], n_units=[10], parking_existing=[30], danger_grade=["C"],
                 danger_floor_area_m2=[2000.0])
    assert c["renovation_mode"].item() == "partial_demolition"
    items = needs.item_list(c, settings=RULES)
    q = quantities(items, "C0")
    # renovated share 1 − 2,000 / 10,000 = 0.8
    assert q["roof_waterproofing"] == pytest.approx(2000.0 * 0.8)
    assert q["facade_repair"] == pytest.approx(7200.0 * 0.8)
    assert q["stairwell_repair"] == pytest.approx(8.0) and q["water_supply"] == pytest.approx(80.0)
    assert q["elevator"] == pytest.approx(4.0) and q["parking"] == pytest.approx(16.0)
    assert q["security"] == 1.0 and q["property_rooms"] == 60.0     # per compound: not scaled
    assert "拆改结合保留比例 0.8" in items.set_index("item").loc["roof_waterproofing", "basis_zh"]


def test_buildings_layer_leaves_out_c_buildings_and_counts_eligible_elevators():
    c = screened(floor_area_m2=[12_000.0])
    b = pd.DataFrame({"building_id": ["b1", "b2", "b3", "b4", "b5"], "compound_id": ["C0"] * 5,
                      "floors": [6, 6, 3, 6, 6], "units": [3, 2, 1, 2, 2], "households": [36, 24, 6, 24, 24],
                      "danger_grade": ["A", "C级", "B", None, None], "has_elevator": [False, False, False, True, None],
                      "elevator_feasible": [True, None, None, None, False],
                      "floor_area_m2": [3000.0, 2000.0, 600.0, 2400.0, 2400.0]})
    items = needs.item_list(c, buildings=b, settings={"factors": {"elevator": 1.0}})
    q = quantities(items, "C0")
    # kept: b1, b3, b4, b5 (b2 is C): 3,000 + 600 + 2,400 + 2,400 = 8,400 m²; 36 + 6 + 24 + 24 = 90 户
    assert q["rain_sewage_separation"] == 8400.0 and q["water_supply"] == 90.0
    assert q["fire_safety"] == 4.0 and q["stairwell_repair"] == 3 + 1 + 2 + 2
    # roof = Σ floor area ÷ storeys = 500 + 200 + 400 + 400
    assert q["roof_waterproofing"] == 1500.0
    # elevators: b1 only (b2 C, b3 3 storeys, b4 has one, b5 not feasible) → its 3 单元 × 1.0
    assert q["elevator"] == 3.0
    assert "楼栋图层" in items.set_index("item").loc["water_supply", "basis_zh"]


def test_conditions_and_classes():
    # both 1990s (基础;完善): energy retrofit only before 1996; no 提升 items
    c = screened(build_year=[1995, 1997])
    items = needs.item_list(c)
    assert "energy_retrofit" in quantities(items, "C0") and "energy_retrofit" not in quantities(items, "C1")
    assert set(items["class"]) == {"basic", "improve"}
    # Fenggang 平改坡: 多层 (4–6 storeys) only
    f = needs.item_list(screened(floors=[6.0, 7.0]), settings={"profile": "fenggang"})
    assert "flat_to_pitched_roof" in quantities(f, "C0") and "flat_to_pitched_roof" not in quantities(f, "C1")


def test_only_costed_compounds_get_items():
    # 2003: secondary candidate, costed, basic class only; 2010: excluded (no cost)
    c = screened(build_year=[2003, 2010])
    assert np.isnan(c["cost_cny"].iloc[1])
    items = needs.item_list(c, deficits=pd.DataFrame({"compound_id": ["C1"], "item": ["elevator"],
                                                      "quantity": [2]}))
    assert set(items["compound_id"]) == {"C0"} and set(items["class"]) == {"basic"}


def test_fenggang_items_carry_groups_and_class_costs_add_up():
    c = screened(build_year=[1985, 1995])
    items = needs.item_list(c, settings={"profile": "fenggang"})
    assert set(items["group_zh"]) == {"必改项", "提升项"}
    cc = needs.class_costs(items)
    assert np.allclose(cc["cost_basic_main_cny"] + cc["cost_basic_infra_cny"], cc["cost_basic_cny"])
    assert np.allclose(cc["cost_basic_cny"] + cc["cost_improve_cny"] + cc["cost_upgrade_cny"], cc["cost_cny"])
    assert np.allclose(cc["cost_cny"], items.groupby("compound_id")["cost_cny"].sum().to_numpy())


def test_deficit_columns_are_a_survey():
    c = screened(build_year=[1985, 1985], deficit_elevator=[3.0, np.nan], deficit_roof_waterproofing=[np.nan, np.nan])
    items = needs.item_list(c)
    assert quantities(items, "C0") == {"elevator": 3.0}
    assert not items.loc[items["compound_id"] == "C0", "estimated"].any()
    assert items.loc[items["compound_id"] == "C1", "estimated"].all()
    bad = screened(deficit_lift=[1.0])
    with pytest.raises(LayerError, match="compounds: field 'deficit_lift'.*valid: deficit_roof_waterproofing"):
        needs.item_list(bad)


@pytest.mark.parametrize(("item", "quantity", "words"), [
    ("电梯", 1, "field 'item': '电梯' is not an item of the 'national' menu; valid: roof_waterproofing (屋面防水)"),
    ("elevator", -1, "field 'quantity': -1 is not a finite number ≥ 0"),
    ("elevator", "many", "field 'quantity': 'many' is not a finite number ≥ 0"),
    ("elevator", None, "field 'quantity': empty"),
    ("屋面防水", 5, "field 'item': 'roof_waterproofing' is listed twice"),
])
def test_bad_deficit_rows_name_row_and_field(item, quantity, words):
    c = screened(build_year=[1985])
    d = pd.DataFrame({"compound_id": ["C0", "C0"], "item": ["roof_waterproofing", item],
                      "quantity": pd.Series([10, quantity], dtype=object)})
    with pytest.raises(LayerError) as err:
        needs.item_list(c, deficits=d)
    assert "deficits row 2 (compound_id 'C0')" in str(err.value)
    assert words in str(err.value)


def test_bad_deficit_tables():
    c = screened(build_year=[1985])
    with pytest.raises(LayerError, match="deficits: required field 'quantity' is missing"):
        needs.item_list(c, deficits=pd.DataFrame({"compound_id": ["C0"], "item": ["elevator"]}))
    with pytest.raises(LayerError, match="deficits row 1, field 'compound_id': empty id"):
        needs.item_list(c, deficits=pd.DataFrame({"compound_id": [None], "item": ["elevator"], "quantity": [1]}))


# ------------------------------------------------------------------------------------------- costs
def test_class_costs_equal_item_sums_and_zero_for_compounds_without_items():
    c = screened(build_year=[1985, 1995, 2003])
    items = needs.item_list(c)
    cc = needs.class_costs(items, ["C2", "C0", "C1", "X"]).set_index("compound_id")
    assert list(cc.index) == ["C0", "C1", "C2", "X"]
    sums = items.groupby(["compound_id", "class"])["cost_cny"].sum().unstack(fill_value=0.0)
    for cls, col in (("basic", "cost_basic_cny"), ("improve", "cost_improve_cny"), ("upgrade", "cost_upgrade_cny")):
        assert np.allclose(cc.loc[["C0", "C1", "C2"], col], sums.reindex(["C0", "C1", "C2"])[cls].fillna(0.0))
    assert cc.loc["X"].eq(0).all()
    assert cc.loc["C2", "cost_improve_cny"] == 0.0 and cc.loc["C2", "cost_basic_cny"] > 0


def test_apply_costs_replaces_costs_keeps_nan_and_copies():
    c = screened(build_year=[1985, 2010, 1985])
    before = c.copy()
    d = pd.DataFrame({"compound_id": ["C0", "C0", "C0"], "item": ["屋面防水", "water_supply", "elevator"],
                      "quantity": [1500, 80, 2]})
    items = needs.item_list(c, deficits=d, settings=COSTS)
    out = needs.apply_costs(c, items)
    pd.testing.assert_frame_equal(c, before)
    row = out.set_index("compound_id")
    assert row.loc["C0", "cost_cny"] == 1_470_000.0 and row.loc["C0", "cost_basic_main_cny"] == 150_000.0
    assert row.loc["C0", "cost_index_cny"] == before.set_index("compound_id").loc["C0", "cost_cny"]
    assert row.loc["C0", "problem_list_zh"] == "屋面防水 1,500 m²；供水管网 80 户；加装电梯 2 部"
    assert row.loc["C1", ["cost_cny", "cost_basic_cny", "cost_basic_main_cny", "cost_index_cny"]].isna().all()
    assert row.loc["C1", "problem_list_zh"] == ""
    assert "※" in row.loc["C2", "problem_list_zh"]
    assert row.loc["C2", "cost_cny"] == pytest.approx(items.loc[items.compound_id == "C2", "cost_cny"].sum())
    assert isinstance(out, gpd.GeoDataFrame)


def test_problem_list_by_bundle():
    c = screened(build_year=[1985, 1985, 1985])
    c["bundle_id"] = ["P1", "P1", None]
    d = pd.DataFrame({"compound_id": ["C0", "C1", "C1", "C2"], "item": ["屋面防水", "屋面防水", "加装电梯", "加装电梯"],
                      "quantity": [1500, 500, 1, 4]})
    items = needs.item_list(c, deficits=d, settings=COSTS)
    p = needs.problem_list(items, "bundle_id", c)
    assert p["bundle_id"].tolist() == ["P1", "P1"] and p["item"].tolist() == ["roof_waterproofing", "elevator"]
    # roof 1,500 + 500 m² × 100 = 200,000 CNY over 2 compounds; elevator 1 部 × 500,000
    assert p["quantity"].tolist() == [2000.0, 1.0] and p["cost_cny"].tolist() == [200_000.0, 500_000.0]
    assert p["n_compounds"].tolist() == [2, 1]
    by_compound = needs.problem_list(items)
    assert by_compound["compound_id"].tolist() == ["C0", "C1", "C1", "C2"]
    for table in (p, by_compound, needs.class_costs(items), items):
        assert set(table.columns) <= set(needs.COLUMNS_ZH) | {"bundle_id"}
    with pytest.raises(LayerError, match="bundle_id"):
        needs.problem_list(items, "bundle_id")
