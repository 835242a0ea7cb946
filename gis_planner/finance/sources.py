"""The bundles' own money (steps 1–3 of the balance): cost items, funding rules and the compounds' common income.

Amounts are arrays over *rows*: the bundles' member compounds (sorted by bundle, then compound) followed by one
pseudo-row per bundle that carries the bundle-level items (proposed facilities, car parks on vacant parcels).
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from gis_planner.finance.inputs import BalanceInputs, numeric_column
from gis_planner.finance.land import LandUse
from gis_planner.finance.settings import EXTRA_CLASSES, FinanceSettings, FundingRule, cost_classes

__all__ = ["CompoundBalance", "CostItems", "FundingLine", "Members", "bundle_members", "compound_balance",
           "compound_common_income_npv", "cost_items", "funding_lines", "total_of_kind"]


@dataclass(frozen=True)
class Members:
    """The bundles and their member compounds, in ledger order.

    Attributes
    ----------
    bundles : the bundles, ``bundle_id`` as str, sorted by it.
    bundle_ids : their ids in that order.
    compounds : every input compound (a copy; the compounds table of the result).
    in_bundle : per compound, True when its ``bundle_id`` is one of ``bundle_ids``.
    members : the compounds in bundles (``bundle_id``, ``compound_id`` as str), sorted by bundle, compound.
    """

    bundles: gpd.GeoDataFrame
    bundle_ids: list[str]
    compounds: gpd.GeoDataFrame
    in_bundle: pd.Series
    members: gpd.GeoDataFrame

    @property
    def n_members(self) -> int:
        """Number of member compounds (the first rows of every amount array)."""
        return len(self.members)

    @property
    def row_bundles(self) -> np.ndarray:
        """The bundle of every row: the members' bundles, then each bundle's pseudo-row."""
        return np.concatenate([self.members["bundle_id"].to_numpy(object), np.array(self.bundle_ids, dtype=object)])

    def per_bundle(self, row_amounts: np.ndarray) -> pd.Series:
        """Sum of per-row amounts by bundle, indexed by ``bundle_ids`` (0 where a bundle has none)."""
        return pd.Series(row_amounts).groupby(self.row_bundles).sum().reindex(self.bundle_ids, fill_value=0.0)

    def of_members(self, member_amounts: np.ndarray) -> pd.Series:
        """Sum of per-member amounts by bundle, indexed by ``bundle_ids``."""
        return pd.Series(member_amounts).groupby(self.members["bundle_id"].to_numpy()).sum().reindex(
            self.bundle_ids, fill_value=0.0)


def bundle_members(inputs: BalanceInputs) -> Members:
    """The bundles sorted by id and their member compounds (see :class:`Members`)."""
    bundles = inputs.bundles.copy()
    bundles["bundle_id"] = bundles["bundle_id"].astype(str)
    bundles = bundles.sort_values("bundle_id", kind="stable").reset_index(drop=True)
    bundle_ids = bundles["bundle_id"].tolist()
    compounds = inputs.compounds.copy()
    in_bundle = compounds["bundle_id"].notna() & compounds["bundle_id"].astype(str).isin(bundle_ids)
    members = compounds[in_bundle].copy()
    members["bundle_id"] = members["bundle_id"].astype(str)
    members["compound_id"] = members["compound_id"].astype(str)
    members = members.sort_values(["bundle_id", "compound_id"], kind="stable")
    return Members(bundles, bundle_ids, compounds, in_bundle, members)


@dataclass(frozen=True)
class CostItems:
    """Step 1: the cost of every row by cost item.

    Attributes
    ----------
    items : cost item keys: the content classes of ``costs.toml``, then ``facilities`` and ``parking``.
    amounts : CNY, shape (rows, items); × ``cost_factor``.
    households : per row (0 on the bundle pseudo-rows).
    floor_area_m2 : per row, m² (0 on the bundle pseudo-rows).
    """

    items: list[str]
    amounts: np.ndarray
    households: np.ndarray
    floor_area_m2: np.ndarray


def cost_items(members: Members, land: LandUse, settings: FinanceSettings) -> CostItems:
    """Renovation cost by content class per member compound; facilities and car parks per bundle (CNY)."""
    classes = cost_classes()
    items = [*classes, *EXTRA_CLASSES]
    n_members, n_bundles = members.n_members, len(members.bundle_ids)
    amounts = np.zeros((n_members + n_bundles, len(items)))
    for j, cls in enumerate(classes):
        amounts[:n_members, j] = numeric_column(members.members, classes[cls]["column"]) * settings.value(
            "cost_factor")
    bundle_row = {b: n_members + i for i, b in enumerate(members.bundle_ids)}
    facilities, parking = land.bundle_facilities, land.parking
    np.add.at(amounts[:, items.index("facilities")], [bundle_row[b] for b in facilities["bundle_id"]],
              facilities["build_cost_cny"].to_numpy(float))
    np.add.at(amounts[:, items.index("parking")], [bundle_row[b] for b in parking["bundle_id"]],
              parking["parking_build_cny"].to_numpy(float))
    households = np.concatenate([numeric_column(members.members, "households"), np.zeros(n_bundles)])
    floor_area = np.concatenate([numeric_column(members.members, "floor_area_m2"), np.zeros(n_bundles)])
    return CostItems(items, amounts, households, floor_area)


@dataclass(frozen=True)
class FundingLine:
    """One ledger line of a funding rule (or of one payer of a split rule).

    Attributes
    ----------
    item, item_zh : ledger item key (``fund_<rule>`` or ``fund_<rule>_<payer>``) and its Chinese name.
    kind : ``"subsidy"`` or ``"resident"`` (the ledger category).
    basis : how it was computed, in words (rate × basis, classes, share).
    amounts : CNY per row.
    """

    item: str
    item_zh: str
    kind: str
    basis: str
    amounts: np.ndarray


def _rule_basis(rule: FundingRule, rate: float) -> str:
    """The basis text of a funding rule: ``4,000.00 元/户 × 户数 (基础类)``."""
    if rule.basis == "household":
        basis = f"{rate:,.2f} 元/户 × 户数"
    elif rule.basis == "floor_area":
        basis = f"{rate:,.2f} 元/m² × 建筑面积"
    else:
        basis = f"{rate:.1%} × 成本"
    classes = cost_classes()
    names = (classes[c]["name_zh"] if c in classes else EXTRA_CLASSES[c] for c in rule.classes)
    return f"{basis} ({'、'.join(names)})"


def funding_lines(costs: CostItems, settings: FinanceSettings) -> list[FundingLine]:
    """Step 2: the funding rules in file order, each capped by the cost of its classes still unfunded."""
    remaining = costs.amounts.copy()
    lines: list[FundingLine] = []
    for key, rule in settings.funding.items():
        cols = [costs.items.index(c) for c in rule.classes]
        original = costs.amounts[:, cols].sum(axis=1)
        left = remaining[:, cols].sum(axis=1)
        needs = original > 0
        rate = rule.rate * (settings.value("subsidy_factor") if rule.kind == "subsidy" else 1.0)
        if rule.basis == "household":
            raw = costs.households * rate * needs
        elif rule.basis == "floor_area":
            raw = costs.floor_area_m2 * rate * needs
        else:
            raw = original * rate
        amount = np.minimum(raw, left)
        with np.errstate(invalid="ignore", divide="ignore"):
            keep = np.where(left > 0, 1.0 - amount / left, 1.0)
        remaining[:, cols] *= keep[:, None]
        basis = _rule_basis(rule, rate)
        for part, share in (rule.split or {None: 1.0}).items():
            if part is None:
                lines.append(FundingLine(f"fund_{key}", rule.name_zh, rule.kind, basis, amount * share))
            else:
                lines.append(FundingLine(f"fund_{key}_{part}", rule.split_zh.get(part, part), rule.kind,
                                         f"{basis} × {share:.0%}", amount * share))
    return lines


def total_of_kind(lines: list[FundingLine], kind: str, n_rows: int) -> np.ndarray:
    """Per row, the sum of the funding lines of ``kind`` (CNY)."""
    return np.sum([line.amounts for line in lines if line.kind == kind] or [np.zeros(n_rows)], axis=0)


def compound_common_income_npv(members: Members, settings: FinanceSettings, annuity: float) -> np.ndarray:
    """Step 3: NPV (CNY) per member of its common income used for renovation.

    Managed parking, ads, charging and parcel lockers (CNY per year) × ``common_income_share`` ×
    ``revenue_factor`` × the annuity factor.
    """
    compounds, value = members.members, settings.value
    parking = (numeric_column(compounds, "parking_existing") * value("parking_occupancy")
               * (value("compound_parking_fee_cny_month") - value("parking_opex_cny_month")) * 12)
    ads = numeric_column(compounds, "n_buildings") * value("ad_cny_per_building_year")
    charging = numeric_column(compounds, "households") * value("charging_cny_per_household_year")
    lockers = np.full(members.n_members, value("locker_cny_per_compound_year"))
    annual = sum([parking, ads, charging, lockers]) * value("common_income_share") * value("revenue_factor")
    return annual * annuity


@dataclass(frozen=True)
class CompoundBalance:
    """The in-compound balance (小区内自求平衡 test) of each member, CNY.

    Attributes
    ----------
    cost : renovation cost.
    subsidy, resident : funding lines of that kind.
    common_income_npv : NPV of its common income (step 3).
    balance : subsidy + resident + common income − cost (< 0: the bundle covers the gap).
    """

    cost: np.ndarray
    subsidy: np.ndarray
    resident: np.ndarray
    common_income_npv: np.ndarray
    balance: np.ndarray


def compound_balance(costs: CostItems, lines: list[FundingLine], common_income_npv: np.ndarray,
                     n_members: int) -> CompoundBalance:
    """Each member compound's own cost against its funding lines and common income (CNY)."""
    n_rows = len(costs.amounts)
    cost = costs.amounts[:n_members].sum(axis=1)
    subsidy = total_of_kind(lines, "subsidy", n_rows)[:n_members]
    resident = total_of_kind(lines, "resident", n_rows)[:n_members]
    return CompoundBalance(cost, subsidy, resident, common_income_npv,
                           -cost + subsidy + resident + common_income_npv)
