"""Tests of programme phasing: a hand-computed optimum, capacity and link properties on random instances, the
greedy's gap, unplaced bundles, settings errors and the features of a hand-made 2-bundle toy."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from gis_planner import phasing
from gis_planner._errors import ConfigError, LayerError


def four_bundles() -> pd.DataFrame:
    return pd.DataFrame({"bundle_id": ["A", "B", "C", "D"], "priority": [4.0, 3.0, 2.0, 1.0],
                         "total_cost_cny": [60.0, 50.0, 40.0, 30.0]})


TWO_YEARS_100 = {"horizon_years": 2, "capacity_cny": {"total": 100}, "mip_rel_gap": 0.0}


def brute_force(cost: np.ndarray, prio: np.ndarray, cap: np.ndarray, weight: np.ndarray) -> float:
    """Best Σ priority × weight over every assignment (year or none) within capacity: an independent check."""
    best = 0.0
    n, h = len(prio), len(weight)
    for assign in itertools.product(range(-1, h), repeat=n):
        a = np.array(assign)
        use = np.array([[cost[a == y, lv].sum() for y in range(h)] for lv in range(cost.shape[1])])
        if (use <= cap + 1e-9).all():
            best = max(best, float(sum(prio[i] * weight[a[i]] for i in range(n) if a[i] >= 0)))
    return best


def years(result: phasing.PhasingResult) -> dict[str, object]:
    return {b: (None if pd.isna(y) else int(y)) for b, y in zip(result.table["bundle_id"], result.table["year"],
                                                               strict=True)}


# ------------------------------------------------------------------------------------------- known optimum
def test_known_optimum_four_bundles_two_years():
    # Capacity 100 per year, 2 years; year weights (H − k + 1)/H = 1 and 1/2.
    # Costs A 60, B 50, C 40, D 30; priorities 4, 3, 2, 1. Year-1 sets within 100 and the best year 2:
    #   {A,C}=100 → 4+2 = 6, year 2 {B,D}=80 → (3+1)/2 = 2   → 8    ← optimum
    #   {A,D}= 90 → 5,       year 2 {B,C}=90 → (3+2)/2 = 2.5 → 7.5
    #   {B,C}= 90 → 5,       year 2 {A,D}=90 → (4+1)/2 = 2.5 → 7.5
    #   {B,D}= 80 → 4,       year 2 {A,C}=100 → (4+2)/2 = 3  → 7
    #   {A}  = 60 → 4,       year 2 {B,C}=90 → 2.5           → 6.5
    #   {C,D}= 70 → 3,       year 2 {A}     → 2              → 5   ({A,B}, any triple > 100)
    r = phasing.phase(four_bundles(), settings=TWO_YEARS_100, plan_year=2026)
    assert years(r) == {"A": 2026, "C": 2026, "B": 2027, "D": 2027}
    assert r.objective == pytest.approx(8.0)
    assert r.method == "milp" and r.status == "optimal" and r.gap == pytest.approx(0.0, abs=1e-9)
    assert r.bound == pytest.approx(8.0)
    assert brute_force(np.c_[[60.0, 50, 40, 30]], np.array([4.0, 3, 2, 1]), np.full((1, 2), 100.0),
                       np.array([1.0, 0.5])) == pytest.approx(8.0)
    t = r.table.set_index("bundle_id")
    assert t.loc["A", "year_zh"] == "2026年" and t.loc["A", "year_index"] == 1
    assert "此前年度能力已被优先级更高的片区占用" in t.loc["B", "reason_zh"]
    # annual: 2026 uses 100 of 100 (B and D wait and would fit an empty year: binding); 2027 uses 80, none waits
    a = r.annual.set_index("year")
    assert a.loc[2026, "planned_cny"] == 100.0 and a.loc[2026, "used_share"] == 1.0 and a.loc[2026, "binding"]
    assert a.loc[2027, "planned_cny"] == 80.0 and a.loc[2027, "slack_cny"] == 20.0 and not a.loc[2027, "binding"]
    assert list(a["n_bundles"]) == [2, 2] and list(a["level_zh"]) == ["总投资", "总投资"]
    assert r.unplaced.empty


def test_capacity_share_and_start_year():
    # share 0.5 of the programme total 60+50+40+30 = 180 → 90 per year; start_year overrides the plan year.
    r = phasing.phase(four_bundles(), settings={"horizon_years": 2, "capacity_share": 0.5, "start_year": 2030,
                                                "mip_rel_gap": 0.0}, plan_year=2026)
    assert list(r.annual["capacity_cny"]) == [90.0, 90.0] and r.years == (2030, 2031)
    # within 90: {A,D}=90 then {B,C}=90 → 5 + 2.5 = 7.5; {B,C} then {A,D} also 7.5; {A} then {B,C} 4 + 2.5 = 6.5 …
    assert r.objective == pytest.approx(7.5)
    assert r.n_placed == 4


# ------------------------------------------------------------------------------------------- properties
def random_instance(rng: np.random.Generator, n: int, links: bool):
    f = pd.DataFrame({"bundle_id": [f"B{i:02d}" for i in range(n)], "priority": rng.uniform(0.1, 1.0, n),
                      "central_cny": rng.uniform(1, 50, n).round(), "local_cny": rng.uniform(1, 80, n).round(),
                      "total_cost_cny": 0.0})
    lk = None
    if links:
        pairs = rng.choice(n, size=(4, 2), replace=False)
        lk = pd.DataFrame({"bundle_a": f["bundle_id"].to_numpy()[pairs[:, 0]],
                           "bundle_b": f["bundle_id"].to_numpy()[pairs[:, 1]],
                           "kind": ["together", "order", "order", "together"]})
    return f, lk


@pytest.mark.parametrize("solver", ["milp", "greedy"])
def test_annual_totals_never_exceed_capacity(solver):
    rng = np.random.default_rng(16)
    for k in range(12):
        f, lk = random_instance(rng, 14, links=k % 2 == 1)
        s = {"horizon_years": 3, "capacity_share": float(rng.uniform(0.1, 0.4)), "solver": solver}
        r = phasing.phase(f, links=lk, settings=s)
        t = r.table[r.table["placed"]]
        for (year, level), row in r.annual.set_index(["year", "level"]).iterrows():
            col = {"central": "central_cny", "local": "local_cny"}[level]
            assert t.loc[t["year"] == year, col].sum() == pytest.approx(row["planned_cny"])
            assert row["planned_cny"] <= row["capacity_cny"] + 1e-6, (k, year, level)
        assert set(r.annual["level"]) == {"central", "local"}


def test_links_respected_on_random_instances():
    rng = np.random.default_rng(7)
    for _ in range(10):
        f, lk = random_instance(rng, 12, links=True)
        for solver in ("milp", "greedy"):
            r = phasing.phase(f, links=lk, settings={"horizon_years": 3, "capacity_share": 0.3, "solver": solver})
            y = years(r)
            for a, b, kind in lk[["bundle_a", "bundle_b", "kind"]].itertuples(index=False):
                if kind == "together":
                    assert y[a] == y[b], (solver, a, b)
                elif y[b] is not None:
                    assert y[a] is not None and y[a] <= y[b], (solver, a, b)


def test_together_link_same_year():
    # Without the link the optimum splits B and D (8, above). together(B, C): {B,C}=90 fits one year.
    # Year 1 {B,C} (5) + year 2 {A,D} (2.5) = 7.5; year 1 {A,D} (5) + {B,C} (2.5) = 7.5 — a tie, both together.
    lk = pd.DataFrame({"bundle_a": ["B"], "bundle_b": ["C"], "kind": ["together"], "reason_zh": ["共建设施"]})
    r = phasing.phase(four_bundles(), links=lk, settings=TWO_YEARS_100)
    y = years(r)
    assert y["B"] == y["C"] and y["B"] is not None
    assert r.objective == pytest.approx(7.5)
    t = r.table.set_index("bundle_id")
    assert t.loc["B", "group_id"] == "B" and t.loc["C", "group_id"] == "B" and t.loc["A", "group_id"] == ""
    assert "与C同批实施" in t.loc["B", "reason_zh"] and "共建设施" in t.loc["B", "reason_zh"]


def test_order_link_respects_order():
    # order B → A: A only with B placed in the same or an earlier year; A + B = 110 > 100, so B goes first.
    #   {B,C} 2026 (3 + 2 = 5) + {A,D} 2027 ((4 + 1)/2 = 2.5) = 7.5   ← optimum
    #   {B,D} 2026 (4)         + {A,C} 2027 ((4 + 2)/2 = 3)   = 7
    #   without A: {B,C} 2026 (5) + {D} 2027 (0.5) = 5.5
    lk = pd.DataFrame({"bundle_a": ["B"], "bundle_b": ["A"], "kind": ["order"], "reason_zh": ["资金随B到位"]})
    r = phasing.phase(four_bundles(), links=lk, settings=TWO_YEARS_100)
    y = years(r)
    assert y == {"B": 2026, "C": 2026, "A": 2027, "D": 2027} and y["B"] <= y["A"]
    assert r.objective == pytest.approx(7.5)
    assert "资金随B到位（B：2026年）" in r.table.set_index("bundle_id").loc["A", "reason_zh"]


def test_order_link_after_an_unplaceable_bundle():
    f = pd.concat([four_bundles(), pd.DataFrame({"bundle_id": ["E"], "priority": [9.0],
                                                 "total_cost_cny": [150.0]})], ignore_index=True)
    lk = pd.DataFrame({"bundle_a": ["E"], "bundle_b": ["D"], "kind": ["order"]})
    for solver in ("milp", "greedy"):
        r = phasing.phase(f, links=lk, settings={**TWO_YEARS_100, "solver": solver})
        u = r.unplaced.set_index("bundle_id")
        assert list(u.index) == ["E", "D"]  # unplaced sorted by priority (E 9, D 1)
        assert u.loc["E", "reason_code"] == "over_capacity"
        assert u.loc["D", "reason_code"] == "link" and "须在E之后或同年实施" in u.loc["D", "reason_zh"]


def test_over_capacity_bundle_unplaced_with_reason():
    # X needs 2.5 million of local money; the local capacity is 1, 2 and 1.5 million: no year can hold it.
    f = pd.DataFrame({"bundle_id": ["X", "Y"], "priority": [1.0, 0.5], "central_cny": [3e5, 1e5],
                      "local_cny": [2.5e6, 1e5]})
    s = {"horizon_years": 3, "capacity_cny": {"central": 1e6, "local": [1e6, 2e6, 1.5e6]}}
    for solver in ("milp", "greedy"):
        r = phasing.phase(f, settings={**s, "solver": solver})
        assert list(r.unplaced["bundle_id"]) == ["X"]
        u = r.unplaced.iloc[0]
        assert pd.isna(u["year"]) and u["year_zh"] == "未纳入" and u["reason_code"] == "over_capacity"
        assert u["reason_zh"].startswith("未纳入：市区财政需250.0万元，超过任一年度能力（最高200.0万元）；")
        assert "中央和省级补助" not in u["reason_zh"]  # central fits: only local is named
        assert years(r)["Y"] == 2026 and r.annual["capacity_cny"].tolist() == [1e6, 1e6, 1e6, 2e6, 1e6, 1.5e6]


def test_together_group_over_capacity():
    # together(A, B): 60 + 50 = 110 > 100 in every year → both out, the reason names the group.
    lk = pd.DataFrame({"bundle_a": ["A"], "bundle_b": ["B"], "kind": ["together"]})
    r = phasing.phase(four_bundles(), links=lk, settings=TWO_YEARS_100)
    u = r.unplaced.set_index("bundle_id")
    assert list(u.index) == ["A", "B"] and (u["reason_code"] == "over_capacity").all()
    assert "与B须同批实施，合计" in u.loc["A", "reason_zh"]
    # C and D share the years: {C,D}=70 in 2026 → 2 + 1 = 3
    assert years(r)["C"] == 2026 and years(r)["D"] == 2026 and r.objective == pytest.approx(3.0)


def test_greedy_gap_against_lp_bound():
    rng = np.random.default_rng(3)
    for _ in range(8):
        f, lk = random_instance(rng, 15, links=True)
        s = {"horizon_years": 3, "capacity_share": 0.25, "mip_rel_gap": 0.0}
        exact = phasing.phase(f, links=lk, settings=s)
        greedy = phasing.phase(f, links=lk, settings={**s, "solver": "greedy"})
        assert exact.status == "optimal" and greedy.method == "greedy"
        assert greedy.objective <= exact.objective + 1e-9
        assert greedy.bound == pytest.approx(greedy.lp_bound)
        assert greedy.lp_bound >= exact.objective - 1e-7  # the LP relaxation bounds the optimum
        assert greedy.gap == (greedy.bound - greedy.objective) / greedy.bound
        assert "LP松弛上界" in greedy.status_zh


def test_greedy_on_the_hand_instance():
    # Greedy key = priority ÷ (cost / mean capacity 100): A 4/0.6 = 6.7, B 3/0.5 = 6, C 2/0.4 = 5, D 1/0.3 = 3.3.
    # A → 2026 (60), B → 2026 full? 60+50 > 100 → 2027, C → 2026 (100), D → 2027 (80): A,C | B,D = 8 (optimal here).
    r = phasing.phase(four_bundles(), settings={**TWO_YEARS_100, "solver": "greedy"})
    assert years(r) == {"A": 2026, "C": 2026, "B": 2027, "D": 2027} and r.objective == pytest.approx(8.0)
    # LP bound: fractional items fill both years exactly; ≥ 8 and the gap is (bound − 8) / bound
    assert r.lp_bound >= 8.0 - 1e-9 and r.gap == pytest.approx((r.lp_bound - 8.0) / r.lp_bound)


# ------------------------------------------------------------------------------------------- settings
@pytest.mark.parametrize("overrides, key", [
    ({"horizon": 3}, "horizon"),
    ({"horizon_years": 0}, "phasing.horizon_years"),
    ({"horizon_years": 2.5}, "phasing.horizon_years"),
    ({"solver": "cplex"}, "phasing.solver"),
    ({"time_limit_s": float("nan")}, "phasing.time_limit_s"),
    ({"mip_rel_gap": -0.1}, "phasing.mip_rel_gap"),
    ({"capacity_share": 1.5}, "phasing.capacity_share"),
    ({"capacity_share": {"regional": 0.2}}, "regional"),
    ({"capacity_share": "0.2"}, "phasing.capacity_share"),
    ({"capacity_cny": {"local": [1e8, 1e8]}}, "phasing.capacity_cny.local"),
    ({"capacity_cny": {"local": -5}}, "phasing.capacity_cny.local"),
    ({"capacity_cny": {"local": [1e8, 1e8, float("inf"), 1e8, 1e8]}}, "phasing.capacity_cny.local[2]"),
    ({"weights": {"beauty": 1.0}}, "beauty"),
    ({"weights": {"consent": True}}, "phasing.weights.consent"),
    ({"weights": {k: 0 for k in ("infra", "consent", "illegal_removal", "easy_first", "partner_ready", "base")}},
     "phasing.weights"),
    ({"start_year": 26}, "phasing.start_year"),
    ({"pairing_link": "both"}, "phasing.pairing_link"),
    ({"infra_items": "roads"}, "phasing.infra_items"),
])
def test_settings_errors_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        phasing.load_settings(overrides)


def test_settings_defaults_and_overrides():
    s = phasing.load_settings()
    assert s.start_year is None and s.horizon_years == 5 and s.solver == "milp"
    assert s.capacity_share == {"central": 0.18, "local": 0.18, "total": 0.18} and dict(s.capacity_cny) == {}
    assert sum(s.weights.values()) == pytest.approx(1.0)
    s = phasing.load_settings({"start_year": 2027, "capacity_share": {"local": 0.25}, "capacity_cny": {"central": 5e7},
                               "weights": {"consent": 0.5}})
    assert s.start_year == 2027 and s.capacity_share["local"] == 0.25 and s.capacity_share["central"] == 0.18
    assert s.capacity_cny["central"] == (5e7,) * 5 and s.weights["consent"] == 0.5
    with pytest.raises(ConfigError, match="phasing: expected a table"):
        phasing.load_settings([("horizon_years", 3)])


# ------------------------------------------------------------------------------------------- features
def toy():
    bundles = pd.DataFrame({"bundle_id": ["B2", "B1"]})  # unsorted on purpose
    compounds = pd.DataFrame({
        "compound_id": ["c1", "c2", "c3", "c9"], "bundle_id": ["B1", "B1", "B2", None],
        "households": [100, 300, 200, 50],
        "consent_rate_renovation": [0.6, 1.0, np.nan, 0.1],
        "consent_rate_illegal_removal": [0.9, np.nan, np.nan, 0.1],
    })
    items = pd.DataFrame({
        "compound_id": ["c1", "c1", "c2", "c2", "c3", "c3"],
        "item": ["water_supply", "roof_waterproofing", "roads", "elevator", "gas_supply", "facade_repair"],
        "cost_cny": [100.0, 300.0, 200.0, 400.0, 500.0, 500.0],
    })
    payers = pd.DataFrame({
        "level": ["bundle", "bundle", "compound"], "bundle_id": ["B1", "B2", "B1"], "compound_id": [None, None, "c1"],
        "total_cost_cny": [1200.0, 1000.0, 400.0], "central_cny": [100.0, 80.0, 1.0],
        "provincial_cny": [50.0, 20.0, 1.0], "city_cny": [200.0, 100.0, 1.0], "district_cny": [200.0, 150.0, 1.0],
    })
    pairings = pd.DataFrame({"bundle_id": ["B2"], "project_id": ["P1"], "partner_ready": [False]})
    return bundles, compounds, items, payers, pairings


def test_features_by_hand():
    bundles, compounds, items, payers, pairings = toy()
    f = phasing.bundle_features(bundles, compounds, items=items, payers=payers, pairings=pairings)
    assert list(f.columns) == phasing.FEATURE_COLUMNS
    b1, b2 = f.set_index("bundle_id").loc["B1"], f.set_index("bundle_id").loc["B2"]
    # B1: items 100 + 300 + 200 + 400 = 1000, infra (water 100 + roads 200) = 300 → 0.3; B2: 500 / 1000 = 0.5
    assert b1["renovation_cost_cny"] == 1000.0 and b1["infra_cost_cny"] == 300.0 and b1["infra_share"] == 0.3
    assert b2["infra_share"] == 0.5 and b1["score_infra"] == pytest.approx(0.6) and b2["score_infra"] == 1.0
    # consent B1 = (100 × 0.6 + 300 × 1.0) / 400 = 0.9; illegal removal only c1 surveyed → 0.9; B2 unsurveyed
    assert b1["consent_rate"] == pytest.approx(0.9) and b1["illegal_removal_rate"] == pytest.approx(0.9)
    assert np.isnan(b2["consent_rate"]) and b2["score_consent"] == 0.0
    # payers: B1 central 100 + 50 = 150, local 200 + 200 = 400, total 1200; B2 100 / 250 / 1000
    assert (b1["central_cny"], b1["local_cny"], b1["total_cost_cny"]) == (150.0, 400.0, 1200.0)
    assert (b2["central_cny"], b2["local_cny"], b2["total_cost_cny"]) == (100.0, 250.0, 1000.0)
    assert b1["cost_basis"] == "payers"
    # 先易后难: B2 (1000) rank 1 → score 1; B1 rank 2 → 0. Partner: B2's partner not ready, B1 has none.
    assert (b1["cost_rank"], b2["cost_rank"], b1["score_easy_first"], b2["score_easy_first"]) == (2, 1, 0, 1)
    assert bool(b1["partner_ready"]) and not bool(b2["partner_ready"]) and b2["partner_ids"] == "P1"
    # priority (weights 0.30 / 0.25 / 0.15 / 0.15 / 0.10 / 0.05, Σ = 1):
    # B1 = 0.30×0.6 + 0.25×0.9 + 0.15×0.9 + 0.15×0 + 0.10×1 + 0.05×1 = 0.18+0.225+0.135+0+0.1+0.05 = 0.69
    # B2 = 0.30×1 + 0 + 0 + 0.15×1 + 0.10×0 + 0.05×1 = 0.50
    assert b1["priority"] == pytest.approx(0.69) and b2["priority"] == pytest.approx(0.50)
    assert b1["households"] == 400 and b1["n_compounds"] == 2 and list(f["bundle_id"]) == ["B1", "B2"]
    assert b1["priority_zh"].startswith("优先级0.690 = 基础设施缺失0.30×0.60")
    assert "改造意愿同意率90%（按户加权）" in b1["priority_zh"] and "跨片区合作项目P1未就绪" in b2["priority_zh"]
    assert "改造意愿未调查（按0%计）" in b2["priority_zh"]


def test_features_without_payers_use_total_and_compound_infra():
    bundles = pd.DataFrame({"bundle_id": ["B1", "B2"], "partner_ready": [None, "否"]})
    compounds = pd.DataFrame({"compound_id": ["c1", "c2"], "bundle_id": ["B1", "B2"], "households": [10, 10],
                              "consent_rate": [0.8, 0.7], "cost_cny": [200.0, 400.0],
                              "cost_basic_infra_cny": [50.0, 200.0]})
    f = phasing.bundle_features(bundles, compounds).set_index("bundle_id")
    # total = Σ member cost_cny (no bundle cost column): 200, 400; infra 50/200 = 0.25, 200/400 = 0.5
    assert list(f["total_cost_cny"]) == [200.0, 400.0] and list(f["infra_share"]) == [0.25, 0.5]
    assert f["central_cny"].isna().all() and (f["cost_basis"] == "total").all()
    assert list(f["consent_rate"]) == [0.8, 0.7] and list(f["partner_ready"]) == [True, False]
    r = phasing.phase(f.reset_index())
    assert r.levels == ("total",) and r.annual["capacity_cny"].iloc[0] == pytest.approx(0.18 * 600)


def test_features_errors_name_row_and_field():
    bundles, compounds, items, payers, pairings = toy()
    with pytest.raises(LayerError, match="no bundle row for bundle B2"):
        phasing.bundle_features(bundles, compounds, payers=payers[payers["bundle_id"] != "B2"])
    bad = compounds.assign(households=[100, -3, 200, 50])
    with pytest.raises(LayerError, match=r"compounds row 2 \(id=c2\): households"):
        phasing.bundle_features(bundles, bad)
    with pytest.raises(LayerError, match="bundle_id is duplicated"):
        phasing.bundle_features(pd.DataFrame({"bundle_id": ["B1", "B1"]}), compounds)
    f = four_bundles().assign(priority=[1.0, np.nan, 1.0, 1.0])
    with pytest.raises(LayerError, match=r"features row 2 \(id=B\): priority is empty"):
        phasing.phase(f)
    with pytest.raises(LayerError, match="links row 1: bundle_b 'Z' is no bundle"):
        phasing.phase(four_bundles(), links=pd.DataFrame({"bundle_a": ["A"], "bundle_b": ["Z"], "kind": ["order"]}))
    with pytest.raises(LayerError, match="kind 'after' is not"):
        phasing.phase(four_bundles(), links=pd.DataFrame({"bundle_a": ["A"], "bundle_b": ["B"], "kind": ["after"]}))


# ------------------------------------------------------------------------------------------- links
def test_links_from_pairings_facilities_and_user():
    pairings = pd.DataFrame({"bundle_id": ["B2", "B3", "B5", "B3"], "project_id": ["P6", "P6", "P6", "P1"],
                             "amount_cny": [5e6, 9e6, 9e6, 1e6], "project_name": ["地块出让", "地块出让", "地块出让", "x"]})
    proposed = pd.DataFrame({"facility_id": ["F1", "F2", "F3"], "parcel_id": ["V1", "V1", "V9"],
                             "served_bundle_id": ["B4", "B1", "B2"], "name_zh": ["幼儿园", "菜市场", "公园"]})
    bundles = pd.DataFrame({"bundle_id": ["B1", "B2"], "parcel_ids": ["V1;V2", None]})
    user = pd.DataFrame({"bundle_a": ["B7"], "bundle_b": ["B8"], "kind": ["order"]})
    lk = phasing.links_from(pairings, proposed, bundles, extra=user)
    assert list(lk.columns) == phasing.LINK_COLUMNS
    got = [tuple(r) for r in lk[["bundle_a", "bundle_b", "kind", "source"]].itertuples(index=False)]
    # P6 funds B3 and B5 9 million each (tie → the smaller id B3 anchors), B2 5 million; P1 funds only B3.
    # F1 on V1 (B1's parcel) serves B4 → together; F2 serves its own host; F3's parcel has no bundle.
    assert got == [("B1", "B4", "together", "facility"), ("B3", "B2", "order", "pairing"),
                   ("B3", "B5", "order", "pairing"), ("B7", "B8", "order", "user")]
    assert "共用跨片区项目P6（地块出让）" in lk.loc[1, "reason_zh"] and "900.0万元" in lk.loc[1, "reason_zh"]
    assert "新建设施F1（幼儿园）建在B1、服务B4" in lk.loc[0, "reason_zh"] and lk.loc[3, "reason_zh"] == "用户指定"
    together = phasing.links_from(pairings, settings={"pairing_link": "together"})
    assert set(together["kind"]) == {"together"}
    assert phasing.links_from(pairings, proposed, bundles, settings={"pairing_link": "none",
                                                                     "facility_link": "none"}).empty
    listed = phasing.links_from(proposed=pd.DataFrame({"facility_id": ["F"], "served_bundle_ids": ["B3;B1;B2"]}))
    assert [tuple(r) for r in listed[["bundle_a", "bundle_b", "kind"]].itertuples(index=False)] == [
        ("B3", "B1", "together"), ("B3", "B2", "together")]


def test_order_cycle_means_same_year_and_layer():
    # order A → C and C → A: year(A) ≤ year(C) ≤ year(A) → one year, like a together-link ({A,C} = 100 fits).
    lk = pd.DataFrame({"bundle_a": ["A", "C"], "bundle_b": ["C", "A"], "kind": ["order", "order"]})
    r = phasing.phase(four_bundles(), links=lk, settings=TWO_YEARS_100)
    assert years(r) == {"A": 2026, "C": 2026, "B": 2027, "D": 2027} and r.objective == pytest.approx(8.0)
    layer = phasing.phase_layer(r, pd.DataFrame({"bundle_id": ["D", "A", "B", "C"], "year": 0}))
    assert list(layer["bundle_id"]) == ["A", "B", "C", "D"] and list(layer["year"]) == [2026, 2027, 2026, 2027]


def test_capacity_cny_for_a_level_the_features_lack():
    # central capacity given in CNY, but the features carry only the total cost (no by-payer table)
    with pytest.raises(LayerError, match="central_cny .* given in capacity_cny"):
        phasing.phase(four_bundles(), settings={"capacity_cny": {"central": 1e6}})
    # a total cap beside central / local is honoured: central and local (1 each, 10 a year) never bind, the
    # total cap of 100 gives the hand optimum of 8
    f = four_bundles().assign(central_cny=[1.0, 1.0, 1.0, 1.0], local_cny=[1.0, 1.0, 1.0, 1.0])
    r = phasing.phase(f, settings={**TWO_YEARS_100, "capacity_cny": {"total": 100, "central": 10, "local": 10}})
    assert r.levels == ("central", "local", "total") and r.objective == pytest.approx(8.0)
