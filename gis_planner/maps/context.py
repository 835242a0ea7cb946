"""What a map or report draws of a run: :class:`MapContext` (layers in the metric CRS, the run's standards,
settings and walking graph) and the naming helpers the map and the reports share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ..datafiles import default_setting
from ..eligibility import load_rules
from ..network import WalkGraph, crossings_noded, walk_graph
from ..standards import Standards

__all__ = ["MapContext", "eligibility_labels", "facility_type_name", "map_context", "missing_types",
           "walking_graph"]


@dataclass
class MapContext:
    """The layers, standards and settings of a run as the map and the reports draw them.

    Attributes
    ----------
    name : the plan's name.
    compounds, bundles, vacant, facilities, proposed, projects, boundaries, roads : the layers (None when
        absent or empty); ``proposed`` are the facilities proposed by the siting stage.
    pairings : pairing lines bundle → revenue project (the pairings layer, or lines drawn from the table).
    coverage : the coverage table (``coverage.csv``), if any.
    standards : the run's standards (bundled data with the plan's overrides).
    settings : the plan's ``[map]`` settings.
    crs : the metric CRS of the compounds (every layer is drawn from it).
    graph : the run's walking graph (in ``crs``), reused for the service areas; None: built from the roads.
    network : the plan's ``[network]`` settings (``node_crossings``, ``max_snap_m``); a key left out takes
        its default of ``data/defaults.toml``.
    connections : walls to open / paths to connect between member compounds (``bundling.connections``).
    constraints : constraint findings flagged for 一事一议 (``constraints.check``), with their geometry.
    """

    name: str
    compounds: gpd.GeoDataFrame | None
    bundles: gpd.GeoDataFrame | None
    vacant: gpd.GeoDataFrame | None
    facilities: gpd.GeoDataFrame | None
    proposed: gpd.GeoDataFrame | None
    projects: gpd.GeoDataFrame | None
    pairings: gpd.GeoDataFrame | None
    boundaries: gpd.GeoDataFrame | None
    roads: gpd.GeoDataFrame | None
    coverage: pd.DataFrame | None
    standards: Standards
    settings: dict[str, Any]
    crs: Any
    graph: WalkGraph | None = None
    network: dict[str, Any] = field(default_factory=dict)
    connections: gpd.GeoDataFrame | None = None
    constraints: gpd.GeoDataFrame | None = None

    def network_setting(self, key: str) -> Any:
        """One ``[network]`` setting of the plan (its default when the plan does not set it)."""
        value = self.network.get(key)
        return default_setting("network", key) if value is None else value


def _get(obj: Any, name: str) -> Any:
    return getattr(obj, name, None) if obj is not None else None


def _nonempty(g: Any) -> gpd.GeoDataFrame | None:
    return g if isinstance(g, gpd.GeoDataFrame) and len(g) and g.crs is not None else None


def _first(*frames: Any) -> gpd.GeoDataFrame | None:
    """The first non-empty GeoDataFrame with a CRS."""
    for g in frames:
        if _nonempty(g) is not None:
            return g
    return None


def _pairing_lines(pairings: Any, bundles: gpd.GeoDataFrame | None,
                   projects: gpd.GeoDataFrame | None) -> gpd.GeoDataFrame | None:
    """Pairing lines: the pairings layer if it has lines, else bundle → project lines from the table."""
    if isinstance(pairings, gpd.GeoDataFrame) and len(pairings) and pairings.geometry.notna().any():
        return pairings
    if pairings is None or not len(pairings) or bundles is None or projects is None:
        return None
    table = pd.DataFrame(pairings)
    if "geometry" in table.columns:
        table = table.drop(columns="geometry")
    if not {"bundle_id", "project_id"} <= set(table.columns):
        return None
    bpt = dict(zip(bundles["bundle_id"].astype(str), bundles.geometry.representative_point(), strict=True))
    ppt = dict(zip(projects["project_id"].astype(str), projects.geometry.representative_point(), strict=True))
    geoms = [shapely.LineString([bpt[b], ppt[p]]) if b in bpt and p in ppt else None
             for b, p in zip(table["bundle_id"].astype(str), table["project_id"].astype(str), strict=True)]
    out = gpd.GeoDataFrame(table, geometry=geoms, crs=bundles.crs)
    return out[out.geometry.notna()]


def map_context(result: Any) -> MapContext:
    """The :class:`MapContext` of a run: a :class:`~gis_planner.plan.PlanResult` or
    :func:`gis_planner.io.load_run` of a finished run.

    The run's own standards (``result.standards``) are used; a result without them is refused (a map drawn
    with other standards than the run's would contradict its tables).
    """
    standards = getattr(result, "standards", None)
    if not isinstance(standards, Standards):
        raise ValueError("the result has no standards (result.standards): map a PlanResult or "
                         "gis_planner.io.load_run(outdir) of a finished run")
    outputs = dict(getattr(result, "outputs", {}) or {})
    tables = dict(getattr(result, "tables", {}) or {})
    layers = getattr(result, "layers", None)
    config = getattr(result, "config", None)
    settings = dict(_get(config, "settings") or {})
    compounds = _first(outputs.get("compounds"), _get(layers, "compounds"))
    if compounds is None:
        raise ValueError("the result has no compounds layer to map")
    bundles = _nonempty(outputs.get("bundles"))
    projects = _first(outputs.get("projects"), _get(layers, "projects"))
    pairings = outputs.get("pairings")
    if pairings is None:
        pairings = tables.get("pairings")
    return MapContext(
        name=str(_get(config, "name") or settings.get("name") or "plan"),
        compounds=compounds, bundles=bundles,
        vacant=_first(outputs.get("vacant"), _get(layers, "vacant")),
        facilities=_first(outputs.get("facilities"), _get(layers, "facilities")),
        proposed=_nonempty(outputs.get("proposed_facilities")),
        projects=projects,
        pairings=_pairing_lines(pairings, bundles, projects),
        boundaries=_first(outputs.get("boundaries"), _get(layers, "boundaries")),
        roads=_first(_get(layers, "roads"), outputs.get("roads")),
        coverage=tables.get("coverage"), standards=standards,
        settings=dict(settings.get("map") or {}), crs=compounds.crs,
        graph=getattr(result, "graph", None),
        network=dict(settings.get("network") or {}),
        connections=_nonempty(outputs.get("connections")),
        constraints=_nonempty(outputs.get("constraint_findings")),
    )


def walking_graph(ctx: MapContext) -> tuple[WalkGraph | None, bool]:
    """The walking graph of the map, and whether its crossings were split (then it is planar but for overlaps).

    The run's own graph when it has one in the map's CRS; else :func:`gis_planner.network.walk_graph` of the
    roads with the run's standards and the plan's ``[network] node_crossings``, as the run builds it.
    """
    roads = ctx.roads
    if roads is None or not len(roads):
        return None, False
    node_crossings = ctx.network_setting("node_crossings")
    noded = crossings_noded(roads, node_crossings)
    if ctx.graph is not None and roads.crs == ctx.crs:
        return ctx.graph, noded
    return walk_graph(roads.to_crs(ctx.crs), ctx.standards, node_crossings=node_crossings), noded


def facility_type_name(standards: Standards, key: Any, lang: str) -> str:
    """The Chinese (``lang="zh"``) or English name of a facility type key (the key itself if unknown)."""
    ft = standards.facility_types
    key = str(key)
    if key in ft.index:
        return str(ft.at[key, "name_zh" if lang == "zh" else "name_en"])
    return key


def missing_types(compounds: pd.DataFrame, standards: Standards, lang: str) -> tuple[np.ndarray, pd.Series]:
    """Per compound, the number of facility types it misses and their names joined (from the ``cov_<type>``
    columns of the coverage stage)."""
    cols = [c for c in compounds.columns if c.startswith("cov_") and compounds[c].dtype == bool]
    if not cols:
        return np.zeros(len(compounds), dtype=int), pd.Series([""] * len(compounds), index=compounds.index)
    cov = compounds[cols].to_numpy(bool)
    names = np.array([facility_type_name(standards, c[4:], lang) for c in cols], dtype=object)
    sep = "、" if lang == "zh" else ", "
    missing = pd.Series([sep.join(names[~row]) for row in cov], index=compounds.index)
    return (~cov).sum(axis=1), missing


def eligibility_labels(lang: str) -> dict[str, str]:
    """Eligibility status → its label in ``lang`` (``data/eligibility.toml`` ``[status.*]`` texts)."""
    status = load_rules().get("status", {})
    out = {k: str(v.get(f"text_{lang}", k)) for k, v in status.items()}
    out.setdefault("unknown", "未知" if lang == "zh" else "unknown")
    return out
