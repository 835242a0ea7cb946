"""Tests of the funding balance: hand-computed ledgers and NPVs, pairing instances with known optima, invariants."""

from __future__ import annotations

import inspect
import itertools
import math
from pathlib import Path

import geopandas as gpd
import networkx as nx
import numpy as np
import openpyxl
import pandas as pd
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from gis_planner import finance, io, workbook
from gis_planner._errors import ConfigError
from gis_planner.finance import funding_balance, pairing
from gis_planner.finance.inputs import split_ids

CRS = 32650
ROOT = Path(__file__).resolve().parents[1]
AF_5_3 = 2.7232480293704797  # (1 - 1.05**-3) / 0.05 = 1/1.05 + 1/1.05² + 1/1.05³

# Simple round numbers so that every ledger line can be computed by hand.
HAND = {
    "discount_rate": 0.05, "horizon_years": 3, "common_income_share": 0.5, "compound_parking_fee_cny_month": 70.0,
    "parking_opex_cny_month": 20.0, "parking_occupancy": 0.8, "ad_cny_per_building_year": 2000.0,
    "charging_cny_per_household_year": 30.0, "locker_cny_per_compound_year": 3000.0, "land_net_share": 0.6,
    "lot_parking_fee_cny_month": 100.0, "parking_build_cny_per_space": 5000.0, "parking_m2_per_space": 30.0,
    "parking_usable_share": 0.8,
    "funding": {"central": {"rate": 4000.0}, "provincial": {"rate": 10.0}, "local": {"rate": 0.2},
                "residents": {"rate": 0.1}, "utilities": {"rate": 0.0}, "sector": {"rate": 0.0}},
    "facility_income": {"market": 200000.0, "default": 0.0},
}


def hand_layers():
    """One bundle B1 of two compounds, three attached parcels, one far parcel, three projects."""
    compounds = gpd.GeoDataFrame({
        "compound_id": ["C1", "C2", "C3"], "bundle_id": ["B1", "B1", None], "households": [100, 50, 80],
        "floor_area_m2": [10_000.0, 5_000.0, 7_000.0], "cost_basic_cny": [4e6, 2e6, np.nan],
        "cost_improve_cny": [2e6, 0.0, np.nan], "cost_upgrade_cny": [0.0, 0.0, np.nan],
        "parking_existing": [20, 10, 5], "n_buildings": [4, 2, 3], "subdistrict": ["甲街道", "甲街道", "乙街道"],
    }, geometry=[shapely.box(0, 0, 100, 100), shapely.box(110, 0, 210, 100), shapely.box(3000, 0, 3100, 100)],
        crs=CRS)
    bundles = gpd.GeoDataFrame({"bundle_id": ["B1"], "parcel_ids": ["V1;V2;V3"], "project_ids": ["P1"]},
                               geometry=[shapely.box(0, 0, 210, 100)], crs=CRS)
    vacant = gpd.GeoDataFrame({
        "parcel_id": ["V1", "V2", "V3", "V9"], "kind": ["vacant_land", "vacant_land", "cleared_land", "vacant_land"],
        "owner_type": ["government", "government", "government", "government"],
        "land_value_cny": [1_000_000.0, 2_000_000.0, np.nan, 5_000_000.0],
    }, geometry=[shapely.box(0, 110, 50, 150), shapely.box(60, 110, 100, 150), shapely.box(110, 110, 160, 150),
                 shapely.box(2000, 2000, 2050, 2050)], crs=CRS)
    projects = gpd.GeoDataFrame({
        "project_id": ["P1", "P2", "P3"], "kind": ["old_factory", "land_sale", "city_construction"],
        "name": ["厂区", "地块", "路网"], "net_revenue_cny": [5_000_000.0, 10_000_000.0, -2_000_000.0],
        "capex_cny": [1e7, 2e6, 3e6],
    }, geometry=[shapely.box(220, 0, 260, 100), shapely.box(710, 0, 760, 100), shapely.box(0, -300, 50, -250)],
        crs=CRS)
    proposed = gpd.GeoDataFrame({
        "facility_id": ["F1", "F2"], "parcel_id": ["V2", "V9"], "facility_type": ["market", "kindergarten"],
        "build_cost_cny": [3_000_000.0, 6_000_000.0], "subdistrict": ["甲街道", "甲街道"],
    }, geometry=[shapely.Point(80, 130), shapely.Point(2025, 2025)], crs=CRS)
    return compounds, bundles, projects, vacant, proposed


def line(ledger, item, bundle="B1", partner=None, level="bundle", compound=None):
    rows = ledger[(ledger["level"] == level) & (ledger["bundle_id"] == bundle) & (ledger["item"] == item)]
    if partner is not None:
        rows = rows[rows["partner_id"] == partner]
    if compound is not None:
        rows = rows[rows["compound_id"] == compound]
    assert len(rows) == 1, (item, partner, len(rows))
    return float(rows["amount_cny"].iloc[0])


# --------------------------------------------------------------------------------------------- money
def test_annuity_and_npv_by_hand():
    assert finance.annuity_factor(0.05, 3) == pytest.approx(1 / 1.05 + 1 / 1.05**2 + 1 / 1.05**3)
    assert finance.annuity_factor(0.08, 15) == pytest.approx(8.5594787, abs=1e-6)
    assert finance.annuity_factor(0.0, 7) == 7.0
    assert finance.annuity_factor(0.05, 0) == 0.0
    assert finance.npv(100_000, 0.05, 3) == pytest.approx(272_324.80, abs=0.01)
    np.testing.assert_allclose(finance.npv([10.0, 20.0], 0.0, 4), [40.0, 80.0])


# --------------------------------------------------------------------------------------- hand ledger
def test_hand_computed_bundle_ledger():
    c, b, p, v, f = hand_layers()
    r = finance.balance(finance.BalanceInputs(c, b, p, v, f), HAND)
    L = r.ledger
    # costs: renovation by class, the market on V2 (3 M); V3 parking is not built (NPV 110,847 < 265,000)
    assert line(L, "cost_basic") == -6_000_000
    assert line(L, "cost_improve") == -2_000_000
    assert line(L, "cost_upgrade") == 0
    assert line(L, "cost_facility", partner="F1") == -3_000_000
    # subsidies: central 4,000 × 150 households; provincial 10 × 15,000 m²; local 20 % of 8 M split 1:1
    assert line(L, "fund_central") == 600_000
    assert line(L, "fund_provincial") == 150_000
    assert line(L, "fund_local_city") == 800_000
    assert line(L, "fund_local_district") == 800_000
    assert line(L, "fund_residents") == 800_000
    # common income: C1 (20×0.8×50×12 + 4×2000 + 100×30 + 3000) × 0.5 = 11,800 /yr; C2 6,650 /yr
    assert line(L, "revenue_compound_ops") == pytest.approx((11_800 + 6_650) * AF_5_3)
    assert line(L, "revenue_facility_ops", partner="F1") == pytest.approx(200_000 * AF_5_3)
    assert line(L, "land_surplus", partner="V1") == pytest.approx(600_000)  # V2 carries the market: no sale
    # adjacent P1 pays its 5 M; the rest comes from the non-adjacent P2, 500 m away
    own = -11_000_000 + 2_350_000 + 800_000 + (18_450 + 200_000) * AF_5_3 + 600_000
    assert own == pytest.approx(-6_655_106.47, abs=0.01)
    assert line(L, "project_attached", partner="P1") == 5_000_000
    assert line(L, "pairing_income", partner="P2") == pytest.approx(-own - 5_000_000, abs=1e-6)
    bundle_lines = L[(L["level"] == "bundle")]
    assert bundle_lines["amount_cny"].sum() == pytest.approx(0.0, abs=1e-6)
    assert not bundle_lines["item"].isin(["government_residual", "surplus_retained"]).any()
    row = r.bundles.iloc[0]
    assert row["balance_mode"] == "cross_area" and row["balance_mode_zh"] == "跨片区组合平衡"
    assert row["balance_rule"].startswith("M3 跨片区组合平衡")
    assert row["total_cost_cny"] == 11_000_000 and row["subsidy_cny"] == 2_350_000
    assert row["unfunded_cny"] == 0 and bool(row["funded"])
    assert r.pairings[finance.PAIRING_COLUMNS].values.tolist() == [["B1", "P2", pytest.approx(1_655_106.47, abs=0.01),
                                                                   500.0]]
    # P3 loses money: not bundled; F2 stands on a parcel of no bundle
    assert r.projects.set_index("project_id").loc["P3", "surplus_available_cny"] == 0
    assert r.projects.set_index("project_id").loc["P2", "remaining_cny"] == pytest.approx(10e6 - 1_655_106.47, abs=0.01)
    assigned = r.proposed.set_index("facility_id")["bundle_id"]
    assert assigned["F1"] == "B1" and pd.isna(assigned["F2"])
    uses = r.parcels.set_index("parcel_id")
    assert uses["use"].to_dict() == {"V1": "land_sale", "V2": "facility", "V3": "none"}
    assert uses.loc["V3", "rule"] == "U4 none: parking NPV ≤ build cost"


def test_hand_computed_compound_balance():
    c, b, p, v, f = hand_layers()
    r = finance.balance(finance.BalanceInputs(c, b, p, v, f), HAND)
    L = r.ledger
    # C1: −6 M + 400,000 + 100,000 + 1,200,000 + 600,000 + 11,800 × AF
    bal_c1 = -6_000_000 + 400_000 + 100_000 + 1_200_000 + 600_000 + 11_800 * AF_5_3
    comp = r.compounds.set_index("compound_id")
    assert comp.loc["C1", "compound_balance_cny"] == pytest.approx(bal_c1)
    assert comp.loc["C1", "subsidy_cny"] == 1_700_000 and comp.loc["C1", "resident_cny"] == 600_000
    assert not comp.loc["C1", "self_balanced"]
    assert np.isnan(comp.loc["C3", "compound_balance_cny"])  # not in a bundle
    assert line(L, "fund_central", level="compound", compound="C2") == 200_000
    assert line(L, "transfer_bundle", level="compound", compound="C1") == pytest.approx(-bal_c1)
    sums = L[L["level"] == "compound"].groupby("compound_id")["amount_cny"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 0.0, atol=1e-6)


def test_self_balanced_modes_and_surplus_line():
    c, b, p, v, f = hand_layers()
    # rich operating income: the market alone pays for everything → 小区内自求平衡 with a retained surplus
    r = finance.balance(finance.BalanceInputs(c, b, p, v, f), {**HAND, "facility_income": {"market": 5_000_000.0}})
    row = r.bundles.iloc[0]
    assert row["balance_mode"] == "self_compound"
    own = -11_000_000 + 2_350_000 + 800_000 + (18_450 + 5_000_000) * AF_5_3 + 600_000  # + V1 land
    assert row["surplus_cny"] == pytest.approx(own)
    assert line(r.ledger, "surplus_retained") == pytest.approx(-own)
    assert len(r.pairings) == 0
    # a bigger adjacent project alone closes the gap → 大片区统筹平衡, drawing only what is needed
    p2 = p.assign(net_revenue_cny=[20_000_000.0, 10_000_000.0, -2_000_000.0])
    r = finance.balance(finance.BalanceInputs(c, b, p2, v, f), HAND)
    assert r.bundles["balance_mode"].item() == "self_bundle"
    assert line(r.ledger, "project_attached", partner="P1") == pytest.approx(6_655_106.47, abs=0.01)
    assert r.projects.set_index("project_id").loc["P1", "remaining_cny"] == pytest.approx(13_344_893.53, abs=0.01)


def test_unfunded_bundle_gets_residual_line():
    c, b, p, v, f = hand_layers()
    r = finance.balance(finance.BalanceInputs(c, b, p, v, f), {**HAND, "max_distance_m": 400.0})
    row = r.bundles.iloc[0]
    assert row["balance_mode"] == "government_led"
    assert row["unfunded_cny"] == pytest.approx(1_655_106.47, abs=0.01)
    assert line(r.ledger, "government_residual") == pytest.approx(1_655_106.47, abs=0.01)
    assert r.ledger[r.ledger["level"] == "bundle"]["amount_cny"].sum() == pytest.approx(0.0, abs=1e-6)
    assert r.unfunded["bundle_id"].tolist() == ["B1"]
    assert r.unfunded["unfunded_share"].item() == pytest.approx(1_655_106.47 / 11e6, abs=1e-9)
    assert r.summary.set_index("balance_mode").loc["government_led", "n_bundles"] == 1


def test_attached_loss_is_charged_only_on_request():
    c, b, p, v, f = hand_layers()
    p = p.assign(project_ids=None)
    b2 = b.assign(project_ids="P1;P3")
    r = finance.balance(finance.BalanceInputs(c, b2, p, v, f), HAND)
    assert "project_attached_loss" not in set(r.ledger["item"])
    r = finance.balance(finance.BalanceInputs(c, b2, p, v, f), {**HAND, "charge_attached_losses": True})
    assert line(r.ledger, "project_attached_loss", partner="P3") == -2_000_000
    assert line(r.ledger, "pairing_income", partner="P2") == pytest.approx(3_655_106.47, abs=0.01)


def test_parking_lot_built_when_fees_repay_it():
    c, b, p, v, f = hand_layers()
    r = finance.balance(finance.BalanceInputs(c, b, p, v, f), {**HAND, "horizon_years": 15, "discount_rate": 0.0})
    park = r.parcels.set_index("parcel_id").loc["V3"]
    # floor(2000 × 0.8 / 30) = 53 spaces; 53 × 0.8 × 80 × 12 = 40,704 /yr; 15 years undiscounted
    assert park["use"] == "parking" and park["parking_spaces"] == 53
    assert park["parking_npv_cny"] == pytest.approx(40_704 * 15)
    assert line(r.ledger, "cost_parking", partner="V3") == -265_000


# ------------------------------------------------------------------------------------------- pairing
def arcs_of(rows):
    return pd.DataFrame(rows, columns=["bundle_id", "project_id", "distance_m"])


def test_split_pairing_known_optimum():
    arcs = arcs_of([("A", "P", 100.0), ("A", "Q", 200.0), ("B", "P", 300.0), ("B", "Q", 100.0)])
    out = finance.solve_pairing({"A": 50, "B": 50}, {"P": 50, "Q": 50}, arcs)
    assert out.values.tolist() == [["A", "P", 50.0, 100.0], ["B", "Q", 50.0, 100.0]]
    # one project split over two bundles
    arcs = arcs_of([("A", "P", 100.0), ("B", "P", 200.0)])
    out = finance.solve_pairing({"A": 60, "B": 40}, {"P": 100}, arcs)
    assert out[["bundle_id", "amount_cny"]].values.tolist() == [["A", 60.0], ["B", 40.0]]


def test_one_to_one_pairing_known_optimum():
    arcs = arcs_of([("A", "P", 100.0), ("B", "P", 200.0)])
    out = finance.solve_pairing({"A": 60, "B": 40}, {"P": 100}, arcs, one_to_one=True)
    assert out.values.tolist() == [["A", "P", 60.0, 100.0]]   # one partner only: the larger amount
    # max amount: A–Q (100) + B–P (50) = 150 beats A–P + B–Q (50 + 50)
    arcs = arcs_of([("A", "P", 10.0), ("A", "Q", 900.0), ("B", "P", 900.0), ("B", "Q", 10.0)])
    out = finance.solve_pairing({"A": 100, "B": 50}, {"P": 50, "Q": 200}, arcs, one_to_one=True)
    assert out.values.tolist() == [["A", "Q", 100.0, 900.0], ["B", "P", 50.0, 900.0]]
    # equal amounts: the shorter matching wins
    arcs = arcs_of([("A", "P", 100.0), ("A", "Q", 300.0), ("B", "P", 300.0), ("B", "Q", 100.0)])
    out = finance.solve_pairing({"A": 50, "B": 50}, {"P": 50, "Q": 50}, arcs, one_to_one=True)
    assert out[["bundle_id", "project_id"]].values.tolist() == [["A", "P"], ["B", "Q"]]


def test_whole_bundles_first_changes_only_the_tie_break():
    arcs = arcs_of([("A", "P", 10.0), ("B", "P", 500.0), ("C", "P", 600.0)])
    deficit, surplus = {"A": 100, "B": 30, "C": 30}, {"P": 60}
    plain = finance.solve_pairing(deficit, surplus, arcs)
    assert plain.values.tolist() == [["A", "P", 60.0, 10.0]]            # nearest takes it all
    whole = finance.solve_pairing(deficit, surplus, arcs, whole_first=True)
    assert whole[["bundle_id", "amount_cny"]].values.tolist() == [["B", 30.0], ["C", 30.0]]
    assert whole["amount_cny"].sum() == plain["amount_cny"].sum() == 60
    one = finance.solve_pairing(deficit, {"P": 60, "Q": 30}, pd.concat([arcs, arcs_of([("A", "Q", 5.0)])]),
                                one_to_one=True, whole_first=True)
    # every one-to-one matching moves 60; only B–P or C–P fund a bundle in full; B–P is nearer
    assert one[["bundle_id", "project_id", "amount_cny"]].values.tolist() == [["A", "Q", 30.0], ["B", "P", 30.0]]


def test_infeasible_pairings_leave_deficits_unfunded():
    assert finance.solve_pairing({"A": 100}, {"P": 50}, arcs_of([])).empty
    arcs = arcs_of([("A", "P", 100.0)]).assign(allowed=False)
    assert finance.solve_pairing({"A": 100}, {"P": 50}, arcs).empty
    out = finance.solve_pairing({"A": 100}, {"P": 30.7}, arcs_of([("A", "P", 100.0)]))
    assert out["amount_cny"].tolist() == [30.0]                         # whole yuan, never above the surplus
    out = finance.solve_pairing({"A": 100, "B": 5}, {"P": 0, "Q": -3}, arcs_of([("A", "P", 1.0)]))
    assert out.empty
    out = finance.solve_pairing({"A": 10_250.25}, {"P": 100_000}, arcs_of([("A", "P", 1.0)]), unit_cny=1000)
    assert out["amount_cny"].tolist() == [10_250.25]                    # 11 units, trimmed to the deficit
    out = finance.solve_pairing({"A": 10_250.25}, {"P": 9_999}, arcs_of([("A", "P", 1.0)]), unit_cny=1000)
    assert out["amount_cny"].tolist() == [9_000.0]                      # surplus rounded down to whole units


def test_pairing_arcs_exclusions():
    _, b, p, _, _ = hand_layers()
    b = pd.concat([b, gpd.GeoDataFrame({"bundle_id": ["B2"], "project_ids": [None]},
                                       geometry=[shapely.box(0, 1000, 100, 1100)], crs=CRS)], ignore_index=True)
    arcs = finance.pairing_arcs(b, p, max_distance_m=900.0, same_unit="subdistrict",
                                bundle_units=pd.Series({"B1": "甲", "B2": "甲"}),
                                project_units=pd.Series({"P1": "甲", "P2": "甲", "P3": "乙"}))
    got = {(r.bundle_id, r.project_id): r.excluded_reason for r in arcs.itertuples()}
    assert got[("B1", "P1")] == "attached (大片区统筹)"
    assert got[("B1", "P2")] == ""
    assert got[("B1", "P3")] == "different subdistrict"
    assert got[("B2", "P2")] == "farther than 900 m"  # hypot(610, 900) ≈ 1087 m
    assert arcs.set_index(["bundle_id", "project_id"]).loc[("B2", "P1"), "distance_m"] == pytest.approx(
        np.hypot(120, 900))


def test_same_unit_from_nearest_compound():
    c, b, p, v, f = hand_layers()
    far = p.assign(geometry=[p.geometry.iloc[0], shapely.box(3000, 200, 3050, 250), p.geometry.iloc[2]])
    r = finance.balance(finance.BalanceInputs(c, b, far, v, f), {**HAND, "same_unit": "subdistrict"})
    assert r.projects.set_index("project_id").loc["P2", "pairing_unit"] == "乙街道"   # nearest compound is C3
    assert r.bundles["balance_mode"].item() == "government_led"
    r = finance.balance(finance.BalanceInputs(c, b, far, v, f), HAND)
    assert r.bundles["balance_mode"].item() == "cross_area"


# ------------------------------------------------------------------------- LP pairing against references
def random_pairing(seed, nb=30, npj=12, density=0.6, integral=True):
    """A random pairing problem: deficits, surpluses (CNY) and arcs (metres), some arcs missing or disallowed."""
    rng = np.random.default_rng(seed)
    deficit = {f"B{i:02d}": float(rng.integers(1, 100)) for i in range(nb)}
    surplus = {f"P{j:02d}": float(rng.integers(1, 150)) for j in range(npj)}
    if not integral:
        deficit = {k: v * 1000 + float(rng.uniform(0, 1000)) for k, v in deficit.items()}
        surplus = {k: v * 1000 + float(rng.uniform(0, 1000)) for k, v in surplus.items()}
    rows = [(b, q, float(rng.uniform(0, 3000))) for b in deficit for q in surplus if rng.random() < density]
    arcs = arcs_of(rows).assign(allowed=rng.random(len(rows)) > 0.1)
    return deficit, surplus, arcs


def nx_network(deficit, surplus, arcs, unit=1):
    """The flow network of the previous implementation: source → project → bundle → sink, whole units/metres."""
    g = nx.DiGraph()
    for q, v in surplus.items():
        if math.floor(v / unit + 1e-9) > 0:
            g.add_edge("source", ("p", q), capacity=math.floor(v / unit + 1e-9), weight=0)
    for b, v in deficit.items():
        g.add_edge(("b", b), "sink", capacity=math.ceil(v / unit - 1e-9), weight=0)
    for r in arcs[arcs["allowed"]].itertuples() if "allowed" in arcs.columns else arcs.itertuples():
        if ("p", r.project_id) in g:
            g.add_edge(("p", r.project_id), ("b", r.bundle_id), weight=round(r.distance_m))
    return g


def units_and_cost(out, unit=1):
    """(whole units paired, Σ whole metres × units) of a solve_pairing result (amounts trimmed below a unit)."""
    units = np.ceil(out["amount_cny"].to_numpy() / unit - 1e-9)
    return int(units.sum()), int((units * np.round(out["distance_m"].to_numpy())).sum())


def fully_funded(out, deficit):
    got = out.groupby("bundle_id")["amount_cny"].sum()
    return sum(got.get(b, 0.0) >= v - 1e-6 for b, v in deficit.items())


@pytest.mark.parametrize("seed", range(6))
def test_lp_pairing_matches_networkx_min_cost_max_flow(seed):
    deficit, surplus, arcs = random_pairing(seed)
    out = finance.solve_pairing(deficit, surplus, arcs)
    g = nx_network(deficit, surplus, arcs)
    flow = nx.max_flow_min_cost(g, "source", "sink")
    assert units_and_cost(out) == (sum(flow["source"].values()), nx.cost_of_flow(g, flow))
    # whole yuan: deficits and surpluses are whole numbers here, so are the amounts
    assert (out["amount_cny"] == out["amount_cny"].round()).all() and (out["amount_cny"] > 0).all()


def test_lp_pairing_matches_networkx_in_flow_units():
    deficit, surplus, arcs = random_pairing(11, integral=False)
    out = finance.solve_pairing(deficit, surplus, arcs, unit_cny=1000)
    g = nx_network(deficit, surplus, arcs, unit=1000)
    flow = nx.max_flow_min_cost(g, "source", "sink")
    assert units_and_cost(out, unit=1000) == (sum(flow["source"].values()), nx.cost_of_flow(g, flow))


def max_whole_brute_force(deficit, surplus, arcs):
    """Most bundles that can be funded in full at once: every subset, largest first (a max flow into it alone)."""
    g = nx_network(deficit, surplus, arcs)
    bundles = sorted(deficit)
    for size in range(len(bundles), 0, -1):
        for chosen in itertools.combinations(bundles, size):
            h = g.copy()
            h.remove_edges_from([(("b", b), "sink") for b in bundles if b not in chosen])
            need = sum(g.edges[("b", b), "sink"]["capacity"] for b in chosen)
            if "source" in h and nx.maximum_flow_value(h, "source", "sink") >= need:
                return size
    return 0


@pytest.mark.parametrize("seed", range(8))
def test_whole_first_funds_the_most_bundles_brute_force(seed):
    deficit, surplus, arcs = random_pairing(100 + seed, nb=6, npj=3, density=0.7)
    g = nx_network(deficit, surplus, arcs)
    best_amount = nx.maximum_flow_value(g, "source", "sink")
    out = finance.solve_pairing(deficit, surplus, arcs, whole_first=True)
    assert out["amount_cny"].sum() == best_amount                       # the amount comes first
    assert fully_funded(out, deficit) == max_whole_brute_force(deficit, surplus, arcs)
    plain = finance.solve_pairing(deficit, surplus, arcs)
    assert fully_funded(out, deficit) >= fully_funded(plain, deficit)
    # given the bundles it funds in full, the distance is minimal: the flow with those bundles required
    whole = {b for b in deficit if out.groupby("bundle_id")["amount_cny"].sum().get(b, 0.0) >= deficit[b]}
    h = g.copy()
    big = sum(w for _, _, w in g.edges(data="weight")) + 1       # > any saving of an augmenting path
    for b in whole:
        h.edges[("b", b), "sink"]["weight"] = -big
    flow = nx.max_flow_min_cost(h, "source", "sink")
    assert units_and_cost(out)[1] == nx.cost_of_flow(h, flow) + big * sum(deficit[b] for b in whole)


def previous_whole_bundles_milp(deficit, surplus, arcs):
    """The number of whole bundles chosen by the previous implementation (dense MILP, amount = the max flow)."""
    g = nx_network(deficit, surplus, arcs)
    value = nx.maximum_flow_value(g, "source", "sink")
    pairs = [(b, q) for (_, q), (_, b) in ((u, v) for u, v in g.edges if u != "source" and v != "sink")]
    bundles, projects = sorted({b for b, _ in pairs}), sorted({q for _, q in pairs})
    cap_b = np.array([g.edges[("b", b), "sink"]["capacity"] for b in bundles], dtype=float)
    cap_p = np.array([g.edges["source", ("p", q)]["capacity"] for q in projects], dtype=float)
    n, nb = len(pairs), len(bundles)
    A_b, A_p = np.zeros((nb, n + nb)), np.zeros((len(projects), n + nb))
    for j, (b, q) in enumerate(pairs):
        A_b[bundles.index(b), j] = A_p[projects.index(q), j] = 1.0
    A_full = A_b.copy()
    A_full[np.arange(nb), n + np.arange(nb)] = -cap_b
    cons = [LinearConstraint(A_b, -np.inf, cap_b), LinearConstraint(A_p, -np.inf, cap_p),
            LinearConstraint(A_full, 0.0, np.inf), LinearConstraint(np.r_[np.ones(n), np.zeros(nb)][None, :],
                                                                    value - 0.5, np.inf)]
    res = milp(np.r_[np.zeros(n), -np.ones(nb)], constraints=cons, integrality=np.r_[np.zeros(n), np.ones(nb)],
               bounds=Bounds(0, np.r_[np.full(n, np.inf), np.ones(nb)]))
    return round(-res.fun), value


def test_whole_first_matches_the_previous_milp(monkeypatch):
    calls = []
    real_milp = pairing.milp
    monkeypatch.setattr(pairing, "milp", lambda *a, **k: calls.append(1) or real_milp(*a, **k))
    for seed in range(8):
        deficit, surplus, arcs = random_pairing(200 + seed, density=0.15)
        out = finance.solve_pairing(deficit, surplus, arcs, whole_first=True)
        count, amount = previous_whole_bundles_milp(deficit, surplus, arcs)
        assert (fully_funded(out, deficit), out["amount_cny"].sum()) == (count, amount)
    assert calls            # some of these need the MILP (the LP relaxation alone does not prove the optimum)


def matchings(arcs):
    """Every one-to-one set of arcs (each bundle and each project at most once)."""
    by_bundle = {}
    for r in arcs.itertuples():
        by_bundle.setdefault(r.bundle_id, []).append((r.bundle_id, r.project_id, r.distance_m))
    out = [()]
    for options in by_bundle.values():
        out = [m + (a,) for m in out for a in options if a[1] not in {q for _, q, _ in m}] + out
    return out


@pytest.mark.parametrize("seed", range(6))
def test_one_to_one_lexicographic_optimum_brute_force(seed):
    rng = np.random.default_rng(400 + seed)
    deficit = {f"B{i}": float(rng.integers(1, 20)) for i in range(4)}
    surplus = {f"P{j}": float(rng.integers(1, 20)) for j in range(4)}
    arcs = arcs_of([(b, q, float(rng.integers(1, 10)) * 100) for b in deficit for q in surplus if rng.random() < 0.7])

    def key(pairs, whole):
        amounts = [min(deficit[b], surplus[q]) for b, q, _ in pairs]
        full = sum(surplus[q] >= deficit[b] for b, q, _ in pairs)
        return -sum(amounts), -full if whole else 0, sum(a * dist for a, (_, _, dist) in zip(amounts, pairs, strict=True))

    for whole in (False, True):
        out = finance.solve_pairing(deficit, surplus, arcs, one_to_one=True, whole_first=whole)
        got = list(out[["bundle_id", "project_id", "distance_m"]].itertuples(index=False, name=None))
        assert key(got, whole) == min(key(m, whole) for m in matchings(arcs))
        assert not out["bundle_id"].duplicated().any() and not out["project_id"].duplicated().any()


@pytest.mark.parametrize(("seed", "unit", "whole"), [(0, 1, False), (1, 1, True), (2, 1000, False), (3, 1000, True),
                                                     (4, 7, True)])
def test_pairing_amounts_never_exceed_surplus_or_deficit(seed, unit, whole):
    deficit, surplus, arcs = random_pairing(300 + seed, integral=False, density=0.8)
    out = finance.solve_pairing(deficit, surplus, arcs, unit_cny=unit, whole_first=whole)
    assert len(out) and (out["amount_cny"] > 0).all()
    by_bundle = out.groupby("bundle_id")["amount_cny"].sum()
    by_project = out.groupby("project_id")["amount_cny"].sum()
    assert all(by_bundle[b] <= deficit[b] + 1e-6 for b in by_bundle.index)
    assert all(by_project[q] <= surplus[q] + 1e-6 for q in by_project.index)
    allowed = set(zip(arcs.loc[arcs["allowed"], "bundle_id"], arcs.loc[arcs["allowed"], "project_id"], strict=True))
    assert set(zip(out["bundle_id"], out["project_id"], strict=True)) <= allowed
    # deterministic: the same problem with the arcs in another order gives the same table
    again = finance.solve_pairing(deficit, surplus, arcs.sample(frac=1.0, random_state=seed), unit_cny=unit,
                                  whole_first=whole)
    pd.testing.assert_frame_equal(out, again)


@pytest.mark.parametrize("whole", [False, True])
def test_lp_pairing_at_scale_matches_the_full_lp(monkeypatch, whole):
    """Hundreds of bundles, all arcs allowed: column generation over many rounds reaches the full LP's optimum."""
    rng = np.random.default_rng(5)
    nb, npj = 300, 60
    bxy, pxy = rng.uniform(0, 20_000, (nb, 2)), rng.uniform(0, 20_000, (npj, 2))
    dist = np.hypot(bxy[:, None, 0] - pxy[None, :, 0], bxy[:, None, 1] - pxy[None, :, 1])
    deficit = {f"B{i:03d}": float(v) for i, v in enumerate(rng.integers(100_000, 20_000_000, nb))}
    surplus = {f"P{j:02d}": float(v) for j, v in enumerate(rng.integers(1_000_000, 60_000_000, npj))}
    bi, pi = np.divmod(np.arange(nb * npj), npj)
    arcs = pd.DataFrame({"bundle_id": np.array(list(deficit))[bi], "project_id": np.array(list(surplus))[pi],
                         "distance_m": dist.ravel()})
    usual = finance.solve_pairing(deficit, surplus, arcs, whole_first=whole)
    # start from one arc per bundle and per project: many rounds of entering (and leaving) arcs
    monkeypatch.setattr(pairing, "COLGEN_NEAR_PROJECT", 1)
    monkeypatch.setattr(pairing, "COLGEN_NEAR_WHOLE", 1)
    rounds = []
    real = pairing.linprog
    monkeypatch.setattr(pairing, "linprog", lambda *a, **k: rounds.append(1) or real(*a, **k))
    out = finance.solve_pairing(deficit, surplus, arcs, whole_first=whole)
    assert len(rounds) >= 5
    # reference: the whole LP at once, two stages (max amount; then min cost at that amount, given the bundles
    # funded in full)
    n = len(bi)
    A = sparse.csc_array((np.ones(2 * n), (np.r_[bi, nb + pi], np.r_[np.arange(n), np.arange(n)])))
    caps = np.r_[list(deficit.values()), list(surplus.values())]
    most = linprog(-np.ones(n), A_ub=A, b_ub=caps, method="highs-ds")
    amount = round(-most.fun)
    full = np.array([out.groupby("bundle_id")["amount_cny"].sum().get(b, 0.0) >= v for b, v in deficit.items()])
    assert fully_funded(out, deficit) == fully_funded(usual, deficit) == full.sum()
    A_eq = sparse.vstack([np.ones((1, n)), A[:nb][full]])
    least = linprog(np.round(dist.ravel()), A_ub=A, b_ub=caps, A_eq=A_eq, b_eq=np.r_[amount, caps[:nb][full]],
                    method="highs-ds")
    assert units_and_cost(out) == units_and_cost(usual) == (amount, round(least.fun))
    if whole:
        assert full.sum() > fully_funded(finance.solve_pairing(deficit, surplus, arcs), deficit)


def reference_pairing_arcs(bundles, projects, max_distance_m=0.0, same_unit="none", bundle_units=None,
                           project_units=None):
    """The previous implementation of pairing_arcs (a dense table, a Python set of attached pairs)."""
    cols = ["bundle_id", "project_id", "distance_m", "attached", "same_unit", "allowed", "excluded_reason"]
    dist = shapely.distance(np.asarray(bundles.geometry.values)[:, None], np.asarray(projects.geometry.values)[None, :])
    bids = bundles["bundle_id"].astype(str).to_numpy()
    pids = projects["project_id"].astype(str).to_numpy()
    b_idx, p_idx = np.meshgrid(np.arange(len(bids)), np.arange(len(pids)), indexing="ij")
    out = pd.DataFrame({"bundle_id": bids[b_idx.ravel()], "project_id": pids[p_idx.ravel()],
                        "distance_m": dist.ravel()})
    attached = {(b, q) for b, ids in zip(bids, bundles["project_ids"], strict=True)
                for q in split_ids(ids)}
    out["attached"] = [(b, q) in attached for b, q in zip(out["bundle_id"], out["project_id"], strict=True)]
    if same_unit != "none":
        bu, pu = out["bundle_id"].map(bundle_units), out["project_id"].map(project_units)
        out["same_unit"] = (bu == pu) & bu.notna()
    else:
        out["same_unit"] = True
    too_far = (out["distance_m"] > max_distance_m) if max_distance_m else np.zeros(len(out), dtype=bool)
    reason = np.select([out["attached"], ~out["same_unit"], too_far],
                       ["attached (大片区统筹)", f"different {same_unit}", f"farther than {max_distance_m:g} m"],
                       default="")
    out["allowed"] = reason == ""
    out["excluded_reason"] = reason
    return out.sort_values(["bundle_id", "project_id"], kind="stable").reset_index(drop=True)[cols]


def test_pairing_arcs_same_table_as_before():
    rng = np.random.default_rng(8)
    nb, npj = 40, 9
    pids = [f"P{j}" for j in rng.permutation(npj)] + ["P3"]                  # a repeated project id
    ids = [";".join(rng.choice(pids + ["X9"], size=rng.integers(0, 4), replace=False)) or None for _ in range(nb)]
    ids[0], ids[1] = float("nan"), ";P2;;P2;"
    bundles = gpd.GeoDataFrame({"bundle_id": [f"B{i}" for i in rng.permutation(nb)], "project_ids": ids},
                               geometry=shapely.buffer(shapely.points(rng.uniform(0, 5000, (nb, 2))), 50), crs=CRS)
    projects = gpd.GeoDataFrame({"project_id": pids}, geometry=shapely.points(rng.uniform(0, 5000, (npj + 1, 2))),
                                crs=CRS)
    units_b = pd.Series(rng.choice(["甲", "乙", None], nb), index=bundles["bundle_id"])
    units_p = pd.Series(rng.choice(["甲", "乙"], npj + 1), index=projects["project_id"]).groupby(level=0).first()
    for kwargs in ({}, {"max_distance_m": 2500.0},
                   {"max_distance_m": 3000.0, "same_unit": "subdistrict", "bundle_units": units_b,
                    "project_units": units_p}):
        got = finance.pairing_arcs(bundles, projects, **kwargs)
        pd.testing.assert_frame_equal(got, reference_pairing_arcs(bundles, projects, **kwargs))
    reasons = set(got["excluded_reason"])
    assert {"", "attached (大片区统筹)", "different subdistrict", "farther than 3000 m"} <= reasons
    assert got["attached"].sum() >= 10 and len(got) == nb * (npj + 1)


# ------------------------------------------------------------------------------------- property test
@st.composite
def instances(draw):
    nb = draw(st.integers(1, 4))
    npj = draw(st.integers(1, 4))
    costs = draw(st.lists(st.integers(1, 40), min_size=nb, max_size=nb))
    cells = draw(st.lists(st.integers(0, 15), min_size=npj, max_size=npj))
    nets = draw(st.lists(st.integers(-5, 30), min_size=npj, max_size=npj))
    attach = draw(st.lists(st.lists(st.booleans(), min_size=npj, max_size=npj), min_size=nb, max_size=nb))
    opts = {"one_to_one": draw(st.booleans()), "whole_bundles_first": draw(st.booleans()),
            "max_distance_m": draw(st.sampled_from([0.0, 700.0])), "pair_attached_remainder": draw(st.booleans()),
            "charge_attached_losses": draw(st.booleans())}
    compounds = gpd.GeoDataFrame({
        "compound_id": [f"C{i}" for i in range(nb)], "bundle_id": [f"B{i}" for i in range(nb)],
        "households": [100] * nb, "floor_area_m2": [10_000.0] * nb,
        "cost_basic_cny": [k * 1e6 for k in costs], "cost_improve_cny": [0.0] * nb, "cost_upgrade_cny": [0.0] * nb,
    }, geometry=[shapely.box(i * 300, 0, i * 300 + 100, 100) for i in range(nb)], crs=CRS)
    bundles = gpd.GeoDataFrame({
        "bundle_id": [f"B{i}" for i in range(nb)], "parcel_ids": [None] * nb,
        "project_ids": [";".join(f"P{j}" for j in range(npj) if attach[i][j]) or None for i in range(nb)],
    }, geometry=list(compounds.geometry), crs=CRS)
    projects = gpd.GeoDataFrame({"project_id": [f"P{j}" for j in range(npj)],
                                 "net_revenue_cny": [n * 1e6 + 0.37 for n in nets]},
                                geometry=[shapely.box((k % 4) * 400, 300 + (k // 4) * 300, (k % 4) * 400 + 50,
                                                      350 + (k // 4) * 300) for k in cells], crs=CRS)
    return compounds, bundles, projects, opts


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_pairing_invariants(inst):
    compounds, bundles, projects, opts = inst
    r = finance.balance(finance.BalanceInputs(compounds, bundles, projects), settings=opts)
    proj = r.projects.set_index("project_id")
    # never more than the surplus: in total and per project
    assert r.pairings["amount_cny"].sum() <= proj["surplus_available_cny"].sum() + 1e-6
    used = r.allocations.groupby("project_id")["amount_cny"].sum()
    for pid, amount in used.items():
        assert amount <= proj.loc[pid, "surplus_available_cny"] + 1e-6
    # no bundle is paired with a project attached to it
    attached = {(b, q) for b, ids in zip(bundles["bundle_id"], bundles["project_ids"], strict=True)
                for q in (ids if isinstance(ids, str) else "").split(";") if q}
    assert not {(b, q) for b, q in zip(r.pairings["bundle_id"], r.pairings["project_id"], strict=True)} & attached
    if opts["one_to_one"]:
        assert not r.pairings["bundle_id"].duplicated().any() and not r.pairings["project_id"].duplicated().any()
    if opts["max_distance_m"]:
        assert (r.pairings["distance_m"] <= opts["max_distance_m"]).all()
    # every bundle's ledger sums to zero; funded ones without a residual line
    bl = r.ledger[r.ledger["level"] == "bundle"]
    sums = bl.groupby("bundle_id")["amount_cny"].sum().reindex(bundles["bundle_id"], fill_value=0.0)
    np.testing.assert_allclose(sums.to_numpy(), 0.0, atol=1e-4)
    funded = r.bundles.set_index("bundle_id")["funded"]
    residual = set(bl.loc[bl["item"] == "government_residual", "bundle_id"])
    assert residual == set(funded.index[~funded.astype(bool)])
    assert ((r.bundles["balance_mode"] == "government_led") == ~r.bundles["funded"].astype(bool)).all()
    assert (r.bundles["unfunded_cny"] >= 0).all()


# ------------------------------------------------------------------------------------------- settings
def test_settings_overrides_and_errors():
    s = finance.finance_settings({"discount_rate": 0.06, "funding": {"central": {"rate": 5000}},
                                  "facility_income": {"market": 1.0}, "one_to_one": True})
    assert s.params["discount_rate"].value == 0.06 and s.options.one_to_one is True
    assert s is not finance.load_settings() and isinstance(s, finance.FinanceSettings)
    with pytest.raises(AttributeError):
        s.options.one_to_one = False                         # frozen: a scenario never changes the base case
    a = finance.assumptions_table(s).set_index("key")
    assert a.loc["discount_rate", "source"] == "plan.toml override"
    assert bool(a.loc["discount_rate", "overridden"]) and not bool(a.loc["discount_rate", "verified"])
    assert a.loc["funding.central.rate", "value"] == 5000 and bool(a.loc["funding.central.rate", "overridden"])
    assert a.loc["funding.local.split.city", "value"] == 0.5 and bool(a.loc["funding.local.split.city", "verified"])
    assert a.loc["costs.basic", "value"] == 400.0          # unit costs listed from costs.toml
    assert {"param", "funding", "facility_income", "option", "unit_cost", "mode"} <= set(a["group"])
    assert a["source"].astype(bool).all()
    for bad, words in [({"discount_rte": 0.1}, "discount_rte"),
                       ({"funding": {"central": {"rat": 1}}}, "rat"),
                       ({"funding": {"local": {"split": {"city": 0.7, "district": 0.7}}}}, "sum to 1.4"),
                       ({"funding": {"new": {"rate": 1}}}, "a new rule needs"),
                       ({"same_unit": "province"}, "same_unit"),
                       ({"common_income_share": 1.5}, "common_income_share"),
                       ({"one_to_one": "yes"}, "one_to_one")]:
        with pytest.raises(ConfigError, match=words):
            finance.finance_settings(bad)


def test_land_cost_of_a_proposal_counts():
    c, b, p, v, f = hand_layers()
    r = finance.balance(finance.BalanceInputs(c, b, p, v, f.assign(land_cost_cny=[400_000.0, 0.0])), HAND)
    assert line(r.ledger, "cost_facility", partner="F1") == -3_400_000
    assert r.bundles["facility_cost_cny"].item() == 3_400_000


def test_new_funding_rule_from_settings():
    c, b, p, v, f = hand_layers()
    extra = {"funding": {**HAND["funding"], "bonds": {"name_zh": "专项债", "kind": "subsidy", "basis": "cost_share",
                                                      "rate": 0.5, "classes": ["facilities"]}}}
    r = finance.balance(finance.BalanceInputs(c, b, p, v, f), {**HAND, **extra})
    assert line(r.ledger, "fund_bonds") == 1_500_000   # half of the market's 3 M build cost


# ---------------------------------------------------------------------------------------- sensitivity
def test_sensitivity_flags_flips():
    c, b, p, v, f = hand_layers()
    out = finance.sensitivity(finance.BalanceInputs(c, b, p, v, f), HAND, scenarios={"far": {"max_distance_m": 100.0},
                                                              "rate": {"discount_rate": 0.04}})
    row = out.iloc[0]
    assert row["base"] == "cross_area" and row["mode:far"] == "government_led" and row["mode:rate"] == "cross_area"
    assert row["unfunded_cny:far"] == pytest.approx(1_655_106.47, abs=0.01)
    assert bool(row["flipped"]) and row["flipped_in"] == "far"
    default = finance.sensitivity(finance.BalanceInputs(c, b, p, v, f), HAND)
    assert [k for k in default.columns if k.startswith("mode:")] == [f"mode:{k}" for k in finance.DEFAULT_SCENARIOS]


def test_sensitivity_with_base_equals_recomputed(monkeypatch):
    c, b, p, v, f = hand_layers()
    b2 = pd.concat([b, gpd.GeoDataFrame({"bundle_id": ["B2"], "parcel_ids": [None], "project_ids": [None]},
                                        geometry=[shapely.box(3000, 0, 3100, 100)], crs=CRS)], ignore_index=True)
    c2 = c.assign(bundle_id=["B1", "B1", "B2"], cost_basic_cny=[4e6, 2e6, 5e6], cost_improve_cny=[2e6, 0.0, 0.0],
                  cost_upgrade_cny=[0.0, 0.0, 0.0])
    fin = finance.balance(finance.BalanceInputs(c2, b2, p, v, f), HAND)
    scenarios = {"far": {"max_distance_m": 100.0}, "rich": {"revenue_factor": 3.0}, **finance.DEFAULT_SCENARIOS}
    calls = []
    real = funding_balance.balance_bundles
    monkeypatch.setattr(funding_balance, "balance_bundles", lambda *a, **k: calls.append(1) or real(*a, **k))
    with_base = finance.sensitivity(finance.BalanceInputs(c2, b2, p, v, f), HAND, scenarios=scenarios, base=fin)
    assert len(calls) == len(scenarios)                      # the base case is not recomputed
    fresh = finance.sensitivity(finance.BalanceInputs(c2, b2, p, v, f), HAND, scenarios=scenarios)
    assert len(calls) == 2 * len(scenarios) + 1
    pd.testing.assert_frame_equal(with_base, fresh)
    assert with_base["base"].tolist() == fin.bundles["balance_mode"].tolist() == ["cross_area", "cross_area"]
    assert with_base.set_index("bundle_id").loc["B1", "mode:far"] == "government_led"
    assert with_base["flipped"].all()
    assert inspect.signature(finance.sensitivity).parameters["base"].kind is inspect.Parameter.KEYWORD_ONLY


# ----------------------------------------------------------------------------------------------- xlsx
def test_write_xlsx_round_trip(tmp_path):
    df = pd.DataFrame({"bundle_id": ["B1", "B2"], "amount_cny": [1234567.8, -5.0], "funded_ratio": [0.5, 1.0],
                       "distance_m": [12.3456, 7.0], "note": ["很长的中文说明文字" * 3, None], "ok": [True, False]})
    path = io.write_xlsx({"台账": df, "bad:/name?" * 5: df.head(1)}, tmp_path / "x.xlsx",
                         headers={"bundle_id": "片区编号", "amount_cny": "金额(元)"},
                         number_formats={"distance_m": "0.0"})
    assert path == tmp_path / "x.xlsx" and [p.name for p in tmp_path.iterdir()] == ["x.xlsx"]
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames[0] == "台账" and len(wb.sheetnames[1]) == 31 and "/" not in wb.sheetnames[1]
    ws = wb["台账"]
    assert [c.value for c in ws[1]] == ["片区编号", "金额(元)", "funded_ratio", "distance_m", "note", "ok"]
    assert [c.value for c in ws[2]][:4] == ["B1", 1234567.8, 0.5, 12.3456]
    assert ws["E3"].value is None and ws["F2"].value is True
    assert [ws.cell(row=2, column=j).number_format for j in (2, 3, 4)] == ["#,##0", "0.0%", "0.0"]
    assert ws.freeze_panes == "A2" and ws["A1"].font.bold
    # 27 CJK characters × 2 + 2 = 56 characters, stored as Excel stores it (plus the cell's padding)
    assert ws.column_dimensions["E"].width == pytest.approx(56, abs=1)
    assert ws.auto_filter.ref == "A1:F3"


def test_write_xlsx_keeps_text_as_text(tmp_path):
    """A name that looks like a formula or a link is written as text, not run by Excel."""
    names = ["=HYPERLINK(\"http://x.invalid\",\"点我\")", "+1+1", "http://x.invalid", "007"]
    path = io.write_xlsx({"s": pd.DataFrame({"name": names})}, tmp_path / "x.xlsx")
    ws = openpyxl.load_workbook(path)["s"]
    assert [(c.value, c.data_type) for (c,) in ws.iter_rows(min_row=2)] == [(n, "s") for n in names]


def test_ledger_workbook_has_chinese_sheets(tmp_path):
    c, b, p, v, f = hand_layers()
    r = finance.balance(finance.BalanceInputs(c, b, p, v, f), HAND)
    sens = finance.sensitivity(finance.BalanceInputs(c, b, p, v, f), HAND, scenarios={"far": {"max_distance_m": 100.0}})
    sheets, headers = workbook.ledger_workbook(r, sens)
    path = io.write_xlsx(sheets, tmp_path / "ledger.xlsx", headers=headers)
    wb = openpyxl.load_workbook(path)
    assert {"片区资金平衡", "资金台账", "跨片区组合", "敏感性分析", "参数假设"} <= set(wb.sheetnames)
    ws = wb["资金台账"]
    head = [x.value for x in ws[1]]
    assert "金额(元)" in head and "科目" in head
    col = head.index("金额(元)") + 1
    assert sum(ws.cell(row=i, column=col).value for i in range(2, ws.max_row + 1)) == pytest.approx(0, abs=1e-6)
    assert ws.cell(row=2, column=col).number_format == "#,##0"
    sens_head = [x.value for x in wb["敏感性分析"][1]]
    assert "平衡模式(far)" in sens_head and wb["敏感性分析"].cell(row=2, column=2).value == "跨片区组合平衡"


# -------------------------------------------------------------------------------------- sample district
@pytest.fixture(scope="module")
def sample_result():
    from gis_planner import Plan

    plan = Plan(str(ROOT / "layers" / "sample_district.gpkg"), run={"write_outputs": False}).run()
    layers = plan.layers
    inputs = finance.BalanceInputs(plan.outputs["compounds"], plan.outputs["bundles"], layers.projects, layers.vacant)
    return plan, inputs, finance.balance(inputs)


def test_sample_district_balance(sample_result, tmp_path):
    plan, inputs, r = sample_result
    bundles = plan.outputs["bundles"]
    counts = r.summary.set_index("balance_mode")["n_bundles"]
    assert counts.sum() == len(bundles) and list(counts.index) == list(finance.MODES)
    assert counts["self_bundle"] >= 1 and counts["cross_area"] >= 1 and counts["government_led"] >= 1
    # the two loss-making projects (P7, P8) fund nothing; P6 (> 1 km from old compounds) only pairs across areas
    proj = r.projects.set_index("project_id")
    assert proj.loc[["P7", "P8"], "surplus_available_cny"].eq(0).all()
    assert proj.loc["P6", "used_attached_cny"] == 0 and proj.loc["P6", "used_cross_cny"] > 0
    assert r.pairings["amount_cny"].sum() <= proj["surplus_available_cny"].sum()
    attached = {(b, q) for b, ids in zip(bundles["bundle_id"], bundles["project_ids"], strict=True)
                for q in str(ids).split(";") if ids is not None and ids == ids and q}
    assert not set(zip(r.pairings["bundle_id"], r.pairings["project_id"], strict=True)) & attached
    sums = r.ledger[r.ledger["level"] == "bundle"].groupby("bundle_id")["amount_cny"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 0.0, atol=1e-4)
    assert len(r.pairings_layer) == len(r.pairings) and (r.pairings_layer.geom_type == "LineString").all()
    assert r.pairings_layer.crs == bundles.crs
    text = r.summary_text()
    for zh in ("小区内自求平衡", "大片区统筹平衡", "跨片区组合平衡", "政府引导的多元化投入"):
        assert zh in text
    # the outputs the lead writes
    io.write_csv(r.pairings, tmp_path / "pairings.csv")
    assert pd.read_csv(tmp_path / "pairings.csv", encoding="utf-8-sig").columns[:4].tolist() == \
        finance.PAIRING_COLUMNS
    io.write_layers({"pairings": r.pairings_layer}, tmp_path / "plan.gpkg")
    sheets, headers = workbook.ledger_workbook(r, finance.sensitivity(inputs))
    io.write_xlsx(sheets, tmp_path / "ledger.xlsx", headers=headers)
    assert openpyxl.load_workbook(tmp_path / "ledger.xlsx")["片区资金平衡"].max_row == len(bundles) + 1


def test_sensitivity_accepts_merged_settings():
    c, b, p, v, f = hand_layers()
    merged = finance.finance_settings(HAND)
    out = finance.sensitivity(finance.BalanceInputs(c, b, p, v, f), merged, scenarios={"far": {"max_distance_m": 100.0}})
    assert out["mode:far"].item() == "government_led" and out["base"].item() == "cross_area"
    assert merged.options.max_distance_m == 0.0        # the caller's settings are not modified


# ------------------------------------------------------------------------- every proposal in a ledger
def test_every_proposal_cost_is_a_ledger_line():
    """F1 (on B1's parcel) → B1; F3 (parcel of no bundle, serves B1's compounds) → B1; F2 serves no bundle →
    the district line 区级统筹, balanced by district funds. The facility cost lines sum to all proposals."""
    c, b, p, v, f = hand_layers()
    f = pd.concat([f.assign(served_bundle_id=[None, None]),
                   gpd.GeoDataFrame({"facility_id": ["F3"], "parcel_id": ["V9"], "facility_type": ["nursery"],
                                     "build_cost_cny": [1_500_000.0], "land_cost_cny": [500_000.0],
                                     "subdistrict": ["甲街道"], "served_bundle_id": ["B1"]},
                                    geometry=[shapely.Point(2025, 2025)], crs=CRS)], ignore_index=True)
    r = finance.balance(finance.BalanceInputs(c, b, p, v, f), HAND)
    L = r.ledger
    assert line(L, "cost_facility", partner="F1") == -3_000_000
    assert line(L, "cost_facility", partner="F3") == -2_000_000  # build + land
    district = L[L["level"] == "district"]
    assert district["bundle_id"].isna().all() and district["compound_id"].isna().all()
    assert district.loc[district["item"] == "cost_facility", ["partner_id", "amount_cny"]].values.tolist() == [
        ["F2", -6_000_000.0]]
    assert district["amount_cny"].sum() == pytest.approx(0.0)
    assert set(district["category_zh"]) == {"成本", "区级统筹"}
    facility_lines = L[(L["item"] == "cost_facility") & (L["level"] != "compound")]
    total = (f["build_cost_cny"] + f["land_cost_cny"].fillna(0.0)).sum()
    assert -facility_lines["amount_cny"].sum() == pytest.approx(total)
    assert set(facility_lines["partner_id"]) == {"F1", "F2", "F3"}
    assigned = r.proposed.set_index("facility_id")
    assert assigned["bundle_rule"].to_dict() == {"F1": "parcel", "F2": "district", "F3": "served"}
    assert "区级统筹 district line: 1 proposed facilities" in r.summary_text()


# ------------------------------------------------------- 肥瘦 ratio, hidden debt, no pairing inside the gap
def _hand_own_balance() -> float:
    """B1's own balance before projects (see test_hand_computed_bundle_ledger): −6,655,106.47 CNY."""
    return -11_000_000 + 2_350_000 + 800_000 + (18_450 + 200_000) * AF_5_3 + 600_000


def test_fat_lean_ratio_by_hand():
    c, b, p, v, f = hand_layers()
    r = finance.balance(finance.BalanceInputs(c, b, p, v, f), HAND)
    lean = -_hand_own_balance()                               # 6,655,106.47
    row = r.bundles.iloc[0]
    assert row["lean_deficit_cny"] == pytest.approx(6_655_106.47, abs=0.01)
    # partners: P1 adjacent (surplus 5 M) and P2 cross-area (surplus 10 M), each counted whole
    assert row["partner_surplus_cny"] == pytest.approx(15_000_000)
    assert row["fat_lean_ratio"] == pytest.approx(15_000_000 / lean) == pytest.approx(2.2539, abs=1e-4)
    pair = r.pairings.set_index("project_id").loc["P2"]
    assert pair["project_surplus_cny"] == 10_000_000 and pair["bundle_deficit_cny"] == pytest.approx(lean)
    assert pair["fat_lean_ratio"] == pytest.approx(10_000_000 / lean) == pytest.approx(1.5026, abs=1e-4)
    # a bundle with no deficit has nothing lean to pair: ratio NaN, not 0 or ∞
    rich = finance.balance(finance.BalanceInputs(c, b, p, v, f), {**HAND, "facility_income": {"market": 5e6}})
    assert rich.bundles["lean_deficit_cny"].item() == 0 and np.isnan(rich.bundles["fat_lean_ratio"].item())
    # the ledger workbook shows both, with Chinese headers
    sheets, headers = workbook.ledger_workbook(r)
    assert "fat_lean_ratio" in sheets["片区资金平衡"].columns and "fat_lean_ratio" in sheets["跨片区组合"].columns
    assert headers["fat_lean_ratio"] == "肥瘦比(合作项目收益÷缺口)"


def test_no_cross_area_pairing_inside_the_adjacency_gap():
    c, b, _, v, f = hand_layers()
    # the only surplus project lies 23 m from B1 (x 233 vs the bundle's edge at 210) but is not in its
    # project_ids (bundling attached it to a nearer bundle, or to none)
    b = b.assign(project_ids=None)
    near = gpd.GeoDataFrame({"project_id": ["PX"], "kind": ["old_factory"], "name": ["近旁厂区"],
                             "net_revenue_cny": [10_000_000.0]}, geometry=[shapely.box(233, 0, 260, 100)], crs=CRS)
    r = finance.balance(finance.BalanceInputs(c, b, near, v, f), HAND)          # bundling's gap_m: 30 m
    assert len(r.pairings) == 0
    assert r.bundles["balance_mode"].item() == "government_led"
    assert r.bundles["unfunded_cny"].item() == pytest.approx(-_hand_own_balance())
    arcs = finance.pairing_arcs(b, near)
    assert arcs["distance_m"].item() == pytest.approx(23.0) and not arcs["allowed"].item()
    assert arcs["excluded_reason"].item().startswith("相邻项目：距片区30m以内，属大片区统筹，不作跨片区组合")
    assert "adjacency gap" in arcs["excluded_reason"].item()
    # the bundling gap of the plan decides: with gap_m = 20 the project is 3 m beyond it and pairs across areas
    r20 = finance.balance(finance.BalanceInputs(c, b, near, v, f, gap_m=20.0), HAND)
    assert r20.pairings[finance.PAIRING_COLUMNS].values.tolist() == [
        ["B1", "PX", pytest.approx(-_hand_own_balance(), abs=0.01), pytest.approx(23.0)]]
    assert finance.pairing_arcs(b, near, gap_m=20.0)["allowed"].item()


def test_sample_district_pairs_nothing_inside_the_gap(sample_result):
    from gis_planner import bundling

    _, _, r = sample_result
    gap = bundling.load_settings()["gap_m"]
    assert len(r.pairings) and (r.pairings["distance_m"] > gap).all()
    # B029 used to pair "non-adjacent" with P2 at 23 m
    assert not ((r.pairings["bundle_id"] == "B029") & (r.pairings["project_id"] == "P2")).any()


def test_hidden_debt_flag_for_guaranteed_or_platform_money():
    c, b, p, v, f = hand_layers()
    clean = finance.balance(finance.BalanceInputs(c, b, p, v, f), HAND)
    assert not clean.bundles["hidden_debt_flag"].item() and clean.bundles["hidden_debt_note"].item() == ""
    # P2 (the cross-area partner) is financing-platform money: the bundle relies on it for 1,655,106.47
    platform = p.assign(kind=["old_factory", "platform_financing", "city_construction"])
    r = finance.balance(finance.BalanceInputs(c, b, platform, v, f), HAND)
    row = r.bundles.iloc[0]
    assert bool(row["hidden_debt_flag"]) and row["hidden_debt_cny"] == pytest.approx(1_655_106.47, abs=0.01)
    assert row["hidden_debt_note"] == ("资金平衡依赖政府担保或融资平台资金：P2(platform_financing) 165.5万元；"
                                       "须调整，不得新增地方政府隐性债务")
    # an adjacent government-guaranteed partner counts too (P1, 5 M); P3 loses money and funds nothing
    guaranteed = p.assign(kind=["government_guaranteed", "land_sale", "platform_financing"])
    row = finance.balance(finance.BalanceInputs(c, b, guaranteed, v, f), HAND).bundles.iloc[0]
    assert bool(row["hidden_debt_flag"]) and row["hidden_debt_cny"] == pytest.approx(5_000_000)
    # a funding rule named in hidden_debt_funding_rules: 5 % of the basic class (6 M) = 300,000
    loan = {"platform_loan": {"name_zh": "平台贷款", "kind": "subsidy", "basis": "cost_share", "rate": 0.05,
                              "classes": ["basic"]}}
    row = finance.balance(finance.BalanceInputs(c, b, p, v, f),
                          {**HAND, "funding": {**HAND["funding"], **loan},
                           "hidden_debt_funding_rules": ["platform_loan"]}).bundles.iloc[0]
    assert bool(row["hidden_debt_flag"]) and row["hidden_debt_cny"] == pytest.approx(300_000)
    assert "平台贷款 30.0万元" in row["hidden_debt_note"]
    with pytest.raises(ConfigError, match=r"hidden_debt_funding_rules: unknown funding rule\(s\) \['nope'\]"):
        finance.load_settings({"hidden_debt_funding_rules": ["nope"]})
    sheets, headers = workbook.ledger_workbook(r)
    assert sheets["片区资金平衡"]["hidden_debt_flag"].tolist() == [True]
    assert headers["hidden_debt_flag"] == "隐性债务风险"
