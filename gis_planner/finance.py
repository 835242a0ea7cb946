"""Funding balance (资金平衡): cost, subsidies, operating revenue, balance modes and cross-area pairing (肥瘦搭配)."""

from __future__ import annotations

import copy
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import shapely
from scipy.optimize import Bounds, LinearConstraint, milp

from gis_planner import eligibility
from gis_planner._errors import ConfigError, LayerError

__all__ = [
    "DEFAULT_SCENARIOS",
    "FinanceResult",
    "MODES",
    "PAIRING_COLUMNS",
    "XLSX_HEADERS",
    "annuity_factor",
    "assumptions_table",
    "balance",
    "finance_settings",
    "npv",
    "pairing_arcs",
    "sensitivity",
    "solve_pairing",
    "xlsx_headers",
]

#: balance modes in the order they are tested (keys of ``[modes]`` in ``data/finance.toml``).
MODES = ("self_compound", "self_bundle", "cross_area", "government_led")
#: leading columns of ``pairings.csv`` (DESIGN.md contract); more follow.
PAIRING_COLUMNS = ["bundle_id", "project_id", "amount_cny", "distance_m"]
#: default sensitivity scenarios: settings overrides per scenario name (values are absolute, not relative).
DEFAULT_SCENARIOS: dict[str, dict[str, float]] = {
    "cost+10%": {"cost_factor": 1.1},
    "cost-10%": {"cost_factor": 0.9},
    "revenue+20%": {"revenue_factor": 1.2},
    "revenue-20%": {"revenue_factor": 0.8},
}
_EXTRA_CLASSES = {"facilities": "新建设施", "parking": "停车场"}
_BASES = ("household", "floor_area", "cost_share")
_KINDS = ("subsidy", "resident")
_UNITS = ("none", "district", "subdistrict", "community")
_RULE_FIELDS = {"name_zh", "payer_zh", "kind", "basis", "rate", "unit", "classes", "source", "verified",
                "split", "split_zh", "split_source", "split_verified"}
_PARAM_FIELDS = {"value", "unit", "name_zh", "source", "verified"}
_TOL_CNY = 0.5
_CATEGORY_ZH = {
    "cost": "成本", "subsidy": "财政补助", "resident": "居民出资", "operating": "经营性收益",
    "land": "存量用地收益", "project": "相邻项目收益", "pairing": "跨片区组合收益", "surplus": "结余",
    "residual": "政府引导兜底(待筹)", "transfer": "小区与片区间划转",
}


# ----------------------------------------------------------------------------------------- settings
@cache
def _read_toml(name: str) -> dict:
    with resources.files("gis_planner").joinpath("data", name).open("rb") as fh:
        return tomllib.load(fh)


@cache
def _facility_names() -> dict[str, str]:
    """Facility type → Chinese name, from ``data/standards.toml``."""
    types = _read_toml("standards.toml").get("facility_types", {})
    return {k: v.get("name_zh", k) for k, v in types.items()}


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _set_param(spec: dict, key: str, value: Any, where: str) -> None:
    if isinstance(value, Mapping):
        extra = set(value) - _PARAM_FIELDS
        if extra:
            raise ConfigError(f"{where}: unknown field(s) {sorted(extra)}; known: {sorted(_PARAM_FIELDS)}")
        spec.update(copy.deepcopy(dict(value)))
        if "source" not in value:
            spec["source"], spec["verified"] = "plan.toml override", False
    else:
        spec.update(value=value, source="plan.toml override", verified=False)
    if not _is_number(spec["value"]):
        raise ConfigError(f"{where}: expected a number, got {spec['value']!r}")
    spec["overridden"] = True


def finance_settings(overrides: Mapping[str, Any] | None = None) -> dict:
    """The finance settings: ``data/finance.toml`` with ``overrides`` (plan.toml ``[finance]``) applied.

    Parameters
    ----------
    overrides : flat keys of ``[params]`` (``discount_rate = 0.06`` or a table with ``value``/``source``/
        ``verified``) and ``[options]`` (``one_to_one = true``, ``max_distance_m = 2000``), plus the tables
        ``funding`` (``{"central": {"rate": 5000}}``; a new rule needs ``name_zh, kind, basis, rate, classes``)
        and ``facility_income`` (``{"market": 250000}``, CNY per year). Unknown keys raise
        :class:`ConfigError` naming the key.

    Returns
    -------
    dict with ``params``, ``funding``, ``facility_income``, ``modes``, ``options`` (every parameter a table
    carrying ``value``, ``source``, ``verified`` and ``overridden``).

    Examples
    --------
    >>> s = finance_settings({"discount_rate": 0.05})
    >>> s["params"]["discount_rate"]["value"], s["params"]["discount_rate"]["source"]
    (0.05, 'plan.toml override')
    """
    data = copy.deepcopy(_read_toml("finance.toml"))
    for spec in [*data["params"].values(), *data["funding"].values()]:
        spec["overridden"] = False
    data["facility_income_overridden"] = []
    return _apply_overrides(data, overrides)


def _apply_overrides(data: dict, overrides: Mapping[str, Any] | None) -> dict:
    """Apply plan.toml-style overrides to merged settings ``data`` (modified in place and returned)."""
    params, options, funding = data["params"], data["options"], data["funding"]
    income = data["facility_income"]
    income_overridden: set[str] = set(data.get("facility_income_overridden", []))
    for key, value in (overrides or {}).items():
        if key in params:
            _set_param(params[key], key, value, f"finance.{key}")
        elif key in options:
            default = options[key]
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int | float):
                ok = _is_number(value)
                value = type(default)(value) if ok else value
            elif isinstance(default, list):
                ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
                value = list(value) if ok else value
            else:
                ok = isinstance(value, str)
            if not ok:
                raise ConfigError(f"finance.{key}: expected {type(default).__name__}, got {value!r}")
            options[key] = value
        elif key == "funding":
            if not isinstance(value, Mapping):
                raise ConfigError("finance.funding: expected a table of funding rules")
            for rule, fields in value.items():
                if not isinstance(fields, Mapping):
                    raise ConfigError(f"finance.funding.{rule}: expected a table")
                extra = set(fields) - _RULE_FIELDS
                if extra:
                    raise ConfigError(f"finance.funding.{rule}: unknown field(s) {sorted(extra)}; "
                                      f"known: {sorted(_RULE_FIELDS)}")
                if rule not in funding:
                    missing = {"name_zh", "kind", "basis", "rate", "classes"} - set(fields)
                    if missing:
                        raise ConfigError(f"finance.funding.{rule}: a new rule needs {sorted(missing)}")
                    funding[rule] = {"payer_zh": fields["name_zh"], "unit": ""}
                funding[rule].update(copy.deepcopy(dict(fields)))
                if "source" not in fields:
                    funding[rule]["source"], funding[rule]["verified"] = "plan.toml override", False
                funding[rule]["overridden"] = True
        elif key == "facility_income":
            if not isinstance(value, Mapping):
                raise ConfigError("finance.facility_income: expected a table facility type → CNY per year")
            for ftype, amount in value.items():
                if ftype in ("source", "verified"):
                    income[ftype] = amount
                    continue
                if not _is_number(amount) or amount < 0:
                    raise ConfigError(f"finance.facility_income.{ftype}: expected a number ≥ 0, got {amount!r}")
                income[ftype] = float(amount)
                income_overridden.add(ftype)
        else:
            known = sorted([*params, *options, "funding", "facility_income"])
            raise ConfigError(f"finance: unknown setting {key!r}; known: {', '.join(known)}")
    data["facility_income_overridden"] = sorted(income_overridden)
    _check(data)
    return data


def _check(data: dict) -> None:
    p = {k: v["value"] for k, v in data["params"].items()}
    if p["discount_rate"] <= -1:
        raise ConfigError(f"finance.discount_rate: {p['discount_rate']} must be > -1")
    if p["horizon_years"] < 0 or int(p["horizon_years"]) != p["horizon_years"]:
        raise ConfigError(f"finance.horizon_years: expected a whole number ≥ 0, got {p['horizon_years']}")
    for key in ("common_income_share", "parking_occupancy", "parking_usable_share", "land_net_share",
                "project_surplus_share"):
        if not 0 <= p[key] <= 1:
            raise ConfigError(f"finance.{key}: {p[key]} is not a share in 0–1")
    for key, value in p.items():
        if key != "discount_rate" and value < 0:
            raise ConfigError(f"finance.{key}: {value} must be ≥ 0")
    if p["parking_m2_per_space"] <= 0:
        raise ConfigError("finance.parking_m2_per_space must be > 0")
    classes = {*eligibility.load_costs()["classes"], *_EXTRA_CLASSES}
    for rule, spec in data["funding"].items():
        where = f"finance.funding.{rule}"
        if spec.get("kind") not in _KINDS:
            raise ConfigError(f"{where}.kind: {spec.get('kind')!r} is not one of {', '.join(_KINDS)}")
        if spec.get("basis") not in _BASES:
            raise ConfigError(f"{where}.basis: {spec.get('basis')!r} is not one of {', '.join(_BASES)}")
        if not _is_number(spec.get("rate")) or spec["rate"] < 0:
            raise ConfigError(f"{where}.rate: expected a number ≥ 0, got {spec.get('rate')!r}")
        if spec["basis"] == "cost_share" and spec["rate"] > 1:
            raise ConfigError(f"{where}.rate: a cost share must be in 0–1, got {spec['rate']}")
        bad = [c for c in spec.get("classes", []) if c not in classes]
        if bad or not spec.get("classes"):
            raise ConfigError(f"{where}.classes: unknown or empty {bad or spec.get('classes')}; "
                              f"known: {', '.join(sorted(classes))}")
        split = spec.get("split")
        if split is not None:
            if not isinstance(split, Mapping) or not split or not all(_is_number(v) and v >= 0
                                                                      for v in split.values()):
                raise ConfigError(f"{where}.split: expected a table payer → share ≥ 0")
            if abs(sum(split.values()) - 1.0) > 1e-9:
                raise ConfigError(f"{where}.split: shares sum to {sum(split.values()):g}, not 1")
    o = data["options"]
    if o["same_unit"] not in _UNITS:
        raise ConfigError(f"finance.same_unit: {o['same_unit']!r} is not one of {', '.join(_UNITS)}")
    if o["max_distance_m"] < 0:
        raise ConfigError("finance.max_distance_m must be ≥ 0 (0 = no limit)")
    if o["flow_unit_cny"] < 1:
        raise ConfigError("finance.flow_unit_cny must be a whole number ≥ 1")


def assumptions_table(settings: Mapping[str, Any] | dict | None = None, costs: dict | None = None) -> pd.DataFrame:
    """Every parameter the balance uses, with its value, unit, source and verified flag.

    Parameters
    ----------
    settings : overrides (as for :func:`finance_settings`) or an already merged settings dict.
    costs : the plan's ``[costs]`` overrides, to list the unit costs per content class (``data/costs.toml``).

    Returns
    -------
    DataFrame ``group, key, name_zh, value, unit, source, verified, overridden``.
    """
    s = dict(settings) if _is_merged(settings) else finance_settings(settings)
    rows: list[dict[str, Any]] = []
    for _, r in eligibility.cost_table(costs).iterrows():
        rows.append({"group": "unit_cost", "key": f"costs.{r['class']}", "name_zh": f"{r['name_zh']}单位造价",
                     "value": r["unit_cost_cny_m2"], "unit": "CNY per m² of floor area (incremental)",
                     "source": r["source"], "verified": bool(r["verified"]),
                     "overridden": r["source"] == "plan.toml override"})
    rows.append({"group": "unit_cost", "key": "facilities.build_cost_cny", "name_zh": "新建设施建设费用",
                 "value": None, "unit": "CNY per facility",
                 "source": "build_cost_cny of each proposed facility (siting; standards.toml build_cost_cny)",
                 "verified": False, "overridden": False})
    for key, spec in s["params"].items():
        rows.append({"group": "param", "key": key, "name_zh": spec.get("name_zh", key), "value": spec["value"],
                     "unit": spec.get("unit", ""), "source": spec.get("source", ""),
                     "verified": bool(spec.get("verified", False)), "overridden": spec.get("overridden", False)})
    for rule, spec in s["funding"].items():
        rows.append({"group": "funding", "key": f"funding.{rule}.rate", "name_zh": spec["name_zh"],
                     "value": spec["rate"], "unit": f"{spec.get('unit', '')} ({spec['basis']}; "
                     f"classes {', '.join(spec['classes'])}; {spec['kind']})",
                     "source": spec.get("source", ""), "verified": bool(spec.get("verified", False)),
                     "overridden": spec.get("overridden", False)})
        for part, share in (spec.get("split") or {}).items():
            rows.append({"group": "funding", "key": f"funding.{rule}.split.{part}",
                         "name_zh": (spec.get("split_zh") or {}).get(part, part), "value": share,
                         "unit": "share of the rule", "source": spec.get("split_source", spec.get("source", "")),
                         "verified": bool(spec.get("split_verified", False)),
                         "overridden": spec.get("overridden", False)})
    income = s["facility_income"]
    names = _facility_names()
    for ftype, amount in income.items():
        if ftype in ("source", "verified"):
            continue
        rows.append({"group": "facility_income", "key": f"facility_income.{ftype}",
                     "name_zh": f"{names.get(ftype, '其他设施' if ftype == 'default' else ftype)}年经营收益",
                     "value": amount, "unit": "CNY per facility per year",
                     "source": income.get("source", ""), "verified": bool(income.get("verified", False)),
                     "overridden": ftype in s.get("facility_income_overridden", [])})
    defaults = _read_toml("finance.toml")["options"]
    for key, value in s["options"].items():
        rows.append({"group": "option", "key": key, "name_zh": "选项", "value":
                     ", ".join(value) if isinstance(value, list) else value, "unit": "",
                     "source": "policy choice (data/finance.toml [options])", "verified": True,
                     "overridden": value != defaults[key]})
    for key, spec in s["modes"].items():
        rows.append({"group": "mode", "key": f"{spec['rule_id']} {key}", "name_zh": spec["name_zh"],
                     "value": spec["text_zh"], "unit": "", "source": f"DOMAIN.md §6 {spec['source']}",
                     "verified": True, "overridden": False})
    out = pd.DataFrame(rows)
    out["value"] = out["value"].astype(object)
    return out


# ----------------------------------------------------------------------------------------------- money
def annuity_factor(rate: float, years: int) -> float:
    """Present value of 1 CNY received at the end of each of ``years`` years at discount ``rate``.

    ``(1 - (1 + rate) ** -years) / rate``; ``years`` when ``rate`` is 0.

    Examples
    --------
    >>> round(annuity_factor(0.08, 15), 6)
    8.559479
    >>> annuity_factor(0.0, 10)
    10.0
    """
    if years <= 0:
        return 0.0
    if rate == 0:
        return float(years)
    return float((1.0 - (1.0 + rate) ** -years) / rate)


def npv(annual_cny: Any, rate: float, years: int) -> Any:
    """Net present value (CNY) of a constant annual net income (CNY per year) over ``years`` at ``rate``.

    Examples
    --------
    >>> round(npv(100_000, 0.08, 15))
    855948
    """
    return np.asarray(annual_cny, dtype=float) * annuity_factor(rate, years) if np.ndim(annual_cny) else \
        float(annual_cny) * annuity_factor(rate, years)


def _wan(x: float) -> str:
    return f"{x / 1e4:,.1f}万元"


# ------------------------------------------------------------------------------------------- inputs
def _ids(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [v for v in str(value).split(";") if v]


def _num(df: pd.DataFrame, col: str) -> np.ndarray:
    if col not in df.columns:
        return np.zeros(len(df))
    return pd.to_numeric(df[col], errors="coerce").fillna(0.0).to_numpy(dtype=float)


def _require(df: pd.DataFrame | None, name: str, cols: tuple[str, ...]) -> None:
    if df is None:
        return
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise LayerError(f"finance: {name} lacks column(s) {', '.join(missing)}")


# ----------------------------------------------------------------------------------------- pairing
def pairing_arcs(
    bundles: gpd.GeoDataFrame,
    projects: gpd.GeoDataFrame,
    *,
    max_distance_m: float = 0.0,
    same_unit: str = "none",
    bundle_units: pd.Series | None = None,
    project_units: pd.Series | None = None,
) -> pd.DataFrame:
    """Every bundle × project pair with its straight-line distance and whether cross-area pairing may use it.

    Build the problem here, inspect it, then solve it with :func:`solve_pairing`. Distances are straight lines
    between the geometries (edge to edge, metres); the walking network is not needed for money flows.

    Parameters
    ----------
    bundles : ``bundle_id``, ``project_ids`` (``;``-joined projects attached within the bundling gap) and
        geometry, in a metric CRS.
    projects : ``project_id`` and geometry, same CRS.
    max_distance_m : largest distance for a cross-area partner, metres; 0 = no limit.
    same_unit : ``"none"`` or the unit (``district``/``subdistrict``/``community``) both must share.
    bundle_units, project_units : the unit value per ``bundle_id`` / ``project_id`` when ``same_unit`` is set.

    Returns
    -------
    DataFrame ``bundle_id, project_id, distance_m, attached, same_unit, allowed, excluded_reason`` (one row per
    pair, sorted). ``attached`` pairs are 大片区统筹 partners and never cross-area partners.
    """
    cols = ["bundle_id", "project_id", "distance_m", "attached", "same_unit", "allowed", "excluded_reason"]
    if projects is None or not len(projects) or not len(bundles):
        return pd.DataFrame(columns=cols)
    bg = np.asarray(bundles.geometry.values)
    pg = np.asarray(projects.geometry.values)
    dist = shapely.distance(bg[:, None], pg[None, :])
    bids = bundles["bundle_id"].astype(str).to_numpy()
    pids = projects["project_id"].astype(str).to_numpy()
    b_idx, p_idx = np.meshgrid(np.arange(len(bids)), np.arange(len(pids)), indexing="ij")
    out = pd.DataFrame({"bundle_id": bids[b_idx.ravel()], "project_id": pids[p_idx.ravel()],
                        "distance_m": dist.ravel()})
    attached = {(b, p) for b, ids in zip(bids, bundles.get("project_ids", pd.Series([None] * len(bids))),
                                          strict=True) for p in _ids(ids)}
    out["attached"] = [(b, p) in attached for b, p in zip(out["bundle_id"], out["project_id"], strict=True)]
    if same_unit != "none" and bundle_units is not None and project_units is not None:
        bu = out["bundle_id"].map(bundle_units)
        pu = out["project_id"].map(project_units)
        out["same_unit"] = (bu == pu) & bu.notna()
    else:
        out["same_unit"] = True
    too_far = (out["distance_m"] > max_distance_m) if max_distance_m else np.zeros(len(out), dtype=bool)
    reason = np.select([out["attached"], ~out["same_unit"], too_far],
                       ["attached (大片区统筹)", f"different {same_unit}", f"farther than {max_distance_m:g} m"],
                       default="")
    out["allowed"] = reason == ""
    out["excluded_reason"] = reason
    return out.sort_values(["bundle_id", "project_id"], kind="stable").reset_index(drop=True)[cols]


def solve_pairing(
    deficit: Mapping[str, float] | pd.Series,
    surplus: Mapping[str, float] | pd.Series,
    arcs: pd.DataFrame,
    *,
    one_to_one: bool = False,
    unit_cny: int = 1,
    whole_first: bool = False,
) -> pd.DataFrame:
    """Match deficit bundles with surplus projects over the allowed arcs.

    Lexicographic objective: first maximise the amount funded (= minimise the total unfunded deficit), then
    — only with ``whole_first`` — maximise the number of bundles funded in full (a half-funded bundle still
    cannot start), then minimise the amount-weighted distance Σ distance_m × amount_cny.

    - ``one_to_one=False``: a min-cost maximum flow (networkx ``max_flow_min_cost``; source → project, capacity
      = surplus; project → bundle, cost = distance in whole metres; bundle → sink, capacity = deficit) in whole
      ``unit_cny`` units — surpluses rounded down, deficits up, then each bundle's excess trimmed, so an amount
      never exceeds a surplus or a deficit. A project's surplus may be split over several bundles.
    - ``one_to_one=True``: each project funds at most one bundle and each bundle has at most one partner, with
      amount min(surplus, deficit); a MILP (scipy ``milp``/HiGHS) solved twice — maximise the amount, then, with
      the amount fixed at its optimum, minimise Σ distance × amount.

    Parameters
    ----------
    deficit : bundle_id → deficit to fund, CNY (values ≤ 0 ignored).
    surplus : project_id → surplus available, CNY (values ≤ 0 ignored).
    arcs : ``bundle_id, project_id, distance_m`` of the allowed pairs (an ``allowed`` column, if present, is
        honoured).
    one_to_one : see above.
    unit_cny : flow unit, CNY (1 = exact to the yuan).
    whole_first : prefer fully funded bundles among the maximum-amount solutions (a MILP picks the bundles,
        then the flow fills them first).

    Returns
    -------
    DataFrame ``bundle_id, project_id, amount_cny, distance_m`` (positive amounts, sorted by bundle and project).

    Examples
    --------
    >>> arcs = pd.DataFrame({"bundle_id": ["A", "A", "B"], "project_id": ["P", "Q", "Q"],
    ...                      "distance_m": [100.0, 500.0, 300.0]})
    >>> solve_pairing({"A": 80, "B": 50}, {"P": 60, "Q": 70}, arcs).values.tolist()
    [['A', 'P', 60.0, 100.0], ['A', 'Q', 20.0, 500.0], ['B', 'Q', 50.0, 300.0]]
    """
    cols = PAIRING_COLUMNS
    d = {str(k): float(v) for k, v in dict(deficit).items() if v > _TOL_CNY}
    s = {str(k): float(v) for k, v in dict(surplus).items() if v > _TOL_CNY}
    a = arcs if "allowed" not in arcs.columns else arcs[arcs["allowed"].astype(bool)]
    a = a[a["bundle_id"].astype(str).isin(d) & a["project_id"].astype(str).isin(s)]
    a = a.assign(bundle_id=a["bundle_id"].astype(str), project_id=a["project_id"].astype(str))
    a = a.sort_values(["bundle_id", "project_id"], kind="stable").drop_duplicates(["bundle_id", "project_id"])
    if a.empty:
        return pd.DataFrame({c: pd.Series(dtype=object if c.endswith("id") else float) for c in cols})
    if one_to_one:
        out = _solve_one_to_one(d, s, a, whole_first)
    else:
        out = _solve_flow(d, s, a, int(unit_cny), whole_first)
    out = out[out["amount_cny"] > 0].sort_values(["bundle_id", "project_id"], kind="stable")
    return out.reset_index(drop=True)[cols]


def _whole_bundles(g: nx.DiGraph, arcs: list[tuple[str, str]]) -> set[str]:
    """Bundles to fund in full: most whole bundles among the maximum-amount flows (MILP, scipy/HiGHS)."""
    value = nx.maximum_flow_value(g, "source", "sink")
    if value == 0:
        return set()
    bundles = sorted({b for b, _ in arcs})
    projects = sorted({p for _, p in arcs})
    cap_b = np.array([g.edges[("b", b), "sink"]["capacity"] for b in bundles], dtype=float)
    cap_p = np.array([g.edges["source", ("p", p)]["capacity"] for p in projects], dtype=float)
    scale = max(cap_b.max(), cap_p.max())
    n, nb = len(arcs), len(bundles)
    bi = {b: i for i, b in enumerate(bundles)}
    pi = {p: i for i, p in enumerate(projects)}
    A_b = np.zeros((nb, n + nb))
    A_p = np.zeros((len(projects), n + nb))
    for j, (b, p) in enumerate(arcs):
        A_b[bi[b], j] = 1.0
        A_p[pi[p], j] = 1.0
    A_full = A_b.copy()
    A_full[np.arange(nb), n + np.arange(nb)] = -cap_b / scale
    total = np.concatenate([np.ones(n), np.zeros(nb)])[None, :]
    cons = [LinearConstraint(A_b, -np.inf, cap_b / scale), LinearConstraint(A_p, -np.inf, cap_p / scale),
            LinearConstraint(A_full, 0.0, np.inf), LinearConstraint(total, value / scale - 1e-7, np.inf)]
    c = np.concatenate([np.zeros(n), -np.ones(nb)])
    res = milp(c, constraints=cons, integrality=np.concatenate([np.zeros(n), np.ones(nb)]),
               bounds=Bounds(0, np.concatenate([np.full(n, np.inf), np.ones(nb)])))
    if not res.success:  # pragma: no cover - the maximum flow itself is a feasible point
        return set()
    return {b for b, z in zip(bundles, res.x[n:], strict=True) if z > 0.5}


def _solve_flow(d: dict[str, float], s: dict[str, float], a: pd.DataFrame, unit: int,
                whole_first: bool = False) -> pd.DataFrame:
    g = nx.DiGraph()
    g.add_node("source")
    g.add_node("sink")
    for p in sorted(s):
        cap = int(math.floor(s[p] / unit + 1e-9))
        if cap > 0:
            g.add_edge("source", ("p", p), capacity=cap, weight=0)
    for b in sorted(d):
        g.add_edge(("b", b), "sink", capacity=int(math.ceil(d[b] / unit - 1e-9)), weight=0)
    arcs: list[tuple[str, str]] = []
    for b, p, dist in a[["bundle_id", "project_id", "distance_m"]].itertuples(index=False):
        if ("p", p) in g:
            g.add_edge(("p", p), ("b", b), weight=int(round(float(dist))))
            arcs.append((b, p))
    if whole_first and arcs:
        # a reward M per unit into a bundle chosen for full funding; M > 2 × the longest arc makes any
        # rerouting away from those bundles dearer than any distance saving, so the flow fills them first
        big = 2 * max(g.edges[("p", p), ("b", b)]["weight"] for b, p in arcs) + 1
        for b in _whole_bundles(g, arcs):
            g.edges[("b", b), "sink"]["weight"] = -big
    flow = nx.max_flow_min_cost(g, "source", "sink")
    dist_of = {(b, p): float(x) for b, p, x in a[["bundle_id", "project_id", "distance_m"]].itertuples(index=False)}
    rows = [{"bundle_id": b, "project_id": p, "amount_cny": float(units * unit), "distance_m": dist_of[(b, p)]}
            for (_, p), targets in ((n, t) for n, t in flow.items() if isinstance(n, tuple) and n[0] == "p")
            for (_, b), units in targets.items() if units > 0]
    out = pd.DataFrame(rows, columns=PAIRING_COLUMNS)
    if out.empty:
        return out
    # rounding deficits up may over-fund a bundle by < 1 unit: trim its farthest pairs
    out = out.sort_values(["bundle_id", "distance_m", "project_id"], ascending=[True, False, True])
    amounts = out["amount_cny"].to_numpy(copy=True)
    for b, idx in out.groupby("bundle_id", sort=False).indices.items():
        excess = amounts[idx].sum() - d[b]
        for i in idx:
            if excess <= 0:
                break
            cut = min(excess, amounts[i])
            amounts[i] -= cut
            excess -= cut
    out["amount_cny"] = amounts
    return out


def _solve_one_to_one(d: dict[str, float], s: dict[str, float], a: pd.DataFrame,
                      whole_first: bool = False) -> pd.DataFrame:
    b_ids = a["bundle_id"].to_numpy()
    p_ids = a["project_id"].to_numpy()
    w = np.array([min(d[b], s[p]) for b, p in zip(b_ids, p_ids, strict=True)])
    dist = a["distance_m"].to_numpy(dtype=float)
    n = len(w)
    scale = w.max()
    wn = w / scale
    rows_b = {b: i for i, b in enumerate(sorted(set(b_ids)))}
    rows_p = {p: i for i, p in enumerate(sorted(set(p_ids)))}
    A = np.zeros((len(rows_b) + len(rows_p), n))
    for j, (b, p) in enumerate(zip(b_ids, p_ids, strict=True)):
        A[rows_b[b], j] = 1.0
        A[len(rows_b) + rows_p[p], j] = 1.0
    match = LinearConstraint(A, -np.inf, 1.0)
    integrality = np.ones(n)
    bounds = Bounds(0, 1)
    first = milp(-wn, constraints=[match], integrality=integrality, bounds=bounds)
    if not first.success:  # pragma: no cover - a matching polytope is never infeasible
        raise RuntimeError(f"pairing MILP failed: {first.message}")
    cons = [match, LinearConstraint(wn[None, :], -first.fun - 1e-7 * max(1.0, -first.fun), np.inf)]
    x = first.x
    if whole_first:
        full = np.array([s[p] >= d[b] - _TOL_CNY for b, p in zip(b_ids, p_ids, strict=True)], dtype=float)
        mid = milp(-full, constraints=cons, integrality=integrality, bounds=bounds)
        if mid.success:
            x = mid.x
            cons.append(LinearConstraint(full[None, :], -mid.fun - 0.5, np.inf))
    dn = dist / max(dist.max(), 1.0)
    last = milp(dn * wn, constraints=cons, integrality=integrality, bounds=bounds)
    x = last.x if last.success else x
    chosen = np.round(x).astype(bool)
    return pd.DataFrame({"bundle_id": b_ids[chosen], "project_id": p_ids[chosen], "amount_cny": w[chosen],
                         "distance_m": dist[chosen]}, columns=PAIRING_COLUMNS)


# -------------------------------------------------------------------------------------- the result
@dataclass
class FinanceResult:
    """Everything the balance stage produced.

    Attributes
    ----------
    bundles : bundles with balance columns (``total_cost_cny, subsidy_cny, resident_cny, revenue_npv_cny,
        land_surplus_cny, attached_project_cny, balance_cny, paired_cny, unfunded_cny, surplus_cny,
        balance_mode, balance_mode_zh, balance_rule, funded, funded_ratio`` …).
    compounds : the compounds with the in-compound balance (``subsidy_cny, resident_cny, revenue_npv_cny,
        compound_balance_cny, self_balanced``) — NaN outside bundles.
    ledger : one row per bundle (or compound) × line item; ``amount_cny`` > 0 money in, < 0 money out; every
        bundle's and every compound's lines sum to zero (the ``residual`` line is the unfunded gap).
    pairings : cross-area pairings ``bundle_id, project_id, amount_cny, distance_m`` + project and unit columns.
    pairings_layer : the pairings as LineStrings from the bundle's representative point to the project's.
    allocations : every project → bundle amount, adjacent (``kind = attached``) and cross-area.
    projects : each revenue project's surplus and where it went.
    parcels : each attached vacant parcel's use (facility / land sale / parking / none) and money.
    proposed : the proposed facilities with the bundle they were assigned to.
    unfunded : bundles still short after pairing, with the amount.
    assumptions : every parameter with source and verified flag (:func:`assumptions_table`).
    summary : one row per balance mode: number of bundles, cost, unfunded.
    settings : the merged settings used.
    """

    bundles: gpd.GeoDataFrame
    compounds: gpd.GeoDataFrame
    ledger: pd.DataFrame
    pairings: pd.DataFrame
    pairings_layer: gpd.GeoDataFrame
    allocations: pd.DataFrame
    projects: pd.DataFrame
    parcels: pd.DataFrame
    proposed: pd.DataFrame
    unfunded: pd.DataFrame
    assumptions: pd.DataFrame
    summary: pd.DataFrame
    settings: dict = field(repr=False, default_factory=dict)

    def summary_text(self) -> str:
        """One line per mode, e.g. ``大片区统筹平衡 (self-balanced as bundle): 2 bundles``, plus the gap."""
        lines = ["资金平衡 funding balance:"]
        for r in self.summary.itertuples(index=False):
            lines.append(f"  {r.balance_mode_zh} ({r.balance_mode_en}): {r.n_bundles} 个片区 bundles, "
                         f"cost {_wan(r.total_cost_cny)}, unfunded {_wan(r.unfunded_cny)}")
        total_pair = float(self.pairings["amount_cny"].sum()) if len(self.pairings) else 0.0
        loose = self.proposed[self.proposed["bundle_id"].isna()] if len(self.proposed) else self.proposed
        if len(loose):
            lines.append(f"  {len(loose)} proposed facilities on parcels of no bundle (not in any ledger): "
                         f"{', '.join(loose['facility_id'])}")
        lines.append(f"  跨片区组合 pairings: {len(self.pairings)}, {_wan(total_pair)}; "
                     f"未落实资金 unfunded: {len(self.unfunded)} bundles, "
                     f"{_wan(float(self.unfunded['unfunded_cny'].sum()) if len(self.unfunded) else 0.0)}")
        return "\n".join(lines)

    def xlsx_sheets(self, sensitivity: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
        """The tables of ``ledger.xlsx``, one sheet each (Chinese sheet names; headers via :data:`XLSX_HEADERS`)."""
        bcols = ["bundle_id", "member_ids", "n_compounds", "households", "subdistrict", "cost_cny",
                 "facility_cost_cny", "parking_cost_cny", "total_cost_cny", "subsidy_cny", "resident_cny",
                 "revenue_npv_cny", "land_surplus_cny", "attached_project_cny", "balance_cny", "paired_cny",
                 "unfunded_cny", "surplus_cny", "funded_ratio", "balance_mode_zh", "balance_rule"]
        bundles = pd.DataFrame(self.bundles.drop(columns=self.bundles.geometry.name))
        bundles = bundles[[c for c in bcols if c in bundles.columns]]
        ccols = ["compound_id", "name", "bundle_id", "households", "floor_area_m2", "renovation_classes",
                 "cost_cny", "subsidy_cny", "resident_cny", "revenue_npv_cny", "compound_balance_cny",
                 "self_balanced"]
        comp = pd.DataFrame(self.compounds.drop(columns=self.compounds.geometry.name))
        comp = comp[comp["bundle_id"].notna()] if "bundle_id" in comp.columns else comp
        comp = comp[[c for c in ccols if c in comp.columns]]
        ledger = self.ledger.drop(columns=["item", "category"])
        sheets = {
            "模式汇总": self.summary.drop(columns=["balance_mode"]),
            "片区资金平衡": bundles,
            "资金台账": ledger[ledger["level"] == "bundle"].drop(columns=["level", "compound_id"]),
            "小区收支": comp,
            "小区台账": ledger[ledger["level"] == "compound"].drop(columns=["level"]),
            "跨片区组合": self.pairings,
            "项目收益去向": self.projects,
            "存量用地": self.parcels,
            "新建设施": self.proposed,
            "未落实资金": self.unfunded,
        }
        if sensitivity is not None:
            sens = sensitivity.copy()
            for c in sens.columns:
                if c == "base" or c.startswith("mode:"):
                    sens[c] = sens[c].map(lambda m: self.settings["modes"].get(m, {}).get("name_zh", m))
            sheets["敏感性分析"] = sens
        sheets["参数假设"] = self.assumptions
        return sheets


def xlsx_headers(sheets: Mapping[str, pd.DataFrame] | None = None) -> dict[str, str]:
    """Chinese headers for ``io.write_xlsx``: :data:`XLSX_HEADERS` plus the sensitivity scenario columns."""
    out = dict(XLSX_HEADERS)
    for df in (sheets or {}).values():
        for c in map(str, df.columns):
            if c.startswith("mode:"):
                out[c] = f"平衡模式({c[5:]})"
            elif c.startswith("unfunded_cny:"):
                out[c] = f"未落实资金(元)({c[13:]})"
    return out


#: column → Chinese header for ``io.write_xlsx`` (sheets of :meth:`FinanceResult.xlsx_sheets`).
XLSX_HEADERS: dict[str, str] = {
    "bundle_id": "片区编号", "member_ids": "所含小区", "n_compounds": "小区数", "households": "户数",
    "subdistrict": "街道", "community": "社区", "cost_cny": "改造费用(元)", "facility_cost_cny": "新建设施费用(元)",
    "parking_cost_cny": "停车场建设费用(元)", "total_cost_cny": "总成本(元)", "subsidy_cny": "财政补助(元)",
    "resident_cny": "居民出资(元)", "revenue_npv_cny": "经营性收益现值(元)", "land_surplus_cny": "存量用地收益(元)",
    "attached_project_cny": "相邻项目统筹(元)", "balance_cny": "组合前平衡(元)", "paired_cny": "跨片区组合收益(元)",
    "unfunded_cny": "未落实资金(元)", "surplus_cny": "结余(元)", "funded_ratio": "资金落实率",
    "balance_mode": "平衡模式", "balance_mode_zh": "平衡模式", "balance_mode_en": "mode",
    "balance_rule": "判定依据", "n_bundles": "片区数",
    "compound_id": "小区编号", "name": "名称", "floor_area_m2": "建筑面积(m²)", "renovation_classes": "改造内容",
    "compound_balance_cny": "小区收支差额(元)", "self_balanced": "小区内自求平衡",
    "line": "序号", "item_zh": "科目", "category_zh": "类别", "partner_id": "对象编号", "basis": "计算依据",
    "amount_cny": "金额(元)", "project_id": "项目编号", "distance_m": "直线距离(m)", "kind": "类型",
    "project_kind": "项目类型", "project_name": "项目名称", "bundle_unit": "片区所属单元",
    "project_unit": "项目所属单元", "net_revenue_cny": "项目净收益(元)", "capex_cny": "项目投资(元)",
    "attached_bundle_ids": "相邻片区", "surplus_available_cny": "可用收益(元)", "loss_cny": "亏损(元)",
    "used_attached_cny": "片区统筹使用(元)", "used_cross_cny": "跨片区使用(元)", "remaining_cny": "剩余收益(元)",
    "parcel_id": "地块编号", "parcel_kind": "用地类型", "owner_type": "权属", "area_m2": "面积(m²)",
    "use": "利用方式", "use_zh": "利用方式", "facility_ids": "新建设施", "land_value_cny": "地价(元)",
    "parking_spaces": "停车位", "parking_npv_cny": "停车收益现值(元)", "rule": "规则",
    "facility_id": "设施编号", "facility_type": "设施类型", "facility_type_zh": "设施名称",
    "build_cost_cny": "建设费用(元)", "annual_income_cny": "年经营收益(元)", "income_npv_cny": "经营收益现值(元)",
    "unfunded_share": "缺口占成本", "note": "说明", "base": "基准情景", "flipped": "模式变化", "flipped_in": "变化情景",
    "group": "分组", "key": "参数", "value": "取值", "unit": "单位", "source": "来源", "verified": "已核实",
    "overridden": "已覆盖",
}


# ------------------------------------------------------------------------------------------- balance
def balance(
    compounds: gpd.GeoDataFrame,
    bundles: gpd.GeoDataFrame,
    projects: gpd.GeoDataFrame | None = None,
    vacant: gpd.GeoDataFrame | None = None,
    proposed: gpd.GeoDataFrame | None = None,
    settings: Mapping[str, Any] | None = None,
    *,
    costs: dict | None = None,
) -> FinanceResult:
    """Balance each bundle's cost against subsidies, contributions and revenue; pair deficits across areas.

    Steps (every number from ``data/finance.toml`` or ``settings``; each a ledger line):

    1. **Cost** (CNY): renovation cost by content class (the compounds' ``cost_basic_cny`` … from
       ``eligibility.screen``) + build cost of proposed facilities on the bundle's parcels + surface car parks
       on its parcels; × ``cost_factor``.
    2. **Funding rules** in file order (central per household, provincial per m², city:district share,
       residents' share …), each capped at the cost of its classes still unfunded.
    3. **Operating revenue** NPV over ``horizon_years`` at ``discount_rate``: the compounds' common income
       (managed parking, ads, charging, lockers) × ``common_income_share``; rents of proposed operating
       facilities; car parks on vacant parcels (built only where the NPV exceeds the build cost).
    4. **Land** of attached parcels: ``land_value_cny × land_net_share`` where the owner type allows a sale and
       no facility is proposed there (parcel use order: facility → land sale → parking → none).
    5. **Adjacent projects** (the bundle's ``project_ids``): their surplus funds the remaining deficits of the
       bundles they are attached to (min-cost flow, split allowed). Loss-making projects are left out unless
       ``charge_attached_losses``.
    6. **Cross-area pairing** (跨片区组合): remaining deficits × project surpluses over arcs to projects NOT
       attached to the bundle (:func:`pairing_arcs`, :func:`solve_pairing`); with ``pair_attached_remainder``
       an adjacent project's remainder may pair elsewhere. Each project's surplus is used once overall.
    7. **Mode** (first rule that holds): M1 小区内自求平衡 if steps 2–3 cover the cost; M2 大片区统筹平衡 if steps
       2–5 do; M3 跨片区组合平衡 if pairing closes the gap; else M4 政府引导的多元化投入 with the unfunded amount
       (to be met by budgeted funds, not new hidden debt). A bundle whose own sources exceed its cost keeps the
       surplus (a negative ``surplus_retained`` line), so its ledger sums to zero.

    Parameters
    ----------
    compounds : compounds after ``eligibility.screen`` and ``bundling.bundle`` (``compound_id``, ``bundle_id``,
        ``households``, ``floor_area_m2``, the class cost columns; optional ``parking_existing``,
        ``n_buildings``, ``subdistrict``/``community``/``district``).
    bundles : bundles of ``bundling.bundle`` (``bundle_id``, ``parcel_ids``, ``project_ids``, geometry).
    projects : revenue projects (``project_id``, ``net_revenue_cny``; optional ``kind``, ``name``,
        ``capex_cny``), or None.
    vacant : vacant parcels (``parcel_id``; optional ``kind``, ``owner_type``, ``land_value_cny``,
        ``allowed_uses``), or None.
    proposed : proposed facilities (``facility_id, parcel_id, facility_type, build_cost_cny``; an optional
        ``land_cost_cny`` is added to the cost), or None; each goes to the bundle its parcel is attached to (the
        first by ``bundle_id`` if several), else to none.
    settings : overrides of ``data/finance.toml`` (see :func:`finance_settings`), or its merged output.
    costs : the plan's ``[costs]`` overrides, only to list the unit costs in the assumptions table.

    Returns
    -------
    :class:`FinanceResult`.
    """
    cfg = dict(settings) if _is_merged(settings) else finance_settings(settings)
    return _balance(compounds, bundles, projects, vacant, proposed, cfg, costs)


def _is_merged(settings: Mapping[str, Any] | None) -> bool:
    """True for the output of :func:`finance_settings` (rather than overrides of it)."""
    return isinstance(settings, Mapping) and {"params", "funding", "options", "modes"} <= set(settings)


def _balance(compounds, bundles, projects, vacant, proposed, cfg: dict, costs: dict | None) -> FinanceResult:
    _require(compounds, "compounds", ("compound_id", "bundle_id", "households", "floor_area_m2"))
    _require(bundles, "bundles", ("bundle_id",))
    _require(projects, "projects", ("project_id", "net_revenue_cny"))
    _require(vacant, "vacant", ("parcel_id",))
    _require(proposed, "proposed facilities", ("facility_id", "parcel_id", "facility_type", "build_cost_cny"))
    p = {k: v["value"] for k, v in cfg["params"].items()}
    o = cfg["options"]
    af = annuity_factor(p["discount_rate"], int(p["horizon_years"]))
    cf, rf, sf = p["cost_factor"], p["revenue_factor"], p["subsidy_factor"]
    classes = eligibility.load_costs()["classes"]
    modes = cfg["modes"]

    bundles = bundles.copy()
    bundles["bundle_id"] = bundles["bundle_id"].astype(str)
    bundles = bundles.sort_values("bundle_id", kind="stable").reset_index(drop=True)
    bids = bundles["bundle_id"].tolist()
    comp_all = compounds.copy()
    in_bundle = comp_all["bundle_id"].notna() & comp_all["bundle_id"].astype(str).isin(bids)
    mem = comp_all[in_bundle].copy()
    mem["bundle_id"] = mem["bundle_id"].astype(str)
    mem["compound_id"] = mem["compound_id"].astype(str)
    mem = mem.sort_values(["bundle_id", "compound_id"], kind="stable")

    # ---- 1. cost items: compounds × classes, bundle pseudo-rows for facilities and parking
    parcels, fac = _parcels_and_facilities(bundles, vacant, proposed, p, o, cfg, af)
    items = [*classes, *_EXTRA_CLASSES]
    n_c = len(mem)
    cost = np.zeros((n_c + len(bids), len(items)))
    for j, cls in enumerate(classes):
        col = classes[cls]["column"]
        cost[:n_c, j] = _num(mem, col) * cf
    fac_b = fac[fac["bundle_id"].notna()]
    bpos = {b: n_c + i for i, b in enumerate(bids)}
    j_fac, j_park = items.index("facilities"), items.index("parking")
    np.add.at(cost[:, j_fac], [bpos[b] for b in fac_b["bundle_id"]], fac_b["build_cost_cny"].to_numpy(float))
    park = parcels[parcels["use"] == "parking"]
    np.add.at(cost[:, j_park], [bpos[b] for b in park["bundle_id"]], park["parking_build_cny"].to_numpy(float))
    households = np.concatenate([_num(mem, "households"), np.zeros(len(bids))])
    floor = np.concatenate([_num(mem, "floor_area_m2"), np.zeros(len(bids))])
    row_bundle = np.concatenate([mem["bundle_id"].to_numpy(object), np.array(bids, dtype=object)])

    # ---- 2. funding rules (sequential, capped by the remaining cost of their classes)
    remaining = cost.copy()
    fund_lines: list[tuple[str, str, str, str, np.ndarray]] = []  # (item, item_zh, kind, basis text, amounts)
    for rule, spec in cfg["funding"].items():
        cols = [items.index(c) for c in spec["classes"]]
        orig = cost[:, cols].sum(axis=1)
        left = remaining[:, cols].sum(axis=1)
        needs = orig > 0
        rate = spec["rate"] * (sf if spec["kind"] == "subsidy" else 1.0)
        if spec["basis"] == "household":
            raw, basis = households * rate * needs, f"{rate:,.2f} 元/户 × 户数"
        elif spec["basis"] == "floor_area":
            raw, basis = floor * rate * needs, f"{rate:,.2f} 元/m² × 建筑面积"
        else:
            raw, basis = orig * rate, f"{rate:.1%} × 成本"
        amount = np.minimum(raw, left)
        with np.errstate(invalid="ignore", divide="ignore"):
            keep = np.where(left > 0, 1.0 - amount / left, 1.0)
        remaining[:, cols] *= keep[:, None]
        basis += f" ({'、'.join(classes[c]['name_zh'] if c in classes else _EXTRA_CLASSES[c] for c in spec['classes'])})"
        split = spec.get("split") or {None: 1.0}
        for part, share in split.items():
            name = spec["name_zh"] if part is None else (spec.get("split_zh") or {}).get(part, part)
            item = f"fund_{rule}" if part is None else f"fund_{rule}_{part}"
            b = basis if part is None else f"{basis} × {share:.0%}"
            fund_lines.append((item, name, spec["kind"], b, amount * share))

    # ---- 3. operating revenue of compounds
    ops = {
        "parking": _num(mem, "parking_existing") * p["parking_occupancy"]
        * (p["compound_parking_fee_cny_month"] - p["parking_opex_cny_month"]) * 12,
        "ads": _num(mem, "n_buildings") * p["ad_cny_per_building_year"],
        "charging": _num(mem, "households") * p["charging_cny_per_household_year"],
        "lockers": np.full(n_c, p["locker_cny_per_compound_year"]),
    }
    ops_annual = sum(ops.values()) * p["common_income_share"] * rf
    ops_npv = ops_annual * af

    # ---- per-compound results
    def of_kind(kind: str) -> np.ndarray:
        return np.sum([a for _, _, k, _, a in fund_lines if k == kind] or [np.zeros(len(cost))], axis=0)

    comp_cost = cost[:n_c].sum(axis=1)
    comp_sub, comp_res = of_kind("subsidy")[:n_c], of_kind("resident")[:n_c]
    comp_bal = -comp_cost + comp_sub + comp_res + ops_npv

    # ---- per-bundle aggregates
    def per_bundle(values: np.ndarray) -> pd.Series:
        return pd.Series(values).groupby(row_bundle).sum().reindex(bids, fill_value=0.0)

    total_cost = per_bundle(cost.sum(axis=1))
    subsidy, resident = per_bundle(of_kind("subsidy")), per_bundle(of_kind("resident"))
    fac_npv = fac_b.groupby("bundle_id")["income_npv_cny"].sum().reindex(bids, fill_value=0.0)
    park_npv = park.groupby("bundle_id")["parking_npv_cny"].sum().reindex(bids, fill_value=0.0)
    comp_ops = pd.Series(ops_npv).groupby(mem["bundle_id"].to_numpy()).sum().reindex(bids, fill_value=0.0)
    revenue = comp_ops + fac_npv + park_npv
    land = parcels[parcels["use"] == "land_sale"].groupby("bundle_id")["land_surplus_cny"].sum().reindex(
        bids, fill_value=0.0)
    own_a = subsidy + resident + revenue - total_cost            # 小区内自求平衡 test

    # ---- 5. projects: surplus, losses, adjacent allocation
    proj, arcs, bundle_units = _projects_table(bundles, projects, comp_all, mem, p, o)
    loss_lines: list[tuple[str, str, float]] = []               # (bundle_id, project_id, -amount)
    if o["charge_attached_losses"] and len(proj):
        for r in proj[proj["loss_cny"] > 0].itertuples(index=False):
            att = _ids(r.attached_bundle_ids)
            for b in att:
                loss_lines.append((b, r.project_id, -r.loss_cny / len(att)))
    loss = pd.Series(0.0, index=bids)
    for b, _, amt in loss_lines:
        loss[b] += amt
    own_b = own_a + land + loss
    deficit_b = (-own_b).clip(lower=0.0)
    surplus0 = proj.set_index("project_id")["surplus_available_cny"] if len(proj) else pd.Series(dtype=float)
    att_arcs = arcs[arcs["attached"]].assign(allowed=True) if len(arcs) else arcs
    attached_pairs = solve_pairing(deficit_b[deficit_b > _TOL_CNY], surplus0, att_arcs, unit_cny=o["flow_unit_cny"],
                                   whole_first=o["whole_bundles_first"]) \
        if len(att_arcs) else pd.DataFrame(columns=PAIRING_COLUMNS)
    attached_amt = attached_pairs.groupby("bundle_id")["amount_cny"].sum().reindex(bids, fill_value=0.0)
    used_att = attached_pairs.groupby("project_id")["amount_cny"].sum()
    left_surplus = surplus0.sub(used_att, fill_value=0.0).clip(lower=0.0) if len(surplus0) else surplus0
    if not o["pair_attached_remainder"] and len(proj):
        attached_any = proj.loc[proj["attached_bundle_ids"] != "", "project_id"]
        left_surplus[left_surplus.index.isin(attached_any)] = 0.0
    deficit_c = (deficit_b - attached_amt).clip(lower=0.0)

    # ---- 6. cross-area pairing
    cross = solve_pairing(deficit_c[deficit_c > _TOL_CNY], left_surplus, arcs, one_to_one=o["one_to_one"],
                          unit_cny=o["flow_unit_cny"], whole_first=o["whole_bundles_first"]) \
        if len(arcs) else pd.DataFrame(columns=PAIRING_COLUMNS)
    paired = cross.groupby("bundle_id")["amount_cny"].sum().reindex(bids, fill_value=0.0)
    unfunded = (deficit_c - paired).clip(lower=0.0)
    unfunded[unfunded <= _TOL_CNY] = 0.0
    surplus_kept = own_b.clip(lower=0.0)

    # ---- 7. modes
    mode = np.select([own_a.to_numpy() >= -_TOL_CNY, (deficit_b - attached_amt).to_numpy() <= _TOL_CNY,
                      unfunded.to_numpy() <= _TOL_CNY], list(MODES[:3]), default=MODES[3])
    partners_att = attached_pairs.groupby("bundle_id")["project_id"].agg(lambda s: "、".join(s))
    partners_x = cross.groupby("bundle_id")["project_id"].agg(lambda s: "、".join(s))
    rules = []
    for i, b in enumerate(bids):
        m = modes[mode[i]]
        text = m["text_zh"].format(
            own=_wan(subsidy[b] + resident[b] + revenue[b]), cost=_wan(total_cost[b]), gap=_wan(max(-own_a[b], 0)),
            land=_wan(land[b]), projects=partners_att.get(b, "—"), attached=_wan(attached_amt[b]),
            partners=partners_x.get(b, "—"), paired=_wan(paired[b]), unfunded=_wan(unfunded[b]),
            share=f"{unfunded[b] / total_cost[b]:.1%}" if total_cost[b] > 0 else "—")
        if mode[i] == "cross_area" and attached_amt[b] > 0:
            text += f"（另有相邻项目 {partners_att[b]} {_wan(attached_amt[b])}）"
        if mode[i] == "government_led" and paired[b] > 0:
            text += f"（已组合 {partners_x[b]} {_wan(paired[b])}）"
        rules.append(f"{m['rule_id']} {m['name_zh']}: {text}")

    out_b = bundles.copy()
    out_b["facility_cost_cny"] = fac_b.groupby("bundle_id")["build_cost_cny"].sum().reindex(bids, fill_value=0.0).to_numpy()
    out_b["parking_cost_cny"] = park.groupby("bundle_id")["parking_build_cny"].sum().reindex(bids, fill_value=0.0).to_numpy()
    out_b["total_cost_cny"] = total_cost.to_numpy()
    out_b["subsidy_cny"] = subsidy.to_numpy()
    out_b["resident_cny"] = resident.to_numpy()
    out_b["revenue_npv_cny"] = revenue.to_numpy()
    out_b["land_surplus_cny"] = land.to_numpy()
    out_b["attached_project_cny"] = (attached_amt + loss).to_numpy()
    out_b["balance_cny"] = (own_b + attached_amt).to_numpy()
    out_b["paired_cny"] = paired.to_numpy()
    out_b["unfunded_cny"] = unfunded.to_numpy()
    out_b["surplus_cny"] = surplus_kept.to_numpy()
    out_b["funded"] = unfunded.to_numpy() <= _TOL_CNY
    with np.errstate(invalid="ignore", divide="ignore"):
        out_b["funded_ratio"] = np.where(total_cost > 0, 1.0 - unfunded / total_cost, 1.0)
    out_b["balance_mode"] = mode
    out_b["balance_mode_zh"] = [modes[m]["name_zh"] for m in mode]
    out_b["balance_rule"] = rules
    if bundle_units is not None:
        out_b["pairing_unit"] = out_b["bundle_id"].map(bundle_units).to_numpy()

    # ---- compounds with balance columns
    out_c = comp_all.copy()
    cols = {"subsidy_cny": comp_sub, "resident_cny": comp_res, "revenue_npv_cny": ops_npv,
            "compound_balance_cny": comp_bal}
    key = out_c["compound_id"].astype(str)
    for name, values in cols.items():
        out_c[name] = key.map(pd.Series(values, index=mem["compound_id"].to_numpy())).where(in_bundle)
    out_c["self_balanced"] = (out_c["compound_balance_cny"] >= -_TOL_CNY).where(in_bundle)

    # ---- ledger
    ledger = _ledger(bids, mem, cost, items, classes, fund_lines, ops, ops_npv, cfg, fac_b, park, parcels,
                     attached_pairs, loss_lines, cross, surplus_kept, unfunded, n_c, af, p, comp_bal)

    # ---- project usage, pairings, unfunded, summary
    used_x = cross.groupby("project_id")["amount_cny"].sum()
    if len(proj):
        proj["used_attached_cny"] = proj["project_id"].map(used_att).fillna(0.0)
        proj["used_cross_cny"] = proj["project_id"].map(used_x).fillna(0.0)
        proj["remaining_cny"] = (proj["surplus_available_cny"] - proj["used_attached_cny"]
                                 - proj["used_cross_cny"]).clip(lower=0.0)
    pinfo = proj.set_index("project_id") if len(proj) else pd.DataFrame()
    pairings = cross.copy()
    pairings["kind"] = "cross_area"
    if len(pinfo):
        pairings["project_kind"] = pairings["project_id"].map(pinfo["project_kind"])
        pairings["project_name"] = pairings["project_id"].map(pinfo["project_name"])
        if "pairing_unit" in pinfo.columns:
            pairings["bundle_unit"] = pairings["bundle_id"].map(bundle_units)
            pairings["project_unit"] = pairings["project_id"].map(pinfo["pairing_unit"])
    allocations = pd.concat([attached_pairs.assign(kind="attached"), cross.assign(kind="cross_area")],
                            ignore_index=True).sort_values(["bundle_id", "project_id"], kind="stable")
    layer = _pairing_lines(pairings, bundles, projects)
    unf = out_b.loc[~out_b["funded"], ["bundle_id", "total_cost_cny", "paired_cny", "unfunded_cny"]].copy()
    unf = pd.DataFrame(unf)
    unf["unfunded_share"] = unf["unfunded_cny"] / unf["total_cost_cny"].where(unf["total_cost_cny"] > 0)
    unf["note"] = ("需政府引导多元化投入：以预算内资金、居民和社会资本等补足，不得新增地方政府隐性债务 "
                   "[000:39] [001:231]")
    summary = pd.DataFrame({
        "balance_mode": list(MODES),
        "balance_mode_zh": [modes[m]["name_zh"] for m in MODES],
        "balance_mode_en": [modes[m]["name_en"] for m in MODES],
        "n_bundles": [int((mode == m).sum()) for m in MODES],
        "total_cost_cny": [float(total_cost[mode == m].sum()) for m in MODES],
        "paired_cny": [float(paired[mode == m].sum()) for m in MODES],
        "unfunded_cny": [float(unfunded[mode == m].sum()) for m in MODES],
    })
    return FinanceResult(
        bundles=out_b, compounds=out_c, ledger=ledger, pairings=pairings.reset_index(drop=True),
        pairings_layer=layer, allocations=allocations.reset_index(drop=True), projects=proj, parcels=parcels,
        proposed=fac, unfunded=unf.reset_index(drop=True), assumptions=assumptions_table(cfg, costs),
        summary=summary, settings=cfg)


def _parcels_and_facilities(bundles, vacant, proposed, p, o, cfg, af) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Assign proposals and attached parcels to bundles; decide each parcel's use."""
    owner: dict[str, str] = {}
    for b, ids in zip(bundles["bundle_id"], bundles.get("parcel_ids", pd.Series([None] * len(bundles))),
                      strict=True):
        for pid in _ids(ids):
            owner.setdefault(pid, b)  # bundles are sorted: the first bundle wins a shared parcel
    names = _facility_names()
    income = cfg["facility_income"]
    cf, rf = p["cost_factor"], p["revenue_factor"]
    fcols = ["facility_id", "parcel_id", "bundle_id", "facility_type", "facility_type_zh", "build_cost_cny",
             "annual_income_cny", "income_npv_cny"]
    if proposed is not None and len(proposed):
        fac = pd.DataFrame({"facility_id": proposed["facility_id"].astype(str).to_numpy(),
                            "parcel_id": proposed["parcel_id"].astype(str).to_numpy(),
                            "facility_type": proposed["facility_type"].astype(str).to_numpy()})
        fac["bundle_id"] = [owner.get(q) for q in fac["parcel_id"]]
        fac["facility_type_zh"] = fac["facility_type"].map(names).fillna(fac["facility_type"])
        # land bought for a facility (siting's land_cost_cny, when given) is part of its cost
        fac["build_cost_cny"] = (_num(proposed, "build_cost_cny") + _num(proposed, "land_cost_cny")) * cf
        fac["annual_income_cny"] = fac["facility_type"].map(
            lambda t: float(income.get(t, income["default"]))) * rf
        fac["income_npv_cny"] = fac["annual_income_cny"] * af
        fac = fac[fcols].sort_values("facility_id", kind="stable").reset_index(drop=True)
    else:
        fac = pd.DataFrame({c: pd.Series(dtype=float if c.endswith("cny") else object) for c in fcols})
    pcols = ["parcel_id", "bundle_id", "parcel_kind", "owner_type", "area_m2", "use", "use_zh", "facility_ids",
             "land_value_cny", "land_surplus_cny", "parking_spaces", "parking_build_cny", "parking_annual_cny",
             "parking_npv_cny", "rule"]
    if vacant is None or not len(vacant) or not owner:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in pcols}).astype(
            {c: float for c in pcols if c.endswith(("_cny", "_m2", "spaces"))}), fac
    v = vacant[vacant["parcel_id"].astype(str).isin(owner)].copy()
    v["parcel_id"] = v["parcel_id"].astype(str)
    v = v.sort_values("parcel_id", kind="stable")
    out = pd.DataFrame({"parcel_id": v["parcel_id"].to_numpy()})
    out["bundle_id"] = out["parcel_id"].map(owner)
    out["parcel_kind"] = v["kind"].astype(str).to_numpy() if "kind" in v.columns else ""
    out["owner_type"] = v["owner_type"].fillna("unknown").astype(str).to_numpy() if "owner_type" in v.columns \
        else "unknown"
    out["area_m2"] = v.geometry.area.to_numpy()
    value = pd.to_numeric(v["land_value_cny"], errors="coerce").to_numpy(float) if "land_value_cny" in v.columns \
        else np.full(len(v), np.nan)
    out["land_value_cny"] = value
    allowed = v["allowed_uses"].fillna("").astype(str).to_numpy() if "allowed_uses" in v.columns else [""] * len(v)
    fac_on = fac.groupby("parcel_id")["facility_id"].agg(";".join) if len(fac) else pd.Series(dtype=object)
    out["facility_ids"] = [fac_on.get(q, "") for q in out["parcel_id"]]
    has_fac = out["facility_ids"] != ""
    sale = (~has_fac & (np.nan_to_num(value) > 0) & out["owner_type"].isin(o["land_sale_owner_types"])
            & ~out["parcel_kind"].isin(o["land_sale_excluded_kinds"]))
    spaces = np.floor(out["area_m2"] * p["parking_usable_share"] / p["parking_m2_per_space"] + 1e-9)
    park_ok = np.array(["parking" in [u.strip() for u in a.split(",")] if a.strip() else True for a in allowed])
    annual = spaces * p["parking_occupancy"] * (p["lot_parking_fee_cny_month"] - p["parking_opex_cny_month"]) * 12 * rf
    build = spaces * p["parking_build_cny_per_space"] * cf
    worth = annual * af > build
    parking = ~has_fac & ~sale & out["parcel_kind"].isin(o["parking_kinds"]) & park_ok & (spaces > 0) & worth
    out["use"] = np.select([has_fac, sale, parking], ["facility", "land_sale", "parking"], default="none")
    out["use_zh"] = out["use"].map({"facility": "新建公共服务设施", "land_sale": "土地出让", "parking": "地面停车场",
                                    "none": "暂不利用"})
    out["land_surplus_cny"] = np.where(sale, np.nan_to_num(value) * p["land_net_share"] * rf, 0.0)
    out["parking_spaces"] = np.where(parking, spaces, 0.0)
    out["parking_build_cny"] = np.where(parking, build, 0.0)
    out["parking_annual_cny"] = np.where(parking, annual, 0.0)
    out["parking_npv_cny"] = np.where(parking, annual * af, 0.0)
    why_none = np.where(~out["parcel_kind"].isin(o["parking_kinds"]), "kind not for sale or parking",
                        np.where(~park_ok, "allowed_uses exclude parking",
                                 np.where(spaces <= 0, "too small for parking", "parking NPV ≤ build cost")))
    out["rule"] = np.select(
        [has_fac, sale, parking],
        ["U1 facility proposed (public services first [000:51])",
         "U2 land sale: land_value_cny × land_net_share (owner type allows a sale)",
         "U3 surface parking: NPV of fees > build cost"],
        default=np.array([f"U4 none: {w}" for w in why_none], dtype=object))
    return out[pcols].reset_index(drop=True), fac


def _projects_table(bundles, projects, comp_all, mem, p, o):
    """Projects with surplus/loss and attached bundles; the arcs table; bundle units for same_unit."""
    pcols = ["project_id", "project_kind", "project_name", "net_revenue_cny", "capex_cny", "attached_bundle_ids",
             "surplus_available_cny", "loss_cny"]
    if projects is None or not len(projects):
        return pd.DataFrame(columns=pcols), pd.DataFrame(columns=["bundle_id", "project_id", "distance_m",
                                                                  "attached", "allowed"]), None
    unit = o["same_unit"]
    bundle_units = project_units = None
    if unit != "none":
        if unit in bundles.columns:
            bundle_units = bundles.set_index("bundle_id")[unit]
        elif unit in mem.columns:
            bundle_units = mem.groupby("bundle_id")[unit].agg(lambda s: s.mode().iat[0] if s.notna().any() else None)
        else:
            raise LayerError(f"finance: same_unit = {unit!r} but neither bundles nor compounds have a "
                             f"{unit!r} column")
        if unit in projects.columns:
            project_units = projects.set_index(projects["project_id"].astype(str))[unit]
        elif unit in comp_all.columns:
            # the unit of the nearest compound (projects carry no unit of their own)
            cg = np.asarray(comp_all.geometry.values)
            near = np.argmin(shapely.distance(np.asarray(projects.geometry.values)[:, None], cg[None, :]), axis=1)
            project_units = pd.Series(comp_all[unit].to_numpy()[near],
                                      index=projects["project_id"].astype(str).to_numpy())
        else:
            raise LayerError(f"finance: same_unit = {unit!r} but projects have no {unit!r} column")
    arcs = pairing_arcs(bundles, projects, max_distance_m=o["max_distance_m"], same_unit=unit,
                        bundle_units=bundle_units, project_units=project_units)
    pid = projects["project_id"].astype(str).to_numpy()
    net = _num(projects, "net_revenue_cny")
    att = arcs[arcs["attached"]].groupby("project_id")["bundle_id"].agg(";".join)
    proj = pd.DataFrame({
        "project_id": pid,
        "project_kind": projects["kind"].astype(str).to_numpy() if "kind" in projects.columns else "",
        "project_name": projects["name"].astype(str).to_numpy() if "name" in projects.columns else "",
        "net_revenue_cny": net,
        "capex_cny": _num(projects, "capex_cny") if "capex_cny" in projects.columns else np.nan,
    })
    proj["attached_bundle_ids"] = [att.get(q, "") for q in proj["project_id"]]
    proj["surplus_available_cny"] = np.clip(net, 0, None) * p["project_surplus_share"] * p["revenue_factor"]
    proj["loss_cny"] = np.clip(-net, 0, None)
    if project_units is not None:
        proj["pairing_unit"] = proj["project_id"].map(project_units)
    proj = proj.sort_values("project_id", kind="stable").reset_index(drop=True)
    return proj, arcs, bundle_units


def _pairing_lines(pairings: pd.DataFrame, bundles: gpd.GeoDataFrame, projects) -> gpd.GeoDataFrame:
    crs = bundles.crs
    if not len(pairings) or projects is None:
        return gpd.GeoDataFrame(pairings.copy(), geometry=gpd.GeoSeries([], crs=crs), crs=crs)
    bpt = pd.Series(bundles.geometry.representative_point().values, index=bundles["bundle_id"].astype(str))
    ppt = pd.Series(projects.geometry.representative_point().values, index=projects["project_id"].astype(str))
    a = np.asarray(pairings["bundle_id"].map(bpt).values)
    b = np.asarray(pairings["project_id"].map(ppt).values)
    coords = np.stack([shapely.get_coordinates(a), shapely.get_coordinates(b)], axis=1)
    return gpd.GeoDataFrame(pairings.copy(), geometry=shapely.linestrings(coords), crs=crs)


def _ledger(bids, mem, cost, items, classes, fund_lines, ops, ops_npv, cfg, fac_b, park, parcels,
            attached_pairs, loss_lines, cross, surplus_kept, unfunded, n_c, af, p, comp_bal) -> pd.DataFrame:
    """Ledger rows per bundle × line item and per compound × line item (sum zero each)."""
    rows: list[pd.DataFrame] = []
    cids = mem["compound_id"].to_numpy(object)
    cb = mem["bundle_id"].to_numpy(object)
    row_bundle = np.concatenate([cb, np.array(bids, dtype=object)])
    pr = f"{p['discount_rate']:.1%} 折现 {int(p['horizon_years'])} 年 (年金系数 {af:.4f})"

    def add(level, bundle, compound, item, item_zh, category, amount, partner=None, basis=""):
        rows.append(pd.DataFrame({"level": level, "bundle_id": bundle, "compound_id": compound, "item": item,
                                  "item_zh": item_zh, "category": category, "partner_id": partner,
                                  "basis": basis, "amount_cny": amount}))

    def by_bundle(values: np.ndarray) -> np.ndarray:
        return pd.Series(values).groupby(row_bundle).sum().reindex(bids, fill_value=0.0).to_numpy()

    b_arr = np.array(bids, dtype=object)
    for j, cls in enumerate(classes):
        zh = classes[cls]["name_zh"]
        add("bundle", b_arr, None, f"cost_{cls}", f"{zh}改造费用", "cost", -by_bundle(cost[:, j]),
            basis="建筑面积 × 单位造价 (costs.toml)")
        add("compound", cb, cids, f"cost_{cls}", f"{zh}改造费用", "cost", -cost[:n_c, j],
            basis="建筑面积 × 单位造价 (costs.toml)")
    if len(fac_b):
        add("bundle", fac_b["bundle_id"].to_numpy(object), None, "cost_facility",
            ("新建设施建设费用(" + fac_b["facility_type_zh"] + ")").to_numpy(object), "cost",
            -fac_b["build_cost_cny"].to_numpy(float), fac_b["facility_id"].to_numpy(object),
            "build_cost_cny (+ land_cost_cny)")
    if len(park):
        add("bundle", park["bundle_id"].to_numpy(object), None, "cost_parking", "停车场建设费用", "cost",
            -park["parking_build_cny"].to_numpy(float), park["parcel_id"].to_numpy(object),
            (park["parking_spaces"].map(lambda s: f"{s:.0f} 个车位 × ") + f"{p['parking_build_cny_per_space']:,.0f} 元"
             ).to_numpy(object))
    for item, zh, kind, basis, amount in fund_lines:
        add("bundle", b_arr, None, item, zh, kind, by_bundle(amount), basis=basis)
        add("compound", cb, cids, item, zh, kind, amount[:n_c], basis=basis)
    ops_basis = (f"(停车 {p['compound_parking_fee_cny_month']:.0f}−{p['parking_opex_cny_month']:.0f} 元/月 × "
                 f"{p['parking_occupancy']:.0%} + 广告 + 充电 + 快递柜) × {p['common_income_share']:.0%}, {pr}")
    add("bundle", b_arr, None, "revenue_compound_ops", "小区公共收益现值(停车、广告、充电、快递柜)", "operating",
        pd.Series(ops_npv).groupby(cb).sum().reindex(bids, fill_value=0.0).to_numpy(), basis=ops_basis)
    add("compound", cb, cids, "revenue_compound_ops", "小区公共收益现值(停车、广告、充电、快递柜)", "operating",
        ops_npv, basis=ops_basis)
    if len(fac_b):
        add("bundle", fac_b["bundle_id"].to_numpy(object), None, "revenue_facility_ops",
            ("经营性设施收益现值(" + fac_b["facility_type_zh"] + ")").to_numpy(object), "operating",
            fac_b["income_npv_cny"].to_numpy(float), fac_b["facility_id"].to_numpy(object),
            fac_b["annual_income_cny"].map(lambda a: f"{a:,.0f} 元/年, {pr}").to_numpy(object))
    if len(park):
        add("bundle", park["bundle_id"].to_numpy(object), None, "revenue_parking", "停车场经营收益现值", "operating",
            park["parking_npv_cny"].to_numpy(float), park["parcel_id"].to_numpy(object),
            park["parking_annual_cny"].map(lambda a: f"{a:,.0f} 元/年, {pr}").to_numpy(object))
    sale = parcels[parcels["use"] == "land_sale"]
    if len(sale):
        add("bundle", sale["bundle_id"].to_numpy(object), None, "land_surplus", "存量用地出让净收益", "land",
            sale["land_surplus_cny"].to_numpy(float), sale["parcel_id"].to_numpy(object),
            f"land_value_cny × {p['land_net_share']:.0%}")
    if loss_lines:
        add("bundle", np.array([b for b, _, _ in loss_lines], dtype=object), None, "project_attached_loss",
            "相邻亏损项目分摊", "project", np.array([a for _, _, a in loss_lines]),
            np.array([q for _, q, _ in loss_lines], dtype=object), "net_revenue_cny < 0, split equally")
    if len(attached_pairs):
        add("bundle", attached_pairs["bundle_id"].to_numpy(object), None, "project_attached", "相邻项目收益统筹",
            "project", attached_pairs["amount_cny"].to_numpy(float), attached_pairs["project_id"].to_numpy(object),
            attached_pairs["distance_m"].map(lambda d: f"大片区统筹, 距离 {d:,.0f} m").to_numpy(object))
    if len(cross):
        add("bundle", cross["bundle_id"].to_numpy(object), None, "pairing_income", "跨片区组合收益", "pairing",
            cross["amount_cny"].to_numpy(float), cross["project_id"].to_numpy(object),
            cross["distance_m"].map(lambda d: f"跨片区组合, 直线距离 {d:,.0f} m").to_numpy(object))
    kept = surplus_kept[surplus_kept > _TOL_CNY]
    if len(kept):
        add("bundle", kept.index.to_numpy(object), None, "surplus_retained", "结余(留作长效管理)", "surplus",
            -kept.to_numpy(float), basis="自有资金超过成本的部分")
    gap = unfunded[unfunded > 0]
    if len(gap):
        add("bundle", gap.index.to_numpy(object), None, "government_residual", "政府引导多元化投入(待筹缺口)",
            "residual", gap.to_numpy(float), basis="组合平衡后仍未落实; 不得新增隐性债务")
    add("compound", cb, cids, "transfer_bundle", np.where(comp_bal < 0, "缺口由片区统筹", "结余转入片区统筹"),
        "transfer", -comp_bal, basis="小区内自求平衡检验后的差额")
    ledger = pd.concat([r for r in rows if len(r)], ignore_index=True)
    ledger["amount_cny"] = ledger["amount_cny"].astype(float)
    # bundle rows: tiny rounding residues (flow trimming) are removed from the residual or surplus line
    ledger["category_zh"] = ledger["category"].map(_CATEGORY_ZH)
    ledger["_level"] = ledger["level"].map({"bundle": 0, "compound": 1})
    ledger["line"] = ledger.groupby(["level", "bundle_id", "compound_id"], dropna=False).cumcount() + 1
    ledger = ledger.sort_values(["_level", "bundle_id", "compound_id", "line"], kind="stable", na_position="first")
    cols = ["level", "bundle_id", "compound_id", "line", "item", "item_zh", "category", "category_zh",
            "partner_id", "basis", "amount_cny"]
    return ledger[cols].reset_index(drop=True)


# ------------------------------------------------------------------------------------------ scenarios
def sensitivity(
    compounds: gpd.GeoDataFrame,
    bundles: gpd.GeoDataFrame,
    projects: gpd.GeoDataFrame | None = None,
    vacant: gpd.GeoDataFrame | None = None,
    proposed: gpd.GeoDataFrame | None = None,
    settings: Mapping[str, Any] | None = None,
    scenarios: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Rerun the balance for several scenarios and show which bundles change mode.

    Parameters
    ----------
    compounds, bundles, projects, vacant, proposed, settings : as for :func:`balance` (the base case).
    scenarios : scenario name → settings overrides applied over ``settings`` (absolute values, e.g.
        ``{"cost+10%": {"cost_factor": 1.1}, "revenue-20%": {"revenue_factor": 0.8}}``); default
        :data:`DEFAULT_SCENARIOS` (cost ±10 %, revenue ±20 %).

    Returns
    -------
    DataFrame ``bundle_id, base`` (the base mode), per scenario ``mode:<name>`` and ``unfunded_cny:<name>``,
    then ``flipped`` (mode differs in any scenario) and ``flipped_in`` (``;``-joined scenario names).
    """
    scenarios = DEFAULT_SCENARIOS if scenarios is None else scenarios
    cfg = dict(settings) if _is_merged(settings) else finance_settings(settings)
    base = balance(compounds, bundles, projects, vacant, proposed, cfg).bundles
    out = pd.DataFrame({"bundle_id": base["bundle_id"].to_numpy(), "base": base["balance_mode"].to_numpy(),
                        "unfunded_cny:base": base["unfunded_cny"].to_numpy()})
    flipped_in = [[] for _ in range(len(out))]
    for name, over in scenarios.items():
        r = balance(compounds, bundles, projects, vacant, proposed,
                    _apply_overrides(copy.deepcopy(cfg), over)).bundles
        modes = r.set_index("bundle_id")["balance_mode"].reindex(out["bundle_id"]).to_numpy()
        out[f"mode:{name}"] = modes
        out[f"unfunded_cny:{name}"] = r.set_index("bundle_id")["unfunded_cny"].reindex(out["bundle_id"]).to_numpy()
        for i in np.flatnonzero(modes != out["base"].to_numpy()):
            flipped_in[i].append(name)
    out["flipped"] = [bool(f) for f in flipped_in]
    out["flipped_in"] = [";".join(f) for f in flipped_in]
    return out
