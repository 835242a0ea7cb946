"""Programme phasing (年度计划 / 分年度实施): bundles (片区) to years under annual fiscal capacity per payer level.

Three steps, each a plain function on DataFrames (DOMAIN.md §10.2.8):

1. :func:`bundle_features` — one row per bundle: its cost by payer level (``central`` 中央和省级补助, ``local``
   市区财政 from the by-payer table, else ``total``), its infrastructure share, household-weighted consent rates,
   先易后难 cost rank, partner readiness, and a priority (Σ weight × score, weights with sources in
   ``data/phasing.toml``) explained in ``priority_zh``.
2. :func:`links_from` — links between bundles: bundles funded by one cross-area project (pairings) follow the
   bundle it funds most (``order``, the default: the partner's money flows once) or start with it
   (``together``); a proposed facility built on one bundle's parcel that serves another links the two.
3. :func:`phase` — an exact MILP on HiGHS (``scipy.optimize.milp``, sparse constraints), or a greedy heuristic
   with its gap to the LP-relaxation bound: binary ``x[b, y]``, each bundle at most once, Σ cost ≤ capacity
   per level and year, together-links in one year, order-links ``year(a) ≤ year(b)`` (``b`` only with ``a``),
   maximising Σ priority × ``(H − k + 1) / H`` for the ``k``-th year. Returns a :class:`PhasingResult` with
   the phasing table, the annual cost vs capacity, what did not fit and why.

Length: the four parts (settings, features, links, the model and its reason texts) share the payer levels, the
link semantics and the weights of one data file; split they would pass these between modules as private state.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_array, vstack
from scipy.sparse.csgraph import connected_components

from gis_planner._errors import ConfigError, LayerError
from gis_planner.datafiles import load_toml

__all__ = ["FEATURE_COLUMNS", "LINK_COLUMNS", "PayerLevel", "PhasingResult", "PhasingSettings", "bundle_features",
           "links_from", "load_settings", "phase", "phase_layer"]

LINK_COLUMNS = ["bundle_a", "bundle_b", "kind", "source", "reason_zh"]
FEATURE_COLUMNS = [
    "bundle_id", "n_compounds", "households", "total_cost_cny", "central_cny", "local_cny", "cost_basis",
    "renovation_cost_cny", "infra_cost_cny", "infra_share", "consent_rate", "illegal_removal_rate", "cost_rank",
    "partner_ready", "partner_ids", "score_infra", "score_consent", "score_illegal_removal", "score_easy_first",
    "score_partner_ready", "score_base", "priority", "priority_zh",
]
_SCALARS = ("start_year", "horizon_years", "solver", "time_limit_s", "node_limit", "mip_rel_gap",
            "max_exact_columns",
            "pairing_link", "facility_link", "missing_rate", "infra_items")
_KINDS = ("together", "order")


# ------------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class PayerLevel:
    """One payer level of the annual capacity.

    Attributes
    ----------
    key : ``central``, ``local`` or ``total``.
    name_zh : Chinese name (中央和省级补助 …).
    payer_columns : columns of the by-payer table (finance_payers.csv) it sums, CNY.
    column : the features column holding the level's cost, CNY.
    """

    key: str
    name_zh: str
    payer_columns: tuple[str, ...]
    column: str


@dataclass(frozen=True)
class PhasingSettings:
    """Checked phasing settings (``data/phasing.toml`` with a plan's ``[phasing]`` table).

    Attributes
    ----------
    start_year : first year of the programme, or None = the plan year given to :func:`phase`.
    horizon_years : number of years.
    solver : ``"milp"`` or ``"greedy"``; time_limit_s : HiGHS time limit, seconds; mip_rel_gap : HiGHS gap;
    max_exact_columns : largest model (x[b, y] columns) given to HiGHS's branch and bound.
    pairing_link, facility_link : ``"order"``, ``"together"`` or ``"none"`` (see :func:`links_from`).
    missing_rate : the consent score of a bundle with no surveyed compound, 0–1.
    infra_items : renovation items counted as the infrastructure deficit.
    capacity_share : level → share of the level's programme total per year.
    capacity_cny : level → CNY per year (one value per year of the horizon), for the levels given in CNY.
    weights : priority weight per score (``infra``, ``consent``, ``illegal_removal``, ``easy_first``,
        ``partner_ready``, ``base``); weight_names_zh : their Chinese names.
    levels : payer levels by key.
    """

    start_year: int | None
    horizon_years: int
    solver: str
    time_limit_s: float
    node_limit: int
    mip_rel_gap: float
    max_exact_columns: int
    pairing_link: str
    facility_link: str
    missing_rate: float
    infra_items: tuple[str, ...]
    capacity_share: Mapping[str, float]
    capacity_cny: Mapping[str, tuple[float, ...]]
    weights: Mapping[str, float]
    weight_names_zh: Mapping[str, str]
    levels: Mapping[str, PayerLevel]


def _number(where: str, value: Any, rule: Mapping[str, Any], *, whole: bool = False) -> float:
    """``value`` if it is a (whole) finite number within ``rule`` (``min``/``max``/``above``); else ConfigError."""
    if not isinstance(value, int | float) or isinstance(value, bool) or (whole and not isinstance(value, int)):
        raise ConfigError(f"{where}: expected {'a whole number' if whole else 'a number'}, got {value!r}")
    ok = (math.isfinite(value) and value > rule.get("above", -math.inf)
          and rule.get("min", -math.inf) <= value <= rule.get("max", math.inf))
    if not ok:
        bounds = [f"{sign} {rule[k]:g}" for k, sign in (("above", ">"), ("min", "≥"), ("max", "≤")) if k in rule]
        raise ConfigError(f"{where}: must be a finite number {' and '.join(bounds)}, got {value!r}")
    return value


def _scalar(key: str, value: Any, default: Any, rule: Mapping[str, Any], first_year: int) -> Any:
    where = f"phasing.{key}"
    if key == "start_year":
        value = 0 if value is None else _number(where, value, rule, whole=True)
        if 0 < value < first_year:
            raise ConfigError(f"{where}: must be 0 (the plan year) or a year ≥ {first_year}, got {value!r}")
        return value
    if isinstance(default, list):
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of texts, got {value!r}")
        return tuple(value)
    if isinstance(default, str):
        if not isinstance(value, str) or value not in rule.get("allowed", [value]):
            raise ConfigError(f"{where}: must be one of {', '.join(map(repr, rule['allowed']))}, got {value!r}")
        return value
    return _number(where, value, rule, whole=isinstance(default, int))


def load_settings(overrides: Mapping[str, Any] | None = None) -> PhasingSettings:
    """The phasing settings: ``data/phasing.toml`` with a plan's ``[phasing]`` overrides merged in.

    Parameters
    ----------
    overrides : keys of ``[settings]`` (``start_year``, ``horizon_years``, ``solver``, ``time_limit_s``,
        ``mip_rel_gap``, ``max_exact_columns``, ``pairing_link``, ``facility_link``, ``missing_rate``,
        ``infra_items``) and ``capacity_share`` (a number for every level, or ``{level: share}``),
        ``capacity_cny`` (``{level: CNY per year}``: a number for every year or a list of ``horizon_years``
        numbers), ``weights`` (``{score: weight}``).

    Returns
    -------
    :class:`PhasingSettings` (frozen).

    Raises
    ------
    ConfigError naming ``phasing`` and the key: unknown keys, levels or weights, wrong types, values out of
    range (NaN and infinity included), a capacity list of the wrong length, all weights zero.

    Examples
    --------
    >>> s = load_settings({"horizon_years": 3, "capacity_cny": {"local": [1e8, 1e8, 2e8]}})
    >>> s.horizon_years, s.capacity_cny["local"], s.capacity_share["central"]
    (3, (100000000.0, 100000000.0, 200000000.0), 0.18)
    >>> load_settings({"horizon": 3})
    Traceback (most recent call last):
    ...
    gis_planner._errors.ConfigError: phasing: unknown key 'horizon'; known keys are start_year, ...
    """
    data = load_toml("phasing.toml")
    checks = data["checks"]
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ConfigError(f"phasing: expected a table of settings, got {overrides!r}")
    given = dict(overrides or {})
    known = [*_SCALARS, "capacity_share", "capacity_cny", "weights"]
    for key in given:
        if key not in known:
            raise ConfigError(f"phasing: unknown key {key!r}; known keys are {', '.join(known)}")
    first = int(checks["first_start_year"])
    base = data["settings"]
    out = {k: _scalar(k, base[k], base[k], checks.get(k, {}), first) for k in _SCALARS}
    out.update({k: _scalar(k, given[k], base[k], checks.get(k, {}), first) for k in _SCALARS if k in given})
    horizon = int(out["horizon_years"])
    levels = {k: PayerLevel(k, v["name_zh"], tuple(v["payer_columns"]), v["column"])
              for k, v in data["levels"].items()}
    share_given = given.get("capacity_share", data["capacity"]["capacity_share"])
    if isinstance(share_given, Mapping):
        _known_keys("phasing.capacity_share", share_given, levels)
        share = {k: float(data["capacity"]["capacity_share"]) for k in levels}
        share.update({k: float(_number(f"phasing.capacity_share.{k}", v, checks["capacity_share"]))
                      for k, v in share_given.items()})
    else:
        value = float(_number("phasing.capacity_share", share_given, checks["capacity_share"]))
        share = dict.fromkeys(levels, value)
    cny_given = {**data["capacity"]["capacity_cny"], **_table("phasing.capacity_cny",
                                                              given.get("capacity_cny", {}))}
    _known_keys("phasing.capacity_cny", cny_given, levels)
    cny = {k: _per_year(f"phasing.capacity_cny.{k}", v, horizon, checks["capacity_cny"])
           for k, v in cny_given.items()}
    weights = {k: float(v["weight"]) for k, v in data["weights"].items()}
    w_given = _table("phasing.weights", given.get("weights", {}))
    _known_keys("phasing.weights", w_given, weights)
    weights.update({k: float(_number(f"phasing.weights.{k}", v, checks["weight"])) for k, v in w_given.items()})
    if sum(weights.values()) <= 0:
        raise ConfigError(f"phasing.weights: at least one weight must be > 0, got {weights}")
    return PhasingSettings(
        start_year=int(out["start_year"]) or None, horizon_years=horizon, solver=out["solver"],
        time_limit_s=float(out["time_limit_s"]), node_limit=int(out["node_limit"]),
        mip_rel_gap=float(out["mip_rel_gap"]),
        max_exact_columns=int(out["max_exact_columns"]),
        pairing_link=out["pairing_link"], facility_link=out["facility_link"],
        missing_rate=float(out["missing_rate"]), infra_items=out["infra_items"],
        capacity_share=MappingProxyType(share), capacity_cny=MappingProxyType(cny),
        weights=MappingProxyType(weights),
        weight_names_zh=MappingProxyType({k: v["name_zh"] for k, v in data["weights"].items()}),
        levels=MappingProxyType(levels))


def _table(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a table, got {value!r}")
    return dict(value)


def _known_keys(where: str, table: Mapping[str, Any], known: Mapping[str, Any]) -> None:
    bad = [k for k in table if k not in known]
    if bad:
        raise ConfigError(f"{where}: unknown key {bad[0]!r}; known keys are {', '.join(known)}")


def _per_year(where: str, value: Any, horizon: int, rule: Mapping[str, Any]) -> tuple[float, ...]:
    if isinstance(value, list | tuple):
        if len(value) != horizon:
            raise ConfigError(f"{where}: expected {horizon} values (one per year of horizon_years), "
                              f"got {len(value)}")
        return tuple(float(_number(f"{where}[{i}]", v, rule)) for i, v in enumerate(value))
    return (float(_number(where, value, rule)),) * horizon


def _settings(settings: PhasingSettings | Mapping[str, Any] | None) -> PhasingSettings:
    return settings if isinstance(settings, PhasingSettings) else load_settings(settings)


# ------------------------------------------------------------------------------------------------ features
def _wan(value: float) -> str:
    return f"{value / 1e4:,.1f}万元"


def _ids(df: pd.DataFrame, column: str, layer: str) -> pd.Series:
    if column not in df.columns:
        raise LayerError(f"phasing: {layer} lacks column {column}")
    ids = df[column]
    bad = ids.isna() | ids.astype(str).str.strip().eq("")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise LayerError(f"phasing: {layer} row {row + 1}: {column} is empty")
    dup = ids.duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise LayerError(f"phasing: {layer} row {row + 1} (id={ids.iloc[row]}): {column} is duplicated")
    return ids.astype(str)


def _numeric(df: pd.DataFrame, column: str, layer: str, ids: pd.Series) -> np.ndarray:
    """``df[column]`` as floats; a non-numeric, negative or infinite value is a LayerError naming the row."""
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(float)
    bad = (pd.notna(df[column]).to_numpy() & ~np.isfinite(values)) | (values < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise LayerError(f"phasing: {layer} row {row + 1} (id={ids.iloc[row]}): {column} "
                         f"{df[column].iloc[row]!r} is not a finite number ≥ 0")
    return values


def _weighted_rate(comp: pd.DataFrame, column: str | None, weights: np.ndarray, group: np.ndarray,
                   n: int) -> tuple[np.ndarray, np.ndarray]:
    """Household-weighted mean of ``column`` per bundle over the compounds that have a value (a bundle whose
    surveyed compounds have no households: the plain mean) and the number of surveyed compounds."""
    if column is None or column not in comp.columns:
        return np.full(n, np.nan), np.zeros(n, int)
    rate = pd.to_numeric(comp[column], errors="coerce").to_numpy(float)
    has = np.isfinite(rate)
    r = np.where(has, rate, 0.0)
    w = np.where(has, weights, 0.0)
    num = np.bincount(group, weights=w * r, minlength=n)
    den = np.bincount(group, weights=w, minlength=n)
    cnt = np.bincount(group, weights=has.astype(float), minlength=n)
    plain = np.bincount(group, weights=r, minlength=n) / np.maximum(cnt, 1)
    out = np.where(den > 0, num / np.where(den > 0, den, 1.0), plain)
    return np.where(cnt > 0, out, np.nan), cnt.astype(int)


def bundle_features(
    bundles: pd.DataFrame,
    compounds: pd.DataFrame,
    *,
    items: pd.DataFrame | None = None,
    payers: pd.DataFrame | None = None,
    pairings: pd.DataFrame | None = None,
    settings: PhasingSettings | Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per bundle with its cost by payer level, the priority scores and the priority.

    Parameters
    ----------
    bundles : ``bundle_id``; optional ``total_cost_cny`` (else ``cost_cny``, else Σ of the members'
        ``cost_cny``), ``partner_ready`` (bool; overrides what the pairings say).
    compounds : ``compound_id``, ``bundle_id``, ``households``; optional ``consent_rate_renovation`` (else
        ``consent_rate``), ``consent_rate_illegal_removal`` (0–1), ``cost_cny``, ``cost_basic_infra_cny`` (CNY).
        Compounds of no listed bundle are ignored.
    items : the item table (``compound_id, item, cost_cny``, optional ``part``) of ``needs.item_list``; with
        it the infrastructure cost is the cost of the ``infra_items`` and the renovation cost the item sum.
    payers : the by-payer table (finance_payers.csv): its ``level == "bundle"`` rows give ``total_cost_cny``,
        ``central_cny`` (central + provincial) and ``local_cny`` (city + district), CNY.
    pairings : the cross-area pairings (``bundle_id, project_id``, optional ``partner_ready``): a paired bundle
        is ready when every partner row is ready (default: ready).
    settings : overrides of ``data/phasing.toml`` or loaded :class:`PhasingSettings`.

    Returns
    -------
    DataFrame :data:`FEATURE_COLUMNS`, sorted by ``bundle_id``: ``infra_share`` (infrastructure cost ÷
    renovation cost), ``consent_rate`` / ``illegal_removal_rate`` (household-weighted, NaN = not surveyed),
    ``cost_rank`` (1 = cheapest, ties share the mean rank), ``score_<weight>`` in [0, 1] (infra: the share ÷ the
    largest share; consent and illegal removal: the rate, ``missing_rate`` when unsurveyed; easy first:
    1 − (rank − 1) / (n − 1); partner ready: 1/0; base: 1), ``priority`` = Σ weight × score ÷ Σ weight, and
    ``priority_zh`` explaining it. ``cost_basis`` is ``payers`` (levels central and local) or ``total``.

    Raises
    ------
    LayerError naming the table, row, id and field: missing or duplicated ids, negative or non-numeric values,
    a bundle without its row in the by-payer table.

    Examples
    --------
    >>> b = pd.DataFrame({"bundle_id": ["B1", "B2"], "total_cost_cny": [1e6, 3e6]})
    >>> c = pd.DataFrame({"compound_id": ["c1", "c2", "c3"], "bundle_id": ["B1", "B1", "B2"],
    ...                   "households": [100, 300, 200], "consent_rate_renovation": [0.6, 1.0, 0.8],
    ...                   "cost_cny": [4e5, 6e5, 3e6], "cost_basic_infra_cny": [1e5, 2e5, 1.5e6]})
    >>> f = bundle_features(b, c)
    >>> f[["bundle_id", "infra_share", "consent_rate", "cost_rank", "score_infra"]].round(3).to_dict("list")
    {'bundle_id': ['B1', 'B2'], 'infra_share': [0.3, 0.5], 'consent_rate': [0.9, 0.8], 'cost_rank': [1.0, 2.0], \
'score_infra': [0.6, 1.0]}
    """
    s = _settings(settings)
    ids = _ids(bundles, "bundle_id", "bundles")
    order = np.argsort(ids.to_numpy(), kind="stable")
    bundles = bundles.iloc[order].reset_index(drop=True)
    ids = ids.iloc[order].reset_index(drop=True)
    n = len(ids)
    pos = pd.Series(np.arange(n), index=ids.to_numpy())
    for col in ("compound_id", "bundle_id", "households"):
        if col not in compounds.columns:
            raise LayerError(f"phasing: compounds lack column {col}")
    every = pd.DataFrame(compounds.drop(columns="geometry", errors="ignore")).reset_index(drop=True)
    member = (every["bundle_id"].astype(str).isin(pos.index) & every["bundle_id"].notna()).to_numpy()
    every_ids = every["compound_id"].astype(str)
    values = {c: np.nan_to_num(_numeric(every, c, "compounds", every_ids))[member]
              for c in ("households", "cost_cny", "cost_basic_infra_cny") if c in every.columns}
    comp = every[member].reset_index(drop=True)
    cids = comp["compound_id"].astype(str)
    grp = pos.loc[comp["bundle_id"].astype(str)].to_numpy()
    hh = values["households"]
    n_comp = np.bincount(grp, minlength=n)
    consent_col = next((c for c in ("consent_rate_renovation", "consent_rate") if c in comp.columns), None)
    consent, n_consent = _weighted_rate(comp, consent_col, hh, grp, n)
    illegal, n_illegal = _weighted_rate(comp, "consent_rate_illegal_removal", hh, grp, n)

    # renovation and infrastructure cost (CNY)
    infra_basis = "none"
    if items is not None and len(items):
        for col in ("compound_id", "item", "cost_cny"):
            if col not in items.columns:
                raise LayerError(f"phasing: items lack column {col}")
        it = items[items["compound_id"].astype(str).isin(set(cids))]
        cpos = pd.Series(grp, index=cids.to_numpy())
        igrp = cpos.loc[it["compound_id"].astype(str)].to_numpy()
        icost = np.nan_to_num(_numeric(it.reset_index(drop=True), "cost_cny", "items",
                                       it["compound_id"].astype(str).reset_index(drop=True)))
        is_infra = it["item"].isin(s.infra_items).to_numpy()
        infra_basis = "items"
        if not is_infra.any() and "part" in it.columns:
            is_infra, infra_basis = it["part"].eq("infra").to_numpy(), "part"
        renovation = np.bincount(igrp, weights=icost, minlength=n)
        infra = np.bincount(igrp, weights=icost * is_infra, minlength=n)
    else:
        renovation = np.bincount(grp, weights=values.get("cost_cny", np.zeros(len(comp))), minlength=n)
        infra = np.bincount(grp, weights=values.get("cost_basic_infra_cny", np.zeros(len(comp))), minlength=n)
        infra_basis = "compounds" if "cost_basic_infra_cny" in values else "none"
    infra_share = np.divide(infra, renovation, out=np.zeros(n), where=renovation > 0)

    # cost by payer level (CNY)
    central = local = np.full(n, np.nan)
    basis = "total"
    if payers is not None:
        total, central, local = _payer_costs(payers, ids, s)
        basis = "payers"
    elif "total_cost_cny" in bundles.columns:
        total = np.nan_to_num(_numeric(bundles, "total_cost_cny", "bundles", ids))
    elif "cost_cny" in bundles.columns:
        total = np.nan_to_num(_numeric(bundles, "cost_cny", "bundles", ids))
    else:
        total = renovation

    ready, partner_ids = _partner_ready(bundles, pairings, ids, pos)
    rank = pd.Series(total).rank(method="average").to_numpy()
    scores = {
        "infra": infra_share / infra_share.max() if n and infra_share.max() > 0 else np.zeros(n),
        "consent": np.where(np.isfinite(consent), consent, s.missing_rate),
        "illegal_removal": np.where(np.isfinite(illegal), illegal, s.missing_rate),
        "easy_first": 1.0 - (rank - 1.0) / (n - 1) if n > 1 else np.ones(n),
        "partner_ready": ready.astype(float),
        "base": np.ones(n),
    }
    wsum = sum(s.weights.values())
    priority = sum(s.weights[k] * scores[k] for k in scores) / wsum
    out = pd.DataFrame({
        "bundle_id": ids.to_numpy(object), "n_compounds": n_comp, "households": np.bincount(grp, hh, n),
        "total_cost_cny": total, "central_cny": central, "local_cny": local, "cost_basis": basis,
        "renovation_cost_cny": renovation, "infra_cost_cny": infra, "infra_share": infra_share,
        "consent_rate": consent, "illegal_removal_rate": illegal, "cost_rank": rank, "partner_ready": ready,
        "partner_ids": partner_ids, **{f"score_{k}": v for k, v in scores.items()}, "priority": priority,
    })
    out["priority_zh"] = _priority_text(out, s, n_consent, n_illegal, infra_basis)
    return out[FEATURE_COLUMNS]


def _payer_costs(payers: pd.DataFrame, ids: pd.Series, s: PhasingSettings
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(total, central, local) per bundle from the bundle rows of the by-payer table, CNY."""
    rows = payers[payers["level"].eq("bundle")] if "level" in payers.columns else payers
    rows = rows.reset_index(drop=True)
    rid = _ids(rows, "bundle_id", "finance_payers (bundle rows)")
    missing = ~ids.isin(set(rid))
    if missing.any():
        raise LayerError(f"phasing: finance_payers has no bundle row for bundle {ids[missing].iloc[0]} "
                         f"(field bundle_id)")
    need = sorted({c for lv in ("total", "central", "local") for c in s.levels[lv].payer_columns})
    absent = [c for c in need if c not in rows.columns]
    if absent:
        raise LayerError(f"phasing: finance_payers lacks column(s) {', '.join(absent)}")
    at = pd.Series(np.arange(len(rows)), index=rid.to_numpy()).loc[ids.to_numpy()].to_numpy()
    sums = {lv: sum(np.nan_to_num(_numeric(rows, c, "finance_payers", rid))[at] for c in s.levels[lv].payer_columns)
            for lv in ("total", "central", "local")}
    return sums["total"], sums["central"], sums["local"]


def _partner_ready(bundles: pd.DataFrame, pairings: pd.DataFrame | None, ids: pd.Series, pos: pd.Series
                   ) -> tuple[np.ndarray, np.ndarray]:
    n = len(ids)
    ready = np.ones(n, bool)
    partner = np.full(n, "", dtype=object)
    if pairings is not None and len(pairings):
        p = pairings[pairings["bundle_id"].astype(str).isin(pos.index)]
        g = pos.loc[p["bundle_id"].astype(str)].to_numpy()
        joined = p["project_id"].astype(str).groupby(g).agg(lambda v: ";".join(sorted(set(v))))
        partner[joined.index.to_numpy()] = joined.to_numpy()
        if "partner_ready" in p.columns:
            flag = p["partner_ready"].map(_to_bool).to_numpy(bool)
            ready &= np.bincount(g, weights=~flag, minlength=n) == 0
    if "partner_ready" in bundles.columns:
        given = bundles["partner_ready"]
        ready = np.where(given.notna().to_numpy(), given.map(_to_bool).to_numpy(bool), ready)
    return ready, partner


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "是", "y", "t")
    return bool(value) if pd.notna(value) else True


def _priority_text(f: pd.DataFrame, s: PhasingSettings, n_consent: np.ndarray, n_illegal: np.ndarray,
                   infra_basis: str) -> list[str]:
    """``优先级0.712 = 基础设施缺失0.30×1.00 + …；配套基础设施占改造费用31% …`` per bundle."""
    wsum = sum(s.weights.values())
    terms = [f"{s.weight_names_zh[k]}{s.weights[k] / wsum:.2f}×" + f[f"score_{k}"].map("{:.2f}".format)
             for k in s.weights if s.weights[k] > 0]
    head = "优先级" + f["priority"].map("{:.3f}".format) + " = " + _join(terms, " + ")
    infra_word = {"items": "水电路气等基础设施", "part": "配套基础设施", "compounds": "配套基础设施",
                  "none": "基础设施（无分项造价，按0计）"}[infra_basis]
    infra = infra_word + "占改造费用" + f["infra_share"].map("{:.0%}".format)
    consent = np.where(n_consent > 0, "改造意愿同意率" + f["consent_rate"].map("{:.0%}".format) + "（按户加权）",
                       f"改造意愿未调查（按{s.missing_rate:.0%}计）")
    illegal = np.where(n_illegal > 0, "拆违拆临意愿" + f["illegal_removal_rate"].map("{:.0%}".format),
                       f"拆违拆临意愿未调查（按{s.missing_rate:.0%}计）")
    easy = ("总投资" + f["total_cost_cny"].map(_wan) + "，由低到高第" + f["cost_rank"].map("{:g}".format)
            + f"/{len(f)}位")
    partner = np.where(f["partner_ids"].eq(""), "无跨片区合作项目",
                       "跨片区合作项目" + f["partner_ids"] + np.where(f["partner_ready"], "已就绪", "未就绪"))
    return list(head + "；" + _join([infra, pd.Series(consent), pd.Series(illegal), easy, pd.Series(partner)],
                                    "，"))


def _join(parts: list[pd.Series], sep: str) -> pd.Series:
    out = parts[0].astype(str).reset_index(drop=True)
    for p in parts[1:]:
        out = out + sep + pd.Series(p).astype(str).reset_index(drop=True)
    return out


# ------------------------------------------------------------------------------------------------ links
def links_from(
    pairings: pd.DataFrame | None = None,
    proposed: pd.DataFrame | None = None,
    bundles: pd.DataFrame | None = None,
    *,
    extra: pd.DataFrame | None = None,
    settings: PhasingSettings | Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Links between bundles that must start together or in order.

    - **Cross-area pairings** (``pairing_link``, default ``order``): the bundles one project funds are linked to
      the bundle it funds most (its anchor; ties: the smaller id). ``order``: the partner's money (a land sale,
      a project surplus) flows once — the project starts with its anchor and the others start in the same year
      or later, only if the anchor is placed. ``together``: all start in the anchor's year.
    - **Shared proposed facilities** (``facility_link``, default ``together``): a facility built on a parcel of
      bundle A (``bundles.parcel_ids``) that mainly serves bundle B (``served_bundle_id``), or listing several
      bundles in ``served_bundle_ids`` (``;``-joined), links them (设施共建共享).
    - **User links** ``extra``: ``bundle_a, bundle_b, kind`` (``together`` / ``order`` = a before or with b),
      optional ``reason_zh``.

    Parameters
    ----------
    pairings : ``bundle_id, project_id``; optional ``amount_cny``, ``project_name``.
    proposed : ``facility_id``, ``served_bundle_id`` and ``parcel_id`` (with ``bundles``), or
        ``served_bundle_ids``; optional ``name_zh``.
    bundles : ``bundle_id, parcel_ids`` (``;``-joined), to find the bundle hosting a facility's parcel.
    extra : user links.
    settings : overrides of ``data/phasing.toml`` or loaded :class:`PhasingSettings`.

    Returns
    -------
    DataFrame :data:`LINK_COLUMNS` (``source``: ``pairing``, ``facility`` or ``user``), one row per distinct
    (bundle_a, bundle_b, kind), sorted.

    Examples
    --------
    >>> p = pd.DataFrame({"bundle_id": ["B2", "B3", "B3"], "project_id": ["P6", "P6", "P1"],
    ...                   "amount_cny": [5e6, 9e6, 1e6]})
    >>> links_from(p)[["bundle_a", "bundle_b", "kind"]].to_dict("records")
    [{'bundle_a': 'B3', 'bundle_b': 'B2', 'kind': 'order'}]
    """
    s = _settings(settings)
    parts = []
    if pairings is not None and len(pairings) and s.pairing_link != "none":
        parts.append(_pairing_links(pairings, s.pairing_link))
    if proposed is not None and len(proposed) and s.facility_link != "none":
        parts.append(_facility_links(proposed, bundles, s.facility_link))
    if extra is not None and len(extra):
        parts.append(_user_links(extra))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in LINK_COLUMNS})
    out = pd.concat(parts, ignore_index=True)
    out = out[out["bundle_a"] != out["bundle_b"]].drop_duplicates(["bundle_a", "bundle_b", "kind"])
    return out.sort_values(["bundle_a", "bundle_b", "kind"], kind="stable").reset_index(drop=True)[LINK_COLUMNS]


def _pairing_links(pairings: pd.DataFrame, kind: str) -> pd.DataFrame:
    p = pd.DataFrame({"bundle_id": pairings["bundle_id"].astype(str), "project_id": pairings["project_id"].astype(str),
                      "amount": pd.to_numeric(pairings.get("amount_cny", 0.0), errors="coerce")})
    p["amount"] = p["amount"].fillna(0.0)
    name = (pairings["project_name"].astype(str) if "project_name" in pairings.columns
            else pd.Series("", index=pairings.index))
    names = dict(zip(p["project_id"], name.where(name.ne("nan"), ""), strict=False))
    p = p.groupby(["project_id", "bundle_id"], as_index=False)["amount"].sum()
    p = p.sort_values(["project_id", "amount", "bundle_id"], ascending=[True, False, True], kind="stable")
    p["anchor"] = p.groupby("project_id")["bundle_id"].transform("first")
    p["anchor_amount"] = p.groupby("project_id")["amount"].transform("first")
    p = p[p["bundle_id"] != p["anchor"]]
    label = p["project_id"] + p["project_id"].map(lambda k: f"（{names[k]}）" if names.get(k) else "")
    if kind == "order":
        amount = p["anchor_amount"].map(lambda v: f"（{_wan(v)}）" if v > 0 else "")
        reason = ("共用跨片区项目" + label + "的收益：该项目随受益最多的" + p["anchor"] + amount
                  + "启动，资金一次到位，" + p["bundle_id"] + "不早于" + p["anchor"] + "实施")
    else:
        reason = "共用跨片区项目" + label + "的收益：作为一个跨片区组合项目同批实施"
    return pd.DataFrame({"bundle_a": p["anchor"], "bundle_b": p["bundle_id"], "kind": kind, "source": "pairing",
                         "reason_zh": reason})


def _facility_links(proposed: pd.DataFrame, bundles: pd.DataFrame | None, kind: str) -> pd.DataFrame:
    fac = proposed.reset_index(drop=True)
    fid = fac["facility_id"].astype(str) if "facility_id" in fac.columns else pd.Series(
        [f"#{i + 1}" for i in range(len(fac))])
    name = fac["name_zh"].astype(str) if "name_zh" in fac.columns else pd.Series("", index=fac.index)
    rows = []
    if "served_bundle_ids" in fac.columns:
        lists = fac["served_bundle_ids"].map(lambda v: [x for x in str(v).split(";") if x] if pd.notna(v) else [])
        ex = pd.DataFrame({"i": fac.index, "b": lists}).explode("b").dropna()
        ex["first"] = ex.groupby("i")["b"].transform("first")
        ex = ex[ex["b"] != ex["first"]]
        rows.append(pd.DataFrame({"bundle_a": ex["first"].astype(str), "bundle_b": ex["b"].astype(str),
                                  "i": ex["i"].to_numpy()}))
    if bundles is not None and {"parcel_ids", "bundle_id"} <= set(bundles.columns) and {
            "parcel_id", "served_bundle_id"} <= set(fac.columns):
        host = pd.DataFrame({"bundle_id": bundles["bundle_id"].astype(str),
                             "parcel_id": bundles["parcel_ids"].map(
                                 lambda v: [x for x in str(v).split(";") if x] if pd.notna(v) else [])})
        host = host.explode("parcel_id").dropna().drop_duplicates("parcel_id")
        hmap = dict(zip(host["parcel_id"], host["bundle_id"], strict=True))
        a = fac["parcel_id"].astype(str).map(hmap)
        b = fac["served_bundle_id"].where(fac["served_bundle_id"].notna()).astype(object)
        keep = a.notna() & b.notna() & (a != b.astype(str))
        rows.append(pd.DataFrame({"bundle_a": a[keep].astype(str), "bundle_b": b[keep].astype(str),
                                  "i": np.flatnonzero(keep.to_numpy())}))
    if not rows:
        return pd.DataFrame(columns=LINK_COLUMNS)
    r = pd.concat(rows, ignore_index=True)
    label = fid.loc[r["i"]].to_numpy() + name.loc[r["i"]].map(lambda v: f"（{v}）" if v and v != "nan" else "")
    verb = "同批实施（设施共建共享）" if kind == "together" else "宿主片区先行或同年实施"
    reason = ("新建设施" + pd.Series(label.to_numpy()) + "建在" + r["bundle_a"] + "、服务" + r["bundle_b"] + "："
              + verb)
    return pd.DataFrame({"bundle_a": r["bundle_a"], "bundle_b": r["bundle_b"], "kind": kind, "source": "facility",
                         "reason_zh": reason.to_numpy()})


def _user_links(extra: pd.DataFrame) -> pd.DataFrame:
    e = extra.reset_index(drop=True)
    for col in ("bundle_a", "bundle_b", "kind"):
        if col not in e.columns:
            raise LayerError(f"phasing: links lack column {col}")
    for col in ("bundle_a", "bundle_b"):
        bad = e[col].isna()
        if bad.any():
            raise LayerError(f"phasing: links row {int(np.flatnonzero(bad)[0]) + 1}: {col} is empty")
    bad = ~e["kind"].isin(_KINDS)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise LayerError(f"phasing: links row {row + 1} ({e['bundle_a'][row]}–{e['bundle_b'][row]}): kind "
                         f"{e['kind'][row]!r} is not 'together' or 'order'")
    reason = e["reason_zh"].astype(str) if "reason_zh" in e.columns else pd.Series("用户指定", index=e.index)
    if "source" in e.columns:
        source = e["source"].fillna("user").astype(str)
    else:
        source = pd.Series("user", index=e.index)
    return pd.DataFrame({"bundle_a": e["bundle_a"].astype(str), "bundle_b": e["bundle_b"].astype(str),
                         "kind": e["kind"], "source": source, "reason_zh": reason})


# ------------------------------------------------------------------------------------------------ phasing
_TOL_CNY = 1e-6  # CNY: sums of floats compared with a capacity


@dataclass(frozen=True, eq=False)
class PhasingResult:
    """The result of :func:`phase`.

    Attributes
    ----------
    table : one row per bundle: ``bundle_id``, ``year`` (Int64, NA = not placed 未纳入), ``year_zh`` (``2027年`` /
        ``未纳入``), ``year_index`` (1 = first year), ``placed``, ``priority``, ``priority_rank`` (1 = highest),
        ``total_cost_cny`` and the cost of each level's column (CNY), ``group_id`` (first member of a group
        that must start together, else ""), ``reason_code`` and ``reason_zh`` (why this year / why not placed);
        sorted by year (unplaced last), priority (highest first), bundle_id.
    annual : one row per year × level: ``year``, ``year_zh``, ``level``, ``level_zh``, ``n_bundles``,
        ``planned_cny``, ``capacity_cny``, ``slack_cny``, ``used_share``, ``binding`` (a bundle placed later or
        not at all needs more of this level than the year has left, though it would fit the year's capacity).
    unplaced : the rows of ``table`` not placed, with their reason.
    links : the links used (:data:`LINK_COLUMNS`).
    method : ``"milp"`` or ``"greedy"``; status : ``optimal`` (proven within ``mip_rel_gap``), ``time_limit``
        (HiGHS stopped at its time limit), ``large`` (model above ``max_exact_columns``: the LP-rounded or greedy
        plan, gap to the LP bound), ``greedy`` or ``empty``; status_zh : the same in words, with the counts and
        which plan was kept (HiGHS's, the rounded LP's or the greedy's).
    objective : Σ priority × year weight of the placement; bound : a proven upper bound (HiGHS's dual bound for
        the MILP, the LP relaxation for the greedy); lp_bound : the LP-relaxation bound; gap : (bound −
        objective) / bound.
    seconds : wall time; years : the programme's years; levels : the payer levels capped.
    stats : model size and times: ``groups`` (bundles or together-groups in the model), ``columns``, ``rows``,
        ``nonzeros``, ``setup_s`` (checks and groups), ``model_s`` (the sparse model), ``lp_s`` (LP relaxation),
        ``mip_s`` (HiGHS branch and bound, when run), ``greedy_s``, ``greedy_objective``, ``rounding_objective``
        (the rounded LP, filled greedily).
    """

    table: pd.DataFrame
    annual: pd.DataFrame
    unplaced: pd.DataFrame
    links: pd.DataFrame
    method: str
    status: str
    status_zh: str
    objective: float
    bound: float
    lp_bound: float
    gap: float
    seconds: float
    years: tuple[int, ...]
    levels: tuple[str, ...]
    stats: Mapping[str, float]

    @property
    def n_placed(self) -> int:
        """Number of bundles placed in a year."""
        return int(self.table["placed"].sum())


def _levels(f: pd.DataFrame, s: PhasingSettings) -> list[str]:
    """Levels capped: central and local when every bundle has them, else total; plus levels given in CNY."""
    def usable(level: str) -> bool:
        col = s.levels[level].column
        return col in f.columns and bool(pd.to_numeric(f[col], errors="coerce").notna().all())

    out = ["central", "local"] if usable("central") and usable("local") else ["total"]
    out += [lv for lv in s.capacity_cny if lv not in out]
    for lv in out:
        if not usable(lv):
            raise LayerError(f"phasing: features lack the cost column {s.levels[lv].column} (CNY, every row) of "
                             f"level {lv}" + (" given in capacity_cny (it needs a by-payer table)"
                                              if lv in s.capacity_cny else ""))
    return out


def _groups(n: int, a: np.ndarray, b: np.ndarray, together: np.ndarray
            ) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """Bundles → groups that start together: components of the together-links, then strongly connected
    components of the order-links between them (a cycle of order-links forces one year). Groups are numbered
    by their first bundle; returns (group per bundle, number of groups, order edges between groups a → b)."""
    ones = np.ones(int(together.sum()))
    g1 = connected_components(csr_array((ones, (a[together], b[together])), shape=(n, n)), directed=False)[1]
    n1 = int(g1.max()) + 1 if n else 0
    oa, ob = g1[a[~together]], g1[b[~together]]
    scc = connected_components(csr_array((np.ones(len(oa)), (oa, ob)), shape=(n1, n1)), directed=True,
                               connection="strong")[1] if n1 else np.zeros(0, int)
    raw = scc[g1] if n else np.zeros(0, int)
    count = int(raw.max()) + 1 if n else 0
    lead = np.full(count, n)
    np.minimum.at(lead, raw, np.arange(n))
    relabel = np.empty(count, int)
    relabel[np.argsort(lead, kind="stable")] = np.arange(count)
    grp = relabel[raw]
    ea, eb = grp[a[~together]], grp[b[~together]]
    keep = ea != eb
    edges = np.unique(np.c_[ea[keep], eb[keep]], axis=0) if keep.any() else np.zeros((0, 2), int)
    return grp, count, edges[:, 0], edges[:, 1]


def _propagate(bad: np.ndarray, ea: np.ndarray, eb: np.ndarray) -> np.ndarray:
    """Groups that cannot be placed: ``bad`` and every group after one of them along order-links."""
    out = bad.copy()
    while len(ea):
        new = out.copy()
        new[eb[out[ea]]] = True
        if (new == out).all():
            return out
        out = new
    return out


def _model(cg: np.ndarray, vg: np.ndarray, cap: np.ndarray, fit: np.ndarray, act: np.ndarray, ea: np.ndarray,
           eb: np.ndarray, weight: np.ndarray):
    """(c, upper bounds, constraint matrix, right-hand side) of the MILP over the active groups ``act``.

    Column ``g * H + y`` is x[g, y]. Rows: Σ_y x[g, y] ≤ 1; per level and year Σ_g cost x ≤ capacity (scaled by
    the capacity); per order-link a → b and year y: Σ_{y' ≤ y} x[b, y'] − Σ_{y' ≤ y} x[a, y'] ≤ 0.
    """
    n_l, h = cap.shape
    n_a = len(act)
    nv = n_a * h
    col = np.arange(nv)
    gi, yi = np.divmod(col, h)
    c = -(vg[act][:, None] * weight[None, :]).ravel()
    ub = fit[act].astype(float).ravel()
    rows = [csr_array((np.ones(nv), (gi, col)), shape=(n_a, nv))]
    rhs = [np.ones(n_a)]
    scale = np.maximum(cap, 1.0)
    for lv in range(n_l):
        w = cg[act[gi], lv]
        nz = w > 0
        rows.append(csr_array((w[nz] / scale[lv, yi[nz]], (yi[nz], col[nz])), shape=(h, nv)))
        rhs.append(cap[lv] / scale[lv])
    loc = np.full(len(vg), -1)
    loc[act] = np.arange(n_a)
    keep = (loc[ea] >= 0) & (loc[eb] >= 0)
    a, b = loc[ea[keep]], loc[eb[keep]]
    if len(a):
        yr, yc = np.tril_indices(h)
        r = (np.arange(len(a))[:, None] * h + yr[None, :]).ravel()
        cb = (b[:, None] * h + yc[None, :]).ravel()
        ca = (a[:, None] * h + yc[None, :]).ravel()
        rows.append(csr_array((np.r_[np.ones(len(r)), -np.ones(len(r))], (np.r_[r, r], np.r_[cb, ca])),
                              shape=(len(a) * h, nv)))
        rhs.append(np.zeros(len(a) * h))
    return c, ub, vstack(rows, format="csr"), np.concatenate(rhs)


def _highs(model, integral: bool, time_limit: float, gap: float, node_limit: int = 0):
    """HiGHS through ``scipy.optimize.milp``. A ``node_limit`` (> 0) stops branch and bound after that many
    nodes — the same plan on any machine, unlike a time limit. HiGHS's own console output (it prints a debug line
    on some solves) is kept off the process's standard output, which the command line owns."""
    c, ub, a, rhs = model
    options = {"time_limit": float(time_limit), "mip_rel_gap": float(gap), "presolve": True}
    if integral and node_limit > 0:
        options["node_limit"] = int(node_limit)
    with _quiet_stdout():
        return milp(c=c, integrality=np.full(len(c), int(integral)), bounds=Bounds(np.zeros(len(c)), ub),
                    constraints=LinearConstraint(a, -np.inf, rhs), options=options)


@contextlib.contextmanager
def _quiet_stdout():
    """Send what C code writes to file descriptor 1 to /dev/null for the duration (Python's stdout untouched)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # no real file behind stdout (notebooks, captured streams)
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _greedy(cg: np.ndarray, vg: np.ndarray, cap: np.ndarray, fit: np.ndarray, blocked: np.ndarray,
            ea: np.ndarray, eb: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Greedy: groups by priority per share of annual capacity (Σ priority ÷ Σ_l cost_l / mean capacity_l),
    highest first, each into the earliest year it fits and not before its order-predecessors (a group is
    visited after all of them). ``start``: groups already placed (kept; the others fill the capacity left).
    Returns the year index per group (−1 = not placed)."""
    n_g = len(vg)
    year = np.full(n_g, -1) if start is None else start.copy()
    slack = cap - _usage(year, cg, cap.shape[1])
    succ = pd.Series(eb).groupby(ea).agg(list).to_dict() if len(ea) else {}
    indeg = np.bincount(eb, minlength=n_g)
    pred_bad = np.zeros(n_g, bool)
    pred_year = np.zeros(n_g, int)
    key = vg / np.maximum((cg / np.maximum(cap.mean(axis=1), 1.0)[None, :]).sum(axis=1), 1e-12)
    heap = [(-key[g], g) for g in np.flatnonzero(indeg == 0)]
    heapq.heapify(heap)
    while heap:
        _, g = heapq.heappop(heap)
        if year[g] < 0 and not blocked[g] and not pred_bad[g]:
            ok = fit[g] & (cg[g][:, None] <= slack + _TOL_CNY).all(axis=0)
            ok[:pred_year[g]] = False
            ys = np.flatnonzero(ok)
            if len(ys):
                year[g] = ys[0]
                slack[:, ys[0]] -= cg[g]
        for h in succ.get(g, ()):
            pred_bad[h] |= year[g] < 0
            pred_year[h] = max(pred_year[h], year[g])
            indeg[h] -= 1
            if indeg[h] == 0:
                heapq.heappush(heap, (-key[h], h))
    return year


def _usage(year: np.ndarray, cg: np.ndarray, h: int) -> np.ndarray:
    placed = year >= 0
    return np.array([np.bincount(year[placed], weights=cg[placed, lv], minlength=h) for lv in range(cg.shape[1])]
                    ).reshape(cg.shape[1], h)


def _repair(year: np.ndarray, cg: np.ndarray, vg: np.ndarray, cap: np.ndarray, ea: np.ndarray, eb: np.ndarray
            ) -> np.ndarray:
    """Make a rounded solver answer exactly feasible: drop the lowest-priority group of an over-full year and
    level (HiGHS's tolerances allow a few CNY over) and any group placed before its order-predecessor."""
    year = year.copy()
    while True:
        bad = (year[eb] >= 0) & ((year[ea] < 0) | (year[ea] > year[eb]))
        if bad.any():
            year[eb[bad]] = -1
            continue
        over = np.argwhere(_usage(year, cg, cap.shape[1]) > cap + _TOL_CNY)
        if not len(over):
            return year
        lv, y = over[0]
        cand = np.flatnonzero((year == y) & (cg[:, lv] > 0))
        year[cand[np.argmin(vg[cand])]] = -1


def phase(
    features: pd.DataFrame,
    *,
    links: pd.DataFrame | None = None,
    settings: PhasingSettings | Mapping[str, Any] | None = None,
    plan_year: int = 2026,
) -> PhasingResult:
    """Assign bundles to the years of the programme under the annual capacity of each payer level.

    MILP (``solver = "milp"``, HiGHS): binary x[b, y]; each bundle at most once; for every level l and year
    y Σ_b cost_{b,l} x[b, y] ≤ cap_{l,y}; together-links x[a, y] = x[b, y] (solved as one group of summed
    cost and priority); order-links Σ_{y' ≤ y} x[b, y'] ≤ Σ_{y' ≤ y} x[a, y'] (b needs a, in the same year or
    earlier); maximise Σ priority_b × (H − k + 1) / H × x[b, y] for the k-th year y, so high priority goes
    first and as much as the capacity allows is placed. A bundle (or group) costing more than every year's
    capacity of a level, and the bundles ordered after it, are left out before solving, with the reason.
    Before branch and bound the LP relaxation is solved (the bound) and rounded (its integral part kept, the rest
    filled greedily); if that plan or the greedy's is within ``mip_rel_gap`` of the bound, it is proven good
    enough and HiGHS's branch and bound is skipped; a model above ``max_exact_columns`` keeps it too (status
    ``large``). Greedy (``solver = "greedy"``): the best priority per share of annual capacity first, into
    the earliest year it fits; its gap is measured against the LP relaxation.

    Capacity of level l in each year: ``capacity_cny[l]`` when given, else ``capacity_share[l]`` × Σ_b cost_{b,l}
    (all bundles of ``features``).

    Parameters
    ----------
    features : :func:`bundle_features` (or any table with ``bundle_id``, ``priority`` ≥ 0 and the cost columns
        of the levels: ``central_cny`` and ``local_cny``, else ``total_cost_cny``, CNY).
    links : :func:`links_from` (``bundle_a, bundle_b, kind``, optional ``reason_zh``), or None.
    settings : overrides of ``data/phasing.toml`` or loaded :class:`PhasingSettings`.
    plan_year : the plan year: the first year unless ``start_year`` is set.

    Returns
    -------
    :class:`PhasingResult`.

    Raises
    ------
    LayerError naming the table, row, id and field: duplicated or empty ids, a missing, negative or
    non-numeric priority or cost, a link naming an unknown bundle.

    Examples
    --------
    Capacity 100 per year for 2 years (year weights 1 and 1/2); costs 60 / 50 / 40 / 30, priorities 4 / 3 / 2 / 1.
    Year 1 takes 60 + 40 (4 + 2), year 2 50 + 30 ((3 + 1) / 2): 8, against 7.5 for 60 + 30 | 50 + 40.

    >>> f = pd.DataFrame({"bundle_id": ["A", "B", "C", "D"], "priority": [4.0, 3.0, 2.0, 1.0],
    ...                   "total_cost_cny": [60.0, 50.0, 40.0, 30.0]})
    >>> r = phase(f, settings={"horizon_years": 2, "capacity_cny": {"total": 100}}, plan_year=2026)
    >>> r.table.set_index("bundle_id")["year"].to_dict(), r.objective
    ({'A': 2026, 'C': 2026, 'B': 2027, 'D': 2027}, 8.0)
    """
    t0 = time.perf_counter()
    s = _settings(settings)
    ids = _ids(features, "bundle_id", "features")
    order = np.argsort(ids.to_numpy(), kind="stable")
    f = features.iloc[order].reset_index(drop=True)
    ids = ids.iloc[order].reset_index(drop=True)
    n = len(f)
    if "priority" not in f.columns:
        raise LayerError("phasing: features lack column priority")
    prio = _numeric(f, "priority", "features", ids)
    levels = _levels(f, s)
    cols = [s.levels[lv].column for lv in levels]
    cost = np.column_stack([_numeric(f, c, "features", ids) for c in cols]) if n else np.zeros((0, len(levels)))
    for arr, names in ((prio[:, None], ["priority"]), (cost, cols)):
        miss = np.argwhere(np.isnan(arr))
        if len(miss):
            raise LayerError(f"phasing: features row {miss[0][0] + 1} (id={ids[miss[0][0]]}): "
                             f"{names[miss[0][1]]} is empty")
    h = s.horizon_years
    years = (s.start_year or int(plan_year)) + np.arange(h)
    cap = np.array([s.capacity_cny[lv] if lv in s.capacity_cny else np.full(h, s.capacity_share[lv] * cost[:, i].sum())
                    for i, lv in enumerate(levels)], dtype=float).reshape(len(levels), h)
    lk = _check_links(links, ids)
    pos = pd.Series(np.arange(n), index=ids.to_numpy())
    a = pos.loc[lk["bundle_a"]].to_numpy(int)
    b = pos.loc[lk["bundle_b"]].to_numpy(int)
    grp, n_g, ea, eb = _groups(n, a, b, lk["kind"].eq("together").to_numpy())
    cg = np.column_stack([np.bincount(grp, weights=cost[:, i], minlength=n_g) for i in range(len(levels))]
                         ).reshape(n_g, len(levels))
    vg = np.bincount(grp, weights=prio, minlength=n_g)
    fit = (cg[:, :, None] <= cap[None, :, :] + _TOL_CNY).all(axis=1)
    impossible = ~fit.any(axis=1)
    blocked = _propagate(impossible, ea, eb)
    weight = (h - np.arange(h)) / h
    stats: dict[str, float] = {"groups": int((~blocked).sum()), "setup_s": time.perf_counter() - t0}
    year, status, bound, lp_bound, note = _solve(cg, vg, cap, fit, blocked, ea, eb, weight, s, stats)
    method = "greedy" if s.solver == "greedy" else "milp"
    objective = _value(year, vg, weight)
    bound = max(bound, objective)
    gap = (bound - objective) / bound if bound > 0 else 0.0
    slack = cap - _usage(year, cg, h)
    table = _table_out(f, ids, prio, cost, levels, cols, s, grp, year, years, cg, cap, slack, impossible, blocked,
                       lk, status)
    annual = _annual(years, levels, s, cg, cap, slack, year, impossible, blocked, grp)
    unplaced = table[~table["placed"]].reset_index(drop=True)
    status_zh = _status_text(status, objective, bound, lp_bound, gap, s, table, years, note, stats)
    return PhasingResult(table=table, annual=annual, unplaced=unplaced, links=lk, method=method, status=status,
                         status_zh=status_zh, objective=objective, bound=float(bound), lp_bound=float(lp_bound),
                         gap=float(gap), seconds=time.perf_counter() - t0, years=tuple(int(y) for y in years),
                         levels=tuple(levels), stats=MappingProxyType(stats))


def _assign(x: np.ndarray, act: np.ndarray, n_g: int, h: int, threshold: float) -> np.ndarray:
    """Year index per group from a solver's x (groups ``act`` × years): the year whose x exceeds ``threshold``."""
    on = x.reshape(len(act), h) > threshold
    year = np.full(n_g, -1)
    year[act[on.any(axis=1)]] = on[on.any(axis=1)].argmax(axis=1)
    return year


def _solve(cg, vg, cap, fit, blocked, ea, eb, weight, s, stats) -> tuple[np.ndarray, str, float, float, str]:
    """(year per group, status, bound, LP bound, which solution was kept: highs / lp_rounding / greedy).

    The LP relaxation gives the bound and, rounded down (its integral x kept, repaired) and filled greedily, a
    first plan; the greedy gives another. The MILP (HiGHS) runs unless the best of them is already within
    ``mip_rel_gap`` of the LP bound or the model has more than ``max_exact_columns`` columns; its solution, also
    filled greedily, is kept unless a heuristic one is better (HiGHS stopped at its time limit).
    """
    act = np.flatnonzero(~blocked)
    n_g, h = len(vg), cap.shape[1]
    if not len(act):
        return np.full(n_g, -1), "empty", 0.0, 0.0, ""
    t0 = time.perf_counter()
    model = _model(cg, vg, cap, fit, act, ea, eb, weight)
    t1 = time.perf_counter()
    lp = _highs(model, False, s.time_limit_s, 0.0)
    t2 = time.perf_counter()
    lp_bound = -float(lp.fun) if lp.status == 0 and lp.x is not None else float(vg[act].sum())
    best = greedy = _greedy(cg, vg, cap, fit, blocked, ea, eb)
    stats.update(columns=len(model[0]), rows=model[2].shape[0], nonzeros=model[2].nnz, model_s=t1 - t0,
                 lp_s=t2 - t1, greedy_s=time.perf_counter() - t2, greedy_objective=_value(greedy, vg, weight))
    if s.solver == "greedy":
        return greedy, "greedy", lp_bound, lp_bound, "greedy"
    note = "greedy"
    if lp.x is not None:
        rounded = _greedy(cg, vg, cap, fit, blocked, ea, eb,
                          start=_repair(_assign(lp.x, act, n_g, h, 1 - 1e-6), cg, vg, cap, ea, eb))
        stats["rounding_objective"] = _value(rounded, vg, weight)
        if stats["rounding_objective"] > _value(best, vg, weight) + 1e-12:
            best, note = rounded, "lp_rounding"
    if lp_bound - _value(best, vg, weight) <= s.mip_rel_gap * lp_bound:
        return best, "optimal", lp_bound, lp_bound, note
    if len(model[0]) > s.max_exact_columns:
        return best, "large", lp_bound, lp_bound, note
    t3 = time.perf_counter()
    res = _highs(model, True, s.time_limit_s, s.mip_rel_gap, s.node_limit)
    stats["mip_s"] = time.perf_counter() - t3
    if res.x is not None:
        exact = _greedy(cg, vg, cap, fit, blocked, ea, eb,
                        start=_repair(_assign(res.x, act, n_g, h, 0.5), cg, vg, cap, ea, eb))
        if _value(exact, vg, weight) >= _value(best, vg, weight) - 1e-12:
            best, note = exact, "highs"
    dual = getattr(res, "mip_dual_bound", None)
    bound = min(lp_bound, -float(dual)) if dual is not None and np.isfinite(dual) else lp_bound
    return best, "optimal" if res.status == 0 else "time_limit", bound, lp_bound, note


def _value(year: np.ndarray, vg: np.ndarray, weight: np.ndarray) -> float:
    """Σ priority × year weight of a placement (the objective)."""
    placed = year >= 0
    return float((vg[placed] * weight[year[placed]]).sum())


def _check_links(links: pd.DataFrame | None, ids: pd.Series) -> pd.DataFrame:
    if links is None or not len(links):
        return pd.DataFrame({c: pd.Series(dtype=object) for c in LINK_COLUMNS})
    lk = _user_links(links)
    known = set(ids)
    for col in ("bundle_a", "bundle_b"):
        bad = ~lk[col].isin(known)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise LayerError(f"phasing: links row {row + 1}: {col} {lk[col].iloc[row]!r} is no bundle of the "
                             f"features")
    lk = lk[lk["bundle_a"] != lk["bundle_b"]].drop_duplicates(["bundle_a", "bundle_b", "kind"])
    return lk.sort_values(["bundle_a", "bundle_b", "kind"], kind="stable").reset_index(drop=True)[LINK_COLUMNS]


def _table_out(f, ids, prio, cost, levels, cols, s, grp, year, years, cg, cap, slack, impossible, blocked, lk,
               status) -> pd.DataFrame:
    """The phasing table with the reason for each bundle's year (or for leaving it out)."""
    n, h = len(ids), len(years)
    idl = ids.tolist()
    by = year[grp] if n else np.zeros(0, int)
    zh = [s.levels[lv].name_zh for lv in levels]
    members = pd.Series(idl).groupby(grp).agg(list).to_dict() if n else {}
    pos = {b: i for i, b in enumerate(idl)}
    rank = pd.Series(-prio).rank(method="min").to_numpy(int) if n else np.zeros(0, int)
    preds: dict[str, list[tuple[str, str]]] = {}
    together: dict[str, list[str]] = {}
    for a, b, kind, reason in lk[["bundle_a", "bundle_b", "kind", "reason_zh"]].itertuples(index=False):
        if kind == "order":
            preds.setdefault(b, []).append((a, reason))
        else:
            together.setdefault(a, []).append(reason)
            together.setdefault(b, []).append(reason)
    span = f"{years[0]}–{years[-1]}年" if h > 1 else f"{years[0]}年"
    codes, texts = [], []
    for i, b in enumerate(idl):  # reasons are text per bundle; the arrays they read are precomputed
        g, k = grp[i], by[i]
        need = cg[g]
        others = [m for m in members[g] if m != b]
        link_txt = []
        if others:
            link_txt.append("与" + "、".join(others) + "同批实施")
        link_txt += together.get(b, [])
        for a, reason in preds.get(b, []):
            ya = by[pos[a]]
            link_txt.append(reason + (f"（{a}：{years[ya]}年）" if ya >= 0 else f"（{a}未纳入）"))
        if k >= 0:
            parts = [f"{years[k]}年（第{k + 1}年）实施；优先级{prio[i]:.3f}（第{rank[i]}/{n}位）"]
            code = "first_year"
            if k > 0:
                fits_before = (need[:, None] <= slack[:, :k] + _TOL_CNY).all(axis=0)
                if not fits_before.any():
                    code = "delayed_capacity"
                    lack = [f"{zh[lv]}需{_wan(need[lv])}，此前各年余额最多{_wan(max(slack[lv, :k].max(), 0.0))}"
                            for lv in range(len(levels)) if (need[lv] > slack[lv, :k] + _TOL_CNY).any()]
                    parts.append("此前年度能力已被优先级更高的片区占用（" + "；".join(lack) + "）")
                elif preds.get(b) or len(members[g]) > 1:
                    code = "delayed_link"
                    parts.append("受联动安排约束，不早于其先行片区")
                else:
                    code = "delayed_other"
                    parts.append("求解在时限内未证明最优，可能可以提前" if status == "time_limit"
                                 else "调整至该年总体效益最优")
        else:
            if impossible[g]:
                code = "over_capacity"
                lack = [f"{zh[lv]}需{_wan(need[lv])}，超过任一年度能力（最高{_wan(cap[lv].max())}）"
                        for lv in range(len(levels)) if need[lv] > cap[lv].max() + _TOL_CNY]
                head = "与" + "、".join(others) + "须同批实施，合计" if others else ""
                parts = ["未纳入：" + head + ("；".join(lack) or "没有一个年度同时容得下其各项资金需求")]
            elif blocked[g] or any(by[pos[a]] < 0 for a, _ in preds.get(b, [])):
                code = "link"
                gone = [a for a, _ in preds.get(b, []) if by[pos[a]] < 0]
                parts = ["未纳入：须在" + ("、".join(gone) or "先行片区") + "之后或同年实施，而其未纳入计划"]
            else:
                lack = [f"{zh[lv]}需{_wan(need[lv])}，各年余额最多{_wan(max(slack[lv].max(), 0.0))}"
                        for lv in range(len(levels)) if (need[lv] > slack[lv] + _TOL_CNY).all()]
                code = "capacity_used" if lack else "not_found"
                parts = [f"未纳入：{span}各年度能力已被优先级更高的片区占用（" + "；".join(lack) + "）" if lack
                         else "未纳入：没有一个年度的余额同时容得下其各项资金需求" if (
                             (need[:, None] > slack + _TOL_CNY).any(axis=0).all())
                         else "未纳入：尚有年度余额可容纳，求解在时限内未排入"]
            parts.append(f"优先级{prio[i]:.3f}（第{rank[i]}/{n}位）")
        codes.append(code)
        texts.append("；".join(parts + link_txt))
    placed = by >= 0
    yr = pd.array(np.where(placed, years[np.clip(by, 0, None)] if h else 0, 0), dtype="Int64")
    yr[~placed] = pd.NA
    yi = pd.array(by + 1, dtype="Int64")
    yi[~placed] = pd.NA
    sizes = np.bincount(grp, minlength=int(grp.max()) + 1 if n else 0)
    lead = np.array([members[g][0] for g in range(len(sizes))], dtype=object)
    out = pd.DataFrame({
        "bundle_id": ids.to_numpy(object), "year": yr, "year_zh": np.where(placed, pd.Series(yr).astype(str) + "年",
                                                                           "未纳入"),
        "year_index": yi, "placed": placed, "priority": prio, "priority_rank": rank,
    })
    if "total_cost_cny" in f.columns and "total_cost_cny" not in cols:
        out["total_cost_cny"] = pd.to_numeric(f["total_cost_cny"], errors="coerce").to_numpy(float)
    for c, v in zip(cols, cost.T, strict=True):
        out[c] = v
    out["group_id"] = np.where(sizes[grp] > 1, lead[grp], "") if n else np.zeros(0, object)
    out["reason_code"] = codes
    out["reason_zh"] = texts
    out["_y"] = np.where(placed, by, h)
    out = out.sort_values(["_y", "priority", "bundle_id"], ascending=[True, False, True], kind="stable")
    return out.drop(columns="_y").reset_index(drop=True)


def _annual(years, levels, s, cg, cap, slack, year, impossible, blocked, grp) -> pd.DataFrame:
    """Year × level: planned cost, capacity, slack, share used and whether the capacity binds."""
    n_l, h = cap.shape
    planned = cap - slack
    waiting = (year[:, None] > np.arange(h)[None, :]) | ((year < 0) & ~impossible & ~blocked)[:, None]
    binding = np.array([[bool((waiting[:, y] & (cg[:, lv] > slack[lv, y] + _TOL_CNY)
                               & (cg[:, lv] <= cap[lv, y] + _TOL_CNY)).any()) for y in range(h)]
                        for lv in range(n_l)]).reshape(n_l, h)
    counts = np.bincount(year[grp][year[grp] >= 0], minlength=h) if len(grp) else np.zeros(h, int)
    yy = np.tile(years, n_l)
    ll = np.repeat(np.array(levels, dtype=object), h)
    return pd.DataFrame({
        "year": yy.astype(int), "year_zh": [f"{y}年" for y in yy], "level": ll,
        "level_zh": [s.levels[lv].name_zh for lv in ll], "n_bundles": np.tile(counts, n_l),
        "planned_cny": planned.ravel(), "capacity_cny": cap.ravel(), "slack_cny": slack.ravel(),
        "used_share": np.divide(planned.ravel(), cap.ravel(), out=np.full(cap.size, np.nan), where=cap.ravel() > 0),
        "binding": binding.ravel(),
    }).sort_values(["year", "level"], key=lambda c: c.map({lv: i for i, lv in enumerate(levels)})
                   if c.name == "level" else c, kind="stable").reset_index(drop=True)


def _status_text(status, objective, bound, lp_bound, gap, s, table, years, note, stats) -> str:
    proven = "已证明最优" if gap <= 1e-9 else f"已证明距最优不超过{s.mip_rel_gap:.2%}"
    head = {
        "optimal": f"精确求解（HiGHS MILP）：{proven}",
        "time_limit": f"精确求解（HiGHS MILP）达到时限{s.time_limit_s:g}秒，取最优可行解",
        "large": f"模型{int(stats.get('columns', 0))}列，超过精确求解上限{s.max_exact_columns}列，未运行分支定界",
        "greedy": "贪心算法（单位年度能力优先级高者先排，排入最早可容纳的年度）",
        "empty": "没有可排入的片区",
    }[status] + {"lp_rounding": "（采用LP松弛取整＋贪心补位解）", "greedy": "（采用贪心解）"}.get(
        note if status != "greedy" else "", "")
    bound_word = "LP松弛上界" if bound == lp_bound else "上界"
    n, placed = len(table), int(table["placed"].sum())
    span = f"{years[0]}–{years[-1]}年" if len(years) > 1 else f"{years[0]}年"
    return (f"{head}；目标值{objective:.4f}，{bound_word}{bound:.4f}，差距{gap:.2%}；{n}个片区中{placed}个排入{span}"
            f"计划，{n - placed}个未纳入")


def phase_layer(result: PhasingResult, bundles: pd.DataFrame) -> pd.DataFrame:
    """The bundles layer (a GeoDataFrame keeps its geometry) with the phasing columns ``year``, ``year_zh``,
    ``year_index``, ``priority``, ``reason_zh`` joined on ``bundle_id``, sorted by ``bundle_id`` — the map layer
    of the phasing (year per bundle)."""
    keep = ["bundle_id", "year", "year_zh", "year_index", "priority", "reason_zh"]
    base = bundles.drop(columns=[c for c in keep[1:] if c in bundles.columns])
    base = base.assign(bundle_id=base["bundle_id"].astype(str))
    out = base.merge(result.table[keep], on="bundle_id", how="left")
    return out.sort_values("bundle_id", kind="stable").reset_index(drop=True)
