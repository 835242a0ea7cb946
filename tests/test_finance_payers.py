"""Tests of the payer split (分项出资, DOMAIN.md §10.2.7): item-table costs, rules by payer group, item and compound
field, and the by-payer table — every amount computed by hand."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import openpyxl
import pandas as pd
import pytest
import shapely
from test_finance import HAND, hand_layers

from gis_planner import finance, io, workbook
from gis_planner._errors import ConfigError, LayerError
from gis_planner.finance import payers, sources
from gis_planner.finance.land import land_use

CRS = 32650

# Every rate given here, so the hand values do not move with data/finance.toml.
RATES = {
    "utility_civil_works_share": 0.5, "cost_factor": 1.0, "subsidy_factor": 1.0,
    "funding": {
        "elevator_subsidy": {"rate": 0.4},
        "residents_items": {"rate": 1.0},
        "utilities": {"rates": {"utility": 1.0, "owners": 0.5, "unit": 0.0, "default": 0.0}},
        "owner_unit_utilities": {"rates": {"unit": 1.0, "default": 0.0}},
        "property_units": {"rates": {"public_housing": 0.2, "commodity": 0.0, "default": 0.0}},
        "central": {"rate": 4000.0}, "provincial": {"rate": 10.0}, "local": {"rate": 0.2},
        "sector": {"rate": 0.0}, "social_capital": {"rate": 0.0}, "residents": {"rate": 0.1},
    },
}
PAYERS = ["central", "provincial", "city", "district", "residents", "utilities", "property_rights_units",
          "social_capital", "sector"]


def item_rows(rows):
    """An item table (the columns of needs.item_list the balance reads) from (compound, item, class, part, payer,
    cost) tuples."""
    return pd.DataFrame(rows, columns=["compound_id", "item", "class", "part", "payer", "cost_cny"]).assign(
        item_zh=lambda t: t["item"], quantity=1.0, unit_cost_cny=lambda t: t["cost_cny"])


def layers(c1_owner="供电公司", c2_rights="公房"):
    """B1 = C1 + C2 (costed from the item table), B2 = C3 (no rows: its class columns); C4 is in no bundle.

    C1 and C2 carry class cost columns too (9 M): the item table replaces them.
    """
    compounds = gpd.GeoDataFrame({
        "compound_id": ["C1", "C2", "C3", "C4"], "bundle_id": ["B1", "B1", "B2", None],
        "households": [100, 50, 20, 10], "floor_area_m2": [10_000.0, 5_000.0, 2_000.0, 1_000.0],
        "cost_basic_cny": [9e6, 9e6, 500_000.0, 1e6], "cost_improve_cny": [0.0, 0.0, 0.0, 0.0],
        "cost_upgrade_cny": [0.0, 0.0, 0.0, 0.0],
        "utility_assets_owner": [c1_owner, "业主共有", None, None],
        "property_rights": ["商品房", c2_rights, None, "公房"],
    }, geometry=[shapely.box(0, 0, 100, 100), shapely.box(110, 0, 210, 100), shapely.box(5000, 0, 5100, 100),
                 shapely.box(9000, 0, 9100, 100)], crs=CRS)
    bundles = gpd.GeoDataFrame({"bundle_id": ["B1", "B2"], "parcel_ids": [None, None], "project_ids": [None, None]},
                               geometry=[shapely.box(0, 0, 210, 100), shapely.box(5000, 0, 5100, 100)], crs=CRS)
    items = item_rows([
        ("C1", "roof_waterproofing", "basic", "main", "general", 2_000_000.0),
        ("C1", "water_supply", "basic", "infra", "utility", 1_000_000.0),
        ("C1", "power_supply", "basic", "infra", "utility", 400_000.0),
        ("C1", "windows_doors", "improve", "", "residents", 300_000.0),
        ("C1", "elevator", "improve", "", "residents", 1_000_000.0),
        ("C1", "greening", "improve", "", "general", 200_000.0),
        ("C2", "roof_waterproofing", "basic", "main", "general", 1_000_000.0),
        ("C2", "water_supply", "basic", "infra", "utility", 600_000.0),
        ("C2", "behind_meter", "improve", "", "residents", 100_000.0),
        ("C4", "roof_waterproofing", "basic", "main", "general", 7_000_000.0),
    ])
    return compounds, bundles, items


def run(settings=None, **kw):
    compounds, bundles, items = layers(**kw)
    return finance.balance(finance.BalanceInputs(compounds, bundles, items=items), {**RATES, **(settings or {})})


def row(table, compound=None, bundle=None):
    if compound is not None:
        r = table[(table["level"] == "compound") & (table["compound_id"] == compound)]
    else:
        r = table[(table["level"] == "bundle") & (table["bundle_id"] == bundle)]
    assert len(r) == 1
    return r.iloc[0]


def fund(ledger, item, compound):
    r = ledger[(ledger["level"] == "compound") & (ledger["compound_id"] == compound) & (ledger["item"] == item)]
    assert len(r) == 1, item
    return float(r["amount_cny"].iloc[0])


# ------------------------------------------------------------------------------------------ hand values
# C1 (100 households, 10,000 m², utility-owned networks, 商品房), total 4,900,000. Columns: roof 2,000,000; water and
# power split 50/50 into network (utility group) 500,000 + 200,000 and civil works (general) 500,000 + 200,000;
# windows 300,000; elevator 1,000,000; greening 200,000.
#   elevator subsidy 40 % × 1,000,000 = 400,000 (city 200,000, district 200,000)
#   residents' items: windows 300,000 + elevator 600,000 left = 900,000
#   utilities: 100 % of the network parts 700,000; property-rights unit: 商品房 → 0
#   central 4,000 × 100 = 400,000; provincial 10 × 10,000 = 100,000
#   local 20 % × (roof 2,000,000 + networks 700,000 + civil 700,000 + greening 200,000 = 3,600,000) = 720,000, 1:1
#   residents 10 % × general (roof 2,000,000 + civil 700,000 + greening 200,000) = 290,000
#   payers: 400,000 + 100,000 + 560,000 + 560,000 + 1,190,000 + 700,000 = 3,510,000 → remainder 1,390,000
C1 = {"total_cost": 4_900_000, "central": 400_000, "provincial": 100_000, "city": 560_000, "district": 560_000,
      "residents": 1_190_000, "utilities": 700_000, "property_rights_units": 0, "remainder": 1_390_000}
# C2 (50 households, 5,000 m², networks owned by the owners in common, 公房), total 1,700,000. Columns: roof 1,000,000;
# water network 300,000 and civil 300,000; behind-meter work 100,000.
#   residents' items 100,000; utilities 50 % × 300,000 = 150,000
#   property-rights unit 20 % × (1,000,000 + 300,000 + 300,000) = 320,000
#   central 4,000 × 50 = 200,000; provincial 10 × 5,000 = 50,000; local 20 % × 1,600,000 = 320,000 (160,000 each)
#   residents 10 % × (1,000,000 + 300,000) = 130,000
#   payers 200,000 + 50,000 + 160,000 + 160,000 + 230,000 + 150,000 + 320,000 = 1,270,000 → remainder 430,000
C2 = {"total_cost": 1_700_000, "central": 200_000, "provincial": 50_000, "city": 160_000, "district": 160_000,
      "residents": 230_000, "utilities": 150_000, "property_rights_units": 320_000, "remainder": 430_000}
# C3 (20 households, 2,000 m², no item rows → basic class column 500,000): central 80,000; provincial 20,000;
# local 20 % = 100,000 (50,000 each); residents 10 % = 50,000 → remainder 250,000
C3 = {"total_cost": 500_000, "central": 80_000, "provincial": 20_000, "city": 50_000, "district": 50_000,
      "residents": 50_000, "utilities": 0, "property_rights_units": 0, "remainder": 250_000}


def expect(values):
    return {f"{k}_cny": pytest.approx(v, abs=1e-6) for k, v in values.items()}


def test_by_payer_table_by_hand():
    r = run()
    t = r.by_payer
    assert list(t.columns) == payers.payer_columns_cny() == [
        "level", "bundle_id", "compound_id", "total_cost_cny", *(f"{p}_cny" for p in PAYERS), "remainder_cny"]
    for compound, values in (("C1", C1), ("C2", C2), ("C3", C3)):
        got = row(t, compound=compound)
        assert {k: got[k] for k in expect(values)} == expect(values), compound
        assert got["social_capital_cny"] == 0 and got["sector_cny"] == 0
    # bundles: B1 = C1 + C2, B2 = C3; C4 is in no bundle and its rows are ignored
    b1 = row(t, bundle="B1")
    assert b1["total_cost_cny"] == pytest.approx(6_600_000)
    assert b1["property_rights_units_cny"] == pytest.approx(320_000) and b1["remainder_cny"] == pytest.approx(1_820_000)
    assert row(t, bundle="B2")["remainder_cny"] == pytest.approx(250_000)
    assert t["level"].tolist() == ["bundle", "bundle", "compound", "compound", "compound"]
    assert "C4" not in set(t["compound_id"])
    assert r.bundles.set_index("bundle_id").loc["B1", "total_cost_cny"] == pytest.approx(6_600_000)


def test_payers_and_remainder_sum_to_the_total_per_compound_and_bundle():
    t = run().by_payer
    paid = t[[f"{p}_cny" for p in PAYERS]].sum(axis=1) + t["remainder_cny"]
    np.testing.assert_allclose(paid.to_numpy(), t["total_cost_cny"].to_numpy(), rtol=0, atol=1e-6)
    assert (t["remainder_cny"] >= -1e-6).all()
    # each bundle row is the sum of its compounds' rows (no facilities or car parks here)
    amounts = ["total_cost_cny", *(f"{p}_cny" for p in PAYERS), "remainder_cny"]
    compounds = t[t["level"] == "compound"].groupby("bundle_id")[amounts].sum()
    bundles = t[t["level"] == "bundle"].set_index("bundle_id")[amounts]
    pd.testing.assert_frame_equal(bundles.astype(float), compounds.astype(float), check_names=False,
                                  check_index_type=False)


def test_city_equals_district_under_the_one_to_one_split():
    t = run().by_payer
    np.testing.assert_allclose(t["city_cny"], t["district_cny"])
    assert (t["city_cny"] > 0).all()
    # the bundled settings split both the local share and the elevator subsidy 1:1 too
    compounds, bundles, items = layers()
    default = finance.balance(finance.BalanceInputs(compounds, bundles, items=items)).by_payer
    np.testing.assert_allclose(default["city_cny"], default["district_cny"])


def test_residents_pay_exactly_their_items_times_their_share():
    L = run().ledger
    # C1: windows 300,000 + elevator 1,000,000 × (1 − 0.4 subsidy); C2: behind-meter 100,000
    assert fund(L, "fund_residents_items", "C1") == pytest.approx(300_000 + 600_000)
    assert fund(L, "fund_residents_items", "C2") == pytest.approx(100_000)
    assert fund(L, "fund_elevator_subsidy_city", "C1") == pytest.approx(200_000)
    assert fund(L, "fund_residents_items", "C3") == 0                       # class columns: no residents' items
    # a residents' share of 50 % and no elevator subsidy: 0.5 × (300,000 + 1,000,000) = 650,000
    half = run({"funding": {**RATES["funding"], "elevator_subsidy": {"rate": 0.0},
                            "residents_items": {"rate": 0.5}}}).ledger
    assert fund(half, "fund_residents_items", "C1") == pytest.approx(650_000)
    assert fund(half, "fund_elevator_subsidy_district", "C1") == 0


@pytest.mark.parametrize(("owner", "utilities", "unit", "remainder"), [
    ("供电公司", 700_000, 0, 1_390_000),      # utility-owned: the utility pays its network parts
    ("owners", 350_000, 0, 1_740_000),         # owners in common: 50 % ('xx%' of [000:779]); the rest stays open
    ("产权单位", 0, 700_000, 1_390_000),        # unit-owned: the unit pays them
    (None, 0, 0, 2_090_000),                   # unknown: nothing assumed from a utility
])
def test_utilities_share_follows_the_asset_owner(owner, utilities, unit, remainder):
    c1 = row(run(c1_owner=owner).by_payer, compound="C1")
    assert c1["utilities_cny"] == pytest.approx(utilities)
    assert c1["property_rights_units_cny"] == pytest.approx(unit)
    # nothing else moves: every later rule is limited by its rate, not by the cost left
    assert c1["remainder_cny"] == pytest.approx(remainder)
    assert c1["central_cny"] == pytest.approx(400_000) and c1["residents_cny"] == pytest.approx(1_190_000)


def test_civil_works_share_is_the_governments():
    # no civil works: the utility pays all 1,400,000 of C1's networks; local 20 % of the same 3,600,000
    c1 = row(run({"utility_civil_works_share": 0.0}).by_payer, compound="C1")
    assert c1["utilities_cny"] == pytest.approx(1_400_000)
    assert c1["city_cny"] == pytest.approx(200_000 + 360_000)
    # residents 10 % of the general columns: roof 2,000,000 + greening 200,000 (no civil works now)
    assert c1["residents_cny"] == pytest.approx(900_000 + 220_000)


def test_property_rights_move_money_from_the_remainder_to_the_unit():
    public = row(run(c2_rights="公房").by_payer, compound="C2")
    commodity = row(run(c2_rights="商品房").by_payer, compound="C2")
    # 20 % × 1,600,000 (general + utility columns) = 320,000 moves; every other payer is unchanged
    assert public["property_rights_units_cny"] - commodity["property_rights_units_cny"] == pytest.approx(320_000)
    assert commodity["remainder_cny"] - public["remainder_cny"] == pytest.approx(320_000)
    for p in PAYERS:
        if p != "property_rights_units":
            assert public[f"{p}_cny"] == pytest.approx(commodity[f"{p}_cny"]), p
    # a Chinese value in the plan's rates is mapped like the compound's: 公房 = public_housing; other rates kept
    r = run({"funding": {**RATES["funding"], "property_units": {"rates": {"公房": 0.5}}}})
    assert row(r.by_payer, compound="C2")["property_rights_units_cny"] == pytest.approx(800_000)
    assert r.settings.funding["property_units"].rates["commodity"] == 0.0


def test_new_kinds_keep_every_ledger_unit_balanced():
    r = run()
    L = r.ledger
    for level in ("bundle", "compound"):
        sums = L[L["level"] == level].groupby("compound_id" if level == "compound" else "bundle_id")["amount_cny"]
        np.testing.assert_allclose(sums.sum().to_numpy(), 0.0, atol=1e-6)
    assert {"utility", "owner_unit"} <= set(L["category"])
    assert set(L.loc[L["category"] == "utility", "category_zh"]) == {"专营单位出资"}
    comp = r.compounds.set_index("compound_id")
    # C2: funding 1,270,000 + common income − 1,700,000
    assert comp.loc["C2", "compound_balance_cny"] == pytest.approx(1_270_000 + comp.loc["C2", "revenue_npv_cny"]
                                                                 - 1_700_000)
    assert comp.loc["C2", "owner_unit_cny"] == pytest.approx(320_000) and comp.loc["C2", "utility_cny"] == 150_000
    assert comp.loc["C1", "renovation_cost_cny"] == pytest.approx(4_900_000)
    assert bool(comp.loc["C1", "cost_from_items"]) and not bool(comp.loc["C3", "cost_from_items"])
    b1 = r.bundles.set_index("bundle_id").loc["B1"]
    assert b1["utility_cny"] == pytest.approx(850_000) and b1["owner_unit_cny"] == pytest.approx(320_000)
    # own sources of the mode test count every funding kind: B1 cost 6,600,000, funding 4,780,000
    assert b1["balance_cny"] == pytest.approx(4_780_000 + b1["revenue_npv_cny"] - 6_600_000)
    # class cost lines sum the item columns: C1 basic = 2,000,000 + 1,000,000 + 400,000
    basic = L[(L["level"] == "compound") & (L["compound_id"] == "C1") & (L["item"] == "cost_basic")]
    assert basic["amount_cny"].item() == pytest.approx(-3_400_000)
    assert basic["basis"].item().startswith("改造项目清单")
    c3 = L[(L["level"] == "compound") & (L["compound_id"] == "C3") & (L["item"] == "cost_basic")]
    assert c3["amount_cny"].item() == -500_000 and c3["basis"].item().startswith("建筑面积")


def test_cost_columns_carry_class_part_and_payer_group():
    compounds, bundles, items = layers()
    s = finance.load_settings(RATES)
    members = sources.bundle_members(finance.BalanceInputs(compounds, bundles, items=items))
    land = land_use(members.bundles, None, None, s, s.annuity_factor())
    costs = sources.cost_items(members, land, s, items)
    assert costs.items == ["item.roof_waterproofing", "item.water_supply", "item.power_supply", "item.windows_doors",
                           "item.elevator", "item.greening", "item.behind_meter", "item.water_supply.civil",
                           "item.power_supply.civil", "basic", "improve", "upgrade", "facilities", "parking"]
    assert costs.payers[:9] == ["general", "utility", "utility", "residents", "residents", "general", "residents",
                                "general", "general"]
    assert costs.classes[:9] == ["basic"] * 3 + ["improve"] * 4 + ["basic"] * 2
    assert costs.parts[:3] == ["main", "infra", "infra"]
    assert costs.from_items.tolist() == [True, True, False]
    # C3 (third member) keeps its class column; C1 and C2 have none
    assert costs.amounts[:3, costs.items.index("basic")].tolist() == [0.0, 0.0, 500_000.0]


def test_without_an_item_table_results_equal_class_costs():
    compounds, bundles, items = layers()
    none = finance.balance(finance.BalanceInputs(compounds, bundles), RATES)
    empty = finance.balance(finance.BalanceInputs(compounds, bundles, items=items.iloc[:0]), RATES)
    pd.testing.assert_frame_equal(none.ledger, empty.ledger)
    pd.testing.assert_frame_equal(none.by_payer, empty.by_payer)
    # class columns only (C1: 9 M basic): the item rules pay nothing; property_rights still applies (商品房 → 0)
    c1 = row(none.by_payer, compound="C1")
    # central 400,000; provincial 100,000; local 20 % × 9 M = 1,800,000; residents 10 % = 900,000
    # → remainder 9,000,000 − 3,200,000 = 5,800,000
    values = {"total_cost": 9e6, "central": 400_000, "provincial": 100_000, "city": 900_000, "district": 900_000,
              "residents": 900_000, "utilities": 0, "remainder": 5_800_000}
    assert {k: c1[k] for k in expect(values)} == expect(values)
    assert set(none.ledger.loc[none.ledger["item"] == "fund_residents_items", "amount_cny"]) == {0.0}


def test_hand_ledger_of_test_finance_by_payer():
    """The hand bundle of tests/test_finance.py (no item table): today's lines, now by payer."""
    c, b, p, v, f = hand_layers()
    r = finance.balance(finance.BalanceInputs(c, b, p, v, f), HAND)
    b1 = row(r.by_payer, bundle="B1")
    # cost 6 M + 2 M + the 3 M market; central 600,000; provincial 150,000; local 1,600,000; residents 800,000
    assert b1["total_cost_cny"] == 11_000_000
    assert (b1["central_cny"], b1["provincial_cny"], b1["city_cny"], b1["district_cny"], b1["residents_cny"]) == (
        600_000, 150_000, 800_000, 800_000, 800_000)
    assert b1["remainder_cny"] == pytest.approx(11_000_000 - 3_150_000)
    assert payers.payer_table(r.ledger, HAND).equals(r.by_payer)
    assert payers.payer_table(r).equals(r.by_payer)


def test_payer_sheet_in_the_ledger_workbook(tmp_path):
    r = run()
    sheets, headers = workbook.ledger_workbook(r)
    sheet = sheets["分项出资"]
    assert sheet["level_zh"].tolist() == ["片区", "片区", "小区", "小区", "小区"]
    path = io.write_xlsx(sheets, tmp_path / "ledger.xlsx", headers=headers)
    ws = openpyxl.load_workbook(path)["分项出资"]
    head = [c.value for c in ws[1]]
    assert head == ["层级", "片区编号", "小区编号", "总成本(元)", "中央财政(元)", "省级财政(元)", "市级财政(元)",
                    "区级财政(元)", "居民(元)", "专营单位(元)", "产权单位(元)", "社会资本(元)", "部门专项(元)",
                    "待平衡缺口(元)"]
    values = [[c.value for c in line] for line in ws.iter_rows(min_row=2)]
    c2 = next(v for v in values if v[2] == "C2")
    assert c2[3] == pytest.approx(1_700_000) and c2[10] == pytest.approx(320_000) and c2[13] == pytest.approx(430_000)
    assert ws.cell(row=2, column=4).number_format == "#,##0"
    assert payers.payer_labels()["remainder_cny"] == "待平衡缺口"


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("overrides", "words"), [
    ({"funding": {"property_units": {"rates": {"公屋": 0.3}}}}, r"funding\.property_units\.rates\.公屋: not a value"),
    ({"funding": {"property_units": {"rates": {"公房": 1.5}}}}, r"funding\.property_units\.rates\.公房: a cost share"),
    ({"funding": {"residents": {"payers": ["owners"]}}}, r"funding\.residents\.payers: unknown payer group"),
    ({"funding": {"residents": {"paid_by": "central"}}}, r"funding\.residents\.paid_by: 'central' is not a payer"),
    ({"funding": {"local": {"split": {"city": 0.5, "town": 0.5}}}}, r"funding\.local\.split\.town: not a payer"),
    ({"funding": {"central": {"rates": {"x": 1.0}}}}, r"funding\.central\.rates: a table of rates needs rate_by"),
    ({"funding": {"utilities": {"rate": 0.3, "rates": {"default": 0.2}}}}, r"funding\.utilities\.rate: 0\.3 differs"),
    ({"funding": {"utilities": {"rates": 0.5}}}, r"funding\.utilities\.rates: expected a table"),
    ({"funding": {"residents": {"items": [1]}}}, r"funding\.residents\.items: expected a list of texts"),
    ({"funding": {"x": {"name_zh": "x", "kind": "social", "basis": "cost_share", "classes": ["basic"]}}},
     r"funding\.x: a new rule needs \['rate'\]"),
    ({"funding": {"x": {"name_zh": "x", "kind": "donor", "basis": "cost_share", "rate": 0.1,
                        "classes": ["basic"]}}}, r"funding\.x\.kind: 'donor'"),
    ({"utility_civil_works_share": 1.2}, r"utility_civil_works_share: 1\.2 is not a share"),
])
def test_strict_override_errors_name_the_key(overrides, words):
    with pytest.raises(ConfigError, match=words):
        finance.load_settings(overrides)


def test_new_rule_of_a_new_kind_pays_as_its_payer():
    """A plan's own rule: kind social → 社会资本 (paid_by from the kind), by item, with rates by a field."""
    extra = {"donor": {"name_zh": "企业捐助", "kind": "social", "basis": "cost_share", "classes": ["improve"],
                       "items": ["greening"], "rate_by": "property_rights", "rates": {"商品房": 0.5, "default": 0.0}}}
    r = run({"funding": {**RATES["funding"], **extra}})
    # C1 (商品房): 50 % × greening 200,000 = 100,000. It comes last: local (720,000 of the 2,400,000 left) leaves
    # 70 % of greening = 140,000, residents (290,000 of 1,680,000) 140,000 × (1 − 290/1,680) ≈ 115,833 ≥ 100,000,
    # so the rate binds, not the cap
    assert row(r.by_payer, compound="C1")["social_capital_cny"] == pytest.approx(100_000)
    assert row(r.by_payer, compound="C2")["social_capital_cny"] == 0
    assert "按产权性质" in r.ledger.loc[r.ledger["item"] == "fund_donor", "basis"].iloc[0]
    a = finance.assumptions_table(r.settings).set_index("key")
    assert a.loc["funding.donor.rates.商品房", "value"] == 0.5


@pytest.mark.parametrize(("change", "words"), [
    (lambda t: t.drop(columns=["payer"]), "items lacks column"),
    (lambda t: t.assign(**{"class": ["basic"] * 9 + ["luxury"]}), r"compound C4, item 'roof_waterproofing': class"),
    (lambda t: t.assign(payer=["general"] * 8 + ["owner", "general"]), r"compound C2, item 'behind_meter': payer"),
    (lambda t: t.assign(cost_cny=[1.0] * 3 + [-5.0] + [1.0] * 6), r"compound C1, item 'windows_doors': cost_cny -5\.0 is not a number"),
    (lambda t: t.assign(cost_cny=["x"] + [1.0] * 9), r"compound C1, item 'roof_waterproofing': cost_cny 'x'"),
    (lambda t: t.assign(payer=["general"] * 9 + ["utility"]), r"item 'roof_waterproofing' has several values of payer"),
])
def test_bad_item_table_is_a_layer_error_naming_row_and_field(change, words):
    compounds, bundles, items = layers()
    with pytest.raises(LayerError, match=words):
        finance.balance(finance.BalanceInputs(compounds, bundles, items=change(items)), RATES)


def test_vocabularies_map_chinese_values():
    from gis_planner.finance.settings import canonical_values

    values = pd.Series(["公房", " 房改房 ", "单位自管", "商品房", "三供一业", "别墅", None])
    assert canonical_values(values, "property_rights").tolist() == [
        "public_housing", "reform_housing", "work_unit", "commodity", "three_supplies", "别墅", None]
    assert canonical_values(pd.Series(["供电公司", "业主共有", "单位"]), "utility_assets_owner").tolist() == [
        "utility", "owners", "unit"]
    # every bundled payer has a Chinese name and a ledger kind
    cols = finance.settings.payer_columns()
    assert list(cols) == PAYERS and all(v["kind"] in finance.settings.KINDS for v in cols.values())
