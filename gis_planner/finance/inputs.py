"""The layers the funding balance reads (one record shared by ``balance`` and ``sensitivity``) and column helpers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from gis_planner._errors import LayerError

__all__ = ["BalanceInputs", "numeric_column", "require_columns", "split_ids"]


@dataclass(frozen=True)
class BalanceInputs:
    """The layers of one funding balance (all in the same metric CRS).

    Attributes
    ----------
    compounds : compounds after ``eligibility.screen`` and ``bundling.bundle`` (``compound_id``, ``bundle_id``,
        ``households``, ``floor_area_m2``, the class cost columns ``cost_basic_cny`` …; optional
        ``parking_existing``, ``n_buildings``, ``subdistrict``/``community``/``district``).
    bundles : bundles of ``bundling.bundle`` (``bundle_id``, ``parcel_ids``, ``project_ids``, geometry).
    projects : revenue projects (``project_id``, ``net_revenue_cny``; optional ``kind``, ``name``,
        ``capex_cny``), or None.
    vacant : vacant parcels (``parcel_id``; optional ``kind``, ``owner_type``, ``land_value_cny``,
        ``allowed_uses``), or None.
    proposed : proposed facilities (``facility_id, parcel_id, facility_type, build_cost_cny``; an optional
        ``land_cost_cny`` is added to the cost), or None; each goes to the bundle its parcel is attached to (the
        first by ``bundle_id`` if several), else to none.
    gap_m : the adjacency gap ``bundling.bundle`` used (plan.toml ``[bundling] gap_m``), metres: projects within
        it of a bundle are adjacent partners, never cross-area ones; None = ``gap_m`` of
        ``bundling.load_settings()``.
    items : the item table (``needs.item_list``: one row per compound × renovation item, ``compound_id, item,
        class, payer, cost_cny``; optional ``part``, ``item_zh``), or None. With it the renovation cost is one column
        per item (funding rules may pick items and payer groups); a compound without rows keeps its class cost
        columns. None: one column per content class from the compounds' ``cost_*_cny`` (as before item tables).
    """

    compounds: gpd.GeoDataFrame
    bundles: gpd.GeoDataFrame
    projects: gpd.GeoDataFrame | None = None
    vacant: gpd.GeoDataFrame | None = None
    proposed: gpd.GeoDataFrame | None = None
    gap_m: float | None = None
    items: pd.DataFrame | None = None

    def check(self) -> None:
        """Raise :class:`LayerError` naming the first layer that lacks a column the balance needs."""
        require_columns(self.compounds, "compounds", ("compound_id", "bundle_id", "households", "floor_area_m2"))
        require_columns(self.bundles, "bundles", ("bundle_id",))
        require_columns(self.projects, "projects", ("project_id", "net_revenue_cny"))
        require_columns(self.vacant, "vacant", ("parcel_id",))
        require_columns(self.proposed, "proposed facilities",
                        ("facility_id", "parcel_id", "facility_type", "build_cost_cny"))
        require_columns(self.items, "items", ("compound_id", "item", "class", "payer", "cost_cny"))


def split_ids(value: Any) -> list[str]:
    """The ids of a ``;``-joined id list (``"P1;P2"`` → ``["P1", "P2"]``; None/NaN/"" → ``[]``)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [v for v in str(value).split(";") if v]


def numeric_column(df: pd.DataFrame, column: str) -> np.ndarray:
    """``df[column]`` as floats, missing or non-numeric values 0 (zeros when the column is absent)."""
    if column not in df.columns:
        return np.zeros(len(df))
    return pd.to_numeric(df[column], errors="coerce").fillna(0.0).to_numpy(dtype=float)


def require_columns(df: pd.DataFrame | None, name: str, columns: tuple[str, ...]) -> None:
    """Raise :class:`LayerError` when layer ``name`` (if given) lacks any of ``columns``."""
    if df is None:
        return
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise LayerError(f"finance: {name} lacks column(s) {', '.join(missing)}")
