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
from gis_planner.finance.settings import KINDS, MODES, FinanceSettings, hidden_debt_text
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

__all__ = ["BundleBalance", "BundleSources", "balance_bundles", "fat_lean_ratio", "hidden_debt"]


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
    others : funding lines of the other kinds (utilities, property-rights units, social capital), one column per
        kind (``utility``, ``owner_unit``, ``social``), indexed by bundle id.
    """

    total_cost: pd.Series
    subsidy: pd.Series
    resident: pd.Series
    revenue: pd.Series
    land_surplus: pd.Series
    attached_loss: pd.Series
    others: pd.DataFrame

    @property
    def funding(self) -> pd.Series:
        """Every funding line (subsidy + resident + the other kinds), CNY."""
        return self.subsidy + self.resident + self.others.sum(axis=1)

    @property
    def own_balance(self) -> pd.Series:
        """Funding lines + revenue − cost: ≥ 0 passes the 小区内自求平衡 test (mode M1)."""
        return self.funding + self.revenue - self.total_cost

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
    others = pd.DataFrame({kind: members.per_bundle(total_of_kind(lines, kind, n_rows))
                           for kind in KINDS if kind not in ("subsidy", "resident")}, index=pd.Index(bundle_ids))
    return BundleSources(
        total_cost=members.per_bundle(costs.amounts.sum(axis=1)),
        subsidy=members.per_bundle(total_of_kind(lines, "subsidy", n_rows)),
        resident=members.per_bundle(total_of_kind(lines, "resident", n_rows)),
        revenue=members.of_members(common_income_npv) + facility_npv + parking_npv,
        land_surplus=land_surplus, attached_loss=charged, others=others)


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
    funding, revenue, cost, own, land, attached, paired, unfunded = (
        s.to_numpy(dtype=float) for s in (sources.funding, sources.revenue, sources.total_cost,
                                           sources.own_balance, sources.land_surplus, allocation.attached_cny,
                                           allocation.paired_cny, allocation.unfunded_cny))
    attached_ids = partners_attached.reindex(bundle_ids).to_numpy(object)
    cross_ids = partners_cross.reindex(bundle_ids).to_numpy(object)
    values = {
        "own": lambda i: format_wan(funding[i] + revenue[i]), "cost": lambda i: format_wan(cost[i]),
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


def fat_lean_ratio(deficit: pd.Series, allocation: Allocation, surplus: pd.Series) -> pd.DataFrame:
    """The 肥瘦 ratio of each bundle (DOMAIN.md §10.2.6): its partners' surplus ÷ its deficit.

    Parameters
    ----------
    deficit : per bundle (indexed by bundle id), the 瘦 part: cost not covered by subsidies, contributions,
        operating revenue and land (before projects), CNY ≥ 0.
    allocation : where project money went (adjacent and cross-area partners).
    surplus : per project id, its surplus available for balancing (the 肥 part), CNY.

    Returns
    -------
    DataFrame indexed by bundle id: ``lean_deficit_cny``, ``partner_surplus_cny`` (Σ surplus of the distinct
    projects that fund the bundle, adjacent and cross-area, each counted whole even when it is shared) and
    ``fat_lean_ratio`` = partner surplus ÷ deficit (NaN without a deficit: nothing lean to pair). ≥ 1: the fat
    partners could cover the lean part alone; the amounts actually used are ``attached_project_cny`` and
    ``paired_cny``.
    """
    pairs = pd.concat([allocation.attached[["bundle_id", "project_id"]], allocation.cross[["bundle_id", "project_id"]]],
                      ignore_index=True).drop_duplicates()
    fat = pairs["project_id"].map(surplus).fillna(0.0).to_numpy(float) if len(pairs) else np.zeros(0)
    partner = pd.Series(fat, dtype=float).groupby(pairs["bundle_id"].to_numpy()).sum().reindex(
        deficit.index, fill_value=0.0)
    lean = deficit.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(lean.to_numpy() > TOLERANCE_CNY, partner.to_numpy() / lean.to_numpy(), np.nan)
    return pd.DataFrame({"lean_deficit_cny": lean.to_numpy(), "partner_surplus_cny": partner.to_numpy(),
                         "fat_lean_ratio": ratio}, index=deficit.index)


def hidden_debt(members: Members, lines: list[FundingLine], allocation: Allocation, projects: pd.DataFrame,
                settings: FinanceSettings) -> pd.DataFrame:
    """The "no hidden debt" check (不新增隐性债务, DOMAIN.md §6, §10.2.6) of each bundle.

    A bundle is flagged when its balance uses money (> 0.5 CNY) from a revenue project whose kind is in
    ``hidden_debt_project_kinds`` (government-guaranteed or platform financing), adjacent or cross-area, or from a
    funding rule in ``hidden_debt_funding_rules`` (options of ``data/finance.toml``).

    Returns
    -------
    DataFrame indexed by bundle id: ``hidden_debt_cny`` (that money, CNY), ``hidden_debt_flag`` (bool) and
    ``hidden_debt_note`` (``[hidden_debt] text_zh`` naming each source and amount; "" when not flagged).
    """
    options, bundle_ids = settings.options, members.bundle_ids
    parts: list[pd.DataFrame] = []
    kinds = set(options.hidden_debt_project_kinds)
    used = pd.concat([allocation.attached, allocation.cross], ignore_index=True)
    if kinds and len(used) and len(projects):
        kind = used["project_id"].map(projects.set_index("project_id")["project_kind"])
        risky = used[kind.isin(kinds).to_numpy() & (used["amount_cny"] > TOLERANCE_CNY).to_numpy()]
        risky = risky.groupby(["bundle_id", "project_id"], as_index=False)["amount_cny"].sum()
        label = risky["project_id"] + "(" + risky["project_id"].map(
            projects.set_index("project_id")["project_kind"]) + ")"
        parts.append(pd.DataFrame({"bundle_id": risky["bundle_id"], "label": label,
                                   "amount_cny": risky["amount_cny"]}))
    rules = options.hidden_debt_funding_rules
    for rule in rules:
        spec = settings.funding[rule]
        items = {f"fund_{rule}", *(f"fund_{rule}_{part}" for part in (spec.split or {}))}
        for line in lines:
            if line.item in items:
                amount = members.per_bundle(line.amounts)
                amount = amount[amount > TOLERANCE_CNY]
                parts.append(pd.DataFrame({"bundle_id": amount.index, "label": line.item_zh,
                                           "amount_cny": amount.to_numpy()}))
    found = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        {"bundle_id": pd.Series(dtype=object), "label": pd.Series(dtype=object),
         "amount_cny": pd.Series(dtype=float)})
    total = found.groupby("bundle_id")["amount_cny"].sum().reindex(bundle_ids, fill_value=0.0)
    text = hidden_debt_text()["text_zh"]
    found["words"] = found["label"] + " " + found["amount_cny"].map(format_wan)
    words = found.sort_values(["bundle_id", "label"], kind="stable").groupby("bundle_id")["words"].agg("、".join)
    flag = total.to_numpy() > TOLERANCE_CNY
    notes = words.reindex(bundle_ids).to_numpy(object)
    return pd.DataFrame({"hidden_debt_cny": total.to_numpy(), "hidden_debt_flag": flag,
                         "hidden_debt_note": [text.format(items=w) if f else ""
                                              for f, w in zip(flag, notes, strict=True)]},
                        index=pd.Index(bundle_ids))


def _bundles_table(members: Members, land: LandUse, sources: BundleSources, allocation: Allocation,
                   modes: np.ndarray, rules: list[str], bundle_units: pd.Series | None,
                   settings: FinanceSettings, ratio: pd.DataFrame, debt: pd.DataFrame) -> gpd.GeoDataFrame:
    """The bundles with their balance columns (CNY), mode and rule, 肥瘦 ratio and hidden-debt flag."""
    bundle_ids, total_cost, unfunded = members.bundle_ids, sources.total_cost, allocation.unfunded_cny
    out = members.bundles.copy()
    out["facility_cost_cny"] = land.bundle_facilities.groupby("bundle_id")["build_cost_cny"].sum().reindex(
        bundle_ids, fill_value=0.0).to_numpy()
    out["parking_cost_cny"] = land.parking.groupby("bundle_id")["parking_build_cny"].sum().reindex(
        bundle_ids, fill_value=0.0).to_numpy()
    out["total_cost_cny"] = total_cost.to_numpy()
    out["subsidy_cny"] = sources.subsidy.to_numpy()
    out["resident_cny"] = sources.resident.to_numpy()
    for kind in sources.others.columns:  # utility_cny, owner_unit_cny, social_cny
        out[f"{kind}_cny"] = sources.others[kind].to_numpy()
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
    for frame in (ratio, debt):
        for column in frame.columns:
            out[column] = frame[column].reindex(bundle_ids).to_numpy()
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
    costs = cost_items(members, land, settings, inputs.items)                      # 1. cost
    lines = funding_lines(costs, settings, members)                                # 2. funding rules
    common_income = compound_common_income_npv(members, settings, annuity)         # 3. operating revenue
    compounds = compound_balance(costs, lines, common_income, members.n_members)
    pool = project_pool(members, inputs.projects, settings, arcs_memo, inputs.gap_m)  # 5. projects
    losses = attached_losses(pool, settings)
    sources = _bundle_sources(members, land, costs, lines, common_income, losses)  # 4. land (in land_use)
    deficit = (-sources.before_projects).clip(lower=0.0)
    allocation = allocate_projects(deficit, pool, settings)                        # 5.–6. adjacent, pairing
    modes = _balance_modes(sources, allocation)                                    # 7. modes
    rules = _mode_rules(members.bundle_ids, modes, sources, allocation, settings)
    ratio = fat_lean_ratio(deficit, allocation, pool.surplus)                      # 肥瘦 ratio
    debt = hidden_debt(members, lines, allocation, pool.projects, settings)        # 不新增隐性债务
    bundles = _bundles_table(members, land, sources, allocation, modes, rules, pool.bundle_units, settings,
                             ratio, debt)
    return BundleBalance(members, land, costs, lines, compounds, pool, losses, sources, allocation, modes,
                         bundles, annuity)
