"""The pipeline stages as plain functions: explicit inputs (layers, settings, the walking graph) → a typed record.

``plan.py`` (a whole run) and ``batch.py`` (partitions, then the merged area) call these same functions; no
stage reads or writes another stage's output except through its arguments and return value.

Data flow::

    layers ─► network.walk_graph ─► graph ──────────────┬──────────────┐
      │                                                   ▼              ▼
      └─► screen ─► compounds ─► assess_coverage ─► CoverageStage ─► site_facilities ─► SitingResult
                                    │                    │                                   │
                                    └──► bundle ─► BundlingStage ──► balance_funding ◄───────┘
                                                                       │
                                                                       ▼
                                                                   FinanceStage
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import geopandas as gpd
import pandas as pd

from . import buildings as building_survey
from . import (
    bundling,
    constraints,
    coverage,
    eligibility,
    finance,
    needs,
    network,
    phasing,
    pipeline,
    siting,
)
from .config import PlanConfig
from .finance import FinanceResult
from .network import WalkGraph
from .schema import Layers
from .siting import SitingResult
from .standards import Standards
from .workbook import ledger_workbook

__all__ = [
    "BundlingStage",
    "CoverageStage",
    "FinanceStage",
    "PhasingStage",
    "assess_coverage",
    "balance_funding",
    "bundle",
    "bundle_coverage",
    "check_constraints",
    "costed_items",
    "coverage_tables",
    "phase_programme",
    "renovation_items",
    "screen",
    "site_facilities",
    "siting_pairs",
    "walking_graph",
]


@dataclass(frozen=True, eq=False)
class CoverageStage:
    """What the coverage stage produced.

    Attributes
    ----------
    compounds : the compounds layer with the coverage columns added (:func:`coverage.add_coverage_columns`).
    located : compounds and facilities placed on the walking graph (:func:`coverage.locate`).
    table : one row per compound and facility type (``coverage.csv``).
    access, facility_load : Gaussian 2SFCA, compound side and facility side.
    snaps : one row per snapped feature (``snaps.csv``).
    tables : every table of the stage by output name (``coverage``, ``coverage_summary``, ``snaps`` …).
    messages : warnings for the run log.
    """

    compounds: gpd.GeoDataFrame
    located: coverage.Located
    table: pd.DataFrame
    access: pd.DataFrame
    facility_load: pd.DataFrame
    snaps: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    messages: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class BundlingStage:
    """What the bundling stage produced: compounds with ``bundle_id``, the bundles layer, the adjacency table and
    the walls to open / paths to connect between member compounds (:func:`bundling.connections`)."""

    compounds: gpd.GeoDataFrame
    bundles: gpd.GeoDataFrame
    adjacency: pd.DataFrame
    connections: gpd.GeoDataFrame | None = None


@dataclass(frozen=True, eq=False)
class FinanceStage:
    """What the funding stage produced: the balance, its sensitivity table and the ledger workbook.

    Attributes
    ----------
    result : :class:`finance.FinanceResult` (ledgers, modes, pairings).
    sensitivity : ``finance_sensitivity.csv`` (cost ±10 %, revenue ±20 %).
    workbook : ``(sheets, Chinese headers)`` of ``ledger.xlsx``.
    """

    result: FinanceResult
    sensitivity: pd.DataFrame
    workbook: tuple[dict[str, pd.DataFrame], dict[str, str]] = field(default_factory=lambda: ({}, {}))


def _stage(config: PlanConfig, name: str) -> dict | None:
    return config.stage_settings.get(name) or None


def walking_graph(layers: Layers, standards: Standards, config: PlanConfig) -> WalkGraph | None:
    """The run's walking graph (:func:`network.walk_graph` with ``[network] node_crossings``); None without roads."""
    roads = layers.roads
    if roads is None or not len(roads):
        return None
    return network.walk_graph(roads, standards, node_crossings=config.settings["network"]["node_crossings"])


def screen(compounds: gpd.GeoDataFrame, config: PlanConfig,
           buildings: gpd.GeoDataFrame | None = None) -> gpd.GeoDataFrame:
    """Eligibility screening (:func:`eligibility.screen`) with the plan's ``[eligibility]`` and ``[costs]``.

    With a 楼栋 layer, a compound's danger grade, demolished floor area, building count and storeys come from
    its buildings where the compound does not give them (:func:`buildings.refine_compounds`), so 拆改结合 is
    sized building by building.
    """
    if buildings is not None and len(buildings):
        compounds = building_survey.refine_compounds(compounds, buildings)
    return eligibility.screen(compounds, _stage(config, "eligibility"), costs=_stage(config, "costs"))


def renovation_items(compounds: gpd.GeoDataFrame, layers: Layers,
                     config: PlanConfig) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """The 问题清单 of every costed compound and its cost by item (:func:`needs.item_list`, ``[needs]``).

    Returns the compounds with their cost replaced by the item sums (class split, 主体改造修缮 / 配套基础设施,
    the per-m² index kept as ``cost_index_cny``; :func:`needs.apply_costs`) and the item table.
    """
    items = needs.item_list(compounds, deficits=layers.deficits, buildings=layers.buildings,
                            settings=_stage(config, "needs"))
    return needs.apply_costs(compounds, items), items


def costed_items(items: pd.DataFrame, compounds: pd.DataFrame) -> pd.DataFrame:
    """The item rows of compounds still costed (a secondary candidate rejected by bundling loses its cost)."""
    costed = compounds.loc[compounds["cost_cny"].notna(), "compound_id"].astype(str)
    return items[items["compound_id"].astype(str).isin(set(costed))].reset_index(drop=True)


def coverage_tables(table: pd.DataFrame, compounds: pd.DataFrame, standards: Standards) -> dict[str, pd.DataFrame]:
    """The summaries of a coverage table: by type, by 街道 (when the field exists), by tier, and the gap list."""
    out = {"coverage_summary": coverage.summarise(table, compounds, standards=standards)}
    if "subdistrict" in compounds.columns:  # optional field: no 街道 summary without it
        out["coverage_by_subdistrict"] = coverage.summarise(table, compounds, by="subdistrict", standards=standards)
    out["coverage_by_tier"] = coverage.summarise(table, compounds, standards=standards, level="tier")
    out["coverage_gaps"] = coverage.gap_list(table, compounds, standards=standards)
    return out


def bundle_coverage(table: pd.DataFrame, compounds: pd.DataFrame, standards: Standards) -> pd.DataFrame:
    """Coverage summarised per bundle (``coverage_by_bundle.csv``) from the coverage table and bundled compounds."""
    bundled = compounds[compounds["bundle_id"].notna()]
    sub = table[table["compound_id"].isin(bundled["compound_id"])]
    return coverage.summarise(sub, bundled, by="bundle_id", standards=standards)


def assess_coverage(compounds: gpd.GeoDataFrame, layers: Layers, graph: WalkGraph | None, standards: Standards,
                    config: PlanConfig) -> CoverageStage:
    """15-minute living-circle coverage of every compound on the run's walking graph, with 2SFCA and summaries."""
    cfg = config.settings
    facilities = layers.facilities if layers.facilities is not None else compounds.iloc[:0].assign(
        facility_id=pd.Series(dtype=str), facility_type=pd.Series(dtype=str))
    max_snap_m = cfg["network"]["max_snap_m"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        located = coverage.locate(compounds, facilities, graph, standards=standards, entrances=layers.entrances,
                                  max_snap_m=max_snap_m)
        table = coverage.assess(compounds, facilities, located, standards, types=cfg["coverage"]["profile"],
                                search_limit_m=cfg["coverage"]["search_limit_m"] or None)
        access, facility_load = coverage.access_2sfca(compounds, facilities, located, standards)
    messages = [f"coverage: {w.message}" for w in caught]
    snaps = coverage.snap_report(located)
    refused = int((~snaps["ok"].astype(bool)).sum()) if len(snaps) else 0
    if refused:
        messages.append(f"coverage: {refused} snap(s) refused (farther than {max_snap_m:.0f} m from a walkable "
                        "road); see snaps.csv")
    tables = {"coverage": table, **coverage_tables(table, compounds, standards), "access_2sfca": access,
              "facility_load_2sfca": facility_load, "snaps": snaps}
    return CoverageStage(compounds=coverage.add_coverage_columns(compounds, table, access=access),
                         located=located, table=table, access=access, facility_load=facility_load, snaps=snaps,
                         tables=tables, messages=tuple(messages))


def bundle(compounds: gpd.GeoDataFrame, layers: Layers, config: PlanConfig) -> BundlingStage:
    """Bundle adjacent eligible compounds into 片区 projects (:func:`bundling.bundle`) with ``[bundling]``."""
    out, bundles, adjacency = bundling.bundle(compounds, layers.roads, layers.vacant, layers.projects,
                                              layers.boundaries, rules=_stage(config, "bundling"))
    links = bundling.connections(out, _stage(config, "bundling"), pairs=adjacency)
    return BundlingStage(compounds=out, bundles=bundles, adjacency=adjacency, connections=links)


def _siting_candidates(layers: Layers, table: pd.DataFrame, standards: Standards, config: PlanConfig) -> pd.DataFrame:
    present = set(table["facility_type"])
    types = [t for t in standards.facility_types.index if t in present]  # standards order, not row order
    return siting.candidates(layers.vacant, standards, _stage(config, "siting"), types=types)


def siting_pairs(compounds: gpd.GeoDataFrame, layers: Layers, graph: WalkGraph | None, table: pd.DataFrame,
                 standards: Standards, config: PlanConfig) -> tuple[pd.DataFrame, list[str]]:
    """Which vacant parcel can serve which of ``compounds``' uncovered types (:func:`siting.covering_pairs`).

    The network part of siting; a batch partition computes it for its own compounds inside its halo and the
    merged run solves siting once from the merged pairs.
    """
    ids = set(compounds["compound_id"].astype(str))
    table = table[table["compound_id"].astype(str).isin(ids)]
    with warnings.catch_warnings():  # candidate warnings are given once, by the siting stage
        warnings.simplefilter("ignore")
        cands = _siting_candidates(layers, table, standards, config)
    entrances = layers.entrances
    if entrances is not None:
        entrances = entrances[entrances["compound_id"].astype(str).isin(ids).to_numpy()]
    return siting.covering_pairs(compounds, layers.vacant, cands, graph, table, standards,
                                 _stage(config, "siting"), entrances=entrances,
                                 max_snap_m=config.settings["network"]["max_snap_m"])


def site_facilities(compounds: gpd.GeoDataFrame, layers: Layers, graph: WalkGraph | None, table: pd.DataFrame,
                    standards: Standards, config: PlanConfig,
                    pairs: pd.DataFrame | None = None) -> tuple[SitingResult, list[str]]:
    """Propose facilities on vacant parcels for uncovered demand (:func:`siting.propose`).

    Returns the result and the warnings raised while solving (for the run log).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = siting.propose(compounds, layers.vacant, layers.facilities, graph, table, standards,
                             _stage(config, "siting"), boundaries=layers.boundaries, entrances=layers.entrances,
                             max_snap_m=config.settings["network"]["max_snap_m"], pairs=pairs)
    return res, [f"siting: {w.message}" for w in caught]


@dataclass(frozen=True, eq=False)
class PhasingStage:
    """What the phasing stage produced: the bundles' features and priorities, and the phasing itself.

    Attributes
    ----------
    features : per bundle the cost by payer level, the priority and its explanation (:func:`phasing.bundle_features`).
    result : :class:`phasing.PhasingResult` (year per bundle, annual cost vs capacity, unplaced bundles, gap).
    batches : the annual batch table (批次申报表, :func:`pipeline.batch_table`).
    """

    features: pd.DataFrame
    result: phasing.PhasingResult
    batches: pd.DataFrame


def phase_programme(compounds: gpd.GeoDataFrame, bundles: gpd.GeoDataFrame, config: PlanConfig, *,
                    items: pd.DataFrame | None = None, payers: pd.DataFrame | None = None,
                    pairings: pd.DataFrame | None = None, proposed: pd.DataFrame | None = None,
                    plan_year: int) -> PhasingStage:
    """Phase the bundles over the years under annual capacities (:func:`phasing.phase`, ``[phasing]``): the
    priority of each bundle from its compounds, items and payer split; links from the pairings and the shared
    facilities; then the annual batch table of the compounds."""
    settings = phasing.load_settings(_stage(config, "phasing"))
    features = phasing.bundle_features(bundles, compounds, items=items, payers=payers, pairings=pairings,
                                       settings=settings)
    links = phasing.links_from(pairings, proposed, bundles, settings=settings)
    res = phasing.phase(features, links=links, settings=settings, plan_year=plan_year)
    return PhasingStage(features=features, result=res, batches=pipeline.batch_table(compounds, res.table))


def check_constraints(compounds: gpd.GeoDataFrame, bundles: gpd.GeoDataFrame, layers: Layers, config: PlanConfig,
                      *, proposed: gpd.GeoDataFrame | None = None,
                      parcel_uses: pd.DataFrame | None = None) -> gpd.GeoDataFrame:
    """Constraint findings to settle case by case (一事一议, :func:`constraints.check`, ``[constraints]``):
    heritage overlap, green space lost, parking on a green strip, a narrow fire lane, a land-tenure change."""
    return constraints.check(compounds=compounds, bundles=bundles, proposed=proposed, vacant=layers.vacant,
                             roads=layers.roads, heritage=layers.heritage, green_space=layers.green_space,
                             parcel_uses=parcel_uses,
                             settings=constraints.load_settings(_stage(config, "constraints")))


def balance_funding(compounds: gpd.GeoDataFrame, bundles: gpd.GeoDataFrame, layers: Layers,
                    proposed: gpd.GeoDataFrame | None, config: PlanConfig,
                    items: pd.DataFrame | None = None) -> FinanceStage:
    """The funding balance (:func:`finance.balance`), its sensitivity and the ledger workbook.

    ``items`` (the 问题清单 of :func:`renovation_items`) cost the compounds item by item, so that residents pay
    their own items, utilities their networks and property-rights units their share (the by-payer table).
    """
    # a project within bundling's gap of a bundle is its adjacent partner (大片区统筹), never a cross-area one
    gap_m = bundling.load_settings(_stage(config, "bundling"))["gap_m"]
    inputs = finance.BalanceInputs(compounds, bundles, layers.projects, layers.vacant, proposed, gap_m=gap_m,
                                   items=items)
    fin = finance.balance(inputs, _stage(config, "finance"), costs=_stage(config, "costs"))
    sens = finance.sensitivity(inputs, fin.settings, base=fin)
    return FinanceStage(result=fin, sensitivity=sens, workbook=ledger_workbook(fin, sens, items))
