"""The balance of each bundle (steps 1–7): own sources, land, adjacent projects, pairing, and the balance mode."""

from __future__ import annotations

import string
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from gis_planner.finance.inputs import BalanceInputs
from gis_planner.finance.land import LandUse, land_use
from gis_planner.finance.money import format_wan
from gis_planner.finance.pairing import TOLERANCE_CNY
from gis_planner.finance.projects import (
    Allocation,
    AttachedLoss,
    ProjectPool,
    allocate_projects,
    attached_losses,
    project_pool,
)
from gis_planner.finance.settings import MODES, FinanceSettings
from gis_planner.finance.sources import (
    CompoundBalance,
    CostItems,
    FundingLine,
    Members,
    bundle_members,
    compound_balance,
    compound_common_income_npv,
    cost_items,
    funding_lines,
    total_of_kind,
)

__all__ = ["BundleBalance", "BundleSources", "balance_bundles"]


@dataclass(frozen=True)
class BundleSources:
    """Each bundle's money before projects, CNY, indexed by bundle id.

    Attributes
    ----------
    total_cost : renovation + facilities + car parks.
    subsidy, resident : funding lines of that kind.
    revenue : NPV of the compounds' common income, facility rents and car-park fees.
    land_surplus : net income of land sales.
    attached_loss : losses of adjacent projects charged to the bundle (≤ 0).
    """

    total_cost: pd.Series
    subsidy: pd.Series
    resident: pd.Series
    revenue: pd.Series
    land_surplus: pd.Series
    attached_loss: pd.Series

    @property
    def own_balance(self) -> pd.Series:
        """Subsidy + resident + revenue − cost: ≥ 0 passes the 小区内自求平衡 test (mode M1)."""
        return self.subsidy + self.resident + self.revenue - self.total_cost

    @property
    def before_projects(self) -> pd.Series:
        """Own balance + land + charged losses: what adjacent projects and pairing must cover when < 0."""
        return self.own_balance + self.land_surplus + self.attached_loss

    @property
    def surplus_kept(self) -> pd.Series:
        """The surplus a bundle keeps (own sources and land beyond its cost), ≥ 0."""
        return self.before_projects.clip(lower=0.0)


@dataclass(frozen=True)
class BundleBalance:
    """Every intermediate result of the balance, for the ledger and the result tables.

    Attributes
    ----------
    members : bundles and member compounds (:class:`~gis_planner.finance.sources.Members`).
    land : proposed facilities and parcel uses.
    costs : cost items per row.
    funding : the funding lines.
    compounds : the in-compound balance of the members.
    pool : projects and arcs.
    losses : adjacent losses charged.
    sources : per-bundle sums before projects.
    allocation : adjacent and cross-area project money.
    modes : balance mode key per bundle (order of ``members.bundle_ids``).
    bundles : the bundles table with the balance columns (``total_cost_cny`` … ``balance_rule``).
    annuity : the annuity factor used, years.
    """

    members: Members
    land: LandUse
    costs: CostItems
    funding: list[FundingLine]
    compounds: CompoundBalance
    pool: ProjectPool
    losses: list[AttachedLoss]
    sources: BundleSources
    allocation: Allocation
    modes: np.ndarray
    bundles: gpd.GeoDataFrame
    annuity: float


def _bundle_sources(members: Members, land: LandUse, costs: CostItems, lines: list[FundingLine],
                    common_income_npv: np.ndarray, losses: list[AttachedLoss]) -> BundleSources:
    n_rows, bundle_ids = len(costs.amounts), members.bundle_ids
    facilities, parking = land.bundle_facilities, land.parking
    facility_npv = facilities.groupby("bundle_id")["income_npv_cny"].sum().reindex(bundle_ids, fill_value=0.0)
    parking_npv = parking.groupby("bundle_id")["parking_npv_cny"].sum().reindex(bundle_ids, fill_value=0.0)
    land_surplus = land.land_sales.groupby("bundle_id")["land_surplus_cny"].sum().reindex(bundle_ids,
                                                                                           fill_value=0.0)
    charged = pd.Series(0.0, index=bundle_ids)
    for loss in losses:
        charged[loss.bundle_id] += loss.amount_cny
    return BundleSources(
        total_cost=members.per_bundle(costs.amounts.sum(axis=1)),
        subsidy=members.per_bundle(total_of_kind(lines, "subsidy", n_rows)),
        resident=members.per_bundle(total_of_kind(lines, "resident", n_rows)),
        revenue=members.of_members(common_income_npv) + facility_npv + parking_npv,
        land_surplus=land_surplus, attached_loss=charged)


def _balance_modes(sources: BundleSources, allocation: Allocation) -> np.ndarray:
    """Step 7: the first mode whose test holds (M1 own sources, M2 + land and adjacent projects, M3 + pairing)."""
    deficit = (-sources.before_projects).clip(lower=0.0)
    return np.select([sources.own_balance.to_numpy() >= -TOLERANCE_CNY,
                      (deficit - allocation.attached_cny).to_numpy() <= TOLERANCE_CNY,
                      allocation.unfunded_cny.to_numpy() <= TOLERANCE_CNY], list(MODES[:3]), default=MODES[3])


def _mode_rules(bundle_ids: list[str], modes: np.ndarray, sources: BundleSources, allocation: Allocation,
                settings: FinanceSettings) -> list[str]:
    """The rule text of each bundle's mode, its ``text_zh`` filled with the bundle's amounts (万元)."""
    partners_attached = allocation.attached.groupby("bundle_id")["project_id"].agg(lambda s: "、".join(s))
    partners_cross = allocation.cross.groupby("bundle_id")["project_id"].agg(lambda s: "、".join(s))
    # plain arrays (no per-bundle Series lookups); each template only formats the fields it names
    subsidy, resident, revenue, cost, own, land, attached, paired, unfunded = (
        s.to_numpy(dtype=float) for s in (sources.subsidy, sources.resident, sources.revenue, sources.total_cost,
                                           sources.own_balance, sources.land_surplus, allocation.attached_cny,
                                           allocation.paired_cny, allocation.unfunded_cny))
    attached_ids = partners_attached.reindex(bundle_ids).to_numpy(object)
    cross_ids = partners_cross.reindex(bundle_ids).to_numpy(object)
    values = {
        "own": lambda i: format_wan(subsidy[i] + resident[i] + revenue[i]), "cost": lambda i: format_wan(cost[i]),
        "gap": lambda i: format_wan(max(-own[i], 0)), "land": lambda i: format_wan(land[i]),
        "projects": lambda i: attached_ids[i] if isinstance(attached_ids[i], str) else "—",
        "attached": lambda i: format_wan(attached[i]),
        "partners": lambda i: cross_ids[i] if isinstance(cross_ids[i], str) else "—",
        "paired": lambda i: format_wan(paired[i]), "unfunded": lambda i: format_wan(unfunded[i]),
        "share": lambda i: f"{unfunded[i] / cost[i]:.1%}" if cost[i] > 0 else "—",
    }
    fields = {k: {f.split(".")[0].split("[")[0] for _, f, _, _ in string.Formatter().parse(m.text_zh) if f}
              for k, m in settings.modes.items()}
    rules = []
    for i, key in enumerate(modes):
        mode = settings.modes[key]
        text = mode.text_zh.format(**{f: values[f](i) for f in fields[key]})
        if key == "cross_area" and attached[i] > 0:
            text += f"（另有相邻项目 {attached_ids[i]} {format_wan(attached[i])}）"
        if key == "government_led" and paired[i] > 0:
            text += f"（已组合 {cross_ids[i]} {format_wan(paired[i])}）"
        rules.append(f"{mode.rule_id} {mode.name_zh}: {text}")
    return rules


def _bundles_table(members: Members, land: LandUse, sources: BundleSources, allocation: Allocation,
                   modes: np.ndarray, rules: list[str], bundle_units: pd.Series | None,
                   settings: FinanceSettings) -> gpd.GeoDataFrame:
    """The bundles with their balance columns (CNY), mode and rule."""
    bundle_ids, total_cost, unfunded = members.bundle_ids, sources.total_cost, allocation.unfunded_cny
    out = members.bundles.copy()
    out["facility_cost_cny"] = land.bundle_facilities.groupby("bundle_id")["build_cost_cny"].sum().reindex(
        bundle_ids, fill_value=0.0).to_numpy()
    out["parking_cost_cny"] = land.parking.groupby("bundle_id")["parking_build_cny"].sum().reindex(
        bundle_ids, fill_value=0.0).to_numpy()
    out["total_cost_cny"] = total_cost.to_numpy()
    out["subsidy_cny"] = sources.subsidy.to_numpy()
    out["resident_cny"] = sources.resident.to_numpy()
    out["revenue_npv_cny"] = sources.revenue.to_numpy()
    out["land_surplus_cny"] = sources.land_surplus.to_numpy()
    out["attached_project_cny"] = (allocation.attached_cny + sources.attached_loss).to_numpy()
    out["balance_cny"] = (sources.before_projects + allocation.attached_cny).to_numpy()
    out["paired_cny"] = allocation.paired_cny.to_numpy()
    out["unfunded_cny"] = unfunded.to_numpy()
    out["surplus_cny"] = sources.surplus_kept.to_numpy()
    out["funded"] = unfunded.to_numpy() <= TOLERANCE_CNY
    with np.errstate(invalid="ignore", divide="ignore"):
        out["funded_ratio"] = np.where(total_cost > 0, 1.0 - unfunded / total_cost, 1.0)
    out["balance_mode"] = modes
    out["balance_mode_zh"] = [settings.modes[m].name_zh for m in modes]
    out["balance_rule"] = rules
    if bundle_units is not None:
        out["pairing_unit"] = out["bundle_id"].map(bundle_units).to_numpy()
    return out


def balance_bundles(inputs: BalanceInputs, settings: FinanceSettings,
                    arcs_memo: dict | None = None) -> BundleBalance:
    """Steps 1–7 of :func:`~gis_planner.finance.balance` on loaded settings, up to the bundles table.

    ``arcs_memo`` (one dict per set of input layers) keeps the pairing arcs between calls (sensitivity).
    """
    inputs.check()
    annuity = settings.annuity_factor()
    members = bundle_members(inputs)
    land = land_use(members.bundles, inputs.vacant, inputs.proposed, settings, annuity)
    costs = cost_items(members, land, settings)                                    # 1. cost
    lines = funding_lines(costs, settings)                                         # 2. funding rules
    common_income = compound_common_income_npv(members, settings, annuity)         # 3. operating revenue
    compounds = compound_balance(costs, lines, common_income, members.n_members)
    pool = project_pool(members, inputs.projects, settings, arcs_memo)              # 5. projects
    losses = attached_losses(pool, settings)
    sources = _bundle_sources(members, land, costs, lines, common_income, losses)  # 4. land (in land_use)
    deficit = (-sources.before_projects).clip(lower=0.0)
    allocation = allocate_projects(deficit, pool, settings)                        # 5.–6. adjacent, pairing
    modes = _balance_modes(sources, allocation)                                    # 7. modes
    rules = _mode_rules(members.bundle_ids, modes, sources, allocation, settings)
    bundles = _bundles_table(members, land, sources, allocation, modes, rules, pool.bundle_units, settings)
    return BundleBalance(members, land, costs, lines, compounds, pool, losses, sources, allocation, modes,
                         bundles, annuity)
