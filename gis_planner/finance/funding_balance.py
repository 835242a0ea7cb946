"""The funding balance of a plan (:func:`balance`), its result record and the sensitivity scenarios."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from gis_planner.finance.bundle_balance import BundleBalance, balance_bundles
from gis_planner.finance.inputs import BalanceInputs
from gis_planner.finance.ledger import ledger_table
from gis_planner.finance.money import format_wan
from gis_planner.finance.pairing import TOLERANCE_CNY, pairing_lines
from gis_planner.finance.payers import payer_table
from gis_planner.finance.settings import (
    DEFAULT_SCENARIOS,
    MODES,
    FinanceSettings,
    assumptions_table,
    resolve_settings,
)

__all__ = ["FinanceResult", "balance", "sensitivity"]

_UNFUNDED_NOTE = ("需政府引导多元化投入：以预算内资金、居民和社会资本等补足，不得新增地方政府隐性债务 "
                  "[000:39] [001:231]")


@dataclass
class FinanceResult:
    """Everything the balance stage produced.

    Attributes
    ----------
    bundles : bundles with balance columns (``total_cost_cny, subsidy_cny, resident_cny, utility_cny,
        owner_unit_cny, social_cny, revenue_npv_cny, land_surplus_cny, attached_project_cny, balance_cny,
        paired_cny, unfunded_cny, surplus_cny,
        balance_mode, balance_mode_zh, balance_rule, funded, funded_ratio`` …), the 肥瘦 ratio
        (``lean_deficit_cny, partner_surplus_cny, fat_lean_ratio``) and the 不新增隐性债务 check
        (``hidden_debt_cny, hidden_debt_flag, hidden_debt_note``).
    compounds : the compounds with the in-compound balance (``renovation_cost_cny`` (the cost the balance used),
        ``cost_from_items`` (True: from the item table), ``subsidy_cny, resident_cny, utility_cny, owner_unit_cny,
        social_cny, revenue_npv_cny, compound_balance_cny, self_balanced``) — NaN outside bundles.
    ledger : one row per bundle (or compound) × line item; ``amount_cny`` > 0 money in, < 0 money out; every
        bundle's and every compound's lines sum to zero (the ``residual`` line is the unfunded gap).
    by_payer : the by-payer table (分项出资, :func:`~gis_planner.finance.payers.payer_table`): per bundle, then per
        member compound, ``total_cost_cny``, ``central_cny`` … ``sector_cny`` and ``remainder_cny`` (待平衡缺口).
    pairings : cross-area pairings ``bundle_id, project_id, amount_cny, distance_m`` + project and unit columns
        and the pair's 肥瘦 ratio (``project_surplus_cny, bundle_deficit_cny, fat_lean_ratio``).
    pairings_layer : the pairings as LineStrings from the bundle's representative point to the project's.
    allocations : every project → bundle amount, adjacent (``kind = attached``) and cross-area.
    projects : each revenue project's surplus and where it went.
    parcels : each attached vacant parcel's use (facility / land sale / parking / none) and money.
    proposed : the proposed facilities with the bundle they were assigned to.
    unfunded : bundles still short after pairing, with the amount.
    assumptions : every parameter with source and verified flag (:func:`assumptions_table`).
    summary : one row per balance mode: number of bundles, cost, unfunded.
    settings : the settings used (:class:`FinanceSettings`).
    """

    bundles: gpd.GeoDataFrame
    compounds: gpd.GeoDataFrame
    ledger: pd.DataFrame
    by_payer: pd.DataFrame
    pairings: pd.DataFrame
    pairings_layer: gpd.GeoDataFrame
    allocations: pd.DataFrame
    projects: pd.DataFrame
    parcels: pd.DataFrame
    proposed: pd.DataFrame
    unfunded: pd.DataFrame
    assumptions: pd.DataFrame
    summary: pd.DataFrame
    settings: FinanceSettings

    def summary_text(self) -> str:
        """One line per mode, e.g. ``大片区统筹平衡 (self-balanced as bundle): 2 bundles``, plus the gap."""
        lines = ["资金平衡 funding balance:"]
        for r in self.summary.itertuples(index=False):
            lines.append(f"  {r.balance_mode_zh} ({r.balance_mode_en}): {r.n_bundles} 个片区 bundles, "
                         f"cost {format_wan(r.total_cost_cny)}, unfunded {format_wan(r.unfunded_cny)}")
        total_pair = float(self.pairings["amount_cny"].sum()) if len(self.pairings) else 0.0
        loose = self.proposed[self.proposed["bundle_id"].isna()] if len(self.proposed) else self.proposed
        if len(loose):
            lines.append(f"  区级统筹 district line: {len(loose)} proposed facilities serving no bundle, "
                         f"{format_wan(float(loose['build_cost_cny'].sum()))}: {', '.join(loose['facility_id'])}")
        unfunded = float(self.unfunded["unfunded_cny"].sum()) if len(self.unfunded) else 0.0
        lines.append(f"  跨片区组合 pairings: {len(self.pairings)}, {format_wan(total_pair)}; "
                     f"未落实资金 unfunded: {len(self.unfunded)} bundles, {format_wan(unfunded)}")
        return "\n".join(lines)

    def mode_name_zh(self, mode: str) -> str:
        """The Chinese name of balance mode ``mode`` (the key itself when unknown)."""
        return self.settings.modes[mode].name_zh if mode in self.settings.modes else mode


def balance(
    inputs: BalanceInputs,
    settings: FinanceSettings | Mapping[str, Any] | None = None,
    *,
    costs: dict | None = None,
) -> FinanceResult:
    """Balance each bundle's cost against subsidies, contributions and revenue; pair deficits across areas.

    Steps (every number from ``data/finance.toml`` or ``settings``; each a ledger line):

    1. **Cost** (CNY): renovation cost by content class (the compounds' ``cost_basic_cny`` … from
       ``eligibility.screen``) or, with ``inputs.items``, by renovation item (a compound without rows keeps its
       class columns) + build cost of proposed facilities on the bundle's parcels + surface car parks on its
       parcels; × ``cost_factor``.
    2. **Funding rules** in file order (residents' own items, utilities by asset owner, property-rights units by
       ``property_rights``, central per household, provincial per m², city:district share, sector funds, social
       capital, residents' share …), each capped at the cost of its columns still unfunded; each pays as one
       payer of the by-payer table (``by_payer``).
    3. **Operating revenue** NPV over ``horizon_years`` at ``discount_rate``: the compounds' common income
       (managed parking, ads, charging, lockers) × ``common_income_share``; rents of proposed operating
       facilities; car parks on vacant parcels (built only where the NPV exceeds the build cost).
    4. **Land** of attached parcels: ``land_value_cny × land_net_share`` where the owner type allows a sale and
       no facility is proposed there (parcel use order: facility → land sale → parking → none).
    5. **Adjacent projects** (the bundle's ``project_ids``): their surplus funds the remaining deficits of the
       bundles they are attached to (min-cost flow, split allowed). Loss-making projects are left out unless
       ``charge_attached_losses``.
    6. **Cross-area pairing** (跨片区组合): remaining deficits × project surpluses over arcs to projects NOT
       attached to the bundle (:func:`pairing_arcs`, :func:`solve_pairing`); with ``pair_attached_remainder``
       an adjacent project's remainder may pair elsewhere. Each project's surplus is used once overall.
    7. **Mode** (first rule that holds): M1 小区内自求平衡 if steps 2–3 cover the cost; M2 大片区统筹平衡 if steps
       2–5 do; M3 跨片区组合平衡 if pairing closes the gap; else M4 政府引导的多元化投入 with the unfunded amount
       (to be met by budgeted funds, not new hidden debt). A bundle whose own sources exceed its cost keeps the
       surplus (a negative ``surplus_retained`` line), so its ledger sums to zero.

    Parameters
    ----------
    inputs : the layers (:class:`BalanceInputs`: compounds, bundles, projects, vacant parcels, proposed
        facilities).
    settings : overrides of ``data/finance.toml`` (see :func:`load_settings`), or loaded
        :class:`FinanceSettings`.
    costs : the plan's ``[costs]`` overrides, only to list the unit costs in the assumptions table.

    Returns
    -------
    :class:`FinanceResult`.
    """
    settings = resolve_settings(settings)
    bundle_balance = balance_bundles(inputs, settings)
    return _result(bundle_balance, inputs, settings, costs)


def _compounds_table(bundle_balance: BundleBalance) -> gpd.GeoDataFrame:
    """The input compounds with their in-compound balance (NaN outside bundles)."""
    members, compounds = bundle_balance.members, bundle_balance.compounds
    out = members.compounds.copy()
    columns = {"renovation_cost_cny": compounds.cost, "cost_from_items": bundle_balance.costs.from_items,
               **{f"{kind}_cny": amounts for kind, amounts in compounds.by_kind.items()},
               "revenue_npv_cny": compounds.common_income_npv, "compound_balance_cny": compounds.balance}
    key = out["compound_id"].astype(str)
    for name, values in columns.items():
        out[name] = key.map(pd.Series(values, index=members.members["compound_id"].to_numpy())).where(
            members.in_bundle)
    out["self_balanced"] = (out["compound_balance_cny"] >= -TOLERANCE_CNY).where(members.in_bundle)
    return out


def _projects_used(bundle_balance: BundleBalance) -> pd.DataFrame:
    """Each project's surplus with what its adjacent bundles and cross-area partners used (CNY)."""
    projects, allocation = bundle_balance.pool.projects, bundle_balance.allocation
    if len(projects):
        projects["used_attached_cny"] = projects["project_id"].map(allocation.used_attached).fillna(0.0)
        projects["used_cross_cny"] = projects["project_id"].map(allocation.used_cross).fillna(0.0)
        projects["remaining_cny"] = (projects["surplus_available_cny"] - projects["used_attached_cny"]
                                     - projects["used_cross_cny"]).clip(lower=0.0)
    return projects


def _pairings_table(bundle_balance: BundleBalance, projects: pd.DataFrame) -> pd.DataFrame:
    """The cross-area pairs with the project's kind and name (and both units with ``same_unit``) and the 肥瘦
    ratio of each pair: the project's surplus available ÷ the bundle's deficit before projects (NaN without one)."""
    info = projects.set_index("project_id") if len(projects) else pd.DataFrame()
    pairings = bundle_balance.allocation.cross.copy()
    pairings["kind"] = "cross_area"
    lean = bundle_balance.bundles.set_index("bundle_id")["lean_deficit_cny"]
    fat = bundle_balance.pool.surplus
    pairings["project_surplus_cny"] = pairings["project_id"].map(fat).astype(float).to_numpy()
    pairings["bundle_deficit_cny"] = pairings["bundle_id"].map(lean).astype(float).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        pairings["fat_lean_ratio"] = np.where(pairings["bundle_deficit_cny"] > TOLERANCE_CNY,
                                              pairings["project_surplus_cny"] / pairings["bundle_deficit_cny"],
                                              np.nan)
    if len(info):
        pairings["project_kind"] = pairings["project_id"].map(info["project_kind"])
        pairings["project_name"] = pairings["project_id"].map(info["project_name"])
        if "pairing_unit" in info.columns:
            pairings["bundle_unit"] = pairings["bundle_id"].map(bundle_balance.pool.bundle_units)
            pairings["project_unit"] = pairings["project_id"].map(info["pairing_unit"])
    return pairings


def _summary_tables(bundle_balance: BundleBalance, settings: FinanceSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(unfunded bundles with their gap, one row per balance mode)."""
    bundles, modes = bundle_balance.bundles, bundle_balance.modes
    unfunded = pd.DataFrame(bundles.loc[~bundles["funded"], ["bundle_id", "total_cost_cny", "paired_cny",
                                                             "unfunded_cny"]].copy())
    unfunded["unfunded_share"] = unfunded["unfunded_cny"] / unfunded["total_cost_cny"].where(
        unfunded["total_cost_cny"] > 0)
    unfunded["note"] = _UNFUNDED_NOTE
    total_cost = bundle_balance.sources.total_cost
    paired, gap = bundle_balance.allocation.paired_cny, bundle_balance.allocation.unfunded_cny
    summary = pd.DataFrame({
        "balance_mode": list(MODES),
        "balance_mode_zh": [settings.modes[m].name_zh for m in MODES],
        "balance_mode_en": [settings.modes[m].name_en for m in MODES],
        "n_bundles": [int((modes == m).sum()) for m in MODES],
        "total_cost_cny": [float(total_cost[modes == m].sum()) for m in MODES],
        "paired_cny": [float(paired[modes == m].sum()) for m in MODES],
        "unfunded_cny": [float(gap[modes == m].sum()) for m in MODES],
    })
    return unfunded.reset_index(drop=True), summary


def _result(bundle_balance: BundleBalance, inputs: BalanceInputs, settings: FinanceSettings,
            costs: dict | None) -> FinanceResult:
    """The :class:`FinanceResult` of a bundle balance: compounds, ledger, projects, pairings, summaries."""
    allocation = bundle_balance.allocation
    projects = _projects_used(bundle_balance)
    pairings = _pairings_table(bundle_balance, projects)
    allocations = pd.concat([allocation.attached.assign(kind="attached"), allocation.cross.assign(kind="cross_area")],
                            ignore_index=True).sort_values(["bundle_id", "project_id"], kind="stable")
    unfunded, summary = _summary_tables(bundle_balance, settings)
    ledger = ledger_table(bundle_balance, settings)
    return FinanceResult(
        bundles=bundle_balance.bundles, compounds=_compounds_table(bundle_balance), ledger=ledger,
        by_payer=payer_table(ledger, settings), pairings=pairings.reset_index(drop=True),
        pairings_layer=pairing_lines(pairings, bundle_balance.members.bundles, inputs.projects),
        allocations=allocations.reset_index(drop=True), projects=projects, parcels=bundle_balance.land.parcels,
        proposed=bundle_balance.land.facilities, unfunded=unfunded, assumptions=assumptions_table(settings, costs),
        summary=summary, settings=settings)


def sensitivity(
    inputs: BalanceInputs,
    settings: FinanceSettings | Mapping[str, Any] | None = None,
    scenarios: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    base: FinanceResult | None = None,
) -> pd.DataFrame:
    """Rerun the balance for several scenarios and show which bundles change mode.

    Parameters
    ----------
    inputs, settings : as for :func:`balance` (the base case).
    scenarios : scenario name → settings overrides applied over ``settings`` (absolute values, e.g.
        ``{"cost+10%": {"cost_factor": 1.1}, "revenue-20%": {"revenue_factor": 0.8}}``); default
        :data:`DEFAULT_SCENARIOS` (``[scenarios]`` of ``data/finance.toml``: cost ±10 %, revenue ±20 %).
    base : the result of ``balance(inputs, settings)`` when the caller already has it: its ``bundles`` are
        the base case (not recomputed). None computes it.

    Returns
    -------
    DataFrame ``bundle_id, base`` (the base mode), per scenario ``mode:<name>`` and ``unfunded_cny:<name>``
    (CNY), then ``flipped`` (mode differs in any scenario) and ``flipped_in`` (``;``-joined scenario names).
    """
    scenarios = DEFAULT_SCENARIOS if scenarios is None else scenarios
    settings = resolve_settings(settings)
    arcs_memo: dict = {}   # the bundle × project arcs, shared by the scenarios that do not change them
    base_bundles = base.bundles if base is not None else balance_bundles(inputs, settings, arcs_memo).bundles
    out = pd.DataFrame({"bundle_id": base_bundles["bundle_id"].to_numpy(),
                        "base": base_bundles["balance_mode"].to_numpy(),
                        "unfunded_cny:base": base_bundles["unfunded_cny"].to_numpy()})
    flipped_in: list[list[str]] = [[] for _ in range(len(out))]
    for name, overrides in scenarios.items():
        scenario = balance_bundles(inputs, settings.with_overrides(overrides), arcs_memo).bundles.set_index(
            "bundle_id")
        modes = scenario["balance_mode"].reindex(out["bundle_id"]).to_numpy()
        out[f"mode:{name}"] = modes
        out[f"unfunded_cny:{name}"] = scenario["unfunded_cny"].reindex(out["bundle_id"]).to_numpy()
        for i in np.flatnonzero(modes != out["base"].to_numpy()):
            flipped_in[i].append(name)
    out["flipped"] = [bool(f) for f in flipped_in]
    out["flipped_in"] = [";".join(f) for f in flipped_in]
    return out
