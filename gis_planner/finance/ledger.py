"""The ledger (资金台账): one row per bundle (or compound) × line item; each bundle's and compound's lines sum to 0."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from gis_planner.finance.bundle_balance import BundleBalance
from gis_planner.finance.pairing import TOLERANCE_CNY
from gis_planner.finance.settings import FinanceSettings, cost_classes

__all__ = ["CATEGORY_ZH", "LEDGER_COLUMNS", "ledger_table"]

#: ledger category → Chinese name (the 类别 column).
CATEGORY_ZH = {
    "cost": "成本", "subsidy": "财政补助", "resident": "居民出资", "utility": "专营单位出资",
    "owner_unit": "产权单位出资", "social": "社会资本投入", "operating": "经营性收益",
    "land": "存量用地收益", "project": "相邻项目收益", "pairing": "跨片区组合收益", "surplus": "结余",
    "residual": "政府引导兜底(待筹)", "transfer": "小区与片区间划转", "district": "区级统筹",
}
#: columns of :attr:`FinanceResult.ledger <gis_planner.finance.FinanceResult.ledger>`.
LEDGER_COLUMNS = ["level", "bundle_id", "compound_id", "line", "item", "item_zh", "category", "category_zh",
                  "partner_id", "basis", "amount_cny"]
_CLASS_BASIS = "建筑面积 × 单位造价 (costs.toml)"
_ITEM_BASIS = "改造项目清单: Σ 数量 × 单价"
_MIXED_BASIS = "改造项目清单: Σ 数量 × 单价; 无清单的小区: 建筑面积 × 单位造价 (costs.toml)"
_OPERATING_ZH = "小区公共收益现值(停车、广告、充电、快递柜)"


class _Lines:
    """Collects ledger lines (each call one block of rows, arrays or scalars broadcast)."""

    def __init__(self) -> None:
        self.blocks: list[pd.DataFrame] = []

    def add(self, level: str, bundle_id: Any, compound_id: Any, item: str, item_zh: Any, category: str,
            amount_cny: Any, partner_id: Any = None, basis: Any = "") -> None:
        self.blocks.append(pd.DataFrame({"level": level, "bundle_id": bundle_id, "compound_id": compound_id,
                                         "item": item, "item_zh": item_zh, "category": category,
                                         "partner_id": partner_id, "basis": basis, "amount_cny": amount_cny}))

    def add_per_row(self, table: pd.DataFrame, item: str, item_zh: Any, category: str, amount_cny: np.ndarray,
                    partner_column: str, basis: Any) -> None:
        """One bundle line per row of ``table`` (bundle from its ``bundle_id``, partner from ``partner_column``)."""
        self.add("bundle", table["bundle_id"].to_numpy(object), None, item, item_zh, category, amount_cny,
                 table[partner_column].to_numpy(object), basis)


def _cost_lines(lines: _Lines, balance: BundleBalance, settings: FinanceSettings) -> None:
    """Renovation cost by class (bundles and compounds), proposed facilities and car parks (bundles)."""
    members, amounts = balance.members, balance.costs.amounts
    bundle_ids = np.array(members.bundle_ids, dtype=object)
    member_bundles = members.members["bundle_id"].to_numpy(object)
    member_ids = members.members["compound_id"].to_numpy(object)
    n_members = members.n_members
    classes = cost_classes()
    # per member: from the item table or from the class columns; per bundle: all, none or some members from items
    from_items = balance.costs.from_items
    compound_basis = np.where(from_items, _ITEM_BASIS, _CLASS_BASIS).astype(object)
    share = pd.Series(from_items.astype(float)).groupby(member_bundles).mean().reindex(bundle_ids, fill_value=0.0)
    bundle_basis = np.select([share.to_numpy() >= 1.0, share.to_numpy() > 0.0], [_ITEM_BASIS, _MIXED_BASIS],
                             _CLASS_BASIS).astype(object)
    column_classes = np.asarray(balance.costs.classes, dtype=object)
    for cls in classes:  # one line per content class: the sum of its columns (classes or items)
        class_cost = amounts[:, column_classes == cls].sum(axis=1)
        item_zh = f"{classes[cls]['name_zh']}改造费用"
        lines.add("bundle", bundle_ids, None, f"cost_{cls}", item_zh, "cost",
                  -members.per_bundle(class_cost).to_numpy(), basis=bundle_basis)
        lines.add("compound", member_bundles, member_ids, f"cost_{cls}", item_zh, "cost", -class_cost[:n_members],
                  basis=compound_basis)
    facilities, parking = balance.land.bundle_facilities, balance.land.parking
    if len(facilities):
        lines.add_per_row(facilities, "cost_facility",
                          ("新建设施建设费用(" + facilities["facility_type_zh"] + ")").to_numpy(object), "cost",
                          -facilities["build_cost_cny"].to_numpy(float), "facility_id",
                          "build_cost_cny (+ land_cost_cny)")
    if len(parking):
        per_space = f"{settings.value('parking_build_cny_per_space'):,.0f} 元"
        lines.add_per_row(parking, "cost_parking", "停车场建设费用", "cost",
                          -parking["parking_build_cny"].to_numpy(float), "parcel_id",
                          (parking["parking_spaces"].map(lambda s: f"{s:.0f} 个车位 × ") + per_space).to_numpy(object))


def _income_lines(lines: _Lines, balance: BundleBalance, settings: FinanceSettings) -> None:
    """Funding rules, operating revenue (compounds, facilities, car parks) and land sales."""
    members, value = balance.members, settings.value
    bundle_ids = np.array(members.bundle_ids, dtype=object)
    member_bundles = members.members["bundle_id"].to_numpy(object)
    member_ids = members.members["compound_id"].to_numpy(object)
    n_members = members.n_members
    for line in balance.funding:
        lines.add("bundle", bundle_ids, None, line.item, line.item_zh, line.kind,
                  members.per_bundle(line.amounts).to_numpy(), basis=line.basis)
        lines.add("compound", member_bundles, member_ids, line.item, line.item_zh, line.kind,
                  line.amounts[:n_members], basis=line.basis)
    discounting = (f"{value('discount_rate'):.1%} 折现 {int(value('horizon_years'))} 年 "
                   f"(年金系数 {balance.annuity:.4f})")
    common_basis = (f"(停车 {value('compound_parking_fee_cny_month'):.0f}−{value('parking_opex_cny_month'):.0f} "
                    f"元/月 × {value('parking_occupancy'):.0%} + 广告 + 充电 + 快递柜) × "
                    f"{value('common_income_share'):.0%}, {discounting}")
    common_npv = balance.compounds.common_income_npv
    lines.add("bundle", bundle_ids, None, "revenue_compound_ops", _OPERATING_ZH, "operating",
              members.of_members(common_npv).to_numpy(), basis=common_basis)
    lines.add("compound", member_bundles, member_ids, "revenue_compound_ops", _OPERATING_ZH, "operating",
              common_npv, basis=common_basis)
    facilities, parking, sales = balance.land.bundle_facilities, balance.land.parking, balance.land.land_sales

    def per_year(annual_cny: pd.Series) -> np.ndarray:
        return annual_cny.map(lambda a: f"{a:,.0f} 元/年, {discounting}").to_numpy(object)

    if len(facilities):
        lines.add_per_row(facilities, "revenue_facility_ops",
                          ("经营性设施收益现值(" + facilities["facility_type_zh"] + ")").to_numpy(object), "operating",
                          facilities["income_npv_cny"].to_numpy(float), "facility_id",
                          per_year(facilities["annual_income_cny"]))
    if len(parking):
        lines.add_per_row(parking, "revenue_parking", "停车场经营收益现值",
                          "operating", parking["parking_npv_cny"].to_numpy(float), "parcel_id",
                          per_year(parking["parking_annual_cny"]))
    if len(sales):
        lines.add_per_row(sales, "land_surplus", "存量用地出让净收益", "land",
                          sales["land_surplus_cny"].to_numpy(float), "parcel_id",
                          f"land_value_cny × {value('land_net_share'):.0%}")


def _project_lines(lines: _Lines, balance: BundleBalance) -> None:
    """Adjacent losses and surpluses, cross-area pairing, retained surplus, the residual gap, transfers."""
    losses, allocation = balance.losses, balance.allocation
    if losses:
        lines.add("bundle", np.array([loss.bundle_id for loss in losses], dtype=object), None,
                  "project_attached_loss", "相邻亏损项目分摊", "project",
                  np.array([loss.amount_cny for loss in losses]),
                  np.array([loss.project_id for loss in losses], dtype=object), "net_revenue_cny < 0, split equally")
    attached, cross = allocation.attached, allocation.cross
    if len(attached):
        lines.add_per_row(attached, "project_attached", "相邻项目收益统筹",
                          "project", attached["amount_cny"].to_numpy(float), "project_id",
                          attached["distance_m"].map(lambda d: f"大片区统筹, 距离 {d:,.0f} m").to_numpy(object))
    if len(cross):
        lines.add_per_row(cross, "pairing_income", "跨片区组合收益", "pairing",
                          cross["amount_cny"].to_numpy(float), "project_id",
                          cross["distance_m"].map(lambda d: f"跨片区组合, 直线距离 {d:,.0f} m").to_numpy(object))
    surplus_kept = balance.sources.surplus_kept
    kept = surplus_kept[surplus_kept > TOLERANCE_CNY]
    if len(kept):
        lines.add("bundle", kept.index.to_numpy(object), None, "surplus_retained", "结余(留作长效管理)", "surplus",
                  -kept.to_numpy(float), basis="自有资金超过成本的部分")
    unfunded = allocation.unfunded_cny
    gap = unfunded[unfunded > 0]
    if len(gap):
        lines.add("bundle", gap.index.to_numpy(object), None, "government_residual", "政府引导多元化投入(待筹缺口)",
                  "residual", gap.to_numpy(float), basis="组合平衡后仍未落实; 不得新增隐性债务")
    members, compound_balance = balance.members.members, balance.compounds.balance
    lines.add("compound", members["bundle_id"].to_numpy(object), members["compound_id"].to_numpy(object),
              "transfer_bundle", np.where(compound_balance < 0, "缺口由片区统筹", "结余转入片区统筹"), "transfer",
              -compound_balance, basis="小区内自求平衡检验后的差额")


def _district_lines(lines: _Lines, balance: BundleBalance) -> None:
    """Proposed facilities of no bundle: their cost and the district funds (区级统筹) that must carry it.

    Level ``district`` (no bundle, no compound); the two lines of each facility sum to zero like every other
    ledger unit, so the facility's cost is in the ledger rather than in no one's.
    """
    loose = balance.land.district_facilities
    if not len(loose):
        return
    ids = loose["facility_id"].to_numpy(object)
    cost = loose["build_cost_cny"].to_numpy(float)
    item_zh = ("新建设施建设费用(" + loose["facility_type_zh"] + ", 区级统筹)").to_numpy(object)
    lines.add("district", None, None, "cost_facility", item_zh, "cost", -cost, ids,
              "build_cost_cny (+ land_cost_cny); 设施所在地块及其服务的小区均不属任何片区")
    lines.add("district", None, None, "fund_district", "区级统筹资金(待落实)", "district", cost, ids,
              "区级财政或统筹资金承担, 待落实")


def ledger_table(balance: BundleBalance, settings: FinanceSettings) -> pd.DataFrame:
    """Ledger rows per bundle × line item and per compound × line item (each sums to zero).

    Parameters
    ----------
    balance : the bundles' balance (:func:`~gis_planner.finance.bundle_balance.balance_bundles`).
    settings : the settings it used (for the basis texts).

    Returns
    -------
    DataFrame :data:`LEDGER_COLUMNS`: bundle rows first, then compound rows, each by bundle (and compound) and
    line number, then district rows (proposed facilities of no bundle, 区级统筹: the facility id in
    ``partner_id``); ``amount_cny`` > 0 money in, < 0 money out.
    """
    lines = _Lines()
    _cost_lines(lines, balance, settings)
    _income_lines(lines, balance, settings)
    _project_lines(lines, balance)
    _district_lines(lines, balance)
    blocks = [block for block in lines.blocks if len(block)]
    if not blocks:  # no bundle (no eligible compound): an empty ledger with its columns
        return pd.DataFrame({c: pd.Series(dtype=float if c == "amount_cny" else object) for c in LEDGER_COLUMNS})
    ledger = pd.concat(blocks, ignore_index=True)
    ledger["amount_cny"] = ledger["amount_cny"].astype(float)
    ledger["category_zh"] = ledger["category"].map(CATEGORY_ZH)
    ledger["_level"] = ledger["level"].map({"bundle": 0, "compound": 1, "district": 2})
    ledger["line"] = ledger.groupby(["level", "bundle_id", "compound_id"], dropna=False).cumcount() + 1
    ledger = ledger.sort_values(["_level", "bundle_id", "compound_id", "line"], kind="stable", na_position="first")
    return ledger[LEDGER_COLUMNS].reset_index(drop=True)
