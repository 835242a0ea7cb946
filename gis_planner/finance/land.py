"""Land of the bundles (存量用地): proposed facilities and the use of each attached vacant parcel, with their money."""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from gis_planner.finance.inputs import numeric_column, split_ids
from gis_planner.finance.settings import FinanceSettings, facility_names

__all__ = ["LandUse", "land_use"]

_FACILITY_COLUMNS = ["facility_id", "parcel_id", "bundle_id", "bundle_rule", "facility_type", "facility_type_zh",
                     "build_cost_cny", "annual_income_cny", "income_npv_cny"]
_PARCEL_COLUMNS = ["parcel_id", "bundle_id", "parcel_kind", "owner_type", "area_m2", "use", "use_zh",
                   "facility_ids", "land_value_cny", "land_surplus_cny", "parking_spaces", "parking_build_cny",
                   "parking_annual_cny", "parking_npv_cny", "rule"]
_USE_ZH = {"facility": "新建公共服务设施", "land_sale": "土地出让", "parking": "地面停车场", "none": "暂不利用"}


@dataclass(frozen=True)
class LandUse:
    """Proposed facilities and attached parcels with their bundle, cost and income.

    Attributes
    ----------
    facilities : every proposed facility (``facility_id, parcel_id, bundle_id, bundle_rule, facility_type,
        facility_type_zh, build_cost_cny, annual_income_cny, income_npv_cny``), sorted by ``facility_id``.
        ``bundle_id``: its parcel's bundle (``bundle_rule`` ``parcel``), else the bundle whose compounds it
        serves most (``served``), else None (``district``: booked on the district ledger line 区级统筹).
    parcels : each vacant parcel attached to a bundle and its use (``facility`` / ``land_sale`` / ``parking`` /
        ``none``), land surplus and car-park money (CNY), with the rule that decided the use.
    """

    facilities: pd.DataFrame
    parcels: pd.DataFrame

    @property
    def bundle_facilities(self) -> pd.DataFrame:
        """The proposed facilities that belong to a bundle (their cost and income enter its balance)."""
        return self.facilities[self.facilities["bundle_id"].notna()]

    @property
    def district_facilities(self) -> pd.DataFrame:
        """The proposed facilities of no bundle: their cost is a district-level ledger line (区级统筹)."""
        return self.facilities[self.facilities["bundle_id"].isna()]

    @property
    def parking(self) -> pd.DataFrame:
        """The parcels that become surface car parks."""
        return self.parcels[self.parcels["use"] == "parking"]

    @property
    def land_sales(self) -> pd.DataFrame:
        """The parcels whose land is sold."""
        return self.parcels[self.parcels["use"] == "land_sale"]


def _parcel_owners(bundles: gpd.GeoDataFrame) -> dict[str, str]:
    """parcel_id → the bundle it is attached to (``bundles`` sorted: the first bundle wins a shared parcel)."""
    owners: dict[str, str] = {}
    parcel_lists = bundles.get("parcel_ids", pd.Series([None] * len(bundles)))
    for bundle_id, ids in zip(bundles["bundle_id"], parcel_lists, strict=True):
        for parcel_id in split_ids(ids):
            owners.setdefault(parcel_id, bundle_id)
    return owners


def _proposed_facilities(proposed: gpd.GeoDataFrame | None, owners: dict[str, str], settings: FinanceSettings,
                         annuity: float, known_bundles: tuple[str, ...] = ()) -> pd.DataFrame:
    """Each proposed facility with its bundle, build cost (CNY, × cost factor) and income (CNY/year, NPV)."""
    if proposed is None or not len(proposed):
        return pd.DataFrame({c: pd.Series(dtype=float if c.endswith("cny") else object)
                             for c in _FACILITY_COLUMNS})
    cost_factor, revenue_factor = settings.value("cost_factor"), settings.value("revenue_factor")
    income = settings.facility_income
    fac = pd.DataFrame({"facility_id": proposed["facility_id"].astype(str).to_numpy(),
                        "parcel_id": proposed["parcel_id"].astype(str).to_numpy(),
                        "facility_type": proposed["facility_type"].astype(str).to_numpy()})
    # its parcel's bundle; else the bundle whose compounds it serves most (siting's served_bundle_id, when that
    # bundle exists); else none — then its cost is booked on the district line (区级统筹, see ledger.py)
    bundle_ids = set(owners.values()) | set(known_bundles)
    served = (proposed["served_bundle_id"].to_numpy(dtype=object) if "served_bundle_id" in proposed.columns
              else np.full(len(fac), None, dtype=object))
    fac["bundle_id"] = [owners.get(q) or (str(b) if b is not None and not pd.isna(b) and str(b) in bundle_ids
                                          else None)
                        for q, b in zip(fac["parcel_id"], served, strict=True)]
    fac["bundle_rule"] = np.where([q in owners for q in fac["parcel_id"]], "parcel",
                                  np.where(fac["bundle_id"].notna(), "served", "district"))
    fac["facility_type_zh"] = fac["facility_type"].map(facility_names()).fillna(fac["facility_type"])
    # land bought for a facility (siting's land_cost_cny, when given) is part of its cost
    fac["build_cost_cny"] = (numeric_column(proposed, "build_cost_cny")
                             + numeric_column(proposed, "land_cost_cny")) * cost_factor
    fac["annual_income_cny"] = fac["facility_type"].map(income.annual_cny) * revenue_factor
    fac["income_npv_cny"] = fac["annual_income_cny"] * annuity
    return fac[_FACILITY_COLUMNS].sort_values("facility_id", kind="stable").reset_index(drop=True)


def _parcel_uses(vacant: gpd.GeoDataFrame, owners: dict[str, str], facilities: pd.DataFrame,
                 settings: FinanceSettings, annuity: float) -> pd.DataFrame:
    """Decide each attached parcel's use, in order: facility → land sale → surface parking → none."""
    options = settings.options
    cost_factor, revenue_factor = settings.value("cost_factor"), settings.value("revenue_factor")
    v = vacant[vacant["parcel_id"].astype(str).isin(owners)].copy()
    v["parcel_id"] = v["parcel_id"].astype(str)
    v = v.sort_values("parcel_id", kind="stable")
    out = pd.DataFrame({"parcel_id": v["parcel_id"].to_numpy()})
    out["bundle_id"] = out["parcel_id"].map(owners)
    out["parcel_kind"] = v["kind"].astype(str).to_numpy() if "kind" in v.columns else ""
    out["owner_type"] = v["owner_type"].fillna("unknown").astype(str).to_numpy() if "owner_type" in v.columns \
        else "unknown"
    out["area_m2"] = v.geometry.area.to_numpy()
    value = pd.to_numeric(v["land_value_cny"], errors="coerce").to_numpy(float) if "land_value_cny" in v.columns \
        else np.full(len(v), np.nan)
    out["land_value_cny"] = value
    allowed = v["allowed_uses"].fillna("").astype(str).to_numpy() if "allowed_uses" in v.columns else [""] * len(v)
    on_parcel = facilities.groupby("parcel_id")["facility_id"].agg(";".join) if len(facilities) \
        else pd.Series(dtype=object)
    out["facility_ids"] = [on_parcel.get(q, "") for q in out["parcel_id"]]
    has_facility = out["facility_ids"] != ""
    sale = (~has_facility & (np.nan_to_num(value) > 0) & out["owner_type"].isin(options.land_sale_owner_types)
            & ~out["parcel_kind"].isin(options.land_sale_excluded_kinds))
    spaces = np.floor(out["area_m2"] * settings.value("parking_usable_share")
                      / settings.value("parking_m2_per_space") + 1e-9)
    parking_allowed = np.array(["parking" in [u.strip() for u in a.split(",")] if a.strip() else True
                                for a in allowed])
    annual = (spaces * settings.value("parking_occupancy")
              * (settings.value("lot_parking_fee_cny_month") - settings.value("parking_opex_cny_month")) * 12
              * revenue_factor)
    build = spaces * settings.value("parking_build_cny_per_space") * cost_factor
    worth = annual * annuity > build
    parking_kind = out["parcel_kind"].isin(options.parking_kinds)
    parking = ~has_facility & ~sale & parking_kind & parking_allowed & (spaces > 0) & worth
    out["use"] = np.select([has_facility, sale, parking], ["facility", "land_sale", "parking"], default="none")
    out["use_zh"] = out["use"].map(_USE_ZH)
    out["land_surplus_cny"] = np.where(sale, np.nan_to_num(value) * settings.value("land_net_share")
                                       * revenue_factor, 0.0)
    out["parking_spaces"] = np.where(parking, spaces, 0.0)
    out["parking_build_cny"] = np.where(parking, build, 0.0)
    out["parking_annual_cny"] = np.where(parking, annual, 0.0)
    out["parking_npv_cny"] = np.where(parking, annual * annuity, 0.0)
    why_none = np.where(~parking_kind, "kind not for sale or parking",
                        np.where(~parking_allowed, "allowed_uses exclude parking",
                                 np.where(spaces <= 0, "too small for parking", "parking NPV ≤ build cost")))
    out["rule"] = np.select(
        [has_facility, sale, parking],
        ["U1 facility proposed (public services first [000:51])",
         "U2 land sale: land_value_cny × land_net_share (owner type allows a sale)",
         "U3 surface parking: NPV of fees > build cost"],
        default=np.array([f"U4 none: {w}" for w in why_none], dtype=object))
    return out[_PARCEL_COLUMNS].reset_index(drop=True)


def land_use(bundles: gpd.GeoDataFrame, vacant: gpd.GeoDataFrame | None, proposed: gpd.GeoDataFrame | None,
             settings: FinanceSettings, annuity: float) -> LandUse:
    """Assign proposed facilities and attached parcels to bundles and decide each parcel's use.

    Parameters
    ----------
    bundles : bundles sorted by ``bundle_id`` (str), with ``parcel_ids`` (``;``-joined).
    vacant, proposed : as in :class:`~gis_planner.finance.BalanceInputs`.
    settings : the run's finance settings (parking fees, shares, land-sale rules, scenario factors).
    annuity : annuity factor of the run (:func:`~gis_planner.finance.annuity_factor`), years.

    Returns
    -------
    :class:`LandUse`.
    """
    owners = _parcel_owners(bundles)
    known = tuple(bundles["bundle_id"].astype(str)) if "bundle_id" in bundles.columns else ()
    facilities = _proposed_facilities(proposed, owners, settings, annuity, known)
    if vacant is None or not len(vacant) or not owners:
        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in _PARCEL_COLUMNS}).astype(
            {c: float for c in _PARCEL_COLUMNS if c.endswith(("_cny", "_m2", "spaces"))})
        return LandUse(facilities, empty)
    return LandUse(facilities, _parcel_uses(vacant, owners, facilities, settings, annuity))
