"""The bundles' own money (steps 1–3 of the balance): cost items, funding rules and the compounds' common income.

Amounts are arrays over *rows*: the bundles' member compounds (sorted by bundle, then compound) followed by one
pseudo-row per bundle that carries the bundle-level items (proposed facilities, car parks on vacant parcels).
Costs are columns: one per content class, or, with an item table (``needs.item_list``), one per renovation item
(:func:`cost_items`); funding rules pick columns by class, payer group and item (:func:`funding_lines`).
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from gis_planner._errors import LayerError
from gis_planner.finance.inputs import BalanceInputs, numeric_column, require_columns
from gis_planner.finance.land import LandUse
from gis_planner.finance.settings import (
    EXTRA_CLASSES,
    ITEM_PAYER_GROUPS,
    KINDS,
    FinanceSettings,
    FundingRule,
    canonical_values,
    cost_classes,
    payer_group_names,
    vocabulary_labels,
)

__all__ = ["ITEM_COLUMNS", "CompoundBalance", "CostItems", "FundingLine", "Members", "bundle_members",
           "compound_balance", "compound_common_income_npv", "cost_items", "funding_lines", "rule_columns",
           "rule_rates", "total_of_kind"]

#: columns of the item table the balance reads (``part``, ``item_zh`` optional).
ITEM_COLUMNS = ("compound_id", "item", "class", "payer", "cost_cny")


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
    """Step 1: the cost of every row by cost column.

    Attributes
    ----------
    items : column keys. Without an item table: the content classes of ``costs.toml``, then ``facilities`` and
        ``parking`` (as before item tables). With one: ``item.<key>`` per renovation item present, in item-table
        order (a utility-group item in two columns: ``item.<key>`` its network part, ``item.<key>.civil`` its civil
        works, see ``utility_civil_works_share``); then the content classes when some member has no row in the item
        table (its cost from its class columns, zero for the others); then ``facilities`` and ``parking``.
    amounts : CNY, shape (rows, columns); renovation columns × ``cost_factor``.
    households : per row (0 on the bundle pseudo-rows).
    floor_area_m2 : per row, m² (0 on the bundle pseudo-rows).
    classes : per column, its class (``basic``/``improve``/``upgrade``, or ``facilities``/``parking``).
    parts : per column, the item's part (``main``/``infra``; "" for other columns).
    payers : per column, its payer group (:data:`~gis_planner.finance.settings.ITEM_PAYER_GROUPS`); class,
        facility and car-park columns and the civil works of a utility item are ``general``.
    item_keys : per column, the item key ("" for class, facility and car-park columns).
    names_zh : per column, its Chinese name.
    from_items : per member, True when its renovation cost comes from the item table.
    """

    items: list[str]
    amounts: np.ndarray
    households: np.ndarray
    floor_area_m2: np.ndarray
    classes: list[str]
    parts: list[str]
    payers: list[str]
    item_keys: list[str]
    names_zh: list[str]
    from_items: np.ndarray


def _checked_items(items: pd.DataFrame) -> pd.DataFrame:
    """The item table's columns the balance reads (``compound_id``, ``item`` as text; ``part``, ``item_zh`` filled),
    or :class:`LayerError` naming the first row and field out of range."""
    require_columns(items, "items", ITEM_COLUMNS)
    t = pd.DataFrame({
        "compound_id": items["compound_id"].astype(str).to_numpy(object),
        "item": items["item"].astype(str).str.strip().to_numpy(object),
        "class": items["class"].astype(object).to_numpy(object),
        "part": (items["part"].fillna("").astype(str) if "part" in items.columns else pd.Series("", index=items.index))
        .to_numpy(object),
        "payer": items["payer"].astype(object).to_numpy(object),
        "item_zh": (items["item_zh"].fillna(items["item"]).astype(str) if "item_zh" in items.columns
                    else items["item"].astype(str)).to_numpy(object),
        "cost_cny": pd.to_numeric(items["cost_cny"], errors="coerce").to_numpy(float),
    })
    checks = [("item", t["item"].eq("").to_numpy(), "an empty item key"),
              ("class", ~t["class"].isin(list(cost_classes())).to_numpy(), f"not one of {', '.join(cost_classes())}"),
              ("payer", ~t["payer"].isin(ITEM_PAYER_GROUPS).to_numpy(), f"not one of {', '.join(ITEM_PAYER_GROUPS)}"),
              ("cost_cny", ~(np.isfinite(t["cost_cny"].to_numpy()) & (t["cost_cny"].to_numpy() >= 0)),
               "not a number ≥ 0 (CNY)")]
    for column, bad, words in checks:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            value = items[column].iat[i]
            value = value.item() if isinstance(value, np.generic) else value
            raise LayerError(f"finance: items: compound {t['compound_id'].iat[i]}, item {t['item'].iat[i]!r}: "
                             f"{column} {value!r} is {words}")
    for column in ("class", "payer"):
        n = t.groupby("item", sort=False)[column].nunique()
        if (n > 1).any():
            key = n.index[n > 1][0]
            found = ", ".join(sorted(map(str, t.loc[t["item"] == key, column].unique())))
            raise LayerError(f"finance: items: item {key!r} has several values of {column} ({found})")
    return t


def _class_columns(members: Members, mask: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Column metadata and member amounts (CNY, before ``cost_factor``) of the class columns, for the members in
    ``mask`` (the others 0)."""
    classes = cost_classes()
    amounts = np.column_stack([numeric_column(members.members, spec["column"]) * mask for spec in classes.values()]
                              ) if classes else np.zeros((members.n_members, 0))
    meta = pd.DataFrame({"key": list(classes), "class": list(classes), "part": "", "payer": "general", "item": "",
                         "name_zh": [spec["name_zh"] for spec in classes.values()]})
    return meta, amounts


def _item_columns(members: Members, items: pd.DataFrame, civil_share: float
                  ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Column metadata, member amounts (CNY, before ``cost_factor``) and per member "has rows" of the item
    columns; a utility-group item split into its network part and its civil works (``civil_share``)."""
    t = _checked_items(items)
    ids = members.members["compound_id"].astype(str).to_numpy(object)
    t = t[t["compound_id"].isin(ids)]
    has_rows = pd.Index(ids).isin(t["compound_id"])
    order = list(pd.unique(t["item"]))
    per = t.pivot_table(index="compound_id", columns="item", values="cost_cny", aggfunc="sum", fill_value=0.0,
                        sort=False) if len(t) else pd.DataFrame()
    amounts = per.reindex(index=ids, columns=order, fill_value=0.0).fillna(0.0).to_numpy(float) if order \
        else np.zeros((len(ids), 0))
    meta = t.drop_duplicates("item").set_index("item").loc[order, ["class", "part", "payer", "item_zh"]]
    meta = meta.reset_index().rename(columns={"item_zh": "name_zh"})
    meta.insert(0, "key", "item." + meta["item"])
    utility = meta["payer"].eq("utility").to_numpy()
    if civil_share > 0 and utility.any():
        civil = meta[utility].assign(key=lambda m: m["key"] + ".civil", payer="general",
                                     name_zh=lambda m: m["name_zh"] + "(土建)")
        meta = pd.concat([meta, civil], ignore_index=True)
        amounts = np.column_stack([amounts * np.where(utility, 1.0 - civil_share, 1.0), amounts[:, utility] * civil_share])
    return meta, amounts, has_rows


def cost_items(members: Members, land: LandUse, settings: FinanceSettings,
               items: pd.DataFrame | None = None) -> CostItems:
    """Renovation cost per member compound by content class or by item; facilities and car parks per bundle (CNY).

    Parameters
    ----------
    members, land, settings : the bundles' members, parcel uses, settings.
    items : the item table (``needs.item_list``: ``compound_id, item, class, payer, cost_cny``; optional ``part``,
        ``item_zh``), or None. With it, a member's renovation cost is the sum of its rows' ``cost_cny`` by item;
        a member WITHOUT rows keeps its class cost columns (``cost_basic_cny`` …), so a compound the item table
        does not list is never costed 0 by accident. Rows of compounds outside the bundles are ignored; rows of the
        same compound and item add up.

    Returns
    -------
    :class:`CostItems` (columns as described there).
    """
    n_members, n_bundles = members.n_members, len(members.bundle_ids)
    if items is None:
        meta, member_amounts = _class_columns(members, np.ones(n_members, dtype=bool))
        from_items = np.zeros(n_members, dtype=bool)
    else:
        meta, member_amounts, from_items = _item_columns(members, items, settings.value("utility_civil_works_share"))
        if not from_items.all():
            class_meta, class_amounts = _class_columns(members, ~from_items)
            meta = pd.concat([meta, class_meta], ignore_index=True)
            member_amounts = np.column_stack([member_amounts, class_amounts])
    extra = pd.DataFrame({"key": list(EXTRA_CLASSES), "class": list(EXTRA_CLASSES), "part": "", "payer": "general",
                          "item": "", "name_zh": list(EXTRA_CLASSES.values())})
    meta = pd.concat([meta[extra.columns], extra], ignore_index=True)
    keys = meta["key"].tolist()
    amounts = np.zeros((n_members + n_bundles, len(keys)))
    amounts[:n_members, :member_amounts.shape[1]] = member_amounts * settings.value("cost_factor")
    bundle_row = {b: n_members + i for i, b in enumerate(members.bundle_ids)}
    facilities, parking = land.bundle_facilities, land.parking
    np.add.at(amounts[:, keys.index("facilities")], [bundle_row[b] for b in facilities["bundle_id"]],
              facilities["build_cost_cny"].to_numpy(float))
    np.add.at(amounts[:, keys.index("parking")], [bundle_row[b] for b in parking["bundle_id"]],
              parking["parking_build_cny"].to_numpy(float))
    households = np.concatenate([numeric_column(members.members, "households"), np.zeros(n_bundles)])
    floor_area = np.concatenate([numeric_column(members.members, "floor_area_m2"), np.zeros(n_bundles)])
    return CostItems(keys, amounts, households, floor_area, meta["class"].tolist(), meta["part"].tolist(),
                     meta["payer"].tolist(), meta["item"].tolist(), meta["name_zh"].tolist(), np.asarray(from_items))


@dataclass(frozen=True)
class FundingLine:
    """One ledger line of a funding rule (or of one payer of a split rule).

    Attributes
    ----------
    item, item_zh : ledger item key (``fund_<rule>`` or ``fund_<rule>_<payer>``) and its Chinese name.
    kind : the ledger category (:data:`~gis_planner.finance.settings.KINDS`: ``subsidy``, ``resident``,
        ``utility``, ``owner_unit``, ``social``).
    basis : how it was computed, in words (rate × basis, columns, share).
    amounts : CNY per row.
    payer : the by-payer column it pays as (``central`` … ``sector``, see ``[payers]`` of ``data/finance.toml``).
    """

    item: str
    item_zh: str
    kind: str
    basis: str
    amounts: np.ndarray
    payer: str = ""


def rule_columns(rule: FundingRule, costs: CostItems) -> np.ndarray:
    """The cost columns a funding rule pays for (bool per column): class in ``classes`` and, when given, payer
    group in ``payers`` and item key in ``items``."""
    mask = np.isin(np.asarray(costs.classes, dtype=object), list(rule.classes))
    if rule.payers:
        mask &= np.isin(np.asarray(costs.payers, dtype=object), list(rule.payers))
    if rule.items:
        mask &= np.isin(np.asarray(costs.item_keys, dtype=object), list(rule.items))
    return mask


def rule_rates(rule: FundingRule, members: Members | None, n_rows: int) -> np.ndarray:
    """The rate of a funding rule per row: ``rates`` by the member's ``rate_by`` value (through the field's
    vocabulary), ``rate`` for other or missing values, for bundle pseudo-rows and when the field is absent."""
    rates = np.full(n_rows, float(rule.rate))
    if not rule.rate_by or members is None or rule.rate_by not in members.members.columns or not rule.rates:
        return rates
    keys = canonical_values(pd.Series(list(rule.rates), dtype=object), rule.rate_by)
    table = pd.Series([float(v) for v in rule.rates.values()], index=keys.to_numpy(object))
    table = table[~table.index.duplicated(keep="last")]  # 公房 after public_housing: the later one counts
    values = canonical_values(members.members[rule.rate_by], rule.rate_by)
    rates[:members.n_members] = values.map(table).fillna(float(rule.rate)).to_numpy(float)
    return rates


def _percent_or_amount(rule: FundingRule, rate: float) -> str:
    if rule.basis == "household":
        return f"{rate:,.2f} 元/户"
    if rule.basis == "floor_area":
        return f"{rate:,.2f} 元/m²"
    return f"{rate:.1%}"


def _rule_basis(rule: FundingRule, factor: float, costs: CostItems) -> str:
    """The basis text of a funding rule: ``4,000.00 元/户 × 户数 (基础类)``, ``按产权性质: 直管公房 20.0%、其他 0.0%
    × 成本 (基础类、完善类; 一般项目)``."""
    if rule.rate_by:
        field_zh, names = vocabulary_labels(rule.rate_by)
        listed = [f"{names.get(k, k)} {_percent_or_amount(rule, v * factor)}" for k, v in rule.rates.items()]
        rate = f"按{field_zh}: {'、'.join([*listed, f'其他 {_percent_or_amount(rule, rule.rate * factor)}'])}"
    else:
        rate = _percent_or_amount(rule, rule.rate * factor)
    per = {"household": "户数", "floor_area": "建筑面积", "cost_share": "成本"}[rule.basis]
    classes = cost_classes()
    scope = ["、".join(classes[c]["name_zh"] if c in classes else EXTRA_CLASSES[c] for c in rule.classes)]
    if rule.payers:
        groups = payer_group_names()
        scope.append("、".join(groups.get(g, g) for g in rule.payers))
    if rule.items:
        names_zh = dict(zip(costs.item_keys, costs.names_zh, strict=True))
        scope.append("、".join(names_zh.get(i, i) for i in rule.items))
    return f"{rate} × {per} ({'; '.join(scope)})"


def funding_lines(costs: CostItems, settings: FinanceSettings, members: Members | None = None) -> list[FundingLine]:
    """Step 2: the funding rules in file order, each capped by the cost of its columns still unfunded.

    A rule pays for the columns of :func:`rule_columns` at the rate of :func:`rule_rates` (``members`` gives the
    compound fields a ``rate_by`` reads; None: every row at ``rate``): ``household`` rate × households and
    ``floor_area`` rate × m² where those columns cost anything, ``cost_share`` rate × their original cost; the
    amount is capped by what is left of them, which it reduces in proportion.
    """
    remaining = costs.amounts.copy()
    n_rows = len(costs.amounts)
    lines: list[FundingLine] = []
    for key, rule in settings.funding.items():
        cols = rule_columns(rule, costs)
        original = costs.amounts[:, cols].sum(axis=1)
        left = remaining[:, cols].sum(axis=1)
        needs = original > 0
        factor = settings.value("subsidy_factor") if rule.kind == "subsidy" else 1.0
        rate = rule_rates(rule, members, n_rows) * factor
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
        basis = _rule_basis(rule, factor, costs)
        for part, share in (rule.split or {None: 1.0}).items():
            if part is None:
                lines.append(FundingLine(f"fund_{key}", rule.name_zh, rule.kind, basis, amount * share,
                                         rule.payer_of()))
            else:
                lines.append(FundingLine(f"fund_{key}_{part}", rule.split_zh.get(part, part), rule.kind,
                                         f"{basis} × {share:.0%}", amount * share, rule.payer_of(part)))
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
    by_kind : ledger kind (:data:`~gis_planner.finance.settings.KINDS`) → its funding lines per member.
    common_income_npv : NPV of its common income (step 3).
    balance : every funding line + common income − cost (< 0: the bundle covers the gap).
    """

    cost: np.ndarray
    by_kind: dict[str, np.ndarray]
    common_income_npv: np.ndarray
    balance: np.ndarray

    @property
    def subsidy(self) -> np.ndarray:
        """Fiscal funding lines (kind ``subsidy``) per member."""
        return self.by_kind["subsidy"]

    @property
    def resident(self) -> np.ndarray:
        """Residents' funding lines (kind ``resident``) per member."""
        return self.by_kind["resident"]


def compound_balance(costs: CostItems, lines: list[FundingLine], common_income_npv: np.ndarray,
                     n_members: int) -> CompoundBalance:
    """Each member compound's own cost against its funding lines (every kind) and common income (CNY)."""
    n_rows = len(costs.amounts)
    cost = costs.amounts[:n_members].sum(axis=1)
    by_kind = {kind: total_of_kind(lines, kind, n_rows)[:n_members] for kind in KINDS}
    return CompoundBalance(cost, by_kind, common_income_npv, -cost + sum(by_kind.values()) + common_income_npv)
