"""Tests of eligibility screening: cutoffs, exclusions, consent, content classes and cost, rules table."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from gis_planner import eligibility
from gis_planner._errors import ConfigError, LayerError

CRS = 32650


def layer(**columns) -> gpd.GeoDataFrame:
    """Compounds in a row of 100 m squares, 20 m apart; defaults for the required columns."""
    n = len(next(iter(columns.values())))
    data = {
        "compound_id": [f"C{i}" for i in range(n)],
        "name": [f"小区{i}" for i in range(n)],
        "build_year": pd.array([1990] * n, dtype="Int64"),
        "households": [100] * n,
        "floor_area_m2": [10_000.0] * n,
    }
    data.update(columns)
    if "build_year" in columns:
        data["build_year"] = pd.array(columns["build_year"], dtype="Int64")
    geoms = [shapely.box(i * 120, 0, i * 120 + 100, 100) for i in range(n)]
    return gpd.GeoDataFrame(data, geometry=geoms, crs=CRS)


def reasons(out: gpd.GeoDataFrame) -> list[str]:
    return out["reasons"].tolist()


def test_year_cutoffs_primary_secondary_late_unknown():
    g = layer(build_year=[1999, 2000, 2001, 2005, 2006, None], consent_rate=[0.9] * 6)
    out = eligibility.screen(g, year=2024)
    assert out["eligible"].tolist() == [True, True, False, False, False, True]
    assert out["eligibility"].tolist() == ["eligible", "eligible", "secondary_candidate", "secondary_candidate",
                                           "excluded", "verify"]
    assert reasons(out) == ["E-YEAR-PRIMARY", "E-YEAR-PRIMARY", "E-YEAR-SECONDARY", "E-YEAR-SECONDARY",
                            "X-YEAR-LATE", "E-YEAR-UNKNOWN"]
    assert out["eligibility_zh"].tolist() == ["确认纳入", "确认纳入", "联动候选", "联动候选", "不纳入", "待核实"]


def test_unknown_year_policies():
    g = layer(build_year=[None], consent_rate=[0.9])
    sec = eligibility.screen(g, {"unknown_build_year": "secondary"}, year=2024)
    assert (sec["eligible"].item(), sec["eligibility"].item()) == (False, "secondary_candidate")
    assert sec["reasons"].item() == "E-YEAR-UNKNOWN"
    inel = eligibility.screen(g, {"unknown_build_year": "exclude"}, year=2024)
    assert (inel["eligible"].item(), inel["reasons"].item()) == (False, "X-YEAR-UNKNOWN")


# known years 1990 (100 hh), 1985 (200 hh) and 2015 (excluded), unknown years 300 and 50 hh
SPLIT = dict(build_year=[1990, None, 1985, None, 2015], households=[100, 300, 200, 50, 80],
             floor_area_m2=[10_000.0, 20_000.0, 5_000.0, 4_000.0, 8_000.0], consent_rate=[0.9] * 5)


def test_unknown_build_year_default_is_verify_bundled_and_costed_apart():
    out = eligibility.screen(layer(**SPLIT), year=2024)
    assert eligibility.load_rules()["settings"]["unknown_build_year"] == "verify"
    assert out["eligible"].tolist() == [True, True, True, True, False]  # provisional compounds are bundled
    assert out["eligibility"].tolist() == ["eligible", "verify", "eligible", "verify", "excluded"]
    split = eligibility.status_split(out)
    # basic 300 + improve 500 CNY/m² for the 1990s and unknown years, + upgrade 200 for the 1980s (costs.toml)
    unit = {r: eligibility.load_costs()["classes"][r]["unit_cost_cny_m2"] for r in ("basic", "improve", "upgrade")}
    both = unit["basic"] + unit["improve"]
    assert split.loc["eligible", ["n_compounds", "households"]].tolist() == [2, 300]
    assert split.loc["verify", ["n_compounds", "households"]].tolist() == [2, 350]
    assert split.loc["verify", "cost_cny"] == pytest.approx(24_000 * both)
    assert split.loc["eligible", "cost_cny"] == pytest.approx(10_000 * both + 5_000 * (both + unit["upgrade"]))
    assert split.loc["total", "cost_cny"] == pytest.approx(split.loc[["eligible", "verify"], "cost_cny"].sum())
    assert split.loc["verify", "label_zh"] == "待核实"


@pytest.mark.parametrize(("setting", "status", "eligible"), [
    ("eligible", ["eligible", "eligible", "eligible", "eligible", "excluded"], [True, True, True, True, False]),
    ("exclude", ["eligible", "excluded", "eligible", "excluded", "excluded"], [True, False, True, False, False]),
])
def test_unknown_build_year_eligible_and_exclude(setting, status, eligible):
    out = eligibility.screen(layer(**SPLIT), {"unknown_build_year": setting}, year=2024)
    assert out["eligibility"].tolist() == status and out["eligible"].tolist() == eligible
    split = eligibility.status_split(out)
    assert split.loc["verify", ["n_compounds", "households", "cost_cny"]].tolist() == [0, 0, 0.0]
    assert split.loc["eligible", "n_compounds"] == sum(eligible)
    assert split.loc["eligible", "households"] == (650 if setting == "eligible" else 300)
    if setting == "exclude":
        assert out["reasons"].tolist()[1] == "X-YEAR-UNKNOWN" and np.isnan(out["cost_cny"].iloc[1])


def test_old_setting_name_still_read_with_a_warning():
    with pytest.warns(UserWarning, match="unknown_year_policy is the old name of unknown_build_year: 'eligible' "
                                         "read as unknown_build_year = 'verify'"):
        out = eligibility.screen(layer(**SPLIT), {"unknown_year_policy": "eligible"}, year=2024)
    assert out["eligibility"].tolist()[1] == "verify"
    with pytest.warns(UserWarning, match="'ineligible' read as unknown_build_year = 'exclude'"):
        assert eligibility.load_settings({"unknown_year_policy": "ineligible"})["settings"][
            "unknown_build_year"] == "exclude"
    with pytest.raises(ConfigError, match="contradicts unknown_build_year = 'eligible'"):
        eligibility.load_settings({"unknown_year_policy": "ineligible", "unknown_build_year": "eligible"})


def test_secondary_admitted_only_next_to_a_compound_to_verify_is_to_verify():
    # C0 unknown year (verify), C1 built 2003 next to it only; C2 built 1990 next to C3 built 2004
    g = layer(build_year=[None, 2003, 1990, 2004], consent_rate=[0.9] * 4)
    screened = eligibility.screen(g, year=2024)
    pairs = pd.DataFrame({"compound_a": ["C0", "C2"], "compound_b": ["C1", "C3"], "adjacent": [True, True]})
    out = eligibility.admit_secondary(screened, pairs)
    assert out["eligibility"].tolist() == ["verify", "verify", "eligible", "eligible"]
    assert out["eligibility_zh"].tolist() == ["待核实", "待核实", "确认纳入", "确认纳入"]
    assert "N-ADJACENT-VERIFY" in out["reasons"].iloc[1] and "N-ADJACENT-VERIFY" not in out["reasons"].iloc[3]


def test_hard_exclusions_carry_their_rule_ids():
    g = layer(
        build_year=[1990] * 7,
        is_self_built=[True, False, False, False, False, False, None],
        is_urban_village=[False, True, False, False, False, False, False],
        in_expropriation_plan=[False, False, True, False, False, False, False],
        planned_demolish_rebuild=[False, False, False, True, False, False, False],
        in_shantytown_plan=[False, False, False, False, True, False, False],
        last_renovation_year=pd.array([None, None, None, None, None, 2021, 2019], dtype="Int64"),
        consent_rate=[0.9] * 7,
    )
    out = eligibility.screen(g, year=2024)
    assert out["eligible"].tolist() == [False] * 6 + [True]
    assert reasons(out) == [
        "E-YEAR-PRIMARY;X-SELF-BUILT",
        "E-YEAR-PRIMARY;X-URBAN-VILLAGE",
        "E-YEAR-PRIMARY;X-EXPROPRIATION",
        "E-YEAR-PRIMARY;X-DEMOLISH-REBUILD",
        "E-YEAR-PRIMARY;X-SHANTYTOWN",
        "E-YEAR-PRIMARY;X-RECENT-RENOVATION",  # 2021 > 2024 - 5
        "E-YEAR-PRIMARY",  # 2019 is not within the last 5 years; a null flag means "not given"
    ]
    assert set(out["eligibility"].iloc[:6]) == {"excluded"}
    # ineligible compounds get no cost estimate
    assert out["cost_cny"].iloc[:6].isna().all() and out["renovation_classes"].iloc[0] == ""


def test_several_exclusions_all_listed_and_late_year():
    g = layer(build_year=[2010], is_urban_village=[True], in_shantytown_plan=[True])
    out = eligibility.screen(g, year=2024)
    assert reasons(out) == ["X-YEAR-LATE;X-URBAN-VILLAGE;X-SHANTYTOWN"]


def test_consent_two_thirds_rule():
    g = layer(build_year=[1990] * 4, consent_rate=[0.66, 2 / 3, 0.95, None])
    out = eligibility.screen(g, year=2024)
    assert out["eligible"].tolist() == [False, True, True, True]
    assert out["eligibility"].tolist() == ["deferred", "eligible", "eligible", "eligible"]
    assert reasons(out) == ["E-YEAR-PRIMARY;C-CONSENT", "E-YEAR-PRIMARY", "E-YEAR-PRIMARY",
                            "E-YEAR-PRIMARY;N-CONSENT-NOT-SURVEYED"]
    # the Dezhou 90 % survey rule as an override
    strict = eligibility.screen(g, {"min_consent": 0.9}, year=2024)
    assert strict["eligible"].tolist() == [False, False, True, True]


def test_absent_consent_column_means_not_surveyed():
    out = eligibility.screen(layer(build_year=[1990]), year=2024)
    assert out["reasons"].item() == "E-YEAR-PRIMARY;N-CONSENT-NOT-SURVEYED"
    assert out["eligible"].item()


def test_recent_renovation_window_is_configurable():
    g = layer(build_year=[1990, 1990], last_renovation_year=pd.array([2016, 2021], dtype="Int64"),
              consent_rate=[0.8, 0.8])
    out = eligibility.screen(g, {"recent_renovation_years": 10}, year=2024)
    assert out["eligible"].tolist() == [False, False]
    out = eligibility.screen(g, {"disabled_rules": ["X-RECENT-RENOVATION"]}, year=2024)
    assert out["eligible"].tolist() == [True, True]


def test_structural_safety_sets_mode_and_note():
    g = layer(build_year=[1990, 1990, 1990], structural_safety_ok=[False, True, None], consent_rate=[0.8] * 3)
    out = eligibility.screen(g, year=2024)
    assert out["renovation_mode"].tolist() == ["partial_demolition", "comprehensive", "comprehensive"]
    assert out["renovation_mode_zh"].tolist() == ["拆改结合", "综合改造", "综合改造"]
    assert reasons(out) == ["E-YEAR-PRIMARY;N-PARTIAL-DEMOLITION;N-DEMOLISH-AREA-ESTIMATED", "E-YEAR-PRIMARY",
                            "E-YEAR-PRIMARY"]
    assert out["eligible"].all()


def test_c_grade_excludes_demolished_area_from_cost():
    # 1990 → 基础 400 + 完善 200 = 600 CNY/m². Floor 10,000 m² each.
    # C0: grade C, no area given → default share 10 % → 1,000 m² out, cost 9,000 × 600 = 5,400,000.
    # C1: grade D with 2,500 m² from the appraisal → cost 7,500 × 600 = 4,500,000.
    # C2: grade B, safe → comprehensive, full 6,000,000.  C3: "c级" text is read as grade C.
    g = layer(build_year=[1990] * 4, danger_grade=["C", "D", "B", " c级 "],
              structural_safety_ok=[True, False, True, None],
              danger_floor_area_m2=[None, 2_500.0, None, None], consent_rate=[0.8] * 4)
    out = eligibility.screen(g, year=2024)
    assert out["renovation_mode"].tolist() == ["partial_demolition", "partial_demolition", "comprehensive",
                                               "partial_demolition"]
    assert out["renovation_mode_zh"].tolist() == ["拆改结合", "拆改结合", "综合改造", "拆改结合"]
    assert out["demolished_floor_area_m2"].tolist() == pytest.approx([1_000.0, 2_500.0, 0.0, 1_000.0])
    assert out["cost_cny"].tolist() == pytest.approx([5_400_000.0, 4_500_000.0, 6_000_000.0, 5_400_000.0])
    assert out["cost_basic_cny"].tolist()[0] == pytest.approx(3_600_000.0)
    assert out["cost_demolished_excluded_cny"].tolist() == pytest.approx([600_000.0, 1_500_000.0, 0.0, 600_000.0])
    assert reasons(out)[0] == "E-YEAR-PRIMARY;N-PARTIAL-DEMOLITION;N-DEMOLISH-AREA-ESTIMATED"
    assert reasons(out)[1] == "E-YEAR-PRIMARY;N-PARTIAL-DEMOLITION"  # area given: not estimated


def test_danger_grade_and_area_errors_name_row_and_field():
    with pytest.raises(LayerError, match=r"compounds row 2 \(compound_id 'C1'\), field 'danger_grade': 'E' is not a "
                                         r"danger grade \(A/B/C/D"):
        eligibility.screen(layer(build_year=[1990] * 2, danger_grade=["C", "E"]), year=2024)
    with pytest.raises(LayerError, match=r"row 1 \(compound_id 'C0'\), field 'danger_floor_area_m2': 12000 m² is more "
                                         r"than the compound's floor_area_m2 10000 m²"):
        eligibility.screen(layer(build_year=[1990], danger_floor_area_m2=[12_000.0]), year=2024)


def test_ninety_percent_illegal_removal_test_defers_with_reason():
    # C0 fails the 90 % illegal-removal test; C1 passes all three; C2 fails 2/3 and property management.
    g = layer(build_year=[1990] * 3, consent_rate_renovation=[0.95, 0.92, 0.6],
              consent_rate_illegal_removal=[0.85, 0.9, 0.95], consent_rate_property_mgmt=[0.93, 0.91, 0.5])
    out = eligibility.screen(g, year=2024)
    assert out["eligibility"].tolist() == ["deferred", "eligible", "deferred"]
    assert out["eligible"].tolist() == [False, True, False]
    assert reasons(out) == ["E-YEAR-PRIMARY;C-CONSENT-ILLEGAL-REMOVAL", "E-YEAR-PRIMARY",
                            "E-YEAR-PRIMARY;C-CONSENT;C-CONSENT-PROPERTY-MGMT"]
    assert out["consent_failed_zh"].tolist() == [
        "拆违拆临意愿同意率不足90%，暂缓改造或撤出本年度改造计划（C-CONSENT-ILLEGAL-REMOVAL：85% < 90%）",
        "",
        "居民改造意愿户数不足2/3，暂缓改造（C-CONSENT：60% < 66.67%）；"
        "物业管理意愿同意率不足90%，暂缓改造或撤出本年度改造计划（C-CONSENT-PROPERTY-MGMT：50% < 90%）"]
    assert np.isnan(out["cost_cny"].iloc[0]) and out["cost_cny"].iloc[1] == pytest.approx(6_000_000.0)
    # the thresholds are data: a plan can lower the 90 % rule, or switch a test off
    out = eligibility.screen(g, {"min_consent_illegal_removal": 0.8}, year=2024)
    assert out["eligibility"].tolist()[0] == "eligible"
    out = eligibility.screen(g, {"disabled_rules": ["C-CONSENT-ILLEGAL-REMOVAL"]}, year=2024)
    assert out["eligibility"].tolist()[0] == "eligible"
    with pytest.raises(ConfigError, match=r"eligibility.min_consent_property_mgmt: must be a finite number ≥ 0 and "
                                          r"≤ 1, got 1.5"):
        eligibility.load_settings({"min_consent_property_mgmt": 1.5})


def test_old_consent_rate_is_the_renovation_rate():
    g = layer(build_year=[1990] * 3, consent_rate=[0.6, 0.8, None], consent_rate_renovation=[None, 0.8, 0.6])
    out = eligibility.screen(g, year=2024)
    assert out["eligibility"].tolist() == ["deferred", "eligible", "deferred"]
    assert reasons(out)[0] == reasons(out)[2] == "E-YEAR-PRIMARY;C-CONSENT"
    g = layer(build_year=[1990, 1990], consent_rate=[0.8, 0.7], consent_rate_renovation=[0.8, 0.9])
    with pytest.raises(LayerError, match=r"row 2 \(compound_id 'C1'\), field 'consent_rate_renovation': 0.9 "
                                         r"contradicts consent_rate 0.7"):
        eligibility.screen(g, year=2024)


def test_readiness_raises_priority():
    # weights (eligibility.toml [priority.weights]): renovation 1.0, illegal removal 0.5, 业委会 0.5, 维修资金 0.5
    g = layer(build_year=[1990] * 4, consent_rate_renovation=[0.8] * 4,
              has_owners_committee=[False, True, True, None], has_maintenance_fund=[False, False, True, None],
              consent_rate_illegal_removal=[None, None, None, 0.9], in_expropriation_plan=[False] * 3 + [True])
    out = eligibility.screen(g, year=2024)
    score = out["priority_score"].tolist()
    assert score[:3] == pytest.approx([0.8, 1.3, 1.8])
    assert np.isnan(score[3])  # excluded: no priority


def test_classes_and_cost_by_era_band():
    g = layer(build_year=[1985, 1995, 2003, None], floor_area_m2=[10_000.0, 20_000.0, 5_000.0, 1_000.0],
              consent_rate=[0.9] * 4)
    out = eligibility.screen(g, year=2024)
    assert out["renovation_classes"].tolist() == ["基础;完善;提升", "基础;完善", "基础", "基础;完善"]
    assert out["era_band"].tolist() == ["1980s_or_earlier", "1990s", "2000s_or_later", "unknown"]
    # default unit costs: basic 400, improve +200, upgrade +200 CNY/m² (Wuxi presets, costs.toml)
    assert out["cost_basic_cny"].tolist() == [4_000_000.0, 8_000_000.0, 2_000_000.0, 400_000.0]
    assert out["cost_improve_cny"].tolist() == [2_000_000.0, 4_000_000.0, 0.0, 200_000.0]
    assert out["cost_upgrade_cny"].tolist() == [2_000_000.0, 0.0, 0.0, 0.0]
    assert out["cost_cny"].tolist() == [8_000_000.0, 12_000_000.0, 2_000_000.0, 600_000.0]


def test_cost_overrides_and_missing_floor_area():
    g = layer(build_year=[1995, 1995], floor_area_m2=[1_000.0, None], consent_rate=[0.9, 0.9])
    out = eligibility.screen(g, costs={"basic": 300, "improve": {"unit_cost_cny_m2": 150.0, "source": "市造价站"}},
                             year=2024)
    assert out["cost_cny"].iloc[0] == 450_000.0
    assert np.isnan(out["cost_cny"].iloc[1])
    assert out["reasons"].iloc[1] == "E-YEAR-PRIMARY;N-FLOOR-AREA-MISSING"
    table = eligibility.cost_table({"basic": 300})
    row = table.set_index("class").loc["basic"]
    assert (row["unit_cost_cny_m2"], row["source"], row["verified"]) == (300.0, "plan.toml override", False)


def test_class_bands_override():
    g = layer(build_year=[1995], consent_rate=[0.9])
    bands = [{"name": "all", "until": 9999, "classes": ["basic", "upgrade"]}]
    out = eligibility.screen(g, {"classes": {"bands": bands}}, year=2024)
    assert out["renovation_classes"].item() == "基础;提升"
    assert out["cost_cny"].item() == 10_000.0 * 600


def test_primary_cutoff_override():
    g = layer(build_year=[2003, 2008], consent_rate=[0.9, 0.9])
    out = eligibility.screen(g, {"primary_cutoff_year": 2006, "secondary_cutoff_year": 2010}, year=2024)
    assert out["eligibility"].tolist() == ["eligible", "secondary_candidate"]


@pytest.mark.parametrize(
    ("rules", "match"),
    [
        ({"primary_cutof_year": 2000}, "unknown setting 'primary_cutof_year'"),
        ({"primary_cutoff_year": "2000"}, "expected int"),
        ({"unknown_year_policy": "maybe"}, "unknown_year_policy"),
        ({"unknown_build_year": "maybe"}, "unknown_build_year: 'maybe' is not one of verify, eligible, exclude"),
        ({"primary_cutoff_year": 2006, "secondary_cutoff_year": 2001}, "secondary_cutoff_year"),
        ({"min_consent": 66.7}, "min_consent"),
        ({"disabled_rules": ["E-YEAR-PRIMARY"]}, "cannot be disabled"),
        ({"classes": {"unknown": ["luxury"]}}, "unknown class 'luxury'"),
    ],
)
def test_bad_rules_raise_config_error(rules, match):
    with pytest.raises(ConfigError, match=match):
        eligibility.screen(layer(build_year=[1990]), rules, year=2024)


def test_bad_costs_raise_config_error():
    with pytest.raises(ConfigError, match="unknown class 'premium'"):
        eligibility.screen(layer(build_year=[1990]), costs={"premium": 100}, year=2024)
    with pytest.raises(ConfigError, match="basic.unit_cost_cny_m2"):
        eligibility.screen(layer(build_year=[1990]), costs={"basic": {"unit_cost_cny_m2": -5.0}}, year=2024)


def test_bad_input_names_row_id_and_field():
    g = layer(build_year=[1990, 1990], consent_rate=[0.5, 1.5])
    with pytest.raises(LayerError, match=r"row 2 \(compound_id 'C1'\), field 'consent_rate'"):
        eligibility.screen(g, year=2024)
    g = layer(build_year=[1990, 1990])
    g["compound_id"] = ["A", "A"]
    with pytest.raises(LayerError, match="row 2, field 'compound_id': duplicate id 'A'"):
        eligibility.screen(g, year=2024)
    with pytest.raises(LayerError, match="required field 'floor_area_m2'"):
        eligibility.screen(layer(build_year=[1990]).drop(columns="floor_area_m2"), year=2024)
    g = layer(build_year=[1990], is_urban_village=["maybe"])
    with pytest.raises(LayerError, match="field 'is_urban_village'"):
        eligibility.screen(g, year=2024)


def test_input_not_mutated_and_output_deterministic():
    g = layer(build_year=[1990, 2003, None], consent_rate=[0.9, 0.5, None])
    before = g.copy()
    a = eligibility.screen(g, year=2024)
    b = eligibility.screen(g, year=2024)
    pd.testing.assert_frame_equal(g, before)
    pd.testing.assert_frame_equal(a, b)
    assert "eligible" not in g.columns


def test_rules_table_traces_every_rule_to_domain():
    table = eligibility.rules_table()
    assert table["rule_id"].is_unique
    assert table["source"].str.contains("DOMAIN.md").all()
    assert {"E-YEAR-PRIMARY", "X-URBAN-VILLAGE", "C-CONSENT", "X-NOT-ADJACENT"} <= set(table["rule_id"])
    row = table.set_index("rule_id").loc["X-URBAN-VILLAGE"]
    assert "[000:11]" in row["source"] and row["text_zh"].startswith("城中村")
    # every id screen() can emit is documented
    g = layer(build_year=[1990, 2003, 2010, None], consent_rate=[0.1, 0.9, 0.9, None],
              structural_safety_ok=[False, True, True, True])
    emitted = {r for s in eligibility.screen(g, year=2024)["reasons"] for r in s.split(";") if r}
    assert emitted <= set(table["rule_id"])


def test_admit_secondary_needs_an_adjacent_primary_compound():
    g = layer(build_year=[1990, 2003, 2004], consent_rate=[0.9] * 3)
    screened = eligibility.screen(g, year=2024)
    pairs = pd.DataFrame({"compound_a": ["C0", "C1"], "compound_b": ["C1", "C2"], "adjacent": [True, True]})
    out = eligibility.admit_secondary(screened, pairs)
    # C1 touches the primary C0; C2 touches only the candidate C1 (candidates do not admit each other)
    assert out["eligible"].tolist() == [True, True, False]
    assert reasons(out) == ["E-YEAR-PRIMARY", "E-YEAR-SECONDARY;B-ADJACENT-PRIMARY",
                            "E-YEAR-SECONDARY;X-NOT-ADJACENT"]
    assert out["cost_cny"].iloc[1] == 10_000.0 * 400 and np.isnan(out["cost_cny"].iloc[2])
    assert screened["eligible"].tolist() == [True, False, False]  # input untouched


def test_load_settings_merges_and_checks_rules_and_costs():
    cfg = eligibility.load_settings({"min_consent": 0.75, "classes": {"unknown": ["basic"]}}, costs={"upgrade": 250})
    assert cfg["settings"]["min_consent"] == 0.75
    assert cfg["settings"]["primary_cutoff_year"] == eligibility.load_rules()["settings"]["primary_cutoff_year"]
    assert cfg["classes"]["unknown"] == ["basic"]
    assert cfg["costs"]["upgrade"]["unit_cost_cny_m2"] == 250.0
    assert cfg["costs"]["upgrade"]["source"] == "plan.toml override"
    assert set(cfg) == {"settings", "rules", "classes", "status", "costs", "renovation_mode", "priority"}
    with pytest.raises(ConfigError, match="eligibility: unknown setting 'cutoff'"):
        eligibility.load_settings({"cutoff": 2000})
    with pytest.raises(ConfigError, match="costs.basic: expected a number"):
        eligibility.load_settings(costs={"basic": "cheap"})
    # the bundled data is never changed by a caller
    cfg["settings"]["min_consent"] = 0.1
    assert eligibility.load_settings()["settings"]["min_consent"] > 0.6


# ------------------------------------------------------------------------ date rules relative to the plan year
def test_recent_renovation_counts_back_from_the_reference_year_not_today(monkeypatch):
    """Renovated in 2021, 5-year rule: excluded when 2021 > year − 5, i.e. for 2025 (2021 > 2020) but not for
    2027 (2021 ≤ 2022); the default is the fixed reference_year of the data file, whatever today's date is."""
    g = layer(build_year=[1990], consent_rate=[0.9],
              last_renovation_year=pd.array([2021], dtype="Int64"))
    in_2025 = eligibility.screen(g, {"reference_year": 2025})
    in_2027 = eligibility.screen(g, {"reference_year": 2027})
    assert in_2025["reasons"].iloc[0] == "E-YEAR-PRIMARY;X-RECENT-RENOVATION"
    assert not in_2025["eligible"].iloc[0] and in_2025["eligibility"].iloc[0] == "excluded"
    assert in_2027["reasons"].iloc[0] == "E-YEAR-PRIMARY" and in_2027["eligible"].iloc[0]
    # the explicit year= argument counts the same way
    assert eligibility.screen(g, year=2025)["reasons"].iloc[0] == "E-YEAR-PRIMARY;X-RECENT-RENOVATION"

    # the default is a fixed year in data, not today's: a clock set to 2040 changes nothing
    default_year = eligibility.load_settings()["settings"]["reference_year"]
    assert default_year == 2026

    class _Future(__import__("datetime").date):
        @classmethod
        def today(cls):
            return cls(2040, 1, 1)

    before = eligibility.screen(g)
    monkeypatch.setattr("datetime.date", _Future)
    after = eligibility.screen(g)
    # 2021 > 2026 − 5 = 2021 is false: the compound is in scope under the default plan year, now and in 2040
    assert before["reasons"].tolist() == after["reasons"].tolist() == ["E-YEAR-PRIMARY"]


def test_reference_year_zero_is_refused_with_the_reason():
    with pytest.raises(ConfigError, match=r"eligibility\.reference_year: 0 .*plan year.*reference_year = 2026"):
        eligibility.load_settings({"reference_year": 0})


def test_run_json_states_the_plan_year():
    from gis_planner.config import load_config
    from gis_planner.manifest import plan_year

    given = plan_year(load_config({"eligibility": {"reference_year": 2027}}))
    assert given["reference_year"] == 2027 and given["source"] == "plan.toml [eligibility] reference_year"
    default = plan_year(load_config({}))
    assert default["reference_year"] == 2026 and "data/eligibility.toml" in default["source"]


def test_consent_table_weights_bundle_rates_by_households():
    c = pd.DataFrame({"compound_id": ["a", "b", "c", "d"], "bundle_id": ["B1", "B1", "B1", None],
                      "households": [100, 300, 50, 80],
                      "consent_rate_renovation": [0.60, 0.80, None, 0.9],
                      "consent_rate_illegal_removal": [0.95, 0.85, 0.99, None],
                      "has_owners_committee": [True, False, None, True]})
    t = eligibility.consent_table(c)
    assert t["level"].tolist() == ["片区", "小区", "小区", "小区", "小区"]
    b1 = t.iloc[0]
    # renovation: (100 × 0.60 + 300 × 0.80) / 400 = 0.75 (c not surveyed); a fails 2/3
    assert b1["renovation_rate"] == pytest.approx(0.75) and b1["renovation_result"] == "达标 1/2"
    # illegal removal: (100 × 0.95 + 300 × 0.85 + 50 × 0.99) / 450 = 0.8878; b fails 90 %
    assert b1["illegal_removal_rate"] == pytest.approx((95 + 255 + 49.5) / 450)
    assert b1["illegal_removal_result"] == "达标 2/3" and b1["property_mgmt_result"] == "未调查"
    rows = t.set_index("compound_id")
    assert rows.loc["b", "illegal_removal_result"] == "未达标" and rows.loc["c", "renovation_result"] == "未调查"
    assert rows.loc["a", "illegal_removal_threshold"] == 0.9
    assert rows["has_owners_committee"].tolist()[1:] == ["是", "否", "未调查", "是"]
    assert rows.loc["d", "bundle_id"] == ""  # outside any bundle: listed last, no bundle row
