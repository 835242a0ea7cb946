"""Revenue projects in the balance (steps 5–6): their surplus, adjacent allocation and cross-area pairing."""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gis_planner._errors import LayerError
from gis_planner.finance.inputs import numeric_column, split_ids
from gis_planner.finance.pairing import PAIRING_COLUMNS, TOLERANCE_CNY, pairing_arcs, solve_pairing
from gis_planner.finance.settings import FinanceSettings
from gis_planner.finance.sources import Members

__all__ = ["Allocation", "AttachedLoss", "ProjectPool", "allocate_projects", "attached_losses", "project_pool"]

_PROJECT_COLUMNS = ["project_id", "project_kind", "project_name", "net_revenue_cny", "capex_cny",
                    "attached_bundle_ids", "surplus_available_cny", "loss_cny"]


@dataclass(frozen=True)
class ProjectPool:
    """The revenue projects and the bundle × project arcs they may fund over.

    Attributes
    ----------
    projects : one row per project (``project_id, project_kind, project_name, net_revenue_cny, capex_cny,
        attached_bundle_ids, surplus_available_cny, loss_cny`` (CNY); ``pairing_unit`` with ``same_unit``),
        sorted by ``project_id``.
    arcs : :func:`~gis_planner.finance.pairing_arcs` of the bundles and projects.
    bundle_units : the ``same_unit`` value per bundle, or None when pairing is not limited to a unit.
    """

    projects: pd.DataFrame
    arcs: pd.DataFrame
    bundle_units: pd.Series | None

    @property
    def surplus(self) -> pd.Series:
        """Surplus available per project (CNY), indexed by ``project_id``."""
        if not len(self.projects):
            return pd.Series(dtype=float)
        return self.projects.set_index("project_id")["surplus_available_cny"]


def _pairing_units(members: Members, projects: gpd.GeoDataFrame,
                   unit: str) -> tuple[pd.Series | None, pd.Series | None]:
    """The ``unit`` (district/subdistrict/community) of each bundle and each project; (None, None) for ``none``."""
    if unit == "none":
        return None, None
    bundles, compounds = members.bundles, members.compounds
    if unit in bundles.columns:
        bundle_units = bundles.set_index("bundle_id")[unit]
    elif unit in members.members.columns:
        bundle_units = members.members.groupby("bundle_id")[unit].agg(
            lambda s: s.mode().iat[0] if s.notna().any() else None)
    else:
        raise LayerError(f"finance: same_unit = {unit!r} but neither bundles nor compounds have a "
                         f"{unit!r} column")
    if unit in projects.columns:
        project_units = projects.set_index(projects["project_id"].astype(str))[unit]
    elif unit in compounds.columns:
        # the unit of the nearest compound (projects carry no unit of their own)
        compound_shapes = np.asarray(compounds.geometry.values)
        nearest = np.argmin(shapely.distance(np.asarray(projects.geometry.values)[:, None],
                                             compound_shapes[None, :]), axis=1)
        project_units = pd.Series(compounds[unit].to_numpy()[nearest],
                                  index=projects["project_id"].astype(str).to_numpy())
    else:
        raise LayerError(f"finance: same_unit = {unit!r} but projects have no {unit!r} column")
    return bundle_units, project_units


def project_pool(members: Members, projects: gpd.GeoDataFrame | None, settings: FinanceSettings,
                 arcs_memo: dict | None = None, gap_m: float | None = None) -> ProjectPool:
    """Projects with their surplus or loss and attached bundles, and the arcs of the pairing.

    Parameters
    ----------
    members : the bundles and their compounds (:func:`~gis_planner.finance.sources.bundle_members`).
    projects : revenue projects, or None.
    settings : ``project_surplus_share``, ``revenue_factor`` and the pairing options.
    arcs_memo : a dict kept between calls on the same layers (sensitivity scenarios): arcs by
        ``(max_distance_m, same_unit)``, computed once.
    gap_m : the bundling gap (metres; None = bundling's setting): projects within it are never cross-area
        partners (:func:`~gis_planner.finance.pairing_arcs`).
    """
    if projects is None or not len(projects):
        return ProjectPool(pd.DataFrame(columns=_PROJECT_COLUMNS),
                           pd.DataFrame(columns=["bundle_id", "project_id", "distance_m", "attached", "allowed"]),
                           None)
    options = settings.options
    bundle_units, project_units = _pairing_units(members, projects, options.same_unit)
    key = (options.max_distance_m, options.same_unit)
    if arcs_memo is not None and key in arcs_memo:
        arcs = arcs_memo[key]
    else:
        arcs = pairing_arcs(members.bundles, projects, max_distance_m=options.max_distance_m,
                            same_unit=options.same_unit, bundle_units=bundle_units, project_units=project_units,
                            gap_m=gap_m)
        if arcs_memo is not None:
            arcs_memo[key] = arcs
    net = numeric_column(projects, "net_revenue_cny")
    attached = arcs[arcs["attached"]].groupby("project_id")["bundle_id"].agg(";".join)
    table = pd.DataFrame({
        "project_id": projects["project_id"].astype(str).to_numpy(),
        "project_kind": projects["kind"].astype(str).to_numpy() if "kind" in projects.columns else "",
        "project_name": projects["name"].astype(str).to_numpy() if "name" in projects.columns else "",
        "net_revenue_cny": net,
        "capex_cny": numeric_column(projects, "capex_cny") if "capex_cny" in projects.columns else np.nan,
    })
    table["attached_bundle_ids"] = [attached.get(q, "") for q in table["project_id"]]
    table["surplus_available_cny"] = (np.clip(net, 0, None) * settings.value("project_surplus_share")
                                      * settings.value("revenue_factor"))
    table["loss_cny"] = np.clip(-net, 0, None)
    if project_units is not None:
        table["pairing_unit"] = table["project_id"].map(project_units)
    table = table.sort_values("project_id", kind="stable").reset_index(drop=True)
    return ProjectPool(table, arcs, bundle_units)


@dataclass(frozen=True)
class AttachedLoss:
    """A loss-making adjacent project's share charged to one bundle (``charge_attached_losses``)."""

    bundle_id: str
    project_id: str
    amount_cny: float  # < 0


def attached_losses(pool: ProjectPool, settings: FinanceSettings) -> list[AttachedLoss]:
    """The losses of adjacent projects split equally over their bundles (none unless ``charge_attached_losses``)."""
    losses: list[AttachedLoss] = []
    if not settings.options.charge_attached_losses or not len(pool.projects):
        return losses
    for project in pool.projects[pool.projects["loss_cny"] > 0].itertuples(index=False):
        bundle_ids = split_ids(project.attached_bundle_ids)
        for bundle_id in bundle_ids:
            losses.append(AttachedLoss(bundle_id, project.project_id, -project.loss_cny / len(bundle_ids)))
    return losses


@dataclass(frozen=True)
class Allocation:
    """Where project surpluses went (steps 5–6), CNY.

    Attributes
    ----------
    attached : adjacent pairs ``bundle_id, project_id, amount_cny, distance_m`` (大片区统筹).
    cross : cross-area pairs, same columns (跨片区组合).
    attached_cny, paired_cny, unfunded_cny : per bundle (indexed by bundle id): from adjacent projects, from
        cross-area partners, still short after both.
    deficit_after_attached : per bundle, the deficit left after the adjacent projects.
    """

    attached: pd.DataFrame
    cross: pd.DataFrame
    attached_cny: pd.Series
    paired_cny: pd.Series
    unfunded_cny: pd.Series
    deficit_after_attached: pd.Series

    @property
    def used_attached(self) -> pd.Series:
        """Surplus each project gave to its adjacent bundles, by ``project_id``."""
        return self.attached.groupby("project_id")["amount_cny"].sum()

    @property
    def used_cross(self) -> pd.Series:
        """Surplus each project gave across areas, by ``project_id``."""
        return self.cross.groupby("project_id")["amount_cny"].sum()


def allocate_projects(deficit: pd.Series, pool: ProjectPool, settings: FinanceSettings) -> Allocation:
    """Fund the bundles' deficits from adjacent projects first, then pair what is left across areas.

    Parameters
    ----------
    deficit : per bundle (indexed by bundle id, sorted), the deficit after its own sources and land, CNY ≥ 0.
    pool : :func:`project_pool`.
    settings : the pairing options (``one_to_one``, ``whole_bundles_first``, ``flow_unit_cny``,
        ``pair_attached_remainder``).
    """
    options, bundle_ids, arcs = settings.options, deficit.index, pool.arcs
    surplus = pool.surplus
    attached_arcs = arcs[arcs["attached"]].assign(allowed=True) if len(arcs) else arcs
    attached = solve_pairing(deficit[deficit > TOLERANCE_CNY], surplus, attached_arcs,
                             unit_cny=options.flow_unit_cny, whole_first=options.whole_bundles_first) \
        if len(attached_arcs) else pd.DataFrame(columns=PAIRING_COLUMNS)
    attached_cny = attached.groupby("bundle_id")["amount_cny"].sum().reindex(bundle_ids, fill_value=0.0)
    used = attached.groupby("project_id")["amount_cny"].sum()
    left_surplus = surplus.sub(used, fill_value=0.0).clip(lower=0.0) if len(surplus) else surplus
    if not options.pair_attached_remainder and len(pool.projects):
        projects = pool.projects
        attached_any = projects.loc[projects["attached_bundle_ids"] != "", "project_id"]
        left_surplus[left_surplus.index.isin(attached_any)] = 0.0
    after_attached = (deficit - attached_cny).clip(lower=0.0)
    cross = solve_pairing(after_attached[after_attached > TOLERANCE_CNY], left_surplus, arcs,
                          one_to_one=options.one_to_one, unit_cny=options.flow_unit_cny,
                          whole_first=options.whole_bundles_first) \
        if len(arcs) else pd.DataFrame(columns=PAIRING_COLUMNS)
    paired_cny = cross.groupby("bundle_id")["amount_cny"].sum().reindex(bundle_ids, fill_value=0.0)
    unfunded = (after_attached - paired_cny).clip(lower=0.0)
    unfunded[unfunded <= TOLERANCE_CNY] = 0.0
    return Allocation(attached, cross, attached_cny, paired_cny, unfunded, after_attached)
